//! Part 3: the socket backend against a plain kernel UDP relay, on loopback,
//! with the same sessions, load, sinks and window.
//!
//! - ours: `dataplane-bench serve-sockets` (the real [`Dataplane`] with one
//!   worker) on [`RELAY_CORE`](crate::relay::RELAY_CORE);
//! - the reference: `test-harness`'s `kernel_relay` on the same core.
//!
//! [`Dataplane`]: dataplane::Dataplane

use crate::process::{self, Agent, Stop};
use crate::relay::{self, RelayFigures, Timing, RELAY_CORE};
use crate::sinks::Sinks;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// First media port of our dataplane: below Linux's ephemeral range
/// (32768-60999), where the generator, the sinks and the kernel relay bind.
const FIRST_PORT: u16 = 20000;
/// Sessions are created and installed before the relay answers.
const SETUP: Duration = Duration::from_secs(60);

/// Ours, then the kernel relay's figures (each `None` when it could not run).
pub struct SocketFigures {
    pub ours: Result<RelayFigures, String>,
    pub kernel: Result<RelayFigures, String>,
}

/// Where `kernel_relay` is: given, or beside this program (same target folder).
pub fn find_kernel_relay(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = given {
        return Some(p.to_path_buf());
    }
    let exe = std::env::current_exe().ok()?;
    let beside = exe.parent()?.join("kernel_relay");
    beside.is_file().then_some(beside).or_else(|| process::which("kernel_relay"))
}

pub fn run(sessions: usize, timing: Timing, sinks: &Sinks, kernel_relay: Option<&Path>) -> SocketFigures {
    let ours = measure_ours(sessions, timing, sinks, None);
    let kernel = match find_kernel_relay(kernel_relay) {
        Some(path) => measure_kernel(&path, sessions, timing, sinks),
        None => Err("kernel_relay not found: build it with `cargo build --release -p test-harness --bin kernel_relay`, or pass --kernel-relay PATH".into()),
    };
    SocketFigures { ours, kernel }
}

/// The leg ports ours needs: two even ports per session (RTCP muxed, but a
/// leg keeps its odd neighbour), with room to skip ports in use elsewhere.
pub fn our_ports(sessions: usize) -> String {
    let last = usize::from(FIRST_PORT) + 4 * sessions + 199;
    format!("{FIRST_PORT}-{}", last.min(32767))
}

/// Ours on the AF_XDP backend on loopback, same load and sinks.
pub fn run_af_xdp(sessions: usize, timing: Timing, sinks: &Sinks) -> Result<RelayFigures, String> {
    measure_ours(sessions, timing, sinks, Some("lo"))
}

fn measure_ours(sessions: usize, timing: Timing, sinks: &Sinks, af_xdp: Option<&str>) -> Result<RelayFigures, String> {
    let (mut load, sources) = relay::start_load(timing.rate_pps)?;
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let mut args = vec![
        "serve-sockets".to_string(),
        "--sessions".into(),
        sessions.to_string(),
        "--ports".into(),
        our_ports(sessions),
        "--sources".into(),
        relay::join(&sources),
        "--sinks".into(),
        relay::join(&sinks.addrs()),
    ];
    if let Some(interface) = af_xdp {
        args.extend(["--af-xdp".into(), interface.into()]);
    }
    let name = if af_xdp.is_some() { "serve-af-xdp" } else { "serve-sockets" };
    let cmd = process::command(&exe, &args, Some(RELAY_CORE));
    let mut ours = Agent::spawn(name, cmd, process::log_file(name), Stop::CloseStdin)?;
    let targets = relay::addrs(&ours.json(SETUP)?, "targets")?;
    let pid = ours.pid();
    let figures = relay::measure(&mut load, pid, Some(&mut ours), &targets, sinks, timing);
    ours.stop();
    load.stop();
    figures
}

fn measure_kernel(path: &Path, sessions: usize, timing: Timing, sinks: &Sinks) -> Result<RelayFigures, String> {
    let (mut load, sources) = relay::start_load(timing.rate_pps)?;
    let args = [
        "--sessions".to_string(),
        sessions.to_string(),
        "--sources".into(),
        relay::join(&sources),
        "--sinks".into(),
        relay::join(&sinks.addrs()),
    ];
    let cmd = process::command(path, &args, Some(RELAY_CORE));
    let mut kernel = Agent::spawn("kernel_relay", cmd, process::log_file("kernel_relay"), Stop::CloseStdin)?;
    let targets = relay::addrs(&kernel.json(SETUP)?, "targets")?;
    let pid = kernel.pid();
    let figures = relay::measure(&mut load, pid, Some(&mut kernel), &targets, sinks, timing);
    kernel.stop();
    load.stop();
    figures
}
