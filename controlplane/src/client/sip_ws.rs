//! SIP over WebSocket (RFC 7118) for SIP.js and JsSIP clients: a
//! WebSocket with the subprotocol `sip` at `/` or `/sip` of the `https`
//! listener, joined to the SIP stack as one more connection. Each
//! WebSocket message carries exactly one SIP message; the call shell
//! answers REGISTER (the access token as `Authorization: Bearer`, RFC
//! 8898) and INVITE like any other SIP request (docs/clients.md).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::{ClientEvent, ClientHub};

/// A SIP message is at most this large (RFC 7118 sets no limit; ours
/// matches the stream transports').
const MAX_MESSAGE: usize = 64 * 1024;
const BUFFER: usize = 8 * 1024;

/// Upgrades a request that asks for the subprotocol `sip` (RFC 7118 5.1).
pub async fn upgrade(
    State(hub): State<Arc<ClientHub>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let offered = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("sip"));
    if !offered {
        return (StatusCode::BAD_REQUEST, "SIP over WebSocket needs the subprotocol \"sip\"").into_response();
    }
    let Some(sip) = hub.sip().cloned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "SIP is not running").into_response();
    };
    if !hub.reserve() {
        tracing::warn!(limit = hub.max_connections, "client connection refused: at the connection limit");
        return (StatusCode::SERVICE_UNAVAILABLE, "at the client connection limit").into_response();
    }
    ws.protocols(["sip"])
        .read_buffer_size(BUFFER)
        .write_buffer_size(BUFFER)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_failed_upgrade({
            let hub = hub.clone();
            move |_| hub.release()
        })
        .on_upgrade(move |socket| run(hub, sip, remote, socket))
}

async fn run(hub: Arc<ClientHub>, sip: crate::sip::transport::SipHandle, remote: SocketAddr, mut socket: WebSocket) {
    let mut link = sip.attach_ws(remote);
    let connection = link.peer.connection.unwrap_or_default();
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    if !link.deliver(Bytes::from(text.as_str().to_owned())).await {
                        break;
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    if !link.deliver(bytes).await {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            out = link.outbound.recv() => match out {
                Some(bytes) => {
                    // SIP is text; a message that is not UTF-8 goes as binary.
                    let message = match String::from_utf8(bytes.to_vec()) {
                        Ok(text) => Message::Text(text.into()),
                        Err(_) => Message::Binary(bytes),
                    };
                    if socket.send(message).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    drop(link);
    hub.release();
    let _ = hub.calls.send(ClientEvent::SipClosed { connection });
}
