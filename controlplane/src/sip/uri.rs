//! URIs: `sip:`/`sips:` (RFC 3261 19.1), `tel:` (RFC 3966, number and
//! parameters only) and any other absolute URI kept opaque (RFC 4475
//! 3.3.2-3.3.4: a parser must accept unknown schemes; what to do with
//! them is the validator's call).
//!
//! Escaped characters are kept as received (so `Display` reproduces the
//! input) and decoded on request: a user part may decode to bytes that
//! are not UTF-8 or contain NUL (RFC 4475 3.1.1.4), hence `Vec<u8>`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("URI has no scheme")]
    NoScheme,
    #[error("URI has an invalid character at byte {0}")]
    BadChar(usize),
    #[error("URI host is missing or malformed")]
    BadHost,
    #[error("URI port is not a number below 65536")]
    BadPort,
    #[error("URI parameter is empty or malformed")]
    BadParam,
    #[error("URI header is malformed")]
    BadHeader,
    #[error("URI has a malformed %-escape")]
    BadEscape,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A domain name as written (case kept).
    Name(String),
    V4(Ipv4Addr),
    /// Written as an IPv6 reference `[...]`.
    V6(Ipv6Addr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

impl Host {
    /// Parse `hostname / IPv4address / IPv6reference`.
    pub fn parse(s: &str) -> Result<Host, UriError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(UriError::BadHost)?;
            return inner.parse().map(Host::V6).map_err(|_| UriError::BadHost);
        }
        if s.is_empty() {
            return Err(UriError::BadHost);
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            if let Ok(a) = s.parse() {
                return Ok(Host::V4(a));
            }
        }
        // hostname = *( domainlabel "." ) toplabel [ "." ]
        let ok = s.split('.').enumerate().all(|(i, label)| {
            (label.is_empty() && i > 0 && s.ends_with('.'))
                || (!label.is_empty()
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-'))
        });
        if ok {
            Ok(Host::Name(s.to_owned()))
        } else {
            Err(UriError::BadHost)
        }
    }
}

/// A `sip:`, `sips:` or `tel:` URI. For `tel:` the number is in `user`
/// and `host` is an empty name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    pub scheme: Scheme,
    /// User part, escaped as received.
    pub user: Option<String>,
    /// Password, escaped as received (deprecated, still parsed).
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    /// `;name[=value]` in order, escaped as received.
    pub params: Vec<(String, Option<String>)>,
    /// `?name=value&...` in order, escaped as received.
    pub headers: Vec<(String, String)>,
}

/// Any URI: SIP/SIPS/tel parsed, other schemes opaque.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    Other { scheme: String, opaque: String },
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')')
}
fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}
fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}
fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}
fn is_header_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

/// Check that `s` is made of `allowed` bytes and well-formed `%HH`
/// escapes. `offset` places errors in the whole URI.
fn check_escaped(s: &str, allowed: fn(u8) -> bool, offset: usize) -> Result<(), UriError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Err(UriError::BadEscape);
            }
            i += 3;
        } else if allowed(b[i]) {
            i += 1;
        } else {
            return Err(UriError::BadChar(offset + i));
        }
    }
    Ok(())
}

/// Decode `%HH` escapes (input already checked, or malformed escapes are
/// kept literally).
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = h.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Split `scheme ":" rest`; the scheme must be `ALPHA *(ALPHA / DIGIT /
/// "+" / "-" / ".")`.
pub(crate) fn split_scheme(s: &str) -> Result<(&str, &str), UriError> {
    let colon = s.find(':').ok_or(UriError::NoScheme)?;
    let scheme = &s[..colon];
    let b = scheme.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphabetic() {
        return Err(UriError::NoScheme);
    }
    if let Some(i) = b.iter().position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))) {
        return Err(UriError::BadChar(i));
    }
    Ok((scheme, &s[colon + 1..]))
}

impl Uri {
    /// Parse any absolute URI. No LWS is allowed anywhere.
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        let (scheme, rest) = split_scheme(s)?;
        if scheme.eq_ignore_ascii_case("sip")
            || scheme.eq_ignore_ascii_case("sips")
            || scheme.eq_ignore_ascii_case("tel")
        {
            return SipUri::parse(s).map(Uri::Sip);
        }
        // absoluteURI: opaque or hierarchical part of uric characters.
        if rest.is_empty() {
            return Err(UriError::BadChar(s.len()));
        }
        if let Some(i) = rest.bytes().position(|b| !(is_unreserved(b) || b"%;?:@&=+$,/[]#".contains(&b))) {
            return Err(UriError::BadChar(scheme.len() + 1 + i));
        }
        Ok(Uri::Other { scheme: scheme.to_owned(), opaque: rest.to_owned() })
    }

    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) => u.scheme.as_str(),
            Uri::Other { scheme, .. } => scheme,
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Other { scheme, opaque } => write!(f, "{scheme}:{opaque}"),
        }
    }
}

impl SipUri {
    /// A plain `sip:user@host[:port]` URI.
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            scheme: Scheme::Sip,
            user: user.map(str::to_owned),
            password: None,
            host,
            port,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn parse(s: &str) -> Result<SipUri, UriError> {
        let (scheme_str, rest) = split_scheme(s)?;
        let scheme = if scheme_str.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_str.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_str.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            return Err(UriError::NoScheme);
        };
        let base = scheme_str.len() + 1;
        if scheme == Scheme::Tel {
            return Self::parse_tel(rest, base);
        }
        // userinfo: up to the first '@' (no '@' may appear unescaped later).
        let (user, password, hostpart, hoff) = match rest.find('@') {
            Some(at) => {
                let info = &rest[..at];
                let (u, p) = match info.find(':') {
                    Some(c) => (&info[..c], Some(&info[c + 1..])),
                    None => (info, None),
                };
                if u.is_empty() {
                    return Err(UriError::BadChar(base));
                }
                check_escaped(u, is_user_char, base)?;
                if let Some(p) = p {
                    check_escaped(p, is_password_char, base + u.len() + 1)?;
                }
                (Some(u.to_owned()), p.map(str::to_owned), &rest[at + 1..], base + at + 1)
            }
            None => (None, None, rest, base),
        };
        // host [ ":" port ]
        let host_end = if hostpart.starts_with('[') {
            hostpart.find(']').map(|i| i + 1).ok_or(UriError::BadHost)?
        } else {
            hostpart.find([':', ';', '?']).unwrap_or(hostpart.len())
        };
        let host = Host::parse(&hostpart[..host_end])?;
        let mut tail = &hostpart[host_end..];
        let mut port = None;
        if let Some(p) = tail.strip_prefix(':') {
            let end = p.find([';', '?']).unwrap_or(p.len());
            let digits = &p[..end];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(UriError::BadPort);
            }
            port = Some(digits.parse().map_err(|_| UriError::BadPort)?);
            tail = &p[end..];
        }
        let (params, headers) = parse_params_headers(tail, hoff + host_end)?;
        Ok(SipUri { scheme, user, password, host, port, params, headers })
    }

    fn parse_tel(rest: &str, base: usize) -> Result<SipUri, UriError> {
        let end = rest.find(';').unwrap_or(rest.len());
        let number = &rest[..end];
        if number.is_empty() {
            return Err(UriError::BadChar(base));
        }
        if let Some(i) = number
            .bytes()
            .position(|b| !(b.is_ascii_hexdigit() || matches!(b, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')))
        {
            return Err(UriError::BadChar(base + i));
        }
        let (params, headers) = parse_params_headers(&rest[end..], base + end)?;
        if !headers.is_empty() {
            return Err(UriError::BadHeader);
        }
        Ok(SipUri {
            scheme: Scheme::Tel,
            user: Some(number.to_owned()),
            password: None,
            host: Host::Name(String::new()),
            port: None,
            params,
            headers,
        })
    }

    /// The user part with escapes decoded.
    pub fn user_decoded(&self) -> Option<Vec<u8>> {
        self.user.as_deref().map(unescape)
    }

    /// A URI parameter by name (case-insensitive): `Some(None)` when
    /// present without value. Names are compared escaped-decoded.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name) || unescape(n).eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_deref())
    }

    /// `transport=` parameter, if any.
    pub fn transport(&self) -> Option<&str> {
        self.param("transport").flatten()
    }

    /// Loose routing (`;lr`).
    pub fn lr(&self) -> bool {
        self.param("lr").is_some()
    }
}

/// `;name[=value]` pairs of a URI, escaped as received.
type UriParams = Vec<(String, Option<String>)>;
/// `?name=value` pairs of a URI, escaped as received.
type UriHeaders = Vec<(String, String)>;

fn parse_params_headers(mut tail: &str, offset: usize) -> Result<(UriParams, UriHeaders), UriError> {
    let mut params = Vec::new();
    let mut headers = Vec::new();
    let headers_at = tail.find('?');
    let (ptext, htext) = match headers_at {
        Some(q) => (&tail[..q], Some(&tail[q + 1..])),
        None => (tail, None),
    };
    tail = ptext;
    if !tail.is_empty() {
        let body = tail.strip_prefix(';').ok_or(UriError::BadChar(offset))?;
        for p in body.split(';') {
            let (n, v) = match p.find('=') {
                Some(e) => (&p[..e], Some(&p[e + 1..])),
                None => (p, None),
            };
            if n.is_empty() || v.is_some_and(str::is_empty) {
                return Err(UriError::BadParam);
            }
            check_escaped(n, is_param_char, offset).map_err(|_| UriError::BadParam)?;
            if let Some(v) = v {
                check_escaped(v, is_param_char, offset).map_err(|_| UriError::BadParam)?;
            }
            params.push((n.to_owned(), v.map(str::to_owned)));
        }
    }
    if let Some(h) = htext {
        for pair in h.split('&') {
            let (n, v) = pair.split_once('=').ok_or(UriError::BadHeader)?;
            if n.is_empty() {
                return Err(UriError::BadHeader);
            }
            check_escaped(n, is_header_char, offset).map_err(|_| UriError::BadHeader)?;
            check_escaped(v, is_header_char, offset).map_err(|_| UriError::BadHeader)?;
            headers.push((n.to_owned(), v.to_owned()));
        }
    }
    Ok((params, headers))
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme.as_str())?;
        f.write_str(":")?;
        if self.scheme == Scheme::Tel {
            f.write_str(self.user.as_deref().unwrap_or(""))?;
        } else {
            if let Some(u) = &self.user {
                f.write_str(u)?;
                if let Some(p) = &self.password {
                    write!(f, ":{p}")?;
                }
                f.write_str("@")?;
            }
            write!(f, "{}", self.host)?;
            if let Some(p) = self.port {
                write!(f, ":{p}")?;
            }
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

impl std::str::FromStr for SipUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SipUri::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(s: &str) -> SipUri {
        let u = SipUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(u.to_string(), s);
        u
    }

    #[test]
    fn full_sip_uri() {
        let u = roundtrip("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?Subject=hi&Priority=urgent");
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, Host::V6("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some("tcp"));
        assert!(u.lr());
        assert_eq!(u.headers.len(), 2);
    }

    #[test]
    fn user_with_semicolon_and_escapes() {
        // RFC 4475 3.1.1.9: the ';' belongs to the user part.
        let u = roundtrip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user_decoded().unwrap(), b"user;par=u@example.net");
        assert_eq!(u.host, Host::Name("example.com".into()));
        assert!(u.params.is_empty());
        let u = roundtrip("sip:null-%00-null@example.com");
        assert_eq!(u.user_decoded().unwrap(), b"null-\0-null");
        let u = roundtrip("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        assert_eq!(u.user_decoded().unwrap(), b"caller");
        assert_eq!(u.param("lr"), Some(None));
    }

    #[test]
    fn ipv4_and_tel() {
        let u = roundtrip("sip:192.0.2.1:5060");
        assert_eq!(u.host, Host::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(u.user.is_none());
        let t = roundtrip("tel:+1-201-555-0123;phone-context=example.com");
        assert_eq!(t.scheme, Scheme::Tel);
        assert_eq!(t.user.as_deref(), Some("+1-201-555-0123"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "sip:",
            "sip:user@",
            "sip:user@exa mple.com",
            "sip:host:99999",
            "sip:host:",
            "sip:host;;lr",
            "sip:host?x",
            "sip:%zz@host",
            "<sip:host>",
            "sip:[::1",
            "sip:@host",
        ] {
            assert!(SipUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_schemes_are_opaque() {
        let u = Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
        assert_eq!(u.scheme(), "nobodyKnowsThisScheme");
        assert_eq!(u.to_string(), "nobodyKnowsThisScheme:totallyopaquecontent");
        assert_eq!(Uri::parse("soap.beep://192.0.2.103:3002").unwrap().scheme(), "soap.beep");
        assert!(Uri::parse("<sip:x>").is_err());
        assert!(Uri::parse("http://a b").is_err());
    }
}
