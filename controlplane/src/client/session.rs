//! One client connection's signaling session, without I/O: token, presence
//! registration, heartbeat and expiry. Call messages pass through to the
//! call shell once the client is authenticated.
//!
//! ```text
//!   connect ──listen(token)──▶ Verify ──Verified(ok)──▶ connected ──register──▶ ready (present)
//!                                   └─Verified(err)─▶ error 312xx (may listen again)
//!   present ──register(audio:false)──▶ offline      token exp ──▶ error 31205, offline; calls go on
//!   silent for SILENCE ──▶ Close (the shell unregisters and ends or parks its calls)
//! ```
//!
//! The SDK drops a socket that hears nothing for 15 s and answers each
//! bare-newline heartbeat with one; we send one every [`HEARTBEAT_EVERY`]
//! and consider the client gone after [`SILENCE`] without a frame.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::protocol::{ClientMessage, ServerMessage};
use crate::routes::{DeviceId, PresenceStatus};
use crate::store::ApiKeySid;
use crate::token::{TokenError, VerifiedToken};

/// How often we send the heartbeat (the SDK gives up after 15 s of silence).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// A client that sent nothing (not even its heartbeat echo) for this long is gone.
pub const SILENCE: Duration = Duration::from_secs(30);
/// A connection that has not authenticated within this is closed.
pub const LISTEN_WITHIN: Duration = Duration::from_secs(15);

/// The SDK's codes (lib/twilio/errors/generated.ts) for what we refuse.
pub mod codes {
    /// `AuthorizationErrors.AuthorizationError`: a grant is missing.
    pub const NOT_AUTHORIZED: u32 = 31201;
    /// `AuthorizationErrors.InvalidJWTTokenError`: no valid token (yet).
    pub const INVALID_TOKEN: u32 = 31204;
    /// `AuthorizationErrors.JWTTokenExpiredError`.
    pub const TOKEN_EXPIRED: u32 = 31205;
    /// `GeneralErrors.UnknownError`: our side failed.
    pub const INTERNAL: u32 = 31000;
}

/// What the session is told.
#[derive(Debug)]
pub enum Input {
    Frame(ClientMessage),
    /// The result of verifying the token of the last [`Output::Verify`].
    Verified(Result<VerifiedToken, TokenError>),
    /// An API key was deleted.
    KeyRevoked(ApiKeySid),
    Timeout,
}

/// What the session asks of its shell.
#[derive(Debug, PartialEq)]
pub enum Output {
    Send(ServerMessage),
    /// A bare-newline heartbeat.
    Heartbeat,
    /// Verify this token and answer [`Input::Verified`].
    Verify(String),
    /// Make the device present (or refresh it) with the token's identity.
    Register,
    SetStatus(PresenceStatus),
    /// The device is no longer present (its calls go on).
    Unregister,
    /// A call message for the call shell, from an authenticated client.
    Call(ClientMessage),
    PresenceSubscribe(Vec<String>),
    PresenceUnsubscribe(Vec<String>),
    /// Close the connection; the shell unregisters the device and tells
    /// the call shell.
    Close(&'static str),
}

pub struct Session {
    pub device: DeviceId,
    token: Option<VerifiedToken>,
    /// The token ran out: no new calls, no presence; calls go on.
    expired: bool,
    registered: bool,
    connected_at: Instant,
    last_heard: Instant,
    next_heartbeat: Instant,
    /// The token's `exp` as an instant.
    expires_at: Option<Instant>,
    closed: bool,
    out: VecDeque<Output>,
}

impl Session {
    pub fn new(device: DeviceId, now: Instant) -> Session {
        Session {
            device,
            token: None,
            expired: false,
            registered: false,
            connected_at: now,
            last_heard: now,
            next_heartbeat: now + HEARTBEAT_EVERY,
            expires_at: None,
            closed: false,
            out: VecDeque::new(),
        }
    }

    pub fn token(&self) -> Option<&VerifiedToken> {
        self.token.as_ref()
    }

    pub fn is_registered(&self) -> bool {
        self.registered
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let mut next = self.next_heartbeat.min(self.last_heard + SILENCE);
        if self.token.is_none() {
            next = next.min(self.connected_at + LISTEN_WITHIN);
        }
        if let (Some(at), false) = (self.expires_at, self.expired) {
            next = next.min(at);
        }
        Some(next)
    }

    /// `now_unix`: the wall clock in seconds, for the token's `exp`.
    pub fn handle_input(&mut self, now: Instant, now_unix: i64, input: Input) {
        if self.closed {
            return;
        }
        match input {
            Input::Frame(message) => {
                self.last_heard = now;
                self.on_message(message);
            }
            Input::Verified(result) => self.on_verified(now, now_unix, result),
            Input::KeyRevoked(key) => {
                if self.token.as_ref().is_some_and(|t| t.key_sid == key) {
                    self.error(codes::INVALID_TOKEN, "the API key that signed this token was deleted");
                    self.close("key revoked");
                }
            }
            Input::Timeout => self.on_timeout(now),
        }
    }

    fn on_message(&mut self, message: ClientMessage) {
        match message {
            ClientMessage::Heartbeat => {}
            ClientMessage::Listen { token } => self.out.push_back(Output::Verify(token)),
            _ if self.token.is_none() => {
                self.error(codes::INVALID_TOKEN, "send listen with a valid token first");
            }
            ClientMessage::Register { audio: true } => {
                if self.expired {
                    return self.error(codes::TOKEN_EXPIRED, "the access token has expired");
                }
                self.registered = true;
                self.out.push_back(Output::Register);
                self.out.push_back(Output::Send(ServerMessage::Ready));
            }
            ClientMessage::Register { audio: false } => {
                self.unregister();
                self.out.push_back(Output::Send(ServerMessage::Offline));
            }
            ClientMessage::Invite { ref callsid, reconnect: None, .. } => {
                let allowed = self.token.as_ref().is_some_and(|t| t.outgoing.is_some());
                if self.expired {
                    let callsid = callsid.clone();
                    self.call_refused(callsid, codes::TOKEN_EXPIRED, "the access token has expired");
                } else if !allowed {
                    let callsid = callsid.clone();
                    self.call_refused(callsid, codes::NOT_AUTHORIZED, "the access token has no outgoing grant");
                } else {
                    self.out.push_back(Output::Call(message));
                }
            }
            ClientMessage::PresenceSubscribe { identities } => {
                self.out.push_back(Output::PresenceSubscribe(identities));
            }
            ClientMessage::PresenceUnsubscribe { identities } => {
                self.out.push_back(Output::PresenceUnsubscribe(identities));
            }
            ClientMessage::PresenceSet { status } => {
                let status = match status.as_str() {
                    "available" => PresenceStatus::Available,
                    "away" => PresenceStatus::Away,
                    _ => {
                        return self.error(super::protocol::ProtocolError::CODE, "status is available or away");
                    }
                };
                if self.registered {
                    self.out.push_back(Output::SetStatus(status));
                }
            }
            other => self.out.push_back(Output::Call(other)),
        }
    }

    fn on_verified(&mut self, now: Instant, now_unix: i64, result: Result<VerifiedToken, TokenError>) {
        match result {
            Ok(token) => {
                if let Some(old) = &self.token {
                    if old.account_sid != token.account_sid || old.identity != token.identity {
                        // A refresh is for the same client; another identity needs another connection.
                        return self.error(codes::INVALID_TOKEN, "a new token must name the same account and identity");
                    }
                }
                let ttl = (token.expires_at - now_unix).max(0);
                self.expires_at = Some(now + Duration::from_secs(ttl.unsigned_abs()));
                self.expired = false;
                let identity = token.identity.clone();
                self.token = Some(token);
                self.out.push_back(Output::Send(ServerMessage::Connected {
                    identity,
                    ttl_s: ttl,
                    region: String::new(),
                }));
            }
            Err(e) => {
                tracing::debug!(device = self.device.0, error = %e, "token refused");
                let code = e.wire_code();
                self.error(code, &e.to_string());
            }
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        if now >= self.last_heard + SILENCE {
            return self.close("heartbeat lost");
        }
        if self.token.is_none() && now >= self.connected_at + LISTEN_WITHIN {
            self.error(codes::INVALID_TOKEN, "no listen with a valid token in time");
            return self.close("no listen");
        }
        if let (Some(at), false) = (self.expires_at, self.expired) {
            if now >= at {
                self.expired = true;
                self.error(codes::TOKEN_EXPIRED, "the access token has expired");
                self.unregister();
                self.out.push_back(Output::Send(ServerMessage::Offline));
            }
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + HEARTBEAT_EVERY;
            self.out.push_back(Output::Heartbeat);
        }
    }

    fn unregister(&mut self) {
        if std::mem::replace(&mut self.registered, false) {
            self.out.push_back(Output::Unregister);
        }
    }

    fn error(&mut self, code: u32, message: &str) {
        self.out.push_back(Output::Send(ServerMessage::Error { code, message: message.to_owned(), callsid: None }));
    }

    /// A call the client may not place: its `hangup` with the reason, which
    /// the SDK matches to the call by the temporary id.
    fn call_refused(&mut self, callsid: String, code: u32, message: &str) {
        self.out.push_back(Output::Send(ServerMessage::Hangup { callsid, error: Some((code, message.to_owned())) }));
    }

    fn close(&mut self, why: &'static str) {
        self.unregister();
        self.closed = true;
        self.out.push_back(Output::Close(why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AccountSid;
    use crate::token::OutgoingGrant;

    const NOW_UNIX: i64 = 1_800_000_000;

    fn token(outgoing: bool) -> VerifiedToken {
        VerifiedToken {
            account_sid: AccountSid::parse("AC00000000000000000000000000000001").unwrap(),
            key_sid: ApiKeySid::parse("SK00000000000000000000000000000001").unwrap(),
            identity: "alice".into(),
            incoming_allow: true,
            outgoing: outgoing.then(|| OutgoingGrant {
                application_sid: crate::store::ApplicationSid::parse("AP00000000000000000000000000000001").unwrap(),
                params: serde_json::Map::new(),
            }),
            expires_at: NOW_UNIX + 60,
        }
    }

    fn drain(s: &mut Session) -> Vec<Output> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    fn listened(now: Instant, outgoing: bool) -> Session {
        let mut s = Session::new(DeviceId(1), now);
        s.handle_input(now, NOW_UNIX, Input::Frame(ClientMessage::Listen { token: "t".into() }));
        assert_eq!(drain(&mut s), vec![Output::Verify("t".into())]);
        s.handle_input(now, NOW_UNIX, Input::Verified(Ok(token(outgoing))));
        let out = drain(&mut s);
        assert!(matches!(&out[..], [Output::Send(ServerMessage::Connected { ttl_s: 60, .. })]), "{out:?}");
        s
    }

    #[test]
    fn listen_register_unregister() {
        let now = Instant::now();
        let mut s = listened(now, true);
        s.handle_input(now, NOW_UNIX, Input::Frame(ClientMessage::Register { audio: true }));
        assert_eq!(drain(&mut s), vec![Output::Register, Output::Send(ServerMessage::Ready)]);
        s.handle_input(now, NOW_UNIX, Input::Frame(ClientMessage::Register { audio: false }));
        assert_eq!(drain(&mut s), vec![Output::Unregister, Output::Send(ServerMessage::Offline)]);
    }

    #[test]
    fn nothing_before_a_valid_token() {
        let now = Instant::now();
        let mut s = Session::new(DeviceId(1), now);
        s.handle_input(now, NOW_UNIX, Input::Frame(ClientMessage::Register { audio: true }));
        let out = drain(&mut s);
        assert!(matches!(&out[..], [Output::Send(ServerMessage::Error { code: 31204, .. })]), "{out:?}");
        s.handle_input(now, NOW_UNIX, Input::Verified(Err(TokenError::BadSignature)));
        let out = drain(&mut s);
        assert!(matches!(&out[..], [Output::Send(ServerMessage::Error { .. })]), "{out:?}");
        assert!(s.token().is_none());
        // Never authenticated: closed after LISTEN_WITHIN.
        let later = now + LISTEN_WITHIN;
        s.handle_input(later, NOW_UNIX, Input::Timeout);
        assert!(drain(&mut s).contains(&Output::Close("no listen")));
    }

    #[test]
    fn outgoing_grant_is_required_to_invite() {
        let now = Instant::now();
        let mut s = listened(now, false);
        let invite =
            ClientMessage::Invite { callsid: "TJS1".into(), sdp: "v=0".into(), params: String::new(), reconnect: None };
        s.handle_input(now, NOW_UNIX, Input::Frame(invite.clone()));
        let out = drain(&mut s);
        assert!(
            matches!(&out[..], [Output::Send(ServerMessage::Hangup { callsid, error: Some((31201, _)) })] if callsid == "TJS1"),
            "{out:?}"
        );
        let mut s = listened(now, true);
        s.handle_input(now, NOW_UNIX, Input::Frame(invite.clone()));
        assert_eq!(drain(&mut s), vec![Output::Call(invite)]);
    }

    #[test]
    fn expiry_unregisters_and_keeps_the_connection() {
        let now = Instant::now();
        let mut s = listened(now, true);
        s.handle_input(now, NOW_UNIX, Input::Frame(ClientMessage::Register { audio: true }));
        drain(&mut s);
        // Heartbeats keep the client heard from.
        let mut t = now;
        while t < now + Duration::from_secs(61) {
            t += Duration::from_secs(5);
            s.handle_input(t, NOW_UNIX, Input::Frame(ClientMessage::Heartbeat));
            s.handle_input(t, NOW_UNIX, Input::Timeout);
        }
        let out = drain(&mut s);
        assert!(out.iter().any(|o| matches!(o, Output::Send(ServerMessage::Error { code: 31205, .. }))), "{out:?}");
        assert!(out.contains(&Output::Unregister));
        assert!(!out.iter().any(|o| matches!(o, Output::Close(_))));
        assert!(out.contains(&Output::Heartbeat));
        // Calls in progress still get through.
        let hangup = ClientMessage::Hangup { callsid: "CA1".into() };
        s.handle_input(t, NOW_UNIX, Input::Frame(hangup.clone()));
        assert_eq!(drain(&mut s), vec![Output::Call(hangup)]);
        // A fresh token brings it back.
        s.handle_input(
            t,
            NOW_UNIX + 60,
            Input::Verified(Ok(VerifiedToken { expires_at: NOW_UNIX + 3600, ..token(true) })),
        );
        assert!(matches!(&drain(&mut s)[..], [Output::Send(ServerMessage::Connected { .. })]));
    }

    #[test]
    fn silence_closes() {
        let now = Instant::now();
        let mut s = listened(now, true);
        s.handle_input(now, NOW_UNIX, Input::Frame(ClientMessage::Register { audio: true }));
        drain(&mut s);
        s.handle_input(now + SILENCE, NOW_UNIX, Input::Timeout);
        let out = drain(&mut s);
        assert_eq!(out, vec![Output::Unregister, Output::Close("heartbeat lost")]);
        assert_eq!(s.next_timeout(), None);
    }

    #[test]
    fn refresh_must_keep_the_identity() {
        let now = Instant::now();
        let mut s = listened(now, true);
        let other = VerifiedToken { identity: "mallory".into(), ..token(true) };
        s.handle_input(now, NOW_UNIX, Input::Verified(Ok(other)));
        assert!(matches!(&drain(&mut s)[..], [Output::Send(ServerMessage::Error { code: 31204, .. })]));
        assert_eq!(s.token().map(|t| t.identity.as_str()), Some("alice"));
    }

    #[test]
    fn revoked_key_closes() {
        let now = Instant::now();
        let mut s = listened(now, true);
        s.handle_input(now, NOW_UNIX, Input::KeyRevoked(token(true).key_sid));
        let out = drain(&mut s);
        assert_eq!(out.last(), Some(&Output::Close("key revoked")));
    }
}
