//! Clients end to end: Voice SDK clients (a Rust client framing every
//! message as `@twilio/voice-sdk`'s pstream.ts does, with a plain RTP
//! endpoint) over WSS `/signal`, tokens minted by Twilio's Python library,
//! calls to and from them steered by the customer app's TwiML.
//!
//! ```text
//!  carrier 192.0.2.10  sipp uac_call.xml, RTP   ─┐
//!  callee  192.0.2.11  sipp uas_callee.xml, RTP  ├─ br0 ─ app namespace: bridgehead
//!  phones  192.0.2.12  VoiceClients + RTP        ─┘        (SIP :5060, media 192.0.2.1,
//!                                                           WSS + REST 192.0.2.1:8443)
//!                                                           customer_app.py on 127.0.0.1
//! ```
//!
//! Needs root, sipp and python3 with `twilio` (scripts/test.sh provides
//! them); fails rather than skips without them.

use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use test_harness::appliance::{Appliance, ApplianceConfig};
use test_harness::call_checks::{self, record, Side};
use test_harness::customer_app::{AppRequest, CustomerApp, Route};
use test_harness::rtp::RtpEndpoint;
use test_harness::settle;
use test_harness::sip_ws_client::{body, header, SipWsClient};
use test_harness::sipp::{Sipp, SippRun, Transport};
use test_harness::topology::{MediaLan, Peer, MEDIA_IP};
use test_harness::twilio_py::{self, RestClient};
use test_harness::voice_client::{plain_rtp_sdp, sdp_media_addr, temp_call_sid, ConnectOptions, VoiceClient};

const ACCOUNT: &str = "AC0000000000000000000000000000c11e";
const TOKEN: &str = "clients-e2e-auth-token";
const KEY: &str = "SK0000000000000000000000000000c11e";
const SECRET: &str = "clients-e2e-key-secret-0123456789";
/// A second key of the account, deleted by one test.
const KEY_REVOKED: &str = "SK000000000000000000000000000dead1";
const SECRET_REVOKED: &str = "clients-e2e-revoked-secret-012345";
/// Another account, with its own key: it must never see ours.
const OTHER_ACCOUNT: &str = "AC000000000000000000000000000000ff";
const OTHER_TOKEN: &str = "clients-e2e-other-auth-token";
const OTHER_KEY: &str = "SK000000000000000000000000000000ff";
const OTHER_SECRET: &str = "clients-e2e-other-secret-01234567";

/// The number the carrier calls: voice URL `/voice`, status callback `/status`.
const APP_NUMBER: &str = "AP0000000000000000000000000000c101";
/// The application of the clients' outgoing grant: voice URL `/client-voice`.
const APP_CLIENT: &str = "AP0000000000000000000000000000c102";
const NUMBER: &str = "+15550100001";
const CALLER: &str = "+15550100002";
/// A number behind the trunk, answered by uas_callee.xml.
const CALLEE: &str = "+15550100003";

const SIP_UDP: SocketAddr = SocketAddr::new(IpAddr::V4(MEDIA_IP), 5060);
const HTTPS: SocketAddr = SocketAddr::new(IpAddr::V4(MEDIA_IP), 8443);
const CARRIER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const CALLEE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const CARRIER_SIP_PORT: u16 = 5070;
const CALLEE_SIP_PORT: u16 = 5080;

/// A signaling step must come within this.
const SIGNAL: Duration = Duration::from_secs(15);
const SIPP_END: Duration = Duration::from_secs(30);
const AFTERMATH: Duration = Duration::from_secs(15);
const PACKETS: usize = 40;

fn accounts(app: &CustomerApp) -> String {
    format!(
        r#"
[[accounts]]
sid = "{ACCOUNT}"
auth_token = "{TOKEN}"
[[accounts.api_keys]]
sid = "{KEY}"
secret = "{SECRET}"
[[accounts.api_keys]]
sid = "{KEY_REVOKED}"
secret = "{SECRET_REVOKED}"
[[accounts.applications]]
sid = "{APP_NUMBER}"
voice_url = "{voice}"
status_callback = "{status}"
[[accounts.applications]]
sid = "{APP_CLIENT}"
voice_url = "{client_voice}"
status_callback = "{client_status}"
[[accounts.numbers]]
number = "{NUMBER}"
application = "{APP_NUMBER}"
[[accounts.trunks]]
name = "carrier"
allow = ["{CARRIER_IP}/32"]
outbound = "sip:{CALLEE_IP}:{CALLEE_SIP_PORT}"

[[accounts]]
sid = "{OTHER_ACCOUNT}"
auth_token = "{OTHER_TOKEN}"
[[accounts.api_keys]]
sid = "{OTHER_KEY}"
secret = "{OTHER_SECRET}"
"#,
        voice = app.url("/voice"),
        status = app.url("/status"),
        client_voice = app.url("/client-voice"),
        client_status = app.url("/client-status"),
    )
}

/// What a token should carry (Twilio's `AccessToken` + `VoiceGrant`).
#[derive(Clone)]
struct Grant {
    identity: &'static str,
    incoming: bool,
    outgoing: bool,
    ttl: u64,
    params: Option<Value>,
}

impl Grant {
    fn both(identity: &'static str) -> Grant {
        Grant { identity, incoming: true, outgoing: true, ttl: 3600, params: None }
    }

    fn case(&self) -> Value {
        let mut case = json!({
            "account": ACCOUNT, "key": KEY, "secret": SECRET,
            "identity": self.identity, "ttl": self.ttl,
        });
        if self.incoming {
            case["incoming"] = json!(true);
        }
        if self.outgoing {
            case["app"] = json!(APP_CLIENT);
        }
        if let Some(p) = &self.params {
            case["params"] = p.clone();
        }
        case
    }
}

fn mint(grant: &Grant) -> String {
    twilio_py::mint(&[grant.case()]).expect("minting with Twilio's library").remove(0)
}

struct Rig {
    app: Appliance,
    customer: CustomerApp,
    carrier: Peer,
    callee: Peer,
    phones: Peer,
    lan: MediaLan,
}

/// A client device: its signaling connection and its RTP endpoint.
struct Device {
    ws: VoiceClient,
    rtp: RtpEndpoint,
}

impl Rig {
    fn new() -> Rig {
        let mut lan = MediaLan::new().expect("media LAN (the end-to-end tests need root)");
        let carrier = lan.add_peer("carrier").expect("carrier");
        let callee = lan.add_peer("callee").expect("callee");
        let phones = lan.add_peer("phones").expect("phones");
        assert_eq!((carrier.ip, callee.ip), (CARRIER_IP, CALLEE_IP), "the trunk's addresses");
        let customer = CustomerApp::start_in(Some(&lan.app), IpAddr::V4(Ipv4Addr::LOCALHOST), TOKEN)
            .expect("customer app (python3 with the twilio package)");
        let mut config = ApplianceConfig::sockets(lan.media_ip());
        config.https = Some(HTTPS);
        config.extra = accounts(&customer);
        let app = Appliance::start(config, Some(&lan.app)).expect("appliance");
        Rig { app, customer, carrier, callee, phones, lan }
    }

    fn twiml(&self, path: &str, body: &str) {
        self.customer.set_route(&Route::twiml(path, body)).unwrap();
    }

    fn accept_callbacks(&self, paths: &[&str]) {
        for path in paths {
            self.customer.route(path, 204, "", Duration::ZERO).unwrap();
        }
    }

    fn exactly_requests(&self, path: &str, count: usize) -> Vec<AppRequest> {
        let found = self.customer.wait_requests(path, count, AFTERMATH).unwrap();
        assert_eq!(found.len(), count, "requests on {path}: {found:#?}\n{}", self.context());
        found
    }

    // ------------------------------------------------------------ clients

    /// A WSS connection from the phones' namespace, not yet listening.
    fn connect(&self) -> VoiceClient {
        let options = ConnectOptions { ca_pem: Some(self.app.state_dir().join("tls/cert.pem")), ..Default::default() };
        let url = format!("wss://{HTTPS}/signal");
        self.phones
            .ns
            .run_in(|| VoiceClient::connect_with(&url, &options))
            .unwrap()
            .unwrap_or_else(|e| panic!("connecting to /signal: {e:#}\n{}", self.context()))
    }

    /// Connects and listens with `token`; returns the `connected` payload.
    fn listening(&self, token: &str) -> (VoiceClient, Value) {
        let mut ws = self.connect();
        ws.listen(token).unwrap();
        let connected =
            ws.expect("connected", SIGNAL).unwrap_or_else(|e| panic!("connected: {e:#}\n{}", self.context()));
        (ws, connected)
    }

    /// A registered device of `grant`'s identity.
    fn device(&self, grant: &Grant) -> Device {
        let (mut ws, connected) = self.listening(&mint(grant));
        assert_eq!(connected["token"]["identity"], grant.identity, "{connected:#}");
        ws.register().unwrap();
        ws.expect("ready", SIGNAL).unwrap_or_else(|e| panic!("ready: {e:#}\n{}", self.context()));
        Device { ws, rtp: self.phones.endpoint().unwrap() }
    }

    // ------------------------------------------------------------ sipp

    fn carrier_call(&self, rtp: &RtpEndpoint) -> SippRun {
        Sipp::new("uac_call.xml", SocketAddr::new(IpAddr::V4(self.carrier.ip), CARRIER_SIP_PORT))
            .remote(SIP_UDP)
            .transport(Transport::Udp)
            .service(NUMBER)
            .key("caller", CALLER)
            .key("target", SIP_UDP)
            .key("rtp_ip", rtp.local_addr().ip())
            .key("rtp_port", rtp.local_addr().port())
            .key("tr", "UDP")
            .key("tr_param", "udp")
            .set("media_ip", MEDIA_IP)
            .start_in(&self.carrier.ns)
            .unwrap_or_else(|e| panic!("starting the carrier's sipp: {e:#}\n{}", self.context()))
    }

    fn callee(&self, rtp: &RtpEndpoint) -> SippRun {
        Sipp::new("uas_callee.xml", SocketAddr::new(IpAddr::V4(self.callee.ip), CALLEE_SIP_PORT))
            .transport(Transport::Udp)
            .calls(1)
            .key("rtp_ip", rtp.local_addr().ip())
            .key("rtp_port", rtp.local_addr().port())
            .key("tr", "UDP")
            .key("tr_param", "udp")
            .set("media_ip", MEDIA_IP)
            .start_in(&self.callee.ns)
            .unwrap_or_else(|e| panic!("starting the callee's sipp: {e:#}\n{}", self.context()))
    }

    // ------------------------------------------------------------ media, REST

    /// PACKETS G.711 packets each way between `a` and `b`, each sending to
    /// the appliance's address it was given; checks payloads at both ends.
    fn media_flows(&self, what: &str, a: Side<'_>, b: Side<'_>) {
        assert_eq!(a.1.ip(), IpAddr::V4(MEDIA_IP), "{what}: the appliance's address toward a");
        assert_eq!(b.1.ip(), IpAddr::V4(MEDIA_IP), "{what}: the appliance's address toward b");
        call_checks::media_flows(what, a, b, PACKETS, || self.context());
    }

    fn no_media_left(&self) {
        let list = settle(AFTERMATH, || self.app.admin.sessions(), |l| l.count == 0).unwrap();
        assert_eq!(list.count, 0, "media sessions left after the call: {list:#?}\n{}", self.context());
    }

    fn rest_as(&self, account: &str, token: &str, op: &str, args: Value) -> Value {
        let cafile = self.app.state_dir().join("tls/cert.pem");
        let client = RestClient {
            netns: Some(&self.lan.app),
            base: format!("https://{HTTPS}"),
            account: account.into(),
            token: token.into(),
            cafile: &cafile,
        };
        client.run(op, &args).unwrap_or_else(|e| panic!("{e:#}\n{}", self.context()))
    }

    fn rest(&self, op: &str, args: Value) -> Value {
        self.rest_as(ACCOUNT, TOKEN, op, args)
    }

    /// The call records, once `count` of them are final.
    fn final_calls(&self, count: usize) -> Vec<Value> {
        call_checks::final_calls(AFTERMATH, count, || Ok(self.rest("calls", json!({}))), || self.context())
    }

    fn context(&self) -> String {
        call_checks::context(&self.app, &self.customer, &["client", "call", "webhook"])
    }
}

fn param<'a>(r: &'a AppRequest, name: &str) -> &'a str {
    r.param(name).unwrap_or_else(|| panic!("no {name} in {r:#?}"))
}

/// The address an SDP in a frame's payload gives.
fn media_of(payload: &Value) -> SocketAddr {
    let sdp = payload["sdp"].as_str().unwrap_or_else(|| panic!("no sdp in {payload:#}"));
    sdp_media_addr(sdp).unwrap_or_else(|e| panic!("{e:#}: {sdp}"))
}

// ---------------------------------------------------------------- calls

/// A carrier call to a number whose app dials `<Client>alice`: both of
/// alice's devices ring with the SDK's invite, the second answers, the
/// first gets `cancel`; media flows through the dataplane both ways; the
/// carrier hangs up and the answering device gets `hangup`.
#[test]
fn carrier_call_rings_every_device_and_the_first_answer_wins() {
    let rig = Rig::new();
    rig.twiml(
        "/voice",
        r#"<Response><Dial><Client statusCallback="/child-status" statusCallbackEvent="initiated ringing answered completed"><Identity>alice</Identity><Parameter name="ticket" value="42 &amp; more"/></Client></Dial></Response>"#,
    );
    rig.accept_callbacks(&["/status", "/child-status"]);
    let alice = Grant { outgoing: false, ..Grant::both("alice") };
    let mut one = rig.device(&alice);
    let mut two = rig.device(&alice);

    let carrier_rtp = rig.carrier.endpoint().unwrap();
    let mut caller = rig.carrier_call(&carrier_rtp);

    let invite_one = one.ws.expect("invite", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    let invite_two = two.ws.expect("invite", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    let child_sid = invite_one["callsid"].as_str().unwrap().to_owned();
    assert!(child_sid.starts_with("CA") && child_sid.len() == 34, "{invite_one:#}");
    assert_eq!(invite_two["callsid"], invite_one["callsid"], "one child call rings every device");
    let parameters = &invite_one["parameters"];
    assert_eq!(parameters["CallSid"], child_sid.as_str(), "{invite_one:#}");
    assert_eq!(parameters["AccountSid"], ACCOUNT, "{invite_one:#}");
    assert_eq!(parameters["From"], CALLER, "{invite_one:#}");
    assert_eq!(parameters["To"], "client:alice", "{invite_one:#}");
    assert_eq!(parameters["Params"], "ticket=42+%26+more", "custom parameters, URL-encoded: {invite_one:#}");
    let toward_alice = media_of(&invite_one);

    // The caller hears ringing before anyone answers.
    two.ws.answer(&plain_rtp_sdp(two.rtp.local_addr()), &child_sid).unwrap();
    let cancel = one.ws.expect("cancel", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    assert_eq!(cancel["callsid"], child_sid.as_str());

    let answer = caller
        .wait_log(SIGNAL, |l| l.event == "sdp" && l.get("event") == Some("200"))
        .unwrap_or_else(|e| panic!("the carrier's 200: {e:#}\n{}", rig.context()));
    let toward_carrier = answer.media().unwrap();
    let call_id = answer.get("call_id").unwrap().to_owned();
    rig.media_flows("carrier <-> alice", (&carrier_rtp, toward_carrier), (&two.rtp, toward_alice));

    caller.poke(&call_id, &[("X-Poke", "hangup")]).unwrap();
    let hangup = two.ws.expect("hangup", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    assert_eq!(hangup["callsid"], child_sid.as_str());
    let outcome = caller.wait(SIPP_END).unwrap();
    assert!(outcome.success(), "{}\n{}", outcome.report, rig.context());
    rig.no_media_left();

    let voice = rig.exactly_requests("/voice", 1).remove(0);
    assert!(voice.signature_valid, "{voice:#?}");
    let sid = param(&voice, "CallSid").to_owned();
    let calls = rig.final_calls(2);
    let parent = record(&calls, "sid", &sid);
    assert_eq!(parent["status"], "completed", "{parent:#}");
    let child = record(&calls, "sid", &child_sid);
    assert_eq!(child["parent_call_sid"], sid.as_str(), "{child:#}");
    assert_eq!(child["to"], "client:alice", "{child:#}");
    assert_eq!(child["status"], "completed", "{child:#}");
    assert_eq!(child["direction"], "outbound-dial", "{child:#}");
    // Callbacks travel independently, as Twilio's do: SequenceNumber orders them.
    let mut callbacks = rig.exactly_requests("/child-status", 4);
    callbacks.sort_by_key(|r| param(r, "SequenceNumber").parse::<u32>().unwrap_or(u32::MAX));
    let events: Vec<String> = callbacks
        .iter()
        .map(|r| {
            assert!(r.signature_valid, "{r:#?}");
            assert_eq!(param(r, "To"), "client:alice");
            param(r, "CallStatus").to_owned()
        })
        .collect();
    assert_eq!(events, ["initiated", "ringing", "in-progress", "completed"]);
}

/// A client places a call with custom parameters: the outgoing grant's
/// application gets them (with the token's params), signed; its
/// `<Dial><Number>` goes out through the trunk; the client hangs up.
#[test]
fn client_calls_a_number_with_custom_parameters() {
    let rig = Rig::new();
    rig.twiml(
        "/client-voice",
        &format!(r#"<Response><Dial callerId="{CALLER}"><Number>{CALLEE}</Number></Dial></Response>"#),
    );
    rig.accept_callbacks(&["/client-status"]);
    let grant = Grant { params: Some(json!({"plan": "gold"})), ..Grant::both("alice") };
    let mut alice = rig.device(&grant);
    let callee_rtp = rig.callee.endpoint().unwrap();
    let mut callee = rig.callee(&callee_rtp);

    let temp = temp_call_sid();
    alice.ws.invite(&plain_rtp_sdp(alice.rtp.local_addr()), &temp, &[("To", CALLEE), ("note", "a b&c")]).unwrap();
    let invite = callee
        .wait_log(SIGNAL, |l| l.event == "sdp" && l.get("event") == Some("invite"))
        .unwrap_or_else(|e| panic!("the callee's INVITE: {e:#}\n{}", rig.context()));
    assert_eq!(invite.get("dialed"), Some(CALLEE));
    assert_eq!(invite.get("from"), Some(CALLER), "the callerId: {invite:?}");
    // Without answerOnBridge the caller is answered before the dial, as on Twilio.
    let answer = alice.ws.expect("answer", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    let sid = answer["callsid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("CA") && sid.len() == 34, "{answer:#}");
    assert!(answer["reconnect"].as_str().is_some_and(|r| !r.is_empty()), "a reconnect token: {answer:#}");
    rig.media_flows("alice <-> callee", (&alice.rtp, media_of(&answer)), (&callee_rtp, invite.media().unwrap()));

    alice.ws.hangup(&sid).unwrap();
    callee
        .wait_log(SIGNAL, |l| l.event == "bye" && l.get("event") == Some("received"))
        .unwrap_or_else(|e| panic!("the callee's BYE: {e:#}\n{}", rig.context()));
    let outcome = callee.wait(SIPP_END).unwrap();
    assert!(outcome.success(), "{}", outcome.report);
    rig.no_media_left();

    let voice = rig.exactly_requests("/client-voice", 1).remove(0);
    assert!(voice.signature_valid, "Twilio's RequestValidator: {voice:#?}");
    assert_eq!(param(&voice, "CallSid"), sid);
    assert_eq!(param(&voice, "From"), "client:alice");
    assert_eq!(param(&voice, "Caller"), "client:alice");
    assert_eq!(param(&voice, "To"), CALLEE);
    assert_eq!(param(&voice, "Direction"), "inbound");
    assert_eq!(param(&voice, "ApplicationSid"), APP_CLIENT);
    assert_eq!(param(&voice, "AccountSid"), ACCOUNT);
    assert_eq!(param(&voice, "note"), "a b&c", "the invite's custom parameter");
    assert_eq!(param(&voice, "plan"), "gold", "the token's outgoing param");

    let calls = rig.final_calls(2);
    let parent = record(&calls, "sid", &sid);
    assert_eq!((parent["from"].as_str(), parent["status"].as_str()), (Some("client:alice"), Some("completed")));
    let child = record(&calls, "parent_call_sid", &sid);
    assert_eq!(child["to"], CALLEE, "{child:#}");
    assert_eq!(child["status"], "completed", "{child:#}");
}

/// Client to client: bob calls alice through `<Dial><Client>`; alice
/// answers; media flows; alice hangs up, bob gets `hangup`.
#[test]
fn client_calls_client() {
    let rig = Rig::new();
    rig.twiml("/client-voice", r#"<Response><Dial><Client>alice</Client></Dial></Response>"#);
    rig.accept_callbacks(&["/client-status"]);
    let mut alice = rig.device(&Grant::both("alice"));
    let mut bob = rig.device(&Grant::both("bob"));

    bob.ws.invite(&plain_rtp_sdp(bob.rtp.local_addr()), &temp_call_sid(), &[("To", "alice")]).unwrap();
    let invite = alice.ws.expect("invite", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    assert_eq!(invite["parameters"]["From"], "client:bob", "{invite:#}");
    let child_sid = invite["callsid"].as_str().unwrap().to_owned();
    alice.ws.answer(&plain_rtp_sdp(alice.rtp.local_addr()), &child_sid).unwrap();
    let answer = bob.ws.expect("answer", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    let sid = answer["callsid"].as_str().unwrap().to_owned();
    rig.media_flows("bob <-> alice", (&bob.rtp, media_of(&answer)), (&alice.rtp, media_of(&invite)));

    // The caller's media moves (the SDK's ICE restart; here a new RTP
    // address): its `reinvite` is answered with our description, the other
    // client's leg keeps its own, and media flows to the new address.
    let moved = rig.phones.endpoint().unwrap();
    bob.ws.reinvite(&plain_rtp_sdp(moved.local_addr()), &sid).unwrap();
    let reanswer = bob.ws.expect("answer", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    assert_eq!(reanswer["callsid"], sid.as_str(), "{reanswer:#}");
    assert_eq!(media_of(&reanswer), media_of(&answer), "the appliance's media address stays");
    let sessions = rig.app.admin.sessions().unwrap();
    let signalled =
        sessions.sessions.iter().flat_map(|s| &s.legs).any(|l| l.remote == Some(moved.local_addr()) && !l.latched);
    assert!(signalled, "the new address is signalled to the dataplane before any packet: {sessions:#?}");
    rig.media_flows("bob (moved) <-> alice", (&moved, media_of(&reanswer)), (&alice.rtp, media_of(&invite)));
    // Alice's side moves too (the callee's reinvite).
    let alice_moved = rig.phones.endpoint().unwrap();
    alice.ws.reinvite(&plain_rtp_sdp(alice_moved.local_addr()), &child_sid).unwrap();
    let reanswer = alice.ws.expect("answer", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    assert_eq!(media_of(&reanswer), media_of(&invite));
    rig.media_flows("bob (moved) <-> alice (moved)", (&moved, media_of(&answer)), (&alice_moved, media_of(&invite)));

    // DTMF sent as the SDK's `dtmf` message (its fallback without an
    // RTCDTMFSender) reaches the other client as RFC 4733 events in its
    // stream: two digits, 5 + 3 packets each, then nothing.
    alice_moved.drain().unwrap();
    let events = alice_moved.receive_raw_in_background(16, Duration::from_secs(3)).unwrap();
    bob.ws.dtmf(&sid, "1#").unwrap();
    let events = events.join().unwrap().unwrap();
    let played: Vec<(u8, bool, u16, u8)> = events
        .iter()
        .filter(|(_, p)| p.len() == 16 && p[1] & 0x7f == 101)
        .map(|(_, p)| (p[12], p[13] & 0x80 != 0, u16::from_be_bytes([p[2], p[3]]), p[1] >> 7))
        .collect();
    assert_eq!(played.len(), 16, "two digits as telephone-events (pt 101): {events:?}\n{}", rig.context());
    for (i, (event, end, seq, marker)) in played.iter().enumerate() {
        assert_eq!((*event, *end), (if i < 8 { 1 } else { 11 }, i % 8 >= 5), "packet {i}: {played:?}");
        assert_eq!(*seq, played[0].2.wrapping_add(i as u16), "gapless numbering: {played:?}");
        assert_eq!(*marker == 1, i % 8 == 0, "each event's first packet is marked: {played:?}");
    }
    bob.ws.dtmf("CA00000000000000000000000000000000", "1").unwrap();
    let refused = bob.ws.expect("error", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    assert_eq!(refused["error"]["code"], 31005, "DTMF for no call of ours: {refused:#}");

    // Call.sendMessage on either side: acknowledged (the SDK's `messageSent`).
    for (ws, callsid) in [(&mut alice.ws, &child_sid), (&mut bob.ws, &sid)] {
        let sent = ws.message(callsid, &json!({"note": "hi"}), "user-defined-message").unwrap();
        let ack = ws.expect("ack", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
        assert_eq!((ack["acktype"].as_str(), ack["voiceeventsid"].as_str()), (Some("message"), Some(sent.as_str())));
        assert_eq!(ack["callsid"], callsid.as_str(), "{ack:#}");
    }
    let stray = alice.ws.message("CA00000000000000000000000000000000", &json!({}), "user-defined-message").unwrap();
    let refused = alice.ws.expect("error", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    assert_eq!(refused["error"]["code"], 31005, "a message for no call of ours ({stray}): {refused:#}");

    alice.ws.hangup(&child_sid).unwrap();
    let hangup = bob.ws.expect("hangup", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    assert_eq!(hangup["callsid"], sid.as_str());
    rig.no_media_left();
    let voice = rig.exactly_requests("/client-voice", 1).remove(0);
    assert_eq!(param(&voice, "ToPresence"), "available", "presence is a resource for instructions");
    let calls = rig.final_calls(2);
    let parent = record(&calls, "sid", &sid);
    assert_eq!((parent["from"].as_str(), parent["to"].as_str()), (Some("client:bob"), Some("alice")));
    let child = record(&calls, "sid", &child_sid);
    assert_eq!((child["from"].as_str(), child["to"].as_str()), (Some("client:bob"), Some("client:alice")));
}

/// A `<Client>` nobody is registered as ends at once with `no-answer`
/// (it never rings into the void) and the `action` URL is told; a device
/// that rejects stops only itself, and all rejecting makes it `busy`.
#[test]
fn offline_and_rejecting_clients() {
    let rig = Rig::new();
    rig.twiml(
        "/client-voice",
        r#"<Response><Dial action="/after" timeout="20"><Client>nobody</Client></Dial></Response>"#,
    );
    rig.twiml("/after", "<Response><Hangup/></Response>");
    rig.accept_callbacks(&["/client-status"]);
    let mut bob = rig.device(&Grant::both("bob"));
    bob.ws.invite(&plain_rtp_sdp(bob.rtp.local_addr()), &temp_call_sid(), &[("To", "nobody")]).unwrap();
    let after = rig.exactly_requests("/after", 1).remove(0);
    assert_eq!(param(&after, "DialCallStatus"), "no-answer", "{after:#?}");
    let voice = rig.exactly_requests("/client-voice", 1).remove(0);
    assert_eq!(param(&voice, "ToPresence"), "offline");
    // Answered (so the action could run), then hung up by <Hangup/>.
    bob.ws.expect("hangup", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));

    // Two devices of carol: one rejects (the other keeps ringing), then the other.
    rig.twiml("/client-voice", r#"<Response><Dial action="/after-reject"><Client>carol</Client></Dial></Response>"#);
    rig.twiml("/after-reject", "<Response><Hangup/></Response>");
    let mut c1 = rig.device(&Grant::both("carol"));
    let mut c2 = rig.device(&Grant::both("carol"));
    bob.ws.invite(&plain_rtp_sdp(bob.rtp.local_addr()), &temp_call_sid(), &[("To", "carol")]).unwrap();
    let invite = c1.ws.expect("invite", SIGNAL).unwrap();
    c2.ws.expect("invite", SIGNAL).unwrap();
    let child = invite["callsid"].as_str().unwrap().to_owned();
    c1.ws.reject(&child).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(rig.customer.requests("/after-reject").unwrap().is_empty(), "one reject must not end the dial");
    assert!(c2.ws.queued().iter().all(|f| f.kind != "cancel"), "the other device keeps ringing");
    c2.ws.reject(&child).unwrap();
    let after = rig.exactly_requests("/after-reject", 1).remove(0);
    assert_eq!(param(&after, "DialCallStatus"), "busy", "{after:#?}");
}

/// A client without the incoming grant is never rung; one without the
/// outgoing grant has its `invite` refused (`hangup` with 31201, for its
/// temporary id).
#[test]
fn grants_are_enforced() {
    let rig = Rig::new();
    rig.twiml("/client-voice", r#"<Response><Dial action="/after"><Client>dave</Client></Dial></Response>"#);
    rig.twiml("/after", "<Response><Hangup/></Response>");
    rig.accept_callbacks(&["/client-status"]);
    let mut deaf = rig.device(&Grant { incoming: false, ..Grant::both("dave") });
    let bob = rig.device(&Grant::both("bob"));
    bob.ws.invite(&plain_rtp_sdp(bob.rtp.local_addr()), &temp_call_sid(), &[("To", "dave")]).unwrap();
    let after = rig.exactly_requests("/after", 1).remove(0);
    assert_eq!(param(&after, "DialCallStatus"), "no-answer");
    assert!(deaf.ws.next_frame(Duration::from_millis(300)).is_err(), "dave must not be rung: {:?}", deaf.ws.queued());

    let mut mute = rig.device(&Grant { outgoing: false, ..Grant::both("erin") });
    let temp = temp_call_sid();
    mute.ws.invite(&plain_rtp_sdp(mute.rtp.local_addr()), &temp, &[("To", "bob")]).unwrap();
    let hangup = mute.ws.expect("hangup", SIGNAL).unwrap();
    assert_eq!(hangup["callsid"], temp.as_str(), "{hangup:#}");
    assert_eq!(hangup["error"]["code"], 31201, "{hangup:#}");
    assert_eq!(rig.customer.requests("/client-voice").unwrap().len(), 1, "erin's call never reached the app");
}

// ---------------------------------------------------------------- tokens

/// Every refusal gets its code in an `error` frame; the connection stays
/// and a good token then works.
#[test]
fn bad_tokens_are_refused_with_the_sdk_codes() {
    let rig = Rig::new();
    let base = Grant::both("alice").case();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        edit(&mut c);
        c
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let cases = vec![
        ("bad signature", with(&|c| c["secret"] = json!("not-the-secret")), 31202),
        ("expired", with(&|c| c["ttl"] = json!(-60)), 31205),
        ("lifetime over 24 h", with(&|c| c["ttl"] = json!(25 * 3600)), 31207),
        ("not yet valid", with(&|c| c["nbf"] = json!(now + 3600)), 31204),
        ("unknown key", with(&|c| c["key"] = json!("SK0000000000000000000000000000beef")), 31201),
        (
            "another account's key",
            with(&|c| {
                c["key"] = json!(OTHER_KEY);
                c["secret"] = json!(OTHER_SECRET);
            }),
            31201,
        ),
        ("HS512", with(&|c| c["algorithm"] = json!("HS512")), 0),
    ];
    let tokens = twilio_py::mint(&cases.iter().map(|c| c.1.clone()).collect::<Vec<_>>()).unwrap();
    let mut raw = vec![
        ("malformed", "not.a.token".to_owned(), 31204),
        (
            "alg none",
            {
                let t = &tokens[0];
                let mut parts: Vec<&str> = t.split('.').collect();
                let header = base64_url(r#"{"alg":"none","typ":"JWT","cty":"twilio-fpa;v=1"}"#);
                parts[0] = &header;
                format!("{}.{}.", parts[0], parts[1])
            },
            31204,
        ),
    ];
    for ((name, _, code), token) in cases.into_iter().zip(tokens) {
        raw.push((name, token, code));
    }
    for (name, token, code) in raw {
        let mut ws = rig.connect();
        ws.listen(&token).unwrap();
        if code == 0 {
            ws.expect("connected", SIGNAL).unwrap_or_else(|e| panic!("{name}: {e:#}\n{}", rig.context()));
            continue;
        }
        let error = ws.expect("error", SIGNAL).unwrap_or_else(|e| panic!("{name}: {e:#}\n{}", rig.context()));
        assert_eq!(error["error"]["code"], code, "{name}: {error:#}");
        assert!(ws.queued().iter().all(|f| f.kind != "connected"), "{name}");
        // Still connected: a good token is accepted on the same socket.
        ws.listen(&mint(&Grant::both("alice"))).unwrap();
        ws.expect("connected", SIGNAL).unwrap_or_else(|e| panic!("{name}, then a good token: {e:#}"));
    }
    let metrics = rig.app.admin.metrics().unwrap();
    assert!(metrics.contains("bridgehead_client_token_refusals_total{reason=\"bad_signature\"} 1"), "{metrics}");
}

fn base64_url(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, x)| n | (u32::from(*x) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A token is refreshed in place during a call (the call goes on); a token
/// that expires gets 31205 and the device goes offline, its call kept.
#[test]
fn token_refresh_and_expiry_keep_calls() {
    let rig = Rig::new();
    rig.twiml(
        "/client-voice",
        &format!(r#"<Response><Dial callerId="{CALLER}"><Number>{CALLEE}</Number></Dial></Response>"#),
    );
    rig.accept_callbacks(&["/client-status"]);
    let short = Grant { ttl: 8, ..Grant::both("alice") };
    let mut alice = rig.device(&short);
    let callee_rtp = rig.callee.endpoint().unwrap();
    let mut callee = rig.callee(&callee_rtp);
    alice.ws.invite(&plain_rtp_sdp(alice.rtp.local_addr()), &temp_call_sid(), &[("To", CALLEE)]).unwrap();
    let answer = alice.ws.expect("answer", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    let sid = answer["callsid"].as_str().unwrap().to_owned();
    let invite = callee.wait_log(SIGNAL, |l| l.event == "sdp" && l.get("event") == Some("invite")).unwrap();

    // Expiry: told with 31205, offline; the call is still up.
    let error = alice.ws.expect("error", Duration::from_secs(15)).unwrap();
    assert_eq!(error["error"]["code"], 31205, "{error:#}");
    alice.ws.expect("offline", SIGNAL).unwrap();
    let presence = rig.rest("get", json!({"path": "Clients/alice.json"}));
    assert_eq!(presence["body"]["status"], "offline", "{presence:#}");
    rig.media_flows("after expiry", (&alice.rtp, media_of(&answer)), (&callee_rtp, invite.media().unwrap()));

    // Refresh: a new listen on the same socket; present again after register.
    alice.ws.listen(&mint(&Grant::both("alice"))).unwrap();
    let connected = alice.ws.expect("connected", SIGNAL).unwrap();
    assert!(connected["token"]["ttl"].as_i64().is_some_and(|t| t > 3000), "{connected:#}");
    alice.ws.register().unwrap();
    alice.ws.expect("ready", SIGNAL).unwrap();
    rig.media_flows("after refresh", (&alice.rtp, media_of(&answer)), (&callee_rtp, invite.media().unwrap()));
    alice.ws.hangup(&sid).unwrap();
    callee.wait_log(SIGNAL, |l| l.event == "bye" && l.get("event") == Some("received")).unwrap();
}

/// Deleting an API key through the REST API disconnects its clients.
#[test]
fn revoked_key_disconnects_its_clients() {
    let rig = Rig::new();
    let mut case = Grant::both("alice").case();
    case["key"] = json!(KEY_REVOKED);
    case["secret"] = json!(SECRET_REVOKED);
    let token = twilio_py::mint(&[case]).unwrap().remove(0);
    let (mut ws, _) = rig.listening(&token);
    let (mut other, _) = rig.listening(&mint(&Grant::both("bob")));
    let deleted = rig.rest("delete_key", json!({"sid": KEY_REVOKED}));
    assert_eq!(deleted["deleted"], true, "{deleted:#}");
    let error = ws.expect("error", SIGNAL).unwrap();
    assert_eq!(error["error"]["code"], 31204, "{error:#}");
    ws.expect_closed(SIGNAL).unwrap();
    other.register().unwrap();
    other.expect("ready", SIGNAL).expect("a client of another key stays");
}

// ---------------------------------------------------------------- presence

/// Presence: subscribers of the same account see register, busy and
/// offline within a second; another account sees nothing of it; the REST
/// API lists it.
#[test]
fn presence_subscription_and_isolation() {
    let rig = Rig::new();
    let (mut watcher, _) = rig.listening(&mint(&Grant::both("watcher")));
    watcher.presence_subscribe(&["alice"]).unwrap();
    let first = watcher.expect("presence", SIGNAL).unwrap();
    assert_eq!((first["identity"].as_str(), first["status"].as_str()), (Some("alice"), Some("offline")));

    let mut other_case = Grant::both("alice").case();
    other_case["account"] = json!(OTHER_ACCOUNT);
    other_case["key"] = json!(OTHER_KEY);
    other_case["secret"] = json!(OTHER_SECRET);
    let (mut stranger, _) = rig.listening(&twilio_py::mint(&[other_case]).unwrap().remove(0));
    stranger.presence_subscribe(&["alice"]).unwrap();
    let seen = stranger.expect("presence", SIGNAL).unwrap();
    assert_eq!(seen["status"], "offline", "the other account's alice is not ours: {seen:#}");

    let alice = rig.device(&Grant::both("alice"));
    let update = watcher.expect("presence", Duration::from_secs(1)).unwrap();
    assert_eq!((update["status"].as_str(), update["devices"].as_u64()), (Some("available"), Some(1)), "{update:#}");
    alice.ws.presence_set("away").unwrap();
    let update = watcher.expect("presence", Duration::from_secs(1)).unwrap();
    assert_eq!(update["status"], "away", "{update:#}");

    let listed = rig.rest("get", json!({"path": "Clients.json"}));
    let clients = listed["body"]["clients"].as_array().cloned().unwrap_or_default();
    assert!(clients.iter().any(|c| c["identity"] == "alice" && c["status"] == "away"), "Clients.json: {listed:#}");
    let theirs = rig.rest_as(OTHER_ACCOUNT, OTHER_TOKEN, "get", json!({"path": "Clients.json"}));
    assert!(
        theirs["body"]["clients"].as_array().is_some_and(|c| c.is_empty()),
        "another account sees none of ours: {theirs:#}"
    );

    alice.ws.unregister().unwrap();
    let update = watcher.expect("presence", Duration::from_secs(1)).unwrap();
    assert_eq!(update["status"], "offline", "{update:#}");
    assert!(stranger.next_frame(Duration::from_millis(300)).is_err(), "nothing leaks: {:?}", stranger.queued());
}

// ---------------------------------------------------------------- reconnect

/// The SDK's reconnect: a client whose socket drops mid-call comes back
/// within 30 s with the reconnect token and the call resumes (its media
/// never stopped); a second drop not followed by a return ends the call
/// after 30 s.
#[test]
fn reconnect_within_30_seconds_resumes_after_ends() {
    let rig = Rig::new();
    rig.twiml(
        "/client-voice",
        &format!(r#"<Response><Dial callerId="{CALLER}"><Number>{CALLEE}</Number></Dial></Response>"#),
    );
    rig.accept_callbacks(&["/client-status"]);
    let grant = Grant::both("alice");
    let mut alice = rig.device(&grant);
    let callee_rtp = rig.callee.endpoint().unwrap();
    let mut callee = rig.callee(&callee_rtp);
    let sdp = plain_rtp_sdp(alice.rtp.local_addr());
    alice.ws.invite(&sdp, &temp_call_sid(), &[("To", CALLEE)]).unwrap();
    let answer = alice.ws.expect("answer", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    let sid = answer["callsid"].as_str().unwrap().to_owned();
    let token = answer["reconnect"].as_str().unwrap().to_owned();
    let invite = callee.wait_log(SIGNAL, |l| l.event == "sdp" && l.get("event") == Some("invite")).unwrap();
    let toward_callee = invite.media().unwrap();

    alice.ws.drop_abruptly();
    rig.media_flows("while disconnected", (&alice.rtp, media_of(&answer)), (&callee_rtp, toward_callee));
    std::thread::sleep(Duration::from_secs(3));
    let (mut back, _) = rig.listening(&mint(&grant));
    back.reconnect(&sdp, &sid, &token).unwrap();
    let again = back.expect("answer", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    assert_eq!(again["callsid"], sid.as_str(), "{again:#}");
    rig.media_flows("after reconnect", (&alice.rtp, media_of(&again)), (&callee_rtp, toward_callee));

    // A reconnect token is the call's own: another identity cannot take it.
    back.drop_abruptly();
    let (mut thief, _) = rig.listening(&mint(&Grant::both("mallory")));
    thief.reconnect(&sdp, &sid, &token).unwrap();
    let refused = thief.expect("hangup", SIGNAL).unwrap();
    assert!(refused["error"]["code"].is_number(), "{refused:#}");

    // Not back within 30 s: the call ends (BYE to the callee, record completed).
    callee
        .wait_log(Duration::from_secs(40), |l| l.event == "bye" && l.get("event") == Some("received"))
        .unwrap_or_else(|e| panic!("the callee's BYE after the reconnect window: {e:#}\n{}", rig.context()));
    let calls = rig.final_calls(2);
    assert_eq!(record(&calls, "sid", &sid)["status"], "completed");
}

// ---------------------------------------------------------------- bad input

/// Bad input gets a clear error and breaks nothing: a frame that is not
/// the protocol gets 31400 and the socket stays; a call whose SDP offers
/// nothing the appliance serves (Opus only, in this release) ends with a
/// `hangup` carrying an error, before any voice request, and leaves no
/// media behind.
#[test]
fn bad_frames_and_unservable_sdp_get_clear_errors() {
    let rig = Rig::new();
    rig.twiml("/client-voice", r#"<Response><Dial><Client>alice</Client></Dial></Response>"#);
    let mut bob = rig.device(&Grant::both("bob"));
    for raw in ["{not json", r#"{"type":"teleport","version":"1.6","payload":{}}"#, r#"{"type":"answer","payload":{}}"#]
    {
        bob.ws.send_raw(raw).unwrap();
        let error = bob.ws.expect("error", SIGNAL).unwrap_or_else(|e| panic!("{raw}: {e:#}\n{}", rig.context()));
        assert_eq!(error["error"]["code"], 31400, "{raw}: {error:#}");
    }
    let temp = temp_call_sid();
    let opus_only = test_harness::voice_client::plain_rtp_sdp_with(bob.rtp.local_addr(), &[111]);
    bob.ws.invite(&opus_only, &temp, &[("To", "alice")]).unwrap();
    let hangup = bob.ws.expect("hangup", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    assert_eq!(hangup["callsid"], temp.as_str(), "the call never rang: the client's own id: {hangup:#}");
    assert!(hangup["error"]["code"].is_number(), "{hangup:#}");
    assert!(rig.customer.requests("/client-voice").unwrap().is_empty(), "no voice request for a refused offer");
    rig.no_media_left();
    // The socket still works.
    bob.ws.register().unwrap();
    bob.ws.expect("ready", SIGNAL).unwrap();
}

// ---------------------------------------------------------------- SIP over WebSocket

/// A response to `request` as a SIP UA builds it: its Vias, From, Call-ID
/// and CSeq, its To with `tag`.
fn sip_response(request: &str, status: &str, tag: &str, extra: &str, body: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in request.lines().take_while(|l| !l.trim().is_empty()) {
        let name = line.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => out.push_str(&format!("{}\r\n", line.trim_end())),
            "to" | "t" if !line.contains("tag=") => out.push_str(&format!("{};tag={tag}\r\n", line.trim_end())),
            "to" | "t" => out.push_str(&format!("{}\r\n", line.trim_end())),
            _ => {}
        }
    }
    out.push_str(extra);
    if body.is_empty() {
        out.push_str("Content-Length: 0\r\n\r\n");
    } else {
        out.push_str(&format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    }
    out
}

impl Rig {
    fn sip_ws(&self) -> SipWsClient {
        let ca = self.app.state_dir().join("tls/cert.pem");
        self.phones
            .ns
            .run_in(|| SipWsClient::connect(HTTPS, "/", &ca))
            .unwrap()
            .unwrap_or_else(|e| panic!("SIP over WebSocket: {e:#}\n{}", self.context()))
    }
}

/// A REGISTER as SIP.js sends it (Contact on an `.invalid` host,
/// `transport=ws`), with the token as a bearer (RFC 8898) if given.
fn register(token: Option<&str>, cseq: u32, expires: u32) -> String {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    format!(
        "REGISTER sip:{MEDIA_IP} SIP/2.0\r\nVia: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKreg{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{MEDIA_IP}>;tag=reg1\r\nTo: <sip:alice@{MEDIA_IP}>\r\n\
         Call-ID: reg-call-1\r\nCSeq: {cseq} REGISTER\r\n\
         Contact: <sip:k2f9@df7jal23ls0d.invalid;transport=ws>;expires={expires}\r\n{auth}Content-Length: 0\r\n\r\n"
    )
}

/// SIP over WebSocket (RFC 7118), as SIP.js and JsSIP clients speak it:
/// REGISTER with the access token as a bearer makes the client present
/// (and without a valid one gets 401); `<Dial><Client>` rings it with an
/// INVITE over its socket; it answers, media flows, it hangs up with BYE;
/// its own INVITE runs the outgoing grant's application; `Expires: 0`
/// makes it offline.
#[test]
fn sip_over_websocket_clients() {
    let rig = Rig::new();
    rig.twiml("/voice", r#"<Response><Dial><Client>alice</Client></Dial></Response>"#);
    rig.twiml(
        "/client-voice",
        &format!(r#"<Response><Dial callerId="{CALLER}"><Number>{CALLEE}</Number></Dial></Response>"#),
    );
    rig.accept_callbacks(&["/status", "/client-status"]);
    let mut sip = rig.sip_ws();
    let rtp = rig.phones.endpoint().unwrap();

    sip.send(&register(None, 1, 600)).unwrap();
    let refused = sip.expect_status(401, SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    assert!(header(&refused, "WWW-Authenticate").is_some_and(|v| v.starts_with("Bearer")), "{refused}");
    sip.send(&register(Some("not.a.token"), 2, 600)).unwrap();
    sip.expect_status(401, SIGNAL).unwrap();
    sip.send(&register(Some(&mint(&Grant::both("alice"))), 3, 600)).unwrap();
    let ok = sip.expect_status(200, SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    assert!(header(&ok, "Contact").is_some_and(|c| c.contains("expires=600")), "{ok}");
    let presence = rig.rest("get", json!({"path": "Clients/alice.json"}));
    assert_eq!(
        (presence["body"]["status"].as_str(), presence["body"]["devices"].as_u64()),
        (Some("available"), Some(1))
    );

    // A carrier's call rings the SIP client.
    let carrier_rtp = rig.carrier.endpoint().unwrap();
    let mut caller = rig.carrier_call(&carrier_rtp);
    let invite = sip.expect_request("INVITE", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    let child = header(&invite, "X-Twilio-CallSid").unwrap_or_default().to_owned();
    assert!(child.starts_with("CA"), "{invite}");
    let toward_alice = sdp_media_addr(body(&invite)).unwrap();
    let answer = sip_response(
        &invite,
        "200 OK",
        "alice1",
        "Contact: <sip:k2f9@df7jal23ls0d.invalid;transport=ws>\r\n",
        &plain_rtp_sdp(rtp.local_addr()),
    );
    sip.send(&answer).unwrap();
    sip.expect_request("ACK", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    let answered = caller.wait_log(SIGNAL, |l| l.event == "sdp" && l.get("event") == Some("200")).unwrap();
    rig.media_flows("carrier <-> SIP client", (&carrier_rtp, answered.media().unwrap()), (&rtp, toward_alice));
    let presence = rig.rest("get", json!({"path": "Clients/alice.json"}));
    assert_eq!(presence["body"]["status"], "busy", "in a call: {presence:#}");

    // The SIP client hangs up.
    let to = header(&invite, "To").unwrap();
    let bye = format!(
        "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKbye1\r\nMax-Forwards: 70\r\n\
         From: {to};tag=alice1\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        contact = header(&invite, "Contact").unwrap().trim_matches(['<', '>']),
        from = header(&invite, "From").unwrap(),
        call_id = header(&invite, "Call-ID").unwrap(),
    );
    sip.send(&bye).unwrap();
    sip.expect_status(200, SIGNAL).unwrap_or_else(|e| panic!("the BYE's 200: {e:#}\n{}", rig.context()));
    let outcome = caller.wait(SIPP_END).unwrap();
    assert!(outcome.success(), "{}\n{}", outcome.report, rig.context());
    rig.no_media_left();

    // The SIP client calls a number through its token's outgoing application.
    let callee_rtp = rig.callee.endpoint().unwrap();
    let mut callee = rig.callee(&callee_rtp);
    let offer = plain_rtp_sdp(rtp.local_addr());
    sip.send(&format!(
        "INVITE sip:{CALLEE}@{MEDIA_IP} SIP/2.0\r\nVia: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKinv1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{MEDIA_IP}>;tag=out1\r\nTo: <sip:{CALLEE}@{MEDIA_IP}>\r\n\
         Call-ID: out-call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:k2f9@df7jal23ls0d.invalid;transport=ws>\r\n\
         X-note: from-sip\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
        offer.len()
    ))
    .unwrap();
    let ok = sip.expect_status(200, SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.context()));
    let to_tag = header(&ok, "To").unwrap().to_owned();
    sip.send(&format!(
        "ACK sip:bridgehead@{MEDIA_IP} SIP/2.0\r\nVia: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKack1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{MEDIA_IP}>;tag=out1\r\nTo: {to_tag}\r\nCall-ID: out-call-1\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ))
    .unwrap();
    let invite = callee.wait_log(SIGNAL, |l| l.event == "sdp" && l.get("event") == Some("invite")).unwrap();
    rig.media_flows(
        "SIP client <-> callee",
        (&rtp, sdp_media_addr(body(&ok)).unwrap()),
        (&callee_rtp, invite.media().unwrap()),
    );
    sip.send(&format!(
        "BYE sip:bridgehead@{MEDIA_IP} SIP/2.0\r\nVia: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKbye2\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{MEDIA_IP}>;tag=out1\r\nTo: {to_tag}\r\nCall-ID: out-call-1\r\n\
         CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ))
    .unwrap();
    sip.expect_status(200, SIGNAL).unwrap();
    callee.wait_log(SIGNAL, |l| l.event == "bye" && l.get("event") == Some("received")).unwrap();
    let voice = rig.exactly_requests("/client-voice", 1).remove(0);
    assert!(voice.signature_valid);
    assert_eq!((param(&voice, "From"), param(&voice, "To")), ("client:alice", CALLEE));
    assert_eq!(param(&voice, "note"), "from-sip", "X- headers are custom parameters");

    // Expires 0: offline.
    sip.send(&register(Some(&mint(&Grant::both("alice"))), 4, 0)).unwrap();
    sip.expect_status(200, SIGNAL).unwrap();
    let presence = rig.rest("get", json!({"path": "Clients/alice.json"}));
    assert_eq!(presence["body"]["status"], "offline", "{presence:#}");
}

/// JsSIP itself (npm `jssip` with `jssip-node-websocket`, scripts/test.sh
/// installs them under target/node): a browser app's SIP library registers
/// with its token as a bearer and is present; it unregisters and is not;
/// a bad token gets 401.
#[test]
fn jssip_registers_with_a_bearer_token() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let rig = Rig::new();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js/jssip_register.js");
    let ca = rig.app.state_dir().join("tls/cert.pem");
    let run = |token: &str| {
        let mut child = rig
            .phones
            .ns
            .command(std::path::Path::new("node"))
            .arg(&script)
            .arg(format!("wss://{HTTPS}/"))
            .arg(&ca)
            .arg("alice")
            .arg(token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (scripts/test.sh installs nodejs, and JsSIP under target/node with NODE_PATH)");
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        (child, rx)
    };
    let next = |rx: &std::sync::mpsc::Receiver<String>| {
        rx.recv_timeout(SIGNAL)
            .unwrap_or_else(|e| panic!("JsSIP said nothing ({e}); is NODE_PATH set?\n{}", rig.context()))
    };

    let (mut child, rx) = run("not.a.token");
    assert_eq!(next(&rx), "registrationFailed 401");
    let _ = child.wait();

    let (mut child, rx) = run(&mint(&Grant::both("alice")));
    assert_eq!(next(&rx), "registered 200");
    let presence = rig.rest("get", json!({"path": "Clients/alice.json"}));
    assert_eq!(presence["body"]["status"], "available", "{presence:#}");
    drop(child.stdin.take());
    assert_eq!(next(&rx), "unregistered");
    let _ = child.wait();
    let presence = rig.rest("get", json!({"path": "Clients/alice.json"}));
    assert_eq!(presence["body"]["status"], "offline", "{presence:#}");
}
