//! Part 1: the DPDK relay on one worker core, in circulation.
//!
//! The real dataplane (`Dataplane::start`, DPDK backend, one worker) runs in
//! a child process (`dataplane-bench dpdk-relay`, pinned to one core) over a
//! `net_ring` port: a ring vdev whose tx ring is its own rx ring, so every
//! frame the worker sends comes straight back to it.
//!
//! ```text
//!   kernel ─UDP─▶ TAP (exception port) ─▶ housekeeping ─▶ ring tx ─┐
//!                                                                  ▼
//!        ┌──────────── worker: rx_burst ─▶ relay ─▶ tx_burst ◀── ring ◀─┐
//!        └─────────────────────────────────────────────────────────────┘
//!   session i, leg 1's remote = session i+1's leg-0 address (ours)
//! ```
//!
//! 100,000 sessions need 200,000 legs; a leg holds an even/odd port pair, so
//! 8 media addresses x ports 10000-61999 (208,000 legs). Session i's leg 1
//! sends to session i+1's leg 0, so a relayed frame comes back through the
//! ring addressed to the next session, and so on round the chain: each frame
//! visits every session in turn. About a thousand frames are injected (the
//! ring holds 1,023) through the backend's own exception path: the kernel
//! sends UDP datagrams to the media addresses over the TAP interface, the
//! backend moves them to the ring. Nothing has to be added to the backend.
//! The media addresses are in 198.18.0.0/24 (RFC 2544's benchmarking range)
//! on that TAP interface only, so no frame leaves the machine.
//!
//! The worker never idles while frames circulate; the relay rate is its
//! `tx_packets` over the window, and cycles per packet are TSC ticks over
//! the window divided by the packets relayed in it.

/// What the DPDK relay did.
#[derive(Debug, Clone, Copy)]
pub struct DpdkFigures {
    pub mpps: f64,
    pub cycles_per_packet: f64,
    pub sessions: usize,
    /// Share of its core the relay process had in the window (the worker
    /// spins; below ~0.95 something else took the core and the figures are low).
    pub busy: f64,
}

// ===========================================================================
// DPDK RELAY (feature `dpdk`): the orchestrator's side.
// ===========================================================================
/// Runs the DPDK relay child; `Err` says why there are no figures.
#[cfg(feature = "dpdk")]
pub fn dpdk_relay(sessions: usize, seconds: f64) -> Result<DpdkFigures, String> {
    use crate::process::{self, Agent, Stop};
    use std::time::Duration;

    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let args =
        ["dpdk-relay".to_string(), "--sessions".into(), sessions.to_string(), "--seconds".into(), seconds.to_string()];
    let cmd = process::command(&exe, &args, Some(crate::relay::LOAD_CORE));
    let mut child = Agent::spawn("dpdk-relay", cmd, process::log_file("dpdk-relay"), Stop::CloseStdin)?;
    // Setting up 100,000 sessions and the circulation takes a few seconds.
    let answer = child.json(Duration::from_secs_f64(seconds + 60.0));
    child.stop();
    let answer = answer.map_err(|e| format!("{e}; see {}", process::log_path("dpdk-relay").display()))?;
    if let Some(e) = answer["error"].as_str() {
        return Err(e.to_string());
    }
    let field = |k: &str| answer[k].as_f64().ok_or_else(|| format!("no {k} in {answer}"));
    Ok(DpdkFigures {
        mpps: field("mpps")?,
        cycles_per_packet: field("cycles_per_packet")?,
        sessions: field("sessions")? as usize,
        busy: field("busy")?,
    })
}

#[cfg(not(feature = "dpdk"))]
pub fn dpdk_relay(_sessions: usize, _seconds: f64) -> Result<DpdkFigures, String> {
    Err("built without the `dpdk` feature".into())
}

#[cfg(not(feature = "dpdk"))]
pub fn main(_args: &[String]) -> std::process::ExitCode {
    eprintln!("dataplane-bench dpdk-relay: built without the `dpdk` feature");
    std::process::ExitCode::FAILURE
}

/// `dataplane-bench dpdk-relay --sessions N --seconds S`: the child. Prints
/// one JSON line, `{"mpps", "cycles_per_packet", "sessions", ...}` or
/// `{"error"}`, and exits.
#[cfg(feature = "dpdk")]
pub fn main(args: &[String]) -> std::process::ExitCode {
    let answer = match circulation::run(args) {
        Ok(figures) => figures,
        Err(e) => serde_json::json!({ "error": e }),
    };
    println!("{answer}");
    std::process::ExitCode::SUCCESS
}

#[cfg(feature = "dpdk")]
mod circulation {
    use crate::load::rtp_packet;
    use crate::serve::arg;
    use dataplane::config::DpdkConfig;
    use dataplane::control::{ControlError, SessionRequest};
    use dataplane::session::{LegSettings, SessionId};
    use dataplane::{Backend, Dataplane, DataplaneConfig, DataplaneHandle};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// Media addresses 198.18.0.1-8; the kernel's end of the TAP is .254.
    const MEDIA_IPS: u8 = 8;
    const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
    const PORTS: std::ops::RangeInclusive<u16> = 10000..=61999;
    /// Frames put in circulation: what the ring (1,023 slots) holds with a
    /// burst in the worker's hands.
    const FRAMES: usize = 960;

    fn media_ip(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, 1 + i)
    }

    pub fn run(args: &[String]) -> Result<serde_json::Value, String> {
        let sessions: usize = arg(args, "--sessions")?.parse().map_err(|e| format!("--sessions: {e}"))?;
        let seconds: f64 = arg(args, "--seconds")?.parse().map_err(|e| format!("--seconds: {e}"))?;
        let legs_available = usize::from(MEDIA_IPS) * (PORTS.len() / 2);
        if sessions < 2 || 2 * sessions > legs_available {
            return Err(format!("--sessions: 2 to {}", legs_available / 2));
        }
        let iface = format!("bhbench{}", std::process::id() % 100_000);
        let config = DataplaneConfig {
            backend: Backend::Dpdk,
            media_ips: (0..MEDIA_IPS).map(|i| IpAddr::V4(media_ip(i))).collect(),
            ports: PORTS,
            workers: 1,
            sessions: sessions.next_power_of_two(),
            media_timeout: Duration::from_secs(3600),
            dpdk: DpdkConfig {
                eal_args: [
                    "--no-huge",
                    "--no-pci",
                    "-m",
                    "512",
                    "--vdev=net_ring0",
                    &format!("--vdev=net_tap0,iface={iface}"),
                    "--log-level=*:error",
                ]
                .map(String::from)
                .to_vec(),
                port: "net_ring0".into(),
                tap: Some("net_tap0".into()),
                prefix_len: 24,
                gateway: None,
            },
            ..DataplaneConfig::default()
        };
        let dataplane = Dataplane::start(config).map_err(|e| format!("dataplane: {e}"))?;
        let result = circulate(&dataplane.handle(), &iface, sessions, seconds);
        dataplane.stop();
        result
    }

    fn create(handle: &DataplaneHandle, request: SessionRequest) -> Result<dataplane::control::SessionInfo, String> {
        loop {
            match handle.create_session(request) {
                Ok(info) => return Ok(info),
                Err(ControlError::Busy(_)) => std::thread::sleep(Duration::from_micros(200)),
                Err(e) => return Err(format!("create session: {e}")),
            }
        }
    }

    fn circulate(
        handle: &DataplaneHandle,
        iface: &str,
        sessions: usize,
        seconds: f64,
    ) -> Result<serde_json::Value, String> {
        // Sessions first (leg 1 without a remote), then each leg 1 pointed
        // at the next session's leg 0.
        let mut ids: Vec<SessionId> = Vec::with_capacity(sessions);
        let mut entries: Vec<SocketAddr> = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            let info = create(handle, SessionRequest { rtcp_mux: true, ..SessionRequest::default() })?;
            ids.push(info.id);
            entries.push(info.legs[0].local);
        }
        for (i, &id) in ids.iter().enumerate() {
            let settings = LegSettings { remote: Some(entries[(i + 1) % sessions]), ..LegSettings::default() };
            loop {
                match handle.update_session(id, 1, settings) {
                    Ok(_) => break,
                    Err(ControlError::Busy(_)) => std::thread::sleep(Duration::from_micros(200)),
                    Err(e) => return Err(format!("update session: {e}")),
                }
            }
        }
        // The worker applies commands in order: once this marker session is
        // installed, every update before it is too.
        create(handle, SessionRequest::default())?;
        wait_for(Duration::from_secs(30), || handle.worker_stats()[0].sessions_active > sessions as u64)
            .map_err(|()| "the worker did not apply the sessions within 30 s".to_string())?;

        kernel_side(iface)?;
        let socket = UdpSocket::bind((KERNEL_IP, 0)).map_err(|e| format!("bind {KERNEL_IP}: {e}"))?;
        // Priming: a few frames so the backend resolves its own media
        // addresses (ARP through the ring) before the real population goes in;
        // those that arrive unresolved are dropped.
        let stats = || handle.worker_stats()[0].clone();
        for (i, &to) in entries.iter().enumerate().take(4 * usize::from(MEDIA_IPS)) {
            let _ = socket.send_to(&rtp_packet(i as u32, 1, 0), to);
        }
        std::thread::sleep(Duration::from_millis(300));
        let before = stats();
        // The population, spread evenly over the chain, in small groups so
        // the TAP queue and the ring never overflow.
        let frames = FRAMES.min(sessions);
        for k in 0..frames {
            let i = k * sessions / frames;
            socket.send_to(&rtp_packet(i as u32, 1, 0), entries[i]).map_err(|e| format!("inject: {e}"))?;
            if k % 64 == 63 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        std::thread::sleep(Duration::from_millis(500));

        let cpu = || crate::process::cpu_seconds(std::process::id());
        let (t0, tsc0, s0, cpu0) = (Instant::now(), dpdk_sys::rdtsc(), stats(), cpu()?);
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let (t1, tsc1, s1, cpu1) = (Instant::now(), dpdk_sys::rdtsc(), stats(), cpu()?);
        let relayed = s1.tx_packets - s0.tx_packets;
        if relayed == 0 {
            return Err(format!(
                "no frame circulated (worker counters after injection: rx {} tx {}, drops {:?})",
                s1.rx_packets - before.rx_packets,
                s1.tx_packets - before.tx_packets,
                s1.drops.iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>()
            ));
        }
        let secs = (t1 - t0).as_secs_f64();
        let dropped = |s: &dataplane::engine::counters::WorkerSnapshot| s.drops.iter().map(|&(_, n)| n).sum::<u64>();
        Ok(serde_json::json!({
            "mpps": relayed as f64 / secs / 1e6,
            "cycles_per_packet": (tsc1 - tsc0) as f64 / relayed as f64,
            "tsc_hz": (tsc1 - tsc0) as f64 / secs,
            // This process's CPU time over the window: the spinning worker
            // (the other threads sleep).
            "busy": (cpu1 - cpu0) / secs,
            "sessions": sessions,
            "frames_injected": frames,
            "dropped_in_window": dropped(&s1) - dropped(&s0),
            "idle_loops_in_window": s1.idle_loops - s0.idle_loops,
            "loops_in_window": s1.loops - s0.loops,
        }))
    }

    fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), ()> {
        let deadline = Instant::now() + limit;
        while !done() {
            if Instant::now() > deadline {
                return Err(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// The kernel's end of the TAP: up, with 198.18.0.254/24, and the media
    /// addresses pinned to the port's MAC (the TAP carries the port's MAC).
    fn kernel_side(iface: &str) -> Result<(), String> {
        // Asked over rtnetlink: sysfs shows the namespace it was mounted
        // in, and the bench runs in one of its own.
        let tap = dataplane::io::af_xdp::kernel::interface(iface).map_err(|e| format!("TAP interface: {e}"))?;
        let mac = tap.mac.to_string();
        let mac = mac.as_str();
        ip(&["link", "set", iface, "up"])?;
        ip(&["addr", "add", &format!("{KERNEL_IP}/24"), "dev", iface])?;
        for i in 0..MEDIA_IPS {
            ip(&["neigh", "replace", &media_ip(i).to_string(), "lladdr", mac, "dev", iface, "nud", "permanent"])?;
        }
        Ok(())
    }

    fn ip(args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
        if !out.status.success() {
            return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(())
    }
}
