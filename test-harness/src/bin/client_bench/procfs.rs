//! What the bench reads of a process in `/proc`: its proportional set size
//! (`smaps_rollup`), its CPU time (`stat`, every thread; per thread name
//! from `task/*/stat`) and its open descriptors.

use anyhow::{Context, Result};
use std::collections::BTreeMap;

/// `USER_HZ`: ticks per second of `utime`/`stime` (fixed by the Linux ABI).
const USER_HZ: f64 = 100.0;

/// The `Pss:` and `Rss:` lines of `/proc/PID/smaps_rollup`, KiB.
pub fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).context("smaps_rollup")?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .with_context(|| format!("no {name} in smaps_rollup"))
    };
    Ok((field("Pss:")?, field("Rss:")?))
}

/// utime + stime of one `stat` line, seconds; the name in parentheses.
fn stat_line(text: &str) -> Option<(String, f64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text[open + 1..close].to_string();
    let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
    // After the name: state is field 3 of stat(5), utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) as f64 / USER_HZ))
}

/// CPU seconds of the whole process (every thread).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("stat")?;
    Ok(stat_line(&text).context("unreadable stat")?.1)
}

/// CPU seconds by thread name (threads of one name summed).
pub fn cpu_by_thread(pid: u32) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).context("task")? {
        let Ok(text) = std::fs::read_to_string(entry?.path().join("stat")) else { continue };
        if let Some((name, s)) = stat_line(&text) {
            *out.entry(name).or_insert(0.0) += s;
        }
    }
    Ok(out)
}

/// Open file descriptors.
pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The network namespace's TCP counters that say whether handshakes were
/// lost on the way (`/proc/net/netstat` TcpExt, `/proc/net/snmp` Tcp):
/// listen queue overflows, SYN cookies, retransmitted segments.
pub fn tcp_counters() -> BTreeMap<String, u64> {
    const WANTED: &[&str] =
        &["ListenOverflows", "ListenDrops", "SyncookiesSent", "TCPReqQFullDrop", "TCPTimeouts", "RetransSegs"];
    let mut out = BTreeMap::new();
    for file in ["/proc/net/netstat", "/proc/net/snmp"] {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        // Pairs of lines: `Prefix: name name ...` then `Prefix: value value ...`.
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            for (name, value) in names.split_whitespace().zip(values.split_whitespace()).skip(1) {
                if WANTED.contains(&name) {
                    out.insert(name.to_string(), value.parse().unwrap_or(0));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_stat_line_with_spaces_in_the_name() {
        let line = "1234 (tokio w (1)) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(stat_line(line), Some(("tokio w (1)".to_string(), 3.0)));
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id();
        let (pss, rss) = memory_kib(me).unwrap();
        assert!(pss > 0 && rss >= pss / 2);
        assert!(cpu_seconds(me).is_ok());
        assert!(!cpu_by_thread(me).unwrap().is_empty());
        assert!(open_files(me) > 2);
    }
}
