//! A blocking test client for `/signal` that speaks the signaling protocol of
//! Twilio's open-source Voice JS SDK exactly as the SDK frames it.
//!
//! It mirrors `lib/twilio/pstream.ts` (the messages and their JSON, key by
//! key in the SDK's order), `lib/twilio/wstransport.ts` (the heartbeat: echo
//! every bare `"\n"` the server sends, drop the socket after 15 s without any
//! message) and the parts of `device.ts` / `call.ts` that decide which
//! `callsid` goes where. Checked against `@twilio/voice-sdk` **2.18.5**. It
//! deliberately uses no type of the `controlplane` crate: the end-to-end
//! tests check the appliance against the SDK's shapes, not against our own.
//! The protocol itself is described in `docs/client-protocol.md`.
//!
//! ```text
//!   test thread                         I/O thread (tokio current_thread)
//!   VoiceClient::listen/invite/... ──► Command ──► WebSocket (rustls) ──► appliance
//!   VoiceClient::expect/next_frame ◄── Event   ◄── frames, "\n" echoed here
//! ```
//!
//! ```no_run
//! # use test_harness::voice_client::*;
//! # use std::time::Duration;
//! # fn main() -> anyhow::Result<()> {
//! # let token = "";
//! let mut alice = VoiceClient::connect("wss://127.0.0.1:8443/signal", "cert.pem".as_ref())?;
//! alice.listen(token)?;
//! let connected = alice.expect("connected", Duration::from_secs(2))?;
//! alice.register()?;
//! alice.expect("ready", Duration::from_secs(2))?;
//! let callsid = temp_call_sid();
//! alice.invite(&plain_rtp_sdp("10.0.0.2:4000".parse()?), &callsid, &[("To", "+15550100")])?;
//! # Ok(()) }
//! ```
//!
//! The media side of a call is a [`crate::rtp::RtpEndpoint`]: offer its
//! address with [`plain_rtp_sdp`] and send to [`sdp_media_addr`] of the
//! appliance's answer.

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc as async_mpsc;
use tokio_tungstenite::tungstenite::{http::Uri, Message};

/// `PSTREAM_VERSION` in pstream.ts: the `version` of every frame.
pub const PSTREAM_VERSION: &str = "1.6";
/// The SDK release this client was checked against (`RELEASE_VERSION`,
/// sent as `browserinfo.v`).
pub const SDK_VERSION: &str = "2.18.5";
/// The heartbeat frame, both ways: a text frame holding one newline.
pub const HEARTBEAT: &str = "\n";
/// `HEARTBEAT_TIMEOUT` in wstransport.ts: the SDK closes a socket on which
/// nothing (frame or heartbeat) arrived for this long, and reconnects.
pub const SDK_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(15);
/// `REGISTRATION_INTERVAL` in device.ts: a registered Device re-sends
/// `register` this often. The client does not; tests call [`VoiceClient::register`].
pub const REGISTRATION_INTERVAL: Duration = Duration::from_secs(30);

/// The frames, built as pstream.ts builds them: `JSON.stringify({payload,
/// type, version})` with the payload's keys in the order of the object
/// literal there, and keys whose value is `undefined` left out. Pure
/// functions, so a load generator can reuse them without a [`VoiceClient`].
pub mod frames {
    use super::{json_string, object, PSTREAM_VERSION, SDK_VERSION};
    use serde_json::Value;

    /// `_publish(type, payload)`: `{"payload":...,"type":...,"version":"1.6"}`.
    pub fn frame(kind: &str, payload_json: &str) -> String {
        object(&[("payload", payload_json), ("type", &json_string(kind)), ("version", &json_string(PSTREAM_VERSION))])
    }

    /// `getBrowserInfo()`. Outside a browser the SDK sends `"unknown"` for
    /// both navigator fields; we name ourselves in `userAgent` instead.
    pub fn browser_info() -> String {
        let browser = object(&[
            ("platform", &json_string("unknown")),
            ("userAgent", &json_string("bridgehead-test-harness voice_client")),
        ]);
        object(&[
            ("browser", &browser),
            ("p", &json_string("browser")),
            ("plugin", &json_string("rtc")),
            ("v", &json_string(SDK_VERSION)),
        ])
    }

    /// `setToken(token)`: sent on every socket open and on `updateToken`.
    /// `reconnect_timeout` is `min(ceil(maxCallSignalingTimeoutMs / 1000), 30)`,
    /// 0 with the Device's default options.
    pub fn listen(token: &str, reconnect_timeout: u32) -> String {
        let payload = object(&[
            ("browserinfo", &browser_info()),
            ("reconnectTimeout", &reconnect_timeout.to_string()),
            ("token", &json_string(token)),
        ]);
        frame("listen", &payload)
    }

    /// `register({audio})`: `true` registers (repeated every 30 s),
    /// `false` unregisters.
    pub fn register(audio: bool) -> String {
        let media = object(&[("audio", if audio { "true" } else { "false" })]);
        frame("register", &object(&[("media", &media)]))
    }

    /// `invite(sdp, callsid, params)` for a new outgoing call: `callsid` is
    /// the client's temporary `TJS...` id, `params` the URL-encoded custom
    /// parameters (see [`super::params_query`]); an empty string gives
    /// `"twilio":{}` as in the SDK (`params ? { params } : {}`).
    pub fn invite(sdp: &str, callsid: &str, params: &str) -> String {
        let twilio = if params.is_empty() { "{}".to_string() } else { object(&[("params", &json_string(params))]) };
        let payload = object(&[("callsid", &json_string(callsid)), ("sdp", &json_string(sdp)), ("twilio", &twilio)]);
        frame("invite", &payload)
    }

    /// `reconnect(sdp, callsid, reconnect)`: an `invite` that resumes the
    /// call `callsid` (the server's `CA...` sid) with its reconnect token.
    pub fn reconnect(sdp: &str, callsid: &str, reconnect: &str) -> String {
        let payload = object(&[
            ("callsid", &json_string(callsid)),
            ("reconnect", &json_string(reconnect)),
            ("sdp", &json_string(sdp)),
            ("twilio", "{}"),
        ]);
        frame("invite", &payload)
    }

    /// `answer(sdp, callsid)`: accept an incoming call.
    pub fn answer(sdp: &str, callsid: &str) -> String {
        frame("answer", &object(&[("sdp", &json_string(sdp)), ("callsid", &json_string(callsid))]))
    }

    /// `dtmf(callsid, digits)`.
    pub fn dtmf(callsid: &str, digits: &str) -> String {
        frame("dtmf", &object(&[("callsid", &json_string(callsid)), ("dtmf", &json_string(digits))]))
    }

    /// `hangup(callsid, message)`: `message` only when given (the SDK's
    /// `message ? {callsid, message} : {callsid}`).
    pub fn hangup(callsid: &str, message: Option<&str>) -> String {
        let callsid = json_string(callsid);
        let payload = match message.filter(|m| !m.is_empty()) {
            Some(m) => object(&[("callsid", &callsid), ("message", &json_string(m))]),
            None => object(&[("callsid", &callsid)]),
        };
        frame("hangup", &payload)
    }

    /// `reject(callsid)`: decline an incoming call on this device.
    pub fn reject(callsid: &str) -> String {
        frame("reject", &object(&[("callsid", &json_string(callsid))]))
    }

    /// `reinvite(sdp, callsid)`: the SDK sends it for an ICE restart.
    pub fn reinvite(sdp: &str, callsid: &str) -> String {
        frame("reinvite", &object(&[("sdp", &json_string(sdp)), ("callsid", &json_string(callsid))]))
    }

    /// `sendMessage(callsid, content, contenttype, messagetype, voiceeventsid)`
    /// (Call.sendMessage). `content` is serialized by serde_json (object keys
    /// sorted, where JavaScript keeps insertion order; the server must not care).
    pub fn message(
        callsid: &str,
        content: &Value,
        contenttype: &str,
        messagetype: &str,
        voiceeventsid: &str,
    ) -> String {
        let payload = object(&[
            ("callsid", &json_string(callsid)),
            ("content", &content.to_string()),
            ("contenttype", &json_string(contenttype)),
            ("messagetype", &json_string(messagetype)),
            ("voiceeventsid", &json_string(voiceeventsid)),
        ]);
        frame("message", &payload)
    }

    /// Bridgehead extension: `presence-subscribe {identities}`.
    pub fn presence_subscribe(identities: &[&str]) -> String {
        frame("presence-subscribe", &object(&[("identities", &string_array(identities))]))
    }

    /// Bridgehead extension: `presence-unsubscribe {identities}`.
    pub fn presence_unsubscribe(identities: &[&str]) -> String {
        frame("presence-unsubscribe", &object(&[("identities", &string_array(identities))]))
    }

    /// Bridgehead extension: `presence-set {status}` (`available` or `away`).
    pub fn presence_set(status: &str) -> String {
        frame("presence-set", &object(&[("status", &json_string(status))]))
    }

    fn string_array(items: &[&str]) -> String {
        format!("[{}]", items.iter().map(|s| json_string(s)).collect::<Vec<_>>().join(","))
    }
}

/// A JSON object written key by key in the given order (serde_json's own
/// map sorts keys unless the workspace-wide `preserve_order` feature is on).
/// Values are JSON text already.
fn object(fields: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(key));
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    out
}

/// A JSON string literal. serde_json escapes exactly what `JSON.stringify`
/// escapes (`"`, `\`, control characters; `\b\f\n\r\t` short, others as
/// lowercase `\u00xx`), so the bytes match the SDK's.
fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// `encodeURIComponent`: every byte of the UTF-8 form except
/// `A-Z a-z 0-9 - _ . ! ~ * ' ( )` as `%XX` (upper-case hex).
pub fn encode_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The custom parameters of an outgoing call as Call.accept() joins them:
/// `encodeURIComponent(key)=encodeURIComponent(value)` joined by `&`, in the
/// given order (the SDK keeps the insertion order of `params`).
pub fn params_query(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode_uri_component(k), encode_uri_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// How the SDK reads `parameters.Params` of an incoming `invite`
/// (`queryToJson` in util.ts): split on `&`, then on `=` keeping only the
/// first two parts; the key is used **as is** (not decoded), the value has
/// `+` turned into a space and is then percent-decoded. A later duplicate
/// key wins there; here both are returned in order. Malformed escapes (where
/// `decodeURIComponent` would throw) are an error.
pub fn query_to_params(query: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in query.split('&') {
        let mut parts = pair.split('=');
        let key = parts.next().unwrap_or("");
        let value = parts.next().unwrap_or("");
        if key.is_empty() {
            continue;
        }
        out.push((key.to_string(), percent_decode(&value.replace('+', "%20"))?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(byte.ok_or_else(|| anyhow!("malformed percent escape in {s:?} (decodeURIComponent throws)"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow!("percent escapes of {s:?} are not UTF-8 (decodeURIComponent throws)"))
}

fn random_hex(n_bytes: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n_bytes];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes
}

/// A temporary call sid as `generateTempCallSid()` in call.ts makes it:
/// `TJS` + a UUID v4 in lower-case hex (`TJSxxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`,
/// `y` one of `8 9 a b`), 39 characters. The SDK sends it as `callsid` of an
/// outgoing `invite`, and of `hangup` until the server told it the `CA...` sid.
pub fn temp_call_sid() -> String {
    let mut b = random_hex(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("TJS{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// A voice event sid as `generateVoiceEventSid()` in sid.ts: `KX` + 32
/// lower-case hex digits; it identifies a `message` and its `ack`.
pub fn voice_event_sid() -> String {
    let hex: String = random_hex(16).iter().map(|x| format!("{x:02x}")).collect();
    format!("KX{hex}")
}

/// The client's plain-RTP SDP (offer or answer): one `m=audio` line with
/// RTP/AVP, PCMU 0, PCMA 8 and telephone-event 101 (RFC 4733), media at
/// `media` (the [`crate::rtp::RtpEndpoint`]'s address), CRLF line ends.
pub fn plain_rtp_sdp(media: SocketAddr) -> String {
    plain_rtp_sdp_with(media, &[0, 8, 101])
}

/// [`plain_rtp_sdp`] with the given payload types, in order of preference
/// (0 PCMU, 8 PCMA, 101 telephone-event; others get no `a=rtpmap`).
pub fn plain_rtp_sdp_with(media: SocketAddr, payload_types: &[u8]) -> String {
    let (family, ip) = match media.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    let session = u64::from_be_bytes(random_hex(8).try_into().expect("8 bytes")) >> 2;
    let pts: Vec<String> = payload_types.iter().map(u8::to_string).collect();
    let mut sdp = format!(
        "v=0\r\no=- {session} {session} IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP {}\r\n",
        media.port(),
        pts.join(" ")
    );
    for pt in payload_types {
        match pt {
            0 => sdp.push_str("a=rtpmap:0 PCMU/8000\r\n"),
            8 => sdp.push_str("a=rtpmap:8 PCMA/8000\r\n"),
            101 => sdp.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"),
            _ => {}
        }
    }
    sdp.push_str("a=ptime:20\r\na=sendrecv\r\n");
    sdp
}

/// Where the far side of an SDP wants its media: the port of the first
/// `m=audio` line and the `c=` address of that media section, or the
/// session-level `c=` when the section has none. Accepts LF or CRLF.
pub fn sdp_media_addr(sdp: &str) -> Result<SocketAddr> {
    let mut session_conn: Option<IpAddr> = None;
    let mut media_conn: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    let mut in_audio = false;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(rest) = line.strip_prefix("m=") {
            if port.is_some() {
                break; // only the first audio section counts
            }
            in_audio = rest.starts_with("audio ");
            if in_audio {
                let p = rest.split_whitespace().nth(1).context("m=audio without a port")?;
                port = Some(p.split('/').next().unwrap_or(p).parse().with_context(|| format!("m=audio port {p:?}"))?);
            }
        } else if let Some(rest) = line.strip_prefix("c=") {
            let addr = rest.split_whitespace().nth(2).with_context(|| format!("c= line {line:?}"))?;
            let addr = addr.split('/').next().unwrap_or(addr);
            let ip: IpAddr = addr.parse().with_context(|| format!("c= address {addr:?} is not an IP address"))?;
            if port.is_none() && !in_audio {
                session_conn = Some(ip);
            } else if in_audio {
                media_conn = Some(ip);
            }
        }
    }
    let port = port.ok_or_else(|| anyhow!("no m=audio line in SDP:\n{sdp}"))?;
    let ip = media_conn.or(session_conn).ok_or_else(|| anyhow!("no c= line for the audio in SDP:\n{sdp}"))?;
    Ok(SocketAddr::new(ip, port))
}

/// The payload types of the first `m=audio` line, in its order (the first
/// one is the codec the answerer chose).
pub fn sdp_payload_types(sdp: &str) -> Vec<u8> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("m=audio "))
        .map(|rest| rest.split_whitespace().skip(2).filter_map(|pt| pt.parse().ok()).collect())
        .unwrap_or_default()
}

/// One frame the server sent: `{"type", "version", "payload"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// `type`.
    pub kind: String,
    /// `version`, if the server sent one (the SDK does not read it).
    pub version: Option<String>,
    /// `payload`; `{}` when absent, as the SDK defaults it.
    pub payload: Value,
    /// The frame as received.
    pub text: String,
}

/// Why the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The server sent a close frame (status code, reason).
    ByServer { code: Option<u16>, reason: String },
    /// The TCP connection ended without a WebSocket close frame.
    Dropped(String),
    /// Nothing arrived for the heartbeat timeout, so we closed the socket,
    /// as wstransport.ts does.
    HeartbeatTimeout,
    /// We closed it ([`VoiceClient::close`] or [`VoiceClient::drop_abruptly`]).
    ByUs,
}

/// Options of [`VoiceClient::connect_with`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The appliance certificate (PEM) to trust; required for `wss://`.
    pub ca_pem: Option<std::path::PathBuf>,
    /// Local address to bind before connecting (load tests spread clients
    /// over several loopback source addresses).
    pub bind: Option<IpAddr>,
    /// Close the socket when nothing arrived for this long, as the SDK does
    /// after [`SDK_HEARTBEAT_TIMEOUT`]; `None` never does.
    pub heartbeat_timeout: Option<Duration>,
    /// How long connecting (TCP, TLS, WebSocket upgrade) may take.
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            ca_pem: None,
            bind: None,
            heartbeat_timeout: Some(SDK_HEARTBEAT_TIMEOUT),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

enum Command {
    Send(String),
    AnswerHeartbeats(bool),
    Close,
    Abort,
}

enum Event {
    Frame(Frame),
    /// A text frame that is neither `"\n"` nor a JSON object frame, or a
    /// binary frame: the SDK would throw on it or drop it.
    Malformed(String),
    Closed(Closed),
}

/// A connection to `/signal` speaking the Voice JS SDK's protocol.
///
/// Sending methods queue the frame for the I/O thread and return at once;
/// frames leave in call order. Received frames wait in a queue until
/// [`expect`](Self::expect) or [`next_frame`](Self::next_frame) takes them.
/// Heartbeats are answered on the I/O thread and never show up as frames.
/// Dropping the client closes the socket gracefully.
pub struct VoiceClient {
    commands: async_mpsc::UnboundedSender<Command>,
    events: mpsc::Receiver<Event>,
    queued: VecDeque<Frame>,
    closed: Option<Closed>,
    heartbeats: Arc<AtomicU64>,
    local_addr: SocketAddr,
    io: Option<std::thread::JoinHandle<()>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl VoiceClient {
    /// Connects to `url` (`wss://127.0.0.1:8443/signal`) trusting the
    /// certificate in `ca_pem`, with the SDK's heartbeat timeout.
    pub fn connect(url: &str, ca_pem: &Path) -> Result<VoiceClient> {
        VoiceClient::connect_with(url, &ConnectOptions { ca_pem: Some(ca_pem.to_path_buf()), ..Default::default() })
    }

    /// Connects to a `wss://` or (for loopback tests) `ws://` URL. The socket
    /// is made on the calling thread, so a client connected inside
    /// [`crate::netns::Netns::run_in`] lives in that namespace.
    pub fn connect_with(url: &str, options: &ConnectOptions) -> Result<VoiceClient> {
        let uri: Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
        let tls = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => bail!("{url}: the scheme must be wss or ws"),
        };
        let host = uri.host().with_context(|| format!("{url}: no host"))?.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let remote = (host, port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        let tls_config = if tls {
            let pem = options.ca_pem.as_deref().with_context(|| format!("{url}: wss needs a certificate to trust"))?;
            Some((tls_client_config(pem)?, rustls_pki_types::ServerName::try_from(host.to_string())?))
        } else {
            None
        };
        let socket = if remote.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .context("creating the TCP socket")?;
        if let Some(ip) = options.bind {
            socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("binding {ip}"))?;
        }

        let (command_tx, command_rx) = async_mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<SocketAddr>>();
        let heartbeats = Arc::new(AtomicU64::new(0));
        let counted = heartbeats.clone();
        let url = url.to_string();
        let heartbeat_timeout = options.heartbeat_timeout;
        let connect_timeout = options.connect_timeout;
        let io = std::thread::Builder::new()
            .name("voice-client".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("tokio runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let opened = tokio::time::timeout(connect_timeout, open(socket, remote, tls_config, &url)).await;
                    let (ws, raw, local) = match opened {
                        Ok(Ok(opened)) => opened,
                        Ok(Err(e)) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                        Err(_) => {
                            let _ = ready_tx.send(Err(anyhow!("connecting to {url} took over {connect_timeout:?}")));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(local));
                    drive(ws, raw, command_rx, event_tx, heartbeat_timeout, counted).await;
                });
            })
            .context("spawning the client's I/O thread")?;
        let local_addr = match ready_rx.recv() {
            Ok(Ok(local)) => local,
            Ok(Err(e)) => {
                let _ = io.join();
                return Err(e);
            }
            Err(_) => {
                let _ = io.join();
                bail!("the client's I/O thread ended before connecting");
            }
        };
        Ok(VoiceClient {
            commands: command_tx,
            events: event_rx,
            queued: VecDeque::new(),
            closed: None,
            heartbeats,
            local_addr,
            io: Some(io),
        })
    }

    /// The client's side of the TCP connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Heartbeats (`"\n"`) received from the server so far.
    pub fn heartbeats_received(&self) -> u64 {
        self.heartbeats.load(Ordering::Relaxed)
    }

    /// Sends a text frame as is (for malformed-input tests).
    pub fn send_raw(&self, text: &str) -> Result<()> {
        self.commands.send(Command::Send(text.to_string())).map_err(|_| anyhow!("the connection is closed"))
    }

    /// Sends a heartbeat unprompted (the SDK only ever echoes the server's).
    pub fn send_heartbeat(&self) -> Result<()> {
        self.send_raw(HEARTBEAT)
    }

    /// Stops (`false`) or resumes (`true`) echoing the server's heartbeats.
    /// Silenced, the client still receives and can still send frames.
    pub fn answer_heartbeats(&self, answer: bool) -> Result<()> {
        self.commands.send(Command::AnswerHeartbeats(answer)).map_err(|_| anyhow!("the connection is closed"))
    }

    /// `listen` with the token, `reconnectTimeout` 0 as the SDK's defaults
    /// send it. Also what `Device.updateToken` sends on the open socket.
    pub fn listen(&self, token: &str) -> Result<()> {
        self.send_raw(&frames::listen(token, 0))
    }

    /// `listen` with an explicit `reconnectTimeout` (seconds, the SDK caps it at 30).
    pub fn listen_with_reconnect_timeout(&self, token: &str, reconnect_timeout: u32) -> Result<()> {
        self.send_raw(&frames::listen(token, reconnect_timeout))
    }

    /// `register {media: {audio: true}}`.
    pub fn register(&self) -> Result<()> {
        self.send_raw(&frames::register(true))
    }

    /// `register {media: {audio: false}}`: the SDK's unregister.
    pub fn unregister(&self) -> Result<()> {
        self.send_raw(&frames::register(false))
    }

    /// An outgoing call: `invite` with `callsid` = a [`temp_call_sid`] and
    /// `params` URL-encoded as the SDK does (`To` is one of them).
    pub fn invite(&self, sdp: &str, temp_callsid: &str, params: &[(&str, &str)]) -> Result<()> {
        self.send_raw(&frames::invite(sdp, temp_callsid, &params_query(params)))
    }

    /// A call reconnect: `invite` with the call's `CA...` sid and the
    /// reconnect token the server gave in `invite`/`answer`.
    pub fn reconnect(&self, sdp: &str, callsid: &str, reconnect_token: &str) -> Result<()> {
        self.send_raw(&frames::reconnect(sdp, callsid, reconnect_token))
    }

    /// `answer` an incoming call.
    pub fn answer(&self, sdp: &str, callsid: &str) -> Result<()> {
        self.send_raw(&frames::answer(sdp, callsid))
    }

    /// `reject` an incoming call (this device only).
    pub fn reject(&self, callsid: &str) -> Result<()> {
        self.send_raw(&frames::reject(callsid))
    }

    /// `hangup`: `callsid` is the `TJS...` id until a `ringing`/`answer`
    /// carried the `CA...` sid, then that sid.
    pub fn hangup(&self, callsid: &str) -> Result<()> {
        self.send_raw(&frames::hangup(callsid, None))
    }

    /// `hangup` with the optional `message` of `Call.disconnect`.
    pub fn hangup_with_message(&self, callsid: &str, message: &str) -> Result<()> {
        self.send_raw(&frames::hangup(callsid, Some(message)))
    }

    /// `dtmf` digits (`0-9*#w`, as Call.sendDigits passes them).
    pub fn dtmf(&self, callsid: &str, digits: &str) -> Result<()> {
        self.send_raw(&frames::dtmf(callsid, digits))
    }

    /// `reinvite` (the SDK's ICE restart offer).
    pub fn reinvite(&self, sdp: &str, callsid: &str) -> Result<()> {
        self.send_raw(&frames::reinvite(sdp, callsid))
    }

    /// `message` (Call.sendMessage) with content type `application/json`;
    /// returns the `KX...` voice event sid the server's `ack` must carry.
    pub fn message(&self, callsid: &str, content: &Value, messagetype: &str) -> Result<String> {
        let sid = voice_event_sid();
        self.send_raw(&frames::message(callsid, content, "application/json", messagetype, &sid))?;
        Ok(sid)
    }

    /// Bridgehead extension: subscribe to identities of the token's account.
    pub fn presence_subscribe(&self, identities: &[&str]) -> Result<()> {
        self.send_raw(&frames::presence_subscribe(identities))
    }

    /// Bridgehead extension: end subscriptions.
    pub fn presence_unsubscribe(&self, identities: &[&str]) -> Result<()> {
        self.send_raw(&frames::presence_unsubscribe(identities))
    }

    /// Bridgehead extension: set this device `available` or `away`.
    pub fn presence_set(&self, status: &str) -> Result<()> {
        self.send_raw(&frames::presence_set(status))
    }

    /// Closes the socket like the SDK's `socket.close()` (a close frame
    /// without a status code).
    pub fn close(&mut self) -> Result<()> {
        let _ = self.commands.send(Command::Close);
        self.join_io();
        Ok(())
    }

    /// Ends the connection abruptly: no WebSocket close frame, and the TCP
    /// connection is reset (`SO_LINGER` 0), as when a network drops. Frames
    /// queued before this call are sent first.
    pub fn drop_abruptly(&mut self) {
        let _ = self.commands.send(Command::Abort);
        self.join_io();
    }

    fn join_io(&mut self) {
        if let Some(io) = self.io.take() {
            let _ = io.join();
        }
        // Collect what arrived before the end, keep the first close reason.
        while let Ok(event) = self.events.try_recv() {
            self.take(event);
        }
        if self.closed.is_none() {
            self.closed = Some(Closed::ByUs);
        }
    }

    fn take(&mut self, event: Event) -> Option<String> {
        match event {
            Event::Frame(frame) => self.queued.push_back(frame),
            Event::Closed(why) => {
                self.closed.get_or_insert(why);
            }
            Event::Malformed(text) => return Some(text),
        }
        None
    }

    /// Waits for the next frame of type `kind` and returns its payload;
    /// frames of other types stay queued for later calls. Fails on timeout
    /// (naming the frames seen), on close, and on a malformed frame.
    pub fn expect(&mut self, kind: &str, within: Duration) -> Result<Value> {
        Ok(self.expect_frame(kind, within)?.payload)
    }

    /// [`expect`](Self::expect), returning the whole frame.
    pub fn expect_frame(&mut self, kind: &str, within: Duration) -> Result<Frame> {
        let deadline = Instant::now() + within;
        let mut scanned = 0;
        loop {
            if let Some(i) = self.queued.iter().skip(scanned).position(|f| f.kind == kind) {
                return Ok(self.queued.remove(scanned + i).expect("index in range"));
            }
            scanned = self.queued.len();
            if let Some(why) = &self.closed {
                bail!("expected {kind:?} but the connection closed ({why:?}); queued: {}", self.describe_queue());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    if let Some(text) = self.take(event) {
                        bail!("expected {kind:?} but the server sent a malformed frame {text:?}");
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("no {kind:?} frame within {within:?}; queued: {}", self.describe_queue())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.closed.get_or_insert(Closed::Dropped("I/O thread ended".into()));
                }
            }
        }
    }

    /// The next frame of any type (queued ones first).
    pub fn next_frame(&mut self, within: Duration) -> Result<Frame> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(frame) = self.queued.pop_front() {
                return Ok(frame);
            }
            if let Some(why) = &self.closed {
                bail!("no frame: the connection closed ({why:?})");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    if let Some(text) = self.take(event) {
                        bail!("the server sent a malformed frame {text:?}");
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => bail!("no frame within {within:?}"),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.closed.get_or_insert(Closed::Dropped("I/O thread ended".into()));
                }
            }
        }
    }

    /// Frames received so far and not yet taken, without waiting.
    pub fn queued(&mut self) -> Vec<Frame> {
        while let Ok(event) = self.events.try_recv() {
            self.take(event);
        }
        self.queued.iter().cloned().collect()
    }

    /// Waits until the connection ends and says how; frames that arrive
    /// meanwhile stay queued.
    pub fn expect_closed(&mut self, within: Duration) -> Result<Closed> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(why) = &self.closed {
                return Ok(why.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    self.take(event);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("the connection is still open after {within:?}; queued: {}", self.describe_queue())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.closed.get_or_insert(Closed::Dropped("I/O thread ended".into()));
                }
            }
        }
    }

    fn describe_queue(&self) -> String {
        if self.queued.is_empty() {
            return "none".into();
        }
        self.queued.iter().map(|f| f.text.as_str()).collect::<Vec<_>>().join(" | ")
    }
}

impl Drop for VoiceClient {
    fn drop(&mut self) {
        if self.io.is_some() {
            let _ = self.commands.send(Command::Close);
            self.join_io();
        }
    }
}

/// A rustls client configuration that trusts exactly the certificates in
/// `pem`, offering ALPN `http/1.1` as browsers do for a WebSocket.
pub(crate) fn tls_client_config(pem: &Path) -> Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls_pki_types::CertificateDer::pem_file_iter(pem).with_context(|| format!("reading {}", pem.display()))?
    {
        roots.add(cert.with_context(|| format!("parsing {}", pem.display()))?)?;
    }
    if roots.is_empty() {
        bail!("{} holds no certificate", pem.display());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

type Ws = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// TCP connect, TLS, WebSocket upgrade (no subprotocol, as the SDK's
/// `new WebSocket(url)`). Returns the socket, a second handle on the TCP
/// socket (to reset it) and the local address.
async fn open(
    socket: tokio::net::TcpSocket,
    remote: SocketAddr,
    tls: Option<(Arc<rustls::ClientConfig>, rustls_pki_types::ServerName<'static>)>,
    url: &str,
) -> Result<(Ws, std::net::TcpStream, SocketAddr)> {
    let tcp = socket.connect(remote).await.with_context(|| format!("connecting to {remote}"))?;
    tcp.set_nodelay(true)?;
    let local = tcp.local_addr()?;
    let raw = tcp.into_std()?;
    let handle = raw.try_clone()?;
    let tcp = tokio::net::TcpStream::from_std(raw)?;
    let stream: Box<dyn Io> = match tls {
        Some((config, name)) => {
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {remote}"))?;
            Box::new(tls)
        }
        None => Box::new(tcp),
    };
    let (ws, _response) =
        tokio_tungstenite::client_async(url, stream).await.with_context(|| format!("WebSocket upgrade at {url}"))?;
    Ok((ws, handle, local))
}

/// The I/O loop: sends commanded frames, echoes heartbeats (wstransport.ts
/// `_onSocketMessage`), forwards frames, and closes the socket when nothing
/// arrived for `heartbeat_timeout` (`_setHeartbeatTimeout`).
async fn drive(
    mut ws: Ws,
    raw: std::net::TcpStream,
    mut commands: async_mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
    heartbeat_timeout: Option<Duration>,
    heartbeats: Arc<AtomicU64>,
) {
    let mut answer_heartbeats = true;
    let mut last_inbound = tokio::time::Instant::now();
    let far_future = Duration::from_secs(86_400 * 365);
    let ended = loop {
        let silence_deadline = last_inbound + heartbeat_timeout.unwrap_or(far_future);
        tokio::select! {
            // Commands first: a frame the test sent before something arrived
            // leaves before the answer to that arrival.
            biased;
            command = commands.recv() => match command {
                Some(Command::Send(text)) => {
                    if let Err(e) = ws.send(Message::text(text)).await {
                        break Closed::Dropped(format!("sending: {e}"));
                    }
                }
                Some(Command::AnswerHeartbeats(answer)) => answer_heartbeats = answer,
                Some(Command::Close) | None => {
                    let _ = ws.close(None).await;
                    break Closed::ByUs;
                }
                Some(Command::Abort) => {
                    reset(&raw);
                    break Closed::ByUs;
                }
            },
            message = ws.next() => {
                let message = match message {
                    None => break Closed::Dropped("end of stream".into()),
                    Some(Err(e)) => break Closed::Dropped(e.to_string()),
                    Some(Ok(message)) => message,
                };
                match message {
                    Message::Text(text) => {
                        last_inbound = tokio::time::Instant::now();
                        if text.as_str() == HEARTBEAT {
                            heartbeats.fetch_add(1, Ordering::Relaxed);
                            if answer_heartbeats {
                                if let Err(e) = ws.send(Message::text(HEARTBEAT)).await {
                                    break Closed::Dropped(format!("sending a heartbeat: {e}"));
                                }
                            }
                        } else {
                            let _ = events.send(parse_frame(text.as_str()));
                        }
                    }
                    Message::Binary(data) => {
                        last_inbound = tokio::time::Instant::now();
                        let _ = events.send(Event::Malformed(format!("binary frame of {} bytes", data.len())));
                    }
                    Message::Close(frame) => {
                        let (code, reason) = match frame {
                            Some(f) => (Some(u16::from(f.code)), f.reason.as_str().to_string()),
                            None => (None, String::new()),
                        };
                        // Let tungstenite answer the close, briefly.
                        let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
                        break Closed::ByServer { code, reason };
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
            _ = tokio::time::sleep_until(silence_deadline), if heartbeat_timeout.is_some() => {
                let _ = ws.close(None).await;
                break Closed::HeartbeatTimeout;
            }
        }
    };
    let _ = events.send(Event::Closed(ended));
}

/// Resets the TCP connection: `SO_LINGER` 0, then the last close sends RST.
fn reset(raw: &std::net::TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt::Linger};
    let linger = nix::libc::linger { l_onoff: 1, l_linger: 0 };
    let _ = setsockopt(raw, Linger, &linger);
}

/// Reads a server frame the way pstream.ts does (`JSON.parse`, then
/// `{type, payload = {}}`), stricter where the SDK would break: the frame
/// must be a JSON object with a string `type`, and a `payload`, when
/// present, an object (a `null` payload makes the SDK throw).
fn parse_frame(text: &str) -> Event {
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(text) else {
        return Event::Malformed(text.to_string());
    };
    let Some(Value::String(kind)) = map.remove("type") else {
        return Event::Malformed(text.to_string());
    };
    let payload = match map.remove("payload") {
        None => Value::Object(Default::default()),
        Some(p @ Value::Object(_)) => p,
        Some(_) => return Event::Malformed(text.to_string()),
    };
    let version = map.remove("version").and_then(|v| v.as_str().map(str::to_string));
    Event::Frame(Frame { kind, version, payload, text: text.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::UnboundedSender;

    const SDP: &str = "v=0\r\nm=audio 4000 RTP/AVP 0\r\n";

    /// Expected texts printed by Node 20 from the object literals of
    /// pstream.ts 2.18.5 (`JSON.stringify({payload, type, version})`).
    #[test]
    fn frames_match_the_sdk_byte_for_byte() {
        assert_eq!(
            frames::listen("ey.J\"\\\u{7}", 0),
            r#"{"payload":{"browserinfo":{"browser":{"platform":"unknown","userAgent":"bridgehead-test-harness voice_client"},"p":"browser","plugin":"rtc","v":"2.18.5"},"reconnectTimeout":0,"token":"ey.J\"\\\u0007"},"type":"listen","version":"1.6"}"#
        );
        assert_eq!(frames::register(true), r#"{"payload":{"media":{"audio":true}},"type":"register","version":"1.6"}"#);
        assert_eq!(
            frames::register(false),
            r#"{"payload":{"media":{"audio":false}},"type":"register","version":"1.6"}"#
        );
        let params = params_query(&[("To", "+1 555 0100"), ("x y", "a&b=c/ü\"\u{1}"), ("e", "")]);
        assert_eq!(params, "To=%2B1%20555%200100&x%20y=a%26b%3Dc%2F%C3%BC%22%01&e=");
        assert_eq!(
            frames::invite(SDP, "TJSa", &params),
            r#"{"payload":{"callsid":"TJSa","sdp":"v=0\r\nm=audio 4000 RTP/AVP 0\r\n","twilio":{"params":"To=%2B1%20555%200100&x%20y=a%26b%3Dc%2F%C3%BC%22%01&e="}},"type":"invite","version":"1.6"}"#
        );
        assert_eq!(
            frames::invite(SDP, "TJSa", ""),
            r#"{"payload":{"callsid":"TJSa","sdp":"v=0\r\nm=audio 4000 RTP/AVP 0\r\n","twilio":{}},"type":"invite","version":"1.6"}"#
        );
        assert_eq!(
            frames::reconnect(SDP, "CA1", "rt"),
            r#"{"payload":{"callsid":"CA1","reconnect":"rt","sdp":"v=0\r\nm=audio 4000 RTP/AVP 0\r\n","twilio":{}},"type":"invite","version":"1.6"}"#
        );
        assert_eq!(
            frames::answer(SDP, "CA1"),
            r#"{"payload":{"sdp":"v=0\r\nm=audio 4000 RTP/AVP 0\r\n","callsid":"CA1"},"type":"answer","version":"1.6"}"#
        );
        assert_eq!(
            frames::dtmf("CA1", "1#w*"),
            r#"{"payload":{"callsid":"CA1","dtmf":"1#w*"},"type":"dtmf","version":"1.6"}"#
        );
        assert_eq!(frames::hangup("TJSa", None), r#"{"payload":{"callsid":"TJSa"},"type":"hangup","version":"1.6"}"#);
        assert_eq!(
            frames::hangup("CA1", Some("bye\tnow")),
            r#"{"payload":{"callsid":"CA1","message":"bye\tnow"},"type":"hangup","version":"1.6"}"#
        );
        assert_eq!(frames::reject("CA1"), r#"{"payload":{"callsid":"CA1"},"type":"reject","version":"1.6"}"#);
        assert_eq!(
            frames::reinvite(SDP, "CA1"),
            r#"{"payload":{"sdp":"v=0\r\nm=audio 4000 RTP/AVP 0\r\n","callsid":"CA1"},"type":"reinvite","version":"1.6"}"#
        );
        assert_eq!(
            frames::message(
                "CA1",
                &serde_json::json!({"a": 1, "b": "x"}),
                "application/json",
                "user-defined-message",
                "KX00"
            ),
            r#"{"payload":{"callsid":"CA1","content":{"a":1,"b":"x"},"contenttype":"application/json","messagetype":"user-defined-message","voiceeventsid":"KX00"},"type":"message","version":"1.6"}"#
        );
        // JSON.stringify leaves DEL, U+2028 and astral characters as they are.
        assert_eq!(json_string("\u{7f}\u{2028}😀\u{8}\u{c}"), "\"\u{7f}\u{2028}😀\\b\\f\"");
    }

    #[test]
    fn presence_extension_frames() {
        assert_eq!(
            frames::presence_subscribe(&["bob", "carol"]),
            r#"{"payload":{"identities":["bob","carol"]},"type":"presence-subscribe","version":"1.6"}"#
        );
        assert_eq!(
            frames::presence_unsubscribe(&["bob"]),
            r#"{"payload":{"identities":["bob"]},"type":"presence-unsubscribe","version":"1.6"}"#
        );
        assert_eq!(
            frames::presence_set("away"),
            r#"{"payload":{"status":"away"},"type":"presence-set","version":"1.6"}"#
        );
        for frame in [frames::presence_subscribe(&[]), frames::listen("t", 30), frames::register(true)] {
            serde_json::from_str::<Value>(&frame).expect("valid JSON");
        }
    }

    #[test]
    fn custom_parameters_read_back_as_the_sdk_reads_them() {
        let query = params_query(&[("To", "+1 555"), ("note", "a&b=c ü")]);
        let read = query_to_params(&query).unwrap();
        assert_eq!(read, vec![("To".into(), "+1 555".into()), ("note".into(), "a&b=c ü".into())]);
        // The SDK turns '+' into a space, keeps keys undecoded and drops what follows a second '='.
        assert_eq!(
            query_to_params("a=x+y&b%20c=1&d=1=2&=z&e").unwrap(),
            vec![
                ("a".into(), "x y".into()),
                ("b%20c".into(), "1".into()),
                ("d".into(), "1".into()),
                ("e".into(), "".into())
            ]
        );
        assert!(query_to_params("a=%E0%A4").is_err(), "truncated UTF-8");
        assert!(query_to_params("a=%zz").is_err());
        assert_eq!(encode_uri_component("AZaz09-_.!~*'()"), "AZaz09-_.!~*'()");
        assert_eq!(encode_uri_component(" +&=/?#:@,;$"), "%20%2B%26%3D%2F%3F%23%3A%40%2C%3B%24");
    }

    #[test]
    fn temp_call_sids_are_shaped_like_the_sdks() {
        let a = temp_call_sid();
        assert_eq!(a.len(), 39, "{a}");
        assert!(a.starts_with("TJS"));
        let uuid = &a[3..];
        let groups: Vec<&str> = uuid.split('-').collect();
        assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), vec![8, 4, 4, 4, 12], "{a}");
        assert!(uuid.chars().all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)), "{a}");
        assert!(groups[2].starts_with('4'), "version 4: {a}");
        assert!("89ab".contains(&groups[3][..1]), "variant: {a}");
        assert_ne!(a, temp_call_sid());
        let kx = voice_event_sid();
        assert_eq!(kx.len(), 34);
        assert!(kx.starts_with("KX") && kx[2..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn plain_rtp_sdp_offers_g711_and_events_at_the_endpoint() {
        let addr: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let sdp = plain_rtp_sdp(addr);
        assert!(sdp.ends_with("\r\n") && !sdp.replace("\r\n", "").contains('\n'));
        assert!(sdp.contains("\r\nc=IN IP4 192.0.2.7\r\n"), "{sdp}");
        assert!(sdp.contains("\r\nm=audio 40000 RTP/AVP 0 8 101\r\n"), "{sdp}");
        for line in ["a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000"] {
            assert!(sdp.contains(line), "{line} in {sdp}");
        }
        assert_eq!(sdp_media_addr(&sdp).unwrap(), addr);
        assert_eq!(sdp_payload_types(&sdp), vec![0, 8, 101]);

        let v6: SocketAddr = "[2001:db8::5]:5004".parse().unwrap();
        let sdp6 = plain_rtp_sdp_with(v6, &[8]);
        assert!(sdp6.contains("c=IN IP6 2001:db8::5\r\n") && sdp6.contains("m=audio 5004 RTP/AVP 8\r\n"), "{sdp6}");
        assert_eq!(sdp_media_addr(&sdp6).unwrap(), v6);
    }

    #[test]
    fn media_address_prefers_the_audio_sections_connection() {
        let sdp = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n\
                   m=audio 7078 RTP/AVP 0\nc=IN IP4 203.0.113.9\nm=video 9000 RTP/AVP 96\nc=IN IP4 10.9.9.9\n";
        assert_eq!(sdp_media_addr(sdp).unwrap(), "203.0.113.9:7078".parse().unwrap());
        let session_only = "v=0\r\nc=IN IP4 198.51.100.2/127\r\nm=audio 6000/2 RTP/AVP 0\r\n";
        assert_eq!(sdp_media_addr(session_only).unwrap(), "198.51.100.2:6000".parse().unwrap());
        assert!(sdp_media_addr("v=0\r\nc=IN IP4 1.2.3.4\r\n").is_err(), "no m=audio");
        assert!(sdp_media_addr("v=0\r\nm=audio 1 RTP/AVP 0\r\n").is_err(), "no c=");
        assert!(sdp_media_addr("v=0\r\nc=IN IP4 host.example\r\nm=audio 1 RTP/AVP 0\r\n").is_err());
    }

    #[test]
    fn server_frames_are_read_as_the_sdk_reads_them() {
        let Event::Frame(f) = parse_frame(r#"{"type":"ready","version":"1.6"}"#) else { panic!() };
        assert_eq!(
            (f.kind.as_str(), f.version.as_deref(), f.payload.clone()),
            ("ready", Some("1.6"), serde_json::json!({}))
        );
        let Event::Frame(f) = parse_frame(r#"{"payload":{"callsid":"CA1"},"type":"cancel"}"#) else { panic!() };
        assert_eq!((f.kind.as_str(), f.version, f.payload["callsid"].as_str()), ("cancel", None, Some("CA1")));
        for bad in [r#"{"type":"ready","payload":null}"#, r#"{"payload":{}}"#, "ready", "\n\n", r#"["ready"]"#] {
            assert!(matches!(parse_frame(bad), Event::Malformed(_)), "{bad:?}");
        }
    }

    /// One WebSocket peer on loopback: what the test tells it to send goes
    /// to the client (`None` closes with 1000); what the client sends comes
    /// back as `Ok(text)`, the end of the connection as `Err(how)`.
    struct Peer {
        url: String,
        to_client: UnboundedSender<Option<String>>,
        from_client: mpsc::Receiver<std::result::Result<String, String>>,
    }

    impl Peer {
        fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Peer {
            let (url_tx, url_rx) = mpsc::channel();
            let (to_client, mut outgoing) = async_mpsc::unbounded_channel::<Option<String>>();
            let (seen_tx, from_client) = mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let scheme = if tls.is_some() { "wss" } else { "ws" };
                    url_tx.send(format!("{scheme}://{}/signal", listener.local_addr().unwrap())).unwrap();
                    let (tcp, _) = listener.accept().await.unwrap();
                    let stream: Box<dyn Io> = match tls {
                        Some(config) => Box::new(tokio_rustls::TlsAcceptor::from(config).accept(tcp).await.unwrap()),
                        None => Box::new(tcp),
                    };
                    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                    loop {
                        tokio::select! {
                            out = outgoing.recv() => match out {
                                Some(Some(text)) => ws.send(Message::text(text)).await.unwrap(),
                                _ => {
                                    let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                                        code: 1000.into(),
                                        reason: "bye".into(),
                                    };
                                    let _ = ws.close(Some(close)).await;
                                    let _ = seen_tx.send(Err("closed by server".into()));
                                    return;
                                }
                            },
                            msg = ws.next() => match msg {
                                Some(Ok(Message::Text(t))) => { let _ = seen_tx.send(Ok(t.as_str().to_string())); }
                                Some(Ok(Message::Close(f))) => {
                                    let _ = seen_tx.send(Err(format!("close frame {f:?}")));
                                    return;
                                }
                                Some(Ok(_)) => {}
                                Some(Err(e)) => { let _ = seen_tx.send(Err(format!("error: {e}"))); return; }
                                None => { let _ = seen_tx.send(Err("end of stream".into())); return; }
                            },
                        }
                    }
                });
            });
            Peer { url: url_rx.recv().unwrap(), to_client, from_client }
        }

        fn send(&self, text: &str) {
            self.to_client.send(Some(text.to_string())).unwrap();
        }

        fn received(&self) -> std::result::Result<String, String> {
            self.from_client.recv_timeout(Duration::from_secs(5)).expect("the peer saw something within 5 s")
        }
    }

    fn ws_options() -> ConnectOptions {
        ConnectOptions { heartbeat_timeout: None, ..Default::default() }
    }

    const SHORT: Duration = Duration::from_secs(5);

    #[test]
    fn loopback_frames_heartbeats_and_queueing() {
        let peer = Peer::start(None);
        let mut client = VoiceClient::connect_with(&peer.url, &ws_options()).unwrap();
        assert!(client.local_addr().ip().is_loopback());

        client.listen("tok").unwrap();
        assert_eq!(peer.received(), Ok(frames::listen("tok", 0)));

        // The SDK answers each "\n" with "\n" and shows none of them as frames.
        peer.send("\n");
        assert_eq!(peer.received(), Ok("\n".to_string()));
        assert_eq!(client.heartbeats_received(), 1);

        // expect() takes the frame it waits for and keeps the others, in order.
        peer.send(r#"{"type":"ringing","version":"1.6","payload":{"callsid":"CA1"}}"#);
        peer.send(r#"{"type":"ready","version":"1.6","payload":{}}"#);
        peer.send(r#"{"type":"connected","version":"1.6","payload":{"token":{"identity":"alice","ttl":3600}}}"#);
        let connected = client.expect("connected", SHORT).unwrap();
        assert_eq!(connected["token"]["identity"], "alice");
        assert_eq!(client.next_frame(SHORT).unwrap().kind, "ringing");
        assert_eq!(client.expect("ready", SHORT).unwrap(), serde_json::json!({}));
        let err = client.expect("invite", Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("no \"invite\""), "{err}");

        // Silenced, the client no longer echoes, but still sends frames.
        client.answer_heartbeats(false).unwrap();
        peer.send("\n");
        let seen = crate::settle(SHORT, || Ok(client.heartbeats_received()), |n| *n == 2).unwrap();
        assert_eq!(seen, 2);
        client.register().unwrap();
        assert_eq!(peer.received(), Ok(frames::register(true)), "no echo while silenced");
        client.answer_heartbeats(true).unwrap();
        peer.send("\n");
        assert_eq!(peer.received(), Ok("\n".to_string()));
        assert_eq!(client.heartbeats_received(), 3);

        // What the SDK could not parse fails the expectation.
        peer.send("not json");
        let err = client.expect("ready", SHORT).unwrap_err();
        assert!(err.to_string().contains("malformed"), "{err}");

        // Queued frames go out before the abrupt end; then no close frame.
        client.hangup("CA1").unwrap();
        client.drop_abruptly();
        assert_eq!(peer.received(), Ok(frames::hangup("CA1", None)));
        let end = peer.received().unwrap_err();
        assert!(!end.contains("close frame"), "an abrupt drop sends no close frame: {end}");
        assert_eq!(client.expect_closed(SHORT).unwrap(), Closed::ByUs);
        assert!(client.register().is_err());
    }

    #[test]
    fn loopback_silence_closes_the_socket_like_the_sdk() {
        let peer = Peer::start(None);
        let options = ConnectOptions { heartbeat_timeout: Some(Duration::from_secs(1)), ..Default::default() };
        let mut client = VoiceClient::connect_with(&peer.url, &options).unwrap();
        // Heartbeats every 100 ms keep it open past the timeout...
        for _ in 0..12 {
            peer.send("\n");
            assert_eq!(peer.received(), Ok("\n".to_string()));
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(client.expect_closed(Duration::from_millis(10)).is_err(), "still open");
        // ...silence closes it with a close frame.
        assert_eq!(client.expect_closed(SHORT).unwrap(), Closed::HeartbeatTimeout);
        assert!(peer.received().unwrap_err().contains("close frame"));
    }

    #[test]
    fn wss_with_the_appliance_certificate() {
        let dir = std::env::temp_dir().join(format!("bh-voice-client-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let identity = controlplane::tls::load_or_generate(None, &dir, &["127.0.0.1".to_string()]).unwrap();
        let peer = Peer::start(Some(identity.server_config(&[b"http/1.1"]).unwrap()));
        let cert = dir.join("tls").join("cert.pem");

        // Without the certificate to trust there is no connection.
        assert!(VoiceClient::connect_with(&peer.url, &ws_options()).is_err());

        let mut client = VoiceClient::connect(&peer.url, &cert).unwrap();
        client.presence_subscribe(&["bob"]).unwrap();
        assert_eq!(peer.received(), Ok(frames::presence_subscribe(&["bob"])));
        peer.send(r#"{"type":"presence","version":"1.6","payload":{"identity":"bob","status":"away","devices":1}}"#);
        assert_eq!(client.expect("presence", SHORT).unwrap()["status"], "away");
        peer.to_client.send(None).unwrap();
        assert_eq!(client.expect_closed(SHORT).unwrap(), Closed::ByServer { code: Some(1000), reason: "bye".into() });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_wrong_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("bh-voice-client-wrong-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let served = controlplane::tls::load_or_generate(None, &dir.join("a"), &["127.0.0.1".to_string()]).unwrap();
        controlplane::tls::load_or_generate(None, &dir.join("b"), &["127.0.0.1".to_string()]).unwrap();
        let peer = Peer::start(Some(served.server_config(&[b"http/1.1"]).unwrap()));
        let err = VoiceClient::connect(&peer.url, &dir.join("b").join("tls").join("cert.pem")).err().unwrap();
        assert!(format!("{err:#}").contains("TLS"), "{err:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
