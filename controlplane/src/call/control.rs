//! The REST API's door to live calls: [`api::CallControl`] over the shell's
//! command channel.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::shell::{trunk_peer, Control, Originated};
use super::sip_target;
use crate::api::calls::Instructions;
use crate::api::error::code;
use crate::api::{ApiError, CallControl, CallFuture, CreateCall, UpdateCall};
use crate::instructions::interpreter::Webhook;
use crate::instructions::method::Method as HttpMethod;
use crate::instructions::params::CallFacts;
use crate::instructions::twiml::{CallProgressEvents, StatusCallback};
use crate::sip::digest::Credentials;
use crate::store::{Account, CallRecord, CallSid, CallStatus, Direction, Store, E164};
use std::time::Duration;

/// The base URL of inline TwiML (`Twiml=`): it has none, so relative URLs
/// in it resolve here and fail visibly when requested.
const INLINE_BASE: &str = "https://inline-twiml.invalid/";

pub struct ShellControl {
    pub(super) tx: mpsc::UnboundedSender<Control>,
    pub(super) store: Arc<dyn Store>,
}

impl ShellControl {
    /// The appliance stops: new calls are refused from now on.
    pub fn drain(&self) {
        let _ = self.tx.send(Control::Drain);
    }

    /// Hangs up every call still up.
    pub fn hang_up_all(&self) {
        let _ = self.tx.send(Control::HangUpAll);
    }

    async fn record(&self, account: &Account, sid: &CallSid) -> Result<crate::store::CallRecord, ApiError> {
        let (store, account, sid) = (self.store.clone(), account.sid.clone(), sid.clone());
        tokio::task::spawn_blocking(move || store.call(&account, &sid))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::from_store(e, "/Calls"))
    }

    async fn ask(&self, make: impl FnOnce(oneshot::Sender<bool>) -> Control) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(make(reply)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

impl CallControl for ShellControl {
    fn create_call<'a>(&'a self, account: &'a Account, params: CreateCall) -> CallFuture<'a> {
        Box::pin(async move {
            let store = self.store.clone();
            let (owner, instructions) = (account.clone(), params.instructions.clone());
            let (trunks, app) = tokio::task::spawn_blocking(move || {
                let trunks = store.trunks(&owner.sid)?;
                let app = match &instructions {
                    Instructions::Application(sid) => Some(store.application(&owner.sid, sid)?),
                    _ => None,
                };
                Ok::<_, crate::store::StoreError>((trunks, app))
            })
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::from_store(e, "/Calls.json"))?;
            // The account's first trunk with a usable destination carries its calls.
            let trunk = trunks.iter().find_map(|t| trunk_peer(&t.outbound).map(|p| (t, p)));
            let to = params.to.trim();
            let (uri, peer) = if to.starts_with("sip:") || to.starts_with("sips:") {
                sip_target(to).ok_or_else(|| {
                    ApiError::bad_request(
                        code::INVALID_TO,
                        format!("The 'To' SIP URI {to} must have an IP address host"),
                    )
                })?
            } else if let Ok(number) = E164::parse(to) {
                let (_, peer) = trunk.ok_or_else(|| {
                    ApiError::bad_request(code::INVALID_TO, "The account has no SIP trunk to reach a phone number")
                })?;
                (format!("sip:{}@{}", number.as_str(), peer.addr), peer)
            } else {
                return Err(ApiError::bad_request(
                    code::INVALID_TO,
                    format!("The 'To' number {to} is not a valid phone number or SIP URI"),
                ));
            };
            let from_user = from_user(&params.from);
            let (voice, fallback, inline, callback_url, callback_method) = match params.instructions {
                Instructions::Url { url, method } => (
                    Webhook { url, method: HttpMethod::from(method) },
                    params.fallback_url.map(|url| Webhook { url, method: HttpMethod::from(params.fallback_method) }),
                    None,
                    params.status_callback,
                    params.status_callback_method,
                ),
                Instructions::Twiml(doc) => (
                    // No URL to resolve relative ones against: they fail when used.
                    Webhook { url: INLINE_BASE.into(), method: HttpMethod::Post },
                    None,
                    Some(doc),
                    params.status_callback,
                    params.status_callback_method,
                ),
                Instructions::Application(_) => {
                    let app = app.ok_or_else(|| ApiError::internal("application vanished"))?;
                    let url = app.voice_url.clone().ok_or_else(|| {
                        ApiError::bad_request(code::INVALID_APPLICATION_SID, "The application has no voice URL")
                    })?;
                    (
                        Webhook { url, method: HttpMethod::from(app.voice_method) },
                        app.voice_fallback_url
                            .clone()
                            .map(|url| Webhook { url, method: HttpMethod::from(app.voice_fallback_method) }),
                        None,
                        params.status_callback.or(app.status_callback.clone()),
                        params.status_callback_method,
                    )
                }
            };
            let mut events = CallProgressEvents { initiated: false, ringing: false, answered: false, completed: false };
            for e in &params.status_callback_events {
                match e.as_str() {
                    "initiated" => events.initiated = true,
                    "ringing" => events.ringing = true,
                    "answered" => events.answered = true,
                    "completed" => events.completed = true,
                    _ => {}
                }
            }
            if params.status_callback_events.is_empty() {
                events = CallProgressEvents::default();
            }
            let mut record = CallRecord::new(
                account.sid.clone(),
                params.from.clone(),
                to.to_owned(),
                Direction::OutboundApi,
                CallStatus::Queued,
            );
            if let Some((t, _)) = trunk.filter(|_| !to.starts_with("sip")) {
                record.trunk = Some(t.name.clone());
            }
            let facts = CallFacts {
                call_sid: record.sid.as_str().to_owned(),
                account_sid: account.sid.as_str().to_owned(),
                from: params.from.clone(),
                to: to.to_owned(),
                direction: Direction::OutboundApi,
                forwarded_from: None,
                caller_name: None,
                parent_call_sid: None,
                custom: Vec::new(),
            };
            let store = self.store.clone();
            let written = record.clone();
            tokio::task::spawn_blocking(move || store.insert_call(&written))
                .await
                .map_err(ApiError::internal)?
                .map_err(|e| ApiError::from_store(e, "/Calls.json"))?;
            let call = Originated {
                facts,
                auth_token: account.auth_token.clone(),
                peer,
                uri,
                from_user,
                timeout: Duration::from_secs(u64::from(params.timeout_s)),
                trunk: trunk.map(|(_, p)| p),
                credentials: trunk.and_then(|(t, _)| {
                    t.username
                        .clone()
                        .zip(t.password.clone())
                        .map(|(username, password)| Credentials { username, password })
                }),
                voice,
                fallback,
                inline,
                callback: StatusCallback { url: callback_url, method: HttpMethod::from(callback_method), events },
            };
            if self.tx.send(Control::Create(Box::new(call))).is_err() {
                return Err(ApiError::internal("the call layer is not running"));
            }
            Ok(record)
        })
    }

    fn update_call<'a>(&'a self, account: &'a Account, sid: &'a CallSid, params: UpdateCall) -> CallFuture<'a> {
        Box::pin(async move {
            let record = self.record(account, sid).await?;
            let not_live =
                || ApiError::bad_request(code::INVALID_CALL_STATE, "Call is not in-progress. Cannot redirect.");
            if let Some(instructions) = params.instructions {
                if record.status.is_final() {
                    return Err(not_live());
                }
                let (url, method, twiml) = match instructions {
                    Instructions::Url { url, method } => (url, HttpMethod::from(method), None),
                    Instructions::Twiml(doc) => (String::new(), HttpMethod::Post, Some(doc)),
                    Instructions::Application(_) => {
                        return Err(ApiError::bad_request(
                            code::INVALID_PARAMETER,
                            "ApplicationSid is not accepted when updating a call; give Url or Twiml",
                        ))
                    }
                };
                let sid = sid.clone();
                if !self.ask(|reply| Control::Redirect { sid, url, method, twiml, reply }).await {
                    return Err(not_live());
                }
            }
            if let Some(status) = params.status {
                if !matches!(status, CallStatus::Completed | CallStatus::Canceled) {
                    return Err(ApiError::bad_request(code::INVALID_PARAMETER, "Status must be completed or canceled"));
                }
                if !record.status.is_final() {
                    let sid = sid.clone();
                    self.ask(|reply| Control::Hangup { sid, reply }).await;
                }
            }
            self.record(account, sid).await
        })
    }
}

/// The user part for our From: the number, or a SIP URI's user.
fn from_user(from: &str) -> String {
    let from = from.trim();
    let user = from
        .strip_prefix("sip:")
        .or_else(|| from.strip_prefix("sips:"))
        .map_or(from, |rest| rest.split(['@', ';', '>']).next().unwrap_or(rest));
    let clean: String = user.chars().filter(|c| c.is_ascii_alphanumeric() || "+-_.".contains(*c)).collect();
    if clean.is_empty() {
        "anonymous".into()
    } else {
        clean
    }
}
