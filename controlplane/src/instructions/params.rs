//! The form parameters a Twilio voice app reads from our requests.
//!
//! Apps written for Twilio look up these exact names (`request.form["From"]`),
//! so they are built in one place, as pure functions of the call's facts.

use std::time::{SystemTime, UNIX_EPOCH};

/// The REST API version every Twilio webhook announces.
pub const API_VERSION: &str = "2010-04-01";

/// Which way the call goes: the store's, so a record and its webhooks agree.
pub use crate::store::Direction;

/// Twilio's call statuses as webhooks send them in `CallStatus`: the
/// stored statuses plus `initiated`, which only callbacks report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    Queued,
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Failed => "failed",
            CallStatus::Canceled => "canceled",
        }
    }
}

/// The facts about a call that every webhook repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFacts {
    pub call_sid: String,
    pub account_sid: String,
    pub from: String,
    pub to: String,
    pub direction: Direction,
    /// The number that forwarded the call (SIP Diversion), where present.
    pub forwarded_from: Option<String>,
    /// The caller's name (CNAM / SIP display name), where known.
    pub caller_name: Option<String>,
    /// For `<Dial>` and REST child calls: the call that created this one.
    pub parent_call_sid: Option<String>,
    /// Parameters the voice request carries beside Twilio's: a client
    /// call's token `outgoing.params` and the `invite`'s custom parameters.
    pub custom: Vec<(String, String)>,
}

/// The parameters of a voice URL request (and of `action`, `<Redirect>` and
/// fallback requests, which add their own after these).
pub fn voice_request(call: &CallFacts, status: CallStatus) -> Vec<(String, String)> {
    let mut params = vec![
        pair("CallSid", &call.call_sid),
        pair("AccountSid", &call.account_sid),
        pair("From", &call.from),
        pair("To", &call.to),
        pair("CallStatus", status.as_str()),
        pair("ApiVersion", API_VERSION),
        pair("Direction", call.direction.as_str()),
        // Caller/Called are Twilio's older names for From/To; apps still read them.
        pair("Caller", &call.from),
        pair("Called", &call.to),
    ];
    if let Some(forwarded) = &call.forwarded_from {
        params.push(pair("ForwardedFrom", forwarded));
    }
    if let Some(name) = &call.caller_name {
        params.push(pair("CallerName", name));
    }
    if let Some(parent) = &call.parent_call_sid {
        params.push(pair("ParentCallSid", parent));
    }
    params.extend(call.custom.iter().cloned());
    params
}

/// One call progress event for a status callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressEvent {
    /// `initiated`, `ringing`, `in-progress` (the "answered" event), or the
    /// final status for the "completed" event.
    pub status: CallStatus,
    /// Seconds the call was connected; sent with final statuses only.
    pub duration_s: Option<u64>,
    pub at: SystemTime,
    /// Counts this call's callbacks from 0, so an app can order them even
    /// when they arrive out of order.
    pub sequence_number: u32,
}

/// The parameters of a status callback request: the voice parameters plus
/// `CallDuration` (final), `Timestamp` (RFC 2822), `SequenceNumber` and
/// `CallbackSource`.
pub fn status_callback(call: &CallFacts, event: &ProgressEvent) -> Vec<(String, String)> {
    let mut params = voice_request(call, event.status);
    if let Some(duration) = event.duration_s {
        params.push(pair("CallDuration", &duration.to_string()));
    }
    params.push(pair("Timestamp", &rfc2822(event.at)));
    params.push(pair("SequenceNumber", &event.sequence_number.to_string()));
    params.push(pair("CallbackSource", "call-progress-events"));
    params
}

/// `Thu, 01 Jan 1970 00:00:00 +0000`: the format of Twilio's `Timestamp`
/// (the store's formatting, so that records and webhooks agree).
pub fn rfc2822(at: SystemTime) -> String {
    let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    crate::store::Timestamp::from_unix_ms(ms).rfc2822().to_string()
}

fn pair(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn call() -> CallFacts {
        CallFacts {
            call_sid: "CA00000000000000000000000000000001".into(),
            account_sid: "AC00000000000000000000000000000001".into(),
            from: "+15550100002".into(),
            to: "+15550100001".into(),
            direction: Direction::Inbound,
            forwarded_from: None,
            caller_name: Some("Ada".into()),
            parent_call_sid: None,
            custom: Vec::new(),
        }
    }

    fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
        params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn voice_request_has_what_twilio_apps_read() {
        let p = voice_request(&call(), CallStatus::Ringing);
        assert_eq!(get(&p, "CallSid"), Some("CA00000000000000000000000000000001"));
        assert_eq!(get(&p, "AccountSid"), Some("AC00000000000000000000000000000001"));
        assert_eq!(get(&p, "From"), Some("+15550100002"));
        assert_eq!(get(&p, "Caller"), Some("+15550100002"));
        assert_eq!(get(&p, "To"), Some("+15550100001"));
        assert_eq!(get(&p, "Called"), Some("+15550100001"));
        assert_eq!(get(&p, "CallStatus"), Some("ringing"));
        assert_eq!(get(&p, "Direction"), Some("inbound"));
        assert_eq!(get(&p, "ApiVersion"), Some("2010-04-01"));
        assert_eq!(get(&p, "CallerName"), Some("Ada"));
        assert_eq!(get(&p, "ForwardedFrom"), None);
        assert_eq!(get(&p, "ParentCallSid"), None);
    }

    #[test]
    fn status_callback_adds_progress_fields() {
        let event = ProgressEvent {
            status: CallStatus::Completed,
            duration_s: Some(42),
            at: UNIX_EPOCH + Duration::from_secs(1_695_315_991),
            sequence_number: 3,
        };
        let p = status_callback(&call(), &event);
        assert_eq!(get(&p, "CallStatus"), Some("completed"));
        assert_eq!(get(&p, "CallDuration"), Some("42"));
        assert_eq!(get(&p, "Timestamp"), Some("Thu, 21 Sep 2023 17:06:31 +0000"));
        assert_eq!(get(&p, "SequenceNumber"), Some("3"));
        assert_eq!(get(&p, "CallbackSource"), Some("call-progress-events"));

        let ringing = ProgressEvent { status: CallStatus::Ringing, duration_s: None, ..event };
        assert_eq!(get(&status_callback(&call(), &ringing), "CallDuration"), None);
    }

    #[test]
    fn rfc2822_dates() {
        assert_eq!(rfc2822(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        // 2000-02-29 (a leap day in a century leap year), 2024-12-31 23:59:59.
        assert_eq!(rfc2822(UNIX_EPOCH + Duration::from_secs(951_782_400)), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc2822(UNIX_EPOCH + Duration::from_secs(1_735_689_599)), "Tue, 31 Dec 2024 23:59:59 +0000");
    }
}
