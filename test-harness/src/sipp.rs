//! Runs sipp (Debian `sip-tester`) with a scenario of `test-harness/sipp/`
//! inside a test namespace, with the values a scenario needs injected, and
//! reads back what it did.
//!
//! ```text
//!   test ── Sipp::new(scenario, local).remote(..).key(..).set(..) ── start_in(ns) ──▶ SippRun
//!     │                                                    (sipp in its scratch directory)
//!     ├── wait_log(..)   the scenario's <log> lines (an SDP's address, a Call-ID, an event)
//!     ├── poke(call_id)  an INFO to sipp itself: "go on" for a scenario waiting in <recv request="INFO">
//!     └── wait(..)       the exit status, with the errors and the message trace for the assertion
//! ```
//!
//! Values reach a scenario three ways: `-key name value` (`[name]` in
//! messages), `-set name value` (the global variable `$name`, declared with
//! `<Global variables="name"/>`; the only way to compare a received value
//! with a given one, since sipp does not expand keywords in `regexp`), and
//! `-inf` (`[field0]`... from one CSV row per call). `-s` sets `[service]`,
//! the user part of the Request-URI.
//!
//! sipp writes its screens, message trace, errors and `<log>` lines into a
//! scratch directory that lives as long as the [`SippRun`]; the process is
//! killed on drop.

use crate::appliance::{wait_bounded, ScratchDir};
use crate::netns::{Netns, NetnsHandle};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `sip-tester` puts sipp.
pub const SIPP: &str = "/usr/bin/sipp";
/// How long sipp may take to bind its signaling port.
const BIND_WITHIN: Duration = Duration::from_secs(5);

/// A scenario file of this crate (`test-harness/sipp/<name>`).
pub fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp").join(name)
}

/// sipp's own transport (`-t`): one socket either way. TLS is not in
/// Debian's build; a test puts a TLS relay in front of a TCP sipp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

/// One sipp run, being described.
#[derive(Debug, Clone)]
pub struct Sipp {
    scenario: String,
    local: SocketAddr,
    remote: Option<SocketAddr>,
    transport: Transport,
    calls: u32,
    service: Option<String>,
    keys: Vec<(String, String)>,
    sets: Vec<(String, String)>,
    rows: Option<Vec<Vec<String>>>,
    timeout: Duration,
}

impl Sipp {
    /// `scenario` (a file of `test-harness/sipp/`) on `local` (`-i`, `-p`),
    /// over UDP, one call, 60 s at most.
    pub fn new(scenario: &str, local: SocketAddr) -> Sipp {
        Sipp {
            scenario: scenario.to_owned(),
            local,
            remote: None,
            transport: Transport::Udp,
            calls: 1,
            service: None,
            keys: Vec::new(),
            sets: Vec::new(),
            rows: None,
            timeout: Duration::from_secs(60),
        }
    }

    /// Where a client scenario sends its calls (a server scenario has none).
    pub fn remote(mut self, addr: SocketAddr) -> Sipp {
        self.remote = Some(addr);
        self
    }

    pub fn transport(mut self, transport: Transport) -> Sipp {
        self.transport = transport;
        self
    }

    /// Calls to place, or to take before exiting (`-m`).
    pub fn calls(mut self, calls: u32) -> Sipp {
        self.calls = calls;
        self
    }

    /// `[service]`, the user part of the Request-URI (`-s`).
    pub fn service(mut self, user: &str) -> Sipp {
        self.service = Some(user.to_owned());
        self
    }

    /// `[name]` in the scenario's messages (`-key`).
    pub fn key(mut self, name: &str, value: impl ToString) -> Sipp {
        self.keys.push((name.to_owned(), value.to_string()));
        self
    }

    /// The global variable `$name` (`-set`; the scenario declares it).
    pub fn set(mut self, name: &str, value: impl ToString) -> Sipp {
        self.sets.push((name.to_owned(), value.to_string()));
        self
    }

    /// `[field0]`, `[field1]`... one row per call, in order (`-inf`).
    pub fn inject(mut self, rows: Vec<Vec<String>>) -> Sipp {
        self.rows = Some(rows);
        self
    }

    /// sipp's global timeout: it gives up (and fails) after this.
    pub fn timeout(mut self, timeout: Duration) -> Sipp {
        self.timeout = timeout;
        self
    }

    /// Starts sipp inside `ns` and waits until it holds its signaling port.
    pub fn start_in(self, ns: &Netns) -> Result<SippRun> {
        let sipp = Path::new(SIPP);
        if !sipp.exists() {
            bail!("{SIPP} is missing: apt-get install sip-tester (scripts/test.sh does)");
        }
        let scenario = scenario_path(&self.scenario);
        if !scenario.is_file() {
            bail!("no scenario {}", scenario.display());
        }
        let dir = ScratchDir::new("sipp")?;
        let files = Files::in_dir(dir.path());
        let mut cmd = ns.command(sipp);
        cmd.current_dir(dir.path()).arg("-sf").arg(&scenario);
        if let Some(remote) = self.remote {
            cmd.arg(remote.to_string());
        }
        cmd.args(["-i", &self.local.ip().to_string(), "-p", &self.local.port().to_string()])
            .args(["-t", self.transport.flag(), "-m", &self.calls.to_string()])
            .args(["-timeout", &format!("{}s", self.timeout.as_secs().max(1)), "-timeout_error", "-nostdin"])
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(&files.messages)
            .arg("-trace_err")
            .arg("-error_file")
            .arg(&files.errors)
            .arg("-trace_logs")
            .arg("-log_file")
            .arg(&files.logs);
        if let Some(service) = &self.service {
            cmd.args(["-s", service]);
        }
        for (name, value) in &self.keys {
            cmd.args(["-key", name, value]);
        }
        for (name, value) in &self.sets {
            cmd.args(["-set", name, value]);
        }
        if let Some(rows) = &self.rows {
            let mut csv = String::from("SEQUENTIAL\n");
            for row in rows {
                csv.push_str(&row.join(";"));
                csv.push('\n');
            }
            let path = dir.path().join("injection.csv");
            std::fs::write(&path, csv)?;
            cmd.arg("-inf").arg(&path);
        }
        // Files, not pipes: sipp redraws its screen every second and would
        // block on a pipe nobody reads.
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&files.screen)?)
            .stderr(std::fs::File::create(&files.stderr)?);
        let child = cmd.spawn().with_context(|| format!("starting sipp with {}", self.scenario))?;
        let mut run = SippRun {
            child: Some(child),
            ns: ns.handle(),
            local: self.local,
            transport: self.transport,
            scenario: self.scenario,
            files,
            _dir: dir,
        };
        run.wait_bound()?;
        Ok(run)
    }
}

#[derive(Debug)]
struct Files {
    screen: PathBuf,
    stderr: PathBuf,
    messages: PathBuf,
    errors: PathBuf,
    logs: PathBuf,
}

impl Files {
    fn in_dir(dir: &Path) -> Files {
        Files {
            screen: dir.join("screen.txt"),
            stderr: dir.join("stderr.txt"),
            messages: dir.join("messages.txt"),
            errors: dir.join("errors.txt"),
            logs: dir.join("logs.txt"),
        }
    }
}

/// One `<log message="event key=value ...">` line of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub event: String,
    pub fields: BTreeMap<String, String>,
    pub raw: String,
}

impl LogLine {
    pub fn parse(raw: &str) -> LogLine {
        let mut words = raw.split_whitespace();
        let event = words.next().unwrap_or_default().to_owned();
        let fields = words.filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        LogLine { event, fields, raw: raw.to_owned() }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// The media address of a logged SDP: `c=` and `m=` together.
    pub fn media(&self) -> Option<SocketAddr> {
        let ip = self.get("c")?.parse().ok()?;
        let port = self.get("m")?.parse().ok()?;
        Some(SocketAddr::new(ip, port))
    }
}

/// A running sipp; killed on drop.
#[derive(Debug)]
pub struct SippRun {
    child: Option<Child>,
    ns: NetnsHandle,
    local: SocketAddr,
    transport: Transport,
    scenario: String,
    files: Files,
    // Last: removed once the process is gone.
    _dir: ScratchDir,
}

/// How a sipp run ended.
#[derive(Debug)]
pub struct SippOutcome {
    pub status: ExitStatus,
    pub logs: Vec<LogLine>,
    /// Errors, the end of the screen and the message trace, for a failure message.
    pub report: String,
    pub messages: String,
}

impl SippOutcome {
    /// Every call went through the scenario to its end.
    pub fn success(&self) -> bool {
        self.status.code() == Some(0)
    }

    /// The status codes of the responses sipp received, in order.
    pub fn statuses_received(&self) -> Vec<u16> {
        statuses_received(&self.messages)
    }
}

impl SippRun {
    /// The `<log>` lines so far (sipp writes them as they happen).
    pub fn logs(&self) -> Vec<LogLine> {
        read(&self.files.logs).lines().filter(|l| !l.trim().is_empty()).map(LogLine::parse).collect()
    }

    /// Waits up to `within` for a `<log>` line `matches` accepts; fails with
    /// sipp's report when none comes (or sipp ended first).
    pub fn wait_log(&mut self, within: Duration, matches: impl Fn(&LogLine) -> bool) -> Result<LogLine> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| matches(l)) {
                return Ok(line);
            }
            let ended = self.child.as_mut().map(Child::try_wait).transpose()?.flatten();
            if ended.is_some() || Instant::now() >= deadline {
                let why = match ended {
                    Some(status) => format!("sipp ended ({status})"),
                    None => format!("nothing within {within:?}"),
                };
                bail!("{}: no such <log> line: {why}\n{}", self.scenario, self.report());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends sipp an INFO in the dialog `call_id` with `headers` added,
    /// from the same namespace, over the run's transport: the signal a
    /// scenario waiting in `<recv request="INFO">` goes on with. sipp
    /// matches it to the call by Call-ID; the scenario does not answer it.
    pub fn poke(&self, call_id: &str, headers: &[(&str, &str)]) -> Result<()> {
        let (local, transport) = (self.local, self.transport);
        let call_id = call_id.to_owned();
        let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        self.ns
            .run_in(move || -> Result<()> {
                let bind = SocketAddr::new(local.ip(), 0);
                let message = |via: &str, from: SocketAddr| {
                    format!(
                        "INFO sip:sipp@{local} SIP/2.0\r\nVia: SIP/2.0/{via} {from};branch=z9hG4bK-poke-{n}\r\n\
                     From: <sip:test@{from}>;tag=poke\r\nTo: <sip:sipp@{local}>\r\nCall-ID: {call_id}\r\n\
                     CSeq: 1 INFO\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n",
                        n = std::process::id()
                    )
                };
                match transport {
                    Transport::Udp => {
                        let socket = UdpSocket::bind(bind)?;
                        socket.send_to(message("UDP", socket.local_addr()?).as_bytes(), local)?;
                    }
                    Transport::Tcp => {
                        let mut stream = TcpStream::connect_timeout(&local, Duration::from_secs(2))?;
                        stream.write_all(message("TCP", stream.local_addr()?).as_bytes())?;
                        // Closed on drop: sipp has read it by then or reads it from the queue.
                    }
                }
                Ok(())
            })?
            .with_context(|| format!("poking sipp ({}) at {local}", self.scenario))
    }

    /// Waits up to `within` for sipp to end; kills it if it does not.
    pub fn wait(mut self, within: Duration) -> Result<SippOutcome> {
        let mut child = self.child.take().context("sipp already waited for")?;
        let status = match wait_bounded(&mut child, within)? {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("sipp ({}) still running after {within:?}; killed\n{}", self.scenario, self.report());
            }
        };
        Ok(SippOutcome { status, logs: self.logs(), report: self.report(), messages: read(&self.files.messages) })
    }

    /// What sipp said so far: its errors, stderr, the end of its screen and
    /// its message trace.
    pub fn report(&self) -> String {
        let screen = read(&self.files.screen);
        let tail: Vec<&str> = screen.lines().rev().take(24).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- sipp {} on {} ---\nerrors:\n{}\nstderr:\n{}\nlogs:\n{}\nscreen (end):\n{}\nmessages:\n{}\n--- end of sipp {} ---",
            self.scenario,
            self.local,
            read(&self.files.errors).trim(),
            read(&self.files.stderr).trim(),
            read(&self.files.logs).trim(),
            tail.join("\n"),
            read(&self.files.messages).trim(),
            self.scenario
        )
    }

    /// Waits until sipp holds its port (bind fails for anyone else).
    fn wait_bound(&mut self) -> Result<()> {
        let deadline = Instant::now() + BIND_WITHIN;
        let (local, transport) = (self.local, self.transport);
        loop {
            if let Some(status) = self.child.as_mut().map(Child::try_wait).transpose()?.flatten() {
                bail!("sipp ({}) exited at start ({status})\n{}", self.scenario, self.report());
            }
            let taken = self.ns.run_in(move || match transport {
                Transport::Udp => UdpSocket::bind(local).is_err(),
                Transport::Tcp => TcpListener::bind(local).is_err(),
            })?;
            if taken {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("sipp ({}) did not bind {local} within {BIND_WITHIN:?}\n{}", self.scenario, self.report());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SippRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// The status codes of the responses in a sipp message trace that sipp
/// received, in order.
pub fn statuses_received(trace: &str) -> Vec<u16> {
    let mut out = Vec::new();
    let mut received = false;
    let mut first_line = false;
    for line in trace.lines() {
        if line.starts_with("-----------------------------------------------") {
            received = false;
            first_line = false;
            continue;
        }
        if line.contains("message received") {
            received = true;
            first_line = true;
            continue;
        }
        if received && first_line && !line.trim().is_empty() {
            first_line = false;
            if let Some(code) = line.strip_prefix("SIP/2.0 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok()) {
                out.push(code);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_log_lines() {
        let l = LogLine::parse("sdp event=200 call_id=1-2@192.0.2.10 c=192.0.2.1 m=20002 dir=sendrecv");
        assert_eq!(l.event, "sdp");
        assert_eq!(l.get("call_id"), Some("1-2@192.0.2.10"));
        assert_eq!(l.media(), Some("192.0.2.1:20002".parse().unwrap()));
        assert_eq!(LogLine::parse("acked").get("c"), None);
    }

    #[test]
    fn finds_received_statuses_in_a_trace() {
        let trace = "----------------------------------------------- 2026-11-25 20:05:18.799755\n\
                     UDP message sent (481 bytes):\n\nINVITE sip:1@192.0.2.1:5060 SIP/2.0\nVia: x\n\n\
                     ----------------------------------------------- 2026-11-25 20:05:18.801109\n\
                     UDP message received [458] bytes :\n\nSIP/2.0 100 Trying\nVia: x\n\n\
                     ----------------------------------------------- 2026-11-25 20:05:18.801109\n\
                     UDP message received [458] bytes :\n\nSIP/2.0 404 Not Found\nVia: x\n\n\
                     ----------------------------------------------- 2026-11-25 20:05:18.801109\n\
                     UDP message sent (458 bytes):\n\nSIP/2.0 200 OK\n\n";
        assert_eq!(statuses_received(trace), vec![100, 404]);
    }
}
