//! The admin listener: plain HTTP, loopback by default.
//!
//! - `/live`: the process answers.
//! - `/ready`: every subsystem is up (the dataplane workers run).
//! - `/metrics`: Prometheus text format.
//! - `/drain`: the draining flag gossiped to the fleet (`drain.rs`).
//! - `/v1/dataplane/...`: the dataplane control API as JSON (docs/admin-api.md).
//!
//! State-changing routes need `Authorization: Bearer <listen.admin_token>`
//! when a token is configured (it must be when the listener is not loopback).

pub mod dataplane_api;
pub mod drain;
pub mod events;
pub mod metrics;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dataplane::DataplaneHandle;
use std::sync::Arc;

pub struct AdminState {
    pub dataplane: DataplaneHandle,
    pub metrics: metrics::Metrics,
    pub events: Arc<events::EventLog>,
    pub admin_token: Option<String>,
    /// Set through `/drain`; the fleet announcer reads it.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .merge(dataplane_api::routes())
        .merge(drain::routes())
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn ready(State(state): State<Arc<AdminState>>) -> Response {
    if state.dataplane.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "dataplane workers not running\n").into_response()
    }
}

async fn metrics_text(State(state): State<Arc<AdminState>>) -> Response {
    match state.metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("metrics encoding failed: {e}\n")).into_response(),
    }
}

/// Reads pass; writes need the bearer token when one is configured.
async fn require_token(State(state): State<Arc<AdminState>>, request: Request, next: Next) -> Response {
    let writes = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if let (true, Some(expected)) = (writes, state.admin_token.as_deref()) {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes())) {
            return (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({"error": "admin token required"})))
                .into_response();
        }
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
