//! A call and its legs: the B2BUA core, without I/O.
//!
//! A [`Call`] joins the inbound SIP leg (the carrier's INVITE), the
//! instructions interpreter and the outbound legs a `<Dial>` rings, with the
//! media of every leg anchored in one dataplane session (side 0: the caller,
//! side 1: the callee that answered). Each leg is its own SIP dialog; every
//! SDP we send carries the dataplane's address of that leg.
//!
//! ```text
//!   SIP layer ──Sip(Event)──────▶ ┌──────┐ ──Respond / SendRequest / SendAck2xx / SendCancel──▶ SIP layer
//!   shell ──RequestSent{tag,key}─▶ │ Call │ ──CreateMedia / UpdateMedia / DeleteMedia──────────▶ dataplane
//!   dataplane ──MediaReady───────▶ │      │ ──RunInstructions, ToInterpreter(Input)─────────────▶ Interpreter
//!   Interpreter ──Interpreter(out)▶ │      │ ──ChildCall, Record(CallUpdate)───────────────────▶ store
//!   timers ──Timeout─────────────▶ └──────┘ ──Ended
//! ```
//!
//! Like every stateful part of the control plane (DESIGN.md, "Sans-IO
//! cores"), it is given `now` with each input, queues outputs for
//! [`Call::poll_output`], and says when it wants [`Input::Timeout`]
//! ([`Call::next_timeout`]); it never reads the clock, never spawns, never
//! sleeps. The shell that feeds it is `sip::transport`'s task.
//!
//! The interpreter is *not* owned by the call: the shell creates it when the
//! call says [`Output::RunInstructions`] (the offer was acceptable), performs
//! its `Fetch`/`Wait` outputs with the webhook client and timers, hands its
//! `Answer`/`StartDial`/`CancelDial`/`Hangup`/`Reject` to the call as
//! [`Input::Interpreter`], and gives it what the call sends back in
//! [`Output::ToInterpreter`]. That keeps the call free of HTTP concerns and
//! lets a REST-created call or a client leg drive the same interpreter.
//!
//! Semantics, in short (see `b2bua.rs` for the details):
//! - the inbound offer is checked (`sdp::negotiate::accept_offer`, else
//!   488) and the dataplane session is created before any SDP is sent;
//! - `Answer` from the interpreter answers the caller 200 with one audio
//!   codec (its first) and telephone-event; the dial then offers exactly
//!   those codecs, so the bridge needs no transcoding. With
//!   `answerOnBridge`, the caller is answered with the winner's answer;
//! - each `<Number>` (to the trunk) and `<Sip>` (to its IP address) is an
//!   INVITE offering the caller's codecs and payload types on our address;
//!   180 is relayed once, 183 with SDP becomes early media (our address),
//!   the first 2xx wins (ACK, CANCEL the others, ACK+BYE a later 2xx);
//! - BYE from the caller ends the call; BYE from the callee ends the dial
//!   (`DialOutcome` completed) and the instructions continue, as Twilio's do;
//! - re-INVITE/UPDATE with SDP from either side is relayed to the other
//!   side with our address and the same direction, and the answer relayed
//!   back; the dataplane leg is updated both times;
//! - `hangupOnStar` and `record` belong to the media services (ignored).

mod b2bua;
pub mod client_legs;
pub mod control;
mod dialog;
pub mod records;
pub mod shell;

pub use b2bua::Call;
pub(crate) use b2bua::{caller_user, sip_target};

use std::net::SocketAddr;
use std::time::Instant;

use dataplane::session::{LegSettings, SessionId};

use crate::instructions::interpreter;
use crate::instructions::twiml::StatusCallback;
use crate::sip::digest::Credentials;
use crate::sip::layer::{Event, Peer, TxKey};
use crate::sip::message::{Request, Response};
use crate::store::{CallUpdate, Timestamp};

/// Names a request the call asked to send, until the shell says which
/// transaction it became ([`Input::RequestSent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestTag(pub u32);

/// What a call is told once, when it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallConfig {
    /// The inbound leg's SID; child legs get their own.
    pub call_sid: String,
    /// `host:port` we put in Contact and in the From of outbound legs.
    pub local_sip: String,
    /// Where `<Number>` INVITEs go (the trunk's outbound destination);
    /// `None`: numbers cannot be dialed (the fork fails).
    pub trunk: Option<Peer>,
    /// What the trunk knows us by, for its digest challenges.
    pub trunk_credentials: Option<Credentials>,
    /// The caller ID of outbound legs when `<Dial callerId>` is not given
    /// (a client's `client:alice`); `None`: the user part of the caller's From.
    pub caller_id: Option<String>,
    /// The wall-clock time that corresponds to `epoch`, for call records:
    /// the core reads neither clock.
    pub wall_clock: Timestamp,
    pub epoch: Instant,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The INVITE that creates the call (trunk and number already checked).
    InboundInvite { key: TxKey, peer: Peer, request: Request },
    /// Place the call (a REST-created call): its first leg is our INVITE to
    /// `uri` at `peer`, from `from` (a user part); unanswered after
    /// `timeout` it is cancelled (`no-answer`). Answered, the instructions
    /// run ([`Output::RunInstructions`]) on an answered call.
    Originate { peer: Peer, uri: String, from: String, timeout: std::time::Duration },
    /// What the interpreter asked for. Only `Answer`, `StartDial`,
    /// `CancelDial`, `Hangup` and `Reject` concern the call; the rest is
    /// ignored.
    Interpreter(interpreter::Output),
    /// A transaction-layer event of this call (routed by Call-ID, or by
    /// `TxKey` for `Cancelled`, `Timeout`, `AckTimeout`, `Response`).
    Sip(Event),
    /// The request of [`Output::SendRequest`] `tag` is client transaction `key`.
    RequestSent { tag: RequestTag, key: TxKey },
    /// The dataplane session asked for with [`Output::CreateMedia`]; `local`
    /// is our address on each side.
    MediaReady { session: SessionId, local: [SocketAddr; 2] },
    /// The dataplane refused the session (table full, ports exhausted).
    MediaFailed,
    /// [`Call::next_timeout`] has come.
    Timeout,
    /// End the call from outside (REST `Status=completed`/`canceled`): the
    /// instructions stop, a bridge ends `completed`, BYE to an answered
    /// caller, a final response to a ringing one, CANCEL of our INVITE.
    Hangup,
    /// The dataplane saw no packet either way for its media timeout: a
    /// call whose parties both send (not on hold) is over (`completed`,
    /// with an error record naming it).
    MediaTimeout,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Answer server transaction `key` (`Layer::respond`).
    Respond {
        key: TxKey,
        response: Response,
    },
    /// Send `request` in a new client transaction (`Layer::send_request`,
    /// which adds the Via), then report its key with [`Input::RequestSent`].
    SendRequest {
        peer: Peer,
        request: Request,
        tag: RequestTag,
    },
    /// Send the ACK for a 2xx (`Layer::send_ack_2xx`).
    SendAck2xx {
        peer: Peer,
        request: Request,
    },
    /// Cancel our INVITE `invite`: `request` has everything but the Via,
    /// which must be the INVITE's top Via (`SIP/2.0/<transport>
    /// <sent-by>;branch=<invite.branch>;rport`, as `Layer::client_request`
    /// shows it); sent in a non-INVITE client transaction of its own.
    SendCancel {
        peer: Peer,
        request: Request,
        invite: TxKey,
    },
    /// Create the dataplane session of the call; answer with
    /// [`Input::MediaReady`] or [`Input::MediaFailed`].
    /// (`DataplaneHandle::create_session(SessionRequest { legs, rtcp_mux })`.)
    CreateMedia {
        legs: [LegSettings; 2],
        rtcp_mux: bool,
    },
    UpdateMedia {
        session: SessionId,
        side: usize,
        settings: LegSettings,
    },
    DeleteMedia {
        session: SessionId,
    },
    /// Play DTMF `digits` as RFC 4733 events (payload type `pt`) out of
    /// leg `side` (`DataplaneHandle::send_digits`).
    PlayDigits {
        session: SessionId,
        side: usize,
        digits: String,
        pt: u8,
    },
    /// The offer was acceptable: start the interpreter for this call.
    RunInstructions,
    /// Give this to the interpreter.
    ToInterpreter(interpreter::Input),
    /// An outbound leg was created: insert its call record (direction
    /// `outbound-dial`, parent this call, status `queued` until a Record).
    ChildCall {
        call_sid: String,
        from: String,
        to: String,
        /// The noun's `statusCallback` (its progress events go there).
        status_callback: StatusCallback,
    },
    /// Leg `call_sid` (a child, or an originated call itself) is ringing
    /// (its first 180 or 183): the `ringing` progress event.
    ChildRinging {
        call_sid: String,
    },
    /// Update the call record `call_sid` (this call or a child).
    Record {
        call_sid: String,
        update: CallUpdate,
    },
    /// The call is over. Only the tidying of forks still being cancelled
    /// may follow (CANCEL, ACK+BYE of a late 2xx): see `Call::has_open_forks`.
    Ended,
}

#[cfg(test)]
mod tests;
