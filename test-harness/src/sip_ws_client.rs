//! A SIP-over-WebSocket test client (RFC 7118): a WSS connection with the
//! subprotocol `sip` that sends and receives whole SIP messages as text,
//! the way SIP.js and JsSIP put them on the wire. The test writes the SIP
//! itself (like a sipp scenario), so every header is the test's choice.

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

pub struct SipWsClient {
    runtime: tokio::runtime::Runtime,
    ws: Ws,
    local: SocketAddr,
    queued: VecDeque<String>,
}

impl SipWsClient {
    /// Connects to `wss://ip:port/path` trusting `ca_pem`, offering the
    /// subprotocol `sip`. Call it inside the namespace the socket belongs to.
    pub fn connect(remote: SocketAddr, path: &str, ca_pem: &Path) -> Result<SipWsClient> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let config = crate::voice_client::tls_client_config(ca_pem)?;
        let url = format!("wss://{remote}{path}");
        let (ws, local) = runtime.block_on(async {
            let tcp =
                tokio::net::TcpStream::connect(remote).await.with_context(|| format!("connecting to {remote}"))?;
            let local = tcp.local_addr()?;
            let name = rustls_pki_types::ServerName::try_from(remote.ip().to_string())?;
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.context("TLS handshake")?;
            let mut request = url.as_str().into_client_request()?;
            request.headers_mut().insert("Sec-WebSocket-Protocol", "sip".parse()?);
            let (ws, response) = tokio_tungstenite::client_async(request, tls).await.context("WebSocket upgrade")?;
            let protocol = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
            if protocol != Some("sip") {
                bail!("the server did not select the subprotocol sip: {protocol:?}");
            }
            Ok::<_, anyhow::Error>((ws, local))
        })?;
        Ok(SipWsClient { runtime, ws, local, queued: VecDeque::new() })
    }

    /// Our side of the connection (what a Via or Contact may name).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends one SIP message (lines joined with CRLF, as given).
    pub fn send(&mut self, message: &str) -> Result<()> {
        let text = message.replace("\r\n", "\n").replace('\n', "\r\n");
        self.runtime.block_on(self.ws.send(Message::Text(text.into()))).context("sending")
    }

    /// The next message that `matches` (others stay queued), within `within`.
    pub fn expect(&mut self, what: &str, within: Duration, matches: impl Fn(&str) -> bool) -> Result<String> {
        if let Some(i) = self.queued.iter().position(|m| matches(m)) {
            return self.queued.remove(i).ok_or_else(|| anyhow!("queue"));
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = self.runtime.block_on(async { tokio::time::timeout(left, self.ws.next()).await });
            let message = match next {
                Err(_) => bail!("no {what} within {within:?}; received meanwhile: {:#?}", self.queued),
                Ok(None) => bail!("the connection closed waiting for {what}"),
                Ok(Some(Err(e))) => bail!("the connection failed waiting for {what}: {e}"),
                Ok(Some(Ok(Message::Text(t)))) => t.as_str().to_owned(),
                Ok(Some(Ok(Message::Binary(b)))) => String::from_utf8_lossy(&b).into_owned(),
                Ok(Some(Ok(_))) => continue,
            };
            if matches(&message) {
                return Ok(message);
            }
            self.queued.push_back(message);
        }
    }

    /// The next response with status `code` (to any request).
    pub fn expect_status(&mut self, code: u16, within: Duration) -> Result<String> {
        let start = format!("SIP/2.0 {code} ");
        self.expect(&format!("a {code}"), within, |m| m.starts_with(&start))
    }

    /// The next request with `method`.
    pub fn expect_request(&mut self, method: &str, within: Duration) -> Result<String> {
        let start = format!("{method} ");
        self.expect(&format!("a {method}"), within, |m| m.starts_with(&start))
    }
}

/// A header's value in a SIP message (first occurrence, case-insensitive name).
pub fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().take_while(|l| !l.trim().is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The body of a SIP message.
pub fn body(message: &str) -> &str {
    message.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}
