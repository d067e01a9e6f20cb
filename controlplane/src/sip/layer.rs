//! The transaction layer (RFC 3261 17.1.3, 17.2.3), without I/O: matches
//! each received message to its transaction, runs the state machines of
//! [`transaction`](super::transaction) on their timers, and tells the
//! transport what to send and the transaction user (the call layer) what
//! happened.
//!
//! ```text
//!  transport ──received(peer, msg)──▶ Layer ──Event──▶ transaction user
//!  transport ◀──Send(peer, bytes)──── Layer ◀─send_request / respond──┘
//! ```
//!
//! It also does what RFC 3261 puts next to the transactions: a CANCEL is
//! answered 200 and reported against its INVITE; a 2xx to an INVITE is
//! retransmitted until its ACK arrives (13.3.1.4), and the ACK is handed to
//! the transaction user; our ACK to a 2xx is repeated when the 2xx is.

use super::message::{Message, Method, Request, Response};
use super::transaction::{Action, ClientTransaction, ServerTransaction, Timers};
use super::{Header, HeaderName};
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Transports the layer speaks over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    /// SIP over a secure WebSocket (RFC 7118) from a browser or app client
    /// (SIP.js, JsSIP): one SIP message per WebSocket message.
    Ws,
    /// A Voice SDK client, reached over its signaling WebSocket
    /// (`call::client_legs`): never sent to by the SIP layer.
    Client,
}

impl Transport {
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws | Transport::Client => "WSS",
        }
    }
}

/// Where a message came from or goes to. For TCP and TLS, `connection`
/// names the connection it arrived on (responses go back on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub connection: Option<u64>,
}

/// Identifies a transaction to its user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    pub branch: String,
    /// INVITE, or the method of a non-INVITE transaction (ACK is never one).
    pub method: Method,
}

/// What the layer tells its user.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new request (not ACK, not a CANCEL); answer it with [`Layer::respond`].
    Request { key: TxKey, peer: Peer, request: Request },
    /// The ACK to a 2xx we sent for an INVITE.
    Ack { peer: Peer, request: Request },
    /// The INVITE `invite` was cancelled (the CANCEL was answered 200):
    /// the user answers the INVITE 487 unless it already answered.
    Cancelled { invite: TxKey },
    /// A response to our request `key`.
    Response { key: TxKey, response: Response },
    /// Our request `key` got no final response in time (treat as 408).
    Timeout { key: TxKey },
    /// No ACK came for the 2xx to INVITE `key` (RFC 3261 13.3.1.4): the
    /// dialog must be ended with a BYE.
    AckTimeout { key: TxKey },
}

/// What the layer asks of the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub peer: Peer,
    pub bytes: Bytes,
}

struct ServerEntry {
    tx: ServerTransaction,
    peer: Peer,
    request: Request,
}

struct ClientEntry {
    tx: ClientTransaction,
    peer: Peer,
    request: Request,
}

/// A 2xx to an INVITE being retransmitted until its ACK (server side).
struct Accepted {
    key: TxKey,
    peer: Peer,
    bytes: Bytes,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// Our ACK to a 2xx, kept to repeat it when the 2xx is retransmitted.
struct Acked {
    peer: Peer,
    bytes: Bytes,
    forget: Instant,
}

pub struct Layer {
    timers: Timers,
    servers: HashMap<TxKey, ServerEntry>,
    clients: HashMap<TxKey, ClientEntry>,
    /// Keyed by (Call-ID, CSeq number) of the INVITE.
    accepted: HashMap<(Bytes, u32), Accepted>,
    acked: HashMap<(Bytes, u32), Acked>,
    events: std::collections::VecDeque<Event>,
    sends: std::collections::VecDeque<Send>,
    next_branch: u64,
    branch_salt: u64,
    /// Every deadline ever armed, earliest first, naming what it is for in
    /// `timer_refs`. An entry whose owner is gone or re-armed later is
    /// stale and skipped when it comes up, so arming is O(log n) and
    /// nothing is scanned: with thousands of transactions, scanning them
    /// all for the next deadline on every message was most of the work.
    timer_heap: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_refs: HashMap<u64, TimerRef>,
    next_timer: u64,
}

/// What a deadline in the timer heap belongs to.
#[derive(Debug, Clone)]
enum TimerRef {
    Client(TxKey),
    Server(TxKey),
    Accepted((Bytes, u32)),
    Acked((Bytes, u32)),
}

fn dialog_key(headers: &super::Headers) -> Option<(Bytes, u32)> {
    let call_id = headers.get(HeaderName::CallId)?.value.clone();
    let cseq = headers.cseq().ok()?.seq;
    Some((call_id, cseq))
}

/// The transaction a request belongs to, as RFC 3261 17.2.3 matches it:
/// branch and method (ACK and CANCEL matched by the caller).
fn request_key(request: &Request, peer: &Peer) -> Option<TxKey> {
    let via = request.headers.top_via().ok()?;
    // sent-by is part of the match (17.2.3), and so is where the request
    // really came from: a retransmission comes from the same place, and a
    // second host that reuses a branch and sent-by cannot reach, or steal
    // the responses of, the first one's transaction.
    let sent_by = format!("{}:{}@{:?}/{}", via.host, via.port.unwrap_or(0), peer.transport, peer.addr);
    let method = if request.method == Method::Ack { Method::Invite } else { request.method.clone() };
    let branch = match via.branch().filter(|_| via.has_rfc3261_branch()) {
        Some(branch) => format!("{branch}|{sent_by}"),
        // An RFC 2543 client has no usable branch: match on what 17.2.3
        // falls back to (Call-ID, CSeq number, From tag, top Via).
        None => {
            let call_id = request.headers.call_id().ok()?;
            let cseq = request.headers.cseq().ok()?.seq;
            let from_tag =
                request.headers.from_addr().ok().and_then(|f| f.tag().map(str::to_string)).unwrap_or_default();
            format!("2543|{call_id}|{cseq}|{from_tag}|{sent_by}")
        }
    };
    Some(TxKey { branch, method })
}

fn response_key(response: &Response) -> Option<TxKey> {
    let via = response.headers.top_via().ok()?;
    let branch = via.branch()?.to_string();
    let method = response.headers.cseq().ok()?.method;
    Some(TxKey { branch, method })
}

impl Layer {
    pub fn new(timers: Timers, branch_salt: u64) -> Layer {
        Layer {
            timers,
            servers: HashMap::new(),
            clients: HashMap::new(),
            accepted: HashMap::new(),
            acked: HashMap::new(),
            events: Default::default(),
            sends: Default::default(),
            next_branch: 0,
            branch_salt,
            timer_heap: BinaryHeap::new(),
            timer_refs: HashMap::new(),
            next_timer: 0,
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_send(&mut self) -> Option<Send> {
        self.sends.pop_front()
    }

    /// Transactions alive (for metrics and tests).
    pub fn transactions(&self) -> (usize, usize) {
        (self.clients.len(), self.servers.len())
    }

    /// A new branch for a request we send: unique per layer and salted so
    /// two appliances do not collide.
    pub fn new_branch(&mut self) -> String {
        self.next_branch += 1;
        format!("z9hG4bK{:x}{:x}", self.branch_salt, self.next_branch)
    }

    /// A message arrived from `peer`, already validated.
    pub fn received(&mut self, now: Instant, peer: Peer, message: Message) {
        match message {
            Message::Request(r) => self.received_request(now, peer, r),
            Message::Response(r) => self.received_response(now, r),
        }
    }

    fn received_request(&mut self, now: Instant, peer: Peer, request: Request) {
        let Some(key) = request_key(&request, &peer) else { return };
        match request.method {
            Method::Ack => {
                if let Some(entry) = self.servers.get_mut(&key) {
                    // ACK to our 300-699: absorbed by the transaction.
                    entry.tx.on_ack(now);
                    self.drain_server(&key);
                    return;
                }
                if let Some(d) = dialog_key(&request.headers) {
                    self.accepted.remove(&d);
                }
                self.events.push_back(Event::Ack { peer, request });
            }
            Method::Cancel => {
                let invite = TxKey { branch: key.branch.clone(), method: Method::Invite };
                let status = if self.servers.contains_key(&invite) { 200 } else { 481 };
                // CANCEL is a transaction of its own: answer it statelessly
                // but remember it, so a retransmitted CANCEL gets the same.
                self.new_server(now, key.clone(), peer, request.clone());
                let mut response = Response::for_request(&request, status, "");
                response.set_to_tag("bh-cancel");
                self.respond(now, &key, response);
                if status == 200 {
                    self.events.push_back(Event::Cancelled { invite });
                }
            }
            _ => {
                if let Some(entry) = self.servers.get_mut(&key) {
                    entry.tx.on_retransmitted_request();
                    self.drain_server(&key);
                    return;
                }
                // An INVITE retransmitted after we answered 2xx: repeat the 2xx.
                if request.method == Method::Invite {
                    if let Some(a) = dialog_key(&request.headers).and_then(|d| self.accepted.get(&d)) {
                        self.sends.push_back(Send { peer: a.peer, bytes: a.bytes.clone() });
                        return;
                    }
                }
                self.new_server(now, key.clone(), peer, request.clone());
                self.events.push_back(Event::Request { key, peer, request });
            }
        }
    }

    fn new_server(&mut self, _now: Instant, key: TxKey, peer: Peer, request: Request) {
        let invite = request.method == Method::Invite;
        let tx = ServerTransaction::new(invite, peer.transport.is_reliable(), self.timers);
        if let Some(at) = tx.next_timeout() {
            self.arm(at, TimerRef::Server(key.clone()));
        }
        self.servers.insert(key, ServerEntry { tx, peer, request });
    }

    fn received_response(&mut self, now: Instant, response: Response) {
        let Some(key) = response_key(&response) else { return };
        if let Some(entry) = self.clients.get_mut(&key) {
            entry.tx.on_response(now, response.code);
            self.drain_client(&key, Some(&response));
            return;
        }
        // A retransmitted 2xx to an INVITE whose transaction is over: our
        // ACK again (RFC 3261 13.2.2.4).
        if key.method == Method::Invite && (200..300).contains(&response.code) {
            if let Some(a) = dialog_key(&response.headers).and_then(|d| self.acked.get(&d)) {
                self.sends.push_back(Send { peer: a.peer, bytes: a.bytes.clone() });
            }
        }
    }

    /// Answers the request of server transaction `key`.
    pub fn respond(&mut self, now: Instant, key: &TxKey, response: Response) {
        let Some(entry) = self.servers.get_mut(key) else { return };
        let bytes = Bytes::from(response.to_bytes());
        let invite_2xx = key.method == Method::Invite && (200..300).contains(&response.code);
        entry.tx.respond(now, response.code, bytes.clone());
        if invite_2xx {
            let peer = entry.peer;
            if let Some(d) = dialog_key(&entry.request.headers) {
                let reliable = peer.transport.is_reliable();
                let first = if reliable { now + self.timers.t1 * 64 } else { now + self.timers.t1 };
                self.arm(first, TimerRef::Accepted(d.clone()));
                self.accepted.insert(
                    d,
                    Accepted {
                        key: key.clone(),
                        peer,
                        bytes,
                        // Over TCP the 2xx is not retransmitted, but the ACK is still awaited.
                        next: first,
                        interval: self.timers.t1,
                        give_up: now + self.timers.t1 * 64,
                    },
                );
            }
        }
        self.drain_server(key);
    }

    /// Sends `request` to `peer` in a new client transaction. The layer adds
    /// the top Via (with a new branch and `rport`) from `via_sent_by`.
    pub fn send_request(&mut self, now: Instant, peer: Peer, via_sent_by: &str, request: Request) -> TxKey {
        let branch = self.new_branch();
        self.send_request_on_branch(now, peer, via_sent_by, branch, request)
    }

    /// [`send_request`](Self::send_request) with a branch the caller chose
    /// (unique, `z9hG4bK`-prefixed), so that it knows the transaction's key
    /// before the request leaves: a response can then never outrun the key.
    pub fn send_request_on_branch(
        &mut self,
        now: Instant,
        peer: Peer,
        via_sent_by: &str,
        branch: String,
        mut request: Request,
    ) -> TxKey {
        let via = format!("SIP/2.0/{} {via_sent_by};branch={branch};rport", peer.transport.via_name());
        request.headers.insert(0, Header::new(HeaderName::Via, via));
        let key = TxKey { branch, method: request.method.clone() };
        let bytes = Bytes::from(request.to_bytes());
        let invite = request.method == Method::Invite;
        let tx = ClientTransaction::new(now, invite, bytes, peer.transport.is_reliable(), self.timers);
        self.clients.insert(key.clone(), ClientEntry { tx, peer, request });
        self.drain_client(&key, None);
        key
    }

    /// Sends an ACK for a 2xx (a request outside any transaction) and keeps
    /// it to repeat when the 2xx is retransmitted.
    pub fn send_ack_2xx(&mut self, now: Instant, peer: Peer, via_sent_by: &str, mut ack: Request) {
        let branch = self.new_branch();
        let via = format!("SIP/2.0/{} {via_sent_by};branch={branch};rport", peer.transport.via_name());
        ack.headers.insert(0, Header::new(HeaderName::Via, via));
        let bytes = Bytes::from(ack.to_bytes());
        if let Some(d) = dialog_key(&ack.headers) {
            let forget = now + self.timers.t1 * 64;
            self.arm(forget, TimerRef::Acked(d.clone()));
            self.acked.insert(d, Acked { peer, bytes: bytes.clone(), forget });
        }
        self.sends.push_back(Send { peer, bytes });
    }

    /// Cancels our INVITE `invite` (RFC 3261 9.1): a CANCEL with the INVITE's
    /// Request-URI, top Via (same branch), From, To, Call-ID, CSeq number
    /// and Route, sent as its own non-INVITE client transaction to the same
    /// peer. `None` when the INVITE's transaction is over (nothing to cancel).
    pub fn send_cancel(&mut self, now: Instant, invite: &TxKey) -> Option<TxKey> {
        let entry = self.clients.get(invite).filter(|_| invite.method == Method::Invite)?;
        let (peer, request) = (entry.peer, &entry.request);
        let mut cancel = request.clone();
        cancel.method = Method::Cancel;
        cancel.body = Bytes::new();
        let mut headers = super::Headers::new();
        let mut top_via = true;
        for h in request.headers.iter() {
            let keep = match h.id() {
                HeaderName::Via => std::mem::replace(&mut top_via, false),
                HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::Route
                | HeaderName::MaxForwards => true,
                _ => false,
            };
            if keep {
                headers.push(h.clone());
            }
        }
        let seq = request.headers.cseq().ok()?.seq;
        headers.push(Header::new(HeaderName::CSeq, format!("{seq} CANCEL")));
        cancel.headers = headers;
        let key = TxKey { branch: invite.branch.clone(), method: Method::Cancel };
        let tx = ClientTransaction::new(
            now,
            false,
            Bytes::from(cancel.to_bytes()),
            peer.transport.is_reliable(),
            self.timers,
        );
        self.clients.insert(key.clone(), ClientEntry { tx, peer, request: cancel });
        self.drain_client(&key, None);
        Some(key)
    }

    /// The request we sent in client transaction `key` (to build its ACK or CANCEL).
    pub fn client_request(&self, key: &TxKey) -> Option<(&Request, Peer)> {
        self.clients.get(key).map(|e| (&e.request, e.peer))
    }

    /// The request of server transaction `key`.
    pub fn server_request(&self, key: &TxKey) -> Option<(&Request, Peer)> {
        self.servers.get(key).map(|e| (&e.request, e.peer))
    }

    fn arm(&mut self, at: Instant, what: TimerRef) {
        self.next_timer += 1;
        self.timer_heap.push(Reverse((at, self.next_timer)));
        self.timer_refs.insert(self.next_timer, what);
    }

    fn drain_server(&mut self, key: &TxKey) {
        let Some(entry) = self.servers.get_mut(key) else { return };
        let peer = entry.peer;
        let mut done = false;
        while let Some(action) = entry.tx.poll_action() {
            match action {
                Action::Transmit(bytes) => self.sends.push_back(Send { peer, bytes }),
                Action::Terminated => done = true,
                // A server transaction that timed out waiting for an ACK to
                // its error response just ends.
                Action::Timeout | Action::Deliver(_) | Action::NeedAck(_) => {}
            }
        }
        if done {
            self.servers.remove(key);
        } else if let Some(at) = self.servers.get_mut(key).and_then(|e| e.tx.next_timeout()) {
            self.arm(at, TimerRef::Server(key.clone()));
        }
    }

    fn drain_client(&mut self, key: &TxKey, response: Option<&Response>) {
        let Some(entry) = self.clients.get_mut(key) else { return };
        let peer = entry.peer;
        let mut done = false;
        let mut need_ack = false;
        while let Some(action) = entry.tx.poll_action() {
            match action {
                Action::Transmit(bytes) => self.sends.push_back(Send { peer, bytes }),
                Action::Deliver(_) => {
                    if let Some(r) = response {
                        self.events.push_back(Event::Response { key: key.clone(), response: r.clone() });
                    }
                }
                Action::NeedAck(_) => need_ack = true,
                Action::Timeout => self.events.push_back(Event::Timeout { key: key.clone() }),
                Action::Terminated => done = true,
            }
        }
        if need_ack {
            if let (Some(r), Some(entry)) = (response, self.clients.get_mut(key)) {
                let ack = ack_for_error(&entry.request, r);
                entry.tx.ack(Bytes::from(ack.to_bytes()));
                if let Some(Action::Transmit(bytes)) = entry.tx.poll_action() {
                    self.sends.push_back(Send { peer, bytes });
                }
            }
        }
        if done {
            self.clients.remove(key);
        } else if let Some(at) = self.clients.get_mut(key).and_then(|e| e.tx.next_timeout()) {
            self.arm(at, TimerRef::Client(key.clone()));
        }
    }

    /// Fires what is due.
    pub fn on_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.timer_heap.peek() {
            if at > now {
                break;
            }
            self.timer_heap.pop();
            let Some(what) = self.timer_refs.remove(&id) else { continue };
            match what {
                TimerRef::Client(key) => {
                    let Some(e) = self.clients.get_mut(&key) else { continue };
                    // Stale unless the transaction's own deadline has come.
                    if e.tx.next_timeout().is_some_and(|t| t <= now) {
                        e.tx.on_timeout(now);
                        self.drain_client(&key, None);
                    }
                }
                TimerRef::Server(key) => {
                    let Some(e) = self.servers.get_mut(&key) else { continue };
                    if e.tx.next_timeout().is_some_and(|t| t <= now) {
                        e.tx.on_timeout(now);
                        self.drain_server(&key);
                    }
                }
                TimerRef::Accepted(d) => {
                    let Some(a) = self.accepted.get_mut(&d) else { continue };
                    if now >= a.give_up {
                        if let Some(a) = self.accepted.remove(&d) {
                            self.events.push_back(Event::AckTimeout { key: a.key });
                        }
                    } else if now >= a.next {
                        self.sends.push_back(Send { peer: a.peer, bytes: a.bytes.clone() });
                        a.interval = (a.interval * 2).min(self.timers.t2);
                        a.next = now + a.interval;
                        let at = a.next.min(a.give_up);
                        self.arm(at, TimerRef::Accepted(d));
                    }
                }
                TimerRef::Acked(d) => {
                    if self.acked.get(&d).is_some_and(|a| a.forget <= now) {
                        self.acked.remove(&d);
                    }
                }
            }
        }
    }

    /// The connection toward `addr` over `transport` could not be opened or
    /// broke: every client transaction waiting on it ends as if the peer
    /// had answered 503 (RFC 3261 8.1.3.1), at once rather than at Timer B.
    pub fn transport_failed(&mut self, transport: Transport, addr: SocketAddr) {
        let failed: Vec<TxKey> = self
            .clients
            .iter()
            .filter(|(_, e)| e.peer.transport == transport && e.peer.addr == addr)
            .map(|(k, _)| k.clone())
            .collect();
        for key in failed {
            let Some(entry) = self.clients.remove(&key) else { continue };
            let response = Response::for_request(&entry.request, 503, "Service Unavailable");
            self.events.push_back(Event::Response { key, response });
        }
    }

    /// When [`Layer::on_timeout`] should run next.
    /// (It may be a little early: a stale deadline costs one empty wakeup.)
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timer_heap.peek().map(|Reverse((at, _))| *at)
    }
}

/// The ACK for a 300-699 response to our INVITE (RFC 3261 17.1.1.3): same
/// Request-URI, top Via, From, Call-ID and Route; To from the response;
/// CSeq with the INVITE's number and method ACK.
fn ack_for_error(invite: &Request, response: &Response) -> Request {
    let mut ack = invite.clone();
    ack.method = Method::Ack;
    ack.body = Bytes::new();
    let keep = |h: &Header| {
        matches!(
            h.id(),
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::Route | HeaderName::MaxForwards
        )
    };
    let mut headers = super::Headers::new();
    let mut top_via_done = false;
    for h in invite.headers.iter() {
        if h.id() == HeaderName::Via {
            if top_via_done {
                continue;
            }
            top_via_done = true;
        }
        if keep(h) {
            headers.push(h.clone());
        }
    }
    if let Some(to) = response.headers.get(HeaderName::To) {
        headers.push(to.clone());
    }
    if let Ok(cseq) = invite.headers.cseq() {
        headers.push(Header::new(HeaderName::CSeq, format!("{} ACK", cseq.seq)));
    }
    ack.headers = headers;
    ack
}

#[cfg(test)]
mod tests;
