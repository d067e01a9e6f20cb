//! SIP messages: `Message::parse` (both body framings), then every typed
//! accessor the transaction and call layers use, then the UAS verdict.
//!
//! Invariants beyond "no panic":
//! - a parsed message serializes and parses again, to the same method or
//!   status, body, Call-ID, CSeq and number of headers;
//! - a stateless rejection's response bytes parse as a response with the
//!   rejection's status;
//! - the 200 the call layer would build for an accepted request passes the
//!   checks a UAC applies to responses.
#![no_main]

use bytes::Bytes;
use controlplane::sip::digest::{Challenge, Credentials};
use controlplane::sip::{self, BodyFraming, HeaderName, Limits, Message, Response, Verdict};
use libfuzzer_sys::fuzz_target;

/// Serializing adds `: ` and a Content-Length line: re-parse without the
/// size limits so that a message at the limit still round-trips.
const ROOMY: Limits = Limits { max_message: usize::MAX, max_headers: usize::MAX, max_line: usize::MAX };

fn exercise(m: &Message) {
    let h = m.headers();
    for via in h.vias().flatten() {
        let _ = (via.is_sip_2_0(), via.branch(), via.received(), via.rport(), via.sent_by_host());
    }
    let _ = h.top_via();
    for addr in [h.from_addr(), h.to_addr()].into_iter().flatten() {
        let _ = (addr.uri(), addr.tag(), addr.display_name());
    }
    let _ = (h.call_id(), h.cseq(), h.max_forwards(), h.expires());
    if let Ok(Some(sip::Contact::Addrs(addrs))) = h.contact() {
        for a in addrs {
            let _ = (a.uri(), a.display_name());
        }
    }
    for route in h.routes().into_iter().chain(h.record_routes()).flatten() {
        if let Ok(uri) = route.uri() {
            // What a proxy does with a Route: print it back into a header.
            let printed = uri.to_string();
            let _ = sip::Uri::parse(&printed);
            if let Some(s) = uri.as_sip() {
                let _ = (s.user_decoded(), s.transport(), s.lr());
            }
        }
    }
    if let Ok(Some(ct)) = h.content_type() {
        let _ = (ct.is("application/sdp"), ct.covers("application/sdp"));
    }
    let _ = (h.accept(), h.option_tags(HeaderName::Require), h.option_tags(HeaderName::Supported));
    for auth in [h.authorization(), h.proxy_authorization()].into_iter().flatten().flatten() {
        let _ = (auth.is_digest(), auth.param("response"), auth.param("uri"));
    }
    for id in [HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate] {
        for value in h.values(id) {
            if let Ok(challenge) = Challenge::parse_as(id, value) {
                let creds = Credentials { username: "u".into(), password: "p".into() };
                let _ = challenge.answer("INVITE", "sip:a@example.com", &creds, "cn");
            }
        }
    }
    if let Message::Request(r) = m {
        if let Ok(uri) = r.uri() {
            let _ = sip::Uri::parse(&uri.to_string());
        }
    }
}

fn round_trip(m: &Message) {
    let bytes = m.to_bytes();
    let back = match Message::parse(Bytes::from(bytes), BodyFraming::Stream, &ROOMY) {
        Ok(back) => back,
        Err(e) => panic!("a parsed message does not parse after serializing: {e}"),
    };
    match (m, &back) {
        (Message::Request(a), Message::Request(b)) => {
            assert_eq!(a.method, b.method);
            assert_eq!(a.uri_str(), b.uri_str());
        }
        (Message::Response(a), Message::Response(b)) => assert_eq!(a.code, b.code),
        _ => panic!("request and response swapped by a round trip"),
    }
    assert_eq!(m.body(), back.body());
    assert_eq!(m.headers().call_id().ok(), back.headers().call_id().ok());
    assert_eq!(m.headers().cseq().ok(), back.headers().cseq().ok());
    let without_cl = |h: &sip::Headers| h.iter().filter(|h| h.id() != HeaderName::ContentLength).count();
    assert_eq!(without_cl(m.headers()), without_cl(back.headers()));
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    for framing in [BodyFraming::Datagram, BodyFraming::Stream] {
        if let Ok(m) = Message::parse(Bytes::copy_from_slice(data), framing, &limits) {
            exercise(&m);
            round_trip(&m);
        }
    }
    match sip::verdict(data) {
        Verdict::Reject { status, response: Some(response), .. } => match Message::parse_datagram(&response) {
            Ok(Message::Response(r)) => assert_eq!(r.code, status),
            other => panic!("a rejection's response does not parse as one: {other:?}"),
        },
        Verdict::Accept(Message::Request(req)) => {
            let mut ok = Response::for_request(&req, 200, "");
            ok.set_to_tag("fz1");
            match sip::verdict(&ok.to_bytes()) {
                Verdict::Accept(Message::Response(r)) => assert_eq!(r.code, 200),
                other => panic!("our 200 to an accepted request is refused: {other:?}"),
            }
        }
        _ => {}
    }
});
