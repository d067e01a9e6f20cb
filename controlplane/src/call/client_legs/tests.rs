//! The adapter between the B2BUA core and client devices, driven directly:
//! what a `<Client>` fork and a client's own call look like from both sides.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc::{Receiver, UnboundedReceiver};

use super::*;
use crate::client::{ClientEvent, ToDevice};
use crate::instructions::method::Method as HttpMethod;
use crate::instructions::twiml::StatusCallback;
use crate::routes::{DeviceRoute, InProcessRoutes, RouteStore};
use crate::store::SqliteStore;

const ACCOUNT: &str = "AC00000000000000000000000000000001";
const CHILD: &str = "CA00000000000000000000000000000002";
const CALL: u64 = 7;

struct Rig {
    legs: ClientLegs,
    _calls: UnboundedReceiver<ClientEvent>,
    dir: std::path::PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn account() -> AccountSid {
    AccountSid::parse(ACCOUNT).unwrap()
}

fn rig() -> Rig {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("bh-client-legs-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join("db")).unwrap());
    let routes: Arc<dyn RouteStore> = Arc::new(InProcessRoutes::new("bh", 100));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let hub = ClientHub::new(store, routes, tx, 100, "bh".into());
    Rig { legs: ClientLegs::new(hub), _calls: rx, dir }
}

impl Rig {
    /// A connected, registered device of `identity`.
    fn device(&self, identity: &str, incoming: bool) -> (DeviceId, Receiver<ToDevice>) {
        let (device, rx) = self.legs.hub.attach().unwrap();
        let route = DeviceRoute {
            device,
            account: account(),
            identity: identity.into(),
            status: PresenceStatus::Available,
            incoming,
            appliance: "bh".into(),
            registered_at: SystemTime::now(),
        };
        self.legs.hub.routes.register(route).unwrap();
        (device, rx)
    }
}

/// The frames a device got so far.
fn frames(rx: &mut Receiver<ToDevice>) -> Vec<ServerMessage> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .filter_map(|t| match t {
            ToDevice::Frame(f) => Some(*f),
            ToDevice::Revoked(_) => None,
        })
        .collect()
}

/// The INVITE the B2BUA sends for `<Client>identity</Client>`.
fn fork_invite(identity: &str) -> (TxKey, Request) {
    let (uri, _) = client_target(identity);
    let mut headers = Headers::new();
    headers.push(Header::new(HeaderName::From, "<sip:+15550100002@192.0.2.1>;tag=f0"));
    headers.push(Header::new(HeaderName::To, format!("<{uri}>")));
    headers.push(Header::new(HeaderName::CallId, "fork-1@bridgehead"));
    headers.push(Header::new(HeaderName::CSeq, "1 INVITE"));
    headers.push(Header::new(HeaderName::ContentType, "application/sdp"));
    let noun = ClientNoun {
        identity: identity.into(),
        parameters: vec![("ticket".into(), "42 & more".into())],
        url: None,
        method: HttpMethod::Post,
        status_callback: StatusCallback::default(),
    };
    describe_fork(&mut headers, &noun, CHILD, "+15550100002");
    let request = Request { method: Method::Invite, uri: Bytes::from(uri), headers, body: Bytes::from("v=0 ours") };
    (new_key(Method::Invite), request)
}

fn codes(events: &Events) -> Vec<u16> {
    events
        .iter()
        .filter_map(|(call, e)| {
            assert_eq!(*call, CALL);
            match e {
                Event::Response { response, .. } => Some(response.code),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn nobody_present_is_480_at_once() {
    let mut r = rig();
    let (_, _no_incoming) = r.device("alice", false);
    let (key, invite) = fork_invite("alice");
    assert_eq!(codes(&r.legs.request(CALL, key, invite, &account())), [480]);
    let (key, invite) = fork_invite("nobody");
    assert_eq!(codes(&r.legs.request(CALL, key, invite, &account())), [480]);
}

#[test]
fn every_device_rings_and_the_first_answer_wins() {
    let mut r = rig();
    let (d1, mut rx1) = r.device("alice", true);
    let (d2, mut rx2) = r.device("alice", true);
    let (key, invite) = fork_invite("alice");
    assert_eq!(codes(&r.legs.request(CALL, key.clone(), invite, &account())), [180]);
    for rx in [&mut rx1, &mut rx2] {
        let got = frames(rx);
        let [ServerMessage::Invite { callsid, sdp, parameters, .. }] = &got[..] else { panic!("{got:?}") };
        assert_eq!((callsid.as_str(), sdp.as_str()), (CHILD, "v=0 ours"));
        assert_eq!(parameters.params, "ticket=42+%26+more");
        assert_eq!(parameters.to, "client:alice");
    }
    let events = r.legs.answer(d2, CHILD, "v=0 theirs");
    let [(_, Event::Response { key: k, response })] = &events[..] else { panic!("{events:?}") };
    assert_eq!((k, response.code, &response.body[..]), (&key, 200, &b"v=0 theirs"[..]));
    assert_eq!(frames(&mut rx1), [ServerMessage::Cancel { callsid: CHILD.into() }]);
    // A late answer from the cancelled device changes nothing.
    assert!(r.legs.answer(d1, CHILD, "v=0 late").is_empty());
    assert_eq!(
        r.legs.hub.routes.devices(&account(), "alice").iter().find(|d| d.device == d2).unwrap().status,
        PresenceStatus::Busy
    );
}

#[test]
fn a_reject_stops_one_device_all_rejects_are_busy() {
    let mut r = rig();
    let (d1, _rx1) = r.device("alice", true);
    let (d2, _rx2) = r.device("alice", true);
    let (key, invite) = fork_invite("alice");
    r.legs.request(CALL, key, invite, &account());
    assert!(r.legs.reject(d1, CHILD).is_empty(), "the other device still rings");
    assert_eq!(codes(&r.legs.reject(d2, CHILD)), [486]);
}

#[test]
fn cancel_reaches_ringing_devices() {
    let mut r = rig();
    let (_, mut rx) = r.device("alice", true);
    let (key, invite) = fork_invite("alice");
    r.legs.request(CALL, key.clone(), invite, &account());
    frames(&mut rx);
    let events = r.legs.cancel(&key, TxKey { branch: key.branch.clone(), method: Method::Cancel });
    assert_eq!(codes(&events), [200, 487]);
    assert_eq!(frames(&mut rx), [ServerMessage::Cancel { callsid: CHILD.into() }]);
    assert!(!r.legs.owns_invite(&key));
}

#[test]
fn hangups_both_ways_after_the_answer() {
    let mut r = rig();
    let (d, mut rx) = r.device("alice", true);
    let (key, invite) = fork_invite("alice");
    r.legs.request(CALL, key, invite.clone(), &account());
    r.legs.answer(d, CHILD, "v=0 theirs");
    frames(&mut rx);
    // The device hangs up: a BYE in the fork's dialog.
    let events = r.legs.hangup(d, CHILD);
    let [(_, Event::Request { request, .. })] = &events[..] else { panic!("{events:?}") };
    assert_eq!(request.method, Method::Bye);
    assert_eq!(request.headers.call_id().unwrap(), "fork-1@bridgehead");

    // Again, with the call hanging up: `hangup` to the device.
    let (key, invite) = fork_invite("alice");
    r.legs.request(CALL, key, invite.clone(), &account());
    r.legs.answer(d, CHILD, "v=0 theirs");
    frames(&mut rx);
    let mut bye = invite;
    bye.method = Method::Bye;
    let events = r.legs.request(CALL, new_key(Method::Bye), bye, &account());
    assert_eq!(codes(&events), [200]);
    assert_eq!(frames(&mut rx), [ServerMessage::Hangup { callsid: CHILD.into(), error: None }]);
}

#[test]
fn a_dropped_device_is_parked_and_only_its_identity_takes_the_call_back() {
    let mut r = rig();
    let (d, mut rx) = r.device("alice", true);
    let (key, invite) = fork_invite("alice");
    r.legs.request(CALL, key, invite, &account());
    let reconnect = match &frames(&mut rx)[..] {
        [ServerMessage::Invite { reconnect, .. }] => reconnect.clone(),
        other => panic!("{other:?}"),
    };
    r.legs.answer(d, CHILD, "v=0 theirs");
    let (events, parked) = r.legs.gone(d);
    assert!(events.is_empty());
    assert_eq!(parked, [CHILD]);
    let (mallory, _) = r.device("mallory", true);
    assert!(!r.legs.reconnect(mallory, &account(), "mallory", &reconnect));
    let (back, mut back_rx) = r.device("alice", true);
    assert!(r.legs.reconnect(back, &account(), "alice", &reconnect));
    assert!(matches!(&frames(&mut back_rx)[..], [ServerMessage::Answer { callsid, .. }] if callsid == CHILD));
    assert!(r.legs.reconnect_expired(CHILD).is_empty(), "it came back: the call goes on");
    // Dropped again and not back: the expiry ends it as a BYE from alice.
    r.legs.gone(back);
    let events = r.legs.reconnect_expired(CHILD);
    assert!(matches!(&events[..], [(_, Event::Request { request, .. })] if request.method == Method::Bye));
}

#[test]
fn a_clients_own_call_in_both_directions() {
    let mut r = rig();
    let (d, mut rx) = r.device("bob", true);
    let sid = "CA00000000000000000000000000000003";
    let (key, _, invite) = r.legs.place(CALL, d, &account(), "bob", "TJS-1", sid, "v=0 bob", "+15550100003");
    assert_eq!(&invite.body[..], b"v=0 bob");
    assert!(r.legs.owns_server_key(&key));
    // A failure before ringing names the client's own id.
    r.legs.respond(&key, Response::for_request(&invite, 486, ""));
    let got = frames(&mut rx);
    assert!(
        matches!(&got[..], [ServerMessage::Hangup { callsid, error: Some((31486, _)) }] if callsid == "TJS-1"),
        "{got:?}"
    );

    let (key, _, invite) = r.legs.place(CALL, d, &account(), "bob", "TJS-2", sid, "v=0 bob", "alice");
    r.legs.respond(&key, Response::for_request(&invite, 180, ""));
    let mut ok = Response::for_request(&invite, 200, "");
    ok.set_to_tag("b2bua");
    ok.body = Bytes::from("v=0 ours");
    r.legs.respond(&key, ok);
    let got = frames(&mut rx);
    assert!(matches!(&got[0], ServerMessage::Ringing { callsid, .. } if callsid == sid), "{got:?}");
    assert!(matches!(&got[1], ServerMessage::Answer { callsid, sdp, .. } if callsid == sid && sdp == "v=0 ours"));
    // The client hangs up by either id: a BYE toward the call with our tag.
    let events = r.legs.hangup(d, "TJS-2");
    let [(_, Event::Request { request, .. })] = &events[..] else { panic!("{events:?}") };
    assert_eq!(request.method, Method::Bye);
    assert!(request.headers.to_addr().unwrap().tag() == Some("b2bua"), "{request:?}");
}

#[test]
fn a_clients_hangup_before_the_answer_cancels() {
    let mut r = rig();
    let (d, _rx) = r.device("bob", true);
    let sid = "CA00000000000000000000000000000004";
    let (key, _, _) = r.legs.place(CALL, d, &account(), "bob", "TJS-3", sid, "v=0", "alice");
    let events = r.legs.hangup(d, "TJS-3");
    assert!(matches!(&events[..], [(CALL, Event::Cancelled { invite })] if *invite == key), "{events:?}");
}

#[test]
fn a_client_that_does_not_read_is_cut_off() {
    let r = rig();
    let (device, mut rx) = r.device("alice", true);
    let frame = || ServerMessage::Ready;
    for _ in 0..crate::client::DEVICE_QUEUE {
        assert!(r.legs.hub.send(device, frame()));
    }
    assert!(!r.legs.hub.send(device, frame()), "the queue is full: cut off");
    assert!(!r.legs.hub.send(device, frame()), "and stays cut off");
    assert_eq!(r.legs.hub.stats.overflowed.load(std::sync::atomic::Ordering::Relaxed), 1);
    // Its task gets what was queued, then the end of the channel (and closes).
    assert_eq!(frames(&mut rx).len(), crate::client::DEVICE_QUEUE);
    assert!(rx.try_recv().is_err());
    assert!(rx.is_closed());
}
