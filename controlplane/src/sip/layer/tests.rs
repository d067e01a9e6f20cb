//! The transaction layer on virtual time, fed hand-written messages.

use super::*;
use crate::sip::message::{BodyFraming, Limits};

fn parse(text: &str) -> Message {
    Message::parse(Bytes::from(text.replace('\n', "\r\n")), BodyFraming::Datagram, &Limits::default())
        .expect("test message parses")
}

fn peer() -> Peer {
    Peer { transport: Transport::Udp, addr: "192.0.2.10:5060".parse().unwrap(), connection: None }
}

const INVITE: &str = "INVITE sip:+15550100001@192.0.2.1 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-inv-1
From: <sip:carrier@192.0.2.10>;tag=c1
To: <sip:+15550100001@192.0.2.1>
Call-ID: call-1@192.0.2.10
CSeq: 1 INVITE
Max-Forwards: 70
Contact: <sip:carrier@192.0.2.10:5060>
Content-Length: 0

";

fn ack(to_tag: &str, branch: &str) -> String {
    format!(
        "ACK sip:+15550100001@192.0.2.1 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}
From: <sip:carrier@192.0.2.10>;tag=c1
To: <sip:+15550100001@192.0.2.1>;tag={to_tag}
Call-ID: call-1@192.0.2.10
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

"
    )
}

fn sends(layer: &mut Layer) -> Vec<String> {
    std::iter::from_fn(|| layer.poll_send()).map(|s| String::from_utf8_lossy(&s.bytes).into_owned()).collect()
}

fn events(layer: &mut Layer) -> Vec<Event> {
    std::iter::from_fn(|| layer.poll_event()).collect()
}

fn incoming_invite(layer: &mut Layer, t0: Instant) -> (TxKey, Request) {
    layer.received(t0, peer(), parse(INVITE));
    match events(layer).as_slice() {
        [Event::Request { key, request, .. }] => (key.clone(), request.clone()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_final_is_retransmitted_until_ack_and_the_ack_is_absorbed() {
    let t0 = Instant::now();
    let mut l = Layer::new(Timers::default(), 1);
    let (key, req) = incoming_invite(&mut l, t0);
    l.respond(t0, &key, Response::for_request(&req, 100, ""));
    let mut busy = Response::for_request(&req, 486, "");
    busy.set_to_tag("bh1");
    l.respond(t0, &key, busy);
    let out = sends(&mut l);
    assert!(out[0].starts_with("SIP/2.0 100 ") && out[1].starts_with("SIP/2.0 486 "), "{out:?}");
    // The INVITE again: the 486 again, no new event.
    l.received(t0, peer(), parse(INVITE));
    assert!(sends(&mut l)[0].starts_with("SIP/2.0 486"));
    assert!(events(&mut l).is_empty());
    // Timer G.
    l.on_timeout(t0 + Duration::from_millis(500));
    assert_eq!(sends(&mut l).len(), 1);
    // The ACK (same branch as the INVITE) ends it and is not handed up.
    l.received(t0 + Duration::from_secs(1), peer(), parse(&ack("bh1", "z9hG4bK-inv-1")));
    assert!(events(&mut l).is_empty());
    l.on_timeout(t0 + Duration::from_secs(10));
    assert_eq!(l.transactions(), (0, 0));
}

#[test]
fn invite_2xx_is_retransmitted_until_the_ack_which_goes_to_the_user() {
    let t0 = Instant::now();
    let mut l = Layer::new(Timers::default(), 1);
    let (key, req) = incoming_invite(&mut l, t0);
    let mut ok = Response::for_request(&req, 200, "");
    ok.set_to_tag("bh2");
    l.respond(t0, &key, ok);
    assert_eq!(sends(&mut l).len(), 1);
    l.on_timeout(t0 + Duration::from_millis(500));
    l.on_timeout(t0 + Duration::from_millis(1500));
    assert_eq!(sends(&mut l).len(), 2, "2xx retransmitted at T1, 2*T1");
    // A retransmitted INVITE also gets the 2xx.
    l.received(t0 + Duration::from_millis(1600), peer(), parse(INVITE));
    assert_eq!(sends(&mut l).len(), 1);
    // The ACK to a 2xx has a new branch and goes to the user.
    l.received(t0 + Duration::from_secs(2), peer(), parse(&ack("bh2", "z9hG4bK-ack-2")));
    assert!(matches!(events(&mut l).as_slice(), [Event::Ack { .. }]));
    l.on_timeout(t0 + Duration::from_secs(5));
    assert!(sends(&mut l).is_empty(), "no more retransmissions");
}

#[test]
fn missing_ack_for_2xx_is_reported() {
    let t0 = Instant::now();
    let mut l = Layer::new(Timers::default(), 1);
    let (key, req) = incoming_invite(&mut l, t0);
    l.respond(t0, &key, Response::for_request(&req, 200, ""));
    let mut t = t0;
    while let Some(next) = l.next_timeout() {
        if next > t0 + Duration::from_secs(40) {
            break;
        }
        t = next;
        l.on_timeout(t);
    }
    assert!(events(&mut l).iter().any(|e| matches!(e, Event::AckTimeout { key: k } if *k == key)));
    assert!(t >= t0 + Duration::from_secs(32));
}

#[test]
fn cancel_is_answered_and_reported_against_its_invite() {
    let t0 = Instant::now();
    let mut l = Layer::new(Timers::default(), 1);
    let (key, _) = incoming_invite(&mut l, t0);
    let cancel = INVITE.replacen("INVITE sip", "CANCEL sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    l.received(t0, peer(), parse(&cancel));
    assert!(sends(&mut l)[0].starts_with("SIP/2.0 200 "));
    assert_eq!(events(&mut l), [Event::Cancelled { invite: key }]);
    let stray = cancel.replace("z9hG4bK-inv-1", "z9hG4bK-other");
    l.received(t0, peer(), parse(&stray));
    assert!(sends(&mut l)[0].starts_with("SIP/2.0 481 "));
}

fn outgoing(l: &mut Layer, t0: Instant) -> (TxKey, String) {
    let req = match parse(&INVITE.replace("Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-inv-1\n", "")) {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    };
    let key = l.send_request(t0, peer(), "192.0.2.1:5060", req);
    let sent = sends(l).remove(0);
    assert!(sent.contains(&format!("Via: SIP/2.0/UDP 192.0.2.1:5060;branch={};rport\r\n", key.branch)), "{sent}");
    (key, sent)
}

fn response_to(sent: &str, status: &str, to_tag: &str) -> Message {
    let via = sent.lines().find(|l| l.starts_with("Via:")).unwrap();
    parse(&format!(
        "SIP/2.0 {status}
{via}
From: <sip:carrier@192.0.2.10>;tag=c1
To: <sip:+15550100001@192.0.2.1>;tag={to_tag}
Call-ID: call-1@192.0.2.10
CSeq: 1 INVITE
Content-Length: 0

"
    ))
}

#[test]
fn our_invite_gets_provisional_and_final_and_an_error_is_acked_by_the_layer() {
    let t0 = Instant::now();
    let mut l = Layer::new(Timers::default(), 7);
    let (key, sent) = outgoing(&mut l, t0);
    l.received(t0, peer(), response_to(&sent, "180 Ringing", "far"));
    l.received(t0, peer(), response_to(&sent, "486 Busy Here", "far"));
    let codes: Vec<u16> = events(&mut l)
        .into_iter()
        .map(|e| match e {
            Event::Response { key: k, response } if k == key => response.code,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(codes, [180, 486]);
    let ack = sends(&mut l).remove(0);
    assert!(ack.starts_with("ACK sip:+15550100001@192.0.2.1 SIP/2.0\r\n"), "{ack}");
    assert!(ack.contains(";tag=far") && ack.contains("CSeq: 1 ACK") && ack.contains(&key.branch), "{ack}");
}

#[test]
fn our_ack_to_a_2xx_is_repeated_when_the_2xx_is() {
    let t0 = Instant::now();
    let mut l = Layer::new(Timers::default(), 7);
    let (_, sent) = outgoing(&mut l, t0);
    l.received(t0, peer(), response_to(&sent, "200 OK", "far"));
    assert_eq!(events(&mut l).len(), 1);
    let ack = ack("far", "unused").lines().filter(|l| !l.starts_with("Via:")).collect::<Vec<_>>().join("\n");
    let Message::Request(ack) = parse(&(ack + "\n")) else { unreachable!() };
    l.send_ack_2xx(t0, peer(), "192.0.2.1:5060", ack);
    assert_eq!(sends(&mut l).len(), 1);
    l.received(t0 + Duration::from_millis(600), peer(), response_to(&sent, "200 OK", "far"));
    assert!(sends(&mut l)[0].starts_with("ACK "), "the 2xx again: the same ACK");
    assert!(events(&mut l).is_empty());
}

#[test]
fn unanswered_request_times_out() {
    let t0 = Instant::now();
    let mut l = Layer::new(Timers::default(), 7);
    let (key, _) = outgoing(&mut l, t0);
    l.on_timeout(t0 + Duration::from_secs(32));
    assert_eq!(events(&mut l), [Event::Timeout { key }]);
    assert_eq!(l.transactions(), (0, 0));
}

#[test]
fn rfc2543_requests_without_a_branch_still_form_transactions() {
    let t0 = Instant::now();
    let mut l = Layer::new(Timers::default(), 1);
    let old = INVITE.replace(";branch=z9hG4bK-inv-1", "");
    l.received(t0, peer(), parse(&old));
    let Some(Event::Request { key, request, .. }) = l.poll_event() else { panic!("no request event") };
    assert!(key.branch.starts_with("2543|call-1@192.0.2.10|1|c1|"), "{key:?}");
    l.respond(t0, &key, Response::for_request(&request, 486, ""));
    assert_eq!(sends(&mut l).len(), 1);
    // Its retransmission is recognised.
    l.received(t0, peer(), parse(&old));
    assert!(events(&mut l).is_empty());
    assert_eq!(sends(&mut l).len(), 1);
}

#[test]
fn cancel_of_our_invite_reuses_its_branch_and_is_its_own_transaction() {
    let t0 = Instant::now();
    let mut l = Layer::new(Timers::default(), 7);
    let (invite, sent) = outgoing(&mut l, t0);
    l.received(t0, peer(), response_to(&sent, "180 Ringing", "far"));
    events(&mut l);
    let cancel_key = l.send_cancel(t0, &invite).expect("INVITE still pending");
    let cancel = sends(&mut l).remove(0);
    assert!(cancel.starts_with("CANCEL sip:+15550100001@192.0.2.1 SIP/2.0\r\n"), "{cancel}");
    assert!(cancel.contains(&format!("branch={}", invite.branch)) && cancel.contains("CSeq: 1 CANCEL"), "{cancel}");
    assert!(!cancel.contains(";tag=far"), "the To of the INVITE, without the response's tag: {cancel}");
    // The 200 to the CANCEL goes to the CANCEL, the 487 to the INVITE (which the layer ACKs).
    let via = cancel.lines().find(|l| l.starts_with("Via:")).unwrap();
    let ok = format!(
        "SIP/2.0 200 OK\n{via}\nFrom: <sip:carrier@192.0.2.10>;tag=c1\nTo: <sip:+15550100001@192.0.2.1>;tag=far\n\
         Call-ID: call-1@192.0.2.10\nCSeq: 1 CANCEL\nContent-Length: 0\n\n"
    );
    l.received(t0, peer(), parse(&ok));
    l.received(t0, peer(), response_to(&sent, "487 Request Terminated", "far"));
    let got: Vec<(Method, u16)> = events(&mut l)
        .into_iter()
        .filter_map(|e| match e {
            Event::Response { key, response } => Some((key.method, response.code)),
            _ => None,
        })
        .collect();
    assert_eq!(got, [(Method::Cancel, 200), (Method::Invite, 487)]);
    assert_eq!(cancel_key.method, Method::Cancel);
    assert!(sends(&mut l).iter().any(|s| s.starts_with("ACK ")), "the 487 is acknowledged");
    // Nothing left to cancel once the INVITE's transaction is over.
    l.on_timeout(t0 + Duration::from_secs(40));
    assert!(l.send_cancel(t0 + Duration::from_secs(40), &invite).is_none());
}

#[test]
fn a_failed_connection_ends_its_requests_as_503_at_once() {
    let t0 = Instant::now();
    let mut l = Layer::new(Timers::default(), 1);
    let (key, _) = outgoing(&mut l, t0);
    l.transport_failed(Transport::Tcp, peer().addr);
    assert!(events(&mut l).is_empty(), "another transport's failure is not this one's");
    l.transport_failed(peer().transport, peer().addr);
    match &events(&mut l)[..] {
        [Event::Response { key: k, response }] => {
            assert_eq!((k, response.code), (&key, 503));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(l.transactions().0, 0);
    assert!(sends(&mut l).is_empty(), "nothing is sent over the failed transport");
}
