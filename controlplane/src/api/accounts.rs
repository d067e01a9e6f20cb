//! `GET /2010-04-01/Accounts/{AccountSid}.json`: the caller's own account.
//!
//! The auth token is in the answer only when the request was authenticated
//! with it: an API key holder does not learn the account's master secret.

use super::auth::{Caller, Credential};
use super::{account_uri, date, ApiError, API_VERSION};
use crate::store::Account;
use axum::extract::OriginalUri;
use axum::extract::Path;
use axum::Json;
use serde_json::{json, Value};

pub async fn fetch(
    caller: Caller,
    Path(segment): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    // The extractor matched the SID already; only the `.json` form is served.
    if !segment.ends_with(".json") {
        return Err(ApiError::not_found(uri.path()));
    }
    let auth_token = (caller.credential == Credential::AuthToken).then(|| caller.account.auth_token.clone());
    Ok(Json(render(&caller.account, auth_token)))
}

/// The account as Twilio's Account resource.
pub fn render(account: &Account, auth_token: Option<String>) -> Value {
    let sid = &account.sid;
    let sub = |name: &str| account_uri(sid, &format!("/{name}.json"));
    json!({
        "sid": sid.as_str(),
        "owner_account_sid": sid.as_str(),
        "friendly_name": account.friendly_name,
        "status": account.status.as_str(),
        "type": "Full",
        "auth_token": auth_token,
        "date_created": date(Some(account.date_created)),
        "date_updated": date(Some(account.date_updated)),
        "api_version": API_VERSION,
        "uri": account_uri(sid, ".json"),
        "subresource_uris": {
            "applications": sub("Applications"),
            "incoming_phone_numbers": sub("IncomingPhoneNumbers"),
            "keys": sub("Keys"),
            "calls": sub("Calls"),
        },
    })
}
