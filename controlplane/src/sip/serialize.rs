//! Building and writing messages: new requests and responses, a response
//! for a request (RFC 3261 8.2.6), and serialization with a Content-Length
//! that always matches the body.

use bytes::{BufMut, Bytes};

use super::header::{Header, HeaderName, Headers};
use super::message::{Message, Method, Request, Response};
use super::uri::Uri;

/// The RFC's reason phrase for a status code (empty if unknown).
pub fn default_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "",
    }
}

/// Copy Via (all, in order), From, To, Call-ID and CSeq from a request's
/// headers into a response's (RFC 3261 8.2.6.2).
pub(crate) fn copy_response_headers(src: &Headers, dst: &mut Headers) {
    use HeaderName::*;
    for id in [Via, From, To, CallId, CSeq] {
        for h in src.get_all(id) {
            // Re-emit under the canonical name; the value is shared.
            dst.push(Header { id, name: Bytes::from_static(id.as_str().as_bytes()), value: h.value.clone() });
        }
    }
}

/// Append `;tag=...` to the To header if it parses and has no tag.
/// Returns whether a tag was added.
pub(crate) fn add_to_tag(headers: &mut Headers, tag: &str) -> bool {
    let needs = matches!(headers.to_addr(), Ok(to) if to.tag().is_none());
    if !needs {
        return false;
    }
    let Some(h) = headers.list.iter_mut().find(|h| h.id == HeaderName::To) else {
        return false;
    };
    let mut v = Vec::with_capacity(h.value.len() + 5 + tag.len());
    v.extend_from_slice(&h.value);
    v.extend_from_slice(b";tag=");
    v.extend_from_slice(tag.as_bytes());
    h.value = Bytes::from(v);
    true
}

fn write_headers(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    for h in headers.iter().filter(|h| h.id != HeaderName::ContentLength) {
        out.extend_from_slice(&h.name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

fn estimate(headers: &Headers, body: &[u8]) -> usize {
    64 + body.len() + headers.iter().map(|h| h.name.len() + h.value.len() + 4).sum::<usize>()
}

impl Request {
    /// A request with no headers yet; add Via, From, To, Call-ID, CSeq,
    /// Max-Forwards (and Contact for dialog-creating requests).
    pub fn new(method: Method, uri: &Uri) -> Request {
        Request { method, uri: Bytes::from(uri.to_string()), headers: Headers::new(), body: Bytes::new() }
    }

    pub fn set_uri(&mut self, uri: &Uri) {
        self.uri = Bytes::from(uri.to_string());
    }

    /// Write the request; Content-Length is set from the body.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(estimate(&self.headers, &self.body) + self.uri.len());
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.put_u8(b' ');
        out.extend_from_slice(&self.uri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        write_headers(out, &self.headers, &self.body);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

impl Response {
    /// A response with no headers.
    pub fn new(code: u16, reason: &str) -> Response {
        Response {
            code,
            reason: Bytes::copy_from_slice(reason.as_bytes()),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// A response to `req` carrying its Via (all), From, To, Call-ID and
    /// CSeq (RFC 3261 8.2.6). An empty `reason` takes the RFC's phrase.
    /// Add a To tag with [`Response::set_to_tag`] (required on every
    /// response but 100 when the request had none).
    pub fn for_request(req: &Request, code: u16, reason: &str) -> Response {
        let reason = if reason.is_empty() { default_reason(code) } else { reason };
        let mut r = Response::new(code, reason);
        r.headers.list.reserve(8);
        copy_response_headers(&req.headers, &mut r.headers);
        r
    }

    /// Add `;tag=` to To unless it has one; returns whether it was added.
    pub fn set_to_tag(&mut self, tag: &str) -> bool {
        add_to_tag(&mut self.headers, tag)
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(estimate(&self.headers, &self.body) + self.reason.len());
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(self.code.to_string().as_bytes());
        out.put_u8(b' ');
        out.extend_from_slice(&self.reason);
        out.extend_from_slice(b"\r\n");
        write_headers(out, &self.headers, &self.body);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

impl Message {
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Message::Request(r) => r.write_to(out),
            Message::Response(r) => r.write_to(out),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::uri::SipUri;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
v: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8\r\n\
Via: SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
i: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\r\n";

    fn parse_req(b: &[u8]) -> Request {
        match Message::parse_datagram(b).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!("not a request"),
        }
    }

    #[test]
    fn round_trip_keeps_everything() {
        let r = parse_req(INVITE);
        let out = r.to_bytes();
        let again = parse_req(&out);
        assert_eq!(again, r);
        assert_eq!(&again.body[..], b"v=0\r");
        // Serialization is stable.
        assert_eq!(again.to_bytes(), out);
    }

    #[test]
    fn content_length_follows_the_body() {
        let mut r = parse_req(INVITE);
        r.body = Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n");
        let out = r.to_bytes();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains(&format!("Content-Length: {}\r\n\r\nv=0", r.body.len())), "{text}");
        assert_eq!(text.matches("Content-Length").count(), 1);
        assert_eq!(parse_req(&out).body, r.body);
    }

    #[test]
    fn response_for_request() {
        let req = parse_req(INVITE);
        let mut resp = Response::for_request(&req, 486, "");
        assert!(resp.set_to_tag("8321234356"));
        assert!(!resp.set_to_tag("again"), "a second tag is never added");
        let out = resp.to_bytes();
        let expected = "SIP/2.0 486 Busy Here\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8\r\n\
Via: SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
To: Bob <sip:bob@biloxi.com>;tag=8321234356\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
        let Message::Response(back) = Message::parse_datagram(&out).unwrap() else { panic!() };
        assert_eq!(back.code, 486);
        assert_eq!(back.headers.to_addr().unwrap().tag(), Some("8321234356"));
        assert_eq!(back.headers.vias().count(), 2);
    }

    #[test]
    fn build_a_request_from_scratch() {
        let uri = Uri::Sip(SipUri::parse("sip:+15550100001@127.0.0.1:5080;user=phone").unwrap());
        let mut r = Request::new(Method::Options, &uri);
        r.headers.push(Header::new(HeaderName::Via, "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1;rport"));
        r.headers.push(Header::new(HeaderName::MaxForwards, "70"));
        r.headers.push(Header::new(HeaderName::From, "<sip:bridgehead@127.0.0.1>;tag=a1"));
        r.headers.push(Header::new(HeaderName::To, "<sip:+15550100001@127.0.0.1>"));
        r.headers.push(Header::new(HeaderName::CallId, "c1@127.0.0.1"));
        r.headers.push(Header::new(HeaderName::CSeq, "1 OPTIONS"));
        let back = parse_req(&r.to_bytes());
        assert_eq!(back.uri().unwrap(), uri);
        assert_eq!(back.headers.cseq().unwrap().seq, 1);
        assert_eq!(back.headers.top_via().unwrap().rport(), Some(None));
    }
}
