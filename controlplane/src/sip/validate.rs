//! What a UAS does with received bytes before any transaction sees them
//! (RFC 3261 8.2, 18.3; RFC 4475 expectations): accept the message, reject
//! a request statelessly with the error the RFCs name (the response bytes
//! are built here), or drop it.
//!
//! Order of checks for a request, each one's failure answered as listed:
//!
//! | step | check | answer |
//! |---|---|---|
//! | 1 | framing, start line, header lines, Content-Length | 400 (505 version, 513 size) |
//! | 2 | Via, From, To, Call-ID, CSeq present | drop (no response can be formed) |
//! | 3 | single-valued headers not repeated; Via, From, To, Call-ID, CSeq, Max-Forwards, Contact, Route, Record-Route, Content-Type, Date (GMT) and the Request-URI well-formed; no headers in a SIP Request-URI; branch not the bare magic cookie | 400 |
//! | 4 | method known (8.2.1) | 501 |
//! | 5 | CSeq method equals the request method | 400 |
//! | 6 | Request-URI scheme sip/sips/tel (8.2.2.1) | 416 |
//! | 7 | REGISTER's To is a SIP/SIPS URI (10.3, RFC 4475 3.3.4) | 400 |
//! | 8 | every Require option tag supported (8.2.2.3) | 420 + Unsupported |
//! | 9 | body type understood for INVITE/UPDATE/PRACK (8.2.3) | 415 + Accept |
//! | 10 | INVITE's Accept allows application/sdp (21.4.7) | 406 |
//!
//! ACK is never answered: where a request would be rejected, an ACK is
//! dropped. Responses are never answered either: a malformed response
//! (bad status code, missing or malformed Via/From/To/Call-ID/CSeq) is
//! dropped (RFC 4475 3.1.2.5, 3.1.2.19).
//!
//! Max-Forwards is checked when present but not required: RFC 3261 8.2
//! does not make a UAS reject its absence and RFC 4475 3.4.1 expects an
//! RFC 2543 request without it to be processed. Max-Forwards 0 is
//! accepted here (an endpoint processes it, RFC 4475 3.3.11); the call
//! layer answers 483 if it would have to forward such a request.

use bytes::Bytes;

use super::header::{Header, HeaderName, Headers};
use super::message::{self, BodyFraming, Limits, Message, Method, Request};
use super::serialize::{add_to_tag, copy_response_headers, default_reason};
use super::typed::{Contact, HeaderError};
use super::uri::{Scheme, Uri};

/// What the transport must do with what it received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the message to the transaction layer.
    Accept(Message),
    /// Refuse a request. `response`, when present, is the complete
    /// stateless answer: send it to the source address and port of the
    /// request (as `rport` would; the Via may be what is malformed).
    Reject { status: u16, reason: String, response: Option<Bytes> },
    /// Ignore silently (unanswerable, or a response).
    Drop { why: String },
}

impl Verdict {
    pub fn status(&self) -> Option<u16> {
        match self {
            Verdict::Reject { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What this UAS supports; the defaults fit the carrier side of the
/// appliance.
#[derive(Clone, Debug)]
pub struct Policy {
    pub framing: BodyFraming,
    pub limits: Limits,
    /// Option tags accepted in Require.
    pub supported: Vec<&'static str>,
    /// Body types understood in INVITE/UPDATE/PRACK.
    pub body_types: Vec<&'static str>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            framing: BodyFraming::Datagram,
            limits: Limits::default(),
            // Early media without PRACK (issue 3): no extension yet.
            supported: Vec::new(),
            body_types: vec!["application/sdp"],
        }
    }
}

/// Verdict on one UDP datagram with the default policy.
pub fn verdict(datagram: &[u8]) -> Verdict {
    verdict_with(Bytes::copy_from_slice(datagram), &Policy::default())
}

/// Verdict on one datagram, or one message cut by the stream framer.
pub fn verdict_with(bytes: Bytes, policy: &Policy) -> Verdict {
    match Message::parse(bytes.clone(), policy.framing, &policy.limits) {
        Ok(Message::Response(r)) => match check_response(&r.headers) {
            Ok(()) => Verdict::Accept(Message::Response(r)),
            Err(e) => Verdict::Drop { why: format!("malformed response: {e}") },
        },
        Ok(Message::Request(req)) => match check_request(&req, policy) {
            Ok(()) => Verdict::Accept(Message::Request(req)),
            Err(Rejection::Drop(why)) => Verdict::Drop { why },
            Err(Rejection::Answer { .. }) if req.method == Method::Ack => {
                Verdict::Drop { why: "invalid ACK (never answered)".into() }
            }
            Err(Rejection::Answer { status, detail, extra }) => reject(&req.headers, status, &detail, extra),
        },
        Err(e) => salvage(&bytes, &e, &policy.limits),
    }
}

enum Rejection {
    Drop(String),
    Answer { status: u16, detail: String, extra: Vec<Header> },
}

fn bad(e: impl std::fmt::Display) -> Rejection {
    Rejection::Answer { status: 400, detail: e.to_string(), extra: Vec::new() }
}

fn answer(status: u16, detail: &str) -> Rejection {
    Rejection::Answer { status, detail: detail.to_owned(), extra: Vec::new() }
}

impl From<HeaderError> for Rejection {
    fn from(e: HeaderError) -> Self {
        bad(e)
    }
}

const REQUIRED: [HeaderName; 5] =
    [HeaderName::Via, HeaderName::From, HeaderName::To, HeaderName::CallId, HeaderName::CSeq];

fn check_response(h: &Headers) -> Result<(), String> {
    if let Some(id) = REQUIRED.iter().find(|&&id| h.get(id).is_none()) {
        return Err(format!("no {}", id.as_str()));
    }
    h.top_via().map_err(|e| e.to_string())?;
    h.cseq().map_err(|e| e.to_string())?;
    h.call_id().map_err(|e| e.to_string())?;
    h.from_addr().map_err(|e| e.to_string())?;
    h.to_addr().map_err(|e| e.to_string())?;
    Ok(())
}

fn check_request(req: &Request, policy: &Policy) -> Result<(), Rejection> {
    let h = &req.headers;
    // 2. What a response is made of.
    if let Some(id) = REQUIRED.iter().find(|&&id| h.get(id).is_none()) {
        return Err(Rejection::Drop(format!("request without {}", id.as_str())));
    }
    // 3. Syntax of what the stack reads.
    for id in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::MaxForwards,
        HeaderName::ContentType,
        HeaderName::Expires,
    ] {
        if h.count(id) > 1 {
            return Err(bad(format_args!("more than one {} header", id.as_str())));
        }
    }
    for (i, via) in h.vias().enumerate() {
        let via = via?;
        if !via.is_sip_2_0() {
            return Err(bad("Via protocol is not SIP/2.0"));
        }
        if i == 0 && via.branch() == Some(super::typed::MAGIC_COOKIE) {
            // RFC 4475 3.2.1 allows a 400 or falling back to RFC 2543
            // matching; the 400 keeps such peers visibly broken.
            return Err(bad("Via branch is the bare magic cookie"));
        }
    }
    for addr in [h.from_addr()?, h.to_addr()?] {
        addr.uri().map_err(bad)?;
    }
    h.call_id()?;
    let cseq = h.cseq()?;
    h.max_forwards()?;
    if let Some(Contact::Addrs(list)) = h.contact()? {
        for c in list {
            c.uri().map_err(bad)?;
        }
    }
    for r in h.routes()?.iter().chain(h.record_routes()?.iter()) {
        r.uri().map_err(bad)?;
    }
    let content_type = h.content_type()?;
    if !req.body.is_empty() && content_type.is_none() {
        return Err(bad("body without Content-Type"));
    }
    if let Some(d) = h.get(HeaderName::Date) {
        // RFC 3261 20.17: rfc1123-date in GMT only (RFC 4475 3.1.2.12).
        if !d.value().ends_with(b" GMT") {
            return Err(bad("Date is not in GMT"));
        }
    }
    let uri = req.uri().map_err(|e| bad(format_args!("Request-URI: {e}")))?;
    if let Uri::Sip(u) = &uri {
        if !u.headers.is_empty() {
            // RFC 4475 3.1.2.11: headers are not allowed in a Request-URI.
            return Err(bad("Request-URI carries headers"));
        }
    }
    // 4. Method.
    if req.method.is_extension() {
        return Err(answer(501, "Not Implemented"));
    }
    // 5. CSeq method.
    if cseq.method != req.method {
        return Err(bad("CSeq method does not match the request method"));
    }
    // 6. Request-URI scheme.
    if !matches!(uri, Uri::Sip(_)) {
        return Err(answer(416, "Unsupported URI Scheme"));
    }
    // 7. REGISTER's address of record.
    if req.method == Method::Register {
        let to = h.to_addr()?.uri().map_err(bad)?;
        if !matches!(&to, Uri::Sip(u) if matches!(u.scheme, Scheme::Sip | Scheme::Sips)) {
            return Err(bad("REGISTER To is not a SIP or SIPS URI"));
        }
    }
    // 8. Require.
    if !matches!(req.method, Method::Ack | Method::Cancel) {
        let unsupported: Vec<&str> = h
            .option_tags(HeaderName::Require)?
            .into_iter()
            .filter(|t| !policy.supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            let list = unsupported.join(", ");
            return Err(Rejection::Answer {
                status: 420,
                detail: "Bad Extension".into(),
                extra: vec![Header::new(HeaderName::Unsupported, list)],
            });
        }
    }
    // 9. Body type.
    let sdp_methods = matches!(req.method, Method::Invite | Method::Update | Method::Prack | Method::Ack);
    if sdp_methods && !req.body.is_empty() {
        let understood = content_type.is_some_and(|ct| policy.body_types.iter().any(|t| ct.is(t)));
        let encoded =
            h.values(HeaderName::ContentEncoding).any(|e| !e.is_empty() && !e.eq_ignore_ascii_case(b"identity"));
        if !understood || encoded {
            return Err(Rejection::Answer {
                status: 415,
                detail: "Unsupported Media Type".into(),
                extra: vec![
                    Header::new(HeaderName::Accept, policy.body_types.join(", ")),
                    Header::new(HeaderName::AcceptEncoding, "identity"),
                ],
            });
        }
    }
    // 10. What the answer may carry.
    if req.method == Method::Invite && h.get(HeaderName::Accept).is_some() {
        let ranges = h.accept()?;
        if !ranges.is_empty() && !ranges.iter().any(|r| r.covers("application/sdp")) {
            return Err(answer(406, "Not Acceptable"));
        }
    }
    Ok(())
}

/// A reason phrase: the RFC's phrase, then the detail if it differs.
fn reason_phrase(status: u16, detail: &str) -> String {
    let base = default_reason(status);
    let clean: String = detail.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.is_empty() || clean == base {
        base.to_owned()
    } else {
        format!("{base} ({clean})")
    }
}

fn reject(h: &Headers, status: u16, detail: &str, extra: Vec<Header>) -> Verdict {
    let reason = reason_phrase(status, detail);
    let response = error_response(h, status, &reason, extra);
    Verdict::Reject { status, reason, response }
}

/// Build a stateless error response from a request's (possibly broken)
/// headers; `None` if one of Via, From, To, Call-ID, CSeq is missing.
fn error_response(h: &Headers, status: u16, reason: &str, extra: Vec<Header>) -> Option<Bytes> {
    if REQUIRED.iter().any(|&id| h.get(id).is_none()) {
        return None;
    }
    let mut r = super::message::Response::new(status, reason);
    copy_response_headers(h, &mut r.headers);
    if status > 100 {
        add_to_tag(&mut r.headers, &stateless_tag(h));
    }
    r.headers.list.extend(extra);
    Some(Bytes::from(r.to_bytes()))
}

/// A To tag that is the same for every retransmission of a request
/// (FNV-1a over Call-ID, From and the top Via), so stateless answers agree.
fn stateless_tag(h: &Headers) -> String {
    let mut x: u64 = 0xcbf2_9ce4_8422_2325;
    for id in [HeaderName::CallId, HeaderName::From, HeaderName::Via] {
        for &b in h.get(id).map(Header::value).unwrap_or_default() {
            x = (x ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("bh{x:016x}")
}

/// A request that failed to parse: answer it if its headers can still be
/// read, else drop. Responses that fail to parse are dropped.
fn salvage(bytes: &Bytes, e: &message::ParseError, limits: &Limits) -> Verdict {
    let start = bytes.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(bytes.len());
    let rest = &bytes[start..];
    if rest.len() >= 4 && rest[..4].eq_ignore_ascii_case(b"SIP/") {
        return Verdict::Drop { why: format!("malformed response: {e}") };
    }
    if rest.starts_with(b"ACK ") {
        return Verdict::Drop { why: format!("malformed ACK: {e}") };
    }
    let Ok(head) = message::lex_head(bytes, limits, true) else {
        return Verdict::Drop { why: format!("unreadable request: {e}") };
    };
    // The first token of the start line must look like a method.
    let line = &bytes[head.start.clone()];
    let method = line.split(|&b| b == b' ').next().unwrap_or_default();
    if Method::from_token(method).is_none() {
        return Verdict::Drop { why: format!("not a SIP request: {e}") };
    }
    let headers = Headers { list: head.headers };
    if headers.cseq().is_ok_and(|c| c.method == Method::Ack) {
        return Verdict::Drop { why: format!("malformed ACK: {e}") };
    }
    let (status, _) = e.status();
    let reason = reason_phrase(status, &e.to_string());
    match error_response(&headers, status, &reason, Vec::new()) {
        Some(resp) => Verdict::Reject { status, reason, response: Some(resp) },
        None => Verdict::Drop { why: format!("unanswerable request: {e}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:user@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\r\n\
To: sip:user@example.com\r\n\
From: sip:caller@example.net;tag=1\r\n\
Call-ID: v.1\r\n\
CSeq: 8 OPTIONS\r\n\
Max-Forwards: 70\r\n";

    fn v(extra: &str, body: &str) -> Verdict {
        verdict(format!("{OPTIONS}{extra}Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
    }

    #[test]
    fn accepts_a_plain_request() {
        assert!(matches!(v("", ""), Verdict::Accept(_)));
    }

    #[test]
    fn rejections_carry_a_response() {
        let Verdict::Reject { status, reason, response: Some(resp) } = v("Require: foo, 100rel\r\n", "") else {
            panic!()
        };
        assert_eq!(status, 420);
        assert_eq!(reason, "Bad Extension");
        let Message::Response(r) = Message::parse_datagram(&resp).unwrap() else { panic!() };
        assert_eq!(r.code, 420);
        assert_eq!(r.headers.get(HeaderName::Unsupported).unwrap().value(), b"foo, 100rel");
        assert_eq!(r.headers.call_id().unwrap(), "v.1");
        assert!(r.headers.to_addr().unwrap().tag().unwrap().starts_with("bh"));
        // Stateless: the same request gets the same tag.
        let Verdict::Reject { response: Some(again), .. } = v("Require: foo, 100rel\r\n", "") else { panic!() };
        assert_eq!(resp, again);
    }

    #[test]
    fn statuses() {
        assert_eq!(v("Max-Forwards: 1\r\n", "").status(), Some(400));
        assert_eq!(v("Date: Fri, 01 Jan 2010 16:00:00 EST\r\n", "").status(), Some(400));
        assert_eq!(v("Date: Fri, 01 Jan 2010 16:00:00 GMT\r\n", "").status(), None);
        assert_eq!(v("", "body").status(), Some(400), "body without Content-Type");
        let ack = OPTIONS.replace("OPTIONS", "ACK");
        assert!(matches!(verdict(format!("{ack}Max-Forwards: 300\r\nl: 0\r\n\r\n").as_bytes()), Verdict::Drop { .. }));
        assert!(matches!(verdict(b"garbage"), Verdict::Drop { .. }));
        assert!(matches!(verdict(b"\r\n\r\n"), Verdict::Drop { .. }));
    }

    #[test]
    fn stream_policy_requires_content_length() {
        let p = Policy { framing: BodyFraming::Stream, ..Policy::default() };
        let msg = format!("{OPTIONS}\r\n");
        assert_eq!(verdict_with(Bytes::from(msg), &p).status(), Some(411));
    }
}
