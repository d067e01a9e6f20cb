//! `X-Twilio-Signature`: how the app knows a webhook comes from us.
//!
//! Apps check it with the `RequestValidator` of Twilio's helper libraries,
//! so we compute it exactly as they do:
//!
//! ```text
//! data      = url + for each POST parameter, sorted by name (then value): name + value
//! signature = base64(HMAC-SHA1(key = account auth token, data))
//! ```
//!
//! A GET request carries its parameters in the query string and signs the
//! full URL with no parameters after it. The URL is signed exactly as it is
//! requested; validators try it with and without the default port.
//!
//! Duplicate names are signed once per pair. Python's validator would also
//! collapse identical (name, value) pairs; the parameters we send never
//! repeat a pair, so the difference never shows.

use base64::Engine as _;
use hmac::{KeyInit, Mac};

use super::method::Method;

/// The header the signature travels in.
pub const HEADER: &str = "X-Twilio-Signature";

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// The signature of a request to `url` with the form parameters `params`
/// (pass no parameters for GET; see [`sign_request`]).
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Byte order of UTF-8 is code point order, which is what Python's
    // `sorted` and Java's `String.compareTo` (for BMP text) use.
    sorted.sort();
    let mut mac = hmac_for(auth_token);
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn hmac_for(auth_token: &str) -> HmacSha1 {
    // HMAC takes keys of any length (long ones are hashed first), so this
    // cannot fail; the fallback only keeps the signature total.
    HmacSha1::new_from_slice(auth_token.as_bytes()).unwrap_or_else(|_| HmacSha1::new(&Default::default()))
}

/// A webhook request ready to send: final URL, form body (POST only) and the
/// value of [`HEADER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub method: Method,
    pub url: String,
    /// `application/x-www-form-urlencoded`; `None` for GET.
    pub body: Option<String>,
    pub signature: String,
}

/// Lays out `params` as Twilio does for `method` (query string for GET, form
/// body for POST) and signs the result.
pub fn sign_request(auth_token: &str, method: Method, url: &str, params: &[(String, String)]) -> SignedRequest {
    let encoded = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        form.finish()
    };
    match method {
        Method::Post => {
            SignedRequest { method, url: url.to_owned(), body: Some(encoded), signature: sign(auth_token, url, params) }
        }
        Method::Get => {
            let url = if encoded.is_empty() {
                url.to_owned()
            } else {
                let separator = match url.contains('?') {
                    true if url.ends_with(['?', '&']) => "",
                    true => "&",
                    false => "?",
                };
                format!("{url}{separator}{encoded}")
            };
            let signature = sign(auth_token, &url, &[]);
            SignedRequest { method, url, body: None, signature }
        }
    }
}

/// Checks a signature as the helper libraries' `RequestValidator` does:
/// the URL as given, with its default port added, or with its port removed.
/// For the appliance's own test apps and for webhooks it receives.
pub fn validate(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    [Some(url.to_owned()), with_default_port(url), without_port(url)]
        .into_iter()
        .flatten()
        .any(|candidate| constant_time_eq(sign(auth_token, &candidate, params).as_bytes(), signature.as_bytes()))
}

/// Splits `scheme://authority/rest` at the authority.
fn split_authority(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some((scheme, &rest[..end], &rest[end..]))
}

/// `host:port` of an authority, if it names a port (IPv6 literals included).
fn port_of(authority: &str) -> Option<(&str, &str)> {
    let (host, port) = authority.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some((host, port))
}

fn with_default_port(url: &str) -> Option<String> {
    let (scheme, authority, rest) = split_authority(url)?;
    if port_of(authority).is_some() {
        return None;
    }
    let port = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
    Some(format!("{scheme}://{authority}:{port}{rest}"))
}

fn without_port(url: &str) -> Option<String> {
    let (scheme, authority, rest) = split_authority(url)?;
    let (host, _) = port_of(authority)?;
    Some(format!("{scheme}://{host}{rest}"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    // Produced once with Python's `twilio` package 9.13.0:
    //   from twilio.request_validator import RequestValidator
    //   RequestValidator(token).compute_signature(url, params)
    // with the token, URL and parameters of each case below (see
    // tests/twilio_signature.rs for the check against the live package).
    const TOKEN: &str = "12345";

    #[test]
    fn post_vector_from_twilio_python() {
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(sign(TOKEN, url, &params), POST_VECTOR);
        // Parameter order does not matter; the signature sorts them.
        let mut reversed = params.clone();
        reversed.reverse();
        assert_eq!(sign(TOKEN, url, &reversed), POST_VECTOR);
    }

    #[test]
    fn get_vector_from_twilio_python() {
        let request = sign_request(
            TOKEN,
            Method::Get,
            "http://127.0.0.1:8080/voice",
            &pairs(&[("From", "+15550100002"), ("To", "+15550100001"), ("CallerName", "Ada L")]),
        );
        assert_eq!(request.url, "http://127.0.0.1:8080/voice?From=%2B15550100002&To=%2B15550100001&CallerName=Ada+L");
        assert_eq!(request.body, None);
        assert_eq!(request.signature, GET_VECTOR);
    }

    #[test]
    fn duplicate_names_and_unicode_vector() {
        let params = pairs(&[("b", "2"), ("a", "z"), ("a", "y"), ("Ä", "ü"), ("A", "")]);
        assert_eq!(sign("secret token", "https://example.com:8443/x", &params), DUP_VECTOR);
    }

    #[test]
    fn post_request_body_and_validation_with_ports() {
        let params = pairs(&[("CallSid", "CA1"), ("To", "+1 555")]);
        let request = sign_request(TOKEN, Method::Post, "https://app.example.com/voice", &params);
        assert_eq!(request.body.as_deref(), Some("CallSid=CA1&To=%2B1+555"));
        assert!(validate(TOKEN, "https://app.example.com/voice", &params, &request.signature));
        assert!(validate(TOKEN, "https://app.example.com:443/voice", &params, &request.signature));
        assert!(!validate("other", "https://app.example.com/voice", &params, &request.signature));
        assert!(!validate(TOKEN, "https://app.example.com/voice", &params[..1], &request.signature));
    }

    #[test]
    fn port_helpers() {
        assert_eq!(with_default_port("https://a.b/x?y").as_deref(), Some("https://a.b:443/x?y"));
        assert_eq!(with_default_port("http://a.b").as_deref(), Some("http://a.b:80"));
        assert_eq!(with_default_port("http://a.b:81/"), None);
        assert_eq!(without_port("http://a.b:81/p").as_deref(), Some("http://a.b/p"));
        assert_eq!(without_port("http://[::1]:81/p").as_deref(), Some("http://[::1]/p"));
        assert_eq!(without_port("http://[::1]/p"), None);
    }

    const POST_VECTOR: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
    const GET_VECTOR: &str = "r3aFELUICr0ziJwBL8eToMWjlMI=";
    // The duplicate-name case used a MultiDict-like object (with `getall`).
    const DUP_VECTOR: &str = "OtJ0MMCWrQykgVrl+Lak8Q9sL2c=";
}
