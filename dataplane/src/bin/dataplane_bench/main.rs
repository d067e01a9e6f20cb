//! `dataplane-bench`: Bridgehead's dataplane measured side by side with
//! references on the same machine, in one run, so that a noisy machine
//! cancels out of the ratios. See `docs/benchmarks.md`.
//!
//! ```text
//!  orchestrator (this process, mostly asleep)
//!   ├─ 1. DPDK relay: one worker over a net_ring port   (feature `dpdk`)
//!   ├─ 2. dpdk-testpmd io forwarding over net_null      (child)
//!   ├─ 3. load generator (core 1) ─▶ relay (core 0) ─▶ sinks (nobody reads)
//!   │       relay = `dataplane-bench serve-sockets`     (child: our socket backend)
//!   │             | `kernel_relay` (test-harness)       (child: plain epoll relay)
//!   ├─ 4.   relay = rtpengine, calls set up over ng     (child)
//!   └─ 5.   relay = `serve-sockets --af-xdp lo`         (child: our AF_XDP backend)
//! ```
//!
//! The orchestrator first moves into a network namespace of its own (its
//! children inherit it), so that no part touches the host's loopback: the
//! AF_XDP part attaches its XDP program to the namespace's `lo`.
//!
//! Prints a table, then a last line of JSON. Modes of the same program run
//! as its children: `load` (the generator), `serve-sockets` (our relay on
//! the socket backend) and `dpdk-relay` (our relay on DPDK).

mod bencode;
mod dpdk;
mod load;
mod netns;
mod process;
mod relay;
mod report;
mod rtpengine;
mod serve;
mod sinks;
mod sockets;
mod testpmd;

use relay::Timing;
use report::Report;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: dataplane-bench [--quick] [--only dpdk|testpmd|sockets|rtpengine|af_xdp]
                       [--sessions N] [--dpdk-sessions N] [--window SECS]
                       [--rate KPPS] [--kernel-relay PATH]
  --quick           short windows and fewer sessions (a smoke run)
  --only PART       run one part (repeatable)
  --sessions N      sessions of the socket and rtpengine parts (default 2000)
  --dpdk-sessions N sessions of the DPDK relay (default 100000)
  --window SECS     measurement window of each relay (default 3, after 1 s warm-up)
  --rate KPPS       load offered to each relay (default 100; 0: as fast as it can)
  --kernel-relay P  the test-harness kernel_relay binary (default: beside this one)";

/// The load offered to every relay of parts 3 and 4, in kpps: below what
/// each of them relays on one core here (about 170-220 kpps), so that all
/// are compared at the same load and none sheds it (rtpengine discards
/// whole socket queues once it falls behind).
const DEFAULT_RATE_KPPS: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Dpdk,
    Testpmd,
    Sockets,
    Rtpengine,
    AfXdp,
}

struct Options {
    quick: bool,
    only: Vec<Part>,
    sessions: usize,
    dpdk_sessions: usize,
    timing: Timing,
    kernel_relay: Option<PathBuf>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Options {
            quick,
            only: Vec::new(),
            sessions: if quick { 200 } else { 2000 },
            dpdk_sessions: if quick { 10_000 } else { 100_000 },
            timing: Timing {
                warmup: Duration::from_millis(if quick { 300 } else { 1000 }),
                window: Duration::from_secs(if quick { 1 } else { 3 }),
                rate_pps: DEFAULT_RATE_KPPS * 1000,
            },
            kernel_relay: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
            match a.as_str() {
                "--quick" => {}
                "--only" => o.only.push(match value()?.as_str() {
                    "dpdk" => Part::Dpdk,
                    "testpmd" => Part::Testpmd,
                    "sockets" => Part::Sockets,
                    "rtpengine" => Part::Rtpengine,
                    "af_xdp" => Part::AfXdp,
                    other => return Err(format!("--only {other}: dpdk, testpmd, sockets, rtpengine or af_xdp")),
                }),
                "--sessions" => o.sessions = number(a, value()?)?,
                "--dpdk-sessions" => o.dpdk_sessions = number(a, value()?)?,
                "--window" => {
                    let secs: f64 = value()?.parse().map_err(|e| format!("{a}: {e}"))?;
                    if !(0.1..=60.0).contains(&secs) {
                        return Err(format!("{a}: 0.1 to 60 seconds"));
                    }
                    o.timing.window = Duration::from_secs_f64(secs);
                }
                "--kernel-relay" => o.kernel_relay = Some(PathBuf::from(value()?)),
                "--rate" => {
                    let kpps: f64 = value()?.parse().map_err(|e| format!("{a}: {e}"))?;
                    if !(0.0..=10_000.0).contains(&kpps) {
                        return Err(format!("{a}: 0 (as fast as possible) to 10000 kpps"));
                    }
                    o.timing.rate_pps = (kpps * 1000.0) as u64;
                }
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        // 4 ports per session (ours and rtpengine) must stay below the ephemeral range.
        if o.sessions == 0 || o.sessions > 3000 {
            return Err("--sessions: 1 to 3000".into());
        }
        Ok(o)
    }

    fn runs(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

fn number(name: &str, v: &str) -> Result<usize, String> {
    v.parse().map_err(|e| format!("{name}: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("load") => load::main(&args[1..]),
        Some("serve-sockets") => serve::main(&args[1..]),
        Some("dpdk-relay") => dpdk::main(&args[1..]),
        _ => match Options::parse(&args) {
            Ok(options) => orchestrate(&options),
            Err(e) => {
                if !e.is_empty() {
                    eprintln!("dataplane-bench: {e}");
                }
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        },
    }
}

fn orchestrate(o: &Options) -> ExitCode {
    let started = Instant::now();
    let mut report = Report {
        socket_sessions: o.sessions,
        rate_pps: o.timing.rate_pps,
        dpdk_sessions: o.dpdk_sessions,
        quick: o.quick,
        ..Report::default()
    };
    let step = |name: &str| eprintln!("[{:5.1} s] {name}", started.elapsed().as_secs_f64());
    let private = netns::enter_private();
    if let Err(e) = &private {
        report.notes.push(format!("own network namespace: {e}; running in the host's, without the AF_XDP part"));
    }

    if o.runs(Part::Dpdk) {
        step("1. DPDK relay");
        let seconds = if o.quick { 1.0 } else { 3.0 };
        match dpdk::dpdk_relay(o.dpdk_sessions, seconds) {
            Ok(f) => {
                if f.busy < 0.95 {
                    report.notes.push(format!(
                        "DPDK relay: the worker had only {:.0}% of its core (another process, or the hypervisor, took the rest): its figures are low",
                        f.busy * 100.0
                    ));
                }
                report.dpdk = Some(f);
            }
            Err(e) => report.notes.push(format!("DPDK relay: {e}")),
        }
    }
    if o.runs(Part::Testpmd) {
        step("2. dpdk-testpmd io forwarding");
        match testpmd::run(if o.quick { 2 } else { 4 }) {
            Ok(Some(mpps)) => report.testpmd_mpps = Some(mpps),
            Ok(None) => report.notes.push("testpmd: dpdk-testpmd not installed".into()),
            Err(e) => report.notes.push(format!("testpmd: {e}")),
        }
    }
    let needs_sinks = o.runs(Part::Sockets) || o.runs(Part::Rtpengine) || o.runs(Part::AfXdp);
    let sinks = if needs_sinks {
        match sinks::Sinks::bind(4) {
            Ok(s) => Some(s),
            Err(e) => {
                report.notes.push(format!("sinks: {e}"));
                None
            }
        }
    } else {
        None
    };
    if let (true, Some(sinks)) = (o.runs(Part::Sockets), &sinks) {
        step("3. socket backend vs kernel relay");
        let figures = sockets::run(o.sessions, o.timing, sinks, o.kernel_relay.as_deref());
        match figures.ours {
            Ok(f) => report.ours = Some(f),
            Err(e) => report.notes.push(format!("socket backend: {e}")),
        }
        match figures.kernel {
            Ok(f) => report.kernel = Some(f),
            Err(e) => report.notes.push(format!("kernel relay: {e}")),
        }
    }
    if let (true, Some(sinks)) = (o.runs(Part::Rtpengine), &sinks) {
        step("4. rtpengine");
        match rtpengine::run(o.sessions, o.timing, sinks) {
            Ok(Some(f)) => report.rtpengine = Some(f),
            Ok(None) => report.notes.push("rtpengine: not installed".into()),
            Err(e) => report.notes.push(format!("rtpengine: {e}")),
        }
    }
    if let (true, Some(sinks), true) = (o.runs(Part::AfXdp), &sinks, private.is_ok()) {
        step("5. AF_XDP backend");
        match sockets::run_af_xdp(o.sessions, o.timing, sinks) {
            Ok(f) => report.af_xdp = Some(f),
            Err(e) => report.notes.push(format!("AF_XDP backend: {e}")),
        }
    }
    step("done");
    report.print();
    ExitCode::SUCCESS
}
