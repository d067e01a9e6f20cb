//! The shell of a client connection: the WebSocket at `/signal`, one task
//! per socket, driving a [`Session`] and doing its I/O.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::protocol::{self, ClientMessage, ServerMessage};
use super::session::{Input, Output, Session};
use super::{ClientEvent, ClientHub, ClientInfo, ToDevice};
use crate::routes::{DeviceRoute, PresenceStatus};

/// Largest frame or message a client may send.
const MAX_MESSAGE: usize = protocol::MAX_FRAME;
/// What tungstenite buffers per socket: small, since most sockets are idle
/// (the default 128 KiB read buffer would be most of a client's memory).
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 4 * 1024;
/// A frame not taken by the client's socket within this closes the connection.
const SEND_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The client routes, to merge into the https listener's router: `/signal`
/// (the Voice SDK) and `/sip`, `/` (SIP over WebSocket).
pub fn router(hub: Arc<ClientHub>) -> Router {
    Router::new()
        .route("/signal", get(upgrade))
        .route("/sip", get(super::sip_ws::upgrade))
        .route("/", get(super::sip_ws::upgrade))
        .with_state(hub)
}

async fn upgrade(State(hub): State<Arc<ClientHub>>, ws: WebSocketUpgrade) -> Response {
    let Some((device, rx)) = hub.attach() else {
        tracing::warn!(limit = hub.max_connections, "client connection refused: at the connection limit");
        return (StatusCode::SERVICE_UNAVAILABLE, "at the client connection limit").into_response();
    };
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_failed_upgrade({
            // The connection went away before it became a WebSocket.
            let hub = hub.clone();
            move |_| hub.detach(device)
        })
        .on_upgrade(move |socket| run(hub, device, rx, socket))
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

struct Connection {
    hub: Arc<ClientHub>,
    session: Session,
    socket: WebSocket,
    /// Set once the token is verified; shared with every call event.
    client: Option<Arc<ClientInfo>>,
    closing: Option<&'static str>,
}

async fn run(
    hub: Arc<ClientHub>,
    device: crate::routes::DeviceId,
    mut rx: tokio::sync::mpsc::Receiver<ToDevice>,
    socket: WebSocket,
) {
    let mut c = Connection { session: Session::new(device, Instant::now()), hub, socket, client: None, closing: None };
    loop {
        if let Some(why) = c.closing {
            tracing::debug!(device = device.0, why, "closing client connection");
            let _ = tokio::time::timeout(SEND_WITHIN, c.socket.send(Message::Close(None))).await;
            break;
        }
        let deadline = c.session.next_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let input = tokio::select! {
            frame = c.socket.recv() => match frame {
                Some(Ok(Message::Text(text))) => match protocol::parse(text.as_str()) {
                    Ok(message) => {
                        c.hub.stats.count_received(message.kind());
                        Input::Frame(message)
                    }
                    Err(e) => {
                        c.hub.stats.count_received("malformed");
                        let error = ServerMessage::Error { code: protocol::ProtocolError::CODE, message: e.to_string(), callsid: None };
                        c.send(error).await;
                        continue;
                    }
                },
                // Pings are answered by the library; anything else is a sign of life.
                Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => Input::Frame(ClientMessage::Heartbeat),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            to = rx.recv() => match to {
                // Cut off by the hub (it did not read its frames).
                None => break,
                Some(ToDevice::Frame(frame)) => {
                    c.send(*frame).await;
                    continue;
                }
                Some(ToDevice::Revoked(key)) => Input::KeyRevoked(key),
            },
            () = sleep => Input::Timeout,
        };
        c.session.handle_input(Instant::now(), unix_now(), input);
        c.pump().await;
    }
    c.hub.detach(device);
}

impl Connection {
    async fn send(&mut self, frame: ServerMessage) {
        self.hub.stats.count_sent(frame.kind());
        self.write(Message::Text(frame.to_text().into())).await;
    }

    /// Writes one message; a socket that takes no data for [`SEND_WITHIN`]
    /// (a stalled client) is closed rather than holding its task.
    async fn write(&mut self, message: Message) {
        match tokio::time::timeout(SEND_WITHIN, self.socket.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => self.closing = Some("send failed"),
            Err(_) => self.closing = Some("send timed out"),
        }
    }

    async fn pump(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Send(frame) => self.send(frame).await,
                Output::Heartbeat => {
                    self.write(Message::Text("\n".into())).await;
                }
                Output::Verify(token) => {
                    let hub = &self.hub;
                    let result = crate::token::verify(&token, unix_now(), |sid| hub.api_key(sid));
                    if let Err(e) = &result {
                        hub.stats.count_refusal(e);
                    }
                    if let Ok(t) = &result {
                        self.hub.set_key(self.session.device, t.key_sid.clone());
                        self.client = Some(Arc::new(ClientInfo {
                            account: t.account_sid.clone(),
                            identity: t.identity.clone(),
                            incoming: t.incoming_allow,
                            outgoing: t.outgoing.clone(),
                        }));
                        if self.session.is_registered() {
                            if let Some(error) = self.register() {
                                self.send(error).await;
                            }
                        }
                    }
                    self.session.handle_input(Instant::now(), unix_now(), Input::Verified(result));
                }
                Output::Register => {
                    if let Some(error) = self.register() {
                        self.send(error).await;
                    }
                }
                Output::SetStatus(status) => self.hub.routes.set_status(self.session.device, status),
                Output::Unregister => self.hub.routes.unregister(self.session.device),
                Output::Call(message) => {
                    if let Some(client) = &self.client {
                        let event =
                            ClientEvent::Message { device: self.session.device, client: client.clone(), message };
                        let _ = self.hub.calls.send(event);
                    }
                }
                Output::PresenceSubscribe(identities) => {
                    let Some(client) = self.client.clone() else { continue };
                    self.hub.watch(self.session.device, &client.account, &identities);
                    for identity in identities {
                        let p = self.hub.routes.presence(&client.account, &identity);
                        let frame = ServerMessage::Presence {
                            identity: p.identity,
                            status: super::status_name(p.status),
                            devices: p.devices,
                        };
                        self.send(frame).await;
                    }
                }
                Output::PresenceUnsubscribe(identities) => {
                    if let Some(client) = &self.client {
                        self.hub.unwatch(self.session.device, &client.account, &identities);
                    }
                }
                Output::Close(why) => self.closing = Some(why),
            }
        }
    }

    /// Makes (or keeps) the device present under the token's identity;
    /// the error frame to send if the route store refuses.
    fn register(&mut self) -> Option<ServerMessage> {
        let client = self.client.as_ref()?;
        let route = DeviceRoute {
            device: self.session.device,
            account: client.account.clone(),
            identity: client.identity.clone(),
            status: PresenceStatus::Available,
            incoming: client.incoming,
            appliance: self.hub.appliance.clone(),
            registered_at: SystemTime::now(),
        };
        let refused = self.hub.routes.register(route).err()?;
        tracing::warn!(error = %refused, "client registration refused");
        Some(ServerMessage::Error {
            code: super::session::codes::INTERNAL,
            message: refused.to_string(),
            callsid: None,
        })
    }
}
