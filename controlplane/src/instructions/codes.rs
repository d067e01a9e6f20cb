//! Twilio's error and warning codes for what goes wrong with instructions.
//!
//! Apps, dashboards and the helper libraries key on these numbers, so every
//! failure is reported with the Twilio code that fits; where none fits
//! exactly, the constant's doc says which one we chose and why.

use std::fmt;

/// A Twilio error code (https://www.twilio.com/docs/api/errors/<code>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// A URL in the instructions (or given through the API) is not a valid
    /// absolute http(s) URL once resolved.
    pub const INVALID_URL: Self = Self(11100);
    /// The app answered with a 4xx/5xx status or the request failed otherwise.
    pub const HTTP_RETRIEVAL_FAILURE: Self = Self(11200);
    /// No TCP connection: the app's server refused it.
    pub const TCP_CONNECTION_REFUSED: Self = Self(11202);
    /// Network failure or no HTTP response in time (Twilio uses this code for
    /// its 15 s response timeout too).
    pub const HTTP_CONNECTION_FAILURE: Self = Self(11205);
    /// The URL's host name does not resolve.
    pub const HTTP_BAD_HOST_NAME: Self = Self(11210);
    /// Too many HTTP redirects. Also used for TwiML `<Redirect>` loops and
    /// for exceeding the documents-per-call limit: Twilio has no code of its
    /// own for those, and this is the one an app developer reads correctly
    /// ("your app keeps sending me elsewhere").
    pub const HTTP_TOO_MANY_REDIRECTS: Self = Self(11215);
    /// TLS handshake with the app's server failed.
    pub const TLS_HANDSHAKE: Self = Self(11220);
    /// The response body is larger than 64 KiB.
    pub const RESPONSE_TOO_LARGE: Self = Self(11750);
    /// Not well-formed XML (or an empty body).
    pub const DOCUMENT_PARSE_FAILURE: Self = Self(12100);
    /// The root element is not `<Response>`.
    pub const ROOT_NOT_RESPONSE: Self = Self(12102);
    /// Well-formed TwiML that breaks a rule with no more specific code:
    /// limits, bad nesting outside `<Dial>`, bad values, and verbs this
    /// appliance does not implement.
    pub const SCHEMA_VALIDATION: Self = Self(12200);
    /// The response's Content-Type is not XML or plain text.
    pub const INVALID_CONTENT_TYPE: Self = Self(12300);
    pub const DIAL_INVALID_METHOD: Self = Self(13210);
    pub const DIAL_INVALID_TIMEOUT: Self = Self(13212);
    pub const DIAL_INVALID_HANGUP_ON_STAR: Self = Self(13213);
    pub const DIAL_INVALID_CALLER_ID: Self = Self(13214);
    pub const DIAL_INVALID_NESTED_ELEMENT: Self = Self(13215);
    pub const DIAL_INVALID_TIME_LIMIT: Self = Self(13216);
    pub const NUMBER_INVALID_METHOD: Self = Self(13221);
    pub const NUMBER_INVALID_SEND_DIGITS: Self = Self(13222);
    pub const DIAL_INVALID_PHONE_NUMBER_FORMAT: Self = Self(13223);
    pub const REDIRECT_INVALID_METHOD: Self = Self(13710);
    pub const PAUSE_INVALID_LENGTH: Self = Self(13910);

    /// Twilio's short title for the code, for error records and logs.
    pub fn title(self) -> &'static str {
        match self.0 {
            11100 => "Invalid URL format",
            11200 => "HTTP retrieval failure",
            11202 => "TCP connection refused",
            11205 => "HTTP connection failure",
            11210 => "HTTP bad host name",
            11215 => "HTTP too many redirects",
            11220 => "SSL/TLS Handshake Error",
            11750 => "TwiML response body too large",
            12100 => "Document parse failure",
            12102 => "The root element must be Response",
            12200 => "Schema validation warning",
            12300 => "Invalid Content-Type",
            13210 => "Dial: Invalid method value",
            13212 => "Dial: Invalid timeout value",
            13213 => "Dial: Invalid hangupOnStar value",
            13214 => "Dial: Invalid callerId value",
            13215 => "Dial: Invalid nested element",
            13216 => "Dial: Invalid timeLimit value",
            13221 => "Dial->Number: Invalid method value",
            13222 => "Dial->Number: Invalid sendDigits value",
            13223 => "Dial: Invalid phone number format",
            13710 => "Redirect: Invalid method value",
            13910 => "Pause: Invalid length value",
            _ => "Error",
        }
    }

    /// Where Twilio documents the code; the REST API's `more_info` field.
    pub fn more_info(self) -> String {
        format!("https://www.twilio.com/docs/errors/{}", self.0)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.title())
    }
}
