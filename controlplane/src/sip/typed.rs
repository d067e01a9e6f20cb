//! Typed views of the header fields the stack uses, decoded on demand
//! from the raw values and borrowing from them (no allocation except the
//! `Vec` of a list). Folded lines and LWS around separators are accepted
//! as RFC 3261 25.1 allows (`SWS`, `SLASH`, `SEMI`, `EQUAL`, ...).

use std::borrow::Cow;

use super::header::{HeaderName, Headers};
use super::lex::{self, Cursor, Params};
use super::message::Method;
use super::uri::{Host, Uri, UriError};

/// A header value that does not follow its grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed {header} header: {what}")]
pub struct HeaderError {
    pub header: &'static str,
    pub what: &'static str,
}

fn err(header: HeaderName, what: &'static str) -> HeaderError {
    HeaderError { header: header.as_str(), what }
}

fn utf8(h: HeaderName, v: &[u8]) -> Result<&str, HeaderError> {
    std::str::from_utf8(v).map_err(|_| err(h, "not UTF-8"))
}

/// Slice `s` (a `&str`) by a byte sub-slice `sub` of it.
fn sub_str<'a>(s: &'a str, sub: &[u8]) -> &'a str {
    let off = sub.as_ptr() as usize - s.as_ptr() as usize;
    &s[off..off + sub.len()]
}

// ---------------------------------------------------------------- Via

/// One Via value: `SIP/2.0/UDP host:port;branch=...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    pub protocol: &'a str,
    pub version: &'a str,
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
}

/// RFC 3261 branch prefix.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl<'a> Via<'a> {
    pub fn parse(v: &'a [u8]) -> Result<Via<'a>, HeaderError> {
        const H: HeaderName = HeaderName::Via;
        let s = utf8(H, v)?;
        let mut c = Cursor::new(s.as_bytes());
        c.skip_lws();
        let protocol = c.token().ok_or(err(H, "protocol name"))?;
        if !c.sep(b'/') {
            return Err(err(H, "sent-protocol"));
        }
        let version = c.token().ok_or(err(H, "protocol version"))?;
        if !c.sep(b'/') {
            return Err(err(H, "sent-protocol"));
        }
        let transport = c.token().ok_or(err(H, "transport"))?;
        if !c.skip_lws() {
            return Err(err(H, "no space before sent-by"));
        }
        let host = if c.peek() == Some(b'[') {
            let start = c.pos;
            c.take_while(|b| b != b']');
            if !c.eat(b']') {
                return Err(err(H, "IPv6 reference"));
            }
            &c.s[start..c.pos]
        } else {
            c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        let host = sub_str(s, host);
        Host::parse(host).map_err(|_| err(H, "sent-by host"))?;
        let mut port = None;
        if c.sep(b':') {
            let d = c.take_while(|b| b.is_ascii_digit());
            port = Some(std::str::from_utf8(d).ok().and_then(|d| d.parse().ok()).ok_or(err(H, "sent-by port"))?);
        }
        let params = lex::parse_params(&mut c).ok_or(err(H, "parameters"))?;
        c.skip_lws();
        if !c.at_end() {
            return Err(err(H, "trailing characters"));
        }
        Ok(Via {
            protocol: sub_str(s, protocol),
            version: sub_str(s, version),
            transport: sub_str(s, transport),
            host,
            port,
            params,
        })
    }

    /// `SIP/2.0`, any case.
    pub fn is_sip_2_0(&self) -> bool {
        self.protocol.eq_ignore_ascii_case("SIP") && self.version == "2.0"
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// The branch starts with the RFC 3261 magic cookie and has something
    /// after it (RFC 4475 3.2.1: the cookie alone is no identifier).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// `None`: no rport; `Some(None)`: `;rport` (asking for it);
    /// `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params.get("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    pub fn sent_by_host(&self) -> Result<Host, UriError> {
        Host::parse(self.host)
    }
}

// ---------------------------------------------------------------- name-addr

/// `[display-name] <uri> ;params` or `addr-spec ;params` (From, To,
/// Contact, Route, Record-Route, Refer-To...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written: quoted-string content (escapes kept) or
    /// the tokens.
    pub display: Option<&'a str>,
    pub display_quoted: bool,
    /// The URI text, unparsed.
    pub uri_str: &'a str,
    /// Whether the URI was in `<>`.
    pub bracketed: bool,
    /// Header parameters (after the URI).
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    pub fn parse_as(h: HeaderName, v: &'a [u8]) -> Result<NameAddr<'a>, HeaderError> {
        let s = utf8(h, v)?;
        let b = s.as_bytes();
        let mut c = Cursor::new(b);
        c.skip_lws();
        let mut display = None;
        let mut display_quoted = false;
        if c.peek() == Some(b'"') {
            let q = c.quoted().ok_or(err(h, "unterminated quoted string"))?;
            display = Some(sub_str(s, q));
            display_quoted = true;
            c.skip_lws();
            if c.peek() != Some(b'<') {
                return Err(err(h, "quoted display name without <uri>"));
            }
        } else if let Some(lt) = b.iter().position(|&x| x == b'<') {
            let dn = lex::trim(&b[c.pos..lt]);
            // display-name = *(token LWS): tokens separated by LWS only.
            if !dn.iter().all(|&x| lex::is_token(x) || lex::is_lws(x)) {
                return Err(err(h, "display name is not tokens or a quoted string"));
            }
            if !dn.is_empty() {
                display = Some(sub_str(s, dn));
            }
            c.pos = lt;
        }
        let (uri_str, bracketed) = if c.eat(b'<') {
            let start = c.pos;
            c.take_while(|x| x != b'>');
            if !c.eat(b'>') {
                return Err(err(h, "unterminated <"));
            }
            let u = &b[start..c.pos - 1];
            if u.iter().any(|&x| lex::is_lws(x)) || u.is_empty() {
                return Err(err(h, "white space or nothing inside <>"));
            }
            (u, true)
        } else {
            let u = c.take_while(|x| !lex::is_lws(x) && x != b';');
            if u.is_empty() {
                return Err(err(h, "no URI"));
            }
            if u.iter().any(|&x| matches!(x, b'?' | b',' | b'"' | b'>')) {
                // RFC 3261 20.10: such a URI must be in <>.
                return Err(err(h, "URI with ? or , must be in <>"));
            }
            (u, false)
        };
        let params = lex::parse_params(&mut c).ok_or(err(h, "parameters"))?;
        c.skip_lws();
        if !c.at_end() {
            return Err(err(h, "trailing characters"));
        }
        Ok(NameAddr { display, display_quoted, uri_str: sub_str(s, uri_str), bracketed, params })
    }

    /// Parse the URI.
    pub fn uri(&self) -> Result<Uri, UriError> {
        Uri::parse(self.uri_str)
    }

    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }

    /// Display name with quoted-pairs resolved.
    pub fn display_name(&self) -> Option<Cow<'a, str>> {
        self.display.map(|d| if self.display_quoted { lex::unescape_quoted(d) } else { Cow::Borrowed(d) })
    }
}

/// Contact: `*` or a list of addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contact<'a> {
    Star,
    Addrs(Vec<NameAddr<'a>>),
}

// ---------------------------------------------------------------- CSeq

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// `1*DIGIT LWS Method`, the number below 2^31 (RFC 3261 8.1.1.5).
    pub fn parse(v: &[u8]) -> Result<CSeq, HeaderError> {
        const H: HeaderName = HeaderName::CSeq;
        let mut c = Cursor::new(v);
        c.skip_lws();
        let digits = c.take_while(|b| b.is_ascii_digit());
        let seq = parse_u32(digits).filter(|&n| n < 1 << 31).ok_or(err(H, "number"))?;
        if !c.skip_lws() {
            return Err(err(H, "no space before method"));
        }
        let m = c.token().ok_or(err(H, "method"))?;
        c.skip_lws();
        if !c.at_end() {
            return Err(err(H, "trailing characters"));
        }
        Ok(CSeq { seq, method: Method::from_token(m).ok_or(err(H, "method"))? })
    }
}

fn parse_u32(d: &[u8]) -> Option<u32> {
    if d.is_empty() || d.len() > 10 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &b in d {
        n = n * 10 + u64::from(b - b'0');
    }
    u32::try_from(n).ok()
}

/// Digits only (leading zeros allowed), saturating at `u32::MAX`.
fn parse_delta(d: &[u8]) -> Option<u32> {
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &b in d {
        n = (n * 10 + u64::from(b - b'0')).min(u64::from(u32::MAX));
    }
    u32::try_from(n).ok()
}

// ---------------------------------------------------------------- media type

/// `type/subtype;params` (Content-Type, Accept elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaType<'a> {
    pub mtype: &'a str,
    pub subtype: &'a str,
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    pub fn parse_as(h: HeaderName, v: &'a [u8]) -> Result<MediaType<'a>, HeaderError> {
        let s = utf8(h, v)?;
        let mut c = Cursor::new(s.as_bytes());
        c.skip_lws();
        let t = c.token().ok_or(err(h, "type"))?;
        if !c.sep(b'/') {
            return Err(err(h, "no /"));
        }
        let st = c.token().ok_or(err(h, "subtype"))?;
        let params = lex::parse_params(&mut c).ok_or(err(h, "parameters"))?;
        c.skip_lws();
        if !c.at_end() {
            return Err(err(h, "trailing characters"));
        }
        Ok(MediaType { mtype: sub_str(s, t), subtype: sub_str(s, st), params })
    }

    /// `type/subtype` equal, case-insensitively.
    pub fn is(&self, essence: &str) -> bool {
        essence
            .split_once('/')
            .is_some_and(|(t, st)| self.mtype.eq_ignore_ascii_case(t) && self.subtype.eq_ignore_ascii_case(st))
    }

    /// This (Accept) range covers `essence` (wildcards honoured).
    pub fn covers(&self, essence: &str) -> bool {
        let Some((t, st)) = essence.split_once('/') else {
            return false;
        };
        (self.mtype == "*" || self.mtype.eq_ignore_ascii_case(t))
            && (self.subtype == "*" || self.subtype.eq_ignore_ascii_case(st))
    }
}

// ---------------------------------------------------------------- auth

/// `Authorization`, `Proxy-Authorization`, `WWW-Authenticate`,
/// `Proxy-Authenticate`: a scheme and its comma-separated `name=value`
/// parameters (values may be quoted). Unknown schemes are kept as they
/// are; RFC 4475 3.3.7 expects a challenge in answer, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth<'a> {
    pub scheme: &'a str,
    pub params: Vec<(&'a str, &'a str)>,
}

impl<'a> Auth<'a> {
    pub fn parse_as(h: HeaderName, v: &'a [u8]) -> Result<Auth<'a>, HeaderError> {
        let s = utf8(h, v)?;
        let mut c = Cursor::new(s.as_bytes());
        c.skip_lws();
        let scheme = c.token().ok_or(err(h, "scheme"))?;
        let mut params = Vec::new();
        if c.skip_lws() {
            loop {
                let n = c.token().ok_or(err(h, "parameter name"))?;
                if !c.sep(b'=') {
                    return Err(err(h, "parameter without ="));
                }
                let start = c.pos;
                if c.peek() == Some(b'"') {
                    c.quoted().ok_or(err(h, "unterminated quoted string"))?;
                } else {
                    c.token().ok_or(err(h, "parameter value"))?;
                }
                let val = &c.s[start..c.pos];
                params.push((sub_str(s, n), sub_str(s, val)));
                if !c.sep(b',') {
                    break;
                }
            }
        }
        c.skip_lws();
        if !c.at_end() {
            return Err(err(h, "trailing characters"));
        }
        Ok(Auth { scheme: sub_str(s, scheme), params })
    }

    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    /// A parameter's value, unquoted (`realm`, `nonce`, `response`...).
    pub fn param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| {
            match v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
                Some(inner) => lex::unescape_quoted(inner),
                None => Cow::Borrowed(*v),
            }
        })
    }
}

// ---------------------------------------------------------------- accessors

impl Headers {
    fn single(&self, id: HeaderName) -> Result<&[u8], HeaderError> {
        let mut it = self.get_all(id);
        let h = it.next().ok_or(err(id, "missing"))?;
        if it.next().is_some() {
            return Err(err(id, "more than one"));
        }
        Ok(&h.value)
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, HeaderError>> + '_ {
        self.values(HeaderName::Via).map(Via::parse)
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Result<Via<'_>, HeaderError> {
        let v = self.values(HeaderName::Via).next().ok_or(err(HeaderName::Via, "missing"))?;
        Via::parse(v)
    }

    pub fn from_addr(&self) -> Result<NameAddr<'_>, HeaderError> {
        NameAddr::parse_as(HeaderName::From, self.single(HeaderName::From)?)
    }

    pub fn to_addr(&self) -> Result<NameAddr<'_>, HeaderError> {
        NameAddr::parse_as(HeaderName::To, self.single(HeaderName::To)?)
    }

    /// Call-ID: `word ["@" word]`.
    pub fn call_id(&self) -> Result<&str, HeaderError> {
        const H: HeaderName = HeaderName::CallId;
        let v = self.single(H)?;
        let ok = !v.is_empty()
            && v.iter().filter(|&&b| b == b'@').count() <= 1
            && v.iter().all(|&b| lex::is_word(b) || b == b'@')
            && v[0] != b'@'
            && v[v.len() - 1] != b'@';
        if !ok {
            return Err(err(H, "not word[@word]"));
        }
        utf8(H, v)
    }

    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        CSeq::parse(self.single(HeaderName::CSeq)?)
    }

    /// `Ok(None)` when absent; 0..=255 otherwise.
    pub fn max_forwards(&self) -> Result<Option<u8>, HeaderError> {
        const H: HeaderName = HeaderName::MaxForwards;
        if self.get(H).is_none() {
            return Ok(None);
        }
        let v = lex::trim(self.single(H)?);
        parse_u32(v).and_then(|n| u8::try_from(n).ok()).map(Some).ok_or(err(H, "not a number in 0..=255"))
    }

    /// `Ok(None)` when absent; huge values saturate.
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        const H: HeaderName = HeaderName::Expires;
        if self.get(H).is_none() {
            return Ok(None);
        }
        parse_delta(lex::trim(self.single(H)?)).map(Some).ok_or(err(H, "not delta-seconds"))
    }

    /// Contact values: `Ok(None)` when absent.
    pub fn contact(&self) -> Result<Option<Contact<'_>>, HeaderError> {
        const H: HeaderName = HeaderName::Contact;
        if self.get(H).is_none() {
            return Ok(None);
        }
        let mut values = self.values(H).peekable();
        if values.peek() == Some(&&b"*"[..]) {
            values.next();
            if values.next().is_some() {
                return Err(err(H, "* with other values"));
            }
            return Ok(Some(Contact::Star));
        }
        let list = values.map(|v| NameAddr::parse_as(H, v)).collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Contact::Addrs(list)))
    }

    pub fn routes(&self) -> Result<Vec<NameAddr<'_>>, HeaderError> {
        self.name_addr_list(HeaderName::Route)
    }

    pub fn record_routes(&self) -> Result<Vec<NameAddr<'_>>, HeaderError> {
        self.name_addr_list(HeaderName::RecordRoute)
    }

    fn name_addr_list(&self, id: HeaderName) -> Result<Vec<NameAddr<'_>>, HeaderError> {
        self.values(id).map(|v| NameAddr::parse_as(id, v)).collect()
    }

    pub fn content_type(&self) -> Result<Option<MediaType<'_>>, HeaderError> {
        const H: HeaderName = HeaderName::ContentType;
        if self.get(H).is_none() {
            return Ok(None);
        }
        MediaType::parse_as(H, self.single(H)?).map(Some)
    }

    /// Accept ranges (empty when absent).
    pub fn accept(&self) -> Result<Vec<MediaType<'_>>, HeaderError> {
        self.values(HeaderName::Accept)
            .filter(|v| !v.is_empty())
            .map(|v| MediaType::parse_as(HeaderName::Accept, v))
            .collect()
    }

    /// Option tags of Require / Supported / Proxy-Require / Unsupported.
    pub fn option_tags(&self, id: HeaderName) -> Result<Vec<&str>, HeaderError> {
        self.values(id)
            .filter(|v| !v.is_empty())
            .map(|v| if lex::is_token_str(v) { utf8(id, v) } else { Err(err(id, "option tag is not a token")) })
            .collect()
    }

    fn auth(&self, id: HeaderName) -> Option<Result<Auth<'_>, HeaderError>> {
        self.get(id).map(|h| Auth::parse_as(id, &h.value))
    }

    pub fn authorization(&self) -> Option<Result<Auth<'_>, HeaderError>> {
        self.auth(HeaderName::Authorization)
    }

    pub fn proxy_authorization(&self) -> Option<Result<Auth<'_>, HeaderError>> {
        self.auth(HeaderName::ProxyAuthorization)
    }

    pub fn www_authenticate(&self) -> Option<Result<Auth<'_>, HeaderError>> {
        self.auth(HeaderName::WwwAuthenticate)
    }

    pub fn proxy_authenticate(&self) -> Option<Result<Auth<'_>, HeaderError>> {
        self.auth(HeaderName::ProxyAuthenticate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::header::Header;

    fn hs(lines: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in lines {
            h.push(Header::with_name(n.to_string(), v.to_string()));
        }
        h
    }

    #[test]
    fn via_fields() {
        let v = Via::parse(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;received=10.0.0.1;rport=4000").unwrap();
        assert_eq!((v.transport, v.host, v.port), ("UDP", "192.0.2.1", Some(5060)));
        assert!(v.is_sip_2_0() && v.has_rfc3261_branch());
        assert_eq!(v.received(), Some("10.0.0.1"));
        assert_eq!(v.rport(), Some(Some(4000)));
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw;rport").unwrap();
        assert_eq!((v.version, v.transport, v.host), ("2.0", "UDP", "192.0.2.2"));
        assert!(!v.has_rfc3261_branch());
        assert_eq!(v.rport(), Some(None));
        let v = Via::parse(b"SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bK").unwrap();
        assert_eq!(v.host, "[2001:db8::9]");
        assert!(!v.has_rfc3261_branch(), "cookie alone is not a branch");
        assert!(Via::parse(b"SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse(b"SIP/2.0/UDP").is_err());
        assert!(Via::parse(b"SIP/2.0 host").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse_as(
            HeaderName::From,
            br#""J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(n.display_name().unwrap(), r#"J Rosenberg \""#);
        assert_eq!(n.tag(), Some("98asjd8"));
        assert_eq!(n.uri().unwrap().to_string(), "sip:jdrosen@example.com");
        let n = NameAddr::parse_as(HeaderName::From, b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display, Some("caller"));
        let n = NameAddr::parse_as(HeaderName::Contact, b"sip:+1972@gw1.example.net;unknownparam").unwrap();
        assert_eq!(n.uri_str, "sip:+1972@gw1.example.net");
        assert!(n.params.has("unknownparam"));
        let n = NameAddr::parse_as(HeaderName::Contact, b"<sip:+1972@gw1.example.net;unknownparam>").unwrap();
        assert!(n.params.is_empty());
        for bad in [
            &br#""Mr. J. User <sip:j.user@example.com>"#[..],
            b"< sip:t.watson@example.org >",
            b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            b"sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            b"\"Joe\" <sip:joe@example.org>;;;;",
            b"",
        ] {
            assert!(NameAddr::parse_as(HeaderName::To, bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn scalar_headers() {
        let h = hs(&[
            ("CSeq", "0009\r\n  INVITE"),
            ("Max-Forwards", "0068"),
            ("i", "a84b4c76e66710@pc33.atlanta.com"),
            ("Expires", "100000000000000000000"),
            ("c", "application/sdp;charset=x"),
        ]);
        assert_eq!(h.cseq().unwrap(), CSeq { seq: 9, method: Method::Invite });
        assert_eq!(h.max_forwards().unwrap(), Some(68));
        assert_eq!(h.call_id().unwrap(), "a84b4c76e66710@pc33.atlanta.com");
        assert_eq!(h.expires().unwrap(), Some(u32::MAX));
        assert!(h.content_type().unwrap().unwrap().is("Application/SDP"));
        assert!(CSeq::parse(b"36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse(b"2147483648 INVITE").is_err());
        assert!(CSeq::parse(b"2147483647 INVITE").is_ok());
        assert!(hs(&[("Max-Forwards", "300")]).max_forwards().is_err());
        assert!(hs(&[("Call-ID", "a b")]).call_id().is_err());
        assert!(hs(&[("CSeq", "1 INVITE"), ("CSeq", "2 INVITE")]).cseq().is_err());
    }

    #[test]
    fn contacts_routes_accept_tags() {
        let h = hs(&[
            ("m", "<sip:a@b>;expires=60, \"x, y\" <sip:c@d>"),
            ("Contact", "sip:e@f"),
            ("Route", "<sip:p1.example.com;lr>,<sip:p2.example.com;lr>"),
            ("Accept", "application/sdp, application/*;q=0.5"),
            ("Require", "100rel, timer"),
        ]);
        let Some(Contact::Addrs(c)) = h.contact().unwrap() else { panic!() };
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].params.get("expires"), Some(Some("60")));
        assert_eq!(h.routes().unwrap().len(), 2);
        assert!(h.accept().unwrap()[1].covers("application/pidf+xml"));
        assert_eq!(h.option_tags(HeaderName::Require).unwrap(), ["100rel", "timer"]);
        assert_eq!(hs(&[("Contact", " * ")]).contact().unwrap(), Some(Contact::Star));
        assert_eq!(hs(&[]).contact().unwrap(), None);
    }

    #[test]
    fn digest_params() {
        let h = hs(&[
            (
                "WWW-Authenticate",
                r#"Digest realm="atlanta.com", nonce="84a4cc6f3082121f32b42a2187831a9e", algorithm=MD5, qop="auth,auth-int""#,
            ),
            ("Authorization", "NoOneKnowsThisScheme opaque-data=here"),
        ]);
        let c = h.www_authenticate().unwrap().unwrap();
        assert!(c.is_digest());
        assert_eq!(c.param("realm").unwrap(), "atlanta.com");
        assert_eq!(c.param("ALGORITHM").unwrap(), "MD5");
        assert_eq!(c.param("qop").unwrap(), "auth,auth-int");
        let a = h.authorization().unwrap().unwrap();
        assert_eq!(a.scheme, "NoOneKnowsThisScheme");
        assert!(!a.is_digest());
        assert_eq!(a.param("opaque-data").unwrap(), "here");
    }
}
