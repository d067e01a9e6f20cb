//! Checks shared by the call suites (calls_e2e, clients_e2e): media through
//! the dataplane with payloads compared, call records read through Twilio's
//! helper library until final, and the context a failure prints.

use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::appliance::Appliance;
use crate::customer_app::CustomerApp;
use crate::rtp::{assert_payloads_delivered, Pace, RtpEndpoint, RtpStream};
use crate::settle;

/// The statuses a call record ends with.
pub const FINAL_STATUSES: [&str; 5] = ["completed", "busy", "no-answer", "failed", "canceled"];

/// One side of a media check: its RTP endpoint and the address the
/// appliance gave it to send to.
pub type Side<'a> = (&'a RtpEndpoint, SocketAddr);

/// Sends `packets` G.711 packets each way between `a` and `b` (each to the
/// appliance's address it was given) and checks that all arrive at the
/// other end with their payloads, from the appliance's address. `context`
/// is printed on failure.
pub fn media_flows(what: &str, a: Side<'_>, b: Side<'_>, packets: usize, context: impl Fn() -> String) {
    static SSRC: AtomicU32 = AtomicU32::new(0x5ca1_0000);
    let ssrc = SSRC.fetch_add(2, Ordering::Relaxed);
    let ((a_rtp, toward_a), (b_rtp, toward_b)) = (a, b);
    a_rtp.drain().unwrap();
    b_rtp.drain().unwrap();
    let at_b = b_rtp.receive_in_background(packets, Duration::from_secs(5)).unwrap();
    let at_a = a_rtp.receive_in_background(packets, Duration::from_secs(5)).unwrap();
    let pace = Pace::Every(Duration::from_millis(2));
    let up = a_rtp.send_stream(toward_a, &mut RtpStream::pcmu(ssrc, 1000, 16_000), packets, pace);
    let down = b_rtp.send_stream(toward_b, &mut RtpStream::pcmu(ssrc + 1, 7000, 99_000), packets, pace);
    let (up, down) = (up.unwrap(), down.unwrap());
    let (got_b, got_a) = (at_b.join().unwrap().unwrap(), at_a.join().unwrap().unwrap());
    if got_b.len() != packets || got_a.len() != packets {
        panic!("{what}: {} of {packets} packets reached b, {} reached a\n{}", got_b.len(), got_a.len(), context());
    }
    assert_payloads_delivered(&format!("{what}: a -> b"), &up, &got_b, toward_b);
    assert_payloads_delivered(&format!("{what}: b -> a"), &down, &got_a, toward_a);
}

/// The call records `list` returns (a JSON array), once `count` of them
/// are final; fails unless exactly `count` records exist, all final.
pub fn final_calls(
    within: Duration,
    count: usize,
    list: impl Fn() -> anyhow::Result<Value>,
    context: impl Fn() -> String,
) -> Vec<Value> {
    let finals = |calls: &Value| {
        calls.as_array().map_or(0, |a| {
            a.iter().filter(|c| c["status"].as_str().is_some_and(|s| FINAL_STATUSES.contains(&s))).count()
        })
    };
    let calls = settle(within, list, |calls| finals(calls) >= count).unwrap();
    let records = calls.as_array().cloned().unwrap_or_default();
    assert_eq!(
        (records.len(), finals(&calls)),
        (count, count),
        "call records (want {count}, all final): {calls:#}\n{}",
        context()
    );
    records
}

/// The record whose `field` is `value` (fails with all records otherwise).
pub fn record<'a>(calls: &'a [Value], field: &str, value: &str) -> &'a Value {
    calls
        .iter()
        .find(|c| c[field].as_str() == Some(value))
        .unwrap_or_else(|| panic!("no call record with {field} = {value}: {calls:#?}"))
}

/// What the appliance logged, what the app received and the non-zero
/// metrics whose names contain one of `metric_words`, for failures.
pub fn context(app: &Appliance, customer: &CustomerApp, metric_words: &[&str]) -> String {
    let stderr = app.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(150)..].join("\n");
    let requests = match customer.all_requests() {
        Ok(all) => all
            .iter()
            .map(|r| {
                let keys = [
                    "CallSid",
                    "CallStatus",
                    "From",
                    "To",
                    "Direction",
                    "DialCallStatus",
                    "ErrorCode",
                    "SequenceNumber",
                ];
                let params: Vec<String> = keys.iter().filter_map(|k| r.param(k).map(|v| format!("{k}={v}"))).collect();
                format!("  {} {} signature_valid={} {}", r.method, r.path, r.signature_valid, params.join(" "))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("  (cannot list: {e:#})"),
    };
    let metrics = match app.admin.metrics() {
        Ok(text) => text
            .lines()
            .filter(|l| !l.starts_with('#') && metric_words.iter().any(|w| l.contains(w)))
            .filter(|l| !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("(cannot read: {e:#})"),
    };
    format!(
        "--- customer app requests ---\n{requests}\n--- appliance metrics ({}; non-zero) ---\n{metrics}\n\
         --- appliance stderr (last 150 lines) ---\n{tail}",
        metric_words.join(", ")
    )
}
