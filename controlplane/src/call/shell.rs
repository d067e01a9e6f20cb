//! The call shell: the one task that runs every call of the appliance.
//!
//! It owns the sans-IO cores ([`Call`] and its [`Interpreter`]) and does
//! their I/O: SIP through the transport's [`SipHandle`], media through the
//! [`DataplaneHandle`], documents and status callbacks through the
//! [`WebhookClient`], records through the [`RecordWriter`]. It never waits
//! on I/O itself: store lookups and webhook fetches run as spawned tasks
//! whose results come back on a channel, so one slow customer app or one
//! slow disk write never holds up another call.
//!
//! ```text
//!  SIP events ──────┐                       ┌──▶ SipHandle (respond, request, ACK, CANCEL)
//!  lookups/fetches ─┼─▶ route to the call ─▶ │──▶ DataplaneHandle (create/update/delete)
//!  REST commands ───┤   (server tx, client   │──▶ WebhookClient (documents, callbacks)
//!  earliest timer ──┘    tx, Call-ID)        └──▶ RecordWriter (call records, in order)
//! ```
//!
//! Routing: the inbound INVITE's server transaction, the keys of the
//! requests a call sent, and every Call-ID of the call (its inbound dialog
//! and each fork's) lead to the call. Timers: one heap of (deadline, call)
//! with lazy invalidation; a call is re-armed after each input it handles.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use dataplane::control::SessionRequest;
use dataplane::session::SessionId;
use dataplane::DataplaneHandle;
use tokio::sync::{mpsc, oneshot};

mod fleet;
mod sip_clients;

pub use fleet::{FleetKey, FleetRefusal, FleetStats};

use super::client_legs::{self, ClientLegs};
use super::records::{RecordWriter, StoreWrite};
use super::{Call, CallConfig, Input, Output};
use crate::client::protocol::{self as client_protocol, ClientMessage, ServerMessage};
use crate::client::{ClientEvent, ClientHub, ClientInfo};
use crate::instructions::fetch::{Fetch, FetchId, FetchPurpose};
use crate::instructions::http::WebhookClient;
use crate::instructions::interpreter::{self, CallContext, ErrorRecord, Interpreter, Limits, Webhook};
use crate::instructions::method::Method as HttpMethod;
use crate::instructions::params::{self, CallFacts, ProgressEvent};
use crate::instructions::twiml::{CallProgressEvents, StatusCallback};
use crate::routes::DeviceId;
use crate::sip::layer::{Event, Peer, Transport, TxKey};
use crate::sip::message::{Method, Request, Response};
use crate::sip::transport::SipHandle;
use crate::sip::{Header, HeaderName};
use crate::store::{
    Account, Application, CallRecord, CallSid, CallStatus, CallUpdate, Direction, Store, Timestamp, Trunk, E164,
};

/// What the shell is told once, at start.
#[derive(Debug, Clone)]
pub struct ShellConfig {
    /// `host:port` for our Contact and From headers: an address peers reach.
    pub local_sip: String,
    pub limits: Limits,
    /// Calls at once; more are refused with 503 (and cost nothing).
    pub max_calls: usize,
    /// `[peers] fleet_key`: signs and checks the SIP between appliances
    /// (none: a single box, fleet INVITEs refused).
    pub fleet_key: Option<String>,
    /// `[peers] latency_ms`: configured round trips between regions, for
    /// the route policy (gossip's measurements override them).
    pub latency_ms: Vec<(String, String, u32)>,
    /// The certificates SIP over TLS trusts for fleet peers (a peer's is
    /// added the moment a call picks it, before the announcer's refresh).
    pub fleet_certs: crate::tls::FleetCerts,
}

/// Counters of the call layer, read at scrape time.
#[derive(Debug, Default)]
pub struct CallStats {
    pub active: AtomicU64,
    /// Calls started, by direction (inbound, outbound-api, outbound-dial).
    pub started: [AtomicU64; 3],
    /// Calls ended, by end status ([`END_STATUSES`] order).
    pub ended: [AtomicU64; 5],
    /// INVITEs refused before a call existed: no trunk allows the source,
    /// unknown number, no application, over capacity, store failure,
    /// stopping.
    pub refused: [AtomicU64; 6],
    /// Client legs held for calls other appliances run.
    pub gateway_legs: AtomicU64,
    /// Client legs handed to and taken for other appliances.
    pub fleet: FleetStats,
}

/// The end statuses counted by [`CallStats::ended`].
pub const END_STATUSES: [CallStatus; 5] =
    [CallStatus::Completed, CallStatus::Busy, CallStatus::NoAnswer, CallStatus::Failed, CallStatus::Canceled];
/// Why an INVITE was refused, as counted by [`CallStats::refused`].
pub const REFUSALS: [&str; 6] = ["no_trunk", "unknown_number", "no_application", "capacity", "store_error", "draining"];
/// [`CallStats::refused`] index of INVITEs refused while stopping.
const DRAINING: usize = 5;

fn direction_index(d: Direction) -> usize {
    match d {
        Direction::Inbound => 0,
        Direction::OutboundApi => 1,
        Direction::OutboundDial => 2,
    }
}

/// A request of the REST API to a live call.
#[derive(Debug)]
pub enum Control {
    /// New instructions for the call (`Url`/`Twiml` on `Calls/{CA}.json`).
    /// `twiml`: the document itself (`Twiml`), given in place of a fetch.
    Redirect { sid: CallSid, url: String, method: HttpMethod, twiml: Option<String>, reply: oneshot::Sender<bool> },
    /// `Status=completed` or `canceled`: end the call.
    Hangup { sid: CallSid, reply: oneshot::Sender<bool> },
    /// Place a call (`POST Calls.json`); its record is written already.
    Create(Box<Originated>),
    /// The appliance is stopping: refuse new calls (503), keep the others.
    Drain,
    /// Hang up every call and client leg still up (the drain is over).
    HangUpAll,
}

/// A call the REST API places, with everything the store said about it.
#[derive(Debug)]
pub struct Originated {
    pub facts: CallFacts,
    pub auth_token: String,
    /// Where the INVITE goes, and its Request-URI.
    pub peer: Peer,
    pub uri: String,
    /// The user part of our From.
    pub from_user: String,
    pub timeout: std::time::Duration,
    /// The account's trunk, for `<Dial><Number>` in its instructions.
    pub trunk: Option<Peer>,
    pub credentials: Option<crate::sip::digest::Credentials>,
    pub voice: Webhook,
    pub fallback: Option<Webhook>,
    /// `Twiml` given instead of a URL: the first document.
    pub inline: Option<String>,
    pub callback: StatusCallback,
}

/// How an INVITE's lookup came out.
#[derive(Clone)]
enum Route {
    Call(Arc<Admitted>),
    Refuse(u16, usize),
}

/// Routes looked up, by (source address, number), valid while the store's
/// configuration version is the one they were read at: a carrier sends
/// every call from a handful of addresses to a set of numbers, and most
/// INVITEs then need no store access at all.
#[derive(Default)]
struct RouteCache {
    version: u64,
    routes: HashMap<(IpAddr, Option<String>), Route>,
}

/// Entries kept at most; the cache starts over beyond.
const ROUTE_CACHE_MAX: usize = 65_536;

/// Everything the store said about a call it admits.
struct Admitted {
    account: Account,
    app: Application,
    trunk: Trunk,
    to: E164,
}

/// Results of work the shell started.
enum Done {
    /// `version`: the store's configuration version read before the lookup.
    Routed {
        key: TxKey,
        peer: Peer,
        request: Request,
        route: Route,
        version: Option<u64>,
    },
    Document {
        call: u64,
        input: interpreter::Input,
    },
    /// What a client leg answered (`client_legs`), for call `call`.
    Sip {
        call: u64,
        event: Event,
    },
    /// A client's call, looked up: its account, application and trunk.
    ClientRouted(Box<ClientCall>),
    /// A parked client leg's reconnect time is over.
    ReconnectExpired(String),
    /// A SIP client's INVITE, looked up.
    SipClientRouted(Box<sip_clients::SipClientCall>),
    /// A SIP client's registration ran out (unless `generation` was renewed).
    SipRegistrationExpired {
        connection: u64,
        generation: u64,
    },
}

/// Where a call's instructions and callbacks go.
struct AppHooks {
    voice: Webhook,
    fallback: Option<Webhook>,
    callback: StatusCallback,
}

impl AppHooks {
    /// An application's voice URL, fallback and status callback (Twilio
    /// calls an application's status callback when the call ends).
    fn of(app: &Application) -> AppHooks {
        AppHooks {
            voice: Webhook { url: app.voice_url.clone().unwrap_or_default(), method: app.voice_method.into() },
            fallback: app
                .voice_fallback_url
                .clone()
                .map(|url| Webhook { url, method: app.voice_fallback_method.into() }),
            callback: StatusCallback {
                url: app.status_callback.clone(),
                method: app.status_callback_method.into(),
                events: CallProgressEvents::default(),
            },
        }
    }
}

/// What [`Shell::start_call`] makes a call from.
struct NewCall {
    facts: CallFacts,
    /// A REST call's instructions run on an answered call.
    answered: bool,
    auth_token: String,
    app: AppHooks,
    /// Where its `<Number>`s go, and the credentials for the trunk's challenges.
    trunk: Option<Peer>,
    trunk_credentials: Option<crate::sip::digest::Credentials>,
    caller_id: Option<String>,
    /// REST `Twiml`: the first document, given instead of a fetch.
    inline: Option<String>,
    /// A SIP caller's dialog Call-ID and INVITE transaction.
    call_id: Option<String>,
    server_key: Option<TxKey>,
}

/// A trunk's outbound destination and digest credentials.
fn trunk_route(trunk: Option<&Trunk>) -> (Option<Peer>, Option<crate::sip::digest::Credentials>) {
    let Some(t) = trunk else { return (None, None) };
    let credentials = t
        .username
        .clone()
        .zip(t.password.clone())
        .map(|(username, password)| crate::sip::digest::Credentials { username, password });
    (trunk_peer(&t.outbound), credentials)
}

/// A call a client places, from its `invite` to the store's answer.
struct ClientCall {
    device: DeviceId,
    client: Arc<ClientInfo>,
    temp_id: String,
    sdp: String,
    params: String,
    route: Result<(Account, Application, Option<Trunk>), &'static str>,
}

/// The per-call facts the webhooks repeat, and where callbacks go.
struct CallInfo {
    facts: CallFacts,
    auth_token: String,
    /// The voice URL: the base of relative URLs in inline TwiML.
    voice_url: String,
    /// Every leg (the call itself too) by SID: its facts, where its
    /// progress events go, and its callbacks' next `SequenceNumber`.
    legs: HashMap<String, (CallFacts, StatusCallback, u32)>,
}

struct Entry {
    call: Call,
    /// Made when the call says `RunInstructions` (its offer was acceptable).
    context: Option<CallContext>,
    interpreter: Option<Interpreter>,
    info: CallInfo,
    /// The interpreter's `Wait` deadline.
    wait: Option<Instant>,
    /// The deadline this call has in the timer heap.
    armed: Option<Instant>,
    call_ids: Vec<String>,
    server_keys: Vec<TxKey>,
    client_keys: Vec<TxKey>,
    counted_end: bool,
    /// A REST redirect's inline TwiML, for the fetch it causes.
    inline: Option<String>,
}

/// Starts the shell on the current runtime; returns its counters and the
/// REST API's door to live calls.
pub fn spawn(
    cfg: ShellConfig,
    sip: SipHandle,
    events: mpsc::UnboundedReceiver<Event>,
    store: Arc<dyn Store>,
    dataplane: DataplaneHandle,
    webhooks: WebhookClient,
    clients: Option<(Arc<ClientHub>, mpsc::UnboundedReceiver<ClientEvent>)>,
) -> (Arc<CallStats>, Arc<super::control::ShellControl>, mpsc::UnboundedSender<SessionId>) {
    let stats = Arc::new(CallStats::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let (timeouts_tx, timeouts) = mpsc::unbounded_channel();
    let mut shell = Shell::new(cfg, sip, store.clone(), dataplane, webhooks, stats.clone());
    let client_events = clients.map(|(hub, events)| {
        hub.set_sip(shell.sip.clone());
        shell.clients = Some(ClientLegs::new(hub));
        events
    });
    tokio::spawn(shell.run(events, rx, timeouts, client_events));
    (stats, Arc::new(super::control::ShellControl { tx, store }), timeouts_tx)
}

pub struct Shell {
    cfg: ShellConfig,
    sip: SipHandle,
    store: Arc<dyn Store>,
    dataplane: DataplaneHandle,
    webhooks: WebhookClient,
    records: RecordWriter,
    stats: Arc<CallStats>,
    calls: HashMap<u64, Entry>,
    by_call_id: HashMap<String, u64>,
    by_server_tx: HashMap<TxKey, u64>,
    by_client_tx: HashMap<TxKey, u64>,
    by_sid: HashMap<String, u64>,
    by_session: HashMap<SessionId, u64>,
    route_cache: RouteCache,
    /// INVITEs being looked up: a CANCEL meanwhile is remembered here.
    pending: HashMap<TxKey, bool>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: Option<mpsc::UnboundedReceiver<Done>>,
    /// The same instant and wall-clock time, for records.
    epoch: (Instant, Timestamp),
    /// Client legs, when client signaling runs.
    clients: Option<ClientLegs>,
    /// Clients registered over SIP (WebSocket).
    sip_clients: sip_clients::SipClients,
    /// Client legs on other appliances, and ours for them.
    fleet: fleet::FleetCalls,
    /// Stopping: new calls are refused.
    draining: bool,
}

impl Shell {
    pub fn new(
        cfg: ShellConfig,
        sip: SipHandle,
        store: Arc<dyn Store>,
        dataplane: DataplaneHandle,
        webhooks: WebhookClient,
        stats: Arc<CallStats>,
    ) -> Shell {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let records = RecordWriter::start(store.clone());
        let fleet = fleet::FleetCalls::new(
            cfg.fleet_key.as_deref().map(FleetKey::new),
            &cfg.latency_ms,
            cfg.fleet_certs.clone(),
        );
        Shell {
            cfg,
            sip,
            store,
            dataplane,
            webhooks,
            records,
            stats,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            by_server_tx: HashMap::new(),
            by_client_tx: HashMap::new(),
            by_sid: HashMap::new(),
            by_session: HashMap::new(),
            pending: HashMap::new(),
            route_cache: RouteCache::default(),
            timers: BinaryHeap::new(),
            next_id: 1,
            done_tx,
            done_rx: Some(done_rx),
            epoch: (Instant::now(), Timestamp::now()),
            clients: None,
            sip_clients: Default::default(),
            fleet,
            draining: false,
        }
    }

    /// Runs until the SIP stack goes away.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut control: mpsc::UnboundedReceiver<Control>,
        mut media_timeouts: mpsc::UnboundedReceiver<SessionId>,
        client_events: Option<mpsc::UnboundedReceiver<ClientEvent>>,
    ) {
        let Some(mut done) = self.done_rx.take() else { return };
        let mut client_events = client_events;
        loop {
            let deadline = self.timers.peek().map(|Reverse((at, _))| *at);
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.on_sip(event),
                    None => return,
                },
                Some(d) = done.recv() => self.on_done(d),
                Some(c) = control.recv() => self.on_control(c),
                Some(event) = async {
                    match client_events.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => self.on_client(event),
                Some(session) = media_timeouts.recv() => {
                    if let Some(&id) = self.by_session.get(&session) {
                        self.feed(id, Input::MediaTimeout);
                    }
                }
                () = sleep => self.on_timers(),
            }
        }
    }

    // ------------------------------------------------------------ SIP

    fn on_sip(&mut self, event: Event) {
        let id = match &event {
            Event::Request { request, .. } => {
                let known = request.headers.call_id().ok().and_then(|c| self.by_call_id.get(c)).copied();
                if known.is_none() {
                    let Event::Request { key, peer, request } = event else { return };
                    if self.sip_device_request(&key, &request) || self.fleet_request(&key, peer, &request) {
                        return;
                    }
                    return self.new_request(key, peer, request);
                }
                known
            }
            Event::Ack { request, .. } => request.headers.call_id().ok().and_then(|c| self.by_call_id.get(c)).copied(),
            Event::Cancelled { invite } => {
                if let Some(cancelled) = self.pending.get_mut(invite) {
                    *cancelled = true;
                    return;
                }
                let invite = invite.clone();
                if self.fleet_cancelled(&invite) {
                    return;
                }
                self.by_server_tx.get(&invite).copied()
            }
            Event::AckTimeout { key } => {
                let known = self.by_server_tx.get(key).copied();
                let key = key.clone();
                if known.is_none() && self.fleet_ack_timeout(&key) {
                    return;
                }
                known
            }
            Event::Response { key, .. } | Event::Timeout { key } => {
                let known = self.by_client_tx.get(key).copied();
                if known.is_none() {
                    let response = match &event {
                        Event::Response { response, .. } => Some(response.clone()),
                        _ => None,
                    };
                    let key = key.clone();
                    self.sip_ring_response(&key, response);
                    return;
                }
                known
            }
        };
        if let Some(id) = id {
            self.feed(id, Input::Sip(event));
        }
    }

    /// A request outside every call we know.
    fn new_request(&mut self, key: TxKey, peer: Peer, request: Request) {
        let in_dialog = request.headers.to_addr().ok().and_then(|t| t.tag().map(|_| ())).is_some();
        match request.method {
            Method::Options => {
                let mut response = Response::for_request(&request, 200, "");
                response.set_to_tag(&random_tag());
                response.headers.push(Header::new(HeaderName::Allow, ALLOW));
                response.headers.push(Header::new(HeaderName::Accept, "application/sdp"));
                self.sip.respond(key, response);
            }
            Method::Register if peer.transport == Transport::Ws => self.sip_register(key, peer, request),
            Method::Invite if !in_dialog && peer.transport == Transport::Ws => self.sip_admit(key, peer, request),
            Method::Invite if !in_dialog => self.admit(key, peer, request),
            _ if in_dialog => self.refuse(key, &request, 481),
            _ => self.refuse(key, &request, 405),
        }
    }

    fn refuse(&self, key: TxKey, request: &Request, code: u16) {
        let mut response = Response::for_request(request, code, "");
        response.set_to_tag(&random_tag());
        if code == 405 {
            response.headers.push(Header::new(HeaderName::Allow, ALLOW));
        }
        self.sip.respond(key, response);
    }

    /// Looks the INVITE up (trunk by source address, number, application,
    /// account) off the task; [`Shell::on_routed`] takes it from there.
    fn admit(&mut self, key: TxKey, peer: Peer, request: Request) {
        if self.draining {
            self.stats.refused[DRAINING].fetch_add(1, Relaxed);
            return self.refuse(key, &request, 503);
        }
        if self.calls.len() >= self.cfg.max_calls {
            self.stats.refused[3].fetch_add(1, Relaxed);
            return self.refuse(key, &request, 503);
        }
        self.pending.insert(key.clone(), false);
        let number = dialed_user(&request);
        let version = self.store.config_version();
        if let Some(v) = version {
            if self.route_cache.version != v {
                self.route_cache = RouteCache { version: v, routes: HashMap::new() };
            }
            if let Some(route) = self.route_cache.routes.get(&(peer.addr.ip(), number.clone())) {
                let route = route.clone();
                return self.on_routed(key, peer, request, route);
            }
        }
        let store = self.store.clone();
        let done = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let route = lookup(&*store, peer.addr.ip(), number.as_deref());
            let _ = done.send(Done::Routed { key, peer, request, route, version });
        });
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Routed { key, peer, request, route, version } => {
                let cacheable = !matches!(route, Route::Refuse(_, 4));
                if let (Some(v), true) = (version, cacheable) {
                    if self.route_cache.version == v && self.store.config_version() == Some(v) {
                        if self.route_cache.routes.len() >= ROUTE_CACHE_MAX {
                            self.route_cache.routes.clear();
                        }
                        let number = dialed_user(&request);
                        self.route_cache.routes.insert((peer.addr.ip(), number), route.clone());
                    }
                }
                self.on_routed(key, peer, request, route)
            }
            Done::Document { call, input } => {
                if let Some(entry) = self.calls.get_mut(&call) {
                    if let Some(interpreter) = entry.interpreter.as_mut() {
                        interpreter.handle_input(Instant::now(), input);
                    }
                    self.pump(call);
                }
            }
            Done::Sip { call, event } if self.is_fleet_leg(call) => self.fleet_event(call, event),
            // An answer of the client legs to a request of a call or leg
            // that has ended meanwhile: still owed to whoever asked (the
            // layer drops it if nobody waits on that transaction).
            Done::Sip { call, event: Event::Response { key, response } } if !self.calls.contains_key(&call) => {
                if !client_legs::is_client_key(&key) {
                    self.sip.respond(key, response);
                }
            }
            Done::Sip { call, event } => self.feed(call, Input::Sip(event)),
            Done::ClientRouted(call) => self.on_client_routed(*call),
            Done::SipClientRouted(call) => self.on_sip_client_routed(*call),
            Done::SipRegistrationExpired { connection, generation } => {
                self.sip_registration_expired(connection, generation)
            }
            Done::ReconnectExpired(sid) => {
                let events = self.clients.as_mut().map(|c| c.reconnect_expired(&sid)).unwrap_or_default();
                self.client_events(events);
            }
        }
    }

    fn on_routed(&mut self, key: TxKey, peer: Peer, request: Request, route: Route) {
        let cancelled = self.pending.remove(&key).unwrap_or(false);
        let admitted = match route {
            Route::Refuse(code, why) => {
                self.stats.refused[why].fetch_add(1, Relaxed);
                return self.refuse(key, &request, code);
            }
            Route::Call(a) => a,
        };
        if cancelled {
            return self.refuse(key, &request, 487);
        }
        let Admitted { account, app, trunk, to } = &*admitted;
        let sid = CallSid::generate();
        let from = super::caller_user(&request);
        let from_addr = request.headers.from_addr().ok();
        let caller_name = from_addr.as_ref().and_then(|f| f.display_name()).map(|n| n.into_owned());
        let facts = CallFacts {
            call_sid: sid.as_str().to_owned(),
            account_sid: account.sid.as_str().to_owned(),
            from: from.clone(),
            to: to.as_str().to_owned(),
            direction: Direction::Inbound,
            forwarded_from: diversion(&request),
            caller_name,
            parent_call_sid: None,
            custom: Vec::new(),
        };
        let mut record =
            CallRecord::new(account.sid.clone(), from, to.as_str().to_owned(), Direction::Inbound, CallStatus::Ringing);
        record.sid = sid.clone();
        record.application_sid = Some(app.sid.clone());
        record.trunk = Some(trunk.name.clone());
        self.records.send(StoreWrite::Insert(Box::new(record)));
        let call_id = request.headers.call_id().map(str::to_owned).unwrap_or_default();
        let (trunk, trunk_credentials) = trunk_route(Some(trunk));
        let id = self.start_call(NewCall {
            facts,
            answered: false,
            auth_token: account.auth_token.clone(),
            app: AppHooks::of(app),
            trunk,
            trunk_credentials,
            caller_id: None,
            inline: None,
            call_id: Some(call_id),
            server_key: Some(key.clone()),
        });
        self.feed(id, Input::InboundInvite { key, peer, request });
    }

    // ------------------------------------------------------------ REST

    fn on_control(&mut self, control: Control) {
        match control {
            Control::Redirect { sid, url, method, twiml, reply } => {
                let Some(&id) = self.by_sid.get(sid.as_str()) else {
                    let _ = reply.send(false);
                    return;
                };
                let Some(entry) = self.calls.get_mut(&id) else { return };
                let live = !entry.call.is_ended();
                if let (true, Some(i)) = (live, entry.interpreter.as_mut()) {
                    // Inline TwiML: the fetch this asks for is answered with it.
                    let url = if twiml.is_some() { entry.info.voice_url.clone() } else { url };
                    entry.inline = twiml;
                    i.handle_input(Instant::now(), interpreter::Input::Redirected { url, method });
                }
                let _ = reply.send(live && entry.interpreter.is_some());
                self.pump(id);
            }
            Control::Create(call) => self.originate(*call),
            Control::Drain => {
                tracing::info!(calls = self.calls.len(), "draining: new calls refused");
                self.draining = true;
            }
            Control::HangUpAll => {
                let ids: Vec<u64> = self.calls.keys().copied().collect();
                tracing::info!(calls = ids.len(), "hanging up the calls left");
                for id in ids {
                    self.feed(id, Input::Hangup);
                }
                self.fleet_hang_up_all();
            }
            Control::Hangup { sid, reply } => {
                let Some(&id) = self.by_sid.get(sid.as_str()) else {
                    let _ = reply.send(false);
                    return;
                };
                let _ = reply.send(true);
                self.feed(id, Input::Hangup);
            }
        }
    }

    fn originate(&mut self, call: Originated) {
        let Originated {
            facts,
            auth_token,
            peer,
            uri,
            from_user,
            timeout,
            trunk,
            credentials,
            voice,
            fallback,
            inline,
            callback,
        } = call;
        let sid = facts.call_sid.clone();
        let id = self.start_call(NewCall {
            facts,
            answered: true,
            auth_token,
            app: AppHooks { voice, fallback, callback },
            trunk,
            trunk_credentials: credentials,
            caller_id: None,
            inline,
            call_id: None,
            server_key: None,
        });
        self.progress(id, &sid, params::CallStatus::Initiated, None);
        self.feed(id, Input::Originate { peer, uri, from: from_user, timeout });
    }

    /// Makes a call's entry (its core, instructions context, first leg)
    /// and indexes it; the caller feeds it its first input.
    fn start_call(&mut self, new: NewCall) -> u64 {
        let NewCall {
            facts,
            answered,
            auth_token,
            app,
            trunk,
            trunk_credentials,
            caller_id,
            inline,
            call_id,
            server_key,
        } = new;
        let sid = facts.call_sid.clone();
        let config = CallConfig {
            call_sid: sid.clone(),
            local_sip: self.cfg.local_sip.clone(),
            trunk,
            trunk_credentials,
            caller_id,
            wall_clock: self.epoch.1,
            epoch: self.epoch.0,
        };
        let voice_url = app.voice.url.clone();
        let context = CallContext {
            call: facts.clone(),
            voice: app.voice,
            fallback: app.fallback,
            answered,
            limits: self.cfg.limits,
        };
        let id = self.next_id;
        self.next_id += 1;
        let direction = facts.direction;
        let entry = Entry {
            call: Call::new(config),
            context: Some(context),
            interpreter: None,
            info: CallInfo {
                legs: HashMap::from([(sid.clone(), (facts.clone(), app.callback, 0))]),
                facts,
                auth_token,
                voice_url,
            },
            wait: None,
            armed: None,
            call_ids: call_id.iter().cloned().collect(),
            server_keys: server_key.iter().cloned().collect(),
            client_keys: Vec::new(),
            counted_end: false,
            inline,
        };
        self.calls.insert(id, entry);
        if let Some(call_id) = call_id {
            self.by_call_id.insert(call_id, id);
        }
        if let Some(key) = server_key {
            self.by_server_tx.insert(key, id);
        }
        self.by_sid.insert(sid, id);
        self.stats.active.fetch_add(1, Relaxed);
        self.stats.started[direction_index(direction)].fetch_add(1, Relaxed);
        id
    }

    // ------------------------------------------------------------ timers

    fn on_timers(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(entry) = self.calls.get_mut(&id) else { continue };
            if entry.armed != Some(at) {
                continue; // superseded
            }
            entry.armed = None;
            if entry.wait.is_some_and(|w| w <= now) {
                entry.wait = None;
                if let Some(i) = entry.interpreter.as_mut() {
                    i.handle_input(now, interpreter::Input::Timeout);
                }
            }
            if entry.call.next_timeout().is_some_and(|t| t <= now) {
                entry.call.handle_input(now, Input::Timeout);
            }
            self.pump(id);
        }
    }

    fn arm(&mut self, id: u64) {
        let Some(entry) = self.calls.get_mut(&id) else { return };
        let next = entry.call.next_timeout().into_iter().chain(entry.wait).min();
        if next != entry.armed {
            entry.armed = next;
            if let Some(at) = next {
                self.timers.push(Reverse((at, id)));
            }
        }
    }

    // ------------------------------------------------------------ the cores

    fn feed(&mut self, id: u64, input: Input) {
        let Some(entry) = self.calls.get_mut(&id) else { return };
        entry.call.handle_input(Instant::now(), input);
        self.pump(id);
    }

    /// Moves outputs between the call, its interpreter and the world until
    /// both are quiet.
    fn pump(&mut self, id: u64) {
        loop {
            let Some(entry) = self.calls.get_mut(&id) else { return };
            if let Some(out) = entry.call.poll_output() {
                self.on_call_output(id, out);
                continue;
            }
            let out = entry.interpreter.as_mut().and_then(Interpreter::poll_output);
            match out {
                Some(out) => self.on_interpreter_output(id, out),
                None => break,
            }
        }
        self.arm(id);
        self.maybe_forget(id);
    }

    fn on_interpreter_output(&mut self, id: u64, out: interpreter::Output) {
        let Some(entry) = self.calls.get_mut(&id) else { return };
        match out {
            interpreter::Output::Fetch(fetch) => {
                let token = entry.info.auth_token.clone();
                if let (FetchPurpose::Instructions, Some(doc)) = (fetch.purpose, entry.inline.take()) {
                    let input = interpreter::Input::Document { fetch: fetch.id, url: fetch.url, body: Ok(doc) };
                    let _ = self.done_tx.send(Done::Document { call: id, input });
                    return;
                }
                match fetch.purpose {
                    FetchPurpose::Notification => {
                        self.webhooks.notify(fetch, &token);
                    }
                    FetchPurpose::Instructions => {
                        let webhooks = self.webhooks.clone();
                        let done = self.done_tx.clone();
                        tokio::spawn(async move {
                            let input = webhooks.document(&fetch, &token).await;
                            let _ = done.send(Done::Document { call: id, input });
                        });
                    }
                }
            }
            interpreter::Output::Wait { until } => entry.wait = Some(until),
            interpreter::Output::Error(error) => {
                let ErrorRecord { code, message, url } = error;
                let message = match url {
                    Some(url) => format!("{message} ({url})"),
                    None => message,
                };
                tracing::info!(call = %entry.info.facts.call_sid, code = code.0, %message, "instructions error");
                let update =
                    CallUpdate { error_code: Some(code.0), error_message: Some(message), ..CallUpdate::default() };
                let sid = entry.info.facts.call_sid.clone();
                self.record(&sid, update);
            }
            interpreter::Output::Done => {}
            other => entry.call.handle_input(Instant::now(), Input::Interpreter(other)),
        }
    }

    fn on_call_output(&mut self, id: u64, out: Output) {
        let now = Instant::now();
        match out {
            Output::Respond { key, response } => match self.clients.as_mut() {
                Some(clients) if clients.owns_server_key(&key) => clients.respond(&key, response),
                _ => self.sip.respond(key, response),
            },
            Output::SendRequest { peer, mut request, tag } if peer.transport == Transport::Client => {
                if let Some(peer) = self.fleet_peer(id, &mut request) {
                    return self.send_request(id, peer, request, tag);
                }
                let key = TxKey { branch: format!("z9hG4bKcl{}", random_tag()), method: request.method.clone() };
                let Some(entry) = self.calls.get_mut(&id) else { return };
                entry.call.handle_input(now, Input::RequestSent { tag, key: key.clone() });
                let Ok(account) = crate::store::AccountSid::parse(&entry.info.facts.account_sid) else { return };
                let events = match self.clients.as_mut() {
                    Some(clients) => clients.request(id, key, request, &account),
                    None => Vec::new(),
                };
                self.client_events(events);
            }
            Output::SendRequest { peer, request, tag } => self.send_request(id, peer, request, tag),
            Output::SendAck2xx { peer, request } if peer.transport == Transport::Client => {
                if let Some(peer) = self.fleet_ack_peer(&request) {
                    self.sip.ack_2xx(peer, request);
                }
            }
            Output::SendAck2xx { peer, request } => self.sip.ack_2xx(peer, request),
            Output::SendCancel { invite, .. } if self.clients.as_ref().is_some_and(|c| c.owns_invite(&invite)) => {
                let cancel = TxKey { branch: invite.branch.clone(), method: Method::Cancel };
                let events = self.clients.as_mut().map(|c| c.cancel(&invite, cancel)).unwrap_or_default();
                self.client_events(events);
            }
            Output::SendCancel { invite, .. } => {
                // The layer builds the CANCEL from the INVITE it sent.
                self.sip.cancel(invite.clone());
                let cancel = TxKey { branch: invite.branch, method: Method::Cancel };
                self.by_client_tx.insert(cancel.clone(), id);
                if let Some(entry) = self.calls.get_mut(&id) {
                    entry.client_keys.push(cancel);
                }
            }
            Output::CreateMedia { legs, rtcp_mux } => {
                let input = match self.dataplane.create_session(SessionRequest { legs, rtcp_mux }) {
                    Ok(info) => {
                        self.by_session.insert(info.id, id);
                        Input::MediaReady { session: info.id, local: [info.legs[0].local, info.legs[1].local] }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "no media session for a call");
                        Input::MediaFailed
                    }
                };
                if let Some(entry) = self.calls.get_mut(&id) {
                    entry.call.handle_input(now, input);
                }
            }
            Output::UpdateMedia { session, side, settings } => {
                if let Err(e) = self.dataplane.update_session(session, side, settings) {
                    tracing::warn!(error = %e, "media session update failed");
                }
            }
            Output::PlayDigits { session, side, digits, pt } => {
                if let Err(e) = self.dataplane.send_digits(session, side, &digits, pt) {
                    tracing::info!(error = %e, "sendDigits not played");
                }
            }
            Output::DeleteMedia { session } => {
                self.by_session.remove(&session);
                let _ = self.dataplane.delete_session(session);
            }
            Output::RunInstructions => {
                // Its first output is the voice URL's fetch.
                let Some(entry) = self.calls.get_mut(&id) else { return };
                if let Some(context) = entry.context.take() {
                    entry.interpreter = Some(Interpreter::new(context));
                }
            }
            Output::ToInterpreter(input) => {
                let Some(entry) = self.calls.get_mut(&id) else { return };
                if let Some(i) = entry.interpreter.as_mut() {
                    i.handle_input(now, input);
                }
            }
            Output::ChildCall { call_sid, from, to, status_callback } => {
                self.child_call(id, call_sid, from, to, status_callback)
            }
            Output::ChildRinging { call_sid } => self.progress(id, &call_sid, params::CallStatus::Ringing, None),
            Output::Record { call_sid, update } => self.on_record(id, call_sid, update),
            Output::Ended => {
                let Some(entry) = self.calls.get_mut(&id) else { return };
                if let Some(i) = entry.interpreter.as_mut() {
                    i.handle_input(now, interpreter::Input::CallEnded);
                }
            }
        }
    }

    /// Sends a request of call `id` through the SIP stack; its responses
    /// and its dialog's requests come back to the call.
    fn send_request(&mut self, id: u64, peer: Peer, request: Request, tag: super::RequestTag) {
        let call_id = request.headers.call_id().ok().map(str::to_owned);
        let key = self.sip.request(peer, request);
        self.by_client_tx.insert(key.clone(), id);
        let Some(entry) = self.calls.get_mut(&id) else { return };
        entry.client_keys.push(key.clone());
        if let Some(call_id) = call_id {
            if !entry.call_ids.contains(&call_id) {
                entry.call_ids.push(call_id.clone());
                self.by_call_id.insert(call_id, id);
            }
        }
        entry.call.handle_input(Instant::now(), Input::RequestSent { tag, key });
    }

    fn child_call(&mut self, id: u64, sid: String, from: String, to: String, callback: StatusCallback) {
        let Some(entry) = self.calls.get_mut(&id) else { return };
        let parent = &entry.info.facts;
        let Ok(child_sid) = CallSid::parse(&sid) else { return };
        let Ok(account) = crate::store::AccountSid::parse(&parent.account_sid) else { return };
        let mut record =
            CallRecord::new(account, from.clone(), to.clone(), Direction::OutboundDial, CallStatus::Queued);
        record.sid = child_sid;
        record.parent_call_sid = CallSid::parse(&parent.call_sid).ok();
        let facts = CallFacts {
            call_sid: sid.clone(),
            account_sid: parent.account_sid.clone(),
            from,
            to,
            direction: Direction::OutboundDial,
            forwarded_from: None,
            caller_name: None,
            parent_call_sid: Some(parent.call_sid.clone()),
            custom: Vec::new(),
        };
        entry.info.legs.insert(sid.clone(), (facts, callback, 0));
        self.stats.started[direction_index(Direction::OutboundDial)].fetch_add(1, Relaxed);
        self.records.send(StoreWrite::Insert(Box::new(record)));
        self.progress(id, &sid, params::CallStatus::Initiated, None);
    }

    /// A progress event of leg `sid` to its status callback, if it asked
    /// for that event.
    fn progress(&mut self, id: u64, sid: &str, status: params::CallStatus, duration_s: Option<u64>) {
        let Some(entry) = self.calls.get_mut(&id) else { return };
        let token = entry.info.auth_token.clone();
        let Some((facts, callback, sequence)) = entry.info.legs.get_mut(sid) else { return };
        let Some(url) = callback.url.clone() else { return };
        let wanted = match status {
            params::CallStatus::Initiated => callback.events.initiated,
            params::CallStatus::Ringing => callback.events.ringing,
            params::CallStatus::InProgress => callback.events.answered,
            _ => callback.events.completed,
        };
        if !wanted {
            return;
        }
        let event = ProgressEvent { status, duration_s, at: SystemTime::now(), sequence_number: *sequence };
        *sequence += 1;
        let fetch = Fetch {
            id: FetchId(0),
            url,
            method: callback.method,
            params: params::status_callback(facts, &event),
            purpose: FetchPurpose::Notification,
        };
        self.webhooks.notify(fetch, &token);
    }

    fn on_record(&mut self, id: u64, sid: String, update: CallUpdate) {
        let Some(entry) = self.calls.get_mut(&id) else { return };
        let is_parent = sid == entry.info.facts.call_sid;
        if let Some(status) = update.status {
            let progress = match status {
                CallStatus::InProgress => Some(params::CallStatus::InProgress),
                s if s.is_final() => Some(to_params_status(s)),
                _ => None,
            };
            if is_parent && status.is_final() && !std::mem::replace(&mut entry.counted_end, true) {
                if let Some(i) = END_STATUSES.iter().position(|s| *s == status) {
                    self.stats.ended[i].fetch_add(1, Relaxed);
                }
            }
            if let Some(progress) = progress {
                let duration = status.is_final().then(|| u64::from(update.duration_s.unwrap_or(0)));
                self.progress(id, &sid, progress, duration);
            }
        }
        self.record(&sid, update);
    }

    fn record(&self, sid: &str, update: CallUpdate) {
        if let Ok(sid) = CallSid::parse(sid) {
            self.records.send(StoreWrite::Update(sid, Box::new(update)));
        }
    }

    /// Drops a call that is over: ended, its instructions done, no fork
    /// still being cancelled.
    fn maybe_forget(&mut self, id: u64) {
        let Some(entry) = self.calls.get(&id) else { return };
        let interpreter_done = entry.interpreter.as_ref().is_none_or(Interpreter::is_done);
        if !(entry.call.is_ended() && interpreter_done && !entry.call.has_open_forks()) {
            return;
        }
        let Some(entry) = self.calls.remove(&id) else { return };
        for c in &entry.call_ids {
            self.by_call_id.remove(c);
        }
        self.fleet_forget_call_ids(&entry.call_ids);
        for k in &entry.server_keys {
            self.by_server_tx.remove(k);
        }
        for k in &entry.client_keys {
            self.by_client_tx.remove(k);
        }
        self.by_sid.remove(&entry.info.facts.call_sid);
        self.stats.active.fetch_sub(1, Relaxed);
        if let Some(clients) = self.clients.as_mut() {
            clients.call_ended(id);
        }
    }

    // ------------------------------------------------------------ clients

    /// Events of client legs go back to their calls through the done
    /// channel: never into a call while it is producing outputs.
    fn client_events(&mut self, events: client_legs::Events) {
        for (call, event) in events {
            let _ = self.done_tx.send(Done::Sip { call, event });
        }
        self.flush_sip_out();
    }

    fn on_client(&mut self, event: ClientEvent) {
        if let ClientEvent::SipClosed { connection } = event {
            return self.sip_unregister(connection);
        }
        let Some(clients) = self.clients.as_mut() else { return };
        let events = match event {
            ClientEvent::SipClosed { .. } => Vec::new(),
            ClientEvent::Gone { device } => {
                let (events, parked) = clients.gone(device);
                for sid in parked {
                    let done = self.done_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(client_legs::RECONNECT_WITHIN).await;
                        let _ = done.send(Done::ReconnectExpired(sid));
                    });
                }
                events
            }
            ClientEvent::Message { device, client, message } => match message {
                ClientMessage::Invite { callsid, reconnect: Some(token), .. } => {
                    if !clients.reconnect(device, &client.account, &client.identity, &token) {
                        let error = Some((31005, "no call to reconnect to".to_owned()));
                        clients.hub.send(device, ServerMessage::Hangup { callsid, error });
                    }
                    Vec::new()
                }
                ClientMessage::Invite { callsid, sdp, params, reconnect: None } => {
                    self.admit_client(device, client, callsid, sdp, params);
                    Vec::new()
                }
                ClientMessage::Answer { callsid, sdp } => clients.answer(device, &callsid, &sdp),
                ClientMessage::Reject { callsid } => clients.reject(device, &callsid),
                ClientMessage::Hangup { callsid } => clients.hangup(device, &callsid),
                ClientMessage::Reinvite { callsid, sdp } => clients.reinvite(device, &callsid, &sdp),
                // The SDK's fallback when the browser cannot put DTMF in the
                // media: played as RFC 4733 events toward the other party.
                ClientMessage::Dtmf { callsid, digits } => {
                    let target = clients.dtmf_route(device, &callsid).and_then(|(call, toward_caller)| {
                        self.calls.get(&call).and_then(|e| e.call.dtmf_toward(toward_caller))
                    });
                    match target {
                        Some((session, side, pt)) => {
                            if let Err(e) = self.dataplane.send_digits(session, side, &digits, pt) {
                                tracing::info!(%callsid, error = %e, "client DTMF not played");
                            }
                        }
                        None => {
                            let message = "no answered call with telephone-event to play DTMF into".to_owned();
                            let error = ServerMessage::Error { code: 31005, message, callsid: Some(callsid) };
                            clients.hub.send(device, error);
                        }
                    }
                    Vec::new()
                }
                // Call.sendMessage: acknowledged for a call of the device
                // (the SDK's `messageSent`); where it goes next is the
                // customer's message subscription, not served in this release.
                ClientMessage::Message { callsid, voiceeventsid: Some(voiceeventsid) } => {
                    let frame = if clients.in_call(device, &callsid) {
                        ServerMessage::Ack { callsid, voiceeventsid }
                    } else {
                        ServerMessage::Error { code: 31005, message: "no such call".into(), callsid: Some(callsid) }
                    };
                    clients.hub.send(device, frame);
                    Vec::new()
                }
                other => {
                    // DTMF belongs to the media services (RFC 4733 toward the other leg, not yet).
                    tracing::debug!(kind = other.kind(), "client message not acted on");
                    Vec::new()
                }
            },
        };
        self.client_events(events);
    }

    /// A client places a call: look its application and trunk up off the task.
    fn admit_client(
        &mut self,
        device: DeviceId,
        client: Arc<ClientInfo>,
        temp_id: String,
        sdp: String,
        params: String,
    ) {
        if self.calls.len() >= self.cfg.max_calls || self.draining {
            let (reason, why) = match self.draining {
                true => (DRAINING, "the appliance is stopping"),
                false => (3, "the appliance is at its call capacity"),
            };
            self.stats.refused[reason].fetch_add(1, Relaxed);
            if let Some(c) = self.clients.as_ref() {
                let error = Some((31005, why.to_owned()));
                c.hub.send(device, ServerMessage::Hangup { callsid: temp_id, error });
            }
            return;
        }
        let store = self.store.clone();
        let done = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let route = client_lookup(&*store, &client);
            let call = ClientCall { device, client, temp_id, sdp, params, route };
            let _ = done.send(Done::ClientRouted(Box::new(call)));
        });
    }

    fn on_client_routed(&mut self, call: ClientCall) {
        let ClientCall { device, client, temp_id, sdp, params, route } = call;
        let Some(clients) = self.clients.as_mut() else { return };
        let (account, app, trunk) = match route {
            Ok(found) => found,
            Err(why) => {
                tracing::info!(identity = %client.identity, why, "client call refused");
                self.stats.refused[2].fetch_add(1, Relaxed);
                let error = Some((31002, why.to_owned()));
                clients.hub.send(device, ServerMessage::Hangup { callsid: temp_id, error });
                return;
            }
        };
        if !clients.hub.connected(device) {
            return; // gone while we looked
        }
        let custom_params = client_protocol::decode_params(&params);
        let to = custom_params.iter().find(|(k, _)| k == "To").map(|(_, v)| v.clone()).unwrap_or_default();
        let (id, sid) = self.start_client_call(&client, &account, &app, trunk.as_ref(), &to, custom_params, None);
        let Some(clients) = self.clients.as_mut() else { return };
        let (key, peer, request) = clients.place(id, device, &account.sid, &client.identity, &temp_id, &sid, &sdp, &to);
        self.feed(id, Input::InboundInvite { key, peer, request });
    }

    /// Starts a call placed by `client` (over the Voice SDK or SIP) to
    /// `to`: its facts for the voice request (the token's outgoing params,
    /// the call's custom parameters, `ApplicationSid`, `ToPresence`), its
    /// record and its entry. A SIP caller's dialog is indexed with
    /// `sip_caller` (Call-ID, INVITE transaction). Returns the shell's id
    /// and the CallSid.
    #[allow(clippy::too_many_arguments)]
    fn start_client_call(
        &mut self,
        client: &ClientInfo,
        account: &Account,
        app: &Application,
        trunk: Option<&Trunk>,
        to: &str,
        custom_params: Vec<(String, String)>,
        sip_caller: Option<(String, TxKey)>,
    ) -> (u64, String) {
        let from = format!("client:{}", client.identity);
        let sid = CallSid::generate();
        let mut custom = Vec::new();
        if let Some(grant) = &client.outgoing {
            for (k, v) in &grant.params {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                custom.push((k.clone(), v));
            }
        }
        custom.extend(custom_params);
        // Twilio's own parameters win over custom ones of the same name.
        custom.retain(|(k, _)| !STANDARD_PARAMS.contains(&k.as_str()));
        custom.insert(0, ("ApplicationSid".to_owned(), app.sid.as_str().to_owned()));
        // Presence is a resource for instructions: whether the client called is there.
        let callee = to.strip_prefix("client:").unwrap_or(to);
        if let (false, Some(clients)) =
            (callee.is_empty() || callee.starts_with('+') || callee.starts_with("sip:"), self.clients.as_ref())
        {
            let presence = clients.hub.routes.presence(&account.sid, callee);
            custom.push(("ToPresence".to_owned(), presence.status.as_str().to_owned()));
        }
        let facts = CallFacts {
            call_sid: sid.as_str().to_owned(),
            account_sid: account.sid.as_str().to_owned(),
            from: from.clone(),
            to: to.to_owned(),
            direction: Direction::Inbound,
            forwarded_from: None,
            caller_name: None,
            parent_call_sid: None,
            custom,
        };
        let mut record =
            CallRecord::new(account.sid.clone(), from.clone(), to.to_owned(), Direction::Inbound, CallStatus::Ringing);
        record.sid = sid.clone();
        record.application_sid = Some(app.sid.clone());
        self.records.send(StoreWrite::Insert(Box::new(record)));
        let (trunk, trunk_credentials) = trunk_route(trunk);
        let (call_id, server_key) = sip_caller.unzip();
        let id = self.start_call(NewCall {
            facts,
            answered: false,
            auth_token: account.auth_token.clone(),
            app: AppHooks::of(app),
            trunk,
            trunk_credentials,
            caller_id: Some(from),
            inline: None,
            call_id,
            server_key,
        });
        (id, sid.as_str().to_owned())
    }
}

/// The voice request's own parameters, which custom ones may not replace.
const STANDARD_PARAMS: [&str; 11] = [
    "CallSid",
    "AccountSid",
    "From",
    "To",
    "CallStatus",
    "ApiVersion",
    "Direction",
    "Caller",
    "Called",
    "ApplicationSid",
    "ToPresence",
];

/// The store's part of a client's call: its account, the application of
/// its token's outgoing grant (with a voice URL), and the account's first
/// usable trunk for `<Dial><Number>`.
fn client_lookup(
    store: &dyn Store,
    client: &ClientInfo,
) -> Result<(Account, Application, Option<Trunk>), &'static str> {
    let grant = client.outgoing.as_ref().ok_or("the token has no outgoing grant")?;
    let account = store.account(&client.account).map_err(|_| "the account cannot be read")?;
    let app = store
        .application(&client.account, &grant.application_sid)
        .map_err(|_| "the outgoing grant's application does not exist")?;
    if app.voice_url.is_none() {
        return Err("the application has no voice URL");
    }
    let trunk =
        store.trunks(&client.account).ok().and_then(|t| t.into_iter().find(|t| trunk_peer(&t.outbound).is_some()));
    Ok((account, app, trunk))
}

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE";

/// The store's part of admitting an INVITE.
fn lookup(store: &dyn Store, source: IpAddr, number: Option<&str>) -> Route {
    let trunk = match store.trunk_for_source(source) {
        Ok(Some(t)) => t,
        Ok(None) => return Route::Refuse(403, 0),
        Err(e) => {
            tracing::error!(error = %e, "trunk lookup failed");
            return Route::Refuse(500, 4);
        }
    };
    let Some(to) = number.and_then(|n| E164::parse(n).ok()) else { return Route::Refuse(404, 1) };
    let (number, app) = match store.route_number(&to) {
        Ok(Some(found)) => found,
        Ok(None) => return Route::Refuse(404, 1),
        Err(e) => {
            tracing::error!(error = %e, "number lookup failed");
            return Route::Refuse(500, 4);
        }
    };
    // A number of another account than the trunk's is not this trunk's to call.
    if number.account_sid != trunk.account_sid {
        return Route::Refuse(404, 1);
    }
    let Some(app) = app.filter(|a| a.voice_url.is_some()) else { return Route::Refuse(480, 2) };
    match store.account(&number.account_sid) {
        Ok(account) => Route::Call(Arc::new(Admitted { account, app, trunk, to })),
        Err(e) => {
            tracing::error!(error = %e, "account lookup failed");
            Route::Refuse(500, 4)
        }
    }
}

/// The trunk's outbound destination (`sip:host:port;transport=...`, host an
/// IP address) as a peer; `None` when it is not usable.
pub(crate) fn trunk_peer(outbound: &str) -> Option<Peer> {
    super::sip_target(outbound).map(|(_, peer)| peer)
}

/// The user part of the Request-URI: the number dialed.
fn dialed_user(request: &Request) -> Option<String> {
    request.uri().ok().and_then(|u| u.as_sip().and_then(|s| s.user.clone()))
}

/// The number that forwarded the call, from a `Diversion` header.
fn diversion(request: &Request) -> Option<String> {
    let text = request.headers.get_named("Diversion")?.value_str()?;
    let start = text.find("sip:").map(|i| i + 4).or_else(|| text.find("tel:").map(|i| i + 4))?;
    let rest = &text[start..];
    let end = rest.find(['@', '>', ';']).unwrap_or(rest.len());
    Some(rest[..end].to_owned()).filter(|s| !s.is_empty())
}

fn to_params_status(s: CallStatus) -> params::CallStatus {
    match s {
        CallStatus::Queued => params::CallStatus::Queued,
        CallStatus::Ringing => params::CallStatus::Ringing,
        CallStatus::InProgress => params::CallStatus::InProgress,
        CallStatus::Completed => params::CallStatus::Completed,
        CallStatus::Busy => params::CallStatus::Busy,
        CallStatus::NoAnswer => params::CallStatus::NoAnswer,
        CallStatus::Failed => params::CallStatus::Failed,
        CallStatus::Canceled => params::CallStatus::Canceled,
    }
}

fn random_tag() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    format!("bh{:x}", u64::from_le_bytes(b))
}
