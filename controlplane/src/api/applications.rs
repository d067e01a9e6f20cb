//! `/Applications.json` (list, create) and `/Applications/{ApplicationSid}.json`
//! (fetch, update, delete): where the appliance gets the instructions for a
//! call and reports its progress.
//!
//! Parameters: `FriendlyName`, `VoiceUrl`, `VoiceMethod`, `VoiceFallbackUrl`,
//! `VoiceFallbackMethod`, `StatusCallback`, `StatusCallbackMethod`; an empty
//! URL clears it. The messaging parameters (`SmsUrl`, ...) are accepted and
//! ignored; the answer shows them as Twilio shows unset ones.

use super::auth::Caller;
use super::error::{code, ApiError};
use super::paging::{envelope, page_of, Paging};
use super::params::{Form, Params};
use super::{account_uri, blocking, date, sid_in_segment, ApiState, API_VERSION};
use crate::store::{AccountSid, Application, ApplicationSid, HttpMethod, PageRequest, Store};
use axum::extract::OriginalUri;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

/// The longest friendly name (Twilio's limit).
const NAME_MAX: usize = 64;

pub async fn list(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let query = Params::from_query(&uri);
    let paging = Paging::from_query(&query)?;
    let name = query.get("FriendlyName").filter(|n| !n.is_empty()).map(str::to_string);
    let account = caller.sid().clone();
    let path = uri.path().to_string();
    let store = state.store.clone();
    let (items, has_more) = blocking(move || -> Result<_, ApiError> {
        match &name {
            None => {
                let page =
                    store.applications(&account, paging.request()).map_err(|e| ApiError::from_store(e, &path))?;
                Ok((page.items, page.has_more))
            }
            Some(name) => {
                let all = every(&*store, &account).map_err(|e| ApiError::from_store(e, &path))?;
                Ok(page_of(all.into_iter().filter(|a| &a.friendly_name == name).collect(), paging))
            }
        }
    })
    .await??;
    let filters: Vec<(&str, String)> =
        query.get("FriendlyName").map(|n| ("FriendlyName", n.to_string())).into_iter().collect();
    let items = items.iter().map(render).collect();
    Ok(Json(envelope(uri.path(), &filters, paging, has_more, "applications", items)))
}

pub async fn create(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Form(form): Form,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let changes = Changes::parse(&form)?;
    let mut app = Application::new(caller.sid().clone(), String::new());
    changes.apply(&mut app);
    if changes.friendly_name.is_none() {
        // Twilio names an unnamed application after its SID.
        app.friendly_name = app.sid.to_string();
    }
    let path = account_uri(caller.sid(), "/Applications.json");
    let store = state.store.clone();
    let app = blocking(move || store.create_application(&app).map(|()| app))
        .await?
        .map_err(|e| ApiError::from_store(e, &path))?;
    Ok((StatusCode::CREATED, Json(render(&app))))
}

pub async fn fetch(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path((_, segment)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let sid = sid_in_segment(&segment, ApplicationSid::parse, uri.path())?;
    let app = state.store_op(&caller, uri.path(), move |store, account| store.application(account, &sid)).await?;
    Ok(Json(render(&app)))
}

pub async fn update(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path((_, segment)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Form(form): Form,
) -> Result<Json<Value>, ApiError> {
    let sid = sid_in_segment(&segment, ApplicationSid::parse, uri.path())?;
    let changes = Changes::parse(&form)?;
    let app = state
        .store_op(&caller, uri.path(), move |store, account| {
            store.update_application(account, &sid, &|app| changes.apply(app))
        })
        .await?;
    Ok(Json(render(&app)))
}

pub async fn delete(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path((_, segment)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<StatusCode, ApiError> {
    let sid = sid_in_segment(&segment, ApplicationSid::parse, uri.path())?;
    state.store_op(&caller, uri.path(), move |store, account| store.delete_application(account, &sid)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The fields a create or update sets; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
struct Changes {
    friendly_name: Option<String>,
    voice_url: Option<Option<String>>,
    voice_method: Option<HttpMethod>,
    voice_fallback_url: Option<Option<String>>,
    voice_fallback_method: Option<HttpMethod>,
    status_callback: Option<Option<String>>,
    status_callback_method: Option<HttpMethod>,
}

impl Changes {
    fn parse(form: &Params) -> Result<Changes, ApiError> {
        let friendly_name =
            form.text("FriendlyName", NAME_MAX).map_err(|e| ApiError { code: code::INVALID_FRIENDLY_NAME, ..e })?;
        Ok(Changes {
            friendly_name,
            voice_url: form.url("VoiceUrl")?,
            voice_method: form.method("VoiceMethod")?,
            voice_fallback_url: form.url("VoiceFallbackUrl")?,
            voice_fallback_method: form.method("VoiceFallbackMethod")?,
            status_callback: form.url("StatusCallback")?,
            status_callback_method: form.method("StatusCallbackMethod")?,
        })
    }

    fn apply(&self, app: &mut Application) {
        fn set<T: Clone>(field: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *field = v.clone();
            }
        }
        set(&mut app.friendly_name, &self.friendly_name);
        set(&mut app.voice_url, &self.voice_url);
        set(&mut app.voice_method, &self.voice_method);
        set(&mut app.voice_fallback_url, &self.voice_fallback_url);
        set(&mut app.voice_fallback_method, &self.voice_fallback_method);
        set(&mut app.status_callback, &self.status_callback);
        set(&mut app.status_callback_method, &self.status_callback_method);
    }
}

/// Every application of `account`, oldest first.
pub(crate) fn every(store: &dyn Store, account: &AccountSid) -> Result<Vec<Application>, crate::store::StoreError> {
    let mut all = Vec::new();
    for page in 0.. {
        let p = store.applications(account, PageRequest::new(page, PageRequest::MAX_SIZE))?;
        all.extend(p.items);
        if !p.has_more {
            break;
        }
    }
    Ok(all)
}

/// The application as Twilio's Application resource.
pub fn render(app: &Application) -> Value {
    json!({
        "sid": app.sid.as_str(),
        "account_sid": app.account_sid.as_str(),
        "friendly_name": app.friendly_name,
        "api_version": API_VERSION,
        "date_created": date(Some(app.date_created)),
        "date_updated": date(Some(app.date_updated)),
        "voice_url": app.voice_url,
        "voice_method": app.voice_method.as_str(),
        "voice_fallback_url": app.voice_fallback_url,
        "voice_fallback_method": app.voice_fallback_method.as_str(),
        "voice_caller_id_lookup": false,
        "status_callback": app.status_callback,
        "status_callback_method": app.status_callback_method.as_str(),
        "sms_url": null,
        "sms_method": "POST",
        "sms_fallback_url": null,
        "sms_fallback_method": "POST",
        "sms_status_callback": null,
        "message_status_callback": null,
        "public_application_connect_enabled": false,
        "uri": account_uri(&app.account_sid, &format!("/Applications/{}.json", app.sid)),
    })
}
