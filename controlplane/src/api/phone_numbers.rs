//! `/IncomingPhoneNumbers.json` (list, create) and
//! `/IncomingPhoneNumbers/{PhoneNumberSid}.json` (fetch, update, delete):
//! the E.164 numbers an account answers, each pointing at an application.
//!
//! On this appliance a number is brought by the operator (its carrier
//! routes it to a trunk), not bought: `POST` with `PhoneNumber` claims it
//! for the account if no account holds it. Calls to it are answered by
//! `VoiceApplicationSid`; per-number voice URLs (`VoiceUrl`,
//! `VoiceFallbackUrl`, `StatusCallback` on the number) are refused with a
//! clear error: put them on an application.
//!
//! The list takes `PhoneNumber` (a whole or partial number, `*` for any
//! digit, as Twilio's) and `FriendlyName` filters.

use super::auth::Caller;
use super::error::{code, ApiError};
use super::paging::{envelope, page_of, Paging};
use super::params::{Form, Params};
use super::{account_uri, blocking, date, sid_in_segment, ApiState, API_VERSION};
use crate::store::{ApplicationSid, PageRequest, PhoneNumber, PhoneNumberSid, StoreError, E164};
use axum::extract::OriginalUri;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

const NAME_MAX: usize = 64;

pub async fn list(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let query = Params::from_query(&uri);
    let paging = Paging::from_query(&query)?;
    let number = query.get("PhoneNumber").filter(|n| !n.is_empty()).map(str::to_string);
    let name = query.get("FriendlyName").filter(|n| !n.is_empty()).map(str::to_string);
    let (store, account, path) = (state.store.clone(), caller.sid().clone(), uri.path().to_string());
    let filtered = number.is_some() || name.is_some();
    let (items, has_more) = blocking(move || -> Result<_, StoreError> {
        if !filtered {
            let page = store.numbers(&account, paging.request())?;
            return Ok((page.items, page.has_more));
        }
        let mut all = Vec::new();
        for page in 0.. {
            let p = store.numbers(&account, PageRequest::new(page, PageRequest::MAX_SIZE))?;
            all.extend(p.items);
            if !p.has_more {
                break;
            }
        }
        all.retain(|n| {
            number.as_deref().is_none_or(|pattern| number_matches(pattern, n.phone_number.as_str()))
                && name.as_deref().is_none_or(|name| n.friendly_name == name)
        });
        Ok(page_of(all, paging))
    })
    .await?
    .map_err(|e| ApiError::from_store(e, &path))?;
    let filters: Vec<(&str, String)> =
        ["PhoneNumber", "FriendlyName"].into_iter().filter_map(|f| query.get(f).map(|v| (f, v.to_string()))).collect();
    let items = items.iter().map(render).collect();
    Ok(Json(envelope(uri.path(), &filters, paging, has_more, "incoming_phone_numbers", items)))
}

pub async fn create(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Form(form): Form,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    refuse_number_urls(&form)?;
    let number = match form.get("PhoneNumber") {
        None | Some("") => {
            return Err(ApiError::bad_request(
                code::INVALID_PHONE_NUMBER,
                "PhoneNumber is required (E.164, like +15550100001)",
            ))
        }
        Some(n) => E164::parse(n).map_err(|e| ApiError::bad_request(code::INVALID_PHONE_NUMBER, e.to_string()))?,
    };
    let application = application_param(&form)?.flatten();
    let mut record = PhoneNumber::new(caller.sid().clone(), number, application);
    if let Some(name) =
        form.text("FriendlyName", NAME_MAX).map_err(|e| ApiError { code: code::INVALID_FRIENDLY_NAME, ..e })?
    {
        record.friendly_name = name;
    }
    let path = account_uri(caller.sid(), "/IncomingPhoneNumbers.json");
    let store = state.store.clone();
    let record = blocking(move || store.create_number(&record).map(|()| record)).await?.map_err(|e| match e {
        StoreError::Conflict(_) => ApiError::bad_request(
            code::PHONE_NUMBER_NOT_AVAILABLE,
            "PhoneNumber is not available: another number record (of this or another account) holds it",
        ),
        e => number_error(e, &path),
    })?;
    Ok((StatusCode::CREATED, Json(render(&record))))
}

pub async fn fetch(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path((_, segment)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let sid = sid_in_segment(&segment, PhoneNumberSid::parse, uri.path())?;
    let record = state.store_op(&caller, uri.path(), move |store, account| store.number(account, &sid)).await?;
    Ok(Json(render(&record)))
}

pub async fn update(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path((_, segment)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Form(form): Form,
) -> Result<Json<Value>, ApiError> {
    let sid = sid_in_segment(&segment, PhoneNumberSid::parse, uri.path())?;
    refuse_number_urls(&form)?;
    let application = application_param(&form)?;
    let name = form.text("FriendlyName", NAME_MAX).map_err(|e| ApiError { code: code::INVALID_FRIENDLY_NAME, ..e })?;
    let (store, account, path) = (state.store.clone(), caller.sid().clone(), uri.path().to_string());
    let record = blocking(move || {
        store.update_number(&account, &sid, &|n| {
            if let Some(app) = &application {
                n.application_sid = app.clone();
            }
            if let Some(name) = &name {
                n.friendly_name = name.clone();
            }
        })
    })
    .await?
    .map_err(|e| number_error(e, &path))?;
    Ok(Json(render(&record)))
}

pub async fn delete(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path((_, segment)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<StatusCode, ApiError> {
    let sid = sid_in_segment(&segment, PhoneNumberSid::parse, uri.path())?;
    state.store_op(&caller, uri.path(), move |store, account| store.delete_number(account, &sid)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `VoiceApplicationSid`: absent `None`, empty `Some(None)` (no application:
/// calls to the number are refused), else a well-formed SID.
fn application_param(form: &Params) -> Result<Option<Option<ApplicationSid>>, ApiError> {
    match form.get("VoiceApplicationSid") {
        None => Ok(None),
        Some("") => Ok(Some(None)),
        Some(s) => ApplicationSid::parse(s).map(|sid| Some(Some(sid))).map_err(|_| invalid_application(s)),
    }
}

fn invalid_application(sid: &str) -> ApiError {
    ApiError::bad_request(
        code::INVALID_APPLICATION_SID,
        format!("VoiceApplicationSid {sid:?} is not an application of this account"),
    )
}

/// A missing application is the request's fault (21218); anything else as usual.
fn number_error(e: StoreError, path: &str) -> ApiError {
    match e {
        StoreError::NotFound { kind: "application", id } => invalid_application(&id),
        e => ApiError::from_store(e, path),
    }
}

fn refuse_number_urls(form: &Params) -> Result<(), ApiError> {
    for name in ["VoiceUrl", "VoiceFallbackUrl", "StatusCallback"] {
        if form.get(name).is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::bad_request(
                code::INVALID_URL,
                format!(
                    "{name} on a phone number is not supported on this appliance: create an application with it \
                     and set the number's VoiceApplicationSid"
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `number` contains `pattern` (its digits and `+`, `*` standing for
/// any digit), as Twilio's `PhoneNumber` filter matches.
pub fn number_matches(pattern: &str, number: &str) -> bool {
    let pattern: Vec<u8> = pattern.bytes().filter(|b| b.is_ascii_digit() || *b == b'*' || *b == b'+').collect();
    if pattern.is_empty() {
        return true;
    }
    let number = number.as_bytes();
    number
        .windows(pattern.len())
        .any(|w| w.iter().zip(&pattern).all(|(n, p)| (*p == b'*' && n.is_ascii_digit()) || p == n))
}

/// The number as Twilio's IncomingPhoneNumber resource.
pub fn render(n: &PhoneNumber) -> Value {
    json!({
        "sid": n.sid.as_str(),
        "account_sid": n.account_sid.as_str(),
        "phone_number": n.phone_number.as_str(),
        "friendly_name": n.friendly_name,
        "voice_application_sid": n.application_sid.as_ref().map(|a| a.as_str()),
        "voice_url": null,
        "voice_method": "POST",
        "voice_fallback_url": null,
        "voice_fallback_method": "POST",
        "voice_caller_id_lookup": false,
        "voice_receive_mode": "voice",
        "status_callback": null,
        "status_callback_method": "POST",
        "sms_application_sid": null,
        "sms_url": null,
        "sms_method": "POST",
        "sms_fallback_url": null,
        "sms_fallback_method": "POST",
        "trunk_sid": null,
        "address_sid": null,
        "address_requirements": "none",
        "identity_sid": null,
        "bundle_sid": null,
        "emergency_status": "Inactive",
        "emergency_address_sid": null,
        "emergency_address_status": "unregistered",
        "beta": false,
        "origin": "hosted",
        "status": "in-use",
        "capabilities": {"voice": true, "sms": false, "mms": false, "fax": false},
        "api_version": API_VERSION,
        "date_created": date(Some(n.date_created)),
        "date_updated": date(Some(n.date_updated)),
        "uri": account_uri(&n.account_sid, &format!("/IncomingPhoneNumbers/{}.json", n.sid)),
    })
}

#[cfg(test)]
mod tests {
    use super::number_matches;

    #[test]
    fn phone_number_filter() {
        assert!(number_matches("+15550100001", "+15550100001"));
        assert!(number_matches("555010", "+15550100001"));
        assert!(number_matches("+1555*1**001", "+15550100001"));
        assert!(!number_matches("+15550100002", "+15550100001"));
        assert!(!number_matches("+25550100001", "+15550100001"));
        assert!(!number_matches("+155501000011", "+15550100001"));
    }
}
