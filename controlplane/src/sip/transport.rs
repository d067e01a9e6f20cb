//! The SIP transports (UDP, TCP, TLS) and the task that owns the
//! transaction [`Layer`]: bytes in, validated messages to the layer, the
//! layer's sends out, its events to the transaction user.
//!
//! ```text
//!  UDP socket ─┐                       ┌──────────── core task ───────────┐
//!  TCP conns  ─┼─ Inbound{peer,bytes} ─▶ verdict ─▶ Layer ─▶ events ─────────▶ user
//!  TLS conns  ─┘                       │  Reject ─▶ stateless response    │
//!       ▲                              │  timers (Layer::next_timeout)    │
//!       └────────── Send{peer,bytes} ◀─┴──── Command (respond, request) ◀────── user
//! ```
//!
//! Responses go back to where the request came from (the packet's source,
//! or the connection it arrived on), as RFC 3581 `rport` asks, whatever
//! the Via says. Outbound requests over TCP/TLS need an established
//! connection from the peer in this release (UDP is used toward trunks).

use super::layer::{Event, Layer, Peer, Send, Transport, TxKey};
use super::message::{BodyFraming, Request, Response};
use super::transaction::Timers;
use super::validate::{verdict_with, Policy, Verdict};
use super::{Frame, StreamFramer};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

/// Where the SIP listeners bind; `tls` needs the appliance's certificate.
pub struct Listeners {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    /// For the TLS connections we open (toward `sips:` trunks and URIs).
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot bind SIP {0} on {1}: {2}")]
    Bind(&'static str, SocketAddr, std::io::Error),
}

/// What the transaction user asks of the stack.
#[derive(Debug)]
pub enum Command {
    Respond {
        key: TxKey,
        response: Response,
    },
    /// `branch` is chosen by the handle (see [`SipHandle::request`]).
    Request {
        peer: Peer,
        request: Request,
        branch: String,
    },
    Ack2xx {
        peer: Peer,
        ack: Request,
    },
    /// CANCEL our INVITE `invite` (`Layer::send_cancel`).
    Cancel {
        invite: TxKey,
    },
}

/// Methods counted by name; the rest count as `other`.
pub const COUNTED_METHODS: [&str; 13] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "UPDATE",
    "PRACK",
    "INFO",
    "REFER",
    "NOTIFY",
    "SUBSCRIBE",
    "MESSAGE",
];

/// Counters of the stack, read at scrape time.
#[derive(Debug, Default)]
pub struct SipStats {
    /// Requests received, by [`COUNTED_METHODS`] index (last: other).
    pub requests_in: [AtomicU64; COUNTED_METHODS.len() + 1],
    /// Responses received and sent, by class (index 0: 1xx ... 5: 6xx).
    pub responses_in: [AtomicU64; 6],
    pub responses_out: [AtomicU64; 6],
    pub requests_out: AtomicU64,
    /// Malformed requests answered statelessly (400, 505, ...).
    pub rejected: AtomicU64,
    /// Garbage dropped without an answer.
    pub dropped: AtomicU64,
    pub connections: AtomicU64,
    pub transactions_client: AtomicU64,
    pub transactions_server: AtomicU64,
}

/// The user's handle on a running stack.
#[derive(Clone)]
pub struct SipHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// For connections made outside the stack (SIP over WebSocket).
    inbound: mpsc::Sender<Inbound>,
    connections: mpsc::UnboundedSender<ConnectionEvent>,
    pub stats: Arc<SipStats>,
    /// The addresses the listeners got (useful when configured with port 0).
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub tls: Option<SocketAddr>,
    branches: Arc<BranchSource>,
}

/// Branches for the requests the user sends: unique per process and salted
/// per start, so two appliances (or two runs) do not collide.
struct BranchSource {
    salt: u64,
    next: AtomicU64,
}

impl SipHandle {
    pub fn respond(&self, key: TxKey, response: Response) {
        let _ = self.commands.send(Command::Respond { key, response });
    }

    /// Sends a request in a new client transaction (the stack adds the top
    /// Via) and returns its key at once: the branch is chosen here, so the
    /// caller can route the responses before the request has even left.
    pub fn request(&self, peer: Peer, request: Request) -> TxKey {
        let n = self.branches.next.fetch_add(1, Relaxed);
        let branch = format!("z9hG4bKbh{:x}.{n:x}", self.branches.salt);
        let key = TxKey { branch: branch.clone(), method: request.method.clone() };
        let _ = self.commands.send(Command::Request { peer, request, branch });
        key
    }

    /// Cancels our INVITE `invite` (nothing happens if its transaction is over).
    pub fn cancel(&self, invite: TxKey) {
        let _ = self.commands.send(Command::Cancel { invite });
    }

    pub fn ack_2xx(&self, peer: Peer, ack: Request) {
        let _ = self.commands.send(Command::Ack2xx { peer, ack });
    }

    /// Joins a SIP-over-WebSocket connection (RFC 7118) from `remote` to
    /// the stack: what arrives goes in with [`WsLink::deliver`], what the
    /// stack sends to its peer comes out of [`WsLink::outbound`], one SIP
    /// message per WebSocket message. Dropping the link closes it.
    pub fn attach_ws(&self, remote: SocketAddr) -> WsLink {
        let id = NEXT_CONNECTION.fetch_add(1, Relaxed);
        let peer = Peer { transport: Transport::Ws, addr: remote, connection: Some(id) };
        let (tx, outbound) = mpsc::unbounded_channel::<Bytes>();
        let _ = self.connections.send(ConnectionEvent::Opened(peer, tx));
        self.stats.connections.fetch_add(1, Relaxed);
        WsLink {
            peer,
            outbound,
            inbound: self.inbound.clone(),
            connections: self.connections.clone(),
            stats: self.stats.clone(),
        }
    }
}

/// A SIP-over-WebSocket connection joined to the stack ([`SipHandle::attach_ws`]).
pub struct WsLink {
    pub peer: Peer,
    /// Messages for the peer, each one WebSocket message.
    pub outbound: mpsc::UnboundedReceiver<Bytes>,
    inbound: mpsc::Sender<Inbound>,
    connections: mpsc::UnboundedSender<ConnectionEvent>,
    stats: Arc<SipStats>,
}

impl WsLink {
    /// One SIP message the peer sent; false once the stack is gone.
    pub async fn deliver(&self, bytes: Bytes) -> bool {
        self.inbound.send(Inbound { peer: self.peer, bytes }).await.is_ok()
    }
}

impl Drop for WsLink {
    fn drop(&mut self) {
        let _ = self.connections.send(ConnectionEvent::Closed(self.peer));
        self.stats.connections.fetch_sub(1, Relaxed);
    }
}

fn class_index(code: u16) -> usize {
    usize::from(code / 100).clamp(1, 6) - 1
}

struct Inbound {
    peer: Peer,
    bytes: Bytes,
}

enum ConnectionEvent {
    Opened(Peer, mpsc::UnboundedSender<Bytes>),
    Closed(Peer),
}

/// Names every connection, accepted or opened.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Binds the listeners and starts the stack; events for the transaction
/// user arrive on the returned receiver.
pub async fn start(listeners: Listeners) -> Result<(SipHandle, mpsc::UnboundedReceiver<Event>), TransportError> {
    let udp = UdpSocket::bind(listeners.udp).await.map_err(|e| TransportError::Bind("UDP", listeners.udp, e))?;
    let udp = Arc::new(udp);
    let tcp = crate::net::listen(listeners.tcp).map_err(|e| TransportError::Bind("TCP", listeners.tcp, e))?;
    let tls = match listeners.tls {
        Some((addr, config)) => {
            let l = crate::net::listen(addr).map_err(|e| TransportError::Bind("TLS", addr, e))?;
            Some((l, tokio_rustls::TlsAcceptor::from(config)))
        }
        None => None,
    };
    let stats = Arc::new(SipStats::default());
    let local_udp = udp.local_addr().map_err(|e| TransportError::Bind("UDP", listeners.udp, e))?;
    let local_tcp = tcp.local_addr().map_err(|e| TransportError::Bind("TCP", listeners.tcp, e))?;
    let local_tls = tls.as_ref().and_then(|(l, _)| l.local_addr().ok());

    let (inbound_tx, inbound_rx) = mpsc::channel::<Inbound>(4096);
    let (conn_tx, conn_rx) = mpsc::unbounded_channel::<ConnectionEvent>();
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let (inbound_tx_user, conn_tx_user) = (inbound_tx.clone(), conn_tx.clone());

    tokio::spawn(udp_reader(udp.clone(), inbound_tx.clone()));
    tokio::spawn(stream_acceptor(tcp, None, Transport::Tcp, inbound_tx.clone(), conn_tx.clone(), stats.clone()));
    if let Some((l, acceptor)) = tls {
        let (inbound_tx, conn_tx) = (inbound_tx.clone(), conn_tx.clone());
        tokio::spawn(stream_acceptor(l, Some(acceptor), Transport::Tls, inbound_tx, conn_tx, stats.clone()));
    }
    let via_host = |a: SocketAddr| a.to_string();
    let core = Core {
        layer: Layer::new(Timers::default(), u64::from(std::process::id()) << 16 ^ u64::from(local_udp.port())),
        udp,
        connections: HashMap::new(),
        events: event_tx,
        stats: stats.clone(),
        via_udp: via_host(local_udp),
        via_tcp: via_host(local_tcp),
        by_addr: HashMap::new(),
        dialer: Dialer {
            inbound: inbound_tx,
            connections: conn_tx,
            stats: stats.clone(),
            tls: listeners.tls_client.map(tokio_rustls::TlsConnector::from),
        },
    };
    tokio::spawn(core.run(inbound_rx, conn_rx, command_rx));
    let mut salt = [0u8; 8];
    let _ = getrandom::fill(&mut salt);
    let branches = Arc::new(BranchSource { salt: u64::from_le_bytes(salt) >> 16, next: AtomicU64::new(1) });
    let handle = SipHandle {
        commands: command_tx,
        inbound: inbound_tx_user,
        connections: conn_tx_user,
        stats,
        udp: local_udp,
        tcp: local_tcp,
        tls: local_tls,
        branches,
    };
    Ok((handle, event_rx))
}

async fn udp_reader(socket: Arc<UdpSocket>, inbound: mpsc::Sender<Inbound>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, addr)) = socket.recv_from(&mut buf).await else { continue };
        let peer = Peer { transport: Transport::Udp, addr, connection: None };
        // A full queue means the core is overloaded: shed the datagram
        // (the sender retransmits) rather than grow without bound.
        let _ = inbound.try_send(Inbound { peer, bytes: Bytes::copy_from_slice(&buf[..n]) });
    }
}

async fn stream_acceptor(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    transport: Transport,
    inbound: mpsc::Sender<Inbound>,
    connections: mpsc::UnboundedSender<ConnectionEvent>,
    stats: Arc<SipStats>,
) {
    loop {
        let Ok((stream, addr)) = listener.accept().await else { continue };
        let id = NEXT_CONNECTION.fetch_add(1, Relaxed);
        let peer = Peer { transport, addr, connection: Some(id) };
        let (inbound, connections, stats, tls) = (inbound.clone(), connections.clone(), stats.clone(), tls.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => serve_stream(s, peer, inbound, connections, stats, None).await,
                    Err(e) => tracing::debug!(%addr, error = %e, "SIP TLS handshake failed"),
                },
                None => serve_stream(stream, peer, inbound, connections, stats, None).await,
            }
        });
    }
}

/// Reads messages off one connection and writes what the core sends to it.
/// `queue`: the channel of a connection we opened, which the core already
/// writes to (messages wait there while it connects).
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin + std::marker::Send + 'static>(
    stream: S,
    peer: Peer,
    inbound: mpsc::Sender<Inbound>,
    connections: mpsc::UnboundedSender<ConnectionEvent>,
    stats: Arc<SipStats>,
    queue: Option<(mpsc::UnboundedSender<Bytes>, mpsc::UnboundedReceiver<Bytes>)>,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (out_tx, mut out_rx) = match queue {
        Some(q) => q,
        None => {
            let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
            let _ = connections.send(ConnectionEvent::Opened(peer, tx.clone()));
            (tx, rx)
        }
    };
    stats.connections.fetch_add(1, Relaxed);
    let write = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::new(Default::default());
    let mut buf = vec![0u8; 16_384];
    'read: loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(bytes))) => {
                    if inbound.send(Inbound { peer, bytes }).await.is_err() {
                        break 'read;
                    }
                }
                // RFC 5626 keep-alive: a CRLFCRLF ping gets a CRLF pong.
                Ok(Some(Frame::Ping)) => {
                    let _ = out_tx.send(Bytes::from_static(b"\r\n"));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(addr = %peer.addr, error = %e, "SIP stream framing error; closing");
                    stats.dropped.fetch_add(1, Relaxed);
                    break 'read;
                }
            }
        }
    }
    let _ = connections.send(ConnectionEvent::Closed(peer));
    stats.connections.fetch_sub(1, Relaxed);
    drop(out_tx);
    let _ = write.await;
}

/// What opening a connection needs.
struct Dialer {
    inbound: mpsc::Sender<Inbound>,
    connections: mpsc::UnboundedSender<ConnectionEvent>,
    stats: Arc<SipStats>,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Dialer {
    /// Opens a connection to `peer` (TCP, or TLS over it) in the background
    /// and returns its sender at once: what is sent meanwhile waits in it.
    /// If the connection fails, the queue is dropped and the transactions
    /// time out (408), as for a peer that does not answer.
    fn open(&self, transport: Transport, addr: SocketAddr) -> (Peer, mpsc::UnboundedSender<Bytes>) {
        let id = NEXT_CONNECTION.fetch_add(1, Relaxed);
        let peer = Peer { transport, addr, connection: Some(id) };
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let queue = (tx.clone(), rx);
        let (inbound, connections, stats) = (self.inbound.clone(), self.connections.clone(), self.stats.clone());
        let tls = self.tls.clone();
        tokio::spawn(async move {
            let connect = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await;
            let stream = match connect {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return fail(&connections, peer, &e.to_string()),
                Err(_) => return fail(&connections, peer, "connect timed out"),
            };
            let _ = stream.set_nodelay(true);
            if transport != Transport::Tls {
                return serve_stream(stream, peer, inbound, connections, stats, Some(queue)).await;
            }
            let Some(connector) = tls else { return fail(&connections, peer, "no TLS client configuration") };
            let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
            match connector.connect(name, stream).await {
                Ok(s) => serve_stream(s, peer, inbound, connections, stats, Some(queue)).await,
                Err(e) => fail(&connections, peer, &e.to_string()),
            }
        });
        (peer, tx)
    }
}

fn fail(connections: &mpsc::UnboundedSender<ConnectionEvent>, peer: Peer, why: &str) {
    tracing::info!(peer = %peer.addr, transport = ?peer.transport, error = why, "SIP connection failed");
    let _ = connections.send(ConnectionEvent::Closed(peer));
}

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

struct Core {
    layer: Layer,
    /// Connections by where they go, for requests that name no connection.
    by_addr: HashMap<(Transport, SocketAddr), u64>,
    dialer: Dialer,
    udp: Arc<UdpSocket>,
    connections: HashMap<u64, mpsc::UnboundedSender<Bytes>>,
    events: mpsc::UnboundedSender<Event>,
    stats: Arc<SipStats>,
    via_udp: String,
    via_tcp: String,
}

impl Core {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut connections: mpsc::UnboundedReceiver<ConnectionEvent>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let udp_policy = Policy::default();
        let stream_policy = Policy { framing: BodyFraming::Stream, ..Policy::default() };
        loop {
            let deadline = self.layer.next_timeout().map(tokio::time::Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(msg) = inbound.recv() => {
                    // A datagram and a WebSocket message each hold exactly one message.
                    let policy = match msg.peer.transport {
                        Transport::Udp | Transport::Ws => &udp_policy,
                        _ => &stream_policy,
                    };
                    self.on_inbound(msg, policy);
                }
                Some(event) = connections.recv() => match event {
                    ConnectionEvent::Opened(peer, tx) => {
                        let id = peer.connection.unwrap_or_default();
                        self.connections.insert(id, tx);
                        self.by_addr.entry((peer.transport, peer.addr)).or_insert(id);
                    }
                    ConnectionEvent::Closed(peer) => {
                        let id = peer.connection.unwrap_or_default();
                        self.connections.remove(&id);
                        if self.by_addr.get(&(peer.transport, peer.addr)) == Some(&id) {
                            // Requests waiting on this connection will get no answer.
                            self.layer.transport_failed(peer.transport, peer.addr);
                        }
                        if self.by_addr.get(&(peer.transport, peer.addr)) == Some(&id) {
                            self.by_addr.remove(&(peer.transport, peer.addr));
                        }
                    }
                },
                command = commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => break, // the user is gone: stop
                },
                _ = sleep => self.layer.on_timeout(Instant::now()),
            }
            self.flush().await;
        }
    }

    fn on_inbound(&mut self, msg: Inbound, policy: &Policy) {
        match verdict_with(msg.bytes, policy) {
            Verdict::Accept(m) => {
                let counter = match &m {
                    super::Message::Request(r) => {
                        let i = COUNTED_METHODS
                            .iter()
                            .position(|c| *c == r.method.as_str())
                            .unwrap_or(COUNTED_METHODS.len());
                        &self.stats.requests_in[i]
                    }
                    super::Message::Response(r) => &self.stats.responses_in[class_index(r.code)],
                };
                counter.fetch_add(1, Relaxed);
                self.layer.received(Instant::now(), msg.peer, m);
            }
            Verdict::Reject { status, reason, response } => {
                self.stats.rejected.fetch_add(1, Relaxed);
                tracing::debug!(peer = %msg.peer.addr, status, %reason, "SIP request rejected");
                if let Some(bytes) = response {
                    self.send(Send { peer: msg.peer, bytes });
                }
            }
            Verdict::Drop { why } => {
                self.stats.dropped.fetch_add(1, Relaxed);
                tracing::debug!(peer = %msg.peer.addr, %why, "SIP message dropped");
            }
        }
    }

    fn via_for(&self, peer: &Peer) -> &str {
        match peer.transport {
            Transport::Udp => &self.via_udp,
            Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Client => &self.via_tcp,
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Respond { key, response } => self.layer.respond(now, &key, response),
            Command::Request { peer, request, branch } => {
                let via = self.via_for(&peer).to_string();
                self.layer.send_request_on_branch(now, peer, &via, branch, request);
            }
            Command::Cancel { invite } => {
                self.layer.send_cancel(now, &invite);
            }
            Command::Ack2xx { peer, ack } => {
                let via = self.via_for(&peer).to_string();
                self.layer.send_ack_2xx(now, peer, &via, ack);
            }
        }
    }

    fn send(&mut self, send: Send) {
        // A response starts "SIP/2.0 NNN"; anything else we send is a request.
        let request = match send
            .bytes
            .strip_prefix(b"SIP/2.0 ")
            .and_then(|r| std::str::from_utf8(r.get(..3)?).ok()?.parse().ok())
        {
            Some(code) => {
                self.stats.responses_out[class_index(code)].fetch_add(1, Relaxed);
                false
            }
            None => {
                self.stats.requests_out.fetch_add(1, Relaxed);
                true
            }
        };
        // A request on a connection that closed goes to the peer's address
        // (an appliance's or a trunk's listener), dialed again; a response
        // has nowhere else to go.
        let gone = request && send.peer.connection.is_some_and(|id| !self.connections.contains_key(&id));
        let connection = match (send.peer.connection.filter(|_| !gone), send.peer.transport) {
            (None, Transport::Tcp | Transport::Tls) => {
                // A request toward a peer over a connection-oriented transport:
                // reuse a connection to it, or open one.
                let key = (send.peer.transport, send.peer.addr);
                match self.by_addr.get(&key) {
                    Some(&id) => Some(id),
                    None => {
                        let (peer, tx) = self.dialer.open(send.peer.transport, send.peer.addr);
                        let id = peer.connection.unwrap_or_default();
                        self.connections.insert(id, tx);
                        self.by_addr.insert(key, id);
                        Some(id)
                    }
                }
            }
            (c, _) => c,
        };
        match connection {
            None => {
                // UDP sends never block for long; try_send_to avoids an await
                // in the middle of the layer's work.
                if let Err(e) = self.udp.try_send_to(&send.bytes, send.peer.addr) {
                    tracing::debug!(peer = %send.peer.addr, error = %e, "SIP UDP send failed");
                }
            }
            Some(id) => match self.connections.get(&id) {
                Some(tx) => {
                    let _ = tx.send(send.bytes);
                }
                None => tracing::debug!(peer = %send.peer.addr, "SIP connection gone; message dropped"),
            },
        }
    }

    async fn flush(&mut self) {
        while let Some(send) = self.layer.poll_send() {
            self.send(send);
        }
        while let Some(event) = self.layer.poll_event() {
            let _ = self.events.send(event);
        }
        let (clients, servers) = self.layer.transactions();
        self.stats.transactions_client.store(clients as u64, Relaxed);
        self.stats.transactions_server.store(servers as u64, Relaxed);
    }
}
