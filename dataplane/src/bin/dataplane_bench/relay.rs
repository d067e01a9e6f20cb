//! One measurement of a UDP relay under load, the same for every relay
//! (ours, the plain kernel relay, rtpengine): the load generator is started
//! on one core, the relay on the other; the generator sends to the relay's
//! leg-0 addresses; after a warm-up the relay's CPU time and the datagrams
//! delivered to the sinks are read at the start and the end of a window.

use crate::process::{Agent, Stop};
use crate::sinks::Sinks;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The core the relay under test runs on; the load generator takes the other.
pub const RELAY_CORE: usize = 0;
pub const LOAD_CORE: usize = 1;
/// Source sockets of the load generator.
pub const LOAD_SOCKETS: usize = 4;
/// How long a child may take to answer a line.
pub const ANSWER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub window: Duration,
    /// Datagrams per second the generator offers (0: as many as it can).
    pub rate_pps: u64,
}

/// What one relay did in the measurement window.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayFigures {
    /// Datagrams delivered to the sinks.
    pub forwarded: u64,
    /// Datagrams the generator handed to the kernel.
    pub offered: u64,
    /// CPU time of the relay process (user + system).
    pub cpu_s: f64,
    pub window_s: f64,
    /// What the relay says it sent, when it can tell.
    pub self_reported: Option<u64>,
}

impl RelayFigures {
    /// Datagrams relayed per second of the relay's CPU time: its rate on one
    /// core it had to itself. Unlike the rate over the wall clock it does not
    /// depend on the load saturating the relay, nor on what else ran.
    pub fn kpps(&self) -> f64 {
        if self.cpu_s > 0.0 {
            self.forwarded as f64 / self.cpu_s / 1e3
        } else {
            0.0
        }
    }

    /// Datagrams relayed per second of the window (wall clock).
    pub fn wall_kpps(&self) -> f64 {
        self.forwarded as f64 / self.window_s / 1e3
    }

    pub fn offered_kpps(&self) -> f64 {
        self.offered as f64 / self.window_s / 1e3
    }

    /// Share of one core the relay used.
    pub fn busy(&self) -> f64 {
        self.cpu_s / self.window_s
    }

    /// Relay CPU microseconds per delivered datagram.
    pub fn cpu_us_per_packet(&self) -> Option<f64> {
        (self.forwarded > 0).then(|| self.cpu_s * 1e6 / self.forwarded as f64)
    }
}

/// Starts the load generator (`dataplane-bench load`) on [`LOAD_CORE`],
/// offering `rate_pps` (0: as fast as it can), and returns it with its
/// source addresses; it waits for its targets.
pub fn start_load(rate_pps: u64) -> Result<(Agent, Vec<SocketAddr>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let args = ["load", "--sockets", &LOAD_SOCKETS.to_string(), "--rate", &rate_pps.to_string()].map(String::from);
    let cmd = crate::process::command(&exe, &args, Some(LOAD_CORE));
    let mut load = Agent::spawn("load generator", cmd, crate::process::log_file("load"), Stop::CloseStdin)?;
    let hello = load.json(ANSWER)?;
    let sources = addrs(&hello, "sources")?;
    Ok((load, sources))
}

/// Reads a list of socket addresses from a JSON object.
pub fn addrs(v: &serde_json::Value, key: &str) -> Result<Vec<SocketAddr>, String> {
    v[key]
        .as_array()
        .ok_or_else(|| format!("no {key:?} in {v}"))?
        .iter()
        .map(|a| a.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad address {a}")))
        .collect()
}

pub fn join(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// Drives `targets` with the generator and measures the process `relay_pid`.
/// `stats` is the relay's own agent when it speaks the relay protocol.
pub fn measure(
    load: &mut Agent,
    relay_pid: u32,
    mut stats: Option<&mut Agent>,
    targets: &[SocketAddr],
    sinks: &Sinks,
    timing: Timing,
) -> Result<RelayFigures, String> {
    let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
    load.send(&serde_json::json!({ "targets": targets }).to_string())?;
    std::thread::sleep(timing.warmup);

    let sample = |load: &mut Agent, stats: &mut Option<&mut Agent>| -> Result<Sample, String> {
        let at = Instant::now();
        let cpu = crate::process::cpu_seconds(relay_pid)?;
        let delivered = sinks.dropped()?;
        let sent = load.ask("stats", ANSWER)?["sent"].as_u64().unwrap_or(0);
        let relayed = match stats {
            Some(agent) => agent.ask("stats", ANSWER)?["tx_packets"].as_u64(),
            None => None,
        };
        Ok(Sample { at, cpu, delivered, sent, relayed })
    };
    let start = sample(load, &mut stats)?;
    std::thread::sleep(timing.window);
    let end = sample(load, &mut stats)?;
    load.send("stop")?;
    let _ = load.json(ANSWER);

    Ok(RelayFigures {
        forwarded: end.delivered.saturating_sub(start.delivered),
        offered: end.sent.saturating_sub(start.sent),
        cpu_s: end.cpu - start.cpu,
        window_s: (end.at - start.at).as_secs_f64(),
        self_reported: end.relayed.zip(start.relayed).map(|(e, s)| e.saturating_sub(s)),
    })
}

struct Sample {
    at: Instant,
    cpu: f64,
    delivered: u64,
    sent: u64,
    relayed: Option<u64>,
}
