//! Request parameters as Twilio takes them: form-encoded bodies
//! (`application/x-www-form-urlencoded`) and query strings, with Twilio's
//! PascalCase names (`FriendlyName`, `VoiceUrl`, `PageSize`, `StartTime>`).

use super::error::{code, ApiError};
use crate::store::{check_http_url, HttpMethod};
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;

/// The largest request body read (Twilio's own limit is far above what
/// these resources need).
pub const MAX_BODY: usize = 64 * 1024;

/// Name/value pairs in the order they came; a repeated name keeps all of
/// its values (`StatusCallbackEvent=ringing&StatusCallbackEvent=answered`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `a=1&b=x+y`: percent-decoding, `+` as space.
    pub fn parse(encoded: &[u8]) -> Params {
        Params(url::form_urlencoded::parse(encoded).into_owned().collect())
    }

    /// The query string of `uri`.
    pub fn from_query(uri: &axum::http::Uri) -> Params {
        Params::parse(uri.query().unwrap_or("").as_bytes())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// An optional URL parameter: absent is `None`; present and empty is
    /// `Some(None)` (Twilio clears a URL that way); otherwise it must be an
    /// http(s) URL.
    pub fn url(&self, name: &str) -> Result<Option<Option<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("") => Ok(Some(None)),
            Some(url) => match check_http_url(url) {
                Ok(()) => Ok(Some(Some(url.to_string()))),
                Err(reason) => Err(ApiError::bad_request(code::INVALID_URL, format!("{name} is not valid: {reason}"))),
            },
        }
    }

    /// An optional method parameter: `GET` or `POST`.
    pub fn method(&self, name: &str) -> Result<Option<HttpMethod>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(m) => HttpMethod::parse(m).map(Some).ok_or_else(|| {
                ApiError::bad_request(code::INVALID_PARAMETER, format!("{name} must be GET or POST, not {m:?}"))
            }),
        }
    }

    /// An optional text parameter of at most `max` characters, without
    /// control characters (a friendly name).
    pub fn text(&self, name: &str, max: usize) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.chars().count() > max => {
                Err(ApiError::bad_request(code::INVALID_PARAMETER, format!("{name} must be at most {max} characters")))
            }
            Some(v) if v.chars().any(char::is_control) => Err(ApiError::bad_request(
                code::INVALID_PARAMETER,
                format!("{name} must not contain control characters"),
            )),
            Some(v) => Ok(Some(v.to_string())),
        }
    }
}

/// The parameters of a `POST`: its form-encoded body, read as an extractor.
/// A body of another content type is refused (Twilio takes forms only).
#[derive(Debug, Clone, Default)]
pub struct Form(pub Params);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Form, ApiError> {
        let form_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| {
            v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        let body = axum::body::Bytes::from_request(request, state).await.map_err(|e| {
            ApiError::bad_request(code::INVALID_PARAMETER, format!("cannot read the request body: {e}"))
        })?;
        if body.len() > MAX_BODY {
            return Err(ApiError::bad_request(code::INVALID_PARAMETER, "the request body is too large"));
        }
        match form_type {
            Some(false) if !body.is_empty() => Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::INVALID_PARAMETER,
                "the request body must be application/x-www-form-urlencoded",
            )),
            _ => Ok(Form(Params::parse(&body))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms_like_browsers_and_helper_libraries() {
        let p = Params::parse(b"FriendlyName=My+App%21&VoiceUrl=https%3A%2F%2Fx.example%2Fv%3Fa%3D1&E=&R=1&R=2");
        assert_eq!(p.get("FriendlyName"), Some("My App!"));
        assert_eq!(p.get("VoiceUrl"), Some("https://x.example/v?a=1"));
        assert_eq!(p.url("VoiceUrl").unwrap(), Some(Some("https://x.example/v?a=1".into())));
        assert_eq!(p.url("E").unwrap(), Some(None), "empty clears");
        assert_eq!(p.url("Missing").unwrap(), None);
        assert_eq!(p.all("R"), vec!["1", "2"]);
        assert_eq!(p.get("friendlyname"), None, "names are case-sensitive, as Twilio's are");
    }

    #[test]
    fn checks_urls_methods_and_text() {
        let p = Params::parse(b"VoiceUrl=ftp%3A%2F%2Fx&VoiceMethod=get&StatusCallbackMethod=PUT&F=a%0Ab");
        assert_eq!(p.url("VoiceUrl").unwrap_err().code, code::INVALID_URL);
        assert_eq!(p.method("VoiceMethod").unwrap(), Some(HttpMethod::Get));
        assert_eq!(p.method("StatusCallbackMethod").unwrap_err().status, 400);
        assert!(p.text("F", 64).is_err());
        assert_eq!(Params::parse(b"F=abc").text("F", 2).unwrap_err().code, code::INVALID_PARAMETER);
    }
}
