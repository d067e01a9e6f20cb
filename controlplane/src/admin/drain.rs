//! `/drain`: the operator empties an appliance before maintenance.
//!
//! - `GET /drain`: `{"draining": false}`.
//! - `POST /drain` or `PUT /drain` with `on` or `off` (query `?on`,
//!   `?state=on`, or the body): sets it and answers the new state.
//!
//! A draining appliance says so in its gossip announcement (docs/fleet.md):
//! the route policy anchors no new media on it; the calls and clients it
//! holds stay.

use super::AdminState;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new().route("/drain", get(show).post(set).put(set))
}

async fn show(State(state): State<Arc<AdminState>>) -> Response {
    Json(serde_json::json!({"draining": state.draining.load(Ordering::Relaxed)})).into_response()
}

async fn set(State(state): State<Arc<AdminState>>, RawQuery(query): RawQuery, body: String) -> Response {
    let query = query.unwrap_or_default();
    let wanted = query.strip_prefix("state=").unwrap_or(&query).trim().to_string();
    let wanted = if wanted.is_empty() { body.trim().trim_matches('"').to_string() } else { wanted };
    let on = match wanted.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => true,
        "off" | "false" | "0" => false,
        _ => {
            return (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": "expected on or off"}))).into_response()
        }
    };
    let before = state.draining.swap(on, Ordering::Relaxed);
    if before != on {
        tracing::info!(draining = on, "drain flag set through the admin API");
    }
    Json(serde_json::json!({"draining": on})).into_response()
}
