//! `/v1/dataplane/...`: the dataplane control API as JSON, for the tests,
//! operators and debugging tools (documented in docs/admin-api.md).

// Handlers return early with a ready `Response`; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use super::AdminState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dataplane::control::{ControlError, SessionRequest};
use dataplane::session::{LegSettings, PayloadTypeMap, SessionId};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/v1/dataplane/sessions", get(list).post(create))
        .route("/v1/dataplane/sessions/{id}", get(fetch).patch(update).delete(remove))
        .route("/v1/dataplane/sessions/{id}/digits", axum::routing::post(digits))
        .route("/v1/dataplane/workers", get(workers))
        .route("/v1/dataplane/events", get(events))
}

/// A leg as a request describes it; absent fields keep their defaults
/// (create) or their current values (update).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegBody {
    pub remote: Option<SocketAddr>,
    pub strict: Option<bool>,
    pub ssrc_rewrite: Option<bool>,
    pub pt_map: Option<Vec<(u8, u8)>>,
    pub clock_rate: Option<u32>,
}

impl LegBody {
    fn apply(&self, base: LegSettings) -> Result<LegSettings, String> {
        let pt_map = match &self.pt_map {
            Some(pairs) => PayloadTypeMap::new(pairs)
                .ok_or_else(|| format!("pt_map: at most {} pairs of payload types 0-127", PayloadTypeMap::CAPACITY))?,
            None => base.pt_map,
        };
        let clock_rate = self.clock_rate.unwrap_or(base.clock_rate);
        if !(1000..=192_000).contains(&clock_rate) {
            return Err(format!("clock_rate {clock_rate}: expected 1000-192000"));
        }
        Ok(LegSettings {
            remote: self.remote.or(base.remote),
            strict: self.strict.unwrap_or(base.strict),
            ssrc_rewrite: self.ssrc_rewrite.unwrap_or(base.ssrc_rewrite),
            pt_map,
            clock_rate,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    #[serde(default)]
    pub rtcp_mux: bool,
    #[serde(default)]
    pub legs: [LegBody; 2],
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    pub leg: usize,
    #[serde(flatten)]
    pub settings: LegBody,
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": code, "message": message.to_string()}))).into_response()
}

fn control_error(e: ControlError) -> Response {
    let (status, code) = match &e {
        ControlError::TableFull(_) => (StatusCode::SERVICE_UNAVAILABLE, "table_full"),
        ControlError::PortsExhausted => (StatusCode::SERVICE_UNAVAILABLE, "ports_exhausted"),
        ControlError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        ControlError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        ControlError::BindSocket(..) => (StatusCode::SERVICE_UNAVAILABLE, "bind_failed"),
        ControlError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
    };
    error(status, code, e)
}

fn parse_id(id: &str) -> Result<SessionId, Response> {
    id.parse().map(SessionId).map_err(|_| error(StatusCode::NOT_FOUND, "not_found", format!("no session {id:?}")))
}

/// JSON bodies that fail to parse get our error shape, not axum's text.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(bytes).map_err(|e| error(StatusCode::BAD_REQUEST, "invalid", e))
}

async fn list(State(state): State<Arc<AdminState>>) -> Response {
    let sessions = state.dataplane.sessions();
    Json(json!({"count": sessions.len(), "capacity": state.dataplane.capacity(), "sessions": sessions})).into_response()
}

async fn create(State(state): State<Arc<AdminState>>, bytes: axum::body::Bytes) -> Response {
    let request: CreateBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut legs = [LegSettings::default(); 2];
    for (leg, b) in legs.iter_mut().zip(&request.legs) {
        match b.apply(LegSettings::default()) {
            Ok(s) => *leg = s,
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e),
        }
    }
    let dp = state.dataplane.clone();
    let result =
        tokio::task::spawn_blocking(move || dp.create_session(SessionRequest { legs, rtcp_mux: request.rtcp_mux }))
            .await;
    match result {
        Ok(Ok(info)) => {
            state.metrics.sessions_created.inc();
            (StatusCode::CREATED, Json(info)).into_response()
        }
        Ok(Err(e)) => {
            state.metrics.session_refusals.get_or_create(&vec![("reason".to_string(), refusal(&e).to_string())]).inc();
            control_error(e)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

fn refusal(e: &ControlError) -> &'static str {
    match e {
        ControlError::TableFull(_) => "table_full",
        ControlError::PortsExhausted => "ports_exhausted",
        ControlError::Busy(_) => "busy",
        ControlError::BindSocket(..) => "bind_failed",
        ControlError::NotFound(_) | ControlError::Invalid(_) => "invalid",
    }
}

async fn fetch(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match state.dataplane.session(id) {
        Ok(info) => Json(info).into_response(),
        Err(e) => control_error(e),
    }
}

/// The session a path names and the request body, or the error response.
fn id_and_body<T: serde::de::DeserializeOwned>(id: &str, bytes: &[u8]) -> Result<(SessionId, T), Response> {
    Ok((parse_id(id)?, body(bytes)?))
}

async fn update(State(state): State<Arc<AdminState>>, Path(id): Path<String>, bytes: axum::body::Bytes) -> Response {
    let (id, request): (_, UpdateBody) = match id_and_body(&id, &bytes) {
        Ok(parsed) => parsed,
        Err(r) => return r,
    };
    if request.leg > 1 {
        return error(StatusCode::BAD_REQUEST, "invalid", "leg: 0 or 1");
    }
    let current = match state.dataplane.settings(id) {
        Ok(s) => s[request.leg],
        Err(e) => return control_error(e),
    };
    let settings = match request.settings.apply(current) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e),
    };
    match state.dataplane.update_session(id, request.leg, settings) {
        Ok(info) => Json(info).into_response(),
        Err(e) => control_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigitsBody {
    /// The leg whose peer hears them.
    pub leg: usize,
    pub digits: String,
    /// The telephone-event payload type that peer negotiated.
    #[serde(default = "default_event_pt")]
    pub payload_type: u8,
}

fn default_event_pt() -> u8 {
    101
}

/// Plays DTMF as RFC 4733 events toward a leg's peer (202: queued).
async fn digits(State(state): State<Arc<AdminState>>, Path(id): Path<String>, bytes: axum::body::Bytes) -> Response {
    let (id, request): (_, DigitsBody) = match id_and_body(&id, &bytes) {
        Ok(parsed) => parsed,
        Err(r) => return r,
    };
    match state.dataplane.send_digits(id, request.leg, &request.digits, request.payload_type) {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({"queued": request.digits}))).into_response(),
        Err(e) => control_error(e),
    }
}

async fn remove(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match state.dataplane.delete_session(id) {
        Ok(info) => {
            state.metrics.sessions_deleted.inc();
            Json(info).into_response()
        }
        Err(e) => control_error(e),
    }
}

async fn workers(State(state): State<Arc<AdminState>>) -> Response {
    Json(json!({"workers": state.dataplane.worker_stats()})).into_response()
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
}

async fn events(State(state): State<Arc<AdminState>>, Query(q): Query<EventsQuery>) -> Response {
    let wait = Duration::from_millis(q.wait_ms.min(30_000));
    let (last, events) = state.events.wait_after(q.after, wait).await;
    Json(json!({"last": last, "events": events})).into_response()
}
