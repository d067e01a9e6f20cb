//! Calls across the fleet, in the call shell: a `<Dial><Client>` for an
//! identity held by another appliance goes there as SIP, one hop.
//!
//! ```text
//!   near (received the call, B2BUA)              far (holds the client)
//!   Call ──INVITE (Client peer)──▶ shell
//!      identity not held here, held by `far` ──▶ INVITE sip:alice@far-sip (TCP)
//!                                                 X-Bh-Fleet: near; ts; sig    ──▶ verified, else 403
//!                                                 X-Bh-Account, X-Bh-Identity … ──▶ ClientLegs rings alice's devices
//!      ◀── 180 / 200 (SDP of the answering device) / 480 / 486 ◀──────────────────
//!      ACK, BYE, re-INVITE of that dialog go to `far`; far's BYE comes back as the callee's
//! ```
//!
//! The near appliance stays the call's B2BUA (records, webhooks, the
//! carrier's dialog); the far one is a gateway to its clients: it keeps no
//! call record and fetches no instructions. Media goes through one
//! dataplane, the one the route policy picks: near (`X-Bh-Media: pass`, the
//! far one passes the SDP through untouched) or far (`anchor`: the near one
//! offers the caller's own SDP and passes the far answer back, relaying
//! nothing; `Call::pass_through`). docs/fleet.md has the whole story.
//!
//! Fleet membership of a SIP request is proven by `X-Bh-Fleet`: the
//! sender's appliance id, a Unix time and an HMAC-SHA256 with a key derived
//! from `[peers] fleet_key` over both, the Call-ID and the headers saying
//! whom to ring and how ([`subject`]); each proof is taken once. It is
//! checked on the first INVITE of a dialog; the dialog's later requests are
//! matched by Call-ID and must come over TCP (the link between appliances,
//! which the operator secures, as for gossip: docs/fleet.md).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{random_tag, Shell};
use crate::call::client_legs::uri_user;
use crate::call::dialog::Dialog;
use crate::routes::policy::{self, ApplianceId, CallRequest, Endpoint, Latency, Region, Service, Tuning};
use crate::routes::{Announcement, RouteStore};
use crate::sdp::negotiate::LegMedia;
use crate::sdp::{with_media_address, SessionDescription};
use crate::sip::layer::{Event, Peer, Transport, TxKey};
use crate::sip::message::{Method, Request};
use crate::sip::{Header, HeaderName};
use crate::store::AccountSid;
use dataplane::control::SessionRequest;
use dataplane::session::{LegSettings, SessionId};

/// The header proving fleet membership.
const FLEET: &str = "X-Bh-Fleet";
/// The account of the client a fleet INVITE is for.
const ACCOUNT: &str = "X-Bh-Account";
/// `anchor`: the receiving appliance anchors the media (the sender passes
/// it through); `pass`: the sender anchored it, the SDP goes through as is.
const MEDIA: &str = "X-Bh-Media";
/// How far a fleet INVITE's time may be from ours (clock skew and transit).
const MAX_SKEW_S: u64 = 60;

/// The key that signs fleet SIP, derived from `[peers] fleet_key` (a
/// different key from gossip's: one use, one key).
pub struct FleetKey(ring::hmac::Key);

impl FleetKey {
    pub fn new(fleet_key: &str) -> FleetKey {
        let derived = ring::digest::digest(
            &ring::digest::SHA256,
            &[b"bridgehead fleet sip v1\0".as_slice(), fleet_key.as_bytes()].concat(),
        );
        FleetKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref()))
    }

    fn message(appliance: &str, ts: u64, subject: &str) -> String {
        format!("{appliance}\n{ts}\n{subject}")
    }

    /// The `X-Bh-Fleet` value for a request of `appliance` about
    /// `subject` (what the request asks: [`subject`]).
    pub fn sign(&self, appliance: &str, ts: u64, subject: &str) -> String {
        let tag = ring::hmac::sign(&self.0, Self::message(appliance, ts, subject).as_bytes());
        let sig: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{appliance};ts={ts};sig={sig}")
    }

    /// The sending appliance's id if `value` signs `subject` at a time
    /// within [`MAX_SKEW_S`] of `now`.
    pub fn verify(&self, value: &str, subject: &str, now: u64) -> Result<String, FleetRefusal> {
        let mut parts = value.split(';').map(str::trim);
        let appliance = parts.next().filter(|a| !a.is_empty()).ok_or(FleetRefusal::Malformed)?;
        let (mut ts, mut sig) = (None, None);
        for part in parts {
            match part.split_once('=') {
                Some(("ts", v)) => ts = v.parse::<u64>().ok(),
                Some(("sig", v)) => sig = hex(v),
                _ => {}
            }
        }
        let (ts, sig) = ts.zip(sig).ok_or(FleetRefusal::Malformed)?;
        if ts.abs_diff(now) > MAX_SKEW_S {
            return Err(FleetRefusal::Stale);
        }
        ring::hmac::verify(&self.0, Self::message(appliance, ts, subject).as_bytes(), &sig)
            .map_err(|_| FleetRefusal::BadSignature)?;
        Ok(appliance.to_owned())
    }
}

/// What a fleet INVITE's proof covers: its Call-ID and every header that
/// says whom to ring and how (so that none can be changed or replayed for
/// another client).
fn subject(request: &Request) -> String {
    let get = |name: &str| request.headers.get_named(name).and_then(|h| h.value_str()).unwrap_or_default().to_owned();
    let call_id = request.headers.call_id().unwrap_or_default();
    format!("{call_id}\n{}\n{}\n{}", get(ACCOUNT), get("X-Bh-Identity"), get(MEDIA))
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Why a fleet INVITE was refused (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FleetRefusal {
    #[error("this appliance has no fleet key")]
    NoKey,
    #[error("malformed X-Bh-Fleet header")]
    Malformed,
    #[error("X-Bh-Fleet time too far from ours")]
    Stale,
    #[error("X-Bh-Fleet signature does not verify")]
    BadSignature,
    #[error("the sender is not a live member of the fleet")]
    NotMember,
    #[error("this proof was used already")]
    Replayed,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A client leg this appliance holds for a call another appliance runs.
struct GatewayLeg {
    invite: Request,
    key: TxKey,
    peer: Peer,
    account: AccountSid,
    /// Our To tag toward the near appliance, the same on every response.
    tag: String,
    /// Once answered: for our BYE when the client hangs up.
    dialog: Option<Dialog>,
    call_id: String,
    /// The near appliance's announced SIP address: where our requests in
    /// the dialog go (its connection to us may be gone by then).
    near_sip: Option<Peer>,
    /// When the near appliance asked us to anchor the media: our session,
    /// its side toward the near appliance's caller (0) and the client (1).
    media: Option<(SessionId, [SocketAddr; 2])>,
}

/// The shell's fleet state: where its dialogs to other appliances go, and
/// the client legs it holds for them.
#[derive(Default)]
pub(super) struct FleetCalls {
    key: Option<FleetKey>,
    /// The configured inter-region latency (`[peers] latency_ms`).
    latency: Latency,
    /// Call-ID of a dialog we opened to another appliance -> that appliance.
    out_peers: HashMap<String, Peer>,
    /// Gateway legs by the id their client-leg events carry.
    legs: HashMap<u64, GatewayLeg>,
    by_call_id: HashMap<String, u64>,
    by_invite: HashMap<TxKey, u64>,
    /// Call-IDs of the fleet INVITEs taken within the proof's lifetime,
    /// with when: a captured INVITE sent again is refused.
    taken: HashMap<String, u64>,
    /// What SIP over TLS trusts for fleet peers.
    certs: crate::tls::FleetCerts,
}

impl FleetCalls {
    pub(super) fn new(
        key: Option<FleetKey>,
        configured: &[(String, String, u32)],
        certs: crate::tls::FleetCerts,
    ) -> FleetCalls {
        let mut latency = Latency::default();
        for (a, b, ms) in configured {
            latency.set(&Region::new(a.clone()), &Region::new(b.clone()), *ms);
        }
        FleetCalls { key, latency, certs, ..FleetCalls::default() }
    }
}

/// Counters of fleet SIP, read at scrape time.
#[derive(Debug, Default)]
pub struct FleetStats {
    /// Client legs handed to another appliance.
    pub sent: std::sync::atomic::AtomicU64,
    /// Client legs taken for another appliance.
    pub taken: std::sync::atomic::AtomicU64,
    /// Of those sent and taken, the ones over TLS (the rest: TCP).
    pub sent_tls: std::sync::atomic::AtomicU64,
    pub taken_tls: std::sync::atomic::AtomicU64,
    /// Fleet INVITEs refused (bad or missing proof of membership).
    pub refused: std::sync::atomic::AtomicU64,
}

impl Shell {
    fn routes(&self) -> Option<std::sync::Arc<dyn RouteStore>> {
        self.clients.as_ref().map(|c| c.hub.routes.clone())
    }

    /// Where a request of call `id` to a client peer goes when its client
    /// is held by another appliance: that appliance's SIP address (the
    /// request is rewritten for it). `None`: the local client legs take it.
    pub(super) fn fleet_peer(&mut self, id: u64, request: &mut Request) -> Option<Peer> {
        let call_id = request.headers.call_id().ok()?.to_owned();
        if let Some(peer) = self.fleet.out_peers.get(&call_id) {
            return Some(*peer);
        }
        if request.method != Method::Invite {
            return None;
        }
        let routes = self.routes()?;
        let key = self.fleet.key.as_ref()?;
        let entry = self.calls.get_mut(&id)?;
        let account = AccountSid::parse(&entry.info.facts.account_sid).ok()?;
        let identity = request.headers.get_named("X-Bh-Identity")?.value_str()?.to_owned();
        let me = routes.appliance().to_owned();
        let ringable = routes.ringable(&account, &identity);
        if ringable.iter().any(|d| d.appliance == me) {
            return None;
        }
        // The first appliance holding the identity that is alive and says
        // where its SIP is (one hop, one appliance: docs/fleet.md).
        let fleet = routes.appliances();
        let (far, peer) = ringable.iter().find_map(|d| {
            let a = fleet.iter().find(|a| a.state.id.0 == d.appliance && a.state.alive)?;
            if let Some((_, cert)) = a.sip_tls {
                self.fleet.certs.insert(cert);
            }
            Some((d.appliance.clone(), sip_peer(a)?))
        })?;
        let anchor = media_anchor(&me, &far, &fleet, self.fleet.latency.clone(), &routes);
        // Anchored far only when the caller can still be answered with the
        // far appliance's SDP; otherwise here (the caller was answered
        // with our address already).
        let caller_offer =
            if anchor.as_deref() == Some(far.as_str()) { entry.call.pass_through(&call_id) } else { None };
        let media = match caller_offer {
            Some(offer) => {
                request.body = offer;
                "anchor"
            }
            None => "pass",
        };
        tracing::info!(call = %entry.info.facts.call_sid, %identity, %far, ?anchor, media, "client held by a peer: one hop there");
        let ts = unix_now();
        request.headers.push(Header::with_name(MEDIA, media));
        request.headers.push(Header::with_name(ACCOUNT, account.as_str().to_owned()));
        let proof = key.sign(&me, ts, &subject(request));
        request.headers.push(Header::with_name(FLEET, proof));
        let transport = if peer.transport == Transport::Tls { "tls" } else { "tcp" };
        request.uri = bytes::Bytes::from(format!("sip:{}@{};transport={transport}", uri_user(&identity), peer.addr));
        self.fleet.out_peers.insert(call_id, peer);
        self.stats.fleet.sent.fetch_add(1, Relaxed);
        if peer.transport == Transport::Tls {
            self.stats.fleet.sent_tls.fetch_add(1, Relaxed);
        }
        Some(peer)
    }

    /// The peer of a fleet dialog's ACK, if `request` belongs to one.
    pub(super) fn fleet_ack_peer(&self, request: &Request) -> Option<Peer> {
        let call_id = request.headers.call_id().ok()?;
        self.fleet.out_peers.get(call_id).copied()
    }

    /// A call forgets its dialogs.
    pub(super) fn fleet_forget_call_ids(&mut self, call_ids: &[String]) {
        for c in call_ids {
            self.fleet.out_peers.remove(c);
        }
    }

    /// A request outside every call: a fleet INVITE, or a request in the
    /// dialog of a client leg held for another appliance. True when taken.
    pub(super) fn fleet_request(&mut self, key: &TxKey, peer: Peer, request: &Request) -> bool {
        let Ok(call_id) = request.headers.call_id().map(str::to_owned) else { return false };
        if let Some(&leg_id) = self.fleet.by_call_id.get(&call_id) {
            if request.method == Method::Invite
                && request.headers.to_addr().ok().and_then(|t| t.tag().map(|_| ())).is_none()
            {
                return false; // a retransmission never gets here; a new INVITE with a used Call-ID is not ours
            }
            let Some(leg) = self.fleet.legs.get(&leg_id) else { return false };
            if !matches!(peer.transport, Transport::Tls | Transport::Tcp) {
                // Fleet dialogs run over TLS (or TCP) between appliances:
                // anything else naming one of their Call-IDs is not from the
                // near appliance.
                self.refuse(key.clone(), request, 403);
                return true;
            }
            let account = leg.account.clone();
            if request.method == Method::Bye {
                self.fleet.legs.get_mut(&leg_id).map(|l| l.dialog.take());
            }
            let events = match self.clients.as_mut() {
                Some(c) => c.request(leg_id, key.clone(), request.clone(), &account),
                None => Vec::new(),
            };
            // The leg is forgotten once the answer to this BYE is sent
            // (`fleet_event`): the client legs answer through the done channel.
            self.client_events(events);
            return true;
        }
        let Some(proof) = request.headers.get_named(FLEET).and_then(|h| h.value_str()).map(str::to_owned) else {
            return false;
        };
        if request.method != Method::Invite {
            self.refuse(key.clone(), request, 481);
            return true;
        }
        match self.fleet_verify(&proof, request) {
            Ok(from) => self.fleet_take(key, peer, request, &from, call_id),
            Err(why) => {
                self.stats.fleet.refused.fetch_add(1, Relaxed);
                tracing::warn!(peer = %peer.addr, %why, "fleet INVITE refused");
                self.refuse(key.clone(), request, 403);
            }
        }
        true
    }

    fn fleet_verify(&mut self, proof: &str, request: &Request) -> Result<String, FleetRefusal> {
        let key = self.fleet.key.as_ref().ok_or(FleetRefusal::NoKey)?;
        let now = unix_now();
        let from = key.verify(proof, &subject(request), now)?;
        let call_id = request.headers.call_id().unwrap_or_default().to_owned();
        self.fleet.taken.retain(|_, at| now.saturating_sub(*at) <= 2 * MAX_SKEW_S);
        if self.fleet.taken.insert(call_id, now).is_some() {
            return Err(FleetRefusal::Replayed);
        }
        let member =
            self.routes().is_some_and(|r| r.appliances().iter().any(|a| a.state.id.0 == from && a.state.alive));
        if !member {
            return Err(FleetRefusal::NotMember);
        }
        Ok(from)
    }

    /// Takes a verified fleet INVITE: rings the local devices of its client.
    fn fleet_take(&mut self, key: &TxKey, peer: Peer, request: &Request, from: &str, call_id: String) {
        let account =
            request.headers.get_named(ACCOUNT).and_then(|h| h.value_str()).and_then(|a| AccountSid::parse(a).ok());
        let (Some(account), true) = (account, self.clients.is_some()) else {
            return self.refuse(key.clone(), request, 480);
        };
        if self.calls.len() + self.fleet.legs.len() >= self.cfg.max_calls || self.draining {
            self.stats.refused[3].fetch_add(1, Relaxed);
            return self.refuse(key.clone(), request, 503);
        }
        let near_sip =
            self.routes().and_then(|r| sip_peer(&r.appliances().into_iter().find(|a| a.state.id.0 == from)?));
        let mut request = request.clone();
        let anchor = request.headers.get_named(MEDIA).and_then(|h| h.value_str()) == Some("anchor");
        let media = if anchor {
            match self.fleet_anchor(&mut request) {
                Ok(media) => Some(media),
                Err(code) => return self.refuse(key.clone(), &request, code),
            }
        } else {
            None
        };
        let request = &request;
        let id = self.next_id;
        self.next_id += 1;
        tracing::debug!(%from, %call_id, anchor, "client leg taken for a peer");
        self.stats.fleet.taken.fetch_add(1, Relaxed);
        if peer.transport == Transport::Tls {
            self.stats.fleet.taken_tls.fetch_add(1, Relaxed);
        }
        self.stats.gateway_legs.fetch_add(1, Relaxed);
        self.fleet.by_call_id.insert(call_id.clone(), id);
        self.fleet.by_invite.insert(key.clone(), id);
        self.fleet.legs.insert(
            id,
            GatewayLeg {
                invite: request.clone(),
                key: key.clone(),
                peer,
                account: account.clone(),
                tag: format!("g{}", random_tag()),
                dialog: None,
                call_id,
                near_sip,
                media,
            },
        );
        let events = match self.clients.as_mut() {
            Some(c) => c.request(id, key.clone(), request.clone(), &account),
            None => Vec::new(),
        };
        self.client_events(events);
    }

    /// Puts our dataplane between the near appliance's caller and the
    /// client: a session whose side 0 faces the offer's address, and the
    /// offer moved to side 1 for the client. Err: the SIP refusal.
    fn fleet_anchor(&mut self, invite: &mut Request) -> Result<(SessionId, [SocketAddr; 2]), u16> {
        let offer = SessionDescription::parse(&invite.body).ok().and_then(|s| LegMedia::from_sdp(&s).ok());
        let Some(offer) = offer else { return Err(488) };
        let caller = LegSettings { remote: offer.remote, ..LegSettings::default() };
        let request = SessionRequest { legs: [caller, LegSettings::default()], rtcp_mux: false };
        let info = self.dataplane.create_session(request).map_err(|e| {
            tracing::warn!(error = %e, "no media session to anchor a peer's call");
            503u16
        })?;
        let local = [info.legs[0].local, info.legs[1].local];
        match with_media_address(&invite.body, local[1]) {
            Some(moved) => {
                invite.body = bytes::Bytes::from(moved);
                Ok((info.id, local))
            }
            None => {
                let _ = self.dataplane.delete_session(info.id);
                Err(488)
            }
        }
    }

    /// The near appliance cancelled its INVITE.
    pub(super) fn fleet_cancelled(&mut self, invite: &TxKey) -> bool {
        if !self.fleet.by_invite.contains_key(invite) {
            return false;
        }
        // The layer answered the CANCEL itself: the 200 the client legs
        // make for it (to this made-up key) is dropped.
        let cancel = TxKey { branch: format!("{}-cancel", invite.branch), method: Method::Cancel };
        let events = self.clients.as_mut().map(|c| c.cancel(invite, cancel)).unwrap_or_default();
        // The 487 they make for the INVITE ends the leg (`fleet_event`).
        self.client_events(events);
        true
    }

    /// Our 2xx to a fleet INVITE was never ACKed (the near appliance or
    /// the link went away): the client hangs up and the leg ends, rather
    /// than hold a device busy in a call nobody runs.
    pub(super) fn fleet_ack_timeout(&mut self, invite: &TxKey) -> bool {
        let Some(&id) = self.fleet.by_invite.get(invite) else { return false };
        let Some(leg) = self.fleet.legs.get_mut(&id) else { return false };
        let Some(mut dialog) = leg.dialog.take() else { return true };
        tracing::warn!(call_id = %leg.call_id, "no ACK from the near appliance: the client leg ends");
        let bye = dialog.request(Method::Bye);
        let account = leg.account.clone();
        self.sip.request(dialog.peer, bye.clone());
        // The same BYE, as if from the near side, hangs the device up; its
        // answer (to a key nobody sends on) ends the leg in `fleet_event`.
        let key = TxKey { branch: format!("z9hG4bKackto{}", random_tag()), method: Method::Bye };
        let events = self.clients.as_mut().map(|c| c.request(id, key, bye, &account)).unwrap_or_default();
        self.client_events(events);
        true
    }

    /// The appliance stops: answered client legs are hung up (BYE to the
    /// near appliance, `hangup` to the device), ringing ones cancelled (487).
    pub(super) fn fleet_hang_up_all(&mut self) {
        let legs: Vec<(TxKey, bool)> = self.fleet.legs.values().map(|l| (l.key.clone(), l.dialog.is_some())).collect();
        for (invite, answered) in legs {
            if answered {
                self.fleet_ack_timeout(&invite);
            } else {
                self.fleet_cancelled(&invite);
            }
        }
    }

    /// Whether the events of client-leg id `id` are a gateway leg's.
    pub(super) fn is_fleet_leg(&self, id: u64) -> bool {
        self.fleet.legs.contains_key(&id)
    }

    /// What the client legs answer or ask on a gateway leg, turned into
    /// SIP toward the near appliance.
    pub(super) fn fleet_event(&mut self, id: u64, event: Event) {
        let local_sip = self.cfg.local_sip.clone();
        let Some(leg) = self.fleet.legs.get_mut(&id) else { return };
        match event {
            Event::Response { key, mut response } if key == leg.key => {
                if response.code > 100 {
                    if let Some(to) = leg.invite.headers.get(HeaderName::To).and_then(|h| h.value_str()) {
                        response.headers.set(HeaderName::To, format!("{to};tag={}", leg.tag));
                    }
                }
                if (101..300).contains(&response.code) {
                    response.headers.set(HeaderName::Contact, format!("<sip:bridgehead@{local_sip};transport=tcp>"));
                }
                let code = response.code;
                if (200..300).contains(&code) {
                    // Our requests of the dialog (BYE) go over the connection
                    // the near appliance opened while it lasts, else to its
                    // announced SIP address (the transport dials it).
                    let near = match leg.near_sip {
                        Some(near) => Peer { connection: leg.peer.connection, ..near },
                        None => leg.peer,
                    };
                    leg.dialog = Dialog::as_uas(&leg.invite, near, &leg.tag);
                    if let Some((session, local)) = leg.media {
                        // The client's answer: side 1 sends to it, and the
                        // near appliance is told our side 0.
                        let answer = SessionDescription::parse(&response.body).ok();
                        let remote = answer.and_then(|s| LegMedia::from_sdp(&s).ok()).and_then(|m| m.remote);
                        let settings = LegSettings { remote, ..LegSettings::default() };
                        if let Err(e) = self.dataplane.update_session(session, 1, settings) {
                            tracing::warn!(error = %e, "peer call's media session update failed");
                        }
                        if let Some(moved) = with_media_address(&response.body, local[0]) {
                            response.body = bytes::Bytes::from(moved);
                        }
                    }
                }
                self.sip.respond(key, response);
                if code >= 300 {
                    self.fleet_forget(id);
                }
            }
            Event::Response { key, mut response } if key.method != Method::Cancel => {
                let bye = key.method == Method::Bye;
                // The client legs answer a new offer with the client's own
                // description: when we anchor, the near appliance must see
                // our side 0, never the client's address.
                if let (Some((_, local)), true) = (leg.media, !response.body.is_empty()) {
                    if let Some(moved) = with_media_address(&response.body, local[0]) {
                        response.body = bytes::Bytes::from(moved);
                    }
                }
                self.sip.respond(key, response);
                if bye {
                    self.fleet_forget(id);
                }
            }
            Event::Response { .. } => {}
            Event::Request { request, .. } if request.method == Method::Bye => {
                if let Some(mut dialog) = leg.dialog.take() {
                    let bye = dialog.request(Method::Bye);
                    self.sip.request(dialog.peer, bye);
                }
                self.fleet_forget(id);
            }
            // The client's `reinvite` (a new address): when we anchor, our
            // dataplane takes it and the client keeps the description it
            // was offered; when the near appliance anchors, the new offer
            // is declined (the client gets an error, the call its media).
            Event::Request { key, request, .. } if request.method == Method::Invite => {
                let answer = match leg.media {
                    Some((session, _)) => {
                        let offer = SessionDescription::parse(&request.body).ok();
                        let remote = offer.and_then(|s| LegMedia::from_sdp(&s).ok()).and_then(|m| m.remote);
                        let settings = LegSettings { remote, ..LegSettings::default() };
                        match remote.map(|_| self.dataplane.update_session(session, 1, settings)) {
                            Some(Ok(_)) => {
                                let mut ok = crate::sip::message::Response::for_request(&request, 200, "");
                                ok.headers.set(HeaderName::ContentType, "application/sdp");
                                ok.body = leg.invite.body.clone();
                                ok
                            }
                            _ => crate::sip::message::Response::for_request(&request, 488, ""),
                        }
                    }
                    None => crate::sip::message::Response::for_request(&request, 488, ""),
                };
                if let Some(clients) = self.clients.as_mut() {
                    clients.respond(&key, answer);
                }
            }
            _ => {}
        }
    }

    fn fleet_forget(&mut self, id: u64) {
        if let Some(leg) = self.fleet.legs.get(&id) {
            if leg.dialog.is_some() {
                return; // answered: kept until a BYE either way
            }
        }
        if let Some(leg) = self.fleet.legs.remove(&id) {
            self.stats.gateway_legs.fetch_sub(1, Relaxed);
            if let Some((session, _)) = leg.media {
                let _ = self.dataplane.delete_session(session);
            }
            self.fleet.by_call_id.remove(&leg.call_id);
            self.fleet.by_invite.remove(&leg.key);
            if let Some(c) = self.clients.as_mut() {
                c.call_ended(id);
            }
        }
    }
}

/// Where an appliance takes fleet SIP: over TLS when it announced that (its
/// certificate is then trusted by its announced SHA-256,
/// `crate::tls::FleetVerifier`), else over TCP (a link the operator secures).
fn sip_peer(a: &Announcement) -> Option<Peer> {
    match (a.sip_tls, a.sip) {
        (Some((addr, _)), _) => Some(Peer { transport: Transport::Tls, addr, connection: None }),
        (None, Some(addr)) => Some(Peer { transport: Transport::Tcp, addr, connection: None }),
        (None, None) => None,
    }
}

/// Where the route policy anchors the media of a call received here
/// (`me`; its caller weighs as attached here, trunk or client alike) for a
/// client held by `far`: `latency` is the configured matrix, which the
/// measured round trips override.
fn media_anchor(
    me: &str,
    far: &str,
    fleet: &[Announcement],
    mut latency: Latency,
    routes: &std::sync::Arc<dyn RouteStore>,
) -> Option<String> {
    let states: Vec<_> = fleet.iter().map(|a| a.state.clone()).collect();
    for (a, b, ms) in routes.measured_latency() {
        latency.set(&a, &b, ms);
    }
    let call = CallRequest {
        received_at: ApplianceId::new(me),
        caller: Endpoint::Trunk { appliance: ApplianceId::new(me) },
        callee: Some(Endpoint::Client { appliance: ApplianceId::new(far) }),
        needs: [Service::Relay].into(),
        media_sessions_needed: 1,
    };
    policy::decide(&call, &states, &latency, &Tuning::default()).ok().map(|d| d.media_anchor.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_call_id_verifies_with_the_same_key_only() {
        let key = FleetKey::new("a fleet key of some length");
        let value = key.sign("bh-us1-a", 1_000_000, "call-1@x");
        assert_eq!(key.verify(&value, "call-1@x", 1_000_010), Ok("bh-us1-a".to_owned()));
        let other = FleetKey::new("another fleet key, not ours");
        assert_eq!(other.verify(&value, "call-1@x", 1_000_010), Err(FleetRefusal::BadSignature));
        assert_eq!(key.verify(&value, "call-2@x", 1_000_010), Err(FleetRefusal::BadSignature));
    }

    #[test]
    fn a_changed_sender_or_time_breaks_the_signature() {
        let key = FleetKey::new("a fleet key of some length");
        let value = key.sign("bh-us1-a", 1_000_000, "c");
        let forged = value.replacen("bh-us1-a", "bh-evil", 1);
        assert_eq!(key.verify(&forged, "c", 1_000_000), Err(FleetRefusal::BadSignature));
        let moved = value.replacen("ts=1000000", "ts=1000001", 1);
        assert_eq!(key.verify(&moved, "c", 1_000_000), Err(FleetRefusal::BadSignature));
    }

    #[test]
    fn old_or_malformed_proofs_are_refused() {
        let key = FleetKey::new("a fleet key of some length");
        let value = key.sign("bh-us1-a", 1_000_000, "c");
        assert_eq!(key.verify(&value, "c", 1_000_000 + MAX_SKEW_S + 1), Err(FleetRefusal::Stale));
        assert_eq!(key.verify(&value, "c", 1_000_000 - MAX_SKEW_S - 1), Err(FleetRefusal::Stale));
        for bad in
            ["", ";ts=1;sig=00", "bh;ts=x;sig=00", "bh;ts=1000000", "bh;ts=1000000;sig=zz", "bh;ts=1000000;sig=abc"]
        {
            assert_eq!(key.verify(bad, "c", 1_000_000), Err(FleetRefusal::Malformed), "{bad:?}");
        }
    }
}
