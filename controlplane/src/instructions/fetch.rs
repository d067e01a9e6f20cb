//! A webhook request the interpreter asks for, how it can fail, and how
//! relative URLs in a document become the absolute URL that is requested.

use super::codes::ErrorCode;
use super::method::Method;

/// Tells a document apart from the answer to an older, superseded request
/// (a REST redirect can replace a fetch that is still in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FetchId(pub u64);

/// Whether the interpreter waits for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPurpose {
    /// The answer is the next TwiML document: hand it back as
    /// `Input::Document` with the same [`FetchId`].
    Instructions,
    /// Fire and forget: the caller is gone, the app is only told how the
    /// `<Dial>` ended (Twilio still requests the `action` URL then, and
    /// ignores what it answers).
    Notification,
}

/// One HTTP request to the customer's application. The shell signs it (see
/// `signature`) and sends `params` as the form body (POST) or query (GET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub id: FetchId,
    pub url: String,
    pub method: Method,
    pub params: Vec<(String, String)>,
    pub purpose: FetchPurpose,
}

/// Why the shell could not get a document. Each maps to Twilio's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("no response within {0} ms")]
    Timeout(u64),
    #[error("connection refused")]
    ConnectionRefused,
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("host name does not resolve: {0}")]
    BadHostName(String),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("too many HTTP redirects")]
    TooManyRedirects,
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("response body over {0} bytes")]
    BodyTooLarge(usize),
    #[error("unexpected Content-Type {0:?}")]
    ContentType(String),
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
}

impl FetchError {
    pub fn code(&self) -> ErrorCode {
        match self {
            FetchError::Timeout(_) | FetchError::Connection(_) => ErrorCode::HTTP_CONNECTION_FAILURE,
            FetchError::ConnectionRefused => ErrorCode::TCP_CONNECTION_REFUSED,
            FetchError::BadHostName(_) => ErrorCode::HTTP_BAD_HOST_NAME,
            FetchError::Tls(_) => ErrorCode::TLS_HANDSHAKE,
            FetchError::TooManyRedirects => ErrorCode::HTTP_TOO_MANY_REDIRECTS,
            FetchError::Status(_) => ErrorCode::HTTP_RETRIEVAL_FAILURE,
            FetchError::BodyTooLarge(_) => ErrorCode::RESPONSE_TOO_LARGE,
            FetchError::ContentType(_) => ErrorCode::INVALID_CONTENT_TYPE,
            FetchError::InvalidUrl(_) => ErrorCode::INVALID_URL,
        }
    }
}

/// A URL that cannot be requested: unparsable, or not http(s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reference:?} is not a valid http(s) URL relative to {base:?}")]
pub struct InvalidUrl {
    pub base: String,
    pub reference: String,
}

/// Resolves `reference` (absolute, or relative like `/next` or `next?x=1`)
/// against the URL of the document it appeared in, as Twilio does for
/// `action`, `<Redirect>` and noun URLs.
pub fn resolve_url(base: &str, reference: &str) -> Result<String, InvalidUrl> {
    let invalid = || InvalidUrl { base: base.to_owned(), reference: reference.to_owned() };
    let base_url = url::Url::parse(base).map_err(|_| invalid())?;
    let resolved = base_url.join(reference.trim()).map_err(|_| invalid())?;
    match resolved.scheme() {
        "http" | "https" if resolved.host().is_some() => Ok(resolved.into()),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_references() {
        let base = "https://app.example.com/voice/start?step=1";
        assert_eq!(resolve_url(base, "/dial-done").as_deref(), Ok("https://app.example.com/dial-done"));
        assert_eq!(resolve_url(base, "next?x=1").as_deref(), Ok("https://app.example.com/voice/next?x=1"));
        assert_eq!(resolve_url(base, "http://other.example:8080/a").as_deref(), Ok("http://other.example:8080/a"));
    }

    #[test]
    fn refuses_non_http_urls() {
        let base = "https://app.example.com/voice";
        assert!(resolve_url(base, "ftp://x/y").is_err());
        assert!(resolve_url(base, "javascript:alert(1)").is_err());
        assert!(resolve_url("not a url", "/x").is_err());
    }
}
