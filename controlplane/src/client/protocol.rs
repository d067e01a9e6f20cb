//! The frames of the Voice JS SDK's signaling protocol ("PStream"), parsed
//! and emitted without I/O.
//!
//! Every frame is a WebSocket text message `{"type", "version", "payload"}`
//! (`@twilio/voice-sdk` 2.x `lib/twilio/pstream.ts`, `_publish`); a bare
//! `"\n"` is the heartbeat (`wstransport.ts`). docs/client-protocol.md has
//! the whole protocol with examples. What a client sends is parsed as
//! leniently as the SDK itself reads frames (unknown fields ignored); what
//! we send carries exactly the fields the SDK reads.

use serde_json::{json, Map, Value};

/// The version every frame of ours carries (`PSTREAM_VERSION`).
pub const VERSION: &str = "1.6";
/// Frames larger than this are refused (an SDP is a few KiB).
pub const MAX_FRAME: usize = 64 * 1024;

/// A frame from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// The bare newline.
    Heartbeat,
    /// Authenticate (or refresh the token of) this connection.
    Listen {
        token: String,
    },
    /// `register` with `media.audio`: true to become present, false to leave.
    Register {
        audio: bool,
    },
    /// A new call (`callsid` is the client's temporary `TJS...` id and
    /// `params` the URL-encoded custom parameters), or with `reconnect`, the
    /// return of a call whose socket dropped (`callsid` is then ours).
    Invite {
        callsid: String,
        sdp: String,
        params: String,
        reconnect: Option<String>,
    },
    Answer {
        callsid: String,
        sdp: String,
    },
    Reject {
        callsid: String,
    },
    /// Hang up (or cancel, before the answer): `callsid` is ours once the
    /// client knows it, the temporary one before.
    Hangup {
        callsid: String,
    },
    Dtmf {
        callsid: String,
        digits: String,
    },
    Reinvite {
        callsid: String,
        sdp: String,
    },
    /// A user-defined message of a call (`Call.sendMessage`).
    Message {
        callsid: String,
        voiceeventsid: Option<String>,
    },
    /// Ours: follow these identities' presence.
    PresenceSubscribe {
        identities: Vec<String>,
    },
    PresenceUnsubscribe {
        identities: Vec<String>,
    },
    /// Ours: the client sets its own status (`available` or `away`).
    PresenceSet {
        status: String,
    },
}

impl ClientMessage {
    /// The message type, as counted in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Heartbeat => "heartbeat",
            ClientMessage::Listen { .. } => "listen",
            ClientMessage::Register { .. } => "register",
            ClientMessage::Invite { .. } => "invite",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::Reject { .. } => "reject",
            ClientMessage::Hangup { .. } => "hangup",
            ClientMessage::Dtmf { .. } => "dtmf",
            ClientMessage::Reinvite { .. } => "reinvite",
            ClientMessage::Message { .. } => "message",
            ClientMessage::PresenceSubscribe { .. } => "presence-subscribe",
            ClientMessage::PresenceUnsubscribe { .. } => "presence-unsubscribe",
            ClientMessage::PresenceSet { .. } => "presence-set",
        }
    }
}

/// Why a client's frame was not understood. The connection stays; the
/// client gets an `error` frame with [`ProtocolError::CODE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame is larger than {MAX_FRAME} bytes")]
    TooLarge,
    #[error("frame is not a JSON object with a type: {0}")]
    NotJson(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("{kind}: payload.{field} is missing or not a string")]
    MissingField { kind: &'static str, field: &'static str },
}

impl ProtocolError {
    /// `ClientErrors.BadRequest` (31400) in the SDK's table.
    pub const CODE: u32 = 31400;
}

/// Parses one WebSocket text message from a client.
pub fn parse(text: &str) -> Result<ClientMessage, ProtocolError> {
    if text.len() > MAX_FRAME {
        return Err(ProtocolError::TooLarge);
    }
    if text.trim().is_empty() {
        return Ok(ClientMessage::Heartbeat);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    let Some(kind) = value.get("type").and_then(Value::as_str) else {
        return Err(ProtocolError::NotJson("no \"type\"".into()));
    };
    let empty = Map::new();
    let payload = value.get("payload").and_then(Value::as_object).unwrap_or(&empty);
    let p = Payload { kind: "", map: payload };
    Ok(match kind {
        "listen" => ClientMessage::Listen { token: p.with("listen").string("token")? },
        "register" => {
            let audio = payload.get("media").and_then(|m| m.get("audio")).and_then(Value::as_bool).unwrap_or(false);
            ClientMessage::Register { audio }
        }
        "invite" => {
            let p = p.with("invite");
            let params = payload
                .get("twilio")
                .and_then(|t| t.get("params"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            ClientMessage::Invite {
                callsid: p.string("callsid")?,
                sdp: p.string("sdp")?,
                params,
                reconnect: p.optional("reconnect"),
            }
        }
        "answer" => {
            let p = p.with("answer");
            ClientMessage::Answer { callsid: p.string("callsid")?, sdp: p.string("sdp")? }
        }
        "reject" => ClientMessage::Reject { callsid: p.with("reject").string("callsid")? },
        "hangup" => ClientMessage::Hangup { callsid: p.with("hangup").string("callsid")? },
        "dtmf" => {
            let p = p.with("dtmf");
            ClientMessage::Dtmf { callsid: p.string("callsid")?, digits: p.string("dtmf")? }
        }
        "reinvite" => {
            let p = p.with("reinvite");
            ClientMessage::Reinvite { callsid: p.string("callsid")?, sdp: p.string("sdp")? }
        }
        "message" => {
            let p = p.with("message");
            ClientMessage::Message { callsid: p.string("callsid")?, voiceeventsid: p.optional("voiceeventsid") }
        }
        "presence-subscribe" => ClientMessage::PresenceSubscribe { identities: identities(payload) },
        "presence-unsubscribe" => ClientMessage::PresenceUnsubscribe { identities: identities(payload) },
        "presence-set" => ClientMessage::PresenceSet { status: p.with("presence-set").string("status")? },
        other => return Err(ProtocolError::UnknownType(other.chars().take(40).collect())),
    })
}

struct Payload<'a> {
    kind: &'static str,
    map: &'a Map<String, Value>,
}

impl<'a> Payload<'a> {
    fn with(&self, kind: &'static str) -> Payload<'a> {
        Payload { kind, map: self.map }
    }

    fn string(&self, field: &'static str) -> Result<String, ProtocolError> {
        match self.map.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(ProtocolError::MissingField { kind: self.kind, field }),
        }
    }

    fn optional(&self, field: &str) -> Option<String> {
        self.map.get(field).and_then(Value::as_str).map(str::to_owned)
    }
}

fn identities(payload: &Map<String, Value>) -> Vec<String> {
    payload
        .get("identities")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The parameters of an incoming call's `invite` (`payload.parameters`,
/// which the SDK shows as `call.parameters`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingParameters {
    pub call_sid: String,
    pub account_sid: String,
    pub from: String,
    pub to: String,
    /// The `<Parameter>`s of the `<Client>` noun, URL-encoded (`Params`).
    pub params: String,
}

/// A frame to a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// The token was accepted: who the client is and how many seconds
    /// its token has left (the SDK warns `tokenRefreshMs` before).
    Connected {
        identity: String,
        ttl_s: i64,
        region: String,
    },
    Ready,
    Offline,
    Invite {
        callsid: String,
        sdp: String,
        parameters: IncomingParameters,
        reconnect: String,
    },
    Ringing {
        callsid: String,
        sdp: Option<String>,
    },
    Answer {
        callsid: String,
        sdp: String,
        reconnect: String,
    },
    Cancel {
        callsid: String,
    },
    Hangup {
        callsid: String,
        error: Option<(u32, String)>,
    },
    Ack {
        callsid: String,
        voiceeventsid: String,
    },
    Error {
        code: u32,
        message: String,
        callsid: Option<String>,
    },
    /// Ours: an identity's presence (see docs/client-protocol.md).
    Presence {
        identity: String,
        status: &'static str,
        devices: usize,
    },
}

impl ServerMessage {
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMessage::Connected { .. } => "connected",
            ServerMessage::Ready => "ready",
            ServerMessage::Offline => "offline",
            ServerMessage::Invite { .. } => "invite",
            ServerMessage::Ringing { .. } => "ringing",
            ServerMessage::Answer { .. } => "answer",
            ServerMessage::Cancel { .. } => "cancel",
            ServerMessage::Hangup { .. } => "hangup",
            ServerMessage::Ack { .. } => "ack",
            ServerMessage::Error { .. } => "error",
            ServerMessage::Presence { .. } => "presence",
        }
    }

    /// The frame's text.
    pub fn to_text(&self) -> String {
        let payload = match self {
            ServerMessage::Connected { identity, ttl_s, region } => json!({
                "region": region,
                "edge": region,
                "home": region,
                "token": { "identity": identity, "ttl": ttl_s },
            }),
            ServerMessage::Ready | ServerMessage::Offline => json!({}),
            ServerMessage::Invite { callsid, sdp, parameters, reconnect } => json!({
                "callsid": callsid,
                "sdp": sdp,
                "reconnect": reconnect,
                "parameters": {
                    "CallSid": parameters.call_sid,
                    "AccountSid": parameters.account_sid,
                    "From": parameters.from,
                    "To": parameters.to,
                    "Params": parameters.params,
                },
            }),
            ServerMessage::Ringing { callsid, sdp } => match sdp {
                Some(sdp) => json!({ "callsid": callsid, "sdp": sdp }),
                None => json!({ "callsid": callsid }),
            },
            ServerMessage::Answer { callsid, sdp, reconnect } => {
                json!({ "callsid": callsid, "sdp": sdp, "reconnect": reconnect })
            }
            ServerMessage::Cancel { callsid } => json!({ "callsid": callsid }),
            ServerMessage::Hangup { callsid, error } => match error {
                Some((code, message)) => {
                    json!({ "callsid": callsid, "error": { "code": code, "message": message } })
                }
                None => json!({ "callsid": callsid }),
            },
            ServerMessage::Ack { callsid, voiceeventsid } => {
                json!({ "callsid": callsid, "voiceeventsid": voiceeventsid, "acktype": "message" })
            }
            ServerMessage::Error { code, message, callsid } => match callsid {
                Some(callsid) => json!({ "callsid": callsid, "error": { "code": code, "message": message } }),
                None => json!({ "error": { "code": code, "message": message } }),
            },
            ServerMessage::Presence { identity, status, devices } => {
                json!({ "identity": identity, "status": status, "devices": devices })
            }
        };
        json!({ "type": self.kind(), "version": VERSION, "payload": payload }).to_string()
    }
}

/// Custom parameters as `a=1&b=2` (what `twilio.params` and `Params` carry).
pub fn decode_params(params: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(params.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

pub fn encode_params(params: &[(String, String)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        out.append_pair(k, v);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames as `PStream._publish` builds them: `{payload, type, version}`.
    fn frame(kind: &str, payload: Value) -> String {
        json!({ "payload": payload, "type": kind, "version": "1.6" }).to_string()
    }

    #[test]
    fn parses_what_the_sdk_sends() {
        let listen = frame("listen", json!({"browserinfo": {"p": "browser"}, "reconnectTimeout": 0, "token": "a.b.c"}));
        assert_eq!(parse(&listen), Ok(ClientMessage::Listen { token: "a.b.c".into() }));
        assert_eq!(
            parse(&frame("register", json!({"media": {"audio": true}}))),
            Ok(ClientMessage::Register { audio: true })
        );
        assert_eq!(
            parse(&frame("register", json!({"media": {"audio": false}}))),
            Ok(ClientMessage::Register { audio: false })
        );
        let invite = frame("invite", json!({"callsid": "TJSx", "sdp": "v=0", "twilio": {"params": "To=bob&x=1"}}));
        assert_eq!(
            parse(&invite),
            Ok(ClientMessage::Invite {
                callsid: "TJSx".into(),
                sdp: "v=0".into(),
                params: "To=bob&x=1".into(),
                reconnect: None
            })
        );
        let reconnect = frame("invite", json!({"callsid": "CAx", "reconnect": "r1", "sdp": "v=0", "twilio": {}}));
        assert!(matches!(parse(&reconnect), Ok(ClientMessage::Invite { reconnect: Some(r), .. }) if r == "r1"));
        assert_eq!(
            parse(&frame("dtmf", json!({"callsid": "CAx", "dtmf": "12#"}))),
            Ok(ClientMessage::Dtmf { callsid: "CAx".into(), digits: "12#".into() })
        );
        assert_eq!(parse("\n"), Ok(ClientMessage::Heartbeat));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(matches!(parse("{"), Err(ProtocolError::NotJson(_))));
        assert!(matches!(parse("[1]"), Err(ProtocolError::NotJson(_))));
        assert!(matches!(parse(&frame("teleport", json!({}))), Err(ProtocolError::UnknownType(t)) if t == "teleport"));
        assert_eq!(
            parse(&frame("answer", json!({"callsid": "CAx"}))),
            Err(ProtocolError::MissingField { kind: "answer", field: "sdp" })
        );
        assert_eq!(parse(&"x".repeat(MAX_FRAME + 1)), Err(ProtocolError::TooLarge));
    }

    #[test]
    fn emits_what_the_sdk_reads() {
        let text = ServerMessage::Connected { identity: "alice".into(), ttl_s: 3600, region: "gll".into() }.to_text();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "connected");
        assert_eq!(v["version"], "1.6");
        assert_eq!(v["payload"]["token"]["identity"], "alice");
        assert_eq!(v["payload"]["token"]["ttl"], 3600);

        let parameters = IncomingParameters {
            call_sid: "CA1".into(),
            account_sid: "AC1".into(),
            from: "+1555".into(),
            to: "client:alice".into(),
            params: "a=1".into(),
        };
        let text =
            ServerMessage::Invite { callsid: "CA1".into(), sdp: "v=0".into(), parameters, reconnect: "r".into() }
                .to_text();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["payload"]["parameters"]["CallSid"], "CA1");
        assert_eq!(v["payload"]["parameters"]["Params"], "a=1");
        assert_eq!(v["payload"]["sdp"], "v=0");

        let text = ServerMessage::Hangup { callsid: "CA1".into(), error: Some((31486, "Busy".into())) }.to_text();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["payload"]["error"]["code"], 31486);
        let text = ServerMessage::Error { code: 31204, message: "bad".into(), callsid: None }.to_text();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["payload"]["error"]["code"], 31204);
    }

    #[test]
    fn custom_parameters_round_trip() {
        let params = vec![("To".to_owned(), "+1 555".to_owned()), ("note".to_owned(), "a&b=c".to_owned())];
        assert_eq!(decode_params(&encode_params(&params)), params);
    }
}
