//! CPU time of processes, from `/proc/<pid>/stat`: user + system time of
//! every thread, in `USER_HZ` ticks (100 a second, fixed by the Linux ABI).
//!
//! A system under test may be several processes (kamailio forks its
//! workers): its time is the sum over the process and its descendants,
//! each counting the children it already reaped (`cutime`, `cstime`), so a
//! worker that exits between two readings is not lost.

use anyhow::{Context, Result};

const USER_HZ: f64 = 100.0;

/// The fields of a `/proc/<pid>/stat` line used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    ppid: u32,
    /// utime + stime of its threads, ticks.
    own: u64,
    /// cutime + cstime: its reaped children's, ticks.
    reaped: u64,
    /// Start time after boot, ticks: with the pid, names one process.
    start: u64,
}

/// A process named by pid and start time (a pid alone may be reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    start: u64,
}

/// Parses a stat line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse(line: &str) -> Option<Stat> {
    let rest = &line[line.rfind(')')? + 1..];
    // rest[0] is field 3 (state).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        ppid: u32::try_from(num(1)?).ok()?,
        own: num(11)? + num(12)?,
        reaped: num(13)? + num(14)?,
        start: num(19)?,
    })
}

fn stat(pid: u32) -> Option<Stat> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().as_deref().and_then(parse)
}

/// Every process of the machine with its stat.
fn all() -> Vec<(u32, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| stat(pid).map(|s| (pid, s)))
        .collect()
}

/// The processes below `root` (children, their children, ...).
pub fn descendants(root: u32) -> Vec<ProcessId> {
    let procs = all();
    let mut found: Vec<ProcessId> = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for (pid, s) in procs.iter().filter(|(_, s)| s.ppid == parent) {
            found.push(ProcessId { pid: *pid, start: s.start });
            parents.push(*pid);
        }
    }
    found
}

/// Whether that process still exists (same pid, same start time).
pub fn same_process(p: ProcessId) -> bool {
    stat(p.pid).is_some_and(|s| s.start == p.start)
}

/// CPU seconds of `root` and its descendants so far.
pub fn tree_seconds(root: u32) -> Result<f64> {
    let root_stat = stat(root).with_context(|| format!("/proc/{root}/stat: no such process"))?;
    let procs = all();
    let mut ticks = root_stat.own + root_stat.reaped;
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for (pid, s) in procs.iter().filter(|(_, s)| s.ppid == parent) {
            ticks += s.own + s.reaped;
            parents.push(*pid);
        }
    }
    Ok(ticks as f64 / USER_HZ)
}

/// CPU seconds of one process, split by thread name: threads named alike
/// but for a number at the end (`dp-worker-0`, `dp-worker-1`) add up; what
/// exited threads and reaped children used is `other`. The parts add up to
/// the process's time.
pub fn by_thread_name(pid: u32) -> Result<Vec<(String, f64)>> {
    let total = stat(pid).with_context(|| format!("/proc/{pid}/stat: no such process"))?;
    let mut parts: Vec<(String, u64)> = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("/proc/{pid}/task"))?;
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(comm), Some(t)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")).ok().as_deref().and_then(parse),
        ) else {
            continue; // exited meanwhile
        };
        let name = comm.trim().trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches(['-', '_', ' ']);
        let name = if name.is_empty() { comm.trim() } else { name };
        match parts.iter_mut().find(|(n, _)| n == name) {
            Some((_, ticks)) => *ticks += t.own,
            None => parts.push((name.to_string(), t.own)),
        }
    }
    let live: u64 = parts.iter().map(|(_, t)| t).sum();
    parts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    parts.push(("other".into(), (total.own + total.reaped).saturating_sub(live)));
    Ok(parts.into_iter().map(|(n, t)| (n, t as f64 / USER_HZ)).collect())
}

/// CPU seconds of the children this process has reaped so far: a step's
/// sipp UAC, once waited for, lands here.
pub fn reaped_by_us_seconds() -> Result<f64> {
    let s = stat(std::process::id()).context("/proc/self/stat")?;
    Ok(s.reaped as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_fields() {
        let line = "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 75 30 5 20 0 3 0 12345 1000000 200 18446744073709551615";
        assert_eq!(parse(line), Some(Stat { ppid: 17, own: 325, reaped: 35, start: 12345 }));
    }

    #[test]
    fn own_process_is_found() {
        assert!(tree_seconds(std::process::id()).is_ok());
        assert!(reaped_by_us_seconds().is_ok());
        let me = ProcessId { pid: std::process::id(), start: stat(std::process::id()).map_or(0, |s| s.start) };
        assert!(same_process(me));
        let parts = by_thread_name(std::process::id()).unwrap();
        assert_eq!(parts.last().map(|(n, _)| n.as_str()), Some("other"));
    }
}
