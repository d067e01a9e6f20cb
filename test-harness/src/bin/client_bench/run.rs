//! The orchestrator: phases of a run and the figures each one yields.
//!
//! 1. baseline: appliance, app and workers up, nobody connected; the
//!    appliance's Pss is read.
//! 2. sign-in: every client worker connects its share at once (a bounded
//!    number of sign-ins in flight per worker); rate = clients `ready` /
//!    (last `ready` - first connect attempt), over all workers.
//! 3. memory: after a settle, Pss again; growth / clients registered.
//! 4. idle: CPU time of the appliance over the idle window, with every
//!    client heartbeating (the server's "\n" every 10 s, echoed) and
//!    re-registering every 30 s as the SDK does.
//! 5. calls: the callers place `--calls` calls at `--call-rate` to random
//!    registered identities; ring latency measured at the callee.
//! 6. (`--over-limit`) more clients than `[clients] max_connections`
//!    allows: each must be refused, the registered ones stay.

use crate::procfs;
use crate::rig::{self, Bridgehead, Namespace, Worker};
use crate::tokens;
use crate::worker::KeyExchange;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use test_harness::admin::{metric_sum, metric_sum_with};

#[derive(Debug, Clone)]
pub struct Options {
    pub clients: usize,
    pub workers: usize,
    pub sources: usize,
    pub concurrency: usize,
    pub idle_seconds: u64,
    pub calls: u64,
    pub call_rate: f64,
    pub callers: usize,
    /// `Some(extra)`: `[clients] max_connections` = clients + callers, then
    /// `extra` more clients try to connect.
    pub over_limit: Option<usize>,
    pub key_exchange: KeyExchange,
    pub bridgehead: Option<PathBuf>,
    pub keep_dir: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clients: 15_000,
            workers: 4,
            sources: 8,
            concurrency: 64,
            idle_seconds: 30,
            calls: 2_000,
            call_rate: 50.0,
            callers: 32,
            over_limit: None,
            key_exchange: KeyExchange::Hybrid,
            bridgehead: None,
            keep_dir: false,
        }
    }
}

/// Generous bounds: a phase that takes longer has failed.
const SIGN_IN_PHASE: Duration = Duration::from_secs(900);
const SETTLE: Duration = Duration::from_secs(5);

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i] as f64 / 1000.0)
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn bridgehead_bin(given: Option<&PathBuf>) -> Result<PathBuf> {
    let path = match (given, std::env::var_os("BRIDGEHEAD_BIN")) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => std::env::current_exe()?.with_file_name("bridgehead"),
    };
    if !path.is_file() {
        bail!("{} not found: cargo build --release -p controlplane (same CARGO_TARGET_DIR)", path.display());
    }
    Ok(path)
}

fn metrics(bh: &Bridgehead) -> String {
    bh.admin.metrics().unwrap_or_default()
}

pub fn run(o: &Options) -> Result<Value> {
    let me = std::env::current_exe()?;
    let bin = bridgehead_bin(o.bridgehead.as_ref())?;
    let _ns = Namespace::enter()?;
    let dir = std::env::temp_dir().join(format!("client-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    eprintln!("client-bench: logs in {}", dir.display());
    let result = phases(o, &me, &bin, &dir);
    if result.is_ok() && !o.keep_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn phases(o: &Options, me: &std::path::Path, bin: &std::path::Path, dir: &std::path::Path) -> Result<Value> {
    let mut notes: Vec<String> = Vec::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let t = Instant::now();
    match tokens::check_against_twilio(now) {
        Ok(Some(what)) => notes.push(format!("tokens: minted with controlplane::token::mint; {what}")),
        Ok(None) => notes
            .push("tokens: minted with controlplane::token::mint (python3 twilio not installed: not compared)".into()),
        Err(e) => bail!("our tokens do not agree with Twilio's: {e:#}"),
    }
    // Tokens, one file per worker; client i goes to worker i % workers.
    let mut files: Vec<String> = vec![String::new(); o.workers];
    for i in 1..=o.clients {
        let identity = format!("client-{i:05}");
        let token = tokens::mint(&identity, false, now)?;
        files[(i - 1) % o.workers].push_str(&format!("{identity}\t{token}\n"));
    }
    let mut callers_file = String::new();
    for i in 1..=o.callers {
        let identity = format!("caller-{i:03}");
        callers_file.push_str(&format!("{identity}\t{}\n", tokens::mint(&identity, true, now)?));
    }
    let extra = o.over_limit.unwrap_or(0);
    let mut extra_file = String::new();
    for i in 1..=extra {
        let identity = format!("extra-{i:05}");
        extra_file.push_str(&format!("{identity}\t{}\n", tokens::mint(&identity, false, now)?));
    }
    eprintln!("client-bench: {} tokens minted in {:.2} s", o.clients + o.callers + extra, t.elapsed().as_secs_f64());

    let app = rig::start_app(me, dir)?;
    let max_connections = o.over_limit.map(|_| o.clients + o.callers);
    let bh = Bridgehead::start(bin, &dir.join("bridgehead"), max_connections)?;
    let pid = bh.proc.pid();
    let ca = dir.join("bridgehead/state/tls/cert.pem");
    let url = format!("wss://{}/signal", rig::HTTPS);
    let sources: Vec<String> = (0..o.sources).map(|i| format!("127.0.0.{}", 2 + i)).collect();
    let worker_args = |tokens: &std::path::Path, role: &str, sources: &[String]| {
        vec![
            "--url".into(),
            url.clone(),
            "--ca".into(),
            ca.to_string_lossy().into_owned(),
            "--sources".into(),
            sources.join(","),
            "--tokens".into(),
            tokens.to_string_lossy().into_owned(),
            "--role".into(),
            role.into(),
            "--concurrency".into(),
            o.concurrency.to_string(),
            "--callees".into(),
            o.clients.to_string(),
            "--key-exchange".into(),
            o.key_exchange.to_string(),
        ]
    };
    let mut workers = Vec::new();
    for (w, text) in files.iter().enumerate() {
        let path = dir.join(format!("tokens-{w}.txt"));
        std::fs::write(&path, text)?;
        // Each worker takes its own sources, so that no two share a port range.
        let mine: Vec<String> =
            sources.iter().skip(w % sources.len()).step_by(o.workers.min(sources.len())).cloned().collect();
        workers.push(Worker::start(&format!("clients-{w}"), me, worker_args(&path, "clients", &mine), dir)?);
    }
    let callers_path = dir.join("tokens-callers.txt");
    std::fs::write(&callers_path, &callers_file)?;
    let mut callers =
        Worker::start("callers", me, worker_args(&callers_path, "callers", &["127.0.0.200".into()]), dir)?;

    // ---- 1. baseline
    std::thread::sleep(Duration::from_secs(2));
    let (pss0, rss0) = procfs::memory_kib(pid)?;
    let fds0 = procfs::open_files(pid);
    eprintln!("client-bench: baseline Pss {pss0} KiB, Rss {rss0} KiB, {fds0} files; connecting {} clients", o.clients);

    // ---- 2. sign-in
    let cpu_sign_in0 = procfs::cpu_seconds(pid)?;
    let tcp0 = procfs::tcp_counters();
    let wall0 = Instant::now();
    for w in &mut workers {
        w.send("connect")?;
    }
    let (mut ready, mut failed, mut refused) = (0u64, 0u64, 0u64);
    let (mut first, mut last) = (u64::MAX, 0u64);
    let mut errors = Vec::new();
    let mut sign_in_us: Vec<u64> = Vec::new();
    for w in &mut workers {
        let v = w.expect("connected", SIGN_IN_PHASE)?;
        sign_in_us.extend(v["sign_in_us"].as_array().into_iter().flatten().filter_map(Value::as_u64));
        ready += v["ready"].as_u64().unwrap_or(0);
        failed += v["failed"].as_u64().unwrap_or(0);
        refused += v["refused"].as_u64().unwrap_or(0);
        first = first.min(v["first_connect_us"].as_u64().unwrap_or(u64::MAX));
        last = last.max(v["last_ready_us"].as_u64().unwrap_or(0));
        if let Some(e) = v["error"].as_str() {
            errors.push(format!("{}: {e}", w.proc.name));
        }
    }
    let sign_in_cpu = procfs::cpu_seconds(pid)? - cpu_sign_in0;
    let tcp_lost: BTreeMap<String, u64> = procfs::tcp_counters()
        .into_iter()
        .map(|(name, n)| (n.saturating_sub(tcp0.get(&name).copied().unwrap_or(0)), name))
        .filter(|(n, _)| *n > 0)
        .map(|(n, name)| (name, n))
        .collect();
    eprintln!("client-bench: TCP during sign-in: {tcp_lost:?}");
    let span_s = last.saturating_sub(first) as f64 / 1e6;
    let register_per_s = if span_s > 0.0 { ready as f64 / span_s } else { 0.0 };
    eprintln!(
        "client-bench: {ready} ready, {failed} failed, {refused} refused in {span_s:.2} s ({register_per_s:.0}/s; wall {:.2} s; appliance CPU {sign_in_cpu:.2} s, {:.3} ms per sign-in)",
        wall0.elapsed().as_secs_f64(),
        sign_in_cpu * 1000.0 / ready.max(1) as f64
    );
    for e in &errors {
        eprintln!("client-bench:   first error {e}");
    }
    sign_in_us.sort_unstable();
    let sign_in_ms = json!({
        "p50": percentile(&sign_in_us, 0.5), "p99": percentile(&sign_in_us, 0.99),
        "max": percentile(&sign_in_us, 1.0),
    });
    eprintln!("client-bench: one client's connect -> ready, ms: {sign_in_ms}");
    if ready == 0 {
        bail!("no client registered; the appliance's log ends with:\n{}", bh.proc.log_tail(20));
    }

    // ---- 3. memory
    std::thread::sleep(SETTLE);
    let (pss1, rss1) = procfs::memory_kib(pid)?;
    let fds1 = procfs::open_files(pid);
    let kib_per_client = pss1.saturating_sub(pss0) as f64 / ready as f64;
    let m = metrics(&bh);
    let devices = metric_sum_with(&m, "bridgehead_client_devices", "status=\"available\"").unwrap_or(0);
    eprintln!(
        "client-bench: Pss {pss1} KiB (+{} KiB), Rss {rss1} KiB, {fds1} files, {devices} devices available: {kib_per_client:.1} KiB per client",
        pss1.saturating_sub(pss0)
    );
    let mut bench_pss = 0;
    for w in &workers {
        bench_pss += procfs::memory_kib(w.proc.pid()).map_or(0, |m| m.0);
    }

    let v = callers.ask("connect", "connected", SIGN_IN_PHASE)?;
    if v["ready"].as_u64().unwrap_or(0) != o.callers as u64 {
        bail!("callers: {v}");
    }

    // ---- 4. idle
    let stats0 = stats(&mut workers)?;
    let threads0 = procfs::cpu_by_thread(pid)?;
    let cpu0 = procfs::cpu_seconds(pid)?;
    let idle0 = Instant::now();
    std::thread::sleep(Duration::from_secs(o.idle_seconds));
    let idle_s = idle0.elapsed().as_secs_f64();
    let idle_cpu = procfs::cpu_seconds(pid)? - cpu0;
    let threads1 = procfs::cpu_by_thread(pid)?;
    let stats1 = stats(&mut workers)?;
    let idle_pct = idle_cpu / idle_s * 100.0;
    let idle_pct_per_10k = idle_pct * 10_000.0 / ready as f64;
    let by_thread: BTreeMap<String, f64> = threads1
        .iter()
        .map(|(name, s)| (name.clone(), round((s - threads0.get(name).copied().unwrap_or(0.0)) / idle_s * 100.0, 2)))
        .filter(|(_, pct)| *pct > 0.0)
        .collect();
    eprintln!(
        "client-bench: idle {idle_s:.1} s: appliance {idle_pct:.2} % of a core ({idle_pct_per_10k:.2} % per 10k clients); by thread {by_thread:?}; \
         heartbeats echoed {}, dropped {}",
        stats1.heartbeats - stats0.heartbeats,
        stats1.dropped
    );
    if stats1.dropped > 0 {
        notes
            .push(format!("{} clients were dropped by the end of the idle window: {:?}", stats1.dropped, stats1.error));
    }

    // ---- 5. calls
    let mut ring: Vec<u64> = Vec::new();
    let mut calls_json = json!(null);
    if o.calls > 0 {
        let (app_cpu0, bh_cpu0) = (procfs::cpu_seconds(app.pid())?, procfs::cpu_seconds(pid)?);
        let calls0 = Instant::now();
        let within = Duration::from_secs_f64(o.calls as f64 / o.call_rate) + Duration::from_secs(60);
        let v = callers.ask(&format!("calls {} {}", o.calls, o.call_rate), "calls", within)?;
        let calls_s = calls0.elapsed().as_secs_f64();
        let (app_cpu, bh_cpu) = (procfs::cpu_seconds(app.pid())? - app_cpu0, procfs::cpu_seconds(pid)? - bh_cpu0);
        let s = stats(&mut workers)?;
        ring = s.ring_us;
        ring.sort_unstable();
        let mut answer: Vec<u64> = v["answer_us"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
        answer.sort_unstable();
        let mut end: Vec<u64> = v["end_us"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
        end.sort_unstable();
        let placed_in = v["placed_in_s"].as_f64().unwrap_or(calls_s);
        calls_json = json!({
            "placed": v["placed"], "completed": v["completed"], "failed": v["failed"],
            "rate_per_s": round(o.calls as f64 / placed_in, 1),
            "rung": ring.len(),
            "caller_answer_p50_ms": percentile(&answer, 0.5), "caller_answer_p99_ms": percentile(&answer, 0.99),
            "call_end_p50_ms": percentile(&end, 0.5), "call_end_p99_ms": percentile(&end, 0.99),
            "appliance_cpu_pct": round(bh_cpu / calls_s * 100.0, 1),
            "app_cpu_pct": round(app_cpu / calls_s * 100.0, 1),
        });
        eprintln!("client-bench: calls {calls_json}");
        if let Some(e) = v["error"].as_str() {
            notes.push(format!("callers: first error: {e}"));
        }
        if ring.len() as u64 != o.calls {
            notes.push(format!("{} calls placed, {} rang a client", o.calls, ring.len()));
        }
    }

    // ---- 6. over the limit
    let mut over_json = json!(null);
    if extra > 0 {
        let path = dir.join("tokens-extra.txt");
        std::fs::write(&path, &extra_file)?;
        let mut w = Worker::start("extra", me, worker_args(&path, "clients", &["127.0.0.201".into()]), dir)?;
        let v = w.ask("connect", "connected", SIGN_IN_PHASE)?;
        std::thread::sleep(Duration::from_secs(1));
        let s = stats(&mut workers)?;
        let m = metrics(&bh);
        let log = std::fs::read_to_string(&bh.proc.log).unwrap_or_default();
        let logged = log.lines().filter(|l| l.contains("client connection refused: at the connection limit")).count();
        over_json = json!({
            "limit": max_connections,
            "tried": extra,
            "refused": v["refused"], "ready": v["ready"], "failed": v["failed"],
            "refused_metric": metric_sum(&m, "bridgehead_client_connections_refused"),
            "refusals_logged": logged,
            "still_registered": s.registered,
            "dropped": s.dropped,
            "connections_metric": metric_sum(&m, "bridgehead_client_connections"),
        });
        eprintln!("client-bench: over the limit: {over_json}");
        let ok = v["refused"].as_u64() == Some(extra as u64)
            && s.registered == ready
            && s.dropped == 0
            && metric_sum(&m, "bridgehead_client_connections_refused") == Some(extra as u64)
            && logged == extra;
        if !ok {
            bail!("the connection limit did not hold: {over_json}");
        }
    }

    // ---- the end: everybody still there?
    let end = stats(&mut workers)?;
    let m = metrics(&bh);
    let refused_total = metric_sum(&m, "bridgehead_client_connections_refused").unwrap_or(0);
    if end.dropped > 0 {
        notes.push(format!("{} clients dropped during the run; first: {:?}", end.dropped, end.error));
    }
    let idle_split = by_thread.iter().map(|(k, v)| format!("{k} {v:.2}%")).collect::<Vec<_>>().join(", ");
    let report = json!({
        "clients": ready,
        "register_per_s": round(register_per_s, 0),
        "kib_per_client": round(kib_per_client, 1),
        "idle_cpu_pct_per_10k": round(idle_pct_per_10k, 2),
        "ring_p50_ms": percentile(&ring, 0.5).map(|v| round(v, 2)),
        "ring_p99_ms": percentile(&ring, 0.99).map(|v| round(v, 2)),
        "detail": {
            "failed": failed, "refused": refused, "refused_metric": refused_total,
            "sign_in_s": round(span_s, 2), "sign_in_tcp": tcp_lost, "key_exchange": o.key_exchange.to_string(), "client_sign_in_ms": sign_in_ms, "sign_in_appliance_cpu_s": round(sign_in_cpu, 2), "appliance_ms_per_sign_in": round(sign_in_cpu * 1000.0 / ready.max(1) as f64, 3),
            "pss_kib": [pss0, pss1], "rss_kib": [rss0, rss1], "files": [fds0, fds1],
            "bench_workers_pss_kib": bench_pss,
            "idle_s": round(idle_s, 1), "idle_cpu_pct": round(idle_pct, 2), "idle_by_thread": idle_split,
            "calls": calls_json, "over_limit": over_json,
            "dropped": end.dropped,
        },
        "reference": {"kamailio_5_6_kib_per_client": "110-130 (SIP over WSS with TLS, measured on this machine earlier; quoted, not measured in this run)"},
        "notes": notes,
    });
    drop(callers);
    drop(workers);
    drop(bh);
    drop(app);
    Ok(report)
}

/// What the client workers say, summed.
struct Stats {
    registered: u64,
    dropped: u64,
    heartbeats: u64,
    ring_us: Vec<u64>,
    error: Option<String>,
}

fn stats(workers: &mut [Worker]) -> Result<Stats> {
    let mut s = Stats { registered: 0, dropped: 0, heartbeats: 0, ring_us: Vec::new(), error: None };
    for w in workers {
        let v = w.ask("stats", "stats", Duration::from_secs(30)).context("worker stats")?;
        s.registered += v["registered"].as_u64().unwrap_or(0);
        s.dropped += v["dropped"].as_u64().unwrap_or(0);
        s.heartbeats += v["heartbeats"].as_u64().unwrap_or(0);
        s.ring_us.extend(v["ring_us"].as_array().into_iter().flatten().filter_map(Value::as_u64));
        if s.error.is_none() {
            s.error = v["error"].as_str().map(str::to_string);
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[7000], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
