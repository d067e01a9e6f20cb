//! The REST API on the `https` listener, shaped like Twilio's 2010-04-01
//! API so that an application written for Twilio's helper libraries runs
//! against the appliance unchanged.
//!
//! ```text
//!   /2010-04-01/Accounts/{AccountSid}
//!     .json                               accounts.rs      fetch
//!     /Applications.json, /{AP}.json      applications.rs  list create | fetch update delete
//!     /IncomingPhoneNumbers.json, /{PN}   phone_numbers.rs list create | fetch update delete
//!     /Keys.json, /{SK}.json              keys.rs          list create | fetch update delete
//!     /Calls.json, /{CA}.json             calls.rs         list create | fetch update
//!     /Clients.json, /{identity}.json     clients.rs       list | fetch (presence)
//!
//!   auth.rs     HTTP Basic: account SID + auth token, or API key SID + secret
//!   params.rs   form-encoded bodies and query strings, PascalCase names
//!   paging.rs   PageSize / Page / PageToken, the list envelope
//!   error.rs    {"code", "message", "more_info", "status"} with Twilio's codes
//! ```
//!
//! Answers are JSON with Twilio's snake_case field names, dates in RFC 2822
//! (`Wed, 18 Aug 2010 20:01:40 +0000`). The store is synchronous; every
//! handler calls it through `spawn_blocking`.
//!
//! Creating and changing live calls needs the call machinery, reached
//! through the [`CallControl`] trait; without one (`ApiState::calls` is
//! `None`) `POST .../Calls.json` and `POST .../Calls/{CA}.json` answer 503.
//! Deleting an API key is announced on [`ApiState::revocations`] so that
//! client sessions authenticated with it can be closed. Client presence is
//! read from [`ApiState::routes`]; `ApiState::new` gives an empty store
//! (nothing registers in it), [`ApiState::with_routes`] the appliance's.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn f(store: Arc<dyn controlplane::store::Store>) {
//! use controlplane::api::{router, ApiState};
//! let state = ApiState::new(store, None);
//! let mut revoked = state.subscribe_revocations();
//! let app: axum::Router = router(state);
//! # }
//! ```

pub mod accounts;
pub mod applications;
pub mod auth;
pub mod calls;
pub mod clients;
pub mod error;
pub mod keys;
pub mod paging;
pub mod params;
pub mod phone_numbers;

#[cfg(test)]
mod tests;

pub use auth::{Caller, Credential};
pub use calls::{CallControl, CallFuture, CreateCall, UpdateCall};
pub use error::ApiError;

use crate::routes::{InProcessRoutes, RouteStore};
use crate::store::{AccountSid, ApiKeySid, Store};
use axum::extract::OriginalUri;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tokio::sync::broadcast;

/// The API version in every path and every answer.
pub const API_VERSION: &str = "2010-04-01";
/// Where the account-scoped resources live.
pub const ACCOUNTS_PREFIX: &str = "/2010-04-01/Accounts/";

/// An API key was deleted: whatever it authenticated (client sessions with
/// access tokens it signed) must stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRevoked {
    pub account_sid: AccountSid,
    pub key_sid: ApiKeySid,
}

/// What the API's handlers share.
pub struct ApiState {
    pub store: Arc<dyn Store>,
    /// The call machinery, once there is one.
    pub calls: Option<Arc<dyn CallControl>>,
    /// Announces deleted API keys. Sending never blocks; a subscriber that
    /// lags behind by more than the channel's capacity sees `Lagged` and
    /// should re-check the keys it relies on against the store.
    pub revocations: broadcast::Sender<KeyRevoked>,
    /// Presence of client devices (`/Clients.json`).
    pub routes: Arc<dyn RouteStore>,
}

impl ApiState {
    /// How many revocations a slow subscriber may fall behind.
    pub const REVOCATION_BACKLOG: usize = 256;

    /// The API over `store`, with `calls` if there is a call layer, and an
    /// empty route store: `/Clients.json` lists nobody.
    pub fn new(store: Arc<dyn Store>, calls: Option<Arc<dyn CallControl>>) -> Arc<ApiState> {
        // Limit 0: nothing can register in a store nobody else holds.
        ApiState::with_routes(store, calls, Arc::new(InProcessRoutes::new("", 0)))
    }

    /// The API with the appliance's route store, which the client
    /// signaling registers devices in.
    pub fn with_routes(
        store: Arc<dyn Store>,
        calls: Option<Arc<dyn CallControl>>,
        routes: Arc<dyn RouteStore>,
    ) -> Arc<ApiState> {
        let (revocations, _) = broadcast::channel(Self::REVOCATION_BACKLOG);
        Arc::new(ApiState { store, calls, revocations, routes })
    }

    /// A receiver of every API key deleted from now on.
    pub fn subscribe_revocations(&self) -> broadcast::Receiver<KeyRevoked> {
        self.revocations.subscribe()
    }
}

/// The routes under `/2010-04-01`. Paths there that match no resource get
/// Twilio's 404 body, a wrong method its 405 body; the router has no
/// fallback of its own outside `/2010-04-01`, so it merges with others
/// (`/signal`, the web UI).
pub fn router(state: Arc<ApiState>) -> Router {
    const ACCOUNT: &str = "/Accounts/{account}";
    let api = Router::new()
        .route(ACCOUNT, get(accounts::fetch))
        .route(&format!("{ACCOUNT}/Applications.json"), get(applications::list).post(applications::create))
        .route(
            &format!("{ACCOUNT}/Applications/{{sid}}"),
            get(applications::fetch).post(applications::update).delete(applications::delete),
        )
        .route(&format!("{ACCOUNT}/IncomingPhoneNumbers.json"), get(phone_numbers::list).post(phone_numbers::create))
        .route(
            &format!("{ACCOUNT}/IncomingPhoneNumbers/{{sid}}"),
            get(phone_numbers::fetch).post(phone_numbers::update).delete(phone_numbers::delete),
        )
        .route(&format!("{ACCOUNT}/Keys.json"), get(keys::list).post(keys::create))
        .route(&format!("{ACCOUNT}/Keys/{{sid}}"), get(keys::fetch).post(keys::update).delete(keys::delete))
        .route(&format!("{ACCOUNT}/Calls.json"), get(calls::list).post(calls::create))
        .route(&format!("{ACCOUNT}/Calls/{{sid}}"), get(calls::fetch).post(calls::update))
        .route(&format!("{ACCOUNT}/Clients.json"), get(clients::list))
        .route(&format!("{ACCOUNT}/Clients/{{identity}}"), get(clients::fetch))
        .fallback(|OriginalUri(uri): OriginalUri| async move { ApiError::not_found(uri.path()) })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(state);
    Router::new().nest(&format!("/{API_VERSION}"), api)
}

/// Runs a store call on the blocking pool.
impl ApiState {
    /// Runs `op` against the store for `caller`'s account, off the async
    /// runtime (the store is synchronous); a store error becomes the API's
    /// answer for `path` (404 for a missing object, 409, 400, 500).
    pub(crate) async fn store_op<T: Send + 'static>(
        &self,
        caller: &Caller,
        path: &str,
        op: impl FnOnce(&dyn Store, &AccountSid) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (store, account) = (self.store.clone(), caller.sid().clone());
        blocking(move || op(store.as_ref(), &account)).await?.map_err(|e| ApiError::from_store(e, path))
    }
}

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)
}

/// The SID in a `{sid}.json` path segment, or the 404 of `path` when the
/// segment is not `.json` or not a SID of the kind (Twilio answers a
/// malformed SID with 404 too).
pub(crate) fn sid_in_segment<T>(
    segment: &str,
    parse: impl Fn(&str) -> Result<T, crate::store::SidError>,
    path: &str,
) -> Result<T, ApiError> {
    segment.strip_suffix(".json").and_then(|s| parse(s).ok()).ok_or_else(|| ApiError::not_found(path))
}

/// `/2010-04-01/Accounts/{sid}` and what follows.
pub(crate) fn account_uri(account: &AccountSid, rest: &str) -> String {
    format!("{ACCOUNTS_PREFIX}{account}{rest}")
}

/// A date as Twilio's JSON writes it, or `null`.
pub(crate) fn date(t: Option<crate::store::Timestamp>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| serde_json::Value::String(t.rfc2822().to_string()))
}
