//! Part 2: `dpdk-testpmd` io forwarding between two `net_null` ports, the
//! reference for the DPDK relay: how many packets one core moves from rx to
//! tx when nothing is done to them.
//!
//! testpmd runs with lcore 0 as its main core and lcore 1 forwarding both
//! streams (port 0 -> 1 and 1 -> 0). With `--stats-period 1` it prints each
//! port's `Tx-pps` every second; a second's figure is the sum over both
//! ports (the one forwarding core sent all of it). The first report (no
//! rate yet) is skipped, the rest averaged.

use crate::process::{self, Agent, Stop};
use std::path::Path;
use std::time::{Duration, Instant};

/// `Ok(None)`: `dpdk-testpmd` is not installed.
pub fn run(seconds: u64) -> Result<Option<f64>, String> {
    let Some(binary) = process::which("dpdk-testpmd") else {
        return Ok(None);
    };
    let prefix = format!("bench-testpmd-{}", std::process::id());
    let args: Vec<String> = [
        "--no-huge",
        "--no-pci",
        "-m",
        "1024",
        "--vdev",
        "net_null0",
        "--vdev",
        "net_null1",
        "--file-prefix",
        &prefix,
        "-l",
        "0,1",
        "--",
        "--forward-mode=io",
        "--no-lsc-interrupt",
        "--stats-period",
        "1",
        // Debian 22.11 here: locking all memory fails in small containers,
        // and the default mbuf count wants more than --no-huge's memory.
        "--no-mlockall",
        "--total-num-mbufs=8192",
    ]
    .map(String::from)
    .to_vec();
    // testpmd pins its own lcores (-l 0,1).
    let cmd = process::command(Path::new(&binary), &args, None);
    let mut testpmd = Agent::spawn("dpdk-testpmd", cmd, process::log_file("testpmd"), Stop::Terminate)?;
    let deadline = Instant::now() + Duration::from_secs(seconds + 5);
    let mut rates: Vec<f64> = Vec::new();
    let mut snapshot: Vec<f64> = Vec::new();
    // Reports come one per second; stop after `seconds` of them past the first.
    while rates.len() < seconds as usize + 1 && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = testpmd.line(left) else { break };
        if line.contains("Port statistics") && !snapshot.is_empty() {
            rates.push(snapshot.drain(..).sum());
        }
        if let Some(pps) = tx_pps(&line) {
            snapshot.push(pps);
        }
    }
    testpmd.stop();
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    // The first report has no rate yet.
    let rates: Vec<f64> = rates.into_iter().skip(1).filter(|&r| r > 0.0).collect();
    if rates.is_empty() {
        return Err(format!(
            "dpdk-testpmd reported no forwarding rate; see {}",
            process::log_path("testpmd").display()
        ));
    }
    Ok(Some(rates.iter().sum::<f64>() / rates.len() as f64 / 1e6))
}

/// The value of a `Tx-pps: N` line.
fn tx_pps(line: &str) -> Option<f64> {
    let rest = &line[line.find("Tx-pps:")? + "Tx-pps:".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tx_rate() {
        assert_eq!(tx_pps("  Tx-pps:     31559763          Tx-bps:            0"), Some(31_559_763.0));
        assert_eq!(tx_pps("  Rx-pps:     31559747          Rx-bps:  0"), None);
    }
}
