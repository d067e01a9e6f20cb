//! The RFC 4475 torture messages against the SIP message layer.
//!
//! The files are read in place from `../shared/testdata/rfc4475` next to
//! the repository (as CI lays it out); they are raw bytes (CRLF, NULs,
//! non-UTF-8) and never copied into the project.
//!
//! `TABLE` lists every file once: whether it parses as a message at all,
//! and the verdict a UAS receiving it over UDP reaches (`verdict`). Where
//! the RFC allows several behaviours the comment says which one we took.

use std::path::PathBuf;

use controlplane::sip::{
    verdict, verdict_with, BodyFraming, Contact, Frame, HeaderName, Host, Limits, Message, Method, Policy, Scheme,
    StreamFramer, Uri, Verdict,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Accept,
    Reject(u16),
    Drop,
}
use Want::*;

/// (file, RFC 4475 section, parses as a message, verdict)
#[rustfmt::skip]
const TABLE: &[(&str, &str, bool, Want)] = &[
    // 3.1.1 valid messages: understood.
    ("wsinv",      "3.1.1.1",  true,  Accept),
    // Valid syntax, unknown method: a UAS answers 501 (RFC 3261 8.2.1).
    ("intmeth",    "3.1.1.2",  true,  Reject(501)),
    ("esc01",      "3.1.1.3",  true,  Accept),
    ("escnull",    "3.1.1.4",  true,  Accept),
    // `RE%47IST%45R` is an extension method, not REGISTER: 501.
    ("esc02",      "3.1.1.5",  true,  Reject(501)),
    ("lwsdisp",    "3.1.1.6",  true,  Accept),
    ("longreq",    "3.1.1.7",  true,  Accept),
    // Only the REGISTER counts; the trailing INVITE is discarded.
    ("dblreq",     "3.1.1.8",  true,  Accept),
    ("semiuri",    "3.1.1.9",  true,  Accept),
    ("transports", "3.1.1.10", true,  Accept),
    ("mpart01",    "3.1.1.11", true,  Accept),
    ("unreason",   "3.1.1.12", true,  Accept),
    ("noreason",   "3.1.1.13", true,  Accept),
    // 3.1.2 invalid messages.
    ("badinv01",   "3.1.2.1",  true,  Reject(400)),
    ("clerr",      "3.1.2.2",  false, Reject(400)),
    ("ncl",        "3.1.2.3",  false, Reject(400)),
    ("scalar02",   "3.1.2.4",  true,  Reject(400)),
    // A response: never answered, dropped.
    ("scalarlg",   "3.1.2.5",  true,  Drop),
    ("quotbal",    "3.1.2.6",  true,  Reject(400)),
    // 3.1.2.7-3.1.2.11 allow being liberal; we take the 400 they name, so
    // nothing we forward can carry the malformation.
    ("ltgtruri",   "3.1.2.7",  false, Reject(400)),
    ("lwsruri",    "3.1.2.8",  false, Reject(400)),
    ("lwsstart",   "3.1.2.9",  false, Reject(400)),
    ("trws",       "3.1.2.10", false, Reject(400)),
    ("escruri",    "3.1.2.11", true,  Reject(400)),
    ("baddate",    "3.1.2.12", true,  Reject(400)),
    ("regbadct",   "3.1.2.13", true,  Reject(400)),
    ("badaspec",   "3.1.2.14", true,  Reject(400)),
    // Also lacks the empty line ending its headers (see the README).
    ("baddn",      "3.1.2.15", false, Reject(400)),
    ("badvers",    "3.1.2.16", false, Reject(505)),
    ("mismatch01", "3.1.2.17", true,  Reject(400)),
    // 501 or 400 allowed; 501 (method checked before CSeq) as the RFC prefers.
    ("mismatch02", "3.1.2.18", true,  Reject(501)),
    ("bigcode",    "3.1.2.19", false, Drop),
    // 3.2 transaction layer: 400 or RFC 2543 fallback allowed; we answer 400.
    ("badbranch",  "3.2.1",    true,  Reject(400)),
    // 3.3 application-layer semantics.
    // No From, To or Call-ID: no conforming response can be formed
    // (RFC 3261 8.2.6.2 copies them), so the datagram is dropped.
    ("insuf",      "3.3.1",    true,  Drop),
    ("unkscm",     "3.3.2",    true,  Reject(416)),
    // We never accept soap.beep in a Request-URI: 416 as the RFC says.
    ("novelsc",    "3.3.3",    true,  Reject(416)),
    // Syntactically valid; as a REGISTER its To must be SIP/SIPS: 400.
    ("unksm2",     "3.3.4",    true,  Reject(400)),
    ("bext01",     "3.3.5",    true,  Reject(420)),
    ("invut",      "3.3.6",    true,  Reject(415)),
    // Well-formed: accepted here; the registrar/auth layer challenges (401).
    ("regaut01",   "3.3.7",    true,  Accept),
    ("multi01",    "3.3.8",    true,  Reject(400)),
    ("mcl01",      "3.3.9",    false, Reject(400)),
    // Valid response; a UA never sends responses by Via, so no harm.
    ("bcast",      "3.3.10",   true,  Accept),
    // An endpoint processes Max-Forwards 0 (483 is for proxies).
    ("zeromf",     "3.3.11",   true,  Accept),
    ("cparam01",   "3.3.12",   true,  Accept),
    ("cparam02",   "3.3.13",   true,  Accept),
    ("regescrt",   "3.3.14",   true,  Accept),
    // 406 (or 400) per the RFC: the answer could only carry SDP.
    ("sdp01",      "3.3.15",   true,  Reject(406)),
    // 3.4 backward compatibility: processed (no branch, tag, Max-Forwards
    // or Content-Length).
    ("inv2543",    "3.4.1",    true,  Accept),
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("shared/testdata/rfc4475")
}

fn read(name: &str) -> Vec<u8> {
    let p = dir().join(format!("{name}.sip"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn want_of(v: &Verdict) -> Want {
    match v {
        Verdict::Accept(_) => Accept,
        Verdict::Reject { status, .. } => Reject(*status),
        Verdict::Drop { .. } => Drop,
    }
}

#[test]
fn table_covers_every_file() {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap_or_else(|e| panic!("{}: {e}", dir().display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".sip").map(str::to_owned))
        .collect();
    files.sort();
    let mut listed: Vec<String> = TABLE.iter().map(|r| r.0.to_owned()).collect();
    listed.sort();
    assert_eq!(files, listed);
}

#[test]
fn every_message_gets_the_expected_verdict() {
    let mut failures = Vec::new();
    let mut report = String::new();
    for &(name, section, parses, want) in TABLE {
        let bytes = read(name);
        let parsed = Message::parse_datagram(&bytes);
        let v = verdict(&bytes);
        let got = want_of(&v);
        let line = format!(
            "{name:<11} {section:<9} parse={:<5} verdict={got:?} {}",
            parsed.is_ok(),
            match &v {
                Verdict::Reject { reason, .. } => reason.clone(),
                Verdict::Drop { why } => why.clone(),
                Verdict::Accept(_) => String::new(),
            }
        );
        report.push_str(&line);
        report.push('\n');
        if parsed.is_ok() != parses || got != want {
            failures.push(format!("{line}   (wanted parse={parses} verdict={want:?})"));
        }
        // Every rejection we can answer carries a response that parses
        // back, with the status, the request's Call-ID and CSeq.
        if let Verdict::Reject { status, response, .. } = &v {
            let resp = response.as_ref().unwrap_or_else(|| panic!("{name}: rejected without response"));
            let Ok(Message::Response(r)) = Message::parse_datagram(resp) else {
                panic!("{name}: response does not parse: {}", String::from_utf8_lossy(resp))
            };
            assert_eq!(r.code, *status, "{name}");
            let req_h = controlplane::sip::message::Message::parse_datagram(&bytes).ok();
            if let Some(m) = req_h {
                assert_eq!(
                    r.headers.get(HeaderName::CallId).map(|h| h.value().to_vec()),
                    m.headers().get(HeaderName::CallId).map(|h| h.value().to_vec()),
                    "{name}"
                );
            }
            assert!(r.headers.get(HeaderName::CSeq).is_some(), "{name}");
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "unexpected verdicts:\n{}", failures.join("\n"));
    println!("rfc4475: {} files, all verdicts as expected", TABLE.len());
}

#[test]
fn nothing_panics_over_streams_either() {
    // Every file through the TCP framer and the stream verdict, whole and
    // byte by byte: no panic, and every frame is a message or a ping.
    let policy = Policy { framing: BodyFraming::Stream, ..Policy::default() };
    for &(name, ..) in TABLE {
        let bytes = read(name);
        for chunk in [bytes.len(), 1] {
            let mut f = StreamFramer::new(Limits::default());
            let mut n = 0;
            for c in bytes.chunks(chunk) {
                f.push(c);
                while let Ok(Some(fr)) = f.next_frame() {
                    if let Frame::Message(m) = fr {
                        let _ = verdict_with(m, &policy);
                        n += 1;
                    }
                }
            }
            assert!(n <= 2, "{name}");
        }
        // Truncations of every message must not panic either.
        for cut in 0..bytes.len().min(400) {
            let _ = verdict(&bytes[..cut]);
        }
    }
}

// ---------------------------------------------------------------- fields

fn request(name: &str) -> controlplane::sip::Request {
    match Message::parse_datagram(&read(name)) {
        Ok(Message::Request(r)) => r,
        other => panic!("{name}: {other:?}"),
    }
}

fn response(name: &str) -> controlplane::sip::Response {
    match Message::parse_datagram(&read(name)) {
        Ok(Message::Response(r)) => r,
        other => panic!("{name}: {other:?}"),
    }
}

fn sip(u: Uri) -> controlplane::sip::SipUri {
    match u {
        Uri::Sip(s) => s,
        Uri::Other { .. } => panic!("not a SIP URI: {u}"),
    }
}

#[test]
fn wsinv_fields() {
    let r = request("wsinv");
    let h = &r.headers;
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri_str(), "sip:vivekg@chair-dnrc.example.com;unknownparam");
    assert_eq!(h.call_id().unwrap(), "wsinv.ndaksdj@192.0.2.1");
    assert_eq!(h.max_forwards().unwrap(), Some(68));
    let cseq = h.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    let vias: Vec<_> = h.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!((vias[0].transport, vias[0].host, vias[0].branch()), ("UDP", "192.0.2.2", Some("390skdjuw")));
    assert_eq!(
        (vias[1].transport, vias[1].host, vias[1].branch()),
        ("TCP", "spindle.example.com", Some("z9hG4bK9ikj8"))
    );
    assert_eq!((vias[2].host, vias[2].branch()), ("192.168.255.111", Some("z9hG4bK30239")));
    assert_eq!(h.to_addr().unwrap().tag(), Some("1918181833n"));
    let from = h.from_addr().unwrap();
    assert_eq!(from.display_name().unwrap(), "J Rosenberg \\\"");
    assert_eq!(from.tag(), Some("98asjd8"));
    let Some(Contact::Addrs(c)) = h.contact().unwrap() else { panic!() };
    assert_eq!(c[0].display_name().unwrap(), "Quoted string \"\"");
    assert_eq!(c[0].params.get("q"), Some(Some("0.33")));
    assert_eq!(c[0].params.get("newparam"), Some(Some("newvalue")));
    assert!(c[0].params.has("secondparam"));
    assert!(sip(h.routes().unwrap()[0].uri().unwrap()).lr());
    assert_eq!(h.get_named("Subject").unwrap().value(), b"");
    assert!(h.get_named("newfangledheader").unwrap().value().ends_with(b"continued newfangled value"));
    assert_eq!(r.body.len(), 150);
}

#[test]
fn intmeth_fields() {
    let r = request("intmeth");
    assert_eq!(r.method.as_str(), "!interesting-Method0123456789_*+`.%indeed'~");
    let u = sip(r.uri().unwrap());
    assert_eq!(u.user.as_deref(), Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"));
    assert_eq!(u.password.as_deref(), Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"));
    assert_eq!(u.host, Host::Name("example.com".into()));
    let h = &r.headers;
    assert_eq!(h.cseq().unwrap().method, r.method);
    assert_eq!(h.max_forwards().unwrap(), Some(255));
    assert_eq!(h.call_id().unwrap(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert_eq!(h.to_addr().unwrap().display_name().unwrap(), "BEL:\x07 NUL:\0 DEL:\x7f");
    let from = h.from_addr().unwrap();
    assert_eq!(from.display, Some("token1~` token2'+_ token3*%!.-"));
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert!(from.params.get("fromParam''~+*_!.-%").unwrap().unwrap().contains("работающий"));
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
    assert!(h.get_named("extensionHeader-!.%*+_`'~").is_some());
}

#[test]
fn escapes() {
    let r = request("esc01");
    let u = sip(r.uri().unwrap());
    assert_eq!(u.user_decoded().unwrap(), b"sips:user@example.com");
    assert_eq!(u.host, Host::Name("example.net".into()));
    let h = &r.headers;
    assert_eq!(sip(h.to_addr().unwrap().uri().unwrap()).user_decoded().unwrap(), b"user");
    assert_eq!(sip(h.from_addr().unwrap().uri().unwrap()).user_decoded().unwrap(), b"I have spaces");
    assert!(h.content_type().unwrap().unwrap().is("application/sdp"));
    let Some(Contact::Addrs(c)) = h.contact().unwrap() else { panic!() };
    let cu = sip(c[0].uri().unwrap());
    assert_eq!(cu.user_decoded().unwrap(), b"caller");
    assert_eq!(cu.param("lr"), Some(None));
    assert_eq!(cu.param("name"), Some(Some("v%61lue%25%34%31")));

    let r = request("escnull");
    let h = &r.headers;
    assert_eq!(sip(h.to_addr().unwrap().uri().unwrap()).user_decoded().unwrap(), b"null-\0-null");
    let Some(Contact::Addrs(c)) = h.contact().unwrap() else { panic!() };
    let users: Vec<_> = c.iter().map(|c| sip(c.uri().unwrap()).user_decoded().unwrap()).collect();
    assert_eq!(users, vec![b"\0".to_vec(), b"\0\0".to_vec()]);

    let r = request("esc02");
    assert_eq!(r.method, Method::Extension("RE%47IST%45R".into()));
    assert_eq!(r.headers.cseq().unwrap().method, r.method);
    let Some(Contact::Addrs(c)) = r.headers.contact().unwrap() else { panic!() };
    assert_eq!(c.len(), 2, "C%6Fntact is not Contact");
    assert!(r.headers.get_named("C%6Fntact").is_some());
    assert_eq!(r.headers.to_addr().unwrap().display, Some("%Z%45"));
}

#[test]
fn small_valid_requests() {
    let r = request("lwsdisp");
    assert_eq!(r.headers.from_addr().unwrap().display, Some("caller"));
    assert_eq!(r.headers.from_addr().unwrap().tag(), Some("323"));

    let r = request("dblreq");
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty(), "the trailing INVITE is not the body");
    assert_eq!(r.headers.call_id().unwrap(), "dblreq.0ha0isndaksdj99sdfafnl3lk233412");

    let r = request("semiuri");
    let u = sip(r.uri().unwrap());
    assert_eq!(u.user_decoded().unwrap(), b"user;par=u@example.net");
    assert_eq!(u.host, Host::Name("example.com".into()));
    assert!(u.params.is_empty());
    assert_eq!(r.headers.accept().unwrap().len(), 6);

    let r = request("transports");
    let t: Vec<_> = r.headers.vias().map(|v| v.unwrap().transport).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(r.headers.call_id().unwrap(), "transports.kijh4akdnaqjkwendsasfdj");

    let r = request("mpart01");
    assert_eq!(r.method, Method::Message);
    assert_eq!(r.body.len(), 553);
    let ct = r.headers.content_type().unwrap().unwrap();
    assert!(ct.is("multipart/mixed"));
    assert_eq!(ct.params.get("boundary"), Some(Some("7a9cbec02ceef655")));
    assert_eq!(r.headers.top_via().unwrap().rport(), Some(None));
}

#[test]
fn longreq_fields() {
    let r = request("longreq");
    let vias: Vec<_> = r.headers.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 34);
    for (i, v) in vias[..33].iter().enumerate() {
        assert_eq!(v.host, format!("sip{}.example.com", 33 - i));
    }
    let last = vias[33];
    assert_eq!(last.received(), Some("192.0.2.5"));
    assert_eq!(last.branch().unwrap(), format!("very{}branchvalue", "long".repeat(50)));
    let to = sip(r.headers.to_addr().unwrap().uri().unwrap());
    assert_eq!(to.port, Some(6000));
    assert_eq!(r.headers.from_addr().unwrap().tag().unwrap(), format!("12{}424", "982".repeat(50)));
    assert_eq!(r.headers.call_id().unwrap(), format!("longreq.one{}longcallid", "really".repeat(20)));
    assert_eq!(r.body.len(), 150);
}

#[test]
fn responses() {
    let r = response("unreason");
    assert_eq!(r.code, 200);
    let reason = std::str::from_utf8(&r.reason).unwrap();
    assert!(reason.starts_with("= 2**3 * 5**2 но"), "{reason}");
    assert_eq!(r.body.len(), 154);

    let r = response("noreason");
    assert_eq!((r.code, r.reason.len()), (100, 0));

    let r = response("bcast");
    let hosts: Vec<_> = r.headers.vias().map(|v| v.unwrap().host).collect();
    assert_eq!(hosts, ["192.0.2.198", "255.255.255.255"]);
}

#[test]
fn semantic_cases_parse_right() {
    let r = request("unkscm");
    assert_eq!(r.uri().unwrap().scheme(), "nobodyKnowsThisScheme");
    assert_eq!(request("novelsc").uri().unwrap().scheme(), "soap.beep");

    let r = request("unksm2");
    assert_eq!(r.headers.to_addr().unwrap().uri().unwrap().scheme(), "isbn");
    assert_eq!(r.headers.from_addr().unwrap().uri().unwrap().scheme(), "http");
    let Some(Contact::Addrs(c)) = r.headers.contact().unwrap() else { panic!() };
    assert_eq!(c[0].uri().unwrap().scheme(), "name");

    let r = request("regaut01");
    let a = r.headers.authorization().unwrap().unwrap();
    assert_eq!(a.scheme, "NoOneKnowsThisScheme");
    assert!(!a.is_digest());

    // cparam01: the parameter belongs to the Contact header field...
    let r = request("cparam01");
    let Some(Contact::Addrs(c)) = r.headers.contact().unwrap() else { panic!() };
    assert!(c[0].params.has("unknownparam"));
    assert!(sip(c[0].uri().unwrap()).params.is_empty());
    // ...cparam02: to the URI.
    let r = request("cparam02");
    let Some(Contact::Addrs(c)) = r.headers.contact().unwrap() else { panic!() };
    assert!(c[0].params.is_empty());
    assert_eq!(sip(c[0].uri().unwrap()).param("unknownparam"), Some(None));

    let r = request("regescrt");
    let Some(Contact::Addrs(c)) = r.headers.contact().unwrap() else { panic!() };
    let u = sip(c[0].uri().unwrap());
    assert_eq!(u.headers, vec![("Route".to_owned(), "%3Csip:sip.example.com%3E".to_owned())]);

    let r = request("zeromf");
    assert_eq!(r.headers.max_forwards().unwrap(), Some(0));

    let r = request("inv2543");
    assert_eq!(r.headers.top_via().unwrap().branch(), None);
    assert_eq!(r.headers.from_addr().unwrap().tag(), None);
    assert_eq!(r.headers.max_forwards().unwrap(), None);
    assert!(r.headers.get(HeaderName::ContentLength).is_none());
    assert!(r.body.starts_with(b"v=0\r\n") && r.body.ends_with(b"RTP/AVP 0\r\n"));
    let to = sip(r.headers.to_addr().unwrap().uri().unwrap());
    assert_eq!(to.scheme, Scheme::Sip);

    let r = request("badbranch");
    assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bK"));
}

#[test]
fn specific_rejections() {
    let Verdict::Reject { response: Some(resp), .. } = verdict(&read("bext01")) else { panic!() };
    let Message::Response(r) = Message::parse_datagram(&resp).unwrap() else { panic!() };
    assert_eq!(
        r.headers.get(HeaderName::Unsupported).unwrap().value(),
        b"nothingSupportsThis, nothingSupportsThisEither"
    );
    let Verdict::Reject { response: Some(resp), .. } = verdict(&read("invut")) else { panic!() };
    let Message::Response(r) = Message::parse_datagram(&resp).unwrap() else { panic!() };
    assert_eq!(r.headers.get(HeaderName::Accept).unwrap().value(), b"application/sdp");
    // The 400 for a request whose To has no tag carries one.
    let Verdict::Reject { response: Some(resp), .. } = verdict(&read("mismatch01")) else { panic!() };
    let Message::Response(r) = Message::parse_datagram(&resp).unwrap() else { panic!() };
    assert!(r.headers.to_addr().unwrap().tag().is_some());
    assert_eq!(r.headers.vias().count(), 1);
}
