//! Property tests: no input makes the parser, the typed views or the
//! verdict panic, and what we build survives serialize -> parse.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

/// Bytes that look enough like SIP to get past the start line often.
fn sipish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"INVITE sip:a@b SIP/2.0\r\n".to_vec()),
        Just(b"SIP/2.0 200 OK\r\n".to_vec()),
        Just(b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n".to_vec()),
        Just(b"f: <sip:x@y>;tag=1\r\n".to_vec()),
        Just(b"t: \"q\\\"\" <sip:x@[::1]:5>\r\n".to_vec()),
        Just(b"i: c@d\r\n".to_vec()),
        Just(b"CSeq: 1 INVITE\r\n".to_vec()),
        Just(b"Contact: *, <sip:a;b=c?d=e>\r\n".to_vec()),
        Just(b"l: 3\r\n".to_vec()),
        Just(b"Authorization: Digest a=\"b\", c=d\r\n".to_vec()),
        Just(b" folded\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b";,<>\"\\%@:".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn exercise(m: &Message) {
    let h = m.headers();
    let _ = h.vias().count();
    let _ = (h.from_addr().map(|a| a.uri()), h.to_addr().map(|a| (a.uri(), a.display_name())));
    let _ = (h.call_id(), h.cseq(), h.max_forwards(), h.expires(), h.contact());
    let _ = (h.routes(), h.record_routes(), h.content_type(), h.accept());
    let _ = (h.authorization(), h.www_authenticate(), h.option_tags(HeaderName::Require));
    if let Message::Request(r) = m {
        let _ = r.uri();
    }
    let _ = Message::parse_datagram(&m.to_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(m) = Message::parse_datagram(&data) {
            exercise(&m);
        }
        let _ = verdict(&data);
        let mut f = StreamFramer::new(Limits::default());
        f.push(&data);
        while let Ok(Some(_)) = f.next_frame() {}
    }

    #[test]
    fn sip_like_bytes_never_panic(data in sipish()) {
        if let Ok(m) = Message::parse_datagram(&data) {
            exercise(&m);
        }
        let _ = verdict(&data);
        let p = Policy { framing: BodyFraming::Stream, ..Policy::default() };
        let _ = verdict_with(Bytes::from(data.clone()), &p);
        let mut f = StreamFramer::new(Limits::default());
        for c in data.chunks(7) {
            f.push(c);
            while let Ok(Some(_)) = f.next_frame() {}
        }
    }

    #[test]
    fn uri_strings_never_panic(s in "[a-z:@;=?&%\\[\\]0-9.+-]{0,40}") {
        if let Ok(u) = Uri::parse(&s) {
            // What parses prints back to the same text and parses again.
            prop_assert_eq!(u.to_string(), s.clone());
            prop_assert_eq!(Uri::parse(&u.to_string()).unwrap(), u);
        }
    }

    #[test]
    fn built_messages_round_trip(
        method in prop_oneof![
            Just(Method::Invite), Just(Method::Bye), Just(Method::Options),
            "[A-Z]{3,10}".prop_map(|s| Method::from_token(s.as_bytes()).unwrap()),
        ],
        user in proptest::option::of("[a-zA-Z0-9_.!~*'()&=+$,;?/-]{1,12}"),
        host in prop_oneof!["[a-z]{1,8}(\\.[a-z]{1,8}){0,2}", Just("192.0.2.7".to_owned()), Just("[2001:db8::5]".to_owned())],
        port in proptest::option::of(1u16..),
        params in proptest::collection::vec(("[a-z]{1,6}", proptest::option::of("[a-z0-9]{1,6}")), 0..3),
        extra in proptest::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,30}"), 0..5),
        seq in 0u32..(1 << 31),
        body in proptest::collection::vec(any::<u8>(), 0..200),
        code in 100u16..700,
        reason in "[ -~]{0,20}",
    ) {
        let mut uri = SipUri::new(user.as_deref(), Host::parse(&host).unwrap(), port);
        uri.params = params;
        let uri = Uri::Sip(uri);
        let mut req = Request::new(method.clone(), &uri);
        req.headers.push(Header::new(HeaderName::Via, "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc"));
        req.headers.push(Header::new(HeaderName::From, "\"A, B\" <sip:a@192.0.2.1>;tag=9"));
        req.headers.push(Header::new(HeaderName::To, format!("<{uri}>")));
        req.headers.push(Header::new(HeaderName::CallId, "x@192.0.2.1"));
        req.headers.push(Header::new(HeaderName::CSeq, format!("{seq} {method}")));
        req.headers.push(Header::new(HeaderName::MaxForwards, "70"));
        for (n, v) in &extra {
            req.headers.push(Header::with_name(n.clone(), v.trim().to_owned()));
        }
        req.headers.push(Header::new(HeaderName::ContentType, "application/sdp"));
        req.body = Bytes::from(body);
        let wire = req.to_bytes();
        for framing in [BodyFraming::Datagram, BodyFraming::Stream] {
            let back = Message::parse(Bytes::from(wire.clone()), framing, &Limits::default()).unwrap();
            let Message::Request(mut back) = back else { panic!("not a request") };
            // Content-Length was added by the serializer.
            prop_assert_eq!(back.headers.remove(HeaderName::ContentLength), 1);
            prop_assert_eq!(&back.method, &req.method);
            prop_assert_eq!(back.uri().unwrap(), uri.clone());
            prop_assert_eq!(&back.headers, &req.headers);
            prop_assert_eq!(&back.body, &req.body);
            prop_assert_eq!(back.headers.cseq().unwrap().seq, seq);
        }
        let mut resp = Response::for_request(&req, code, &reason);
        resp.set_to_tag("t1");
        let Message::Response(r) = Message::parse_datagram(&resp.to_bytes()).unwrap() else { panic!() };
        prop_assert_eq!(r.code, code);
        prop_assert_eq!(&r.reason[..], if reason.is_empty() { default_reason(code) } else { &reason }.as_bytes());
        prop_assert_eq!(r.headers.to_addr().unwrap().tag(), Some("t1"));
        prop_assert_eq!(r.headers.from_addr().unwrap().display_name().unwrap(), "A, B");
    }
}
