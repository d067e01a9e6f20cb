//! `dataplane-bench serve-sockets`: Bridgehead's dataplane on the socket
//! backend (or, with `--af-xdp IFACE`, on the AF_XDP backend on that
//! interface) with one worker, in a process of its own so that its CPU time
//! can be read from `/proc` apart from the load generator's and the
//! orchestrator's.
//!
//! It creates `--sessions` sessions with RTCP multiplexed (one socket per
//! leg): leg 0's remote is the load generator's source `i % sources`, leg 1's
//! remote is sink `i % sinks`. Then it speaks the relay protocol every
//! relay child of the benchmark speaks (see also `test-harness`'s
//! `kernel_relay`):
//! - prints `{"targets": ["127.0.0.1:p", ...]}`: each session's leg-0 address;
//! - on each `stats` line prints `{"rx_packets", "tx_packets", "dropped"}`;
//! - stops the dataplane and exits at end of input.

use dataplane::control::{ControlError, SessionRequest};
use dataplane::session::LegSettings;
use dataplane::{AfXdpConfig, Backend, Dataplane, DataplaneConfig, XdpMode};
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dataplane-bench serve-sockets: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The value after `name`.
pub fn arg<'a>(args: &'a [String], name: &str) -> Result<&'a str, String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .ok_or_else(|| format!("missing {name}"))
}

/// A comma-separated list of socket addresses.
pub fn addr_list(list: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> =
        list.split(',').map(|a| a.parse().map_err(|e| format!("{a}: {e}"))).collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err("empty address list".into());
    }
    Ok(addrs)
}

fn run(args: &[String]) -> Result<(), String> {
    let sessions: usize = arg(args, "--sessions")?.parse().map_err(|e| format!("--sessions: {e}"))?;
    let (first, last) = arg(args, "--ports")?.split_once('-').ok_or("--ports: FIRST-LAST")?;
    let ports =
        first.parse().map_err(|e| format!("--ports: {e}"))?..=last.parse().map_err(|e| format!("--ports: {e}"))?;
    let sources = addr_list(arg(args, "--sources")?)?;
    let sinks = addr_list(arg(args, "--sinks")?)?;

    let af_xdp = arg(args, "--af-xdp").ok();
    let config = DataplaneConfig {
        backend: if af_xdp.is_some() { Backend::AfXdp } else { Backend::Sockets },
        af_xdp: AfXdpConfig { interface: af_xdp.unwrap_or_default().to_owned(), mode: XdpMode::Auto },
        media_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        ports,
        workers: 1,
        sessions: sessions.next_power_of_two().max(64),
        // Longer than any run: no session times out while measured.
        media_timeout: Duration::from_secs(3600),
        ..DataplaneConfig::default()
    };
    let dataplane = Dataplane::start(config).map_err(|e| e.to_string())?;
    let handle = dataplane.handle();
    let mut targets = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let leg = |remote| LegSettings { remote: Some(remote), ..LegSettings::default() };
        let request =
            SessionRequest { legs: [leg(sources[i % sources.len()]), leg(sinks[i % sinks.len()])], rtcp_mux: true };
        let info = loop {
            match handle.create_session(request) {
                Ok(info) => break info,
                Err(ControlError::Busy(_)) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => return Err(format!("session {i}: {e}")),
            }
        };
        targets.push(info.legs[0].local.to_string());
    }
    // Installed once the worker has applied every command.
    let deadline = Instant::now() + Duration::from_secs(20);
    while handle.worker_stats()[0].sessions_active < sessions as u64 {
        if Instant::now() > deadline {
            return Err("the worker did not install the sessions within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("{}", serde_json::json!({ "targets": targets }));

    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "stats" {
            let w = &handle.worker_stats()[0];
            let dropped: u64 = w.drops.iter().map(|&(_, n)| n).sum();
            println!(
                "{}",
                serde_json::json!({
                    "rx_packets": w.rx_packets,
                    "tx_packets": w.tx_packets,
                    "dropped": dropped,
                    "loops": w.loops,
                    "idle_loops": w.idle_loops,
                })
            );
        }
    }
    dataplane.stop();
    Ok(())
}
