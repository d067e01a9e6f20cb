//! The two sipp ends (Debian `sip-tester`, SIPp 3.6): the callee, one
//! process per side, and the caller, one process per step.
//!
//! The caller's outcome comes from its statistics file (`-trace_stat`, last
//! line: cumulative counters) and, for the notes, from its error log
//! (`-trace_err`: what it received instead of what it expected).

use crate::echo_count::EchoCount;
use crate::netplan::{self, HOLD_SECONDS, MEDIA_PORT, NUMBER, SIP_PORT, UAC, UAS};
use crate::process::Child;
use crate::rig::{which, Rig};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// SIP socket buffers of both ends (`-buff_size`), so that a burst of
/// messages is not dropped by the tester's own socket (the kernel caps it
/// at `net.core.rmem_max`).
const SIP_BUFFER: &str = "4194304";
/// A call whose next message does not come within this is failed.
const RECV_TIMEOUT_MS: &str = "10000";
/// The callee keeps a half-done call this long before dropping it.
const CALLEE_RECV_TIMEOUT_MS: &str = "20000";
/// Error logs are cut at this size (a failing step can log every call).
const MAX_LOG: &str = "2000000";
/// Time a caller may take beyond placing its calls and the hold.
const CALLER_SLACK: Duration = Duration::from_secs(30);

fn sipp() -> Result<PathBuf> {
    which("sipp", "sip-tester")
}

/// The callee and the counter of RTP packets returning to it.
pub struct Callee {
    pub child: Child,
    pub echo: EchoCount,
    stats: PathBuf,
}

/// The callee's own count of failed calls so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct CalleeFailures {
    pub failed: u64,
    /// Of which: no ACK or no BYE within its receive timeout (20 s).
    pub timed_out: u64,
}

impl Callee {
    /// From its statistics file (written every second).
    pub fn failures(&self) -> Option<CalleeFailures> {
        let row = last_row(&std::fs::read_to_string(&self.stats).ok()?)?;
        let n = |k: &str| row.get(k).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
        Some(CalleeFailures { failed: n("FailedCall(C)"), timed_out: n("FailedTimeoutOnRecv(C)") })
    }
}

/// Starts the callee (uas.xml) and primes the counter on its media socket.
pub fn start_callee(rig: &Rig, tag: &str) -> Result<Callee> {
    let errors = rig.dir().join(format!("{tag}-uas-errors.log"));
    let stats = rig.dir().join(format!("{tag}-uas.csv"));
    let args = [
        "-sf",
        &rig.uas_xml.to_string_lossy(),
        "-i",
        &UAS.to_string(),
        "-p",
        &SIP_PORT.to_string(),
        "-t",
        "u1",
        "-mi",
        &UAS.to_string(),
        "-mp",
        &MEDIA_PORT.to_string(),
        "-buff_size",
        SIP_BUFFER,
        "-recv_timeout",
        CALLEE_RECV_TIMEOUT_MS,
        "-nostdin",
        "-trace_stat",
        "-stf",
        &stats.to_string_lossy(),
        "-fd",
        "1",
        "-trace_err",
        "-error_file",
        &errors.to_string_lossy(),
        "-max_log_size",
        MAX_LOG,
    ]
    .map(String::from)
    .to_vec();
    let mut child = rig.spawn("sipp callee", &format!("{tag}-uas"), &sipp()?, args)?;
    let echo = EchoCount::new(child.pid(), netplan::uas_media());
    let deadline = Instant::now() + Duration::from_secs(5);
    while echo.count().is_err() {
        child.check_running()?;
        if Instant::now() > deadline {
            bail!("sipp callee: no media socket {} after 5 s", netplan::uas_media());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    echo.prime(rig, netplan::uas_media()).context("priming the callee's media socket")?;
    Ok(Callee { child, echo, stats })
}

/// What one run of the caller did.
#[derive(Debug, Clone, Default)]
pub struct CallerOutcome {
    pub created: u64,
    pub successful: u64,
    pub failed: u64,
    /// Mean INVITE -> 200 time, seconds (sipp's resolution: 1 ms).
    pub setup_s: Option<f64>,
    /// From start to exit.
    pub wall_s: f64,
    /// Killed after the deadline, or exited without statistics.
    pub problem: Option<String>,
    /// The most frequent complaints of the error log, with their counts.
    pub errors: Vec<(String, u64)>,
}

/// Places `calls` calls at `rate` a second to `target` (uac.xml) and waits
/// until all ended.
pub fn run_caller(rig: &Rig, target: SocketAddr, rate: u32, calls: u64, tag: &str) -> Result<CallerOutcome> {
    let stats = rig.dir().join(format!("{tag}.csv"));
    let errors = rig.dir().join(format!("{tag}-errors.log"));
    // Room for every call of 4 s at this rate: a system that slows down
    // hits the limit, and the rate it achieves shows it.
    let limit = (u64::from(rate) * 4 + 100).to_string();
    let args = [
        &target.to_string(),
        "-sf",
        &rig.uac_xml.to_string_lossy(),
        "-s",
        NUMBER,
        "-i",
        &UAC.to_string(),
        "-p",
        &SIP_PORT.to_string(),
        "-t",
        "u1",
        "-mi",
        &UAC.to_string(),
        "-mp",
        &MEDIA_PORT.to_string(),
        "-rtp_echo",
        "-r",
        &rate.to_string(),
        "-rp",
        "1000",
        "-m",
        &calls.to_string(),
        "-l",
        &limit,
        "-buff_size",
        SIP_BUFFER,
        "-recv_timeout",
        RECV_TIMEOUT_MS,
        "-nostdin",
        "-trace_stat",
        "-stf",
        &stats.to_string_lossy(),
        "-fd",
        "1",
        "-trace_err",
        "-error_file",
        &errors.to_string_lossy(),
        "-max_log_size",
        MAX_LOG,
    ]
    .map(String::from)
    .to_vec();
    let start = Instant::now();
    let mut child = rig.spawn("sipp caller", tag, &sipp()?, args)?;
    let expected = Duration::from_secs_f64(calls as f64 / f64::from(rate) + HOLD_SECONDS);
    let status = child.wait_until(start + expected + CALLER_SLACK)?;
    let wall_s = start.elapsed().as_secs_f64();
    let mut outcome = CallerOutcome { wall_s, ..CallerOutcome::default() };
    if status.is_none() {
        outcome.problem = Some(format!(
            "sipp caller still running {:.0} s after its last call was due; killed",
            CALLER_SLACK.as_secs_f64()
        ));
        child.stop();
    }
    drop(child);
    match std::fs::read_to_string(&stats).ok().as_deref().and_then(last_row) {
        Some(row) => {
            let n = |k: &str| row.get(k).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
            outcome.created = n("OutgoingCall(C)");
            outcome.successful = n("SuccessfulCall(C)");
            outcome.failed = n("FailedCall(C)");
            outcome.setup_s = row.get("ResponseTimesetup(C)").and_then(|v| duration(v));
        }
        None => {
            outcome.problem.get_or_insert_with(|| {
                format!("no statistics in {}; see {}", stats.display(), rig.dir().join(format!("{tag}.log")).display())
            });
        }
    }
    outcome.errors = summarize_errors(&std::fs::read_to_string(&errors).unwrap_or_default(), 3);
    Ok(outcome)
}

/// The last data row of a sipp statistics file, by column name.
fn last_row(csv: &str) -> Option<BTreeMap<String, String>> {
    let lines: Vec<&str> = csv.lines().filter(|l| !l.trim().is_empty()).collect();
    let header: Vec<&str> = lines.first()?.split(';').collect();
    let last: Vec<&str> = lines.get(1..)?.last()?.split(';').collect();
    Some(header.iter().zip(last).map(|(k, v)| (k.trim().to_string(), v.to_string())).collect())
}

/// sipp's `HH:MM:SS:uuuuuu` in seconds.
fn duration(text: &str) -> Option<f64> {
    let f: Vec<f64> = text.trim().split(':').map(|p| p.parse::<f64>().ok()).collect::<Option<_>>()?;
    match f[..] {
        [h, m, s, us] => Some(h * 3600.0 + m * 60.0 + s + us / 1e6),
        _ => None,
    }
}

/// The complaints of a sipp error log, call ids taken out so that equal
/// complaints add up, most frequent first.
///
/// Each complaint starts with a time stamp (`2026-11-25<TAB>20:14:25.370068
/// <TAB>1795637665.370068: `) and runs to the end of its line; some end
/// without a line break, so the next stamp also ends one. A received
/// message quoted in a complaint continues on the lines after it.
fn summarize_errors(log: &str, keep: usize) -> Vec<(String, u64)> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let starts: Vec<usize> = (0..log.len()).filter(|&i| is_stamp(&log.as_bytes()[i..])).collect();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(log.len());
        let entry = &log[start..end];
        let line = entry.lines().next().unwrap_or_default();
        let Some((_, text)) = line.split_once(": ") else { continue };
        let text: Vec<&str> = text.split_whitespace().map(|w| if w.contains('@') { "*" } else { w }).collect();
        *counts.entry(text.join(" ")).or_default() += 1;
    }
    let mut all: Vec<(String, u64)> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(keep);
    all
}

/// `YYYY-MM-DD<TAB>` at the start of `b`.
fn is_stamp(b: &[u8]) -> bool {
    const SHAPE: &[u8] = b"0000-00-00\t";
    b.len() >= SHAPE.len() && SHAPE.iter().zip(b).all(|(&s, &c)| if s == b'0' { c.is_ascii_digit() } else { s == c })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_row_by_column() {
        let csv = "StartTime;OutgoingCall(C);SuccessfulCall(C);ResponseTimesetup(C);\n\
                   x;0;0;00:00:00:000000;\n\
                   y;100;98;00:00:00:012000;\n";
        let row = last_row(csv).unwrap();
        assert_eq!(row["OutgoingCall(C)"], "100");
        assert_eq!(row["SuccessfulCall(C)"], "98");
        assert_eq!(duration(&row["ResponseTimesetup(C)"]), Some(0.012));
        assert_eq!(duration("00:01:02:500000"), Some(62.5));
        assert_eq!(duration("junk"), None);
    }

    #[test]
    fn errors_add_up_without_call_ids() {
        let log = "The following events occurred:\n\
                   2026-11-25\t20:04:05.718584\t1795637045.718584: Aborting call on unexpected message for Call-Id '1-99@127.0.0.2': while expecting '200' (index 4), received 'SIP/2.0 501 Not Implemented\n\
                   Via: SIP/2.0/UDP 127.0.0.2:5060\n\
                   '2026-11-25\t20:04:05.818584\t1795637045.818584: Aborting call on unexpected message for Call-Id '2-99@127.0.0.2': while expecting '200' (index 4), received 'SIP/2.0 501 Not Implemented\n\
                   '2026-11-25\t20:04:06.000000\t1795637046.000000: Call-Id: 3-99@127.0.0.2, receive timeout on message x:8 without label: aborting call\
                   2026-11-25\t20:04:06.000001\t1795637046.000001: Call-Id: 4-99@127.0.0.2, receive timeout on message x:8 without label: aborting call\
                   2026-11-25\t20:04:06.000002\t1795637046.000002: Dead call 4-99@127.0.0.2 (successful), received 'SIP/2.0 200 OK\n";
        let s = summarize_errors(log, 3);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0].1, 2);
        assert_eq!(s[1].1, 2);
        assert_eq!(s[0].0, "Aborting call on unexpected message for Call-Id * while expecting '200' (index 4), received 'SIP/2.0 501 Not Implemented");
        assert_eq!(s[1].0, "Call-Id: * receive timeout on message x:8 without label: aborting call");
        assert_eq!(s[2], ("Dead call * (successful), received 'SIP/2.0 200 OK".to_string(), 1));
    }
}
