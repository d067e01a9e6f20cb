//! Applications: where the appliance fetches the instructions for a call
//! (voice URL, fallback URL) and where it reports the call's progress
//! (status callback).

use super::sid::{AccountSid, ApplicationSid};
use super::timestamp::Timestamp;
use super::{check_text, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub sid: ApplicationSid,
    pub account_sid: AccountSid,
    pub friendly_name: String,
    /// Instructions for a call come from here. An application without one
    /// can exist (Twilio allows it); a call that needs it fails with an error
    /// record.
    pub voice_url: Option<String>,
    pub voice_method: HttpMethod,
    /// Tried when `voice_url` fails (timeout, connection error, 4xx/5xx,
    /// unparsable document).
    pub voice_fallback_url: Option<String>,
    pub voice_fallback_method: HttpMethod,
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

impl Application {
    /// A new application with a generated SID, no URLs, POST everywhere (the
    /// Twilio defaults), dated now.
    pub fn new(account_sid: AccountSid, friendly_name: String) -> Application {
        let now = Timestamp::now();
        Application {
            sid: ApplicationSid::generate(),
            account_sid,
            friendly_name,
            voice_url: None,
            voice_method: HttpMethod::Post,
            voice_fallback_url: None,
            voice_fallback_method: HttpMethod::Post,
            status_callback: None,
            status_callback_method: HttpMethod::Post,
            date_created: now,
            date_updated: now,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_text("application friendly_name", &self.friendly_name, 64)?;
        for (what, url) in [
            ("voice_url", &self.voice_url),
            ("voice_fallback_url", &self.voice_fallback_url),
            ("status_callback", &self.status_callback),
        ] {
            if let Some(url) = url {
                check_http_url(url).map_err(|reason| StoreError::Invalid(format!("{what}: {reason}")))?;
            }
        }
        Ok(())
    }
}

/// The method of a webhook request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }

    /// `GET` or `POST`, in upper case as Twilio writes them (lower case is
    /// accepted too, as Twilio's API does).
    pub fn parse(s: &str) -> Option<HttpMethod> {
        if s.eq_ignore_ascii_case("GET") {
            Some(HttpMethod::Get)
        } else if s.eq_ignore_ascii_case("POST") {
            Some(HttpMethod::Post)
        } else {
            None
        }
    }
}

/// An absolute `http://` or `https://` URL with a host, at most 2048
/// characters, no whitespace or control characters: enough to refuse typos
/// at the door; the HTTP client parses it properly when it fetches.
pub fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{url:?} has no host"));
    }
    if url.len() > 2048 {
        return Err("a URL must be at most 2048 characters".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} contains whitespace or control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_at_the_door() {
        assert!(check_http_url("http://127.0.0.1:8080/voice").is_ok());
        assert!(check_http_url("https://user:pw@example.com/v?x=1").is_ok());
        assert!(check_http_url("ftp://example.com/").is_err());
        assert!(check_http_url("http:///path").is_err());
        assert!(check_http_url("http://:80/").is_err());
        assert!(check_http_url("http://example.com/a b").is_err());
        assert!(check_http_url("example.com").is_err());
    }

    #[test]
    fn methods() {
        assert_eq!(HttpMethod::parse("POST"), Some(HttpMethod::Post));
        assert_eq!(HttpMethod::parse("get"), Some(HttpMethod::Get));
        assert_eq!(HttpMethod::parse("PUT"), None);
    }
}
