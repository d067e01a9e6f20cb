//! Client legs: a Voice SDK client as a party of a call.
//!
//! The B2BUA core ([`super::Call`]) speaks SIP to its legs. A client is
//! not a SIP peer, so the shell puts this adapter between the two: what
//! the call sends to a [`Transport::Client`] peer becomes client frames,
//! and what the client's devices send becomes the SIP responses and
//! requests the call expects. The WebSocket is reliable and ordered, so
//! there are no retransmissions: each message is answered exactly once.
//!
//! ```text
//!   <Dial><Client>alice           Call ──INVITE──▶ fork to every available device of alice
//!                                      ◀─180────── (at once: the devices are alerted)
//!      device 2 `answer`               ◀─200+SDP── the first answer wins; the others get `cancel`
//!      device 1 `reject`                           stops only device 1; all rejected: 486
//!      nobody present                  ◀─480────── at once (no-answer), never rings into the void
//!      CANCEL / BYE from the call      ──▶ `cancel` / `hangup` to the devices
//!
//!   client `invite` (its own call)  ──INVITE──▶ Call (inbound leg, like a carrier's)
//!      180/183 ◀── `ringing`, 200 ◀── `answer` (+ reconnect token), >=300 ◀── `hangup` with error
//!      client `hangup` before the answer ──▶ cancelled (487); after ──▶ BYE
//! ```
//!
//! Reconnect: a device whose socket drops while in an answered call is
//! parked for [`RECONNECT_WITHIN`]; an `invite` carrying the reconnect
//! token from a device of the same identity within that time takes the
//! call back (answered again with the same SDP; the media never stopped).
//! After it, the call ends as a hangup by that party.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::client::protocol::{IncomingParameters, ServerMessage};
use crate::client::ClientHub;
use crate::instructions::twiml::ClientNoun;
use crate::routes::{DeviceId, PresenceStatus};
use crate::sip::layer::{Event, Peer, Transport, TxKey};
use crate::sip::message::{Method, Request, Response};
use crate::sip::{Header, HeaderName, Headers};
use crate::store::AccountSid;

/// How long an answered call waits for its client to come back.
pub const RECONNECT_WITHIN: Duration = Duration::from_secs(30);

/// The host of the URIs that name clients (RFC 6761: never resolves).
const CLIENT_HOST: &str = "clients.invalid";
const IDENTITY: &str = "X-Bh-Identity";
const CALL_SID: &str = "X-Bh-Call-Sid";
const PARAMS: &str = "X-Bh-Params";
const FROM: &str = "X-Bh-From";

/// The peer of every client leg.
pub fn client_peer() -> Peer {
    Peer { transport: Transport::Client, addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), connection: None }
}

/// Where a `<Client>` fork's INVITE goes: a URI naming the identity (for
/// logs and the dialog) and the client peer.
pub(crate) fn client_target(identity: &str) -> (String, Peer) {
    (format!("sip:{}@{CLIENT_HOST}", uri_user(identity)), client_peer())
}

/// An identity as the user part of a SIP URI (RFC 3261 unreserved and
/// user-unreserved characters kept, the rest escaped).
pub(crate) fn uri_user(identity: &str) -> String {
    identity
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What the adapter needs of a `<Client>` noun beyond the INVITE: carried
/// in headers of ours, which leave the appliance only toward a fleet peer
/// holding the client (call/shell/fleet.rs), never toward a carrier.
pub(crate) fn describe_fork(headers: &mut Headers, noun: &ClientNoun, call_sid: &str, from: &str) {
    let params: Vec<(String, String)> = noun.parameters.clone();
    headers.push(Header::with_name(IDENTITY, noun.identity.clone()));
    headers.push(Header::with_name(CALL_SID, call_sid.to_owned()));
    headers.push(Header::with_name(PARAMS, crate::client::protocol::encode_params(&params)));
    headers.push(Header::with_name(FROM, from.to_owned()));
}

fn header(request: &Request, name: &str) -> String {
    request.headers.get_named(name).and_then(|h| h.value_str()).unwrap_or_default().to_owned()
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn new_key(method: Method) -> TxKey {
    TxKey { branch: format!("z9hG4bKcl{}", random_hex(8)), method }
}

/// Whether `key` was made up by the client legs or the shell for a client
/// peer (never a SIP transaction's).
pub(crate) fn is_client_key(key: &TxKey) -> bool {
    key.branch.starts_with("z9hG4bKcl")
}

/// The SDK's code for a call that ended with SIP `code`
/// (`lib/twilio/errors/generated.ts`, `errorsByCode`).
fn sdk_code(code: u16) -> (u32, &'static str) {
    match code {
        404 => (31404, "Not Found"),
        408 | 480 | 487 => (31480, "Temporarily Unavailable"),
        486 | 600 => (31486, "Busy Here"),
        603 => (31603, "Decline"),
        _ => (31005, "Connection error"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ring {
    Ringing,
    /// Rejected, cancelled, or its socket closed.
    Out,
    Answered,
}

/// A `<Client>` fork: our INVITE to an identity, ringing its devices.
struct ClientFork {
    call: u64,
    call_sid: String,
    invite: Request,
    devices: Vec<(DeviceId, Ring)>,
    /// The To of our 200 (with the tag we made up for the client's side).
    to: Option<String>,
    /// The device that answered, until it hangs up or its socket drops.
    device: Option<DeviceId>,
    reconnect: String,
    sdp: String,
    identity: String,
    account: AccountSid,
    /// The answering device's description (its answer, then its last `reinvite`).
    device_sdp: Option<String>,
    /// CSeq of the requests the answering device sends in the dialog.
    cseq: u32,
}

/// A call a client placed: its inbound leg.
struct CallerLeg {
    call: u64,
    device: Option<DeviceId>,
    account: AccountSid,
    identity: String,
    /// The client's temporary `TJS...` id, which it uses until it learns ours.
    temp_id: String,
    key: TxKey,
    invite: Request,
    /// The To of the call's 200 (its tag), once answered.
    to: Option<String>,
    ringing_sent: bool,
    answer_sdp: Option<String>,
    reconnect: String,
    /// CSeq of the requests the client sends in the dialog (BYE, re-INVITE).
    cseq: u32,
    /// The BYEs it sent us (their answers are ours to drop).
    bye_keys: Vec<TxKey>,
    /// The client's description: its offer, then its last `reinvite`.
    device_sdp: String,
}

struct PendingReinvite {
    call: u64,
    device: DeviceId,
    callsid: String,
    sdp: String,
}

impl ClientFork {
    /// The answering device's next request in the dialog (its CSeq taken):
    /// the transaction key and the request; `None` before the answer.
    fn request(&mut self, method: Method) -> Option<(TxKey, Request)> {
        let to = self.to.clone()?;
        self.cseq += 1;
        let mut headers = Headers::new();
        headers.push(Header::new(HeaderName::From, to));
        for (name, value) in [(HeaderName::To, HeaderName::From), (HeaderName::CallId, HeaderName::CallId)] {
            if let Some(h) = self.invite.headers.get(value).and_then(|h| h.value_str()) {
                headers.push(Header::new(name, h.to_owned()));
            }
        }
        let uri = Bytes::from(client_target(&self.identity).0);
        Some(dialog_request(method, self.cseq, headers, uri))
    }
}

impl CallerLeg {
    /// The calling client's next request in the dialog (its CSeq taken);
    /// `None` before the answer.
    fn request(&mut self, method: Method) -> Option<(TxKey, Request)> {
        let to = self.to.clone()?;
        self.cseq += 1;
        let mut headers = Headers::new();
        for name in [HeaderName::From, HeaderName::CallId] {
            if let Some(h) = self.invite.headers.get(name) {
                headers.push(h.clone());
            }
        }
        headers.push(Header::new(HeaderName::To, to));
        Some(dialog_request(method, self.cseq, headers, self.invite.uri.clone()))
    }
}

/// A request of a client's side of a dialog: `headers` (From, To, Call-ID)
/// with its CSeq and our Via added.
fn dialog_request(method: Method, cseq: u32, mut headers: Headers, uri: Bytes) -> (TxKey, Request) {
    headers.push(Header::new(HeaderName::CSeq, format!("{cseq} {method}")));
    let key = new_key(method.clone());
    headers.push(Header::new(HeaderName::Via, format!("SIP/2.0/WSS {CLIENT_HOST};branch={}", key.branch)));
    (key, Request { method, uri, headers, body: Bytes::new() })
}

/// Which leg a Call-ID, a call SID or a reconnect token names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LegRef {
    Fork(TxKey),
    Caller(String),
}

/// The adapter: the client legs of every call.
pub struct ClientLegs {
    pub hub: Arc<ClientHub>,
    forks: HashMap<TxKey, ClientFork>,
    callers: HashMap<String, CallerLeg>,
    by_call_id: HashMap<String, LegRef>,
    /// (device, callsid as the device knows it) -> the leg.
    by_device: HashMap<(DeviceId, String), LegRef>,
    by_server_key: HashMap<TxKey, String>,
    /// A device's `reinvite` in flight: its re-INVITE's key -> the call,
    /// the device, its callsid and the new description (the device's
    /// once the call takes it).
    reinvites: HashMap<TxKey, PendingReinvite>,
    by_reconnect: HashMap<String, LegRef>,
    /// Every leg a call ever had here, so that its end forgets them
    /// without scanning the others.
    by_call: HashMap<u64, Vec<LegRef>>,
    /// Devices registered over SIP (WebSocket): rung with SIP by the shell.
    sip_devices: std::collections::HashSet<DeviceId>,
    /// What the shell must send to SIP devices, in order.
    pub sip_out: Vec<SipOut>,
}

/// A message for a device registered over SIP, sent by the shell (it owns
/// the SIP stack); what the device answers comes back through
/// [`ClientLegs::answer`], [`ClientLegs::reject`] and [`ClientLegs::hangup`]
/// as for a Voice SDK device.
#[derive(Debug, Clone, PartialEq)]
pub enum SipOut {
    /// INVITE it for child call `call_sid`, from `from`, with our SDP.
    Invite { device: DeviceId, call_sid: String, from: String, sdp: String },
    /// CANCEL that INVITE (or BYE, if it answered meanwhile).
    Cancel { device: DeviceId, call_sid: String },
    /// BYE the answered call.
    Hangup { device: DeviceId, call_sid: String },
}

/// Sends a frame to a Voice SDK device, or queues its SIP form for a
/// device registered over SIP.
fn tell(
    hub: &ClientHub,
    sip_devices: &std::collections::HashSet<DeviceId>,
    sip_out: &mut Vec<SipOut>,
    device: DeviceId,
    frame: ServerMessage,
) {
    if !sip_devices.contains(&device) {
        hub.send(device, frame);
        return;
    }
    match frame {
        ServerMessage::Cancel { callsid } => sip_out.push(SipOut::Cancel { device, call_sid: callsid }),
        ServerMessage::Hangup { callsid, .. } => sip_out.push(SipOut::Hangup { device, call_sid: callsid }),
        _ => {}
    }
}

/// Events for calls: (the shell's call id, the SIP-shaped event).
pub type Events = Vec<(u64, Event)>;

impl ClientLegs {
    pub fn new(hub: Arc<ClientHub>) -> ClientLegs {
        ClientLegs {
            hub,
            forks: HashMap::new(),
            callers: HashMap::new(),
            by_call_id: HashMap::new(),
            by_device: HashMap::new(),
            by_server_key: HashMap::new(),
            reinvites: HashMap::new(),
            by_reconnect: HashMap::new(),
            by_call: HashMap::new(),
            sip_devices: std::collections::HashSet::new(),
            sip_out: Vec::new(),
        }
    }

    /// A device registered (true) or left (false) over SIP.
    pub fn sip_device(&mut self, device: DeviceId, registered: bool) {
        if registered {
            self.sip_devices.insert(device);
        } else {
            self.sip_devices.remove(&device);
        }
    }

    pub fn owns_server_key(&self, key: &TxKey) -> bool {
        self.by_server_key.contains_key(key) || self.reinvites.contains_key(key)
    }

    pub fn owns_invite(&self, key: &TxKey) -> bool {
        self.forks.contains_key(key)
    }

    // ------------------------------------------------------------ what a call sends

    /// A request of call `call` to a client peer, sent as client
    /// transaction `key`.
    pub fn request(&mut self, call: u64, key: TxKey, request: Request, account: &AccountSid) -> Events {
        let call_id = request.headers.call_id().map(str::to_owned).unwrap_or_default();
        match (request.method.clone(), self.by_call_id.get(&call_id).cloned()) {
            (Method::Invite, None) => self.ring(call, key, request, account),
            (Method::Bye, Some(leg)) => {
                self.hang_up_leg(&leg);
                vec![(call, respond(&key, &request, 200))]
            }
            // A client takes no new offer from the call in this release (the
            // SDK has no server-driven renegotiation): a refresh or a new
            // address of the other side (media flowing both ways, which the
            // dataplane anchors anyway) is answered with the client's own
            // description; hold and the like are declined (488) and the
            // call keeps its media.
            (Method::Invite | Method::Update, Some(leg)) => {
                let device_sdp = match &leg {
                    LegRef::Fork(k) => self.forks.get(k).and_then(|f| f.device_sdp.clone()),
                    LegRef::Caller(sid) => self.callers.get(sid).map(|c| c.device_sdp.clone()),
                };
                match device_sdp.filter(|_| keeps_both_ways(&request.body)) {
                    Some(sdp) => {
                        let mut ok = Response::for_request(&request, 200, "");
                        ok.headers.set(HeaderName::ContentType, "application/sdp");
                        ok.body = Bytes::from(sdp);
                        vec![(call, Event::Response { key, response: ok })]
                    }
                    None => vec![(call, respond(&key, &request, 488))],
                }
            }
            _ => vec![(call, respond(&key, &request, 481))],
        }
    }

    /// Rings the devices of the identity our INVITE names.
    fn ring(&mut self, call: u64, key: TxKey, invite: Request, account: &AccountSid) -> Events {
        let identity = header(&invite, IDENTITY);
        let call_sid = header(&invite, CALL_SID);
        let devices: Vec<DeviceId> = self
            .hub
            .routes
            .devices(account, &identity)
            .into_iter()
            // Only this appliance's devices: a peer's are rung through
            // the peer (call/shell/fleet.rs), their ids are the peer's own.
            .filter(|d| {
                d.incoming && d.status == PresenceStatus::Available && d.appliance == self.hub.routes.appliance()
            })
            .map(|d| d.device)
            .collect();
        if devices.is_empty() {
            tracing::debug!(%call_sid, %identity, "no device present: no-answer");
            return vec![(call, respond(&key, &invite, 480))];
        }
        let reconnect = random_hex(16);
        let sdp = String::from_utf8_lossy(&invite.body).into_owned();
        let parameters = IncomingParameters {
            call_sid: call_sid.clone(),
            account_sid: account.to_string(),
            from: header(&invite, FROM),
            to: format!("client:{identity}"),
            params: header(&invite, PARAMS),
        };
        let mut rung = Vec::new();
        for device in devices {
            let frame = ServerMessage::Invite {
                callsid: call_sid.clone(),
                sdp: sdp.clone(),
                parameters: parameters.clone(),
                reconnect: reconnect.clone(),
            };
            let sent = if self.sip_devices.contains(&device) {
                let from = parameters.from.clone();
                self.sip_out.push(SipOut::Invite { device, call_sid: call_sid.clone(), from, sdp: sdp.clone() });
                true
            } else {
                self.hub.send(device, frame)
            };
            if sent {
                self.by_device.insert((device, call_sid.clone()), LegRef::Fork(key.clone()));
                rung.push((device, Ring::Ringing));
            }
        }
        if rung.is_empty() {
            return vec![(call, respond(&key, &invite, 480))];
        }
        let call_id = invite.headers.call_id().map(str::to_owned).unwrap_or_default();
        self.by_call_id.insert(call_id, LegRef::Fork(key.clone()));
        self.by_reconnect.insert(reconnect.clone(), LegRef::Fork(key.clone()));
        let ringing = respond(&key, &invite, 180);
        self.by_call.entry(call).or_default().push(LegRef::Fork(key.clone()));
        self.forks.insert(
            key,
            ClientFork {
                call,
                call_sid,
                invite,
                devices: rung,
                to: None,
                device: None,
                reconnect,
                sdp,
                identity,
                account: account.clone(),
                device_sdp: None,
                cseq: 0,
            },
        );
        vec![(call, ringing)]
    }

    /// The call cancels its INVITE `invite` (CANCEL sent as `cancel_key`).
    pub fn cancel(&mut self, invite: &TxKey, cancel_key: TxKey) -> Events {
        let Some(fork) = self.forks.get_mut(invite) else { return Vec::new() };
        if fork.to.is_some() {
            return Vec::new(); // answered: the call will BYE it
        }
        let call = fork.call;
        for (device, ring) in &mut fork.devices {
            if *ring == Ring::Ringing {
                *ring = Ring::Out;
                let cancel = ServerMessage::Cancel { callsid: fork.call_sid.clone() };
                tell(&self.hub, &self.sip_devices, &mut self.sip_out, *device, cancel);
            }
        }
        let invite_request = fork.invite.clone();
        let mut cancel = invite_request.clone();
        cancel.method = Method::Cancel;
        let events = vec![(call, respond(&cancel_key, &cancel, 200)), (call, respond(invite, &invite_request, 487))];
        self.forget_fork(invite);
        events
    }

    /// The call answers its client caller (`Respond` on the inbound INVITE).
    pub fn respond(&mut self, key: &TxKey, response: Response) {
        if self.reinvites.contains_key(key) {
            return self.reinvite_answered(key, &response);
        }
        let Some(sid) = self.by_server_key.get(key).cloned() else { return };
        let Some(leg) = self.callers.get_mut(&sid) else { return };
        if key != &leg.key {
            return; // our answer to the client's own BYE: nothing to send
        }
        let Some(device) = leg.device else { return };
        let code = response.code;
        let sdp = (!response.body.is_empty()).then(|| String::from_utf8_lossy(&response.body).into_owned());
        match code {
            100 => {}
            101..=199 => {
                if !leg.ringing_sent || sdp.is_some() {
                    leg.ringing_sent = true;
                    self.hub.send(device, ServerMessage::Ringing { callsid: sid.clone(), sdp });
                }
            }
            200..=299 => {
                leg.to = response.headers.get(HeaderName::To).and_then(|h| h.value_str()).map(str::to_owned);
                let sdp = sdp.unwrap_or_default();
                leg.answer_sdp = Some(sdp.clone());
                let reconnect = leg.reconnect.clone();
                self.by_reconnect.insert(reconnect.clone(), LegRef::Caller(sid.clone()));
                self.hub.send(device, ServerMessage::Answer { callsid: sid.clone(), sdp, reconnect });
            }
            _ => {
                let (code, message) = sdk_code(code);
                // Until it rang, the client knows its call only by its own id.
                let callsid = if leg.ringing_sent { sid.clone() } else { leg.temp_id.clone() };
                self.hub.send(device, ServerMessage::Hangup { callsid, error: Some((code, message.into())) });
                self.forget_caller(&sid);
            }
        }
    }

    // ------------------------------------------------------------ a client places a call

    /// A client's `invite` becomes the inbound INVITE of call `call` (SID
    /// `call_sid`); returns its server transaction key, peer and request.
    #[allow(clippy::too_many_arguments)]
    pub fn place(
        &mut self,
        call: u64,
        device: DeviceId,
        account: &AccountSid,
        identity: &str,
        temp_id: &str,
        call_sid: &str,
        sdp: &str,
        to: &str,
    ) -> (TxKey, Peer, Request) {
        let key = new_key(Method::Invite);
        let call_id = format!("{}@{CLIENT_HOST}", random_hex(16));
        let (from_uri, _) = client_target(identity);
        let (to_uri, _) = client_target(to);
        let mut headers = Headers::new();
        headers.push(Header::new(HeaderName::Via, format!("SIP/2.0/WSS {CLIENT_HOST};branch={}", key.branch)));
        headers.push(Header::new(HeaderName::From, format!("<{from_uri}>;tag={}", random_hex(6))));
        headers.push(Header::new(HeaderName::To, format!("<{to_uri}>")));
        headers.push(Header::new(HeaderName::CallId, call_id.clone()));
        headers.push(Header::new(HeaderName::CSeq, "1 INVITE"));
        headers.push(Header::new(HeaderName::Contact, format!("<{from_uri}>")));
        headers.push(Header::new(HeaderName::ContentType, "application/sdp"));
        let request =
            Request { method: Method::Invite, uri: Bytes::from(to_uri), headers, body: Bytes::from(sdp.to_owned()) };
        let leg = CallerLeg {
            call,
            device: Some(device),
            account: account.clone(),
            identity: identity.to_owned(),
            temp_id: temp_id.to_owned(),
            key: key.clone(),
            invite: request.clone(),
            to: None,
            ringing_sent: false,
            answer_sdp: None,
            reconnect: random_hex(16),
            cseq: 1,
            bye_keys: Vec::new(),
            device_sdp: sdp.to_owned(),
        };
        self.by_call_id.insert(call_id, LegRef::Caller(call_sid.to_owned()));
        self.by_device.insert((device, temp_id.to_owned()), LegRef::Caller(call_sid.to_owned()));
        self.by_device.insert((device, call_sid.to_owned()), LegRef::Caller(call_sid.to_owned()));
        self.by_server_key.insert(key.clone(), call_sid.to_owned());
        self.by_call.entry(call).or_default().push(LegRef::Caller(call_sid.to_owned()));
        self.callers.insert(call_sid.to_owned(), leg);
        // In a call: not available for another one (presence says busy).
        self.hub.routes.set_status(device, PresenceStatus::Busy);
        (key, client_peer(), request)
    }

    // ------------------------------------------------------------ what devices send

    /// Whether `device` is in call `callsid` (ringing, answered or placing it).
    pub fn in_call(&self, device: DeviceId, callsid: &str) -> bool {
        self.by_device.contains_key(&(device, callsid.to_owned()))
    }

    pub fn answer(&mut self, device: DeviceId, callsid: &str, sdp: &str) -> Events {
        let Some(LegRef::Fork(key)) = self.by_device.get(&(device, callsid.to_owned())).cloned() else {
            return Vec::new();
        };
        let Some(fork) = self.forks.get_mut(&key) else { return Vec::new() };
        if fork.to.is_some() {
            // Another device was first.
            let cancel = ServerMessage::Cancel { callsid: callsid.to_owned() };
            tell(&self.hub, &self.sip_devices, &mut self.sip_out, device, cancel);
            return Vec::new();
        }
        let mut response = Response::for_request(&fork.invite, 200, "");
        response.set_to_tag(&random_hex(6));
        let (uri, _) = client_target(&fork.identity);
        response.headers.push(Header::new(HeaderName::Contact, format!("<{uri}>")));
        response.headers.set(HeaderName::ContentType, "application/sdp");
        response.body = Bytes::from(sdp.to_owned());
        fork.to = response.headers.get(HeaderName::To).and_then(|h| h.value_str()).map(str::to_owned);
        fork.device = Some(device);
        fork.device_sdp = Some(sdp.to_owned());
        for (d, ring) in &mut fork.devices {
            if *d == device {
                *ring = Ring::Answered;
            } else if *ring == Ring::Ringing {
                *ring = Ring::Out;
                let cancel = ServerMessage::Cancel { callsid: fork.call_sid.clone() };
                tell(&self.hub, &self.sip_devices, &mut self.sip_out, *d, cancel);
            }
        }
        let call = fork.call;
        self.hub.routes.set_status(device, PresenceStatus::Busy);
        vec![(call, Event::Response { key, response })]
    }

    /// A device's `reinvite` (the SDK's ICE restart; with plain RTP, its
    /// new address): a re-INVITE from its leg into the call, which takes
    /// the new address at once and answers with our description, sent to
    /// the device as `answer`.
    pub fn reinvite(&mut self, device: DeviceId, callsid: &str, sdp: &str) -> Events {
        let made = match self.by_device.get(&(device, callsid.to_owned())).cloned() {
            Some(LegRef::Fork(key)) => self
                .forks
                .get_mut(&key)
                .filter(|f| f.device == Some(device))
                .and_then(|f| Some((f.call, f.request(Method::Invite)?))),
            Some(LegRef::Caller(sid)) => self
                .callers
                .get_mut(&sid)
                .filter(|l| l.device == Some(device))
                .and_then(|l| Some((l.call, l.request(Method::Invite)?))),
            None => None,
        };
        let Some((call, (key, mut request))) = made else {
            // Not a call of this device's, or not answered yet.
            let error =
                ServerMessage::Error { code: 31005, message: "no such call".into(), callsid: Some(callsid.into()) };
            self.hub.send(device, error);
            return Vec::new();
        };
        request.headers.push(Header::new(HeaderName::ContentType, "application/sdp"));
        request.body = Bytes::from(sdp.to_owned());
        let pending = PendingReinvite { call, device, callsid: callsid.to_owned(), sdp: sdp.to_owned() };
        self.reinvites.insert(key.clone(), pending);
        vec![(call, Event::Request { key, peer: client_peer(), request })]
    }

    /// The call's answer to a device's `reinvite`: `answer` with our
    /// description, or an error frame (the call keeps its media).
    fn reinvite_answered(&mut self, key: &TxKey, response: &Response) {
        if response.code < 200 {
            return;
        }
        let Some(PendingReinvite { device, callsid, sdp: offered, .. }) = self.reinvites.remove(key) else { return };
        if response.code >= 300 {
            let message = format!("renegotiation refused ({})", response.code);
            self.hub.send(device, ServerMessage::Error { code: 31000, message, callsid: Some(callsid) });
            return;
        }
        // Taken: the device's description is the new one from now on.
        let reconnect = match self.by_device.get(&(device, callsid.clone())) {
            Some(LegRef::Fork(k)) => self.forks.get_mut(k).map(|f| {
                f.device_sdp = Some(offered);
                f.reconnect.clone()
            }),
            Some(LegRef::Caller(sid)) => self.callers.get_mut(sid).map(|c| {
                c.device_sdp = offered;
                c.reconnect.clone()
            }),
            None => None,
        };
        let sdp = String::from_utf8_lossy(&response.body).into_owned();
        self.hub.send(device, ServerMessage::Answer { callsid, sdp, reconnect: reconnect.unwrap_or_default() });
    }

    /// The call a device's `dtmf` belongs to, and whether the digits go
    /// toward its caller (the device answered a `<Client>` fork) or toward
    /// the callee (the device placed the call). Answered calls only.
    pub fn dtmf_route(&self, device: DeviceId, callsid: &str) -> Option<(u64, bool)> {
        match self.by_device.get(&(device, callsid.to_owned()))? {
            LegRef::Fork(key) => {
                let fork = self.forks.get(key)?;
                (fork.device == Some(device) && fork.to.is_some()).then_some((fork.call, true))
            }
            LegRef::Caller(sid) => {
                let leg = self.callers.get(sid)?;
                (leg.device == Some(device) && leg.to.is_some()).then_some((leg.call, false))
            }
        }
    }

    pub fn reject(&mut self, device: DeviceId, callsid: &str) -> Events {
        let Some(LegRef::Fork(key)) = self.by_device.remove(&(device, callsid.to_owned())) else {
            return Vec::new();
        };
        self.device_out(&key, device)
    }

    /// A device of fork `key` stops ringing; when none rings any more the
    /// INVITE fails: 486 (as busy) when some device rejected it.
    fn device_out(&mut self, key: &TxKey, device: DeviceId) -> Events {
        let Some(fork) = self.forks.get_mut(key) else { return Vec::new() };
        if fork.to.is_some() {
            return Vec::new();
        }
        for (d, ring) in &mut fork.devices {
            if *d == device && *ring == Ring::Ringing {
                *ring = Ring::Out;
            }
        }
        if fork.devices.iter().any(|(_, r)| *r == Ring::Ringing) {
            return Vec::new();
        }
        let events = vec![(fork.call, respond(key, &fork.invite, 486))];
        self.forget_fork(key);
        events
    }

    pub fn hangup(&mut self, device: DeviceId, callsid: &str) -> Events {
        match self.by_device.get(&(device, callsid.to_owned())).cloned() {
            Some(LegRef::Fork(key)) => {
                let answered_here = self.forks.get(&key).is_some_and(|f| f.device == Some(device));
                if answered_here {
                    self.fork_bye(&key)
                } else {
                    self.by_device.remove(&(device, callsid.to_owned()));
                    self.device_out(&key, device)
                }
            }
            Some(LegRef::Caller(sid)) => self.caller_gone(&sid),
            None => Vec::new(),
        }
    }

    /// The client's socket closed: ringing devices stop ringing; answered
    /// calls wait [`RECONNECT_WITHIN`] for it (the shell arms the timer
    /// for the SIDs returned).
    pub fn gone(&mut self, device: DeviceId) -> (Events, Vec<String>) {
        let mut events = Vec::new();
        let mut parked = Vec::new();
        let legs: Vec<((DeviceId, String), LegRef)> =
            self.by_device.iter().filter(|((d, _), _)| *d == device).map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, leg) in legs {
            self.by_device.remove(&k);
            match leg {
                LegRef::Fork(key) => {
                    let answered_here = self.forks.get(&key).is_some_and(|f| f.device == Some(device));
                    if answered_here {
                        if let Some(f) = self.forks.get_mut(&key) {
                            f.device = None;
                            if !parked.contains(&f.call_sid) {
                                parked.push(f.call_sid.clone());
                            }
                        }
                    } else {
                        events.extend(self.device_out(&key, device));
                    }
                }
                LegRef::Caller(sid) => {
                    let answered = self.callers.get(&sid).is_some_and(|l| l.to.is_some());
                    if answered {
                        if let Some(l) = self.callers.get_mut(&sid) {
                            l.device = None;
                        }
                        if !parked.contains(&sid) {
                            parked.push(sid);
                        }
                    } else {
                        events.extend(self.caller_gone(&sid));
                    }
                }
            }
        }
        (events, parked)
    }

    /// [`RECONNECT_WITHIN`] passed for the leg with SID `sid`: if its client
    /// did not come back, the call goes on without it (BYE from it).
    pub fn reconnect_expired(&mut self, sid: &str) -> Events {
        if let Some(leg) = self.callers.get(sid) {
            if leg.device.is_none() {
                return self.caller_gone(sid);
            }
            return Vec::new();
        }
        let key = self.forks.iter().find(|(_, f)| f.call_sid == sid).map(|(k, _)| k.clone());
        match key {
            Some(key) if self.forks.get(&key).is_some_and(|f| f.device.is_none() && f.to.is_some()) => {
                self.fork_bye(&key)
            }
            _ => Vec::new(),
        }
    }

    /// An `invite` with a reconnect token: the call comes back to this
    /// device if the token is one of its identity's calls. The SDK sends
    /// one for every live call after each `connected`, a token refresh on
    /// the same socket too: the call is then simply confirmed.
    pub fn reconnect(&mut self, device: DeviceId, account: &AccountSid, identity: &str, token: &str) -> bool {
        let Some(leg) = self.by_reconnect.get(token).cloned() else { return false };
        match &leg {
            LegRef::Caller(sid) => {
                let Some(l) = self.callers.get_mut(sid) else { return false };
                if &l.account != account || l.identity != identity {
                    return false;
                }
                if let Some(old) = l.device.replace(device) {
                    self.by_device.remove(&(old, sid.clone()));
                }
                let frame = ServerMessage::Answer {
                    callsid: sid.clone(),
                    sdp: l.answer_sdp.clone().unwrap_or_default(),
                    reconnect: l.reconnect.clone(),
                };
                self.by_device.insert((device, sid.clone()), leg.clone());
                self.hub.send(device, frame);
            }
            LegRef::Fork(key) => {
                let Some(f) = self.forks.get_mut(key) else { return false };
                if f.to.is_none() || &f.account != account || f.identity != identity {
                    return false;
                }
                if let Some(old) = f.device.replace(device) {
                    self.by_device.remove(&(old, f.call_sid.clone()));
                }
                let frame = ServerMessage::Answer {
                    callsid: f.call_sid.clone(),
                    sdp: f.sdp.clone(),
                    reconnect: f.reconnect.clone(),
                };
                self.by_device.insert((device, f.call_sid.clone()), leg.clone());
                self.hub.routes.set_status(device, PresenceStatus::Busy);
                self.hub.send(device, frame);
            }
        }
        true
    }

    /// The client that placed call `sid` left: before the answer that is a
    /// CANCEL of its INVITE, after it a BYE.
    fn caller_gone(&mut self, sid: &str) -> Events {
        let Some(leg) = self.callers.get_mut(sid) else { return Vec::new() };
        let call = leg.call;
        let events = match leg.request(Method::Bye) {
            None => vec![(call, Event::Cancelled { invite: leg.key.clone() })],
            Some((key, request)) => {
                self.by_server_key.insert(key.clone(), sid.to_owned());
                leg.bye_keys.push(key.clone());
                vec![(call, Event::Request { key, peer: client_peer(), request })]
            }
        };
        if let Some(device) = leg.device.take() {
            self.by_device.remove(&(device, sid.to_owned()));
            self.by_device.remove(&(device, leg.temp_id.clone()));
            self.hub.routes.set_status(device, PresenceStatus::Available);
        }
        events
    }

    /// The device that answered fork `key` hung up: a BYE from the callee.
    fn fork_bye(&mut self, key: &TxKey) -> Events {
        let Some(fork) = self.forks.get_mut(key) else { return Vec::new() };
        let Some((bye_key, request)) = fork.request(Method::Bye) else { return Vec::new() };
        let call = fork.call;
        if let Some(device) = fork.device {
            self.hub.routes.set_status(device, PresenceStatus::Available);
        }
        self.forget_fork(key);
        vec![(call, Event::Request { key: bye_key, peer: client_peer(), request })]
    }

    /// The call hangs up on a leg (its BYE).
    fn hang_up_leg(&mut self, leg: &LegRef) {
        match leg {
            LegRef::Fork(key) => {
                if let Some(f) = self.forks.get(key) {
                    if let Some(device) = f.device {
                        let hangup = ServerMessage::Hangup { callsid: f.call_sid.clone(), error: None };
                        tell(&self.hub, &self.sip_devices, &mut self.sip_out, device, hangup);
                        self.hub.routes.set_status(device, PresenceStatus::Available);
                    }
                }
                let key = key.clone();
                self.forget_fork(&key);
            }
            LegRef::Caller(sid) => {
                if let Some(device) = self.callers.get(sid).and_then(|l| l.device) {
                    self.hub.send(device, ServerMessage::Hangup { callsid: sid.clone(), error: None });
                }
                let sid = sid.clone();
                self.forget_caller(&sid);
            }
        }
    }

    fn forget_fork(&mut self, key: &TxKey) {
        let Some(fork) = self.forks.remove(key) else { return };
        if let Ok(call_id) = fork.invite.headers.call_id() {
            self.by_call_id.remove(call_id);
        }
        for (device, _) in &fork.devices {
            self.by_device.remove(&(*device, fork.call_sid.clone()));
        }
        self.by_reconnect.remove(&fork.reconnect);
    }

    fn forget_caller(&mut self, sid: &str) {
        let Some(leg) = self.callers.remove(sid) else { return };
        if let Some(device) = leg.device {
            self.hub.routes.set_status(device, PresenceStatus::Available);
        }
        if let Ok(call_id) = leg.invite.headers.call_id() {
            self.by_call_id.remove(call_id);
        }
        if let Some(device) = leg.device {
            self.by_device.remove(&(device, sid.to_owned()));
            self.by_device.remove(&(device, leg.temp_id.clone()));
        }
        self.by_server_key.remove(&leg.key);
        for key in &leg.bye_keys {
            self.by_server_key.remove(key);
        }
        self.by_reconnect.remove(&leg.reconnect);
    }

    /// A call is over: forget whatever of it is left.
    pub fn call_ended(&mut self, call: u64) {
        self.reinvites.retain(|_, pending| pending.call != call);
        for leg in self.by_call.remove(&call).unwrap_or_default() {
            match leg {
                LegRef::Fork(key) => self.forget_fork(&key),
                LegRef::Caller(sid) => self.forget_caller(&sid),
            }
        }
    }
}

/// An offer whose audio flows both ways (a refresh, a new address), not a
/// hold (`sendonly`, `recvonly`, `inactive`).
fn keeps_both_ways(sdp: &[u8]) -> bool {
    crate::sdp::SessionDescription::parse(sdp)
        .ok()
        .is_some_and(|d| d.audio().is_some_and(|m| d.media_direction(m) == crate::sdp::Direction::SendRecv))
}

/// A response of the client side to our request `key`.
fn respond(key: &TxKey, request: &Request, code: u16) -> Event {
    let mut response = Response::for_request(request, code, "");
    if code > 100 {
        response.set_to_tag(&random_hex(6));
    }
    Event::Response { key: key.clone(), response }
}

#[cfg(test)]
mod tests;
