//! `/Keys.json` (list, create) and `/Keys/{ApiKeySid}.json` (fetch, update,
//! delete): the account's API keys.
//!
//! - Creating answers the secret, once; nothing shows it again.
//! - Only the account's auth token may manage keys. An API key is refused
//!   with 401 20003, as Twilio refuses a Standard key on `/Keys`: a leaked
//!   key cannot mint more keys or revoke the others.
//! - Deleting a key announces it on [`super::ApiState::revocations`], so
//!   that client sessions whose access tokens it signed can be closed.
//! - Updating renames the key (`FriendlyName`); the secret never changes.

use super::auth::{Caller, Credential};
use super::error::{code, ApiError};
use super::paging::{envelope, page_of, Paging};
use super::params::{Form, Params};
use super::{account_uri, blocking, date, sid_in_segment, ApiState, KeyRevoked};
use crate::store::{ApiKey, ApiKeySid};
use axum::extract::OriginalUri;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

const NAME_MAX: usize = 64;

/// Keys are managed with the auth token only.
fn require_auth_token(caller: &Caller) -> Result<(), ApiError> {
    match caller.credential {
        Credential::AuthToken => Ok(()),
        Credential::ApiKey(_) => Err(ApiError::authenticate()),
    }
}

pub async fn list(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    require_auth_token(&caller)?;
    let paging = Paging::from_query(&Params::from_query(&uri))?;
    let keys = state.store_op(&caller, uri.path(), move |store, account| store.api_keys(account)).await?;
    let (keys, has_more) = page_of(keys, paging);
    let items = keys.iter().map(|k| render(k, false)).collect();
    Ok(Json(envelope(uri.path(), &[], paging, has_more, "keys", items)))
}

pub async fn create(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Form(form): Form,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_auth_token(&caller)?;
    let name = friendly_name(&form)?.unwrap_or_default();
    let key = ApiKey::generate(caller.sid().clone(), name);
    let path = account_uri(caller.sid(), "/Keys.json");
    let store = state.store.clone();
    let key = blocking(move || store.create_api_key(&key).map(|()| key))
        .await?
        .map_err(|e| ApiError::from_store(e, &path))?;
    tracing::info!(account = %key.account_sid, key = %key.sid, "API key created");
    Ok((StatusCode::CREATED, Json(render(&key, true))))
}

pub async fn fetch(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path((_, segment)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    require_auth_token(&caller)?;
    let key = find(&state, &caller, &segment, uri.path()).await?;
    Ok(Json(render(&key, false)))
}

pub async fn update(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path((_, segment)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Form(form): Form,
) -> Result<Json<Value>, ApiError> {
    require_auth_token(&caller)?;
    let name = friendly_name(&form)?;
    let key = find(&state, &caller, &segment, uri.path()).await?;
    match name {
        Some(name) if name != key.friendly_name => {
            let (store, account, path) = (state.store.clone(), caller.sid().clone(), uri.path().to_string());
            let renamed = blocking(move || store.rename_api_key(&account, &key.sid, &name))
                .await?
                .map_err(|e| ApiError::from_store(e, &path))?;
            Ok(Json(render(&renamed, false)))
        }
        _ => Ok(Json(render(&key, false))),
    }
}

pub async fn delete(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path((_, segment)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<StatusCode, ApiError> {
    require_auth_token(&caller)?;
    let sid = sid_in_segment(&segment, ApiKeySid::parse, uri.path())?;
    let (store, account, path) = (state.store.clone(), caller.sid().clone(), uri.path().to_string());
    let deleted = sid.clone();
    blocking(move || store.delete_api_key(&account, &deleted)).await?.map_err(|e| ApiError::from_store(e, &path))?;
    tracing::info!(account = %caller.sid(), key = %sid, "API key deleted");
    // No subscriber is fine: nothing holds sessions of that key then.
    let _ = state.revocations.send(KeyRevoked { account_sid: caller.sid().clone(), key_sid: sid });
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's key named by `segment`, or the 404 of `path`.
async fn find(state: &ApiState, caller: &Caller, segment: &str, path: &str) -> Result<ApiKey, ApiError> {
    let sid = sid_in_segment(segment, ApiKeySid::parse, path)?;
    let store = state.store.clone();
    let key = blocking(move || store.api_key(&sid)).await?.map_err(|e| ApiError::from_store(e, path))?;
    // The store looks keys up across accounts (authentication needs that);
    // another account's key is not found here.
    if &key.account_sid != caller.sid() {
        return Err(ApiError::not_found(path));
    }
    Ok(key)
}

fn friendly_name(form: &Params) -> Result<Option<String>, ApiError> {
    form.text("FriendlyName", NAME_MAX).map_err(|e| ApiError { code: code::INVALID_FRIENDLY_NAME, ..e })
}

/// The key as Twilio's Key resource; with `secret` as a NewKey (the answer
/// to create, the only one that holds the secret).
pub fn render(key: &ApiKey, secret: bool) -> Value {
    let mut v = json!({
        "sid": key.sid.as_str(),
        "friendly_name": key.friendly_name,
        "date_created": date(Some(key.date_created)),
        "date_updated": date(Some(key.date_created)),
    });
    if secret {
        v["secret"] = json!(key.secret);
    }
    v
}
