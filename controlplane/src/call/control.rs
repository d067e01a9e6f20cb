//! The REST API's door to live calls: [`api::CallControl`] over the shell's
//! command channel.

use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot};

use super::shell::Control;
use crate::api::calls::Instructions;
use crate::api::error::code;
use crate::api::{ApiError, CallControl, CallFuture, CreateCall, UpdateCall};
use crate::instructions::method::Method as HttpMethod;
use crate::store::{Account, CallSid, CallStatus, HttpMethod as StoreMethod, Store};

pub struct ShellControl {
    pub(super) tx: mpsc::UnboundedSender<Control>,
    pub(super) store: Arc<dyn Store>,
}

impl ShellControl {
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
    fn create_call<'a>(&'a self, _account: &'a Account, _params: CreateCall) -> CallFuture<'a> {
        Box::pin(async move {
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code::SERVICE_UNAVAILABLE,
                "outbound calls through the REST API are not available on this appliance yet",
            ))
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
                    Instructions::Url { url, method } => (url, http(method), None),
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

fn http(m: StoreMethod) -> HttpMethod {
    match m {
        StoreMethod::Get => HttpMethod::Get,
        StoreMethod::Post => HttpMethod::Post,
    }
}
