//! `/Clients.json` (list) and `/Clients/{identity}.json` (fetch): the
//! presence of the account's client identities, read from the
//! [`RouteStore`](crate::routes::RouteStore) (docs/presence.md).
//!
//! - The list holds every identity with at least one registered device,
//!   sorted by identity, each as `{"identity", "status", "devices"}`, in the
//!   usual paging envelope under `clients`. Filters: `Identity` (exact) and
//!   `Status` (`available`, `busy`, `away`; `offline` lists nothing, an
//!   offline identity having no device).
//! - Fetching an identity no device holds answers it `offline` with 0
//!   devices: absence is an answer, not a 404.
//! - Presence is the account's own: another account's identities of the
//!   same name are other identities.

use super::auth::Caller;
use super::error::{code, ApiError};
use super::paging::{envelope, page_of, Paging};
use super::params::Params;
use super::ApiState;
use crate::routes::{Presence, PresenceStatus};
use axum::extract::OriginalUri;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;
use std::sync::Arc;

pub async fn list(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let query = Params::from_query(&uri);
    let paging = Paging::from_query(&query)?;
    let identity = query.get("Identity").filter(|i| !i.is_empty());
    let status = match query.get("Status") {
        None | Some("") => None,
        Some(s) => Some(PresenceStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                code::INVALID_PARAMETER,
                format!("Status must be available, busy, away or offline, not {s:?}"),
            )
        })?),
    };
    // The store answers from memory under a short lock: no blocking pool.
    let mut clients = match identity {
        Some(identity) => {
            let p = state.routes.presence(caller.sid(), identity);
            if p.devices > 0 {
                vec![p]
            } else {
                Vec::new()
            }
        }
        None => state.routes.list(caller.sid()),
    };
    if let Some(status) = status {
        clients.retain(|p| p.status == status);
    }
    let (clients, has_more) = page_of(clients, paging);
    let filters: Vec<(&str, String)> =
        ["Identity", "Status"].into_iter().filter_map(|f| query.get(f).map(|v| (f, v.to_string()))).collect();
    let items = clients.iter().map(render).collect();
    Ok(Json(envelope(uri.path(), &filters, paging, has_more, "clients", items)))
}

pub async fn fetch(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path((_, segment)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let identity =
        segment.strip_suffix(".json").filter(|i| !i.is_empty()).ok_or_else(|| ApiError::not_found(uri.path()))?;
    Ok(Json(render(&state.routes.presence(caller.sid(), identity))))
}

/// An identity's presence as the API writes it.
pub fn render(presence: &Presence) -> Value {
    serde_json::json!({
        "identity": presence.identity,
        "status": presence.status.as_str(),
        "devices": presence.devices,
    })
}
