//! The table (a line per step of each side), the notes, a summary and the
//! last line of JSON.

use crate::ladder::{Ladder, SideResult, Step};
use crate::netplan::{HOLD_SECONDS, RTP_PACKETS_PER_CALL};
use serde_json::json;

pub struct Report {
    ladder: Ladder,
    load_before: String,
    pub reference: Option<SideResult>,
    pub bridgehead: Option<SideResult>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(ladder: &Ladder) -> Report {
        let load_before = std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        Report { ladder: ladder.clone(), load_before, reference: None, bridgehead: None, notes: Vec::new() }
    }

    pub fn print(&self) {
        println!(
            "call-bench: a call = INVITE, 200, ACK, {RTP_PACKETS_PER_CALL} RTP packets each way, {HOLD_SECONDS} s hold, BYE; \
             {} s of calls per step; load average before: {}",
            self.ladder.step_seconds, self.load_before
        );
        println!();
        println!(
            "{:<10} {:>5} {:>6} {:>6} {:>7} {:>7} {:>6} {:>7} {:>6} {:>8} {:>6} {:>6} {:>6}  {:<6} CPU s per 1,000 calls, by part",
            "side",
            "rate",
            "calls",
            "failed",
            "rtp",
            "placed",
            "setup",
            "relayed",
            "CPU",
            "CPU s/",
            "caller",
            "callee",
            "app",
            "result",
        );
        println!(
            "{:<10} {:>5} {:>6} {:>6} {:>7} {:>7} {:>6} {:>7} {:>6} {:>8} {:>6} {:>6} {:>6}",
            "", "/s", "", "", "back", "/s", "ms", "/call", "s", "1k calls", "s/1k", "s/1k", "s/1k"
        );
        for (name, side) in [("reference", &self.reference), ("bridgehead", &self.bridgehead)] {
            let Some(side) = side else { continue };
            for step in &side.steps {
                println!("{}", row(name, step));
            }
            if side.steps.is_empty() {
                println!("{name:<10} -");
            }
        }
        let notes: Vec<&String> = [&self.reference, &self.bridgehead]
            .into_iter()
            .flatten()
            .flat_map(|s| s.notes.iter())
            .chain(self.notes.iter())
            .collect();
        if !notes.is_empty() {
            println!();
        }
        for note in notes {
            println!("note: {note}");
        }
        println!();
        let (ours, reference) = (best(&self.bridgehead), best(&self.reference));
        let idle = |side: &Option<SideResult>| side.as_ref().and_then(|s| s.idle_cores);
        let idle_text = |side: &Option<SideResult>| {
            idle(side).map_or(String::new(), |c| format!("; idle it takes {:.1} % of a core", c * 100.0))
        };
        if let Some(s) = reference {
            println!(
                "reference:  {} calls/s, {:.3} CPU-s per 1,000 calls ({}){}",
                s.rate,
                s.sut_per_1000(),
                split(s),
                idle_text(&self.reference)
            );
        }
        if let Some(s) = ours {
            println!(
                "bridgehead: {} calls/s, {:.3} CPU-s per 1,000 calls; its TwiML server {:.3} more{}",
                s.rate,
                s.sut_per_1000(),
                helper_per_1000(s).unwrap_or(0.0),
                idle_text(&self.bridgehead)
            );
        }
        let cps_ratio = ours.zip(reference).map(|(o, r)| f64::from(o.rate) / f64::from(r.rate));
        let cpu_ratio = ours.zip(reference).map(|(o, r)| r.sut_per_1000() / o.sut_per_1000().max(1e-9));
        if let (Some(a), Some(b)) = (cps_ratio, cpu_ratio) {
            println!("bridgehead / reference: calls/s {a:.2} (goal > 1), calls per CPU-second {b:.2} (goal >= 2)");
        }
        let part = |s: Option<&Step>, name: &str| {
            s.and_then(|s| s.sut_cpu.iter().find(|(n, _)| n == name).map(|(_, v)| s.per_1000(*v)))
        };
        let parts = |s: &Step| -> serde_json::Map<String, serde_json::Value> {
            s.sut_cpu.iter().map(|(n, v)| (n.clone(), json!(s.per_1000(*v)))).collect()
        };
        let report = json!({
            "cps": ours.map(|s| s.rate),
            "cpu_s_per_1000_calls": ours.map(Step::sut_per_1000),
            "ref_cps": reference.map(|s| s.rate),
            "ref_cpu_s_per_1000_calls": reference.map(Step::sut_per_1000),
            "cps_vs_ref": cps_ratio,
            "calls_per_cpu_s_vs_ref": cpu_ratio,
            "twiml_cpu_s_per_1000_calls": ours.and_then(helper_per_1000),
            "cpu_s_per_1000_calls_by_thread": ours.map(parts),
            "ref_kamailio_cpu_s_per_1000_calls": part(reference, "kamailio"),
            "ref_rtpengine_cpu_s_per_1000_calls": part(reference, "rtpengine"),
            "caller_cpu_s_per_1000_calls": ours.map(|s| s.per_1000(s.caller_cpu)),
            "ref_caller_cpu_s_per_1000_calls": reference.map(|s| s.per_1000(s.caller_cpu)),
            "idle_cores": idle(&self.bridgehead),
            "ref_idle_cores": idle(&self.reference),
            "setup_ms": ours.and_then(|s| s.caller.setup_s).map(|v| v * 1000.0),
            "ref_setup_ms": reference.and_then(|s| s.caller.setup_s).map(|v| v * 1000.0),
            "step_seconds": self.ladder.step_seconds,
            "max_rate": self.ladder.max_rate,
            "hold_s": HOLD_SECONDS,
            "rtp_packets_per_call": RTP_PACKETS_PER_CALL,
            "load_before": self.load_before,
        });
        println!("{report}");
    }
}

fn best(side: &Option<SideResult>) -> Option<&Step> {
    side.as_ref().and_then(SideResult::best)
}

fn helper_per_1000(s: &Step) -> Option<f64> {
    (!s.helper_cpu.is_empty()).then(|| s.per_1000(s.helper_cpu.iter().map(|(_, v)| v).sum()))
}

/// `kamailio 0.61 + rtpengine 0.32` (per 1,000 calls), parts under 0.005 left out.
fn split(s: &Step) -> String {
    let shown: Vec<String> = s
        .sut_cpu
        .iter()
        .map(|(n, v)| (n, s.per_1000(*v)))
        .filter(|(_, v)| *v >= 0.005)
        .map(|(n, v)| format!("{n} {v:.2}"))
        .collect();
    shown.join(" + ")
}

fn row(side: &str, s: &Step) -> String {
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    let rtp = if s.rtp_expected == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", 100.0 * s.rtp_back as f64 / s.rtp_expected as f64)
    };
    let mut of_which = split(s);
    if let Some(n) = s.webhooks {
        of_which.push_str(&format!(" ({n} webhooks)"));
    }
    format!(
        "{:<10} {:>5} {:>6} {:>6} {:>7} {:>7.0} {:>6} {:>7} {:>6.2} {:>8.3} {:>6.2} {:>6.2} {:>6}  {:<6} {}",
        side,
        s.rate,
        s.calls,
        s.failed_calls,
        rtp,
        s.achieved_cps,
        opt(s.caller.setup_s.map(|v| v * 1000.0), 1),
        opt(s.relayed_per_call, 1),
        s.sut_seconds(),
        s.sut_per_1000(),
        s.per_1000(s.caller_cpu),
        s.per_1000(s.callee_cpu),
        opt(helper_per_1000(s), 2),
        if s.passed { "pass" } else { "FAIL" },
        of_which,
    )
}
