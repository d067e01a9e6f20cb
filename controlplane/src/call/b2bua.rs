//! The call state machine: the inbound leg, the forks of a `<Dial>`, the
//! bridge between the caller and the fork that answered, and the relay of
//! in-dialog requests between them.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dataplane::session::{LegSettings, PayloadTypeMap, SessionId};

use super::dialog::{cancel_for, contact_uri, with_sdp, Dialog};
use super::{CallConfig, Input, Output, RequestTag};
use crate::instructions::interpreter::{self, DialCallStatus, DialOutcome};
use crate::instructions::twiml::{Dial, DialNoun, RejectReason, StatusCallback};
use crate::sdp::negotiate::{accept_offer, answer_codecs, payload_type_map, Codec, LegMedia, LocalSdp};
use crate::sdp::{Direction, SessionDescription};
use crate::sip::digest::Credentials;
use crate::sip::layer::{Event, Peer, Transport, TxKey};
use crate::sip::message::{Method, Request, Response};
use crate::sip::uri::{Host, Scheme, Uri};
use crate::sip::{Header, HeaderName, Headers};
use crate::store::{CallSid, CallStatus, CallUpdate, Timestamp};

/// Dataplane side of the caller and of the callee.
const CALLER: usize = 0;
const CALLEE: usize = 1;

/// Who sent an in-dialog request: the caller or fork `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Party {
    Caller,
    Fork(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InboundState {
    /// Waiting for the interpreter (or the bridge) to answer.
    Ringing,
    Answered,
    Ended,
}

struct Inbound {
    key: TxKey,
    invite: Request,
    dialog: Dialog,
    local_tag: String,
    /// The caller's latest offer.
    media: LegMedia,
    state: InboundState,
    /// What we answered with (our payload types are the caller's).
    answered_codecs: Option<Vec<(Codec, u8)>>,
    answered_at: Option<Instant>,
    ringing_sent: bool,
    sdp: Option<LocalSdp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForkState {
    /// INVITE sent, no response yet.
    Calling,
    /// A provisional response came.
    Proceeding,
    /// We want it cancelled; the CANCEL waits for a provisional response.
    CancelWanted,
    /// CANCEL sent; waiting for the 487 (or a 2xx to ACK and BYE).
    Cancelling,
    /// The winner: its dialog is up.
    Answered,
    /// Over, with the final status (or 408 for a timeout).
    Done(u16),
}

struct Fork {
    sid: String,
    generation: u32,
    peer: Peer,
    /// The INVITE as we built it (without the Via the layer adds).
    invite: Request,
    key: Option<TxKey>,
    state: ForkState,
    dialog: Option<Dialog>,
    /// What the callee said (early media or answer).
    media: Option<LegMedia>,
    sdp: LocalSdp,
    /// The status its call record ends with when we cancel it.
    cancel_status: CallStatus,
    /// A 180 or 183 came (the `ringing` event was given).
    rang: bool,
    /// For a 401/407 from the callee's side (the trunk's, or `<Sip>`'s).
    credentials: Option<Credentials>,
    /// Challenges answered (at most one).
    auth_tries: u8,
    /// Its media is anchored by the appliance it goes to (fleet): it was
    /// offered the caller's own SDP, and its answer goes to the caller
    /// untouched; this appliance relays nothing for the call.
    pass_through: bool,
    /// `<Number sendDigits>`: played to the callee once it answers.
    send_digits: Option<String>,
}

struct DialRun {
    generation: u32,
    deadline: Instant,
    time_limit: Duration,
    outcome_sent: bool,
}

struct Bridge {
    fork: usize,
    at: Instant,
    until: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    None,
    Creating,
    Ready { session: SessionId, local: [SocketAddr; 2] },
}

/// A request of ours, by what it is for.
#[derive(Debug, Clone, PartialEq)]
enum Purpose {
    Invite(usize),
    /// The INVITE of an originated call.
    Originate,
    /// A re-INVITE/UPDATE relayed to `to`, answering `from`'s `key`.
    Relay(Box<Relay>),
    Bye,
}

#[derive(Debug, Clone, PartialEq)]
struct Relay {
    from: Party,
    to: Party,
    key: TxKey,
    request: Request,
    offer: LegMedia,
}

/// The first leg of a call we place (REST), until it is answered and
/// becomes the call's `inbound` (its "caller" side, with a UAC dialog).
struct Origination {
    peer: Peer,
    invite: Request,
    key: Option<TxKey>,
    state: ForkState,
    deadline: Instant,
    rang: bool,
}

pub struct Call {
    cfg: CallConfig,
    inbound: Option<Inbound>,
    origination: Option<Origination>,
    media: Media,
    forks: Vec<Fork>,
    dial: Option<DialRun>,
    bridge: Option<Bridge>,
    pending_answer: bool,
    pending_dial: Option<Dial>,
    last_outcome: Option<DialCallStatus>,
    tags: HashMap<RequestTag, Purpose>,
    sent: HashMap<TxKey, Purpose>,
    relay_pending: bool,
    /// Our description toward an originated leg, until it answers.
    pending_sdp: Option<LocalSdp>,
    /// The far appliance's SDP the caller was answered with, while a
    /// pass-through fork is bridged (see [`Call::pass_through`]).
    passed_sdp: Option<String>,
    next_tag: u32,
    generation: u32,
    ended: bool,
    out: VecDeque<Output>,
}

impl Call {
    pub fn new(cfg: CallConfig) -> Call {
        Call {
            cfg,
            inbound: None,
            origination: None,
            media: Media::None,
            forks: Vec::new(),
            dial: None,
            bridge: None,
            pending_answer: false,
            pending_dial: None,
            last_outcome: None,
            tags: HashMap::new(),
            sent: HashMap::new(),
            relay_pending: false,
            pending_sdp: None,
            passed_sdp: None,
            next_tag: 0,
            generation: 0,
            ended: false,
            out: VecDeque::new(),
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// When [`Input::Timeout`] is due: the dial's `timeout`, the bridge's `timeLimit`.
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        let dial = self.dial.as_ref().filter(|d| !d.outcome_sent && self.bridge.is_none()).map(|d| d.deadline);
        let bridge = self.bridge.as_ref().map(|b| b.until);
        let origination =
            self.origination.as_ref().filter(|o| matches!(o.state, ForkState::Calling | ForkState::Proceeding));
        dial.into_iter().chain(bridge).chain(origination.map(|o| o.deadline)).min()
    }

    /// Forks still waiting for a final response after CANCEL: the shell
    /// keeps routing their responses here (to send the CANCEL a provisional
    /// response allows, or ACK+BYE a late 2xx), also after [`Output::Ended`].
    pub fn has_open_forks(&self) -> bool {
        let cancelling = |s: ForkState| matches!(s, ForkState::CancelWanted | ForkState::Cancelling);
        self.forks.iter().any(|f| cancelling(f.state)) || self.origination.as_ref().is_some_and(|o| cancelling(o.state))
    }

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        let tidying =
            matches!(input, Input::RequestSent { .. } | Input::Sip(Event::Response { .. } | Event::Timeout { .. }));
        if self.ended && !tidying {
            return;
        }
        match input {
            Input::InboundInvite { key, peer, request } => self.on_invite(now, key, peer, request),
            Input::Originate { peer, uri, from, timeout } => self.on_originate(now, peer, uri, from, timeout),
            Input::Interpreter(out) => self.on_interpreter(now, out),
            Input::Sip(event) => self.on_sip(now, event),
            Input::RequestSent { tag, key } => {
                if let Some(purpose) = self.tags.remove(&tag) {
                    if let Purpose::Invite(i) = purpose {
                        self.forks[i].key = Some(key.clone());
                    }
                    if let (Purpose::Originate, Some(o)) = (&purpose, self.origination.as_mut()) {
                        o.key = Some(key.clone());
                    }
                    self.sent.insert(key, purpose);
                }
            }
            Input::MediaReady { session, local } => self.on_media_ready(now, session, local),
            Input::MediaFailed => {
                self.media = Media::None;
                if self.inbound.is_none() && self.origination.is_some() {
                    return self.finish(now, CallStatus::Failed);
                }
                self.fail_unanswered(now, 503, CallStatus::Failed);
            }
            Input::Timeout => self.on_timeout(now),
            Input::MediaTimeout => self.on_media_timeout(now),
            Input::Hangup => {
                self.out.push_back(Output::ToInterpreter(interpreter::Input::CallEnded));
                self.hang_up(now);
            }
        }
    }

    // ------------------------------------------------------------ helpers

    fn timestamp(&self, now: Instant) -> Timestamp {
        let ms = i64::try_from(now.saturating_duration_since(self.cfg.epoch).as_millis()).unwrap_or(i64::MAX);
        Timestamp::from_unix_ms(self.cfg.wall_clock.unix_ms().saturating_add(ms))
    }

    fn record(&mut self, call_sid: String, update: CallUpdate) {
        self.out.push_back(Output::Record { call_sid, update });
    }

    fn status_record(&mut self, now: Instant, sid: String, status: CallStatus) {
        let mut update = CallUpdate { status: Some(status), ..CallUpdate::default() };
        if status.is_final() {
            update.end_time = Some(self.timestamp(now));
        }
        self.record(sid, update);
    }

    fn send_request(&mut self, peer: Peer, request: Request, purpose: Purpose) {
        self.next_tag += 1;
        let tag = RequestTag(self.next_tag);
        self.tags.insert(tag, purpose);
        self.out.push_back(Output::SendRequest { peer, request, tag });
    }

    fn respond_inbound(&mut self, code: u16, sdp: Option<String>) {
        let local_sip = self.cfg.local_sip.clone();
        let Some(inbound) = self.inbound.as_mut() else { return };
        let mut response = Response::for_request(&inbound.invite, code, "");
        if code > 100 {
            response.set_to_tag(&inbound.local_tag);
        }
        if (101..300).contains(&code) {
            response.headers.push(Header::new(HeaderName::Contact, format!("<sip:bridgehead@{local_sip}>")));
        }
        if let Some(sdp) = sdp {
            with_sdp(&mut response.headers, &mut response.body, sdp);
        }
        if code >= 200 {
            inbound.state = if code < 300 { InboundState::Answered } else { InboundState::Ended };
        }
        self.out.push_back(Output::Respond { key: inbound.key.clone(), response });
    }

    fn respond_to(&mut self, request: &Request, key: &TxKey, code: u16, sdp: Option<String>) {
        let mut response = Response::for_request(request, code, "");
        if let Some(sdp) = sdp {
            response.headers.push(Header::new(HeaderName::Contact, format!("<sip:bridgehead@{}>", self.cfg.local_sip)));
            with_sdp(&mut response.headers, &mut response.body, sdp);
        }
        self.out.push_back(Output::Respond { key: key.clone(), response });
    }

    fn local(&self, side: usize) -> Option<SocketAddr> {
        match self.media {
            Media::Ready { local, .. } => Some(local[side]),
            _ => None,
        }
    }

    fn session(&self) -> Option<SessionId> {
        match self.media {
            Media::Ready { session, .. } => Some(session),
            _ => None,
        }
    }

    /// Programs dataplane side `side` from what each party said.
    fn update_media(&mut self, side: usize) {
        let Some(session) = self.session() else { return };
        let Some(inbound) = self.inbound.as_ref() else { return };
        let callee = self.bridge.as_ref().map(|b| b.fork).or_else(|| self.early_fork());
        let callee_media = callee.and_then(|i| self.forks[i].media.clone());
        let (remote, pt_map) = match (side, &callee_media) {
            (CALLER, Some(b)) => (inbound.media.remote, payload_type_map(b, &inbound.media)),
            (CALLER, None) => (inbound.media.remote, Vec::new()),
            (_, Some(b)) => (b.remote, payload_type_map(&inbound.media, b)),
            (_, None) => (None, Vec::new()),
        };
        let settings =
            LegSettings { remote, pt_map: PayloadTypeMap::new(&pt_map).unwrap_or_default(), ..LegSettings::default() };
        self.out.push_back(Output::UpdateMedia { session, side, settings });
    }

    /// The fork whose early media the caller hears, if any.
    fn early_fork(&self) -> Option<usize> {
        let generation = self.dial.as_ref()?.generation;
        self.forks
            .iter()
            .rposition(|f| f.generation == generation && f.media.is_some() && matches!(f.state, ForkState::Proceeding))
    }

    // ------------------------------------------------------------ inbound

    fn on_invite(&mut self, now: Instant, key: TxKey, peer: Peer, request: Request) {
        if self.inbound.is_some() {
            return;
        }
        let offer = SessionDescription::parse(&request.body).ok();
        let media = match offer.as_ref().map(accept_offer) {
            Some(Ok(media)) => media,
            // No SDP (late offer) or one we cannot serve.
            _ => {
                let mut response = Response::for_request(&request, 488, "");
                response.set_to_tag(&format!("t{}", self.cfg.call_sid));
                self.out.push_back(Output::Respond { key, response });
                self.ended = true;
                self.out.push_back(Output::Ended);
                return;
            }
        };
        let local_tag = format!("t{}", random_tag());
        let Some(dialog) = Dialog::as_uas(&request, peer, &local_tag) else {
            let mut response = Response::for_request(&request, 400, "Missing Contact");
            response.set_to_tag(&local_tag);
            self.out.push_back(Output::Respond { key, response });
            self.ended = true;
            self.out.push_back(Output::Ended);
            return;
        };
        let remote = media.remote;
        self.inbound = Some(Inbound {
            key,
            invite: request,
            dialog,
            local_tag,
            media,
            state: InboundState::Ringing,
            answered_codecs: None,
            answered_at: None,
            ringing_sent: false,
            sdp: None,
        });
        self.respond_inbound(100, None);
        let caller = LegSettings { remote, ..LegSettings::default() };
        self.media = Media::Creating;
        self.out.push_back(Output::CreateMedia { legs: [caller, LegSettings::default()], rtcp_mux: false });
        let update = CallUpdate {
            status: Some(CallStatus::Ringing),
            start_time: Some(self.timestamp(now)),
            ..CallUpdate::default()
        };
        self.record(self.cfg.call_sid.clone(), update);
        self.out.push_back(Output::RunInstructions);
    }

    fn on_media_ready(&mut self, now: Instant, session: SessionId, local: [SocketAddr; 2]) {
        if self.media != Media::Creating {
            return;
        }
        self.media = Media::Ready { session, local };
        if self.origination.is_some() {
            return self.send_origination(now, local[CALLER]);
        }
        let id = u64::try_from(self.cfg.wall_clock.unix_ms()).unwrap_or(0);
        if let Some(inbound) = self.inbound.as_mut() {
            inbound.sdp = Some(LocalSdp::new(id, local[CALLER].ip()));
        }
        if std::mem::take(&mut self.pending_answer) {
            self.answer(now);
        }
        if let Some(dial) = self.pending_dial.take() {
            self.start_dial(now, dial);
        }
    }

    /// Our SDP toward the caller with `codecs`.
    fn caller_sdp(&mut self, codecs: &[(Codec, u8)], direction: Direction) -> Option<String> {
        let port = self.local(CALLER)?.port();
        let inbound = self.inbound.as_mut()?;
        let ptime = inbound.media.ptime;
        Some(inbound.sdp.as_mut()?.describe(port, codecs, direction, ptime).to_string())
    }

    /// Answers the caller before any bridge (`<Dial>` without
    /// `answerOnBridge`, `<Pause>`, `<Hangup>`): its first audio codec and
    /// telephone-event.
    fn answer(&mut self, now: Instant) {
        let Some(inbound) = self.inbound.as_ref() else { return };
        if inbound.state != InboundState::Ringing {
            return;
        }
        if self.session().is_none() {
            self.pending_answer = true;
            return;
        }
        let offered = &inbound.media.codecs;
        let codecs: Vec<(Codec, u8)> = offered
            .iter()
            .copied()
            .filter(|(c, _)| *c != Codec::TelephoneEvent)
            .take(1)
            .chain(offered.iter().copied().filter(|(c, _)| *c == Codec::TelephoneEvent))
            .collect();
        let direction = inbound.media.direction.reversed();
        let sdp = self.caller_sdp(&codecs, direction);
        self.respond_inbound(200, sdp);
        self.answered(now, codecs);
    }

    fn answered(&mut self, now: Instant, codecs: Vec<(Codec, u8)>) {
        if let Some(inbound) = self.inbound.as_mut() {
            inbound.answered_codecs = Some(codecs);
            inbound.answered_at = Some(now);
        }
        self.status_record(now, self.cfg.call_sid.clone(), CallStatus::InProgress);
    }

    // ------------------------------------------------------------ interpreter

    fn on_interpreter(&mut self, now: Instant, out: interpreter::Output) {
        match out {
            interpreter::Output::Answer => self.answer(now),
            interpreter::Output::StartDial(dial) => {
                if self.session().is_none() {
                    self.pending_dial = Some(dial);
                } else {
                    self.start_dial(now, dial);
                }
            }
            interpreter::Output::CancelDial => {
                if self.pending_dial.take().is_some() {
                    self.dial_outcome(DialOutcome {
                        status: DialCallStatus::Canceled,
                        dial_call_sid: None,
                        duration_s: 0,
                    });
                } else {
                    self.end_dial(now, DialCallStatus::Canceled, CallStatus::Canceled);
                }
            }
            interpreter::Output::Hangup => self.hang_up(now),
            interpreter::Output::Reject(reason) => {
                let code = match reason {
                    RejectReason::Busy => 486,
                    RejectReason::Rejected => 603,
                };
                let status = if code == 486 { CallStatus::Busy } else { CallStatus::Canceled };
                self.fail_unanswered(now, code, status);
            }
            interpreter::Output::Fetch(_)
            | interpreter::Output::Wait { .. }
            | interpreter::Output::Error(_)
            | interpreter::Output::Done => {}
        }
    }

    /// `<Hangup>`, the end of the document, or an error: BYE an answered
    /// caller, refuse an unanswered one.
    fn hang_up(&mut self, now: Instant) {
        if self.inbound.is_none() && self.origination.is_some() {
            // Ended (REST) before the callee answered.
            self.cancel_origination();
            return self.finish(now, CallStatus::Canceled);
        }
        let Some(state) = self.inbound.as_ref().map(|i| i.state) else { return };
        match state {
            InboundState::Answered => {
                // A bridge ends `completed` (BYE, its record, the dial's
                // outcome); forks still ringing are cancelled.
                self.end_dial(now, DialCallStatus::Completed, CallStatus::Canceled);
                self.bye(Party::Caller);
                self.finish(now, CallStatus::Completed);
            }
            InboundState::Ringing => {
                let (code, status) = match self.last_outcome {
                    Some(DialCallStatus::Busy) => (486, CallStatus::Busy),
                    Some(DialCallStatus::NoAnswer) => (480, CallStatus::NoAnswer),
                    _ => (480, CallStatus::Failed),
                };
                self.fail_unanswered(now, code, status);
            }
            InboundState::Ended => {}
        }
    }

    fn fail_unanswered(&mut self, now: Instant, code: u16, status: CallStatus) {
        match self.inbound.as_ref().map(|i| i.state) {
            Some(InboundState::Ringing) => {
                self.respond_inbound(code, None);
                self.finish(now, status);
            }
            Some(InboundState::Answered) => self.hang_up(now),
            _ => {}
        }
    }

    /// Ends the call: media, record, `Ended`.
    fn finish(&mut self, now: Instant, status: CallStatus) {
        if self.ended {
            return;
        }
        if let Some(d) = self.dial.as_ref().filter(|d| !d.outcome_sent).map(|d| d.generation) {
            self.cancel_forks(now, d, None);
        }
        if let Some(session) = self.session() {
            self.out.push_back(Output::DeleteMedia { session });
        }
        self.media = Media::None;
        let answered_at = self.inbound.as_mut().and_then(|i| {
            i.state = InboundState::Ended;
            i.answered_at
        });
        let update = CallUpdate {
            status: Some(if answered_at.is_some() { CallStatus::Completed } else { status }),
            end_time: Some(self.timestamp(now)),
            duration_s: Some(answered_at.map_or(0, |at| secs(now - at))),
            ..CallUpdate::default()
        };
        self.record(self.cfg.call_sid.clone(), update);
        self.ended = true;
        self.out.push_back(Output::Ended);
    }

    // ------------------------------------------------------------ dial

    fn start_dial(&mut self, now: Instant, dial: Dial) {
        let Some(inbound) = self.inbound.as_ref() else { return };
        if inbound.state == InboundState::Ended {
            return;
        }
        let codecs = inbound.answered_codecs.clone().unwrap_or_else(|| inbound.media.codecs.clone());
        let direction = inbound.media.direction;
        let ptime = inbound.media.ptime;
        let caller_id = dial
            .caller_id
            .clone()
            .or_else(|| self.cfg.caller_id.clone())
            .unwrap_or_else(|| caller_user(&inbound.invite));
        self.generation += 1;
        self.last_outcome = None;
        self.dial = Some(DialRun {
            generation: self.generation,
            deadline: now + Duration::from_secs(u64::from(dial.timeout_s)),
            time_limit: Duration::from_secs(u64::from(dial.time_limit_s)),
            outcome_sent: false,
        });
        let Some(local) = self.local(CALLEE) else { return };
        for noun in dial.nouns.iter().take(crate::instructions::twiml::MAX_DIAL_NOUNS) {
            let index = self.forks.len();
            // `to` as the call record and webhooks show it: the number, or the URI.
            let (target, status_callback, to, credentials) = match noun {
                DialNoun::Number(n) => (
                    self.number_target(&n.number),
                    n.status_callback.clone(),
                    dialed_digits(&n.number),
                    self.cfg.trunk_credentials.clone(),
                ),
                DialNoun::Sip(s) => (
                    sip_target(&s.uri),
                    s.status_callback.clone(),
                    s.uri.trim().to_owned(),
                    s.username
                        .clone()
                        .zip(s.password.clone())
                        .map(|(username, password)| Credentials { username, password }),
                ),
                DialNoun::Client(c) => (
                    Some(super::client_legs::client_target(&c.identity)),
                    c.status_callback.clone(),
                    format!("client:{}", c.identity),
                    None,
                ),
                // The interpreter refuses the others.
                _ => (None, StatusCallback::default(), String::new(), None),
            };
            let sid = CallSid::generate().as_str().to_string();
            let Some((uri, peer)) = target else {
                self.forks.push(Fork {
                    sid: sid.clone(),
                    generation: self.generation,
                    peer: Peer { transport: Transport::Udp, addr: local, connection: None },
                    invite: Request {
                        method: Method::Invite,
                        uri: Bytes::new(),
                        headers: Headers::new(),
                        body: Bytes::new(),
                    },
                    key: None,
                    state: ForkState::Done(404),
                    dialog: None,
                    media: None,
                    sdp: LocalSdp::new(0, local.ip()),
                    cancel_status: CallStatus::Failed,
                    rang: false,
                    credentials: None,
                    auth_tries: 0,
                    pass_through: false,
                    send_digits: None,
                });
                continue;
            };
            let id = u64::try_from(self.cfg.wall_clock.unix_ms()).unwrap_or(0) + index as u64 + 1;
            let mut sdp = LocalSdp::new(id, local.ip());
            let offer = sdp.describe(local.port(), &codecs, direction, ptime).to_string();
            let tag = format!("f{index}{}", random_tag());
            let call_id = random_call_id();
            let mut invite = new_invite(&uri, &caller_id, &tag, &call_id, &self.cfg.local_sip);
            with_sdp(&mut invite.headers, &mut invite.body, offer);
            if let DialNoun::Client(c) = noun {
                super::client_legs::describe_fork(&mut invite.headers, c, &sid, &caller_id);
            }
            self.out.push_back(Output::ChildCall {
                call_sid: sid.clone(),
                from: caller_id.clone(),
                to,
                status_callback,
            });
            let update = CallUpdate {
                status: Some(CallStatus::Ringing),
                start_time: Some(self.timestamp(now)),
                ..CallUpdate::default()
            };
            self.record(sid.clone(), update);
            self.forks.push(Fork {
                sid,
                generation: self.generation,
                peer,
                invite: invite.clone(),
                key: None,
                state: ForkState::Calling,
                dialog: None,
                media: None,
                sdp,
                cancel_status: CallStatus::Canceled,
                rang: false,
                credentials,
                auth_tries: 0,
                pass_through: false,
                send_digits: match noun {
                    DialNoun::Number(n) => n.send_digits.clone(),
                    _ => None,
                },
            });
            self.send_request(peer, invite, Purpose::Invite(index));
        }
        self.check_dial_over(now);
    }

    /// Lets the fork whose INVITE has Call-ID `call_id` carry the media
    /// itself, through the appliance it goes to: returns the caller's own
    /// offer, to send instead of ours. Only while the caller is unanswered
    /// and hears no early media (its answer will be the fork's SDP);
    /// otherwise `None`, and the media stays anchored here.
    pub fn pass_through(&mut self, call_id: &str) -> Option<Bytes> {
        let inbound = self.inbound.as_ref().filter(|x| x.state == InboundState::Ringing)?;
        if self.early_fork().is_some() || self.bridge.is_some() {
            return None;
        }
        let body = inbound.invite.body.clone();
        // With siblings ringing, one of them may give the caller our SDP
        // (early media) before this one answers: then it must stay ours.
        let generation = self.dial.as_ref()?.generation;
        if self.forks.iter().filter(|f| f.generation == generation).count() != 1 {
            return None;
        }
        let fork = self
            .forks
            .iter_mut()
            .find(|f| f.state == ForkState::Calling && f.invite.headers.call_id().ok() == Some(call_id))?;
        fork.pass_through = true;
        Some(body)
    }

    fn number_target(&self, number: &str) -> Option<(String, Peer)> {
        let digits = dialed_digits(number);
        let peer = self.cfg.trunk?;
        if digits.is_empty() {
            return None;
        }
        Some((format!("sip:{digits}@{}", peer.addr), peer))
    }

    /// CANCELs the forks of dial `generation` but `except`.
    /// Each one's record ends with its `cancel_status` (`canceled` unless the
    /// dial set another, such as `no-answer` at its timeout).
    fn cancel_forks(&mut self, now: Instant, generation: u32, except: Option<usize>) {
        for i in 0..self.forks.len() {
            if Some(i) == except || self.forks[i].generation != generation {
                continue;
            }
            match self.forks[i].state {
                ForkState::Calling => self.forks[i].state = ForkState::CancelWanted,
                ForkState::Proceeding => self.send_cancel(i),
                _ => continue,
            }
            let (sid, status) = (self.forks[i].sid.clone(), self.forks[i].cancel_status);
            self.status_record(now, sid, status);
        }
    }

    fn send_cancel(&mut self, i: usize) {
        let fork = &mut self.forks[i];
        let Some(key) = fork.key.clone() else {
            fork.state = ForkState::CancelWanted;
            return;
        };
        fork.state = ForkState::Cancelling;
        let request = cancel_for(&fork.invite);
        self.out.push_back(Output::SendCancel { peer: fork.peer, request, invite: key });
    }

    fn dial_outcome(&mut self, outcome: DialOutcome) {
        self.last_outcome = Some(outcome.status);
        self.out.push_back(Output::ToInterpreter(interpreter::Input::DialOutcome(outcome)));
    }

    /// Ends the current dial (ringing or bridged) with `status`; forks still
    /// ringing get CANCEL and end with `fork_status`.
    fn end_dial(&mut self, now: Instant, status: DialCallStatus, fork_status: CallStatus) {
        let Some(dial) = self.dial.as_mut().filter(|d| !d.outcome_sent) else { return };
        dial.outcome_sent = true;
        let generation = dial.generation;
        if let Some(b) = self.bridge.take() {
            self.bye(Party::Fork(b.fork));
            let duration = secs(now - b.at);
            let sid = self.forks[b.fork].sid.clone();
            self.forks[b.fork].state = ForkState::Done(200);
            let update = CallUpdate {
                status: Some(CallStatus::Completed),
                end_time: Some(self.timestamp(now)),
                duration_s: Some(duration),
                ..CallUpdate::default()
            };
            self.record(sid.clone(), update);
            self.dial_outcome(DialOutcome {
                status: DialCallStatus::Completed,
                dial_call_sid: Some(sid),
                duration_s: u64::from(duration),
            });
            return;
        }
        let ringing: Vec<usize> = (0..self.forks.len())
            .filter(|&i| {
                self.forks[i].generation == generation
                    && matches!(self.forks[i].state, ForkState::Calling | ForkState::Proceeding)
            })
            .collect();
        for &i in &ringing {
            self.forks[i].cancel_status = fork_status;
        }
        self.cancel_forks(now, generation, None);
        let sid = self.forks.iter().rev().find(|f| f.generation == generation).map(|f| f.sid.clone());
        self.dial_outcome(DialOutcome { status, dial_call_sid: sid, duration_s: 0 });
    }

    /// Every fork of the dial failed: busy if all were busy, else failed.
    fn check_dial_over(&mut self, now: Instant) {
        let Some(dial) = self.dial.as_ref().filter(|d| !d.outcome_sent) else { return };
        let generation = dial.generation;
        let forks: Vec<&Fork> = self.forks.iter().filter(|f| f.generation == generation).collect();
        let codes: Option<Vec<u16>> = forks
            .iter()
            .map(|f| match f.state {
                ForkState::Done(code) => Some(code),
                _ => None,
            })
            .collect();
        let Some(codes) = codes else { return };
        let all = |f: fn(u16) -> bool| !codes.is_empty() && codes.iter().all(|c| f(*c));
        // Nobody there (a `<Client>` with no device present, a 480 from
        // the far end) is `no-answer`, as the leg's own record says; a
        // transaction timeout (nothing answered at all) stays `failed`.
        let status = if all(|c| matches!(c, 486 | 600)) {
            DialCallStatus::Busy
        } else if all(|c| c == 480) {
            DialCallStatus::NoAnswer
        } else {
            DialCallStatus::Failed
        };
        let sid = forks.last().map(|f| f.sid.clone());
        if let Some(d) = self.dial.as_mut() {
            d.outcome_sent = true;
        }
        let _ = now;
        self.dial_outcome(DialOutcome { status, dial_call_sid: sid, duration_s: 0 });
    }

    /// Silence both ways: a dead peer (gone without BYE), unless someone
    /// put the call on hold, where silence is expected.
    fn on_media_timeout(&mut self, now: Instant) {
        let Some(inbound) = self.inbound.as_ref().filter(|i| i.state == InboundState::Answered) else { return };
        let callee_sends = self
            .bridge
            .as_ref()
            .and_then(|b| self.forks[b.fork].media.as_ref())
            .is_none_or(|m| m.direction == Direction::SendRecv);
        if inbound.media.direction != Direction::SendRecv || !callee_sends {
            return;
        }
        let update =
            CallUpdate { error_message: Some("media timeout: no RTP either way".into()), ..CallUpdate::default() };
        self.record(self.cfg.call_sid.clone(), update);
        self.out.push_back(Output::ToInterpreter(interpreter::Input::CallEnded));
        self.end_dial(now, DialCallStatus::Completed, CallStatus::Completed);
        self.hang_up(now);
    }

    fn on_timeout(&mut self, now: Instant) {
        let ringing =
            self.origination.as_ref().filter(|o| matches!(o.state, ForkState::Calling | ForkState::Proceeding));
        if ringing.is_some_and(|o| now >= o.deadline) {
            self.cancel_origination();
            return self.finish(now, CallStatus::NoAnswer);
        }
        if let Some(b) = self.bridge.as_ref() {
            if now >= b.until {
                // timeLimit: both sides are hung up.
                self.out.push_back(Output::ToInterpreter(interpreter::Input::CallEnded));
                self.end_dial(now, DialCallStatus::Completed, CallStatus::Completed);
                self.bye(Party::Caller);
                self.finish(now, CallStatus::Completed);
            }
            return;
        }
        if self.dial.as_ref().is_some_and(|d| !d.outcome_sent && now >= d.deadline) {
            self.end_dial(now, DialCallStatus::NoAnswer, CallStatus::NoAnswer);
        }
    }

    // ------------------------------------------------------------ SIP events

    fn on_sip(&mut self, now: Instant, event: Event) {
        match event {
            Event::Request { key, peer: _, request } => self.on_request(now, key, request),
            Event::Ack { .. } => {}
            Event::Cancelled { invite } => {
                let ours = self.inbound.as_ref().is_some_and(|i| i.key == invite && i.state == InboundState::Ringing);
                if ours {
                    self.respond_inbound(487, None);
                    self.caller_gone(now, CallStatus::Canceled);
                }
            }
            Event::Response { key, response } => self.on_response(now, key, response),
            Event::Timeout { key } => match self.sent.remove(&key) {
                Some(Purpose::Invite(i)) => self.fork_failed(now, i, 408),
                Some(Purpose::Originate) => self.origination_failed(now, 408),
                Some(Purpose::Relay(relay)) => {
                    self.relay_pending = false;
                    self.respond_to(&relay.request, &relay.key, 408, None);
                }
                _ => {}
            },
            Event::AckTimeout { key } => {
                if self.inbound.as_ref().is_some_and(|i| i.key == key) {
                    self.bye(Party::Caller);
                    self.caller_gone(now, CallStatus::Completed);
                }
            }
        }
    }

    /// The caller left (CANCEL, BYE, no ACK): end the dial and the call.
    fn caller_gone(&mut self, now: Instant, status: CallStatus) {
        self.out.push_back(Output::ToInterpreter(interpreter::Input::CallEnded));
        if self.pending_dial.take().is_some() {
            self.dial_outcome(DialOutcome { status: DialCallStatus::Canceled, dial_call_sid: None, duration_s: 0 });
        }
        self.end_dial(now, DialCallStatus::Canceled, CallStatus::Canceled);
        self.finish(now, status);
    }

    fn party_of(&self, request: &Request) -> Option<Party> {
        let call_id = request.headers.call_id().ok()?;
        if self.inbound.as_ref().is_some_and(|i| i.dialog.call_id == call_id) {
            return Some(Party::Caller);
        }
        self.forks.iter().position(|f| f.dialog.as_ref().is_some_and(|d| d.call_id == call_id)).map(Party::Fork)
    }

    fn on_request(&mut self, now: Instant, key: TxKey, request: Request) {
        let Some(party) = self.party_of(&request) else {
            return self.respond_to(&request, &key, 481, None);
        };
        match request.method {
            Method::Bye => {
                self.respond_to(&request, &key, 200, None);
                match party {
                    Party::Caller => self.caller_gone(now, CallStatus::Completed),
                    Party::Fork(i) => {
                        if self.bridge.as_ref().is_some_and(|b| b.fork == i) {
                            // The callee hung up: the dial is over; the instructions go on.
                            self.bridge_ended_by_callee(now, i);
                        } else {
                            self.forks[i].state = ForkState::Done(200);
                        }
                    }
                }
            }
            Method::Invite | Method::Update => self.on_offer(now, party, key, request),
            Method::Options => self.respond_to(&request, &key, 200, None),
            _ => self.respond_to(&request, &key, 501, None),
        }
    }

    fn bridge_ended_by_callee(&mut self, now: Instant, fork: usize) {
        let Some(b) = self.bridge.take() else { return };
        let duration = secs(now - b.at);
        self.forks[fork].state = ForkState::Done(200);
        let sid = self.forks[fork].sid.clone();
        let update = CallUpdate {
            status: Some(CallStatus::Completed),
            end_time: Some(self.timestamp(now)),
            duration_s: Some(duration),
            ..CallUpdate::default()
        };
        self.record(sid.clone(), update);
        if let Some(d) = self.dial.as_mut() {
            d.outcome_sent = true;
        }
        self.update_media(CALLEE);
        self.dial_outcome(DialOutcome {
            status: DialCallStatus::Completed,
            dial_call_sid: Some(sid),
            duration_s: u64::from(duration),
        });
        if self.passed_sdp.take().is_some() {
            // The caller's media went to the far appliance, which is gone
            // from the call: nothing here could carry what the instructions
            // do next, so the call ends with its bridge (docs/fleet.md).
            self.hang_up(now);
        }
    }

    fn bye(&mut self, party: Party) {
        let dialog = match party {
            Party::Caller => self.inbound.as_mut().filter(|i| i.state == InboundState::Answered).map(|i| &mut i.dialog),
            Party::Fork(i) => self.forks[i].dialog.as_mut(),
        };
        let Some(dialog) = dialog else { return };
        let request = dialog.request(Method::Bye);
        let peer = dialog.peer;
        if let Party::Caller = party {
            if let Some(i) = self.inbound.as_mut() {
                i.state = InboundState::Ended;
            }
        }
        self.send_request(peer, request, Purpose::Bye);
    }

    fn on_response(&mut self, now: Instant, key: TxKey, response: Response) {
        match self.sent.get(&key).cloned() {
            Some(Purpose::Invite(i)) => {
                if response.code >= 200 {
                    self.sent.remove(&key);
                }
                self.on_fork_response(now, i, response);
            }
            Some(Purpose::Originate) => {
                if response.code >= 200 {
                    self.sent.remove(&key);
                }
                self.on_origination_response(now, response);
            }
            Some(Purpose::Relay(relay)) if response.code >= 200 => {
                self.sent.remove(&key);
                self.on_relay_answer(*relay, response);
            }
            Some(Purpose::Bye) if response.code >= 200 => {
                self.sent.remove(&key);
            }
            _ => {}
        }
    }

    fn on_fork_response(&mut self, now: Instant, i: usize, response: Response) {
        let code = response.code;
        let current = self.dial.as_ref().is_some_and(|d| d.generation == self.forks[i].generation && !d.outcome_sent);
        if code < 200 {
            match self.forks[i].state {
                ForkState::Calling => self.forks[i].state = ForkState::Proceeding,
                ForkState::CancelWanted => {
                    self.forks[i].state = ForkState::Proceeding;
                    self.send_cancel(i);
                    return;
                }
                _ => {}
            }
            if !current || code == 100 {
                return;
            }
            if !std::mem::replace(&mut self.forks[i].rang, true) {
                self.out.push_back(Output::ChildRinging { call_sid: self.forks[i].sid.clone() });
            }
            let early = SessionDescription::parse(&response.body).ok().and_then(|s| LegMedia::from_sdp(&s).ok());
            // A pass-through fork's early media is not ours to relay: it rings.
            let pass_through = self.forks[i].pass_through;
            let early = early.filter(|_| !pass_through);
            match early {
                Some(media) => self.early_media(now, i, media),
                None if code == 180 || pass_through => {
                    let ringing =
                        self.inbound.as_ref().is_some_and(|x| x.state == InboundState::Ringing && !x.ringing_sent);
                    if ringing {
                        self.respond_inbound(180, None);
                        if let Some(x) = self.inbound.as_mut() {
                            x.ringing_sent = true;
                        }
                    }
                }
                None => {}
            }
            return;
        }
        if (code == 401 || code == 407) && self.answer_challenge(i, &response) {
            return;
        }
        if code >= 300 {
            return self.fork_failed(now, i, code);
        }
        // A 2xx: a dialog with this callee.
        let Some(mut dialog) = Dialog::as_uac(&self.forks[i].invite, &response, self.forks[i].peer) else { return };
        let cseq = response.headers.cseq().map(|c| c.seq).unwrap_or(1);
        let ack = dialog.ack(cseq);
        self.out.push_back(Output::SendAck2xx { peer: dialog.peer, request: ack });
        let answer = SessionDescription::parse(&response.body).ok().and_then(|s| LegMedia::from_sdp(&s).ok());
        let codecs = match (self.inbound.as_ref(), answer.as_ref()) {
            (Some(x), Some(a)) => answer_codecs(&x.media, a).ok(),
            _ => None,
        };
        let (true, Some(answer), Some(codecs)) = (current && self.bridge.is_none(), answer, codecs) else {
            // Too late (another fork won, the dial is over) or unusable: hang up on it.
            let request = dialog.request(Method::Bye);
            self.forks[i].state = ForkState::Done(code);
            self.forks[i].dialog = Some(dialog);
            self.send_request(self.forks[i].peer, request, Purpose::Bye);
            if current {
                self.fork_failed(now, i, 488);
            }
            return;
        };
        let fork = &mut self.forks[i];
        fork.state = ForkState::Answered;
        fork.dialog = Some(dialog);
        fork.media = Some(answer.clone());
        let generation = fork.generation;
        let sid = fork.sid.clone();
        let limit = self.dial.as_ref().map_or(Duration::from_secs(4 * 3600), |d| d.time_limit);
        self.bridge = Some(Bridge { fork: i, at: now, until: now + limit });
        self.cancel_forks(now, generation, Some(i));
        let update = CallUpdate { status: Some(CallStatus::InProgress), ..CallUpdate::default() };
        self.record(sid, update);
        let ringing = self.inbound.as_ref().is_some_and(|x| x.state == InboundState::Ringing);
        if self.forks[i].pass_through && ringing {
            // The far appliance's media address goes to the caller as it
            // came; our session carries nothing: gone.
            let passed = String::from_utf8_lossy(&response.body).into_owned();
            self.respond_inbound(200, Some(passed.clone()));
            self.passed_sdp = Some(passed);
            self.answered(now, codecs);
            if let Some(session) = self.session() {
                self.out.push_back(Output::DeleteMedia { session });
            }
            self.media = Media::None;
            return;
        }
        self.update_media(CALLEE);
        self.update_media(CALLER);
        if let Some(digits) = self.forks[i].send_digits.take() {
            match self.dtmf_toward(false) {
                Some((session, side, pt)) => self.out.push_back(Output::PlayDigits { session, side, digits, pt }),
                None => tracing::info!(call = %self.forks[i].sid, "sendDigits: the callee offered no telephone-event"),
            }
        }
        if self.inbound.as_ref().is_some_and(|x| x.state == InboundState::Ringing) {
            let sdp = self.caller_sdp(&codecs, answer.direction);
            self.respond_inbound(200, sdp);
            self.answered(now, codecs);
        }
    }

    // ------------------------------------------------------------ origination (REST calls)

    fn on_originate(&mut self, now: Instant, peer: Peer, uri: String, from: String, timeout: Duration) {
        if self.inbound.is_some() || self.origination.is_some() {
            return;
        }
        let (tag, call_id) = (format!("o{}", self.cfg.call_sid), random_call_id());
        let invite = new_invite(&uri, &from, &tag, &call_id, &self.cfg.local_sip);
        self.origination = Some(Origination {
            peer,
            invite,
            key: None,
            state: ForkState::Calling,
            deadline: now + timeout,
            rang: false,
        });
        self.media = Media::Creating;
        self.out.push_back(Output::CreateMedia { legs: [LegSettings::default(); 2], rtcp_mux: false });
    }

    /// The media is ready: offer PCMU, PCMA and telephone-event on our address.
    fn send_origination(&mut self, now: Instant, local: SocketAddr) {
        let Some(o) = self.origination.as_mut() else { return };
        let id = u64::try_from(self.cfg.wall_clock.unix_ms()).unwrap_or(0);
        let mut sdp = LocalSdp::new(id, local.ip());
        let codecs = [(Codec::Pcmu, 0), (Codec::Pcma, 8), (Codec::TelephoneEvent, 101)];
        let offer = sdp.describe(local.port(), &codecs, Direction::SendRecv, None).to_string();
        with_sdp(&mut o.invite.headers, &mut o.invite.body, offer);
        let (peer, invite) = (o.peer, o.invite.clone());
        // Kept to answer with later offers; the dialog comes with the 2xx.
        self.pending_sdp = Some(sdp);
        let update = CallUpdate {
            status: Some(CallStatus::Ringing),
            start_time: Some(self.timestamp(now)),
            ..CallUpdate::default()
        };
        self.record(self.cfg.call_sid.clone(), update);
        self.send_request(peer, invite, Purpose::Originate);
    }

    fn on_origination_response(&mut self, now: Instant, response: Response) {
        let code = response.code;
        let Some(o) = self.origination.as_mut() else { return };
        if code < 200 {
            match o.state {
                ForkState::Calling => o.state = ForkState::Proceeding,
                ForkState::CancelWanted => {
                    o.state = ForkState::Proceeding;
                    self.cancel_origination();
                    return;
                }
                _ => {}
            }
            if code > 100 && !std::mem::replace(&mut o.rang, true) {
                self.out.push_back(Output::ChildRinging { call_sid: self.cfg.call_sid.clone() });
            }
            return;
        }
        if code >= 300 {
            return self.origination_failed(now, code);
        }
        let Some(mut dialog) = Dialog::as_uac(&o.invite, &response, o.peer) else { return };
        let cseq = response.headers.cseq().map(|c| c.seq).unwrap_or(1);
        self.out.push_back(Output::SendAck2xx { peer: dialog.peer, request: dialog.ack(cseq) });
        let answer = SessionDescription::parse(&response.body).ok().and_then(|s| LegMedia::from_sdp(&s).ok());
        let usable = matches!(o.state, ForkState::Calling | ForkState::Proceeding) && !self.ended;
        let (true, Some(answer)) = (usable, answer) else {
            // Cancelled meanwhile, or an answer we cannot use: hang up on it.
            let bye = dialog.request(Method::Bye);
            o.state = ForkState::Done(code);
            let peer = dialog.peer;
            self.send_request(peer, bye, Purpose::Bye);
            if usable {
                self.finish(now, CallStatus::Failed);
            }
            return;
        };
        o.state = ForkState::Answered;
        let codecs = answer.codecs.clone();
        let local_tag = format!("o{}", random_tag());
        let key = o.key.clone().unwrap_or(TxKey { branch: String::new(), method: Method::Invite });
        let invite = o.invite.clone();
        self.inbound = Some(Inbound {
            key,
            invite,
            dialog,
            local_tag,
            media: answer,
            state: InboundState::Answered,
            answered_codecs: None,
            answered_at: None,
            ringing_sent: true,
            sdp: self.pending_sdp.take(),
        });
        self.update_media(CALLER);
        self.answered(now, codecs);
        self.out.push_back(Output::RunInstructions);
    }

    fn origination_failed(&mut self, now: Instant, code: u16) {
        let Some(o) = self.origination.as_mut() else { return };
        let was = o.state;
        o.state = ForkState::Done(code);
        if self.ended || matches!(was, ForkState::Done(_)) {
            return;
        }
        let status = match code {
            486 | 600 => CallStatus::Busy,
            408 | 480 | 487 => CallStatus::NoAnswer,
            _ => CallStatus::Failed,
        };
        self.finish(now, status);
    }

    /// CANCELs the originated INVITE (now, or at its first provisional response).
    fn cancel_origination(&mut self) {
        let Some(o) = self.origination.as_mut() else { return };
        match (o.state, o.key.clone()) {
            (ForkState::Proceeding, Some(key)) => {
                o.state = ForkState::Cancelling;
                let request = cancel_for(&o.invite);
                self.out.push_back(Output::SendCancel { peer: o.peer, request, invite: key });
            }
            (ForkState::Calling, _) | (ForkState::Proceeding, None) => o.state = ForkState::CancelWanted,
            _ => {}
        }
    }

    /// Sends fork `i`'s INVITE again with the digest answer to `challenge`
    /// (CSeq + 1, a new transaction); false when it has no credentials, was
    /// cancelled meanwhile, or its credentials were refused already.
    fn answer_challenge(&mut self, i: usize, challenge: &Response) -> bool {
        let fork = &mut self.forks[i];
        let Some(credentials) = fork.credentials.as_ref() else { return false };
        // Each INVITE starts without a nonce, so a fresh challenge never
        // needs more than one answer: a second means the credentials are wrong.
        if fork.auth_tries >= 1 || !matches!(fork.state, ForkState::Calling | ForkState::Proceeding) {
            return false;
        }
        fork.auth_tries += 1;
        let mut invite = fork.invite.clone();
        let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1) + 1;
        invite.headers.set(HeaderName::CSeq, format!("{seq} INVITE"));
        // Fresh and unpredictable per try (RFC 7616 3.4: it protects against chosen-plaintext).
        let mut random = [0u8; 12];
        let _ = getrandom::fill(&mut random);
        let cnonce: String = random.iter().map(|b| format!("{b:02x}")).collect();
        if crate::sip::digest::authorize(&mut invite, challenge, credentials, &cnonce).is_err() {
            return false;
        }
        fork.invite = invite.clone();
        fork.key = None;
        fork.state = ForkState::Calling;
        let peer = fork.peer;
        self.send_request(peer, invite, Purpose::Invite(i));
        true
    }

    fn early_media(&mut self, _now: Instant, i: usize, media: LegMedia) {
        self.forks[i].media = Some(media.clone());
        self.update_media(CALLEE);
        self.update_media(CALLER);
        let ringing = self.inbound.as_ref().is_some_and(|x| x.state == InboundState::Ringing);
        if !ringing {
            return; // answered already: the caller hears it through the dataplane
        }
        let codecs = self.inbound.as_ref().and_then(|x| answer_codecs(&x.media, &media).ok());
        if let Some(codecs) = codecs {
            let sdp = self.caller_sdp(&codecs, media.direction);
            self.respond_inbound(183, sdp);
        }
    }

    fn fork_failed(&mut self, now: Instant, i: usize, code: u16) {
        let fork = &mut self.forks[i];
        let was = fork.state;
        fork.state = ForkState::Done(code);
        let sid = fork.sid.clone();
        let cancelled = matches!(was, ForkState::Cancelling | ForkState::CancelWanted);
        if !cancelled && !matches!(was, ForkState::Done(_)) {
            let status = match code {
                486 | 600 => CallStatus::Busy,
                408 | 480 => CallStatus::NoAnswer,
                _ => CallStatus::Failed,
            };
            self.status_record(now, sid, status);
        }
        if self.early_fork().is_none() && self.bridge.is_none() {
            self.update_media(CALLEE);
        }
        self.check_dial_over(now);
    }

    // ------------------------------------------------------------ re-INVITE / UPDATE

    fn on_offer(&mut self, now: Instant, from: Party, key: TxKey, request: Request) {
        if let Some(passed) = self.passed_sdp.clone() {
            // A pass-through bridge: the far appliance holds the media and
            // its client takes no new offer. A refresh gets the SDP the
            // caller has; a new offer is declined and the call keeps its media.
            return match request.body.is_empty() {
                true => self.respond_to(&request, &key, 200, Some(passed)),
                false => self.respond_to(&request, &key, 488, None),
            };
        }
        if request.body.is_empty() {
            // No offer (a session refresh): answer with what we have.
            let sdp = self.current_sdp(from);
            return self.respond_to(&request, &key, 200, sdp);
        }
        if self.relay_pending {
            return self.respond_to(&request, &key, 491, None);
        }
        let offer = match SessionDescription::parse(&request.body).ok().map(|s| accept_offer(&s)) {
            Some(Ok(offer)) => offer,
            _ => return self.respond_to(&request, &key, 488, None),
        };
        let to = match (from, self.bridge.as_ref()) {
            (Party::Caller, Some(b)) => Party::Fork(b.fork),
            (Party::Fork(i), Some(b)) if b.fork == i => Party::Caller,
            (Party::Caller, None) => {
                // Nobody to relay to: answer it ourselves.
                let codecs = self.inbound.as_ref().and_then(|x| x.answered_codecs.clone()).unwrap_or_default();
                let codecs: Vec<(Codec, u8)> =
                    offer.codecs.iter().copied().filter(|(c, _)| codecs.iter().any(|(k, _)| k == c)).collect();
                if codecs.is_empty() {
                    return self.respond_to(&request, &key, 488, None);
                }
                let direction = offer.direction.reversed();
                if let Some(x) = self.inbound.as_mut() {
                    x.media = offer;
                }
                self.update_media(CALLER);
                let sdp = self.caller_sdp(&codecs, direction);
                return self.respond_to(&request, &key, 200, sdp);
            }
            _ => return self.respond_to(&request, &key, 481, None),
        };
        let _ = now;
        // The other side keeps its payload types for the codecs still offered.
        let (side, current) = match to {
            Party::Caller => (CALLER, self.inbound.as_ref().and_then(|x| x.answered_codecs.clone())),
            Party::Fork(i) => (CALLEE, self.forks[i].media.as_ref().map(|m| m.codecs.clone())),
        };
        let codecs: Vec<(Codec, u8)> =
            current.unwrap_or_default().into_iter().filter(|(c, _)| offer.payload_type(*c).is_some()).collect();
        let Some(port) = self.local(side).map(|a| a.port()) else {
            return self.respond_to(&request, &key, 500, None);
        };
        if !codecs.iter().any(|(c, _)| *c != Codec::TelephoneEvent) {
            return self.respond_to(&request, &key, 488, None);
        }
        let direction = offer.direction;
        let ptime = offer.ptime;
        let (sdp, dialog) = match to {
            Party::Caller => {
                let Some(x) = self.inbound.as_mut() else { return };
                let Some(local) = x.sdp.as_mut() else { return };
                (local.describe(port, &codecs, direction, ptime), &mut x.dialog)
            }
            Party::Fork(i) => {
                let f = &mut self.forks[i];
                let Some(d) = f.dialog.as_mut() else { return };
                (f.sdp.describe(port, &codecs, direction, ptime), d)
            }
        };
        let mut relayed = dialog.request(request.method.clone());
        relayed.headers.push(Header::new(HeaderName::Contact, format!("<sip:bridgehead@{}>", self.cfg.local_sip)));
        with_sdp(&mut relayed.headers, &mut relayed.body, sdp.to_string());
        let peer = dialog.peer;
        // The sender's new address takes effect now.
        match from {
            Party::Caller => {
                if let Some(x) = self.inbound.as_mut() {
                    x.media = offer.clone();
                }
                self.update_media(CALLER);
            }
            Party::Fork(i) => {
                self.forks[i].media = Some(offer.clone());
                self.update_media(CALLEE);
            }
        }
        self.relay_pending = true;
        self.send_request(peer, relayed, Purpose::Relay(Box::new(Relay { from, to, key, request, offer })));
    }

    /// Where DTMF played toward the caller (`caller`) or the bridged callee
    /// goes: the call's media session, the leg facing that party and the
    /// telephone-event payload type that party negotiated. `None` without
    /// a bridge, without telephone-event, or when the media is not ours
    /// (a pass-through bridge).
    pub fn dtmf_toward(&self, caller: bool) -> Option<(SessionId, usize, u8)> {
        if self.passed_sdp.is_some() {
            return None;
        }
        let session = self.session()?;
        let event_pt = |codecs: &[(Codec, u8)]| codecs.iter().find(|(c, _)| *c == Codec::TelephoneEvent).map(|c| c.1);
        let bridge = self.bridge.as_ref()?;
        if caller {
            Some((session, CALLER, event_pt(self.inbound.as_ref()?.answered_codecs.as_ref()?)?))
        } else {
            Some((session, CALLEE, event_pt(&self.forks.get(bridge.fork)?.media.as_ref()?.codecs)?))
        }
    }

    /// Our current description toward `party` (for an offerless re-INVITE).
    fn current_sdp(&mut self, party: Party) -> Option<String> {
        match party {
            Party::Caller => {
                let codecs = self.inbound.as_ref()?.answered_codecs.clone()?;
                self.caller_sdp(&codecs, Direction::SendRecv)
            }
            Party::Fork(i) => {
                let port = self.local(CALLEE)?.port();
                let f = &mut self.forks[i];
                let codecs = f.media.as_ref()?.codecs.clone();
                Some(f.sdp.describe(port, &codecs, Direction::SendRecv, None).to_string())
            }
        }
    }

    fn on_relay_answer(&mut self, relay: Relay, response: Response) {
        self.relay_pending = false;
        let code = response.code;
        if (200..300).contains(&code) && relay.request.method == Method::Invite {
            let dialog = match relay.to {
                Party::Caller => self.inbound.as_ref().map(|x| &x.dialog),
                Party::Fork(i) => self.forks[i].dialog.as_ref(),
            };
            if let Some(d) = dialog {
                let cseq = response.headers.cseq().map(|c| c.seq).unwrap_or(d.local_cseq);
                self.out.push_back(Output::SendAck2xx { peer: d.peer, request: d.ack(cseq) });
            }
        }
        if code >= 300 {
            return self.respond_to(&relay.request, &relay.key, code, None);
        }
        let answer = SessionDescription::parse(&response.body).ok().and_then(|s| LegMedia::from_sdp(&s).ok());
        let Some(answer) = answer else {
            return self.respond_to(&relay.request, &relay.key, 488, None);
        };
        // The answerer's address and payload types take effect.
        if let Some(target) = contact_uri(&response.headers) {
            let dialog = match relay.to {
                Party::Caller => self.inbound.as_mut().map(|x| &mut x.dialog),
                Party::Fork(i) => self.forks[i].dialog.as_mut(),
            };
            if let Some(d) = dialog {
                d.remote_target = target;
            }
        }
        match relay.to {
            Party::Caller => {
                if let Some(x) = self.inbound.as_mut() {
                    x.media = answer.clone();
                }
                self.update_media(CALLER);
            }
            Party::Fork(i) => {
                self.forks[i].media = Some(answer.clone());
                self.update_media(CALLEE);
            }
        }
        let Ok(codecs) = answer_codecs(&relay.offer, &answer) else {
            return self.respond_to(&relay.request, &relay.key, 488, None);
        };
        let sdp = match relay.from {
            Party::Caller => self.caller_sdp(&codecs, answer.direction),
            Party::Fork(i) => {
                let port = self.local(CALLEE).map(|a| a.port());
                let f = &mut self.forks[i];
                port.map(|p| f.sdp.describe(p, &codecs, answer.direction, relay.offer.ptime).to_string())
            }
        };
        if relay.from == Party::Caller {
            if let Some(x) = self.inbound.as_mut() {
                x.answered_codecs = Some(codecs);
            }
        }
        self.respond_to(&relay.request, &relay.key, 200, sdp);
    }
}

/// A tag of ours (RFC 3261 19.3: globally unique, cryptographically
/// random): random, like the Call-ID, so it tells the far end nothing.
fn random_tag() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    format!("{:016x}", u64::from_le_bytes(b))
}

/// A Call-ID for a dialog we start: random, so it tells the far end
/// nothing about the call (not its SID, not how many legs it has).
fn random_call_id() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{hex}@bridgehead")
}

/// A new INVITE of ours (without Via and body): from `from_user` at our
/// address with `tag`, to `uri`, in dialog `call_id`.
fn new_invite(uri: &str, from_user: &str, tag: &str, call_id: &str, local_sip: &str) -> Request {
    let mut headers = Headers::new();
    headers.push(Header::new(HeaderName::MaxForwards, "70"));
    headers.push(Header::new(HeaderName::From, format!("<sip:{from_user}@{local_sip}>;tag={tag}")));
    headers.push(Header::new(HeaderName::To, format!("<{uri}>")));
    headers.push(Header::new(HeaderName::CallId, call_id.to_owned()));
    headers.push(Header::new(HeaderName::CSeq, "1 INVITE"));
    headers.push(Header::new(HeaderName::Contact, format!("<sip:bridgehead@{local_sip}>")));
    Request { method: Method::Invite, uri: Bytes::from(uri.to_owned()), headers, body: Bytes::new() }
}

/// A loosely written number (`+1 555 010-0002`) as dialed: digits and `+`.
fn dialed_digits(number: &str) -> String {
    number.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect()
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// The user part of the caller's From URI (the caller ID passed on).
pub(crate) fn caller_user(invite: &Request) -> String {
    invite
        .headers
        .from_addr()
        .ok()
        .and_then(|f| f.uri().ok())
        .and_then(|u| u.as_sip().and_then(|s| s.user.clone()))
        .unwrap_or_else(|| "anonymous".into())
}

/// Where a `<Sip>` URI goes: its host must be an IP address (no DNS in the
/// core); port and transport from the URI.
pub(crate) fn sip_target(uri: &str) -> Option<(String, Peer)> {
    let parsed = Uri::parse(uri.trim()).ok()?;
    let sip = parsed.as_sip()?;
    let ip: IpAddr = match &sip.host {
        Host::V4(a) => IpAddr::V4(*a),
        Host::V6(a) => IpAddr::V6(*a),
        Host::Name(_) => return None,
    };
    let transport = match (sip.scheme, sip.transport().map(str::to_ascii_lowercase).as_deref()) {
        (Scheme::Sips, _) | (_, Some("tls")) => Transport::Tls,
        (_, Some("tcp")) => Transport::Tcp,
        (Scheme::Tel, _) => return None,
        _ => Transport::Udp,
    };
    let default_port = if transport == Transport::Tls { 5061 } else { 5060 };
    let addr = SocketAddr::new(ip, sip.port.unwrap_or(default_port));
    Some((parsed.to_string(), Peer { transport, addr, connection: None }))
}
