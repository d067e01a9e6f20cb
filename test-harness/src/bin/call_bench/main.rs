//! `call-bench`: the highest rate of calls the appliance carries with under
//! 0.1 % failed, and its CPU time per 1,000 calls, beside kamailio +
//! rtpengine doing the same calls in the same run (docs/benchmarks.md,
//! "Calls").
//!
//! ```text
//!  call-bench (orchestrator, mostly asleep), in a network namespace of its own
//!   ├─ sipp UAC 127.0.0.2        one run per step: -r RATE -m CALLS, echoes RTP (-rtp_echo)
//!   ├─ system under test, one after the other:
//!   │    reference  kamailio 127.0.0.10 (tm, record-routed) + rtpengine 127.0.0.11 (userspace)
//!   │    bridgehead bridgehead 127.0.0.20  +  call-bench serve-twiml 127.0.0.30:8080
//!   └─ sipp UAS 127.0.0.3        answers, sends RTP; what comes back is counted on its socket
//! ```
//!
//! A call: INVITE to the number with a PCMU offer; the system routes it to
//! the UAS (bridgehead: webhook, `<Dial><Number>`), which answers; after the
//! ACK the UAS sends 5 RTP packets through the anchor, the UAC echoes each
//! one back through it, so every packet that returns to the UAS crossed the
//! anchor both ways; a 1 s hold; BYE. Rates rise step by step until one
//! fails; the table has a line per step, the last line is JSON.
//!
//! `call-bench serve-twiml` is the customer's app of the appliance side, a
//! child of the same program (see `twiml.rs`).

mod bencode;
mod bridgehead;
mod cpu;
mod echo_count;
mod ladder;
mod netplan;
mod process;
mod reference;
mod report;
mod rig;
mod sip_probe;
mod sipp;
mod twiml;

use ladder::{Ladder, SideResult};
use report::Report;
use rig::Rig;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: call-bench [--only ref|bridgehead] [--max-rate CPS] [--start-rate CPS]
                  [--step-seconds SECS] [--bridgehead PATH] [--bench-dir DIR]
  --only SIDE        run one side: ref (kamailio + rtpengine) or bridgehead
  --max-rate CPS     highest rate tried (default 4000)
  --start-rate CPS   first step (default 100); each next step is 1.4 times the last
  --step-seconds S   calls are placed for S seconds per step (default 5)
  --bridgehead PATH  the appliance binary (default: $BRIDGEHEAD_BIN, or bridgehead beside this program)
  --bench-dir DIR    kamailio.cfg, uac.xml, uas.xml (default: test-harness/bench of the source tree)
internal: call-bench serve-twiml --listen ADDR --body TWIML";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    Reference,
    Bridgehead,
}

#[derive(Debug)]
struct Options {
    only: Option<Only>,
    ladder: Ladder,
    bridgehead: Option<PathBuf>,
    bench_dir: PathBuf,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        only: None,
        ladder: Ladder::default(),
        bridgehead: None,
        bench_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench"),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--only" => {
                o.only = Some(match value("--only")?.as_str() {
                    "ref" | "reference" => Only::Reference,
                    "bridgehead" => Only::Bridgehead,
                    other => return Err(format!("--only {other}: ref or bridgehead")),
                })
            }
            "--max-rate" => o.ladder.max_rate = number(&value("--max-rate")?, "--max-rate")?,
            "--start-rate" => o.ladder.start_rate = number(&value("--start-rate")?, "--start-rate")?,
            "--step-seconds" => o.ladder.step_seconds = number(&value("--step-seconds")?, "--step-seconds")?,
            "--bridgehead" => o.bridgehead = Some(PathBuf::from(value("--bridgehead")?)),
            "--bench-dir" => o.bench_dir = PathBuf::from(value("--bench-dir")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.ladder.start_rate < 1.0 || o.ladder.max_rate < o.ladder.start_rate {
        return Err("need 1 <= --start-rate <= --max-rate".into());
    }
    if !(0.5..=600.0).contains(&o.ladder.step_seconds) {
        return Err("--step-seconds: 0.5 to 600".into());
    }
    Ok(o)
}

fn number(text: &str, name: &str) -> Result<f64, String> {
    text.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0).ok_or_else(|| format!("{name} {text}: not a number"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve-twiml") {
        return match twiml::serve(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("call-bench serve-twiml: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let options = match parse_options(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("call-bench: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("call-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(o: Options) -> anyhow::Result<()> {
    let mut report = Report::new(&o.ladder);
    let rig = Rig::new(&o.bench_dir)?;
    eprintln!("call-bench: logs and sipp statistics in {}", rig.dir().display());
    if o.only != Some(Only::Bridgehead) {
        report.reference = Some(side(&rig, "reference", &o.ladder, reference::Reference::start));
    }
    if o.only != Some(Only::Reference) {
        let bin = bridgehead::binary(o.bridgehead.as_deref());
        report.bridgehead =
            Some(side(&rig, "bridgehead", &o.ladder, move |rig| bridgehead::Appliance::start(rig, &bin?)));
    }
    report.notes.push(format!("logs: {}", rig.dir().display()));
    report.print();
    Ok(())
}

/// Starts one system, climbs the ladder on it and stops it; a system that
/// does not start is a result with a note, not an error of the run.
fn side<S: ladder::System>(
    rig: &Rig,
    name: &str,
    ladder: &Ladder,
    start: impl FnOnce(&Rig) -> anyhow::Result<S>,
) -> SideResult {
    eprintln!("call-bench: {name}: starting");
    let mut system = match start(rig) {
        Ok(s) => s,
        Err(e) => return SideResult::failed(format!("{name}: did not start: {e:#}")),
    };
    let result = ladder.climb(rig, &mut system);
    drop(system);
    result
}
