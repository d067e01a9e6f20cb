//! Errors as Twilio's REST API writes them: an HTTP status and a JSON body
//! `{"code", "message", "more_info", "status"}`, `code` from Twilio's error
//! dictionary so that the helper libraries' exceptions carry the number an
//! application may test (`TwilioRestException.code`).

use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Twilio error codes this API answers with.
pub mod code {
    /// Generic invalid request parameter (bad paging, unknown filter value).
    pub const INVALID_PARAMETER: u32 = 20001;
    /// A `FriendlyName` too long or with control characters.
    pub const INVALID_FRIENDLY_NAME: u32 = 20002;
    /// Missing or wrong credentials, or credentials of another account.
    pub const AUTHENTICATE: u32 = 20003;
    /// The method is not allowed on this resource.
    pub const METHOD_NOT_ALLOWED: u32 = 20004;
    /// The resource does not exist (or belongs to another account).
    pub const NOT_FOUND: u32 = 20404;
    pub const INTERNAL: u32 = 20500;
    pub const SERVICE_UNAVAILABLE: u32 = 20503;
    /// No `To` for a new call.
    pub const TO_REQUIRED: u32 = 21201;
    /// A URL parameter is missing or not a valid URL.
    pub const INVALID_URL: u32 = 21205;
    /// `To` is not a number or address the appliance can call.
    pub const INVALID_TO: u32 = 21211;
    /// No `From` (caller ID) for a new call.
    pub const FROM_REQUIRED: u32 = 21213;
    /// An `ApplicationSid` that does not name an application of the account.
    pub const INVALID_APPLICATION_SID: u32 = 21218;
    /// The call is not in a state the update can apply to.
    pub const INVALID_CALL_STATE: u32 = 21220;
    /// `PhoneNumber` is not an E.164 number.
    pub const INVALID_PHONE_NUMBER: u32 = 21421;
    /// `PhoneNumber` is held already (by this or another account).
    pub const PHONE_NUMBER_NOT_AVAILABLE: u32 = 21422;
}

/// A failed REST request, rendered as Twilio renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    /// 401 with Twilio's exact body: the same for a missing header, a wrong
    /// secret, an unknown SID or another account's path, so that nothing can
    /// be learnt about other accounts.
    pub fn authenticate() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code::AUTHENTICATE, "Authenticate")
    }

    /// 404 naming the path, as Twilio words it.
    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code::NOT_FOUND, format!("The requested resource {path} was not found"))
    }

    /// 400 with `code`.
    pub fn bad_request(code: u32, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, code::METHOD_NOT_ALLOWED, "Method not allowed")
    }

    /// 500; the details go to the log, not to the client.
    pub fn internal(what: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %what, "REST API internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL, "Internal server error")
    }

    /// Maps a store error for the resource at `path`: `NotFound` is a 404,
    /// `Invalid` and `Conflict` a 400 with the store's reason.
    pub fn from_store(e: StoreError, path: &str) -> ApiError {
        match e {
            StoreError::NotFound { .. } => ApiError::not_found(path),
            StoreError::Invalid(reason) => ApiError::bad_request(code::INVALID_PARAMETER, reason),
            StoreError::Conflict(reason) => ApiError::bad_request(code::INVALID_PARAMETER, reason),
            other => ApiError::internal(other),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status.as_u16(),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // As Twilio does: browsers and curl then know to send credentials.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"Twilio API\""),
            );
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
