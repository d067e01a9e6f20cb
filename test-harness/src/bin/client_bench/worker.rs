//! `client-bench worker`: one process holding many Voice SDK clients on one
//! tokio thread (a task per socket), driven by the orchestrator through
//! stdin (commands) and stdout (one JSON line per answer).
//!
//! ```text
//!  orchestrator ──stdin: connect | stats | calls COUNT RATE CLIENTS | quit──▶ worker
//!               ◀─stdout: {"event":"connected",..} {"event":"stats",..} {"event":"calls",..}
//! ```
//!
//! Each client does what a registered Voice JS SDK Device does, framed by
//! [`test_harness::voice_client::frames`]: `listen` with its token, waits
//! for `connected`, `register`, waits for `ready`; then echoes every `"\n"`
//! heartbeat at once and re-sends `register` every 30 s
//! (`REGISTRATION_INTERVAL`). Rung (`invite`), it takes the bench's send
//! time from the call's custom parameter `t`, answers and hangs up.
//!
//! A worker of role `callers` holds clients with the outgoing grant that
//! place the calls: `invite` with `To` = a random `client-NNNNN` and
//! `t` = the wall-clock time of the send (µs), then wait for the server's
//! `hangup` (the callee hung up, the `<Dial>` ended, the call ended).

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use test_harness::voice_client::{frames, params_query, plain_rtp_sdp, temp_call_sid, REGISTRATION_INTERVAL};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::{self, protocol::WebSocketConfig, Message};

/// Connecting (TCP, TLS, upgrade) and `listen` + `register` must finish within this.
const SIGN_IN: Duration = Duration::from_secs(60);
/// A call not ended by the server within this is counted failed and hung up.
const CALL_WITHIN: Duration = Duration::from_secs(15);
/// The custom parameter carrying the caller's send time (µs since the epoch).
pub const SENT_PARAM: &str = "t";

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Registered clients that are rung.
    Clients,
    /// Clients that place the calls (not registered).
    Callers,
}

#[derive(Debug)]
pub struct WorkerArgs {
    pub url: String,
    pub ca: PathBuf,
    pub sources: Vec<IpAddr>,
    /// Lines `identity<TAB>token`.
    pub tokens: PathBuf,
    pub role: Role,
    /// Sign-ins in flight at once.
    pub concurrency: usize,
    /// Identities callers pick from: `client-00001` ..= `client-<callees>`.
    pub callees: usize,
    pub key_exchange: KeyExchange,
}

/// The TLS key exchange the clients offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyExchange {
    /// X25519MLKEM768 first, then X25519: Chrome, Firefox and Safari today.
    Hybrid,
    /// X25519 alone: older browsers, most native SDKs.
    X25519,
}

impl std::str::FromStr for KeyExchange {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "hybrid" => Ok(KeyExchange::Hybrid),
            "x25519" => Ok(KeyExchange::X25519),
            other => Err(format!("--key-exchange {other}: hybrid or x25519")),
        }
    }
}

impl std::fmt::Display for KeyExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyExchange::Hybrid => "hybrid",
            KeyExchange::X25519 => "x25519",
        })
    }
}

pub fn parse_args(args: &[String]) -> Result<WorkerArgs> {
    let mut w = WorkerArgs {
        url: String::new(),
        ca: PathBuf::new(),
        sources: Vec::new(),
        tokens: PathBuf::new(),
        role: Role::Clients,
        concurrency: 64,
        callees: 0,
        key_exchange: KeyExchange::Hybrid,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| anyhow!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => w.url = value()?,
            "--ca" => w.ca = value()?.into(),
            "--sources" => {
                w.sources = value()?
                    .split(',')
                    .map(|s| s.parse().with_context(|| format!("source {s}")))
                    .collect::<Result<_>>()?
            }
            "--tokens" => w.tokens = value()?.into(),
            "--role" => {
                w.role = match value()?.as_str() {
                    "clients" => Role::Clients,
                    "callers" => Role::Callers,
                    other => bail!("--role {other}: clients or callers"),
                }
            }
            "--concurrency" => w.concurrency = value()?.parse()?,
            "--callees" => w.callees = value()?.parse()?,
            "--key-exchange" => w.key_exchange = value()?.parse().map_err(|e: String| anyhow!(e))?,
            other => bail!("unknown worker argument {other}"),
        }
    }
    if w.url.is_empty() || w.sources.is_empty() || w.concurrency == 0 {
        bail!("worker needs --url, --ca, --sources, --tokens");
    }
    Ok(w)
}

pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Counters shared by the worker's tasks.
#[derive(Default)]
struct Stats {
    /// Signed in (`ready`, or `connected` for callers) and not dropped since.
    registered: AtomicU64,
    /// Sign-ins that ended, either way.
    done: AtomicU64,
    failed: AtomicU64,
    /// Upgrades answered 503: the appliance's connection limit.
    refused: AtomicU64,
    /// Connections the server closed (or that broke) after sign-in.
    dropped: AtomicU64,
    heartbeats: AtomicU64,
    invites: AtomicU64,
    first_connect_us: AtomicU64,
    last_ready_us: AtomicU64,
    /// Ring latencies (µs) since the last `stats`.
    ring_us: Mutex<Vec<u64>>,
    /// Time from connect to `ready` of each client signed in (µs).
    sign_in_us: Mutex<Vec<u64>>,
    first_error: Mutex<Option<String>>,
}

impl Stats {
    fn error(&self, e: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e);
        }
    }
}

/// One call for a caller to place: the callee's identity.
struct Order {
    to: String,
}

/// What a caller saw of one call.
#[derive(Debug, Default, Clone, Copy)]
struct CallOutcome {
    /// From the `invite` to the caller's own `answer` (the parent call answered).
    answer_us: Option<u64>,
    /// From the `invite` to the server's `hangup` (the whole call).
    end_us: Option<u64>,
}

pub fn run(w: WorkerArgs) -> Result<()> {
    let text = std::fs::read_to_string(&w.tokens).with_context(|| format!("reading {}", w.tokens.display()))?;
    let creds: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(identity, token)| (identity.to_string(), token.to_string()))
        .collect();
    let tls = tls_config(&w.ca, w.key_exchange)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(w, creds, tls))
}

async fn serve(w: WorkerArgs, creds: Vec<(String, String)>, tls: Arc<rustls::ClientConfig>) -> Result<()> {
    let stats = Arc::new(Stats { first_connect_us: AtomicU64::new(u64::MAX), ..Default::default() });
    let (order_tx, order_rx) = mpsc::unbounded_channel::<Order>();
    let order_rx = Arc::new(tokio::sync::Mutex::new(order_rx));
    let (outcome_tx, mut outcome_rx) = mpsc::unbounded_channel::<Option<CallOutcome>>();
    // Commands from stdin, read on a thread of their own.
    let (cmd_tx, mut commands) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if cmd_tx.send(line).is_err() {
                break;
            }
        }
    });
    let uri: tungstenite::http::Uri = w.url.parse()?;
    let host = uri.host().context("no host")?.to_string();
    let remote: SocketAddr = format!("{host}:{}", uri.port_u16().unwrap_or(443)).parse()?;
    let server_name = rustls_pki_types::ServerName::try_from(host)?;
    let mut creds = Some(creds);
    let mut rng = Rng::seeded();
    say(json!({"event": "started"}));
    while let Some(line) = commands.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["connect"] => {
                let Some(creds) = creds.take() else { bail!("connect twice") };
                let total = creds.len() as u64;
                let gate = Arc::new(Semaphore::new(w.concurrency));
                for (i, (identity, token)) in creds.into_iter().enumerate() {
                    let permit = gate.clone().acquire_owned().await?;
                    let client = Client {
                        stats: stats.clone(),
                        source: w.sources[i % w.sources.len()],
                        remote,
                        tls: tls.clone(),
                        server_name: server_name.clone(),
                        url: w.url.clone(),
                        identity,
                        token,
                        role: w.role,
                        orders: order_rx.clone(),
                        outcomes: outcome_tx.clone(),
                    };
                    tokio::spawn(client.run(permit));
                }
                while stats.done.load(Relaxed) < total {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                say(json!({
                    "event": "connected",
                    "ready": stats.registered.load(Relaxed),
                    "failed": stats.failed.load(Relaxed),
                    "refused": stats.refused.load(Relaxed),
                    "first_connect_us": stats.first_connect_us.load(Relaxed),
                    "last_ready_us": stats.last_ready_us.load(Relaxed),
                    "sign_in_us": std::mem::take(&mut *stats.sign_in_us.lock().unwrap_or_else(|p| p.into_inner())),
                    "error": stats.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                }));
            }
            ["stats"] => {
                let ring_us = std::mem::take(&mut *stats.ring_us.lock().unwrap_or_else(|p| p.into_inner()));
                say(json!({
                    "event": "stats",
                    "registered": stats.registered.load(Relaxed),
                    "dropped": stats.dropped.load(Relaxed),
                    "heartbeats": stats.heartbeats.load(Relaxed),
                    "invites": stats.invites.load(Relaxed),
                    "ring_us": ring_us,
                    "error": stats.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                }));
            }
            ["calls", count, rate] => {
                let (count, rate): (u64, f64) = (count.parse()?, rate.parse()?);
                if w.callees == 0 || w.role != Role::Callers {
                    bail!("calls: this worker has no callees or is not a callers worker");
                }
                let start = Instant::now();
                let mut outcomes = Vec::new();
                for i in 0..count {
                    let at = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(at.into()).await;
                    let to = format!("client-{:05}", 1 + rng.below(w.callees as u64));
                    order_tx.send(Order { to }).map_err(|_| anyhow!("no caller"))?;
                    while let Ok(o) = outcome_rx.try_recv() {
                        outcomes.push(o);
                    }
                }
                let placed_in = start.elapsed();
                while (outcomes.len() as u64) < count {
                    match tokio::time::timeout(CALL_WITHIN * 2, outcome_rx.recv()).await {
                        Ok(Some(o)) => outcomes.push(o),
                        _ => break,
                    }
                }
                let completed: Vec<CallOutcome> = outcomes.iter().flatten().copied().collect();
                let answer: Vec<u64> = completed.iter().filter_map(|o| o.answer_us).collect();
                let end: Vec<u64> = completed.iter().filter_map(|o| o.end_us).collect();
                say(json!({
                    "event": "calls",
                    "placed": count,
                    "placed_in_s": placed_in.as_secs_f64(),
                    "completed": end.len(),
                    "failed": count as usize - end.len(),
                    "answer_us": answer,
                    "end_us": end,
                    "error": stats.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                }));
            }
            ["quit"] => break,
            other => say(json!({"event": "error", "error": format!("unknown command {other:?}")})),
        }
    }
    Ok(())
}

/// One JSON line on stdout.
fn say(v: Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

struct Client {
    stats: Arc<Stats>,
    source: IpAddr,
    remote: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    server_name: rustls_pki_types::ServerName<'static>,
    url: String,
    identity: String,
    token: String,
    role: Role,
    orders: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Order>>>,
    outcomes: mpsc::UnboundedSender<Option<CallOutcome>>,
}

enum SignIn {
    Ready(Box<Ws>),
    Refused,
}

impl Client {
    async fn run(self, permit: tokio::sync::OwnedSemaphorePermit) {
        let started = now_us();
        self.stats.first_connect_us.fetch_min(started, Relaxed);
        let signed_in = tokio::time::timeout(SIGN_IN, self.sign_in()).await;
        let ws = match signed_in {
            Ok(Ok(SignIn::Ready(ws))) => {
                let ready = now_us();
                self.stats.last_ready_us.fetch_max(ready, Relaxed);
                self.stats.sign_in_us.lock().unwrap_or_else(|p| p.into_inner()).push(ready.saturating_sub(started));
                self.stats.registered.fetch_add(1, Relaxed);
                Some(ws)
            }
            Ok(Ok(SignIn::Refused)) => {
                self.stats.refused.fetch_add(1, Relaxed);
                None
            }
            Ok(Err(e)) => {
                self.stats.failed.fetch_add(1, Relaxed);
                self.stats.error(format!("{}: {e:#}", self.identity));
                None
            }
            Err(_) => {
                self.stats.failed.fetch_add(1, Relaxed);
                self.stats.error(format!("{}: no ready within {SIGN_IN:?}", self.identity));
                None
            }
        };
        self.stats.done.fetch_add(1, Relaxed);
        drop(permit);
        let Some(ws) = ws else { return };
        let ended = match self.role {
            Role::Clients => self.be_rung(*ws).await,
            Role::Callers => self.place_calls(*ws).await,
        };
        self.stats.registered.fetch_sub(1, Relaxed);
        self.stats.dropped.fetch_add(1, Relaxed);
        self.stats.error(format!("{} dropped: {ended}", self.identity));
    }

    async fn sign_in(&self) -> Result<SignIn> {
        let socket = match self.source {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(self.source, 0)).with_context(|| format!("binding {}", self.source))?;
        let tcp = socket.connect(self.remote).await.with_context(|| format!("connecting to {}", self.remote))?;
        tcp.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .context("TLS handshake")?;
        // Small buffers: the bench holds thousands of sockets per process.
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        let mut ws = match tokio_tungstenite::client_async_with_config(self.url.as_str(), tls, Some(config)).await {
            Ok((ws, _)) => ws,
            Err(tungstenite::Error::Http(r)) if r.status() == 503 => return Ok(SignIn::Refused),
            Err(e) => return Err(e).context("WebSocket upgrade"),
        };
        ws.send(Message::text(frames::listen(&self.token, 0))).await?;
        wait_for(&mut ws, &self.stats, "connected").await?;
        if self.role == Role::Clients {
            ws.send(Message::text(frames::register(true))).await?;
            wait_for(&mut ws, &self.stats, "ready").await?;
        }
        Ok(SignIn::Ready(Box::new(ws)))
    }

    /// A registered device: heartbeats, re-registration, answering calls.
    async fn be_rung(&self, mut ws: Ws) -> String {
        let mut register =
            tokio::time::interval_at((Instant::now() + REGISTRATION_INTERVAL).into(), REGISTRATION_INTERVAL);
        let sdp = plain_rtp_sdp(SocketAddr::new(self.source, 4000));
        loop {
            tokio::select! {
                frame = ws.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(c))) => return format!("closed by the server: {c:?}"),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return format!("{e}"),
                        None => return "end of stream".into(),
                    };
                    if text.as_str() == "\n" {
                        self.stats.heartbeats.fetch_add(1, Relaxed);
                        if ws.send(Message::text("\n")).await.is_err() {
                            return "send failed".into();
                        }
                        continue;
                    }
                    let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                    if frame["type"] != "invite" {
                        continue;
                    }
                    let received = now_us();
                    self.stats.invites.fetch_add(1, Relaxed);
                    let payload = &frame["payload"];
                    let callsid = payload["callsid"].as_str().unwrap_or_default().to_string();
                    if let Some(sent) = sent_time(payload) {
                        self.stats.ring_us.lock().unwrap_or_else(|p| p.into_inner()).push(received.saturating_sub(sent));
                    }
                    if ws.send(Message::text(frames::answer(&sdp, &callsid))).await.is_err()
                        || ws.send(Message::text(frames::hangup(&callsid, None))).await.is_err()
                    {
                        return "send failed".into();
                    }
                }
                _ = register.tick() => {
                    if ws.send(Message::text(frames::register(true))).await.is_err() {
                        return "send failed".into();
                    }
                }
            }
        }
    }

    /// A caller: takes orders from the shared queue, one call at a time,
    /// echoing heartbeats all along.
    async fn place_calls(&self, mut ws: Ws) -> String {
        let sdp = plain_rtp_sdp(SocketAddr::new(self.source, 4002));
        loop {
            let order = tokio::select! {
                order = async { self.orders.lock().await.recv().await } => match order {
                    Some(o) => o,
                    None => return "no more orders".into(),
                },
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(t))) if t.as_str() == "\n" => {
                        if ws.send(Message::text("\n")).await.is_err() {
                            return "send failed".into();
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(c))) => return format!("closed by the server: {c:?}"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return format!("{e}"),
                    None => return "end of stream".into(),
                },
            };
            let sent = now_us();
            let params = params_query(&[("To", &order.to), (SENT_PARAM, &sent.to_string())]);
            if ws.send(Message::text(frames::invite(&sdp, &temp_call_sid(), &params))).await.is_err() {
                let _ = self.outcomes.send(None);
                return "send failed".into();
            }
            let mut outcome = CallOutcome::default();
            let mut callsid = None;
            let deadline = tokio::time::sleep(CALL_WITHIN);
            tokio::pin!(deadline);
            let result = loop {
                tokio::select! {
                    frame = ws.next() => {
                        let text = match frame {
                            Some(Ok(Message::Text(t))) => t,
                            Some(Ok(Message::Close(c))) => break Err(format!("closed by the server: {c:?}")),
                            Some(Ok(_)) => continue,
                            Some(Err(e)) => break Err(format!("{e}")),
                            None => break Err("end of stream".into()),
                        };
                        if text.as_str() == "\n" {
                            if ws.send(Message::text("\n")).await.is_err() {
                                break Err("send failed".into());
                            }
                            continue;
                        }
                        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                        let at = now_us().saturating_sub(sent);
                        match frame["type"].as_str() {
                            Some("answer") => {
                                outcome.answer_us = Some(at);
                                callsid = frame["payload"]["callsid"].as_str().map(str::to_string);
                            }
                            Some("hangup") => {
                                outcome.end_us = Some(at);
                                break Ok(());
                            }
                            Some("error") => {
                                self.stats.error(format!("{} calling {}: {}", self.identity, order.to, frame["payload"]));
                            }
                            _ => {}
                        }
                    }
                    () = &mut deadline => {
                        self.stats.error(format!("{} calling {}: no hangup within {CALL_WITHIN:?}", self.identity, order.to));
                        if let Some(sid) = &callsid {
                            let _ = ws.send(Message::text(frames::hangup(sid, None))).await;
                        }
                        break Ok(());
                    }
                }
            };
            let _ = self.outcomes.send(outcome.end_us.map(|_| outcome));
            if let Err(e) = result {
                return e;
            }
        }
    }
}

/// The bench's send time from an incoming `invite`: the `t` of its
/// custom parameters (`parameters.Params`, URL-encoded).
fn sent_time(payload: &Value) -> Option<u64> {
    let params = payload["parameters"]["Params"].as_str()?;
    params.split('&').find_map(|kv| kv.strip_prefix("t=")).and_then(|v| v.parse().ok())
}

/// Frames until one of `kind` (heartbeats echoed, an `error` fails).
async fn wait_for(ws: &mut Ws, stats: &Stats, kind: &str) -> Result<Value> {
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => bail!("closed by the server before {kind}: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("before {kind}: {e}"),
            None => bail!("end of stream before {kind}"),
        };
        if text.as_str() == "\n" {
            stats.heartbeats.fetch_add(1, Relaxed);
            ws.send(Message::text("\n")).await?;
            continue;
        }
        let frame: Value = serde_json::from_str(text.as_str()).with_context(|| format!("malformed {text:?}"))?;
        match frame["type"].as_str() {
            Some(k) if k == kind => return Ok(frame["payload"].clone()),
            Some("error") => bail!("error before {kind}: {}", frame["payload"]),
            _ => {}
        }
    }
}

fn tls_config(pem: &std::path::Path, key_exchange: KeyExchange) -> Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    let cert = rustls_pki_types::CertificateDer::pem_file_iter(pem)
        .with_context(|| format!("reading {}", pem.display()))?
        .next()
        .ok_or_else(|| anyhow!("{} holds no certificate", pem.display()))??;
    // The TLS 1.3 suites in the order browsers offer them (Chrome, Firefox:
    // AES-128-GCM first), since the Voice SDK runs in a browser; rustls'
    // own default puts AES-256-GCM-SHA384 first.
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|s| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => 1,
        rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 2,
        _ => 3,
    });
    if key_exchange == KeyExchange::X25519 {
        provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    }
    let pinned = Arc::new(Pinned { cert, algorithms: provider.signature_verification_algorithms });
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(pinned)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Trusts exactly the appliance's certificate, compared byte for byte (as
/// a client that pins it), and checks the handshake's signature with it,
/// so the appliance still proves it holds the key. This spares the bench's
/// clients the certificate's own signature check, one ECDSA verification
/// per sign-in that a browser would make on its own CPU, not the
/// appliance's; the bench shares the appliance's two cores.
#[derive(Debug)]
struct Pinned {
    cert: rustls_pki_types::CertificateDer<'static>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// xorshift64*: the callees picked, seeded from the OS.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("the OS random source works");
        Rng(u64::from_le_bytes(b) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_time_comes_from_the_custom_parameters() {
        let payload = json!({"callsid": "CA1", "parameters": {"Params": "x=1&t=1700000000123456"}});
        assert_eq!(sent_time(&payload), Some(1_700_000_000_123_456));
        assert_eq!(sent_time(&json!({"parameters": {}})), None);
    }

    #[test]
    fn random_callees_stay_in_range() {
        let mut rng = Rng::seeded();
        assert!((0..1000).map(|_| rng.below(7)).all(|v| v < 7));
    }
}
