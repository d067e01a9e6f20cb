//! Call records: one row per call leg, written when the leg starts and
//! updated as it progresses, so that every finished call leaves its record
//! (parties, direction, status, times, duration, parent call, error).

use super::sid::{AccountSid, ApplicationSid, CallSid};
use super::timestamp::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub sid: CallSid,
    pub account_sid: AccountSid,
    /// The leg this one was created from (`<Dial>` legs name the inbound leg).
    pub parent_call_sid: Option<CallSid>,
    /// As the call presented them: an E.164 number, `client:alice`, a SIP URI.
    pub from: String,
    pub to: String,
    pub direction: Direction,
    pub status: CallStatus,
    /// When the leg was dialed (or arrived); `None` while still queued.
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    /// Whole seconds the call was answered for; set when it ends.
    pub duration_s: Option<u32>,
    pub answered_by: Option<String>,
    /// A Twilio error code where one fits (11200 for an HTTP retrieval
    /// failure, 12100 for an unparsable document, ...).
    pub error_code: Option<u32>,
    pub error_message: Option<String>,
    pub application_sid: Option<ApplicationSid>,
    /// The name of the trunk (of the same account) the leg used, if any.
    pub trunk: Option<String>,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

impl CallRecord {
    /// A new record for a leg that starts now, with a generated SID.
    pub fn new(
        account_sid: AccountSid,
        from: String,
        to: String,
        direction: Direction,
        status: CallStatus,
    ) -> CallRecord {
        let now = Timestamp::now();
        CallRecord {
            sid: CallSid::generate(),
            account_sid,
            parent_call_sid: None,
            from,
            to,
            direction,
            status,
            start_time: (status != CallStatus::Queued).then_some(now),
            end_time: None,
            duration_s: None,
            answered_by: None,
            error_code: None,
            error_message: None,
            application_sid: None,
            trunk: None,
            date_created: now,
            date_updated: now,
        }
    }
}

/// How a leg came to be, with Twilio's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A call into the appliance (from a trunk or a client).
    Inbound,
    /// Created through the REST API.
    OutboundApi,
    /// Created by `<Dial>`.
    OutboundDial,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::OutboundApi => "outbound-api",
            Direction::OutboundDial => "outbound-dial",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        Some(match s {
            "inbound" => Direction::Inbound,
            "outbound-api" => Direction::OutboundApi,
            "outbound-dial" => Direction::OutboundDial,
            _ => return None,
        })
    }
}

/// Where a leg is in its life, with Twilio's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    Failed,
    NoAnswer,
    Canceled,
}

impl CallStatus {
    pub const ALL: [CallStatus; 8] = [
        CallStatus::Queued,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::Failed,
        CallStatus::NoAnswer,
        CallStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::Failed => "failed",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<CallStatus> {
        CallStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the leg is over (nothing changes its status afterwards).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallStatus::Completed | CallStatus::Busy | CallStatus::Failed | CallStatus::NoAnswer | CallStatus::Canceled
        )
    }
}

/// The fields a call's progress changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallUpdate {
    pub status: Option<CallStatus>,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    pub duration_s: Option<u32>,
    pub answered_by: Option<String>,
    pub error_code: Option<u32>,
    pub error_message: Option<String>,
}

/// One write of the call layer, applied in order with others by
/// [`Store::write_calls`](super::Store::write_calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallWrite {
    Insert(Box<CallRecord>),
    Update(CallSid, Box<CallUpdate>),
}

/// Which call records a list returns (the REST API's `To`, `From`,
/// `Status`, `ParentCallSid`, `StartTime>=`, `StartTime<` filters). Every
/// filter that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    pub to: Option<String>,
    pub from: Option<String>,
    pub status: Option<CallStatus>,
    pub parent_call_sid: Option<CallSid>,
    pub started_at_or_after: Option<Timestamp>,
    pub started_before: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in CallStatus::ALL {
            assert_eq!(CallStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CallStatus::parse("in_progress"), None);
        for d in [Direction::Inbound, Direction::OutboundApi, Direction::OutboundDial] {
            assert_eq!(Direction::parse(d.as_str()), Some(d));
        }
        assert!(CallStatus::NoAnswer.is_final());
        assert!(!CallStatus::Ringing.is_final());
    }
}
