//! Clients that speak SIP over WebSocket (RFC 7118: SIP.js, JsSIP), in the
//! call shell: the registrar that makes them present, the admission of
//! their INVITEs, and the SIP side of ringing them for `<Dial><Client>`.
//!
//! ```text
//!   REGISTER (Authorization: Bearer <access token>) ──▶ 200, device present (RouteStore)
//!   INVITE from a registered connection ──▶ the outgoing grant's app, like a Voice SDK client's invite
//!   <Dial><Client> ── client_legs: SipOut::Invite ──▶ INVITE to the device's connection
//!        180 ignored · 2xx ──▶ ACK, ClientLegs::answer · >=300 / timeout ──▶ ClientLegs::reject
//!        SipOut::Cancel ──▶ CANCEL (BYE once answered) · SipOut::Hangup ──▶ BYE
//!        BYE from the device ──▶ 200, ClientLegs::hangup
//! ```
//!
//! A device is one registered WebSocket connection; its registration ends
//! with `Expires: 0`, when the connection closes, or when it is not
//! refreshed in time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{client_lookup, random_tag, Done, Shell};
use crate::call::client_legs::SipOut;
use crate::call::dialog::{with_sdp, Dialog};
use crate::call::Input;
use crate::client::ClientInfo;
use crate::routes::{DeviceId, DeviceRoute, PresenceStatus};
use crate::sip::layer::{Peer, Transport, TxKey};
use crate::sip::message::{Method, Request, Response};
use crate::sip::{Header, HeaderName, Headers};

/// Registration lifetime when the client asks for none, and the most we grant.
const DEFAULT_EXPIRES: u64 = 600;
const MAX_EXPIRES: u64 = 3600;

/// A registered SIP-over-WebSocket connection.
struct SipDevice {
    device: DeviceId,
    client: Arc<ClientInfo>,
    peer: Peer,
    /// Where our INVITEs go (its Contact).
    contact: String,
    /// Which REGISTER set the expiry timer now running.
    generation: u64,
}

/// Our INVITE to a device, ringing it for a child call.
struct Ring {
    device: DeviceId,
    call_sid: String,
    invite: Request,
    /// The device answered: its dialog (until the call takes it).
    answered: bool,
}

#[derive(Default)]
pub(super) struct SipClients {
    by_connection: HashMap<u64, SipDevice>,
    connection_of: HashMap<DeviceId, u64>,
    rings: HashMap<TxKey, Ring>,
    ring_of: HashMap<(DeviceId, String), TxKey>,
    /// Answered calls with devices: (device, child sid) -> our dialog.
    dialogs: HashMap<(DeviceId, String), Dialog>,
    by_call_id: HashMap<String, (DeviceId, String)>,
    generation: u64,
}

/// A client's INVITE over SIP, from its lookup to its call.
pub(super) struct SipClientCall {
    key: TxKey,
    peer: Peer,
    request: Request,
    client: Arc<ClientInfo>,
    route: Result<(crate::store::Account, crate::store::Application, Option<crate::store::Trunk>), &'static str>,
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The bearer token of `Authorization: Bearer <token>` (RFC 8898).
fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers.get(HeaderName::Authorization)?.value_str()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// `expires` of the first Contact, else the Expires header, else the default.
fn expires(request: &Request) -> u64 {
    let contact = request.headers.get(HeaderName::Contact).and_then(|h| h.value_str()).unwrap_or_default();
    let from_contact = contact
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("expires="))
        .find_map(|v| v.trim_end_matches('>').parse().ok());
    let from_header =
        request.headers.get(HeaderName::Expires).and_then(|h| h.value_str()).and_then(|v| v.trim().parse().ok());
    from_contact.or(from_header).unwrap_or(DEFAULT_EXPIRES).min(MAX_EXPIRES)
}

/// The user part of a SIP URI, percent-decoded (`sip:alice@host` -> `alice`).
fn uri_user(uri: &str) -> String {
    let rest = uri.trim().trim_start_matches('<');
    let rest = rest.split_once(':').map_or(rest, |(_, r)| r);
    let user = rest.split(['@', ';', '>']).next().unwrap_or_default();
    url::form_urlencoded::parse(format!("u={}", user.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl Shell {
    fn sip_respond(&self, key: TxKey, request: &Request, code: u16, extra: &[(HeaderName, String)]) {
        let mut response = Response::for_request(request, code, "");
        response.set_to_tag(&random_tag());
        for (name, value) in extra {
            response.headers.push(Header::new(*name, value.clone()));
        }
        self.sip.respond(key, response);
    }

    /// REGISTER over a WebSocket: the access token in `Authorization:
    /// Bearer` says who the client is; the connection becomes its device.
    pub(super) fn sip_register(&mut self, key: TxKey, peer: Peer, request: Request) {
        let Some(clients) = self.clients.as_mut() else { return self.sip_respond(key, &request, 503, &[]) };
        let challenge = (HeaderName::WwwAuthenticate, "Bearer realm=\"bridgehead\"".to_owned());
        let Some(token) = bearer(&request) else { return self.sip_respond(key, &request, 401, &[challenge]) };
        let hub = clients.hub.clone();
        let verified = crate::token::verify(token, unix_now(), |sid| hub.api_key(sid));
        let token = match verified {
            Ok(t) => t,
            Err(e) => {
                hub.stats.count_refusal(&e);
                tracing::debug!(error = %e, "SIP REGISTER token refused");
                let challenge = (
                    HeaderName::WwwAuthenticate,
                    format!("Bearer realm=\"bridgehead\", error=\"invalid_token\", error_description=\"{e}\""),
                );
                return self.sip_respond(key, &request, 401, &[challenge]);
            }
        };
        let Some(connection) = peer.connection.filter(|_| peer.transport == Transport::Ws) else {
            return self.sip_respond(key, &request, 403, &[]);
        };
        let expires_s = expires(&request);
        let contact = request
            .headers
            .get(HeaderName::Contact)
            .and_then(|h| h.value_str())
            .map(|c| c.split(';').next().unwrap_or(c).trim().trim_start_matches('<').trim_end_matches('>').to_owned())
            .unwrap_or_default();
        if expires_s == 0 {
            self.sip_unregister(connection);
            return self.sip_respond(key, &request, 200, &[]);
        }
        let client = Arc::new(ClientInfo {
            account: token.account_sid.clone(),
            identity: token.identity.clone(),
            incoming: token.incoming_allow,
            outgoing: token.outgoing.clone(),
        });
        self.sip_clients.generation += 1;
        let generation = self.sip_clients.generation;
        let device = match self.sip_clients.by_connection.get(&connection) {
            Some(d) if d.client.account == client.account && d.client.identity == client.identity => d.device,
            Some(_) => {
                self.sip_unregister(connection);
                hub.new_device_id()
            }
            None => hub.new_device_id(),
        };
        let route = DeviceRoute {
            device,
            account: client.account.clone(),
            identity: client.identity.clone(),
            status: PresenceStatus::Available,
            incoming: client.incoming,
            appliance: hub.appliance.clone(),
            registered_at: SystemTime::now(),
        };
        if let Err(e) = hub.routes.register(route) {
            tracing::warn!(error = %e, "SIP client registration refused");
            return self.sip_respond(key, &request, 503, &[]);
        }
        if let Some(clients) = self.clients.as_mut() {
            clients.sip_device(device, true);
        }
        self.sip_clients.connection_of.insert(device, connection);
        self.sip_clients
            .by_connection
            .insert(connection, SipDevice { device, client, peer, contact: contact.clone(), generation });
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(expires_s)).await;
            let _ = done.send(Done::SipRegistrationExpired { connection, generation });
        });
        let contact = (HeaderName::Contact, format!("<{contact}>;expires={expires_s}"));
        self.sip_respond(key, &request, 200, &[contact, (HeaderName::Expires, expires_s.to_string())]);
    }

    /// The connection's registration ends (Expires 0, closed, expired).
    pub(super) fn sip_unregister(&mut self, connection: u64) {
        let Some(d) = self.sip_clients.by_connection.remove(&connection) else { return };
        self.sip_clients.connection_of.remove(&d.device);
        let Some(clients) = self.clients.as_mut() else { return };
        clients.hub.routes.unregister(d.device);
        // Its ringing calls stop ringing; answered ones end (SIP has no reconnect).
        let (mut events, parked) = clients.gone(d.device);
        for sid in parked {
            events.extend(clients.reconnect_expired(&sid));
        }
        clients.sip_device(d.device, false);
        self.client_events(events);
    }

    pub(super) fn sip_registration_expired(&mut self, connection: u64, generation: u64) {
        if self.sip_clients.by_connection.get(&connection).is_some_and(|d| d.generation == generation) {
            self.sip_unregister(connection);
        }
    }

    /// An INVITE from a SIP-over-WebSocket connection: its registration's
    /// token must grant outgoing calls; then it is a client's call.
    pub(super) fn sip_admit(&mut self, key: TxKey, peer: Peer, request: Request) {
        let registered = peer.connection.and_then(|c| self.sip_clients.by_connection.get(&c));
        let Some(client) = registered.map(|d| d.client.clone()) else {
            return self.refuse(key, &request, 403);
        };
        if client.outgoing.is_none() || self.calls.len() >= self.cfg.max_calls || self.draining {
            return self.refuse(key, &request, if client.outgoing.is_none() { 403 } else { 503 });
        }
        self.pending.insert(key.clone(), false);
        let store = self.store.clone();
        let done = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let route = client_lookup(&*store, &client);
            let call = SipClientCall { key, peer, request, client, route };
            let _ = done.send(Done::SipClientRouted(Box::new(call)));
        });
    }

    pub(super) fn on_sip_client_routed(&mut self, call: SipClientCall) {
        let SipClientCall { key, peer, request, client, route } = call;
        let cancelled = self.pending.remove(&key).unwrap_or(false);
        let (account, app, trunk) = match route {
            Ok(found) if !cancelled => found,
            Ok(_) => return self.refuse(key, &request, 487),
            Err(why) => {
                tracing::info!(identity = %client.identity, why, "SIP client call refused");
                self.stats.refused[2].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return self.refuse(key, &request, 403);
            }
        };
        let to = uri_user(request.uri_str());
        let custom: Vec<(String, String)> = request
            .headers
            .iter()
            .filter_map(|h| {
                let name = std::str::from_utf8(h.name()).ok()?;
                let param = name.strip_prefix("X-").or_else(|| name.strip_prefix("x-"))?;
                Some((param.to_owned(), h.value_str()?.to_owned()))
            })
            .collect();
        let call_id = request.headers.call_id().map(str::to_owned).unwrap_or_default();
        let (id, _) =
            self.start_client_call(&client, &account, &app, trunk.as_ref(), &to, custom, Some((call_id, key.clone())));
        self.feed(id, Input::InboundInvite { key, peer, request });
    }

    // ------------------------------------------------------------ ringing devices

    /// Sends what the client legs queued for SIP devices.
    pub(super) fn flush_sip_out(&mut self) {
        let Some(clients) = self.clients.as_mut() else { return };
        let out = std::mem::take(&mut clients.sip_out);
        for o in out {
            match o {
                SipOut::Invite { device, call_sid, from, sdp } => self.sip_ring(device, call_sid, &from, sdp),
                SipOut::Cancel { device, call_sid } => {
                    let Some(key) = self.sip_clients.ring_of.remove(&(device, call_sid.clone())) else { continue };
                    match self.sip_clients.rings.get(&key) {
                        Some(r) if r.answered => self.sip_bye(device, &call_sid),
                        Some(_) => self.sip.cancel(key),
                        None => {}
                    }
                }
                SipOut::Hangup { device, call_sid } => self.sip_bye(device, &call_sid),
            }
        }
    }

    fn sip_ring(&mut self, device: DeviceId, call_sid: String, from: &str, sdp: String) {
        let Some(d) = self.sip_clients.connection_of.get(&device).and_then(|c| self.sip_clients.by_connection.get(c))
        else {
            // Gone meanwhile: it does not ring.
            let events = self.clients.as_mut().map(|c| c.reject(device, &call_sid)).unwrap_or_default();
            return self.client_events(events);
        };
        let user: String = from
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.+".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let mut headers = Headers::new();
        headers.push(Header::new(HeaderName::MaxForwards, "70"));
        headers.push(Header::new(
            HeaderName::From,
            format!("\"{from}\" <sip:{user}@{}>;tag={}", self.cfg.local_sip, random_tag()),
        ));
        headers.push(Header::new(HeaderName::To, format!("<sip:{}@{}>", d.client.identity, self.cfg.local_sip)));
        headers.push(Header::new(HeaderName::CallId, format!("{}@bridgehead", random_tag())));
        headers.push(Header::new(HeaderName::CSeq, "1 INVITE"));
        headers.push(Header::new(HeaderName::Contact, format!("<sip:bridgehead@{};transport=ws>", self.cfg.local_sip)));
        headers.push(Header::with_name("X-Twilio-CallSid", call_sid.clone()));
        let mut invite = Request {
            method: Method::Invite,
            uri: bytes::Bytes::from(d.contact.clone()),
            headers,
            body: bytes::Bytes::new(),
        };
        with_sdp(&mut invite.headers, &mut invite.body, sdp);
        let key = self.sip.request(d.peer, invite.clone());
        self.sip_clients.ring_of.insert((device, call_sid.clone()), key.clone());
        self.sip_clients.rings.insert(key, Ring { device, call_sid, invite, answered: false });
    }

    /// A response to our INVITE to a device; false if it is not one.
    pub(super) fn sip_ring_response(&mut self, key: &TxKey, response: Option<Response>) -> bool {
        let Some(ring) = self.sip_clients.rings.get_mut(key) else { return false };
        let (device, call_sid) = (ring.device, ring.call_sid.clone());
        let code = response.as_ref().map_or(408, |r| r.code);
        let events = match (code, response) {
            (100..=199, _) => return true,
            (200..=299, Some(response)) => {
                ring.answered = true;
                let Some(d) =
                    self.sip_clients.connection_of.get(&device).and_then(|c| self.sip_clients.by_connection.get(c))
                else {
                    return true;
                };
                let Some(mut dialog) = Dialog::as_uac(&ring.invite, &response, d.peer) else { return true };
                let cseq = response.headers.cseq().map(|c| c.seq).unwrap_or(1);
                self.sip.ack_2xx(dialog.peer, dialog.ack(cseq));
                dialog.local_cseq = dialog.local_cseq.max(cseq);
                self.sip_clients.by_call_id.insert(dialog.call_id.clone(), (device, call_sid.clone()));
                self.sip_clients.dialogs.insert((device, call_sid.clone()), dialog);
                let sdp = String::from_utf8_lossy(&response.body).into_owned();
                self.clients.as_mut().map(|c| c.answer(device, &call_sid, &sdp)).unwrap_or_default()
            }
            _ => {
                self.sip_clients.rings.remove(key);
                self.sip_clients.ring_of.remove(&(device, call_sid.clone()));
                self.clients.as_mut().map(|c| c.reject(device, &call_sid)).unwrap_or_default()
            }
        };
        self.client_events(events);
        true
    }

    /// A request inside a device's dialog (its BYE); false if it is not one.
    pub(super) fn sip_device_request(&mut self, key: &TxKey, request: &Request) -> bool {
        let Some(call_id) = request.headers.call_id().ok() else { return false };
        let Some((device, call_sid)) = self.sip_clients.by_call_id.get(call_id).cloned() else { return false };
        if request.method != Method::Bye {
            // A new offer from the device: not taken in this release.
            self.sip_respond(key.clone(), request, 488, &[]);
            return true;
        }
        self.sip_respond(key.clone(), request, 200, &[]);
        self.sip_forget(device, &call_sid);
        let events = self.clients.as_mut().map(|c| c.hangup(device, &call_sid)).unwrap_or_default();
        self.client_events(events);
        true
    }

    fn sip_bye(&mut self, device: DeviceId, call_sid: &str) {
        if let Some(mut dialog) = self.sip_clients.dialogs.remove(&(device, call_sid.to_owned())) {
            let bye = dialog.request(Method::Bye);
            self.sip.request(dialog.peer, bye);
        }
        self.sip_forget(device, call_sid);
    }

    fn sip_forget(&mut self, device: DeviceId, call_sid: &str) {
        let k = (device, call_sid.to_owned());
        if let Some(dialog) = self.sip_clients.dialogs.remove(&k) {
            self.sip_clients.by_call_id.remove(&dialog.call_id);
        }
        self.sip_clients.by_call_id.retain(|_, v| *v != k);
        if let Some(key) = self.sip_clients.ring_of.remove(&k) {
            self.sip_clients.rings.remove(&key);
        }
        self.sip_clients.rings.retain(|_, r| !(r.device == device && r.call_sid == call_sid));
    }
}
