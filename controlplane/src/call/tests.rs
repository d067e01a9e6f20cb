//! The call on virtual time, fed hand-written SIP messages; every output checked.

use super::*;
use crate::instructions::interpreter::{DialCallStatus, DialOutcome, Output as Iout};
use crate::instructions::twiml::{self, Verb};
use crate::sdp::negotiate::LegMedia;
use crate::sdp::{Direction, SessionDescription};
use crate::sip::layer::Transport;
use crate::sip::message::{BodyFraming, Limits, Message, Method};
use crate::sip::HeaderName;
use crate::store::CallStatus;
use bytes::Bytes;
use std::time::Duration;

const SID: &str = "CA0123456789abcdef0123456789abcdef";

fn parse(text: &str) -> Message {
    Message::parse(Bytes::from(text.replace('\n', "\r\n")), BodyFraming::Datagram, &Limits::default())
        .expect("test message parses")
}

fn request(text: &str) -> Request {
    match parse(text) {
        Message::Request(r) => r,
        Message::Response(_) => panic!("not a request"),
    }
}

fn carrier() -> Peer {
    Peer { transport: Transport::Udp, addr: "192.0.2.10:5060".parse().unwrap(), connection: None }
}

fn trunk() -> Peer {
    Peer { transport: Transport::Udp, addr: "198.51.100.1:5060".parse().unwrap(), connection: None }
}

const LOCAL: [&str; 2] = ["203.0.113.1:20000", "203.0.113.1:20002"];

fn invite_text(sdp: &str) -> String {
    format!(
        "INVITE sip:+15550100001@192.0.2.1 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-inv-1
From: <sip:+15550100009@192.0.2.10>;tag=c1
To: <sip:+15550100001@192.0.2.1>
Call-ID: call-1@192.0.2.10
CSeq: 1 INVITE
Max-Forwards: 70
Contact: <sip:carrier@192.0.2.10:5060>
Content-Type: application/sdp

{sdp}"
    )
}

fn in_dialog(method: &str, cseq: u32, branch: &str, sdp: &str) -> Request {
    let ct = if sdp.is_empty() { "" } else { "Content-Type: application/sdp\n" };
    request(&format!(
        "{method} sip:bridgehead@192.0.2.1:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}
From: <sip:+15550100009@192.0.2.10>;tag=c1
To: <sip:+15550100001@192.0.2.1>;tag=t{SID}
Call-ID: call-1@192.0.2.10
CSeq: {cseq} {method}
Max-Forwards: 70
Contact: <sip:carrier@192.0.2.10:5060>
{ct}
{sdp}"
    ))
}

fn callee_sdp(port: u16, direction: &str) -> String {
    format!(
        "v=0\no=callee 1 1 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\n\
m=audio {port} RTP/AVP 0 96\na=rtpmap:0 PCMU/8000\na=rtpmap:96 telephone-event/8000\na={direction}\n"
    )
}

fn key(branch: &str, method: Method) -> TxKey {
    TxKey { branch: branch.into(), method }
}

/// What the callee answers to our request `req`.
fn reply(req: &Request, code: u16, tag: &str, sdp: Option<&str>) -> Response {
    let mut r = Response::for_request(req, code, "");
    r.set_to_tag(tag);
    r.headers.push(crate::sip::Header::new(HeaderName::Contact, "<sip:callee@198.51.100.20:5060>"));
    if let Some(sdp) = sdp {
        r.headers.push(crate::sip::Header::new(HeaderName::ContentType, "application/sdp"));
        r.body = Bytes::from(sdp.replace('\n', "\r\n"));
    }
    r
}

struct H {
    call: Call,
    now: Instant,
    /// Every request the call sent, with the key the "layer" gave it.
    sent: Vec<(TxKey, Peer, Request)>,
    n: u32,
}

impl H {
    fn new() -> H {
        let now = Instant::now();
        let cfg = CallConfig {
            call_sid: SID.into(),
            local_sip: "192.0.2.1:5060".into(),
            trunk: Some(trunk()),
            trunk_credentials: Some(Credentials { username: "bh".into(), password: "secret".into() }),
            caller_id: None,
            wall_clock: Timestamp::from_unix_ms(1_700_000_000_000),
            epoch: now,
        };
        H { call: Call::new(cfg), now, sent: Vec::new(), n: 0 }
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        self.call.handle_input(self.now, input);
        let mut all = Vec::new();
        while let Some(o) = self.call.poll_output() {
            if let Output::SendRequest { peer, request, tag } = &o {
                self.n += 1;
                let k = key(&format!("z9hG4bK-out-{}", self.n), request.method.clone());
                self.sent.push((k.clone(), *peer, request.clone()));
                self.call.handle_input(self.now, Input::RequestSent { tag: *tag, key: k });
            }
            all.push(o);
        }
        all
    }

    fn sip(&mut self, event: Event) -> Vec<Output> {
        self.input(Input::Sip(event))
    }

    fn interp(&mut self, out: Iout) -> Vec<Output> {
        self.input(Input::Interpreter(out))
    }

    /// The sent request number `i` (0-based).
    fn sent(&self, i: usize) -> (TxKey, Peer, Request) {
        self.sent[i].clone()
    }

    /// Carrier INVITE, media created; returns the outputs of the INVITE.
    fn start() -> (H, Vec<Output>) {
        let mut h = H::new();
        let invite = request(&invite_text(crate::sdp::tests::CARRIER_OFFER));
        let out = h.input(Input::InboundInvite { key: key("inv", Method::Invite), peer: carrier(), request: invite });
        let ready = h.input(Input::MediaReady {
            session: SessionId(7),
            local: [LOCAL[0].parse().unwrap(), LOCAL[1].parse().unwrap()],
        });
        assert!(ready.is_empty(), "{ready:?}");
        (h, out)
    }
}

fn dial(xml: &str) -> Iout {
    let doc = twiml::parse(xml).expect("valid TwiML");
    match doc.verbs.into_iter().next() {
        Some(Verb::Dial(d)) => Iout::StartDial(d),
        other => panic!("{other:?}"),
    }
}

fn responded(o: &Output) -> Option<(&TxKey, u16, &Response)> {
    match o {
        Output::Respond { key, response } => Some((key, response.code, response)),
        _ => None,
    }
}

fn codes(out: &[Output]) -> Vec<u16> {
    out.iter().filter_map(responded).map(|(_, c, _)| c).collect()
}

fn outcome(out: &[Output]) -> Option<DialOutcome> {
    out.iter().find_map(|o| match o {
        Output::ToInterpreter(interpreter::Input::DialOutcome(d)) => Some(d.clone()),
        _ => None,
    })
}

fn statuses(out: &[Output], sid: &str) -> Vec<CallStatus> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record { call_sid, update } if call_sid == sid => update.status,
            _ => None,
        })
        .collect()
}

fn media_of(body: &[u8]) -> LegMedia {
    LegMedia::from_sdp(&SessionDescription::parse(body).expect("SDP parses")).expect("usable SDP")
}

fn header(r: &Request, id: HeaderName) -> &str {
    r.headers.get(id).and_then(|h| h.value_str()).unwrap_or("")
}

const ONE_NUMBER: &str =
    r#"<Response><Dial answerOnBridge="true" timeout="20"><Number>+1 555 010 0002</Number></Dial></Response>"#;

#[test]
fn carrier_call_dialed_out_answered_and_hung_up_by_the_carrier() {
    let (mut h, out) = H::start();
    assert_eq!(codes(&out), [100]);
    assert!(matches!(
        &out[1],
        Output::CreateMedia { legs, rtcp_mux: false } if legs[0].remote == Some("192.0.2.10:6000".parse().unwrap())
    ));
    assert_eq!(statuses(&out, SID), [CallStatus::Ringing]);
    assert_eq!(out.last(), Some(&Output::RunInstructions));

    // <Dial answerOnBridge><Number>: an INVITE to the trunk with our address, the caller's codecs.
    let out = h.interp(dial(ONE_NUMBER));
    let (inv_key, peer, inv) = h.sent(0);
    assert_eq!(peer, trunk());
    assert_eq!(inv.method, Method::Invite);
    assert_eq!(inv.uri_str(), "sip:+15550100002@198.51.100.1:5060");
    assert!(header(&inv, HeaderName::From).starts_with("<sip:+15550100009@192.0.2.1:5060>;tag="));
    assert_eq!(header(&inv, HeaderName::CSeq), "1 INVITE");
    let offer = SessionDescription::parse(&inv.body).unwrap();
    assert_eq!(offer.connection, Some("203.0.113.1".parse().unwrap()));
    assert_eq!(offer.audio().unwrap().port, 20002);
    assert_eq!(offer.audio().unwrap().formats, ["0", "8", "101"]);
    let child = match &out[0] {
        Output::ChildCall { call_sid, from, to, .. } => {
            assert_eq!((from.as_str(), to.as_str()), ("+15550100009", "+15550100002"));
            call_sid.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(statuses(&out, &child), [CallStatus::Ringing]);
    assert_eq!(h.call.next_timeout(), Some(h.now + Duration::from_secs(20)));

    // 100 is absorbed, 180 relayed as 180 (once).
    assert!(h.sip(Event::Response { key: inv_key.clone(), response: reply(&inv, 100, "", None) }).is_empty());
    let out = h.sip(Event::Response { key: inv_key.clone(), response: reply(&inv, 180, "callee", None) });
    assert_eq!(codes(&out), [180]);
    assert_eq!(out[0], Output::ChildRinging { call_sid: child.clone() });
    let (k, _, r) = responded(&out[1]).unwrap();
    assert_eq!(k, &key("inv", Method::Invite));
    let tag = r.headers.to_addr().unwrap().tag().map(str::to_owned).unwrap_or_default();
    assert!(tag.len() == 17 && tag.starts_with('t') && !tag.contains(SID), "our tag is random: {tag}");
    assert!(h.sip(Event::Response { key: inv_key.clone(), response: reply(&inv, 180, "callee", None) }).is_empty());

    // 200: ACK out, dataplane updated both ways, 200 to the carrier with our SDP.
    h.now += Duration::from_secs(3);
    let sdp = callee_sdp(7000, "sendrecv");
    let out = h.sip(Event::Response { key: inv_key, response: reply(&inv, 200, "callee", Some(&sdp)) });
    let ack = match &out[0] {
        Output::SendAck2xx { peer, request } => {
            assert_eq!(*peer, trunk());
            request.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(ack.uri_str(), "sip:callee@198.51.100.20:5060");
    assert_eq!(header(&ack, HeaderName::CSeq), "1 ACK");
    assert!(header(&ack, HeaderName::To).ends_with(";tag=callee"));
    let updates: Vec<(usize, LegSettings)> = out
        .iter()
        .filter_map(|o| match o {
            Output::UpdateMedia { session, side, settings } if *session == SessionId(7) => Some((*side, *settings)),
            _ => None,
        })
        .collect();
    assert_eq!(updates.len(), 2, "{out:?}");
    let callee_leg = updates.iter().find(|(s, _)| *s == 1).unwrap().1;
    assert_eq!(callee_leg.remote, Some("198.51.100.20:7000".parse().unwrap()));
    assert_eq!(callee_leg.pt_map.pairs(), [(101, 96)]);
    let caller_leg = updates.iter().find(|(s, _)| *s == 0).unwrap().1;
    assert_eq!(caller_leg.remote, Some("192.0.2.10:6000".parse().unwrap()));
    assert_eq!(caller_leg.pt_map.pairs(), [(96, 101)]);
    let (_, code, ok) = out.iter().find_map(responded).unwrap();
    assert_eq!(code, 200);
    let ours = SessionDescription::parse(&ok.body).unwrap();
    assert_eq!(ours.connection, Some("203.0.113.1".parse().unwrap()));
    assert_eq!(ours.audio().unwrap().port, 20000);
    assert_eq!(ours.audio().unwrap().formats, ["0", "101"], "the caller's payload types, the callee's codecs");
    assert_eq!(statuses(&out, &child), [CallStatus::InProgress]);
    assert_eq!(statuses(&out, SID), [CallStatus::InProgress]);
    assert!(outcome(&out).is_none(), "the dial lasts until a BYE");
    assert_eq!(h.call.next_timeout(), Some(h.now + Duration::from_secs(4 * 3600)), "timeLimit");

    // BYE from the carrier: 200, BYE to the callee, media deleted, DialOutcome completed.
    h.now += Duration::from_secs(42);
    let bye = in_dialog("BYE", 2, "z9hG4bK-bye-1", "");
    let out = h.sip(Event::Request { key: key("bye", Method::Bye), peer: carrier(), request: bye });
    assert_eq!(codes(&out), [200]);
    let (_, peer, bye_out) = h.sent(1);
    assert_eq!((bye_out.method.clone(), peer), (Method::Bye, trunk()));
    assert_eq!(bye_out.uri_str(), "sip:callee@198.51.100.20:5060");
    assert_eq!(header(&bye_out, HeaderName::CSeq), "2 BYE");
    assert!(header(&bye_out, HeaderName::To).ends_with(";tag=callee"));
    assert!(out.contains(&Output::ToInterpreter(interpreter::Input::CallEnded)));
    let o = outcome(&out).unwrap();
    assert_eq!((o.status, o.dial_call_sid.as_deref(), o.duration_s), (DialCallStatus::Completed, Some(&*child), 42));
    assert!(out.contains(&Output::DeleteMedia { session: SessionId(7) }));
    assert_eq!(statuses(&out, SID), [CallStatus::Completed]);
    assert_eq!(statuses(&out, &child), [CallStatus::Completed]);
    assert_eq!(out.last(), Some(&Output::Ended));
    assert!(h.call.is_ended());
}

#[test]
fn busy_callee_gives_busy_and_the_hangup_refuses_the_caller_486() {
    let (mut h, _) = H::start();
    h.interp(dial(ONE_NUMBER));
    let (k, _, inv) = h.sent(0);
    let out = h.sip(Event::Response { key: k, response: reply(&inv, 486, "callee", None) });
    assert_eq!(outcome(&out).unwrap().status, DialCallStatus::Busy);
    assert!(codes(&out).is_empty(), "the caller waits for the instructions");
    let out = h.interp(Iout::Hangup);
    assert_eq!(codes(&out), [486]);
    assert!(out.contains(&Output::DeleteMedia { session: SessionId(7) }));
    assert_eq!(statuses(&out, SID), [CallStatus::Busy]);
    assert_eq!(out.last(), Some(&Output::Ended));
}

#[test]
fn no_answer_within_the_timeout_cancels_the_fork() {
    let (mut h, _) = H::start();
    h.interp(dial(ONE_NUMBER));
    let (k, _, inv) = h.sent(0);
    h.sip(Event::Response { key: k.clone(), response: reply(&inv, 180, "callee", None) });
    h.now += Duration::from_secs(20);
    assert_eq!(h.call.next_timeout(), Some(h.now));
    let out = h.input(Input::Timeout);
    let cancel = out
        .iter()
        .find_map(|o| match o {
            Output::SendCancel { peer, request, invite } => Some((*peer, request.clone(), invite.clone())),
            _ => None,
        })
        .expect("a CANCEL");
    assert_eq!(cancel.0, trunk());
    assert_eq!(cancel.2, k);
    assert_eq!(cancel.1.method, Method::Cancel);
    assert_eq!(cancel.1.uri_str(), inv.uri_str());
    for id in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
        assert_eq!(header(&cancel.1, id), header(&inv, id));
    }
    assert_eq!(header(&cancel.1, HeaderName::CSeq), "1 CANCEL");
    assert_eq!(outcome(&out).unwrap().status, DialCallStatus::NoAnswer);
    assert_eq!(h.call.next_timeout(), None);
    // The 487 ends the fork quietly.
    let out = h.sip(Event::Response { key: k, response: reply(&inv, 487, "callee", None) });
    assert!(out.iter().all(|o| !matches!(o, Output::ToInterpreter(_) | Output::Respond { .. })), "{out:?}");
}

#[test]
fn caller_cancel_while_ringing_ends_everything() {
    let (mut h, _) = H::start();
    h.interp(dial(ONE_NUMBER));
    let (k, _, inv) = h.sent(0);
    h.sip(Event::Response { key: k.clone(), response: reply(&inv, 180, "callee", None) });
    let out = h.sip(Event::Cancelled { invite: key("inv", Method::Invite) });
    assert_eq!(codes(&out), [487]);
    assert!(out.iter().any(|o| matches!(o, Output::SendCancel { invite, .. } if *invite == k)));
    assert_eq!(out[1], Output::ToInterpreter(interpreter::Input::CallEnded));
    assert_eq!(outcome(&out).unwrap().status, DialCallStatus::Canceled);
    assert!(out.contains(&Output::DeleteMedia { session: SessionId(7) }));
    assert_eq!(statuses(&out, SID), [CallStatus::Canceled]);
    assert_eq!(out.last(), Some(&Output::Ended));
}

#[test]
fn cancel_waits_for_a_provisional_response() {
    let (mut h, _) = H::start();
    h.interp(dial(ONE_NUMBER));
    let (k, _, inv) = h.sent(0);
    let out = h.sip(Event::Cancelled { invite: key("inv", Method::Invite) });
    assert!(!out.iter().any(|o| matches!(o, Output::SendCancel { .. })));
    let out = h.sip(Event::Response { key: k, response: reply(&inv, 100, "", None) });
    assert!(matches!(out.as_slice(), [Output::SendCancel { .. }]), "{out:?}");
}

#[test]
fn parallel_numbers_second_answers_first_and_a_late_200_is_acked_and_hung_up() {
    let (mut h, _) = H::start();
    let out = h.interp(dial(
        r#"<Response><Dial><Number>+15550100002</Number><Number>+15550100003</Number></Dial></Response>"#,
    ));
    assert_eq!(out.iter().filter(|o| matches!(o, Output::SendRequest { .. })).count(), 2);
    let (k1, _, inv1) = h.sent(0);
    let (k2, _, inv2) = h.sent(1);
    assert_ne!(header(&inv1, HeaderName::CallId), header(&inv2, HeaderName::CallId));
    h.sip(Event::Response { key: k1.clone(), response: reply(&inv1, 180, "one", None) });
    let sdp = callee_sdp(7002, "sendrecv");
    let out = h.sip(Event::Response { key: k2, response: reply(&inv2, 200, "two", Some(&sdp)) });
    assert!(
        matches!(&out[0], Output::SendAck2xx { request, .. } if header(request, HeaderName::To).ends_with("tag=two"))
    );
    assert!(out.iter().any(|o| matches!(o, Output::SendCancel { invite, .. } if *invite == k1)));
    assert!(codes(&out).contains(&200));
    // The first callee answers anyway: ACK and BYE it, the bridge stays.
    let out = h.sip(Event::Response { key: k1, response: reply(&inv1, 200, "one", Some(&sdp)) });
    assert!(
        matches!(&out[0], Output::SendAck2xx { request, .. } if header(request, HeaderName::To).ends_with("tag=one"))
    );
    let (_, _, bye) = h.sent(2);
    assert_eq!(bye.method, Method::Bye);
    assert!(header(&bye, HeaderName::To).ends_with("tag=one"));
    assert!(outcome(&out).is_none() && codes(&out).is_empty(), "{out:?}");
}

#[test]
fn early_answer_then_the_callee_hangs_up_and_the_instructions_go_on() {
    let (mut h, _) = H::start();
    // Without answerOnBridge the interpreter answers first.
    let out = h.interp(Iout::Answer);
    assert_eq!(codes(&out), [200]);
    let (_, _, ok) = responded(&out[0]).unwrap();
    assert_eq!(media_of(&ok.body).codecs.len(), 2, "one audio codec and telephone-event");
    h.interp(dial(r#"<Response><Dial><Sip>sip:bob@198.51.100.30:5070;transport=tcp</Sip></Dial></Response>"#));
    let (k, peer, inv) = h.sent(0);
    assert_eq!(peer.addr, "198.51.100.30:5070".parse().unwrap());
    assert_eq!(peer.transport, Transport::Tcp);
    assert_eq!(SessionDescription::parse(&inv.body).unwrap().audio().unwrap().formats, ["0", "101"]);
    // 183 with SDP: early media reaches the already answered caller through the dataplane only.
    let sdp = callee_sdp(7004, "sendrecv");
    let out = h.sip(Event::Response { key: k.clone(), response: reply(&inv, 183, "bob", Some(&sdp)) });
    assert!(codes(&out).is_empty());
    assert!(out.iter().any(|o| matches!(o, Output::UpdateMedia { side: 1, settings, .. }
        if settings.remote == Some("198.51.100.20:7004".parse().unwrap()))));
    let out = h.sip(Event::Response { key: k, response: reply(&inv, 200, "bob", Some(&sdp)) });
    assert!(codes(&out).is_empty(), "the caller was answered already");
    // BYE from the callee: 200, the dial completed, the caller stays.
    h.now += Duration::from_secs(5);
    let bye = request(&format!(
        "BYE sip:bridgehead@192.0.2.1:5060 SIP/2.0
Via: SIP/2.0/TCP 198.51.100.30:5070;branch=z9hG4bK-cb
From: {}
To: {}
Call-ID: {}
CSeq: 9 BYE

",
        "<sip:bob@198.51.100.30:5070>;tag=bob",
        header(&inv, HeaderName::From),
        header(&inv, HeaderName::CallId)
    ));
    let out = h.sip(Event::Request { key: key("cb", Method::Bye), peer, request: bye });
    assert_eq!(codes(&out), [200]);
    let o = outcome(&out).unwrap();
    assert_eq!((o.status, o.duration_s), (DialCallStatus::Completed, 5));
    assert!(!out.iter().any(|o| matches!(o, Output::SendRequest { .. } | Output::DeleteMedia { .. } | Output::Ended)));
    // The document ends: BYE to the caller.
    let out = h.interp(Iout::Hangup);
    let (_, peer, bye) = h.sent(1);
    assert_eq!((bye.method.clone(), peer), (Method::Bye, carrier()));
    assert_eq!(bye.uri_str(), "sip:carrier@192.0.2.10:5060");
    let tag = header(&bye, HeaderName::From).rsplit_once(";tag=").map(|(_, t)| t.to_owned()).unwrap_or_default();
    assert!(tag.len() == 17 && tag.starts_with('t') && !tag.contains(SID), "our tag is random: {tag}");
    assert_eq!(header(&bye, HeaderName::To), "<sip:+15550100009@192.0.2.10>;tag=c1");
    assert!(out.contains(&Output::DeleteMedia { session: SessionId(7) }));
    assert_eq!(statuses(&out, SID), [CallStatus::Completed]);
    assert_eq!(out.last(), Some(&Output::Ended));
}

#[test]
fn reinvite_to_hold_is_passed_through() {
    let (mut h, _) = H::start();
    h.interp(dial(ONE_NUMBER));
    let (k, _, inv) = h.sent(0);
    let sdp = callee_sdp(7000, "sendrecv");
    h.sip(Event::Response { key: k, response: reply(&inv, 200, "callee", Some(&sdp)) });
    // The carrier puts the callee on hold, from a new address.
    let held = crate::sdp::tests::CARRIER_OFFER.replace("a=sendrecv", "a=sendonly").replace("6000", "6100");
    let reinvite = in_dialog("INVITE", 2, "z9hG4bK-re-1", &held);
    let out = h.sip(Event::Request { key: key("re", Method::Invite), peer: carrier(), request: reinvite });
    assert!(out.iter().any(|o| matches!(o, Output::UpdateMedia { side: 0, settings, .. }
        if settings.remote == Some("192.0.2.10:6100".parse().unwrap()))));
    let (rk, peer, relayed) = h.sent(1);
    assert_eq!((relayed.method.clone(), peer), (Method::Invite, trunk()));
    assert_eq!(header(&relayed, HeaderName::CSeq), "2 INVITE");
    let offer = SessionDescription::parse(&relayed.body).unwrap();
    assert_eq!(offer.connection, Some("203.0.113.1".parse().unwrap()));
    let m = media_of(&relayed.body);
    assert_eq!(m.direction, Direction::SendOnly);
    assert_eq!(m.codecs.iter().map(|c| c.1).collect::<Vec<_>>(), [0, 96], "the callee's payload types");
    // The callee answers recvonly: ACK it, answer the carrier with our address.
    let answer = callee_sdp(7000, "recvonly");
    let out = h.sip(Event::Response { key: rk, response: reply(&relayed, 200, "callee", Some(&answer)) });
    assert!(matches!(&out[0], Output::SendAck2xx { request, .. } if header(request, HeaderName::CSeq) == "2 ACK"));
    let (rkey, code, ok) = out.iter().find_map(responded).unwrap();
    assert_eq!((rkey, code), (&key("re", Method::Invite), 200));
    let ours = media_of(&ok.body);
    assert_eq!(ours.direction, Direction::RecvOnly);
    assert_eq!(ours.remote, Some("203.0.113.1:20000".parse().unwrap()));
}

#[test]
fn an_offer_of_only_opus_gets_488_and_nothing_else() {
    let mut h = H::new();
    let opus = crate::sdp::tests::CARRIER_OFFER
        .replace("m=audio 6000 RTP/AVP 0 8 101", "m=audio 6000 RTP/AVP 111 101")
        .replace("a=rtpmap:0 PCMU/8000\n", "a=rtpmap:111 opus/48000/2\n");
    let invite = request(&invite_text(&opus));
    let out = h.input(Input::InboundInvite { key: key("inv", Method::Invite), peer: carrier(), request: invite });
    assert_eq!(codes(&out), [488]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1], Output::Ended);
    assert!(h.sent.is_empty());
}

#[test]
fn time_limit_hangs_up_both_sides() {
    let (mut h, _) = H::start();
    h.interp(dial(
        r#"<Response><Dial answerOnBridge="true" timeLimit="60"><Number>+15550100002</Number></Dial></Response>"#,
    ));
    let (k, _, inv) = h.sent(0);
    let sdp = callee_sdp(7000, "sendrecv");
    h.sip(Event::Response { key: k, response: reply(&inv, 200, "callee", Some(&sdp)) });
    h.now += Duration::from_secs(60);
    assert_eq!(h.call.next_timeout(), Some(h.now));
    let out = h.input(Input::Timeout);
    let byes: Vec<Peer> = h.sent[1..].iter().filter(|s| s.2.method == Method::Bye).map(|s| s.1).collect();
    assert_eq!(byes, [trunk(), carrier()]);
    assert_eq!(outcome(&out).unwrap().duration_s, 60);
    assert_eq!(out.last(), Some(&Output::Ended));
}

#[test]
fn unanswered_forks_time_out_as_failed() {
    let (mut h, _) = H::start();
    h.interp(dial(ONE_NUMBER));
    let (k, _, _) = h.sent(0);
    let out = h.sip(Event::Timeout { key: k });
    assert_eq!(outcome(&out).unwrap().status, DialCallStatus::Failed);
}

#[test]
fn nobody_there_is_no_answer() {
    let (mut h, _) = H::start();
    h.interp(dial(ONE_NUMBER));
    let (k, _, inv) = h.sent(0);
    let out = h.sip(Event::Response { key: k, response: reply(&inv, 480, "callee", None) });
    assert_eq!(outcome(&out).unwrap().status, DialCallStatus::NoAnswer);
}

#[test]
fn trunk_digest_challenge_is_answered_once_then_refusal_fails_the_fork() {
    let (mut h, _) = H::start();
    h.interp(dial(ONE_NUMBER));
    let (k1, _, inv1) = h.sent(0);
    let mut challenge = reply(&inv1, 407, "proxy", None);
    challenge.headers.push(crate::sip::Header::new(
        HeaderName::ProxyAuthenticate,
        r#"Digest realm="carrier", nonce="abc123", qop="auth", algorithm=MD5"#,
    ));
    // The layer ACKs the 407; the call sends the INVITE again, answered.
    let out = h.sip(Event::Response { key: k1, response: challenge.clone() });
    assert!(codes(&out).is_empty(), "{out:?}");
    let (k2, peer, inv2) = h.sent(1);
    assert_eq!(peer, trunk());
    assert_eq!(header(&inv2, HeaderName::CSeq), "2 INVITE");
    assert_eq!(header(&inv2, HeaderName::CallId), header(&inv1, HeaderName::CallId));
    let auth = header(&inv2, HeaderName::ProxyAuthorization);
    assert!(auth.starts_with("Digest ") && auth.contains(r#"username="bh""#) && auth.contains(r#"realm="carrier""#));
    assert_eq!(inv2.body, inv1.body, "the same offer");

    // Challenged again: the credentials were refused, the fork fails (no third try).
    let mut again = reply(&inv2, 407, "proxy", None);
    again.headers = challenge.headers.clone();
    again.headers.set(HeaderName::CSeq, "2 INVITE");
    let out = h.sip(Event::Response { key: k2, response: again });
    assert_eq!(h.sent.len(), 2, "no third INVITE");
    let failed = outcome(&out).expect("the dial is over");
    assert_eq!(failed.status, DialCallStatus::Failed);
}

#[test]
fn originated_call_rings_is_answered_runs_instructions_and_hangs_up() {
    let mut h = H::new();
    let uri = "sip:+15550100002@198.51.100.1:5060".to_string();
    let out = h.input(Input::Originate {
        peer: trunk(),
        uri: uri.clone(),
        from: "+15550100001".into(),
        timeout: Duration::from_secs(30),
    });
    assert!(matches!(out[..], [Output::CreateMedia { .. }]), "{out:?}");
    let out = h.input(Input::MediaReady {
        session: SessionId(7),
        local: [LOCAL[0].parse().unwrap(), LOCAL[1].parse().unwrap()],
    });
    assert_eq!(statuses(&out, SID), [CallStatus::Ringing]);
    let (k, peer, inv) = h.sent(0);
    assert_eq!((peer, inv.uri_str()), (trunk(), uri.as_str()));
    let offer = media_of(&inv.body);
    assert_eq!(offer.remote, Some(LOCAL[0].parse().unwrap()), "our caller-side address");
    assert_eq!(h.call.next_timeout(), Some(h.now + Duration::from_secs(30)));

    let out = h.sip(Event::Response { key: k.clone(), response: reply(&inv, 180, "callee", None) });
    assert_eq!(out, [Output::ChildRinging { call_sid: SID.into() }]);
    h.now += Duration::from_secs(2);
    let sdp = callee_sdp(7000, "sendrecv");
    let out = h.sip(Event::Response { key: k, response: reply(&inv, 200, "callee", Some(&sdp)) });
    assert!(matches!(&out[0], Output::SendAck2xx { request, .. } if request.method == Method::Ack));
    assert!(out.iter().any(|o| matches!(o, Output::UpdateMedia { side: 0, settings, .. }
        if settings.remote == Some("198.51.100.20:7000".parse().unwrap()))));
    assert_eq!(statuses(&out, SID), [CallStatus::InProgress]);
    assert_eq!(out.last(), Some(&Output::RunInstructions));
    assert_eq!(h.call.next_timeout(), None);

    // The instructions end: BYE to the callee, the record completed.
    h.now += Duration::from_secs(5);
    let out = h.interp(Iout::Hangup);
    let (_, _, bye) = h.sent(1);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.uri_str(), "sip:callee@198.51.100.20:5060");
    assert_eq!(statuses(&out, SID), [CallStatus::Completed]);
    assert_eq!(out.last(), Some(&Output::Ended));
}

#[test]
fn originated_call_unanswered_is_cancelled_at_its_timeout() {
    let mut h = H::new();
    h.input(Input::Originate {
        peer: trunk(),
        uri: "sip:+15550100002@198.51.100.1:5060".into(),
        from: "+15550100001".into(),
        timeout: Duration::from_secs(10),
    });
    h.input(Input::MediaReady { session: SessionId(7), local: [LOCAL[0].parse().unwrap(), LOCAL[1].parse().unwrap()] });
    let (k, _, inv) = h.sent(0);
    h.sip(Event::Response { key: k.clone(), response: reply(&inv, 180, "callee", None) });
    h.now += Duration::from_secs(10);
    let out = h.input(Input::Timeout);
    assert!(out.iter().any(|o| matches!(o, Output::SendCancel { invite, .. } if *invite == k)), "{out:?}");
    assert_eq!(statuses(&out, SID), [CallStatus::NoAnswer]);
    assert!(h.call.is_ended() && h.call.has_open_forks(), "the CANCEL is still out");
    // The 487 closes it.
    h.sip(Event::Response { key: k, response: reply(&inv, 487, "callee", None) });
    assert!(!h.call.has_open_forks());
}

/// A carrier call bridged to one callee (answerOnBridge), callee's SDP `direction`.
fn bridged(direction: &str) -> H {
    let (mut h, _) = H::start();
    h.interp(dial(ONE_NUMBER));
    let (k, _, inv) = h.sent(0);
    let sdp = callee_sdp(7000, direction);
    let out = h.sip(Event::Response { key: k, response: reply(&inv, 200, "callee", Some(&sdp)) });
    assert_eq!(codes(&out), [200], "{out:?}");
    h
}

#[test]
fn media_timeout_hangs_up_a_bridged_call_both_ways() {
    let mut h = bridged("sendrecv");
    let out = h.input(Input::MediaTimeout);
    let byes: Vec<String> =
        h.sent.iter().filter(|(_, _, r)| r.method == Method::Bye).map(|(_, _, r)| r.uri_str().to_string()).collect();
    assert_eq!(byes.len(), 2, "BYE to the callee and to the caller: {byes:?}");
    assert!(out.iter().any(|o| matches!(o, Output::Record { update, .. }
        if update.error_message.as_deref().is_some_and(|m| m.contains("media timeout")))));
    assert_eq!(statuses(&out, SID).last(), Some(&CallStatus::Completed));
    assert_eq!(out.last(), Some(&Output::Ended));
}

#[test]
fn media_timeout_leaves_a_held_call_alone() {
    let mut h = bridged("sendonly");
    let out = h.input(Input::MediaTimeout);
    assert!(out.is_empty(), "{out:?}");
    assert!(!h.call.is_ended());
}

#[test]
fn hangup_from_outside_ends_the_bridge_with_its_record_and_outcome() {
    let mut h = bridged("sendrecv");
    h.now += Duration::from_secs(4);
    let out = h.input(Input::Hangup);
    assert_eq!(out[0], Output::ToInterpreter(interpreter::Input::CallEnded));
    let child_final: Vec<&CallUpdate> = out
        .iter()
        .filter_map(|o| match o {
            Output::Record { call_sid, update } if call_sid != SID => Some(update),
            _ => None,
        })
        .collect();
    assert_eq!(child_final.len(), 1, "{out:?}");
    assert_eq!(child_final[0].status, Some(CallStatus::Completed));
    assert_eq!(child_final[0].duration_s, Some(4));
    assert_eq!(outcome(&out).map(|o| o.status), Some(DialCallStatus::Completed));
    assert_eq!(h.sent.iter().filter(|(_, _, r)| r.method == Method::Bye).count(), 2);
    assert_eq!(out.last(), Some(&Output::Ended));
}

#[test]
fn the_forks_that_lose_a_parallel_dial_end_canceled() {
    let (mut h, _) = H::start();
    let out = h.interp(dial(
        r#"<Response><Dial answerOnBridge="true"><Number>+15550100002</Number><Number>+15550100003</Number></Dial></Response>"#,
    ));
    let sids: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            Output::ChildCall { call_sid, .. } => Some(call_sid.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sids.len(), 2);
    let (k0, _, inv0) = h.sent(0);
    let (k1, _, inv1) = h.sent(1);
    h.sip(Event::Response { key: k0, response: reply(&inv0, 180, "a", None) });
    let sdp = callee_sdp(7000, "sendrecv");
    let out = h.sip(Event::Response { key: k1, response: reply(&inv1, 200, "b", Some(&sdp)) });
    assert_eq!(statuses(&out, &sids[0]), [CallStatus::Canceled], "{out:?}");
    assert_eq!(statuses(&out, &sids[1]), [CallStatus::InProgress]);
    assert!(out.iter().any(|o| matches!(o, Output::SendCancel { .. })));
}

/// A fork whose media the far appliance anchors (fleet): it is offered the
/// caller's own SDP, its answer reaches the caller byte for byte, and our
/// session is deleted: this appliance relays nothing. Once the caller is
/// answered (or hears early media), a fork can no longer pass through.
#[test]
fn a_pass_through_fork_hands_the_callers_offer_and_its_answer_across() {
    let (mut h, _) = H::start();
    h.interp(dial(ONE_NUMBER));
    let (k, _, inv) = h.sent(0);
    let call_id = header(&inv, HeaderName::CallId).to_owned();
    let offer = h.call.pass_through(&call_id).expect("an unanswered caller: pass-through allowed");
    assert_eq!(offer, request(&invite_text(crate::sdp::tests::CARRIER_OFFER)).body, "the caller's own offer");
    assert_eq!(h.call.pass_through("no-such-call"), None);

    let far = callee_sdp(31000, "sendrecv");
    let out = h.sip(Event::Response { key: k.clone(), response: reply(&inv, 183, "far", Some(&far)) });
    assert_eq!(codes(&out), [180], "early media of a pass-through fork is not ours to relay: it rings");
    assert!(!out.iter().any(|o| matches!(o, Output::UpdateMedia { .. })), "{out:?}");

    let out = h.sip(Event::Response { key: k, response: reply(&inv, 200, "far", Some(&far)) });
    let (_, code, answer) = out.iter().find_map(responded).expect("the caller is answered");
    assert_eq!(code, 200);
    assert_eq!(answer.body, Bytes::from(far.replace('\n', "\r\n")), "the far answer, untouched");
    assert!(out.contains(&Output::DeleteMedia { session: SessionId(7) }), "{out:?}");
    assert!(!out.iter().any(|o| matches!(o, Output::UpdateMedia { .. })), "{out:?}");
    assert!(out.iter().any(|o| matches!(o, Output::SendAck2xx { .. })));

    // A session refresh gets the SDP the caller has; a new offer is
    // declined (the far client takes none) and the call goes on.
    let refresh = in_dialog("INVITE", 2, "z9hG4bK-refresh", "");
    let out = h.sip(Event::Request { key: key("refresh", Method::Invite), peer: carrier(), request: refresh });
    let (_, code, answer) = out.iter().find_map(responded).expect("the refresh is answered");
    assert_eq!((code, answer.body.clone()), (200, Bytes::from(far.replace('\n', "\r\n"))));
    let hold = in_dialog("INVITE", 3, "z9hG4bK-hold", &callee_sdp(6000, "sendonly"));
    let out = h.sip(Event::Request { key: key("hold", Method::Invite), peer: carrier(), request: hold });
    assert_eq!(codes(&out), [488]);

    // The caller hangs up: BYE to the fork, no second delete.
    let out = h.sip(Event::Request {
        key: key("bye-1", Method::Bye),
        peer: carrier(),
        request: in_dialog("BYE", 4, "z9hG4bK-bye-1", ""),
    });
    assert!(!out.iter().any(|o| matches!(o, Output::DeleteMedia { .. })), "{out:?}");
    assert!(h.sent.iter().any(|(_, _, r)| r.method == Method::Bye));
}

#[test]
fn an_answered_caller_keeps_its_media_here() {
    let (mut h, _) = H::start();
    h.interp(Iout::Answer);
    h.interp(dial(ONE_NUMBER));
    let (_, _, inv) = h.sent(0);
    assert_eq!(h.call.pass_through(header(&inv, HeaderName::CallId)), None);
}

/// The far end of a pass-through bridge hangs up: the caller's media went
/// there, so nothing here can carry what the instructions do next: the
/// call ends with the bridge (BYE to the caller), its outcome still told.
#[test]
fn a_pass_through_bridge_ended_by_the_far_end_ends_the_call() {
    let (mut h, _) = H::start();
    h.interp(dial(ONE_NUMBER));
    let (k, fork_peer, inv) = h.sent(0);
    h.call.pass_through(header(&inv, HeaderName::CallId)).expect("pass-through");
    h.sip(Event::Response { key: k, response: reply(&inv, 200, "far", Some(&callee_sdp(31000, "sendrecv"))) });
    let bye = request(&format!(
        "BYE sip:bridgehead@192.0.2.1:5060 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bK-farbye
From: {}
To: {}
Call-ID: {}
CSeq: 9 BYE
Max-Forwards: 70

",
        header(&inv, HeaderName::To).to_owned() + ";tag=far",
        header(&inv, HeaderName::From),
        header(&inv, HeaderName::CallId)
    ));
    let out = h.sip(Event::Request { key: key("farbye", Method::Bye), peer: fork_peer, request: bye });
    assert_eq!(outcome(&out).map(|o| o.status), Some(DialCallStatus::Completed));
    assert!(h.sent.iter().any(|(_, p, r)| r.method == Method::Bye && *p == carrier()), "BYE to the caller");
    assert_eq!(statuses(&out, SID), [CallStatus::Completed]);
    assert_eq!(out.last(), Some(&Output::Ended));
}

#[test]
fn a_fork_with_siblings_never_passes_through() {
    let (mut h, _) = H::start();
    h.interp(dial(
        r#"<Response><Dial answerOnBridge="true"><Number>+1 555 010 0002</Number><Number>+1 555 010 0003</Number></Dial></Response>"#,
    ));
    let (_, _, inv) = h.sent(0);
    assert_eq!(h.call.pass_through(header(&inv, HeaderName::CallId)), None);
}
