//! `client-bench`: how many Voice SDK clients the appliance holds and what
//! each costs it (docs/benchmarks.md, "client-bench"; sizing in
//! docs/sizing.md).
//!
//! ```text
//!  client-bench (orchestrator), in a network namespace of its own
//!   ├─ bridgehead            WSS 127.0.0.1:8443/signal, 200 media ports
//!   ├─ client-bench serve-app 127.0.0.1:8080  <Dial><Client>{To}</Client></Dial>
//!   ├─ client-bench worker ×4 (clients)  N/4 registered clients each, from 127.0.0.2..9
//!   └─ client-bench worker (callers)     32 clients placing the calls, from 127.0.0.200
//! ```
//!
//! N clients (default 15,000), each with its own token (`client-00001`..),
//! `listen` and `register` over WSS and stay, echoing the server's
//! heartbeats and re-registering every 30 s like the SDK; then a stream of
//! client-to-client calls rings random identities, which answer and hang
//! up. Prints what it measured and, last, one JSON line.

mod app;
mod procfs;
mod rig;
mod run;
mod tokens;
mod worker;

use std::process::ExitCode;

const USAGE: &str = "\
usage: client-bench [--clients N] [--workers W] [--sources S] [--concurrency C]
                    [--idle-seconds S] [--calls M] [--call-rate R] [--callers K]
                    [--over-limit EXTRA] [--key-exchange KX] [--bridgehead PATH] [--keep-logs]
  --clients N        registered clients (default 15000)
  --workers W        processes holding them (default 4)
  --sources S        loopback source addresses 127.0.0.2.. (default 8)
  --concurrency C    sign-ins in flight per worker (default 64)
  --idle-seconds S   idle window for the CPU figure (default 30)
  --calls M          client-to-client calls rung after that (default 2000; 0: none)
  --call-rate R      calls per second (default 50)
  --callers K        clients placing them, one call at a time each (default 32)
  --over-limit EXTRA set [clients] max_connections to N + callers, then connect EXTRA
                     more clients: each must be refused, the others stay registered
  --key-exchange KX  what the clients offer: hybrid (X25519MLKEM768, then X25519, as
                     current browsers do; the default) or x25519 (older browsers, SDKs)
  --bridgehead PATH  the appliance (default: $BRIDGEHEAD_BIN, or bridgehead beside this program)
  --keep-logs        keep the run's directory (logs, configuration) even on success
internal: client-bench worker ... | client-bench serve-app --listen ADDR";

fn parse(args: &[String]) -> Result<run::Options, String> {
    let mut o = run::Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(text: String, name: &str) -> Result<T, String> {
            text.parse().map_err(|_| format!("{name} {text}: not a number"))
        }
        match arg.as_str() {
            "--clients" => o.clients = num(value(arg)?, arg)?,
            "--workers" => o.workers = num(value(arg)?, arg)?,
            "--sources" => o.sources = num(value(arg)?, arg)?,
            "--concurrency" => o.concurrency = num(value(arg)?, arg)?,
            "--idle-seconds" => o.idle_seconds = num(value(arg)?, arg)?,
            "--calls" => o.calls = num(value(arg)?, arg)?,
            "--call-rate" => o.call_rate = num(value(arg)?, arg)?,
            "--callers" => o.callers = num(value(arg)?, arg)?,
            "--over-limit" => o.over_limit = Some(num(value(arg)?, arg)?),
            "--key-exchange" => o.key_exchange = value(arg)?.parse()?,
            "--bridgehead" => o.bridgehead = Some(value(arg)?.into()),
            "--keep-logs" => o.keep_dir = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.clients == 0 || o.clients > 99_999 || o.workers == 0 || o.callers == 0 || o.concurrency == 0 {
        return Err("need 1 <= --clients <= 99999 and --workers, --callers, --concurrency >= 1".into());
    }
    if !(1..=190).contains(&o.sources) || o.call_rate.is_nan() || o.call_rate <= 0.0 {
        return Err("--sources: 1 to 190; --call-rate > 0".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let internal = match args.first().map(String::as_str) {
        Some("worker") => Some(worker::parse_args(&args[1..]).and_then(worker::run)),
        Some("serve-app") => Some(app::serve(&args[1..])),
        _ => None,
    };
    if let Some(result) = internal {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("client-bench {}: {e:#}", args[0]);
                ExitCode::from(1)
            }
        };
    }
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("client-bench: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run::run(&options) {
        Ok(report) => {
            print_report(&report);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("client-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A few readable lines, then the JSON line (the last line of stdout).
fn print_report(r: &serde_json::Value) {
    let d = &r["detail"];
    println!("clients registered        {}", r["clients"]);
    println!("listen+register rate      {} /s  ({} s)", r["register_per_s"], d["sign_in_s"]);
    println!(
        "appliance Pss per client  {} KiB  (Pss {} KiB, goal <= 32; Kamailio 5.6 quoted at 110-130)",
        r["kib_per_client"], d["pss_kib"]
    );
    println!(
        "idle CPU per 10k clients  {} % of a core  ({} % for all, {})",
        r["idle_cpu_pct_per_10k"], d["idle_cpu_pct"], d["idle_by_thread"]
    );
    println!("ring latency p50 / p99    {} / {} ms", r["ring_p50_ms"], r["ring_p99_ms"]);
    println!("calls                     {}", d["calls"]);
    if !d["over_limit"].is_null() {
        println!("over the limit            {}", d["over_limit"]);
    }
    for note in r["notes"].as_array().into_iter().flatten() {
        println!("note: {}", note.as_str().unwrap_or_default());
    }
    println!("{r}");
}
