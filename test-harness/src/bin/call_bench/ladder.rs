//! The steps of rising call rates, and what one step measures.
//!
//! A step places `rate x step_seconds` calls at `rate` a second (one run of
//! the sipp caller) and reads, before and after it, the CPU time of every
//! process involved, the callee's count of RTP packets that came back and
//! the system's own counters. It passes when fewer than 0.1 % of its calls
//! failed, counting as failed a call that did not end with its BYE answered
//! and, for each `RTP_PACKETS_PER_CALL` packets that did not come back, one
//! more, and when the caller kept the rate (a system that answers late
//! makes sipp fall behind).
//!
//! Rates start at `start_rate` and grow by `factor` until a step fails or
//! `max_rate` passed; after the first failure one more step runs between
//! the best passing rate and the failing one (geometric middle).

use crate::cpu;
use crate::netplan::{HOLD_SECONDS, RTP_PACKETS_PER_CALL};
use crate::rig::Rig;
use crate::sipp::{self, Callee, CallerOutcome};
use anyhow::Result;
use std::net::SocketAddr;
use std::time::Duration;

/// CPU seconds by part (a process, or a group of a process's threads).
pub type CpuParts = Vec<(String, f64)>;

/// What the ladder needs from a system under test.
pub trait System {
    /// Its name in the table.
    fn label(&self) -> &'static str;
    /// A short prefix for the files of its steps.
    fn tag(&self) -> &'static str;
    /// Where the caller sends its INVITEs.
    fn sip_target(&self) -> SocketAddr;
    /// CPU seconds so far of its parts; they add up to its time.
    fn cpu(&self) -> Result<CpuParts>;
    /// CPU seconds so far of what serves it without being part of it (the
    /// customer's app).
    fn helper_cpu(&self) -> Result<CpuParts> {
        Ok(Vec::new())
    }
    /// Media packets its anchor says it relayed so far.
    fn relayed_packets(&self) -> Option<u64>;
    /// Counters of trouble (packets dropped, calls refused, by reason),
    /// read before and after each step; those that grew are shown for a
    /// step that failed.
    fn trouble(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    /// Calls (media sessions) still up: a step starts once the last one's
    /// are gone.
    fn calls_up(&self) -> Option<u64>;
    /// Webhook requests the customer's app answered so far.
    fn webhooks(&self) -> Option<u64> {
        None
    }
    /// Fails if one of its processes exited.
    fn check_running(&mut self) -> Result<()>;
    /// The end of its logs, for a note when calls fail.
    fn log_tail(&self) -> String;
}

#[derive(Debug, Clone)]
pub struct Ladder {
    pub start_rate: f64,
    pub max_rate: f64,
    pub step_seconds: f64,
    pub factor: f64,
}

impl Default for Ladder {
    fn default() -> Ladder {
        // 100 -> 4,000 calls/s in steps of 1.4 is 12 steps; at 5 s of calls
        // each (plus the hold and the pauses) a side takes about 1.5 min
        // when it fails half-way up.
        Ladder { start_rate: 100.0, max_rate: 4000.0, step_seconds: 5.0, factor: 1.4 }
    }
}

/// The warm-up before the first step: opens the app's connections, fills
/// caches, and shows at once whether calls go through at all.
const WARMUP_RATE: u32 = 20;
const WARMUP_SECONDS: f64 = 1.0;
/// After the caller's last BYE was answered, the system has this long to
/// release every call (its media session gone: the callee's leg hung up,
/// rtpengine's call deleted); a call still up then is a failed call.
const RELEASE_WITHIN: Duration = Duration::from_secs(3);
/// Then late counters (rtpengine counts a call's packets when it deletes
/// the call) and the last retransmissions.
const SETTLE: Duration = Duration::from_millis(200);
/// Between steps; longer after a failed one, whose stragglers (unanswered
/// retransmissions) should not land in the next.
const PAUSE: Duration = Duration::from_secs(2);
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// How long a step waits for the calls of the one before to end (a failed
/// step can leave calls that end only by timeout).
const IDLE_WITHIN: Duration = Duration::from_secs(30);
/// Idle CPU is measured over this, before the warm-up.
const IDLE_WINDOW: Duration = Duration::from_secs(2);
/// The share of the rate the caller must keep.
const RATE_KEPT: f64 = 0.9;

/// One step's figures.
#[derive(Debug, Clone)]
pub struct Step {
    pub rate: u32,
    pub calls: u64,
    pub caller: CallerOutcome,
    /// RTP packets that came back to the callee, and how many should have.
    pub rtp_back: u64,
    pub rtp_expected: u64,
    /// The anchor's own count of relayed packets, per successful call.
    pub relayed_per_call: Option<f64>,
    pub webhooks: Option<u64>,
    pub sut_cpu: CpuParts,
    pub helper_cpu: CpuParts,
    /// The system's trouble counters that grew during the step.
    pub trouble: Vec<(String, u64)>,
    /// Calls of earlier steps still up when this one started.
    pub leftover_calls: u64,
    pub caller_cpu: f64,
    pub callee_cpu: f64,
    /// Calls that did not complete, or were still up `RELEASE_WITHIN`
    /// after the caller's last BYE was answered.
    pub failed_calls: u64,
    pub unreleased_calls: u64,
    pub achieved_cps: f64,
    pub passed: bool,
    pub why: Option<String>,
}

impl Step {
    pub fn sut_seconds(&self) -> f64 {
        self.sut_cpu.iter().map(|(_, s)| s).sum()
    }

    /// CPU seconds per 1,000 calls placed.
    pub fn per_1000(&self, seconds: f64) -> f64 {
        seconds * 1000.0 / self.calls.max(1) as f64
    }

    pub fn sut_per_1000(&self) -> f64 {
        self.per_1000(self.sut_seconds())
    }
}

#[derive(Debug, Default)]
pub struct SideResult {
    pub steps: Vec<Step>,
    /// Index in `steps` of the highest passing rate.
    pub best: Option<usize>,
    /// CPU the system used with no call, in cores (CPU-seconds a second):
    /// a cost that weighs on the figures of the low rates.
    pub idle_cores: Option<f64>,
    pub notes: Vec<String>,
}

impl SideResult {
    pub fn failed(note: String) -> SideResult {
        SideResult { notes: vec![note], ..SideResult::default() }
    }

    pub fn best(&self) -> Option<&Step> {
        self.best.map(|i| &self.steps[i])
    }
}

impl Ladder {
    pub fn climb<S: System>(&self, rig: &Rig, system: &mut S) -> SideResult {
        let mut result = SideResult::default();
        let label = system.label();
        let callee = match sipp::start_callee(rig, system.tag()) {
            Ok(c) => c,
            Err(e) => return SideResult::failed(format!("{label}: the sipp callee did not start: {e:#}")),
        };
        result.idle_cores = idle_cores(system).ok();
        eprintln!("call-bench: {label}: warm-up, {WARMUP_RATE} calls/s for {WARMUP_SECONDS} s");
        let warmup = self.step(rig, system, &callee, WARMUP_RATE, WARMUP_SECONDS, &format!("{}-warmup", system.tag()));
        match warmup {
            Err(e) => return SideResult::failed(format!("{label}: warm-up: {e:#}")),
            Ok(w) if w.caller.successful == 0 => {
                result.notes.push(format!("{label}: no call of the warm-up completed: {}", describe_failure(&w)));
                result.notes.push(format!("{label}: its log ends with:\n{}", system.log_tail()));
                return result;
            }
            Ok(w) if !w.passed => result.notes.push(format!("{label}: warm-up: {}", describe_failure(&w))),
            Ok(_) => {}
        }
        std::thread::sleep(PAUSE);

        let mut rate = self.start_rate.round() as u32;
        let mut refining = false;
        loop {
            let tag = format!("{}-step{:02}-{rate}cps", system.tag(), result.steps.len() + 1);
            let step = match self.step(rig, system, &callee, rate, self.step_seconds, &tag) {
                Ok(s) => s,
                Err(e) => {
                    result.notes.push(format!("{label}: step at {rate} calls/s: {e:#}"));
                    break;
                }
            };
            eprintln!("call-bench: {label}: {}", progress(&step));
            let passed = step.passed;
            if !passed {
                result.notes.push(format!("{label}: {rate} calls/s failed: {}", describe_failure(&step)));
            }
            result.steps.push(step);
            if passed && result.best().is_none_or(|b| b.rate < rate) {
                result.best = Some(result.steps.len() - 1);
            }
            if let Err(e) = system.check_running() {
                result.notes.push(format!("{label}: {e:#}"));
                break;
            }
            if refining {
                break;
            }
            if passed {
                if f64::from(rate) >= self.max_rate {
                    break;
                }
                rate = ((f64::from(rate) * self.factor).round() as u32).min(self.max_rate as u32).max(rate + 1);
                std::thread::sleep(PAUSE);
            } else {
                let Some(best) = result.best().map(|b| b.rate) else { break };
                let middle = (f64::from(best) * f64::from(rate)).sqrt().round() as u32;
                if f64::from(middle) < f64::from(best) * 1.05 || f64::from(middle) > f64::from(rate) * 0.95 {
                    break;
                }
                rate = middle;
                refining = true;
                std::thread::sleep(PAUSE_AFTER_FAILURE);
            }
        }
        if let Some(f) = callee.failures().filter(|f| f.failed > 0) {
            result.notes.push(format!(
                "{label}: the callee counted {} failed calls over the side, {} of them with no ACK or no BYE \
                 within 20 s (its statistics: {}-uas.csv; the last step's may come later)",
                f.failed,
                f.timed_out,
                system.tag()
            ));
        }
        drop(callee);
        result
    }

    /// One run of the caller, measured.
    fn step<S: System>(
        &self,
        rig: &Rig,
        system: &mut S,
        callee: &Callee,
        rate: u32,
        seconds: f64,
        tag: &str,
    ) -> Result<Step> {
        let calls = ((f64::from(rate) * seconds).round() as u64).max(1);
        let leftover_calls = wait_idle(system);
        let callee_pid = callee.child.pid();
        let (sut0, helper0) = (system.cpu()?, system.helper_cpu()?);
        let (callee0, reaped0) = (cpu::tree_seconds(callee_pid)?, cpu::reaped_by_us_seconds()?);
        let (echo0, relayed0, hooks0) = (callee.echo.count()?, system.relayed_packets(), system.webhooks());
        let trouble0 = system.trouble();
        let udp0 = callee.echo.namespace_udp()?;

        let caller = sipp::run_caller(rig, system.sip_target(), rate, calls, tag)?;
        let unreleased_calls = wait_released(system);
        std::thread::sleep(SETTLE);

        let (sut1, helper1) = (system.cpu()?, system.helper_cpu()?);
        let (callee1, reaped1) = (cpu::tree_seconds(callee_pid)?, cpu::reaped_by_us_seconds()?);
        let (echo1, relayed1, hooks1) = (callee.echo.count()?, system.relayed_packets(), system.webhooks());
        // Every packet counted as back overflowed the callee's socket; the
        // rest overflowed some other socket (SIP, the anchor's, the caller's).
        let udp1 = callee.echo.namespace_udp()?;
        let overflows = (udp1.rcvbuf_errors - udp0.rcvbuf_errors).saturating_sub(echo1 - echo0);
        let no_ports = udp1.no_ports - udp0.no_ports;
        let mut trouble: Vec<(String, u64)> = system
            .trouble()
            .into_iter()
            .map(|(what, n)| {
                let before = trouble0.iter().find(|(w, _)| *w == what).map_or(0, |(_, b)| *b);
                (what, n.saturating_sub(before))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        if overflows > 0 {
            trouble.push(("UDP datagrams dropped by the kernel for a full receive buffer".into(), overflows));
        }
        if no_ports > 0 {
            trouble.push(("UDP datagrams to a port nobody listens on".into(), no_ports));
        }

        let rtp_back = echo1 - echo0;
        let rtp_expected = RTP_PACKETS_PER_CALL * caller.successful;
        let failed_calls = (calls.saturating_sub(caller.successful) + unreleased_calls).min(calls);
        let media_failed_calls = rtp_expected.saturating_sub(rtp_back).div_ceil(RTP_PACKETS_PER_CALL);
        // The calls were placed over the run minus the last call's length.
        let placing = caller.wall_s - HOLD_SECONDS - caller.setup_s.unwrap_or(0.0);
        let achieved_cps = caller.created as f64 / placing.max(0.1);
        let why = if let Some(p) = &caller.problem {
            Some(p.clone())
        } else if (failed_calls + media_failed_calls) * 1000 >= calls {
            Some(format!(
                "{failed_calls} calls failed ({unreleased_calls} of them still up {} s after the caller's last BYE), \
                 {} of {rtp_expected} RTP packets missing",
                RELEASE_WITHIN.as_secs(),
                rtp_expected.saturating_sub(rtp_back)
            ))
        } else if achieved_cps < RATE_KEPT * f64::from(rate) {
            Some(format!("the caller placed {achieved_cps:.0} calls/s of {rate}"))
        } else {
            None
        };
        let relayed_per_call = match (relayed0, relayed1) {
            (Some(a), Some(b)) if caller.successful > 0 => Some(b.saturating_sub(a) as f64 / caller.successful as f64),
            _ => None,
        };
        Ok(Step {
            rate,
            calls,
            rtp_back,
            rtp_expected,
            relayed_per_call,
            webhooks: hooks0.zip(hooks1).map(|(a, b)| b.saturating_sub(a)),
            sut_cpu: differences(&sut0, &sut1),
            helper_cpu: differences(&helper0, &helper1),
            trouble,
            leftover_calls,
            caller_cpu: reaped1 - reaped0,
            callee_cpu: callee1 - callee0,
            failed_calls,
            unreleased_calls,
            achieved_cps,
            passed: why.is_none(),
            why,
            caller,
        })
    }
}

/// Part by part, `after - before`; a part in only one of them counts as 0
/// in the other, so the differences add up to the difference of the sums.
fn differences(before: &[(String, f64)], after: &[(String, f64)]) -> CpuParts {
    let value = |parts: &[(String, f64)], name: &str| parts.iter().find(|(n, _)| n == name).map_or(0.0, |(_, v)| *v);
    let mut names: Vec<&String> = after.iter().map(|(n, _)| n).collect();
    names.extend(before.iter().map(|(n, _)| n).filter(|n| after.iter().all(|(a, _)| a != *n)));
    names.into_iter().map(|n| (n.clone(), value(after, n) - value(before, n))).collect()
}

/// CPU the system uses over `IDLE_WINDOW` with no calls, in cores.
fn idle_cores<S: System>(system: &S) -> Result<f64> {
    let sum = |parts: CpuParts| parts.iter().map(|(_, v)| v).sum::<f64>();
    let (before, start) = (sum(system.cpu()?), std::time::Instant::now());
    std::thread::sleep(IDLE_WINDOW);
    Ok((sum(system.cpu()?) - before) / start.elapsed().as_secs_f64())
}

/// Waits up to `RELEASE_WITHIN` for the system to release every call;
/// returns how many are still up.
fn wait_released<S: System>(system: &S) -> u64 {
    let deadline = std::time::Instant::now() + RELEASE_WITHIN;
    loop {
        let up = system.calls_up().unwrap_or(0);
        if up == 0 || std::time::Instant::now() >= deadline {
            return up;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the system has no call up (at most `IDLE_WITHIN`); returns
/// how many were still up.
fn wait_idle<S: System>(system: &S) -> u64 {
    let deadline = std::time::Instant::now() + IDLE_WITHIN;
    loop {
        let up = system.calls_up().unwrap_or(0);
        if up == 0 || std::time::Instant::now() >= deadline {
            return up;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One line of progress on stderr.
fn progress(s: &Step) -> String {
    format!(
        "{} calls/s: {} calls, {} failed ({} not released), RTP back {}/{}, {:.2} CPU-s per 1,000 calls: {}",
        s.rate,
        s.calls,
        s.failed_calls,
        s.unreleased_calls,
        s.rtp_back,
        s.rtp_expected,
        s.sut_per_1000(),
        if s.passed { "pass" } else { "FAIL" }
    )
}

/// Why a step failed, with what sipp complained about most.
fn describe_failure(s: &Step) -> String {
    let mut text = s.why.clone().unwrap_or_else(|| "passed".into());
    text.push_str(&format!(
        " (placed {}, completed {}, failed {})",
        s.caller.created, s.caller.successful, s.caller.failed
    ));
    if !s.trouble.is_empty() {
        let counters: Vec<String> = s.trouble.iter().map(|(r, n)| format!("{r} {n}")).collect();
        text.push_str(&format!("; the system counted: {}", counters.join(", ")));
    }
    if s.leftover_calls > 0 {
        text.push_str(&format!("; {} calls of the step before were still up when it started", s.leftover_calls));
    }
    for (complaint, n) in &s.caller.errors {
        let short: String = complaint.chars().take(240).collect();
        text.push_str(&format!("\n    sipp, {n} times: {short}"));
    }
    text
}
