//! `/Calls.json` (list, create) and `/Calls/{CallSid}.json` (fetch, update):
//! call records, and the doors to the call machinery.
//!
//! Lists are newest first and take Twilio's filters: `To`, `From`,
//! `Status`, `ParentCallSid`, and `StartTime` (a day), `StartTime>` /
//! `StartTime>=` (on or after), `StartTime<` / `StartTime<=` (on or before),
//! each a date `YYYY-MM-DD` or a UTC time `YYYY-MM-DDTHH:MM:SSZ` as the
//! helper libraries send them.
//!
//! Creating a call (`To`, `From`, one of `Url`/`Twiml`/`ApplicationSid`,
//! `StatusCallback`...) and changing a live one (`Url`/`Twiml` to redirect
//! it, `Status=completed`/`canceled` to end it) are checked here and carried
//! out by a [`CallControl`]. Without one, they answer 503 "outbound calls
//! are not available on this appliance yet".
//!
//! Besides Twilio's fields, a call shows `error_code` and `error_message`
//! when it failed (a webhook that could not be fetched, an unsupported
//! verb): Twilio keeps those in its debugger, this appliance in the record.

use super::auth::Caller;
use super::error::{code, ApiError};
use super::paging::{envelope, Paging};
use super::params::{Form, Params};
use super::{account_uri, blocking, date, sid_in_segment, ApiState, API_VERSION};
use crate::store::{Account, ApplicationSid, CallFilter, CallRecord, CallSid, CallStatus, HttpMethod, Timestamp};
use axum::extract::OriginalUri;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What [`CallControl`] answers with.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<CallRecord, ApiError>> + Send + 'a>>;

/// The call machinery, as the REST API drives it. Implemented by the call
/// layer; the router takes it as `Option<Arc<dyn CallControl>>`.
pub trait CallControl: Send + Sync {
    /// Places a call for `account` and answers its record as first written
    /// (status `queued` or `initiated`, direction `outbound-api`). The
    /// parameters are checked for presence and form already; errors that
    /// need the call layer (no trunk for `To`, a `From` the account may not
    /// use) come back as Twilio-coded [`ApiError`]s.
    fn create_call<'a>(&'a self, account: &'a Account, params: CreateCall) -> CallFuture<'a>;

    /// Redirects or ends the account's live call `sid` and answers its
    /// record. A call that is over answers 400 [`code::INVALID_CALL_STATE`]
    /// for a redirect; ending a finished call answers its record unchanged.
    fn update_call<'a>(&'a self, account: &'a Account, sid: &'a CallSid, params: UpdateCall) -> CallFuture<'a>;
}

/// Where a call's instructions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instructions {
    /// Fetched from `url` with `method`.
    Url { url: String, method: HttpMethod },
    /// Given in the request.
    Twiml(String),
    /// The voice URL of an application of the account.
    Application(ApplicationSid),
}

/// A checked `POST .../Calls.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCall {
    /// As given: an E.164 number, `client:alice`, a `sip:` URI.
    pub to: String,
    pub from: String,
    pub instructions: Instructions,
    pub fallback_url: Option<String>,
    pub fallback_method: HttpMethod,
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    /// `initiated`, `ringing`, `answered`, `completed` (Twilio's default
    /// when none is given: `completed` only).
    pub status_callback_events: Vec<String>,
    /// Seconds to let it ring (`Timeout`, Twilio's default 60, at most 600).
    pub timeout_s: u32,
    /// Longest the call may last (`TimeLimit`), if limited.
    pub time_limit_s: Option<u32>,
    /// Every parameter of the request, for what the fields above leave out
    /// (`SendDigits`, `Record`, `MachineDetection`...).
    pub params: Params,
}

/// A checked `POST .../Calls/{CallSid}.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateCall {
    /// New instructions: the call leaves what it is doing and runs them.
    pub instructions: Option<Instructions>,
    /// `completed` (hang up an answered call) or `canceled` (a ringing one).
    pub status: Option<CallStatus>,
    pub fallback_url: Option<String>,
    pub fallback_method: Option<HttpMethod>,
    pub status_callback: Option<String>,
    pub status_callback_method: Option<HttpMethod>,
    pub params: Params,
}

const NOT_AVAILABLE: &str = "outbound calls are not available on this appliance yet";

pub async fn list(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let query = Params::from_query(&uri);
    let paging = Paging::from_query(&query)?;
    let filter = filter(&query)?;
    let page = state
        .store_op(&caller, uri.path(), move |store, account| store.calls(account, &filter, paging.request()))
        .await?;
    let filters: Vec<(&str, String)> =
        FILTERS.iter().flat_map(|f| query.all(f).into_iter().map(move |v| (*f, v))).collect();
    let items = page.items.iter().map(render).collect();
    Ok(Json(envelope(uri.path(), &filters, paging, page.has_more, "calls", items)))
}

pub async fn fetch(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path((_, segment)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let sid = sid_in_segment(&segment, CallSid::parse, uri.path())?;
    let call = state.store_op(&caller, uri.path(), move |store, account| store.call(account, &sid)).await?;
    Ok(Json(render(&call)))
}

pub async fn create(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Form(form): Form,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let params = CreateCall::parse(form)?;
    let control = state.calls.as_ref().ok_or_else(not_available)?;
    let call = control.create_call(&caller.account, params).await?;
    Ok((StatusCode::CREATED, Json(render(&call))))
}

pub async fn update(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path((_, segment)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Form(form): Form,
) -> Result<Json<Value>, ApiError> {
    let sid = sid_in_segment(&segment, CallSid::parse, uri.path())?;
    let (store, account, path) = (state.store.clone(), caller.sid().clone(), uri.path().to_string());
    let looked_up = sid.clone();
    blocking(move || store.call(&account, &looked_up)).await?.map_err(|e| ApiError::from_store(e, &path))?;
    let params = UpdateCall::parse(form)?;
    let control = state.calls.as_ref().ok_or_else(not_available)?;
    let call = control.update_call(&caller.account, &sid, params).await?;
    Ok(Json(render(&call)))
}

fn not_available() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code::SERVICE_UNAVAILABLE, NOT_AVAILABLE)
}

/// The instructions of a create or update: at most one of `Url`, `Twiml`,
/// `ApplicationSid`.
fn instructions(form: &Params) -> Result<Option<Instructions>, ApiError> {
    let url = form.url("Url")?.flatten();
    let twiml = form.get("Twiml").filter(|t| !t.is_empty());
    let app = form.get("ApplicationSid").filter(|a| !a.is_empty());
    if [url.is_some(), twiml.is_some(), app.is_some()].into_iter().filter(|x| *x).count() > 1 {
        return Err(ApiError::bad_request(code::INVALID_PARAMETER, "give only one of Url, Twiml and ApplicationSid"));
    }
    if let Some(url) = url {
        return Ok(Some(Instructions::Url { url, method: form.method("Method")?.unwrap_or(HttpMethod::Post) }));
    }
    if let Some(twiml) = twiml {
        if twiml.len() > 4000 {
            return Err(ApiError::bad_request(code::INVALID_PARAMETER, "Twiml must be at most 4000 characters"));
        }
        return Ok(Some(Instructions::Twiml(twiml.to_string())));
    }
    if let Some(app) = app {
        let sid = ApplicationSid::parse(app).map_err(|_| {
            ApiError::bad_request(code::INVALID_APPLICATION_SID, format!("ApplicationSid {app:?} is not valid"))
        })?;
        return Ok(Some(Instructions::Application(sid)));
    }
    Ok(None)
}

fn seconds(form: &Params, name: &str, max: u32) -> Result<Option<u32>, ApiError> {
    match form.get(name) {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<u32>().ok().filter(|n| (1..=max).contains(n)).map(Some).ok_or_else(|| {
            ApiError::bad_request(
                code::INVALID_PARAMETER,
                format!("{name} must be a number of seconds from 1 to {max}"),
            )
        }),
    }
}

impl CreateCall {
    pub fn parse(form: Params) -> Result<CreateCall, ApiError> {
        let to = form.get("To").map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
        let to = to.ok_or_else(|| ApiError::bad_request(code::TO_REQUIRED, "No 'To' number is specified"))?;
        if to.len() > 256 || to.chars().any(char::is_control) {
            return Err(ApiError::bad_request(code::INVALID_TO, format!("The 'To' number {to} is not valid")));
        }
        let from = form.get("From").map(str::trim).filter(|f| !f.is_empty()).map(str::to_string);
        let from = from.ok_or_else(|| ApiError::bad_request(code::FROM_REQUIRED, "No 'From' number is specified"))?;
        if from.len() > 256 || from.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                code::INVALID_PARAMETER,
                format!("The 'From' number {from} is not valid"),
            ));
        }
        let instructions = instructions(&form)?.ok_or_else(|| {
            ApiError::bad_request(code::INVALID_URL, "Url, Twiml or ApplicationSid is required to place a call")
        })?;
        let mut events: Vec<String> =
            form.all("StatusCallbackEvent").iter().flat_map(|e| e.split_whitespace().map(str::to_string)).collect();
        for e in &events {
            if !["initiated", "ringing", "answered", "completed"].contains(&e.as_str()) {
                return Err(ApiError::bad_request(
                    code::INVALID_PARAMETER,
                    format!("StatusCallbackEvent {e:?} is not one of initiated, ringing, answered, completed"),
                ));
            }
        }
        if events.is_empty() {
            events.push("completed".into());
        }
        Ok(CreateCall {
            to,
            from,
            instructions,
            fallback_url: form.url("FallbackUrl")?.flatten(),
            fallback_method: form.method("FallbackMethod")?.unwrap_or(HttpMethod::Post),
            status_callback: form.url("StatusCallback")?.flatten(),
            status_callback_method: form.method("StatusCallbackMethod")?.unwrap_or(HttpMethod::Post),
            status_callback_events: events,
            timeout_s: seconds(&form, "Timeout", 600)?.unwrap_or(60),
            time_limit_s: seconds(&form, "TimeLimit", 86_400)?,
            params: form,
        })
    }
}

impl UpdateCall {
    pub fn parse(form: Params) -> Result<UpdateCall, ApiError> {
        let status = match form.get("Status") {
            None | Some("") => None,
            Some("completed") => Some(CallStatus::Completed),
            Some("canceled") => Some(CallStatus::Canceled),
            Some(other) => {
                return Err(ApiError::bad_request(
                    code::INVALID_PARAMETER,
                    format!("Status must be completed or canceled, not {other:?}"),
                ))
            }
        };
        let instructions = instructions(&form)?;
        if status.is_some() && instructions.is_some() {
            return Err(ApiError::bad_request(
                code::INVALID_PARAMETER,
                "give either Status or new instructions (Url, Twiml), not both",
            ));
        }
        Ok(UpdateCall {
            instructions,
            status,
            fallback_url: form.url("FallbackUrl")?.flatten(),
            fallback_method: form.method("FallbackMethod")?,
            status_callback: form.url("StatusCallback")?.flatten(),
            status_callback_method: form.method("StatusCallbackMethod")?,
            params: form,
        })
    }
}

/// The list filters, in the order page URIs repeat them.
const FILTERS: [&str; 9] =
    ["To", "From", "Status", "ParentCallSid", "StartTime", "StartTime>", "StartTime>=", "StartTime<", "StartTime<="];

fn filter(query: &Params) -> Result<CallFilter, ApiError> {
    let text = |name: &str| query.get(name).filter(|v| !v.is_empty()).map(str::to_string);
    let mut filter = CallFilter { to: text("To"), from: text("From"), ..CallFilter::default() };
    if let Some(s) = text("Status") {
        filter.status = Some(CallStatus::parse(&s).ok_or_else(|| {
            ApiError::bad_request(code::INVALID_PARAMETER, format!("Status {s:?} is not a call status"))
        })?);
    }
    if let Some(s) = text("ParentCallSid") {
        filter.parent_call_sid =
            Some(CallSid::parse(&s).map_err(|e| ApiError::bad_request(code::INVALID_PARAMETER, e.to_string()))?);
    }
    let time = |name: &str| -> Result<Option<(Timestamp, Timestamp)>, ApiError> {
        text(name)
            .map(|v| {
                parse_time(&v).ok_or_else(|| {
                    ApiError::bad_request(
                        code::INVALID_PARAMETER,
                        format!("{name} must be a date YYYY-MM-DD or a time YYYY-MM-DDTHH:MM:SSZ, not {v:?}"),
                    )
                })
            })
            .transpose()
    };
    // Each bound narrows; the latest "after" and the earliest "before" win.
    let mut after: Vec<Timestamp> = Vec::new();
    let mut before: Vec<Timestamp> = Vec::new();
    if let Some((from, until)) = time("StartTime")? {
        after.push(from);
        before.push(until);
    }
    for name in ["StartTime>", "StartTime>="] {
        if let Some((from, _)) = time(name)? {
            after.push(from);
        }
    }
    for name in ["StartTime<", "StartTime<="] {
        if let Some((_, until)) = time(name)? {
            before.push(until);
        }
    }
    filter.started_at_or_after = after.into_iter().max();
    filter.started_before = before.into_iter().min();
    Ok(filter)
}

/// A date (the whole day) or a UTC time (that second), as the instant it
/// starts and the instant after it ends.
pub fn parse_time(s: &str) -> Option<(Timestamp, Timestamp)> {
    let num = |s: &str| -> Option<i64> { s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse().ok()).flatten() };
    let (day, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').unwrap_or(t))),
        None => (s, None),
    };
    let mut parts = day.split('-');
    let (y, m, d) = (num(parts.next()?)?, num(parts.next()?)?, num(parts.next()?)?);
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=days_in_month(y, m)).contains(&d) {
        return None;
    }
    let day_ms = days_from_civil(y, m, d) * 86_400_000;
    match time {
        None => Some((Timestamp::from_unix_ms(day_ms), Timestamp::from_unix_ms(day_ms + 86_400_000))),
        Some(t) => {
            let mut hms = t.split(':');
            let (h, mi, se) = (num(hms.next()?)?, num(hms.next()?)?, num(hms.next()?)?);
            if hms.next().is_some() || h > 23 || mi > 59 || se > 59 {
                return None;
            }
            let ms = day_ms + ((h * 60 + mi) * 60 + se) * 1000;
            Some((Timestamp::from_unix_ms(ms), Timestamp::from_unix_ms(ms + 1000)))
        }
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date (the inverse of the
/// store's `civil_date`), in 400-year eras with years starting in March.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let month_from_march = (m + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The record as Twilio's Call resource.
pub fn render(call: &CallRecord) -> Value {
    let uri = account_uri(&call.account_sid, &format!("/Calls/{}", call.sid));
    json!({
        "sid": call.sid.as_str(),
        "account_sid": call.account_sid.as_str(),
        "parent_call_sid": call.parent_call_sid.as_ref().map(|s| s.as_str()),
        "to": call.to,
        "to_formatted": call.to,
        "from": call.from,
        "from_formatted": call.from,
        "phone_number_sid": null,
        "status": call.status.as_str(),
        "direction": call.direction.as_str(),
        "start_time": date(call.start_time),
        "end_time": date(call.end_time),
        "duration": call.duration_s.map(|d| d.to_string()),
        "answered_by": call.answered_by,
        "price": null,
        "price_unit": "USD",
        "forwarded_from": null,
        "caller_name": null,
        "group_sid": null,
        "queue_time": "0",
        "trunk_sid": null,
        "error_code": call.error_code,
        "error_message": call.error_message,
        "api_version": API_VERSION,
        "date_created": date(Some(call.date_created)),
        "date_updated": date(Some(call.date_updated)),
        "uri": format!("{uri}.json"),
        "subresource_uris": {
            "notifications": format!("{uri}/Notifications.json"),
            "recordings": format!("{uri}/Recordings.json"),
            "events": format!("{uri}/Events.json"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_the_helper_libraries_send_them() {
        let (a, b) = parse_time("2010-08-18").unwrap();
        assert_eq!(a.rfc2822().to_string(), "Wed, 18 Aug 2010 00:00:00 +0000");
        assert_eq!(b.rfc2822().to_string(), "Thu, 19 Aug 2010 00:00:00 +0000");
        let (a, b) = parse_time("2010-08-18T20:01:40Z").unwrap();
        assert_eq!(a.unix_ms(), 1_282_161_700_000);
        assert_eq!(b.unix_ms() - a.unix_ms(), 1000);
        assert_eq!(parse_time("2000-02-29").unwrap().0.unix_ms(), 951_782_400_000);
        assert_eq!(parse_time("1969-12-31").unwrap().0.unix_ms(), -86_400_000);
        for bad in ["2001-02-29", "2010-13-01", "2010-8-x", "2010-08-18T24:00:00Z", "yesterday", "2010-08-18-01"] {
            assert!(parse_time(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn list_filters() {
        let f = filter(&Params::parse(
            b"To=%2B15550100001&Status=no-answer&StartTime%3E=2010-08-18&StartTime%3C=2010-08-19",
        ))
        .unwrap();
        assert_eq!(f.to.as_deref(), Some("+15550100001"));
        assert_eq!(f.status, Some(CallStatus::NoAnswer));
        assert_eq!(f.started_at_or_after, Some(parse_time("2010-08-18").unwrap().0));
        assert_eq!(f.started_before, Some(parse_time("2010-08-20").unwrap().0), "on or before the 19th");
        assert_eq!(filter(&Params::parse(b"Status=ringing-ish")).unwrap_err().status, 400);
        assert_eq!(filter(&Params::parse(b"StartTime=soon")).unwrap_err().status, 400);
    }

    #[test]
    fn create_and_update_parameters() {
        let e = CreateCall::parse(Params::parse(b"From=%2B1555&Url=http%3A%2F%2Fx%2Fv")).unwrap_err();
        assert_eq!(e.code, code::TO_REQUIRED);
        let e = CreateCall::parse(Params::parse(b"To=%2B1555")).unwrap_err();
        assert_eq!(e.code, code::FROM_REQUIRED);
        let e = CreateCall::parse(Params::parse(b"To=%2B1555&From=%2B1666")).unwrap_err();
        assert_eq!(e.code, code::INVALID_URL);
        let e = CreateCall::parse(Params::parse(b"To=%2B1555&From=%2B1666&Url=nope")).unwrap_err();
        assert_eq!(e.code, code::INVALID_URL);
        let c = CreateCall::parse(Params::parse(
            b"To=client%3Aalice&From=%2B1666&Twiml=%3CResponse%2F%3E&StatusCallbackEvent=ringing+answered&Timeout=20",
        ))
        .unwrap();
        assert_eq!(c.to, "client:alice");
        assert_eq!(c.instructions, Instructions::Twiml("<Response/>".into()));
        assert_eq!(c.status_callback_events, vec!["ringing", "answered"]);
        assert_eq!(c.timeout_s, 20);

        assert_eq!(UpdateCall::parse(Params::parse(b"Status=completed")).unwrap().status, Some(CallStatus::Completed));
        assert!(UpdateCall::parse(Params::parse(b"Status=busy")).is_err());
        assert!(UpdateCall::parse(Params::parse(b"Status=completed&Twiml=%3CResponse%2F%3E")).is_err());
        let u = UpdateCall::parse(Params::parse(b"Url=https%3A%2F%2Fa.example%2Fnext&Method=GET")).unwrap();
        assert_eq!(
            u.instructions,
            Some(Instructions::Url { url: "https://a.example/next".into(), method: HttpMethod::Get })
        );
    }
}
