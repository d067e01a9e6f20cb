//! Digest authentication, the client side: answer a 401/407 challenge so
//! that a request can be sent again with credentials (RFC 3261 22,
//! RFC 2617, RFC 7616 for the SHA-2 algorithms, RFC 8760 for their use in
//! SIP). Sans-IO: no clock, no randomness; the caller brings the client
//! nonce.
//!
//! ```text
//!   401 WWW-Authenticate / 407 Proxy-Authenticate
//!     │ Challenge::parse (on typed::Auth)   realm, nonce, opaque, algorithm, qop, stale
//!     ▼
//!   Challenge::answer(method, Request-URI, credentials, cnonce)
//!     │ HA1 = H(username:realm:password)         -sess: H(HA1:nonce:cnonce)
//!     │ HA2 = H(method:uri)
//!     │ response = H(HA1:nonce:nc:cnonce:qop:HA2)   qop=auth
//!     │          = H(HA1:nonce:HA2)                 no qop (RFC 2069)
//!     ▼
//!   Authorization / Proxy-Authorization: Digest username="..", realm="..", ...
//! ```
//!
//! [`authorize`] does all of it for a request and the response that
//! challenged it. `auth-int` (a hash of the body) and `userhash` are not
//! implemented; a challenge that requires them is refused.
//!
//! Use:
//! ```
//! use controlplane::sip::digest::{authorize, Credentials};
//! use controlplane::sip::{HeaderName, Message};
//! let Ok(Message::Request(mut invite)) = Message::parse_datagram(b"INVITE sip:+15551230000@trunk.example SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\nFrom: <sip:gw@192.0.2.9>;tag=1\r\n\
//! To: <sip:+15551230000@trunk.example>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\r\n") else { panic!() };
//! let Ok(Message::Response(challenge)) = Message::parse_datagram(b"SIP/2.0 407 Proxy Authentication Required\r\n\
//! Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\nFrom: <sip:gw@192.0.2.9>;tag=1\r\n\
//! To: <sip:+15551230000@trunk.example>;tag=x\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
//! Proxy-Authenticate: Digest realm=\"trunk.example\", nonce=\"n1\", qop=\"auth\", algorithm=SHA-256\r\n\r\n") else { panic!() };
//! let credentials = Credentials { username: "acct1".into(), password: "s3cr3t".into() };
//! authorize(&mut invite, &challenge, &credentials, "a fresh random cnonce").unwrap();
//! assert!(invite.headers.get(HeaderName::ProxyAuthorization).is_some());
//! // Then: CSeq 2, a new branch, send it in a new client transaction.
//! ```

use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

use super::header::{Header, HeaderName, Headers};
use super::lex::Cursor;
use super::message::{Request, Response};
use super::typed::{Auth, HeaderError};

/// The nonce count we send: every answer is the first use of its nonce
/// (we answer fresh challenges; no pre-emptive reuse of a nonce).
const NONCE_COUNT: &str = "00000001";

/// What the account is known by at the other side.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// The hash algorithm of a challenge (RFC 7616 3.3, RFC 8760 2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    Sha512_256,
    Sha512_256Sess,
}

impl Algorithm {
    /// The name as written in the `algorithm` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// From the `algorithm` parameter, any case.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
            Algorithm::Sha512_256,
            Algorithm::Sha512_256Sess,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(name))
    }

    /// The `-sess` variants hash the client nonce into HA1.
    pub fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess)
    }

    /// Our preference when a realm offers several: the stronger hash.
    fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 0,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 1,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => 2,
        }
    }

    /// Lowercase hex of the hash of `parts` joined by `:`.
    fn hash(self, parts: &[&str]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex_hash::<Md5>(parts),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex_hash::<Sha256>(parts),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => hex_hash::<Sha512_256>(parts),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn hex_hash<D: Digest>(parts: &[&str]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut d = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            d.update(b":");
        }
        d.update(p.as_bytes());
    }
    let out = d.finalize();
    let mut s = String::with_capacity(out.len() * 2);
    for b in out {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// A quality of protection the server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Qop {
    /// Authentication of the method and Request-URI (what we answer).
    Auth,
    /// Authentication with the body's hash (not implemented).
    AuthInt,
}

/// Why a challenge cannot be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("a {0} response is not a 401 or 407 challenge")]
    NotAChallenge(u16),
    #[error("the {code} response has no {header} header")]
    NoChallenge { code: u16, header: &'static str },
    #[error(transparent)]
    Malformed(#[from] HeaderError),
    #[error("authentication scheme {0:?} is not Digest")]
    NotDigest(String),
    #[error("the challenge has no {0}")]
    MissingParam(&'static str),
    #[error("digest algorithm {0:?} is not supported")]
    UnsupportedAlgorithm(String),
    #[error("the challenge offers no qop we support (auth-int is not implemented)")]
    UnsupportedQop,
    #[error("{0} needs qop, and the challenge offers none")]
    SessWithoutQop(Algorithm),
    #[error("the client nonce is empty")]
    EmptyCnonce,
    #[error("the {0} contains a control character and cannot be sent")]
    Unquotable(&'static str),
}

/// One `Digest` challenge (a `WWW-Authenticate` or `Proxy-Authenticate`
/// value), parameters unquoted and unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// `MD5` when the challenge names none (RFC 2617).
    pub algorithm: Algorithm,
    /// `None`: no `qop` parameter (the RFC 2069 form is answered).
    /// `Some(list)`: the offered values we know, in order; empty when the
    /// server offered only values we do not know.
    pub qop: Option<Vec<Qop>>,
    /// `stale=true`: the nonce expired but the credentials were right;
    /// answer again with the new nonce.
    pub stale: bool,
}

impl Challenge {
    /// Parse a challenge value: `Digest realm="..", nonce="..", ...`.
    /// The scheme and parameter names are case-insensitive, values are
    /// tokens or quoted strings, unknown parameters are ignored; `realm`
    /// and `nonce` are required.
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        Challenge::parse_as(HeaderName::WwwAuthenticate, value.as_bytes())
    }

    /// [`Challenge::parse`], naming header `h` in syntax errors.
    pub fn parse_as(h: HeaderName, value: &[u8]) -> Result<Challenge, DigestError> {
        // Refuse another scheme before its parameters: `Basic <token68>`
        // is no auth-param list, and is still "not Digest" rather than
        // malformed.
        let mut c = Cursor::new(value);
        c.skip_lws();
        if let Some(scheme) = c.token() {
            if !scheme.eq_ignore_ascii_case(b"Digest") {
                return Err(DigestError::NotDigest(String::from_utf8_lossy(scheme).into_owned()));
            }
        }
        let auth = Auth::parse_as(h, value)?;
        let required =
            |name: &'static str| auth.param(name).map(|v| v.into_owned()).ok_or(DigestError::MissingParam(name));
        let realm = required("realm")?;
        let nonce = required("nonce")?;
        let algorithm = match auth.param("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::from_name(&a).ok_or_else(|| DigestError::UnsupportedAlgorithm(a.into_owned()))?,
        };
        let qop = auth.param("qop").map(|list| {
            list.split(',')
                .filter_map(|q| match q.trim() {
                    q if q.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
                    q if q.eq_ignore_ascii_case("auth-int") => Some(Qop::AuthInt),
                    _ => None,
                })
                .collect()
        });
        Ok(Challenge {
            realm,
            nonce,
            opaque: auth.param("opaque").map(|v| v.into_owned()),
            algorithm,
            qop,
            stale: auth.param("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The qop we answer with: `None` for the RFC 2069 form, or an error
    /// if the challenge asks for something we do not do.
    fn answer_qop(&self) -> Result<Option<&'static str>, DigestError> {
        match &self.qop {
            None if self.algorithm.is_sess() => Err(DigestError::SessWithoutQop(self.algorithm)),
            None => Ok(None),
            Some(offered) if offered.contains(&Qop::Auth) => Ok(Some("auth")),
            Some(_) => Err(DigestError::UnsupportedQop),
        }
    }

    /// The `Authorization` / `Proxy-Authorization` value answering this
    /// challenge for a request with `method` and Request-URI `uri`, with
    /// `qop=auth` when offered (nonce count 1, client nonce `cnonce`),
    /// the RFC 2069 form otherwise, and `opaque` echoed.
    pub fn answer(
        &self,
        method: &str,
        uri: &str,
        credentials: &Credentials,
        cnonce: &str,
    ) -> Result<String, DigestError> {
        let qop = self.answer_qop()?;
        if qop.is_some() && cnonce.is_empty() {
            return Err(DigestError::EmptyCnonce);
        }
        let alg = self.algorithm;
        let mut ha1 = alg.hash(&[&credentials.username, &self.realm, &credentials.password]);
        if alg.is_sess() {
            ha1 = alg.hash(&[&ha1, &self.nonce, cnonce]);
        }
        let ha2 = alg.hash(&[method, uri]);
        let response = match qop {
            Some(qop) => alg.hash(&[&ha1, &self.nonce, NONCE_COUNT, cnonce, qop, &ha2]),
            None => alg.hash(&[&ha1, &self.nonce, &ha2]),
        };

        let mut v = String::with_capacity(192 + uri.len() + self.nonce.len());
        v.push_str("Digest username=");
        push_quoted(&mut v, "username", &credentials.username)?;
        v.push_str(", realm=");
        push_quoted(&mut v, "realm", &self.realm)?;
        v.push_str(", nonce=");
        push_quoted(&mut v, "nonce", &self.nonce)?;
        v.push_str(", uri=");
        push_quoted(&mut v, "Request-URI", uri)?;
        v.push_str(", response=\"");
        v.push_str(&response);
        v.push_str("\", algorithm=");
        v.push_str(alg.as_str());
        if let Some(qop) = qop {
            v.push_str(", cnonce=");
            push_quoted(&mut v, "client nonce", cnonce)?;
            v.push_str(", qop=");
            v.push_str(qop);
            v.push_str(", nc=");
            v.push_str(NONCE_COUNT);
        }
        if let Some(opaque) = &self.opaque {
            v.push_str(", opaque=");
            push_quoted(&mut v, "opaque", opaque)?;
        }
        Ok(v)
    }
}

/// Append `s` as a quoted-string, escaping `"` and `\`. Control
/// characters (CR, LF...) cannot be carried and are refused, so no value
/// can break the header line.
fn push_quoted(out: &mut String, what: &'static str, s: &str) -> Result<(), DigestError> {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            '\t' => out.push(ch),
            c if c.is_ascii_control() => return Err(DigestError::Unquotable(what)),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(())
}

/// Answer the challenge of a 401 (`WWW-Authenticate`) or 407
/// (`Proxy-Authenticate`) response to `request`: add an `Authorization`
/// (401) or `Proxy-Authorization` (407) header computed for the request's
/// method and Request-URI.
///
/// - Each realm challenged gets one answer, with the same credentials
///   (RFC 3261 22.3: a forked request may be challenged by several).
///   Within a realm the strongest algorithm we support wins (SHA-512-256,
///   then SHA-256, then MD5), the topmost among equals. RFC 8760 has a
///   UAC take the topmost it supports unless local policy says otherwise;
///   this is that policy (servers list the strongest first anyway).
/// - An earlier header of the same kind for a realm answered now is
///   removed first (the retry after `stale=true`, or after a second
///   challenge); answers for other realms stay, since a proxy that
///   accepted them will check them again.
/// - `cnonce` must be fresh and unpredictable for every call (e.g. 16
///   random bytes in hex); it is used when the challenge offers
///   `qop=auth`. The nonce count is always `00000001`.
/// - On error the request is left as it was. Challenges we cannot answer
///   (another scheme, an unknown algorithm, only `auth-int`) are skipped
///   when another one can be answered.
///
/// The caller then sends the request again as a new request (RFC 3261
/// 22.2, 8.1.3.5): same Call-ID, From tag and To, the CSeq number
/// incremented, a new Via branch, in a new client transaction. The ACK of
/// the 401/407 belongs to the INVITE transaction that received it. If
/// the answer draws another challenge for the same realm without
/// `stale=true`, the credentials were refused: give up instead of
/// retrying in a loop.
pub fn authorize(
    request: &mut Request,
    challenge_response: &Response,
    credentials: &Credentials,
    cnonce: &str,
) -> Result<(), DigestError> {
    let (challenge_h, answer_h) = match challenge_response.code {
        401 => (HeaderName::WwwAuthenticate, HeaderName::Authorization),
        407 => (HeaderName::ProxyAuthenticate, HeaderName::ProxyAuthorization),
        code => return Err(DigestError::NotAChallenge(code)),
    };
    let chosen = choose(&challenge_response.headers, challenge_h, challenge_response.code)?;
    let method = request.method.as_str();
    let uri = request.uri_str();
    let answers = chosen
        .iter()
        .map(|c| c.answer(method, uri, credentials, cnonce))
        .collect::<Result<Vec<String>, DigestError>>()?;
    // Everything is computed: from here on the request changes.
    request.headers.list.retain(|h| {
        h.id != answer_h
            || !Auth::parse_as(answer_h, h.value())
                .is_ok_and(|a| a.param("realm").is_some_and(|r| chosen.iter().any(|c| c.realm == r.as_ref())))
    });
    for v in answers {
        request.headers.push(Header::new(answer_h, v));
    }
    Ok(())
}

/// The challenge to answer for each realm, in the order the realms first
/// appear. With none answerable, the error of the first Digest challenge
/// (more telling than "not Digest"), else the first error.
fn choose(headers: &Headers, id: HeaderName, code: u16) -> Result<Vec<Challenge>, DigestError> {
    let mut chosen: Vec<Challenge> = Vec::new();
    let mut error: Option<DigestError> = None;
    for h in headers.get_all(id) {
        let parsed = Challenge::parse_as(id, h.value()).and_then(|c| c.answer_qop().map(|_| c));
        match parsed {
            Ok(c) => match chosen.iter_mut().find(|x| x.realm == c.realm) {
                Some(x) if c.algorithm.strength() > x.algorithm.strength() => *x = c,
                Some(_) => {}
                None => chosen.push(c),
            },
            Err(e) => {
                if error.is_none() || matches!(error, Some(DigestError::NotDigest(_))) {
                    error = Some(e);
                }
            }
        }
    }
    if !chosen.is_empty() {
        return Ok(chosen);
    }
    Err(error.unwrap_or(DigestError::NoChallenge { code, header: id.as_str() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Message;

    fn mufasa(password: &str) -> Credentials {
        Credentials { username: "Mufasa".into(), password: password.into() }
    }

    /// The `name=value` parameters of an answer, unquoted.
    fn params(value: &str) -> Vec<(String, String)> {
        let a = Auth::parse_as(HeaderName::Authorization, value.as_bytes()).unwrap();
        assert!(a.is_digest());
        a.params.iter().map(|(n, _)| (n.to_string(), a.param(n).unwrap().into_owned())).collect()
    }

    fn param(value: &str, name: &str) -> Option<String> {
        params(value).into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    #[test]
    fn rfc2617_md5_example() {
        // RFC 2617 3.5.
        let c = Challenge::parse(
            "Digest\r\n realm=\"testrealm@host.com\",\r\n qop=\"auth,auth-int\",\r\n \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert_eq!(c.realm, "testrealm@host.com");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(c.qop, Some(vec![Qop::Auth, Qop::AuthInt]));
        assert!(!c.stale);
        let v = c.answer("GET", "/dir/index.html", &mufasa("Circle Of Life"), "0a4f113b").unwrap();
        assert_eq!(
            v,
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", \
             response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, cnonce=\"0a4f113b\", \
             qop=auth, nc=00000001, opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""
        );
    }

    #[test]
    fn rfc7616_sha256_and_md5_example() {
        // RFC 7616 3.9.1: the same request answered with each algorithm.
        for (alg, expected) in [
            ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ] {
            let c = Challenge::parse(&format!(
                "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm={alg}, \
                 nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
                 opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            ))
            .unwrap();
            assert_eq!(c.algorithm.as_str(), alg);
            let v = c
                .answer(
                    "GET",
                    "/dir/index.html",
                    &mufasa("Circle of Life"),
                    "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
                )
                .unwrap();
            assert_eq!(param(&v, "response").as_deref(), Some(expected), "{alg}");
            assert_eq!(param(&v, "algorithm").as_deref(), Some(alg));
            assert_eq!(param(&v, "opaque").as_deref(), Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"));
        }
    }

    #[test]
    fn sha512_256_sess_and_rfc2069_forms() {
        // Expected values computed independently (Python hashlib).
        let creds = mufasa("Circle of Life");
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let c = Challenge::parse(
            "Digest realm=\"http-auth@example.org\", qop=auth, algorithm=sha-512-256, \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\"",
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha512_256);
        let v = c.answer("GET", "/dir/index.html", &creds, cnonce).unwrap();
        assert_eq!(
            param(&v, "response").as_deref(),
            Some("430d05014cecc49cab6fbe03176d41a1da86cbfe24a16580e22aaad928d960d0")
        );
        assert_eq!(param(&v, "opaque"), None);

        let sip = Credentials { username: "acct1".into(), password: "s3cr3t".into() };
        let uri = "sip:+15551230000@sip.trunk.example";
        let c =
            Challenge::parse("Digest realm=\"proxy.example\", nonce=\"n7\", qop=\"auth\", algorithm=MD5-sess").unwrap();
        let v = c.answer("INVITE", uri, &sip, "cn0a").unwrap();
        assert_eq!(param(&v, "response").as_deref(), Some("ff45237f19bbc6fb94645663ac8b91b4"));
        assert_eq!(param(&v, "algorithm").as_deref(), Some("MD5-sess"));

        // No qop: RFC 2069 response, and no cnonce, nc or qop sent.
        let c = Challenge::parse("Digest realm=\"sip.trunk.example\", nonce=\"nonce-md5\"").unwrap();
        let v = c.answer("INVITE", uri, &sip, "").unwrap();
        assert_eq!(
            v,
            "Digest username=\"acct1\", realm=\"sip.trunk.example\", nonce=\"nonce-md5\", \
             uri=\"sip:+15551230000@sip.trunk.example\", response=\"8f88dac14e478b193df62f5321febdeb\", \
             algorithm=MD5"
        );
        let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256-sess").unwrap();
        assert_eq!(c.answer("INVITE", uri, &sip, "x"), Err(DigestError::SessWithoutQop(Algorithm::Sha256Sess)));
        let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth\"").unwrap();
        assert_eq!(c.answer("INVITE", uri, &sip, ""), Err(DigestError::EmptyCnonce));
    }

    #[test]
    fn parse_edge_cases() {
        // Quoted commas and escaped quotes, names in any case, unknown
        // parameters (token and quoted) ignored, LWS around `=` and `,`.
        let c = Challenge::parse(
            r#"dIgEsT REALM = "a, \"b\" \\ c" ,Nonce="x,y=z", domain="sip:a sip:b", stale=TRUE, charset=UTF-8, OPAQUE="", Algorithm=sha-256"#,
        )
        .unwrap();
        assert_eq!(c.realm, r#"a, "b" \ c"#);
        assert_eq!(c.nonce, "x,y=z");
        assert_eq!(c.opaque.as_deref(), Some(""));
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.qop, None);
        assert!(c.stale);
        // Escapes survive the round trip into the answer.
        let v = c.answer("OPTIONS", "sip:a", &mufasa("p"), "c").unwrap();
        assert!(v.contains(r#"realm="a, \"b\" \\ c""#), "{v}");
        assert_eq!(param(&v, "realm").as_deref(), Some(r#"a, "b" \ c"#));
        assert!(v.ends_with(r#"opaque="""#), "{v}");

        let c = Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int,token-x", stale=false"#).unwrap();
        assert_eq!(c.qop, Some(vec![Qop::AuthInt]));
        assert!(!c.stale);
        assert_eq!(c.answer("INVITE", "sip:a", &mufasa("p"), "c"), Err(DigestError::UnsupportedQop));
        let c = Challenge::parse(r#"Digest realm="r", nonce="n", qop="x""#).unwrap();
        assert_eq!(c.qop, Some(vec![]));

        for (input, expected) in [
            (r#"Digest realm="r""#, DigestError::MissingParam("nonce")),
            (r#"Digest nonce="n""#, DigestError::MissingParam("realm")),
            ("Digest", DigestError::MissingParam("realm")),
            (r#"Basic realm="r""#, DigestError::NotDigest("Basic".into())),
            ("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", DigestError::NotDigest("Basic".into())),
            ("NTLM", DigestError::NotDigest("NTLM".into())),
            (
                r#"Digest realm="r", nonce="n", algorithm=AKAv1-MD5"#,
                DigestError::UnsupportedAlgorithm("AKAv1-MD5".into()),
            ),
        ] {
            assert_eq!(Challenge::parse(input), Err(expected), "{input}");
        }
        for bad in [
            "",
            "   ",
            r#"Digest realm="r", nonce="n"#,
            r#"Digest realm="r" nonce="n""#,
            r#"Digest realm="r",, nonce="n""#,
            r#"Digest realm="r", nonce="n","#,
            r#"Digest realm=, nonce="n""#,
            r#"Digest realm"#,
            r#""Digest" realm="r""#,
        ] {
            assert!(
                matches!(Challenge::parse(bad), Err(DigestError::Malformed(_))),
                "{bad:?}: {:?}",
                Challenge::parse(bad)
            );
        }
    }

    #[test]
    fn control_characters_are_not_sent() {
        let c = Challenge::parse(r#"Digest realm="r", nonce="n", qop=auth"#).unwrap();
        let evil = Credentials { username: "a\r\nVia: x".into(), password: "p".into() };
        assert_eq!(c.answer("INVITE", "sip:a", &evil, "c"), Err(DigestError::Unquotable("username")));
        assert_eq!(c.answer("INVITE", "sip:a", &mufasa("p"), "c\n"), Err(DigestError::Unquotable("client nonce")));
        let c = Challenge::parse("Digest realm=\"r\r\n x\", nonce=\"n\"").unwrap();
        assert_eq!(c.answer("INVITE", "sip:a", &mufasa("p"), "c"), Err(DigestError::Unquotable("realm")));
        assert!(!format!("{:?}", mufasa("Circle of Life")).contains("Circle"));
    }

    const INVITE: &[u8] = b"INVITE sip:+15551230000@sip.trunk.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKa1\r\n\
Max-Forwards: 70\r\n\
From: <sip:+15550001111@192.0.2.9>;tag=f1\r\n\
To: <sip:+15551230000@sip.trunk.example>\r\n\
Call-ID: call-1@192.0.2.9\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:gw@192.0.2.9:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn invite() -> Request {
        match Message::parse_datagram(INVITE) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn response(status: &str, challenges: &[&str]) -> Response {
        let mut s = format!(
            "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKa1\r\n\
             From: <sip:+15550001111@192.0.2.9>;tag=f1\r\nTo: <sip:+15551230000@sip.trunk.example>;tag=t9\r\n\
             Call-ID: call-1@192.0.2.9\r\nCSeq: 1 INVITE\r\n"
        );
        for c in challenges {
            s.push_str(c);
            s.push_str("\r\n");
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        match Message::parse_datagram(s.as_bytes()) {
            Ok(Message::Response(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn acct() -> Credentials {
        Credentials { username: "acct1".into(), password: "s3cr3t".into() }
    }

    #[test]
    fn authorize_invite_after_401_prefers_sha256() {
        let mut req = invite();
        let resp = response(
            "401 Unauthorized",
            &[
                r#"WWW-Authenticate: Digest realm="sip.trunk.example", nonce="nonce-md5", qop="auth", algorithm=MD5"#,
                r#"WWW-Authenticate: Digest realm="sip.trunk.example", nonce="nonce-sha", qop="auth", algorithm=SHA-256, opaque="op1""#,
                r#"WWW-Authenticate: Basic realm="sip.trunk.example""#,
            ],
        );
        authorize(&mut req, &resp, &acct(), "cn0a").unwrap();
        assert_eq!(req.headers.count(HeaderName::Authorization), 1);
        assert_eq!(req.headers.count(HeaderName::ProxyAuthorization), 0);
        let v = req.headers.get(HeaderName::Authorization).unwrap().value_str().unwrap().to_owned();
        assert_eq!(
            v,
            "Digest username=\"acct1\", realm=\"sip.trunk.example\", nonce=\"nonce-sha\", \
             uri=\"sip:+15551230000@sip.trunk.example\", \
             response=\"86037efb5ba35d16bbd37e823cef32cef4c90a19393626c6d65c3d8acb0ca9c4\", \
             algorithm=SHA-256, cnonce=\"cn0a\", qop=auth, nc=00000001, opaque=\"op1\""
        );
        // The request still serializes and parses, body intact, and the
        // typed view reads the header back.
        let Ok(Message::Request(again)) = Message::parse_datagram(&req.to_bytes()) else { panic!() };
        assert_eq!(&again.body[..], b"v=0\n");
        let a = again.headers.authorization().unwrap().unwrap();
        assert_eq!(a.param("nonce").unwrap(), "nonce-sha");

        // A second challenge (stale nonce) replaces the answer for the realm.
        let stale = response(
            "401 Unauthorized",
            &[
                r#"WWW-Authenticate: Digest realm="sip.trunk.example", nonce="nonce-2", qop="auth", algorithm=SHA-256, stale=true"#,
            ],
        );
        authorize(&mut req, &stale, &acct(), "cn0b").unwrap();
        assert_eq!(req.headers.count(HeaderName::Authorization), 1);
        let v = req.headers.get(HeaderName::Authorization).unwrap().value_str().unwrap();
        assert_eq!(param(v, "nonce").as_deref(), Some("nonce-2"));
        assert_eq!(param(v, "cnonce").as_deref(), Some("cn0b"));
    }

    #[test]
    fn authorize_407_per_realm_keeps_other_proxies() {
        let mut req = invite();
        // An answer for an upstream proxy's realm, and a stale one for ours.
        req.headers.push(Header::new(
            HeaderName::ProxyAuthorization,
            r#"Digest username="acct1", realm="edge.example", nonce="e""#,
        ));
        req.headers.push(Header::new(
            HeaderName::ProxyAuthorization,
            r#"Digest username="acct1", realm="proxy.example", nonce="old""#,
        ));
        req.headers.push(Header::new(
            HeaderName::Authorization,
            r#"Digest username="acct1", realm="proxy.example", nonce="uas""#,
        ));
        let resp = response(
            "407 Proxy Authentication Required",
            &[
                r#"Proxy-Authenticate: Digest realm="proxy.example", nonce="n7", qop="auth-int, auth", algorithm=MD5-sess"#,
            ],
        );
        authorize(&mut req, &resp, &acct(), "cn0a").unwrap();
        let values: Vec<_> =
            req.headers.get_all(HeaderName::ProxyAuthorization).map(|h| h.value_str().unwrap().to_owned()).collect();
        assert_eq!(values.len(), 2, "{values:?}");
        assert_eq!(param(&values[0], "realm").as_deref(), Some("edge.example"));
        assert_eq!(param(&values[1], "realm").as_deref(), Some("proxy.example"));
        assert_eq!(param(&values[1], "response").as_deref(), Some("ff45237f19bbc6fb94645663ac8b91b4"));
        // Authorization (the other kind) untouched.
        assert_eq!(req.headers.count(HeaderName::Authorization), 1);

        // Two realms challenged at once (a forked request): one answer each.
        let mut req = invite();
        let resp = response(
            "407 Proxy Authentication Required",
            &[
                r#"Proxy-Authenticate: Digest realm="a.example", nonce="1""#,
                r#"Proxy-Authenticate: Digest realm="b.example", nonce="2", algorithm=SHA-256, qop=auth"#,
                r#"Proxy-Authenticate: Digest realm="a.example", nonce="3", algorithm=SHA-512-256, qop=auth"#,
            ],
        );
        authorize(&mut req, &resp, &acct(), "c").unwrap();
        let got: Vec<_> = req
            .headers
            .get_all(HeaderName::ProxyAuthorization)
            .map(|h| {
                let v = h.value_str().unwrap();
                (param(v, "realm").unwrap(), param(v, "algorithm").unwrap())
            })
            .collect();
        assert_eq!(got, [("a.example".into(), "SHA-512-256".into()), ("b.example".into(), "SHA-256".into())]);
    }

    #[test]
    fn authorize_errors_leave_the_request_alone() {
        let original = invite();
        let cases: [(&str, &[&str], DigestError); 5] = [
            ("200 OK", &[], DigestError::NotAChallenge(200)),
            ("401 Unauthorized", &[], DigestError::NoChallenge { code: 401, header: "WWW-Authenticate" }),
            (
                // A 407 answers with Proxy-Authenticate, not WWW-Authenticate.
                "407 Proxy Authentication Required",
                &[r#"WWW-Authenticate: Digest realm="r", nonce="n""#],
                DigestError::NoChallenge { code: 407, header: "Proxy-Authenticate" },
            ),
            (
                "401 Unauthorized",
                &[
                    r#"WWW-Authenticate: Basic realm="r""#,
                    r#"WWW-Authenticate: Digest realm="r", nonce="n", qop="auth-int""#,
                ],
                DigestError::UnsupportedQop,
            ),
            ("401 Unauthorized", &[r#"WWW-Authenticate: Basic realm="r""#], DigestError::NotDigest("Basic".into())),
        ];
        for (status, challenges, expected) in cases {
            let mut req = original.clone();
            assert_eq!(authorize(&mut req, &response(status, challenges), &acct(), "c"), Err(expected), "{status}");
            assert_eq!(req, original);
        }
        // A control character in the credentials fails before any change.
        let mut req = original.clone();
        let resp = response("401 Unauthorized", &[r#"WWW-Authenticate: Digest realm="r", nonce="n""#]);
        let bad = Credentials { username: "a\nb".into(), password: String::new() };
        assert_eq!(authorize(&mut req, &resp, &bad, "c"), Err(DigestError::Unquotable("username")));
        assert_eq!(req, original);
    }

    #[test]
    fn parse_never_panics_on_mangled_challenges() {
        // Without proptest: every prefix of a full challenge, and every
        // single byte of it replaced by each of a set of awkward bytes.
        let full = br#"Digest realm="a, \"b\"", nonce="n\\", opaque="o", qop="auth,auth-int", algorithm=SHA-256-sess, stale=true"#;
        let awkward = [0u8, b'"', b'\\', b',', b'=', b' ', b'\r', b'\n', 0x80, 0xff];
        for end in 0..=full.len() {
            let _ = Challenge::parse_as(HeaderName::WwwAuthenticate, &full[..end]);
        }
        let mut buf = full.to_vec();
        for i in 0..buf.len() {
            for &b in &awkward {
                let keep = buf[i];
                buf[i] = b;
                if let Ok(c) = Challenge::parse_as(HeaderName::ProxyAuthenticate, &buf) {
                    let _ = c.answer("INVITE", "sip:a", &acct(), "c");
                }
                buf[i] = keep;
            }
        }
    }

    mod prop {
        use proptest::prelude::*;

        use super::super::*;

        /// Pieces of challenge syntax, so that many inputs get far.
        fn challengeish() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(b"Digest ".to_vec()),
                Just(b"realm=".to_vec()),
                Just(b"nonce=".to_vec()),
                Just(b"qop=\"auth,auth-int\"".to_vec()),
                Just(b"algorithm=".to_vec()),
                Just(b"SHA-256-sess".to_vec()),
                Just(b"stale=TRUE".to_vec()),
                Just(b"\"a\\\"b,c\"".to_vec()),
                Just(b", ".to_vec()),
                Just(b"\r\n ".to_vec()),
                Just(b"\\".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..8),
            ];
            proptest::collection::vec(piece, 0..16).prop_map(|v| v.concat())
        }

        fn exercise(data: &[u8]) {
            if let Ok(c) = Challenge::parse_as(HeaderName::WwwAuthenticate, data) {
                let creds = Credentials { username: "u".into(), password: "p".into() };
                let _ = c.answer("INVITE", "sip:a@b", &creds, "c");
            }
            if let Ok(s) = std::str::from_utf8(data) {
                let _ = Challenge::parse(s);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
                exercise(&data);
            }

            #[test]
            fn challenge_like_bytes_never_panic(data in challengeish()) {
                exercise(&data);
            }
        }
    }
}
