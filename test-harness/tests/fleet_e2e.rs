//! A fleet end to end: four appliances in three regions, formed by gossip,
//! links between regions delayed by the harness's WAN emulator
//! (`test_harness::wan`: this project's kernels have no `tc netem`), a
//! carrier (sipp), Voice SDK clients (the Rust test client) and the
//! customer's app, each in its own namespace.
//!
//! ```text
//!   us1 (the core: br0 192.0.2.1 in the app namespace, with the customer's
//!        app; Twilio's helper library checks our signatures)
//!     us1-a 192.0.2.10, us1-b .11, carrier .14 (sipp → us1-a), phones-us1 .15
//!      ├── delay line, 22.5 ms each way ── de1: de1 .12, phones-de1 .16
//!      └── delay line, 45 ms each way ──── au1: au1 .13, phones-au1 .17
//! ```
//!
//! Round trips: us1-de1 45 ms, us1-au1 90 ms, de1-au1 135 ms (through us1:
//! the regions form a star), also the configured latency matrix. The
//! fleet's durable state is one PostgreSQL database (a throwaway server,
//! reached through its Unix socket): us1-a seeds the account from its
//! configuration, the others find it there; routes and presence go by gossip
//! only.
//!
//! Needs root, sipp, ethtool, PostgreSQL and python3 with `twilio`
//! (scripts/test.sh provides them); fails rather than skips without them.

use controlplane::store::test_postgres::TestPostgres;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use test_harness::admin::{metric_sum, metric_sum_with, LegRequest, SessionRequest};
use test_harness::appliance::{Appliance, ApplianceConfig};
use test_harness::call_checks::{self, record};
use test_harness::customer_app::{CustomerApp, Route};
use test_harness::rtp::RtpEndpoint;
use test_harness::settle;
use test_harness::sipp::{Sipp, SippRun, Transport};
use test_harness::topology::Peer;
use test_harness::twilio_py::{self, RestClient};
use test_harness::voice_client::{plain_rtp_sdp, sdp_media_addr, temp_call_sid, ConnectOptions, VoiceClient};
use test_harness::wan::Wan;

const ACCOUNT: &str = "AC0000000000000000000000000000f1ee";
const TOKEN: &str = "fleet-e2e-auth-token";
const KEY: &str = "SK0000000000000000000000000000f1ee";
const SECRET: &str = "fleet-e2e-key-secret-0123456789ab";
const APP: &str = "AP0000000000000000000000000000f1e1";
const NUMBER: &str = "+15550100001";
const CALLER: &str = "+15550100002";
const FLEET_KEY: &str = "fleet-e2e-fleet-key-0123456789abcdef";
/// A second key of the account, deleted through us1-a by one test.
const KEY_DOOMED: &str = "SK000000000000000000000000000d00e1";
const SECRET_DOOMED: &str = "fleet-e2e-doomed-secret-0123456789";

const SIP_PORT: u16 = 5060;
const HTTPS_PORT: u16 = 8443;
const GOSSIP_PORT: u16 = 7946;
const CARRIER_SIP_PORT: u16 = 5070;

/// One fleet at a time: four appliances, a PostgreSQL server and the WAN's
/// forwarders already fill two cores, and the timing checks (routes
/// withdrawn within 3 s, presence within 1 s) must not measure a second
/// fleet's load.
static ONE_FLEET: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A signaling step must come within this.
const SIGNAL: Duration = Duration::from_secs(15);
const SIPP_END: Duration = Duration::from_secs(30);
const AFTERMATH: Duration = Duration::from_secs(15);
/// Gossip must carry a change everywhere within this (the goal is 1 s).
const PROPAGATION: Duration = Duration::from_secs(3);
const PACKETS: usize = 40;

/// The appliances, in plugging order (192.0.2.10 ..).
const MEMBERS: [(&str, &str); 4] = [("bh-us1-a", "us1"), ("bh-us1-b", "us1"), ("bh-de1", "de1"), ("bh-au1", "au1")];
const US1_A: usize = 0;
const US1_B: usize = 1;
const DE1: usize = 2;
const AU1: usize = 3;

/// The regions: us1 is the WAN's core; the others' one-way delay to it.
const CORE: &str = "us1";
const SPOKES: [(&str, Duration); 2] = [("de1", Duration::from_micros(22_500)), ("au1", Duration::from_micros(45_000))];

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
sid = "{KEY_DOOMED}"
secret = "{SECRET_DOOMED}"
[[accounts.applications]]
sid = "{APP}"
voice_url = "{voice}"
status_callback = "{status}"
[[accounts.numbers]]
number = "{NUMBER}"
application = "{APP}"
[[accounts.trunks]]
name = "carrier"
allow = ["192.0.2.14/32"]
outbound = "sip:192.0.2.14:5080"
"#,
        voice = app.url("/voice"),
        status = app.url("/status"),
    )
}

fn mint(identity: &str) -> String {
    mint_with(KEY, SECRET, identity)
}

fn mint_with(key: &str, secret: &str, identity: &str) -> String {
    let case = json!({"account": ACCOUNT, "key": key, "secret": secret, "identity": identity, "ttl": 3600,
                      "incoming": true, "app": APP});
    twilio_py::mint(&[case]).expect("minting with Twilio's library").remove(0)
}

/// One appliance of the fleet and its namespace.
struct Member {
    app: Option<Appliance>,
    ns: Peer,
    region: &'static str,
}

impl Member {
    fn ip(&self) -> Ipv4Addr {
        self.ns.ip
    }

    fn app(&self) -> &Appliance {
        self.app.as_ref().expect("the appliance runs")
    }

    fn sip(&self) -> SocketAddr {
        SocketAddr::from((self.ip(), SIP_PORT))
    }

    fn https(&self) -> SocketAddr {
        SocketAddr::from((self.ip(), HTTPS_PORT))
    }
}

struct Fleet {
    members: Vec<Member>,
    customer: CustomerApp,
    carrier: Peer,
    /// Client hosts by region: us1, de1, au1.
    phones: Vec<(&'static str, Peer)>,
    wan: Wan,
    /// The fleet store's database URL.
    store_url: String,
    // Last: dropped after the appliances that use it.
    _postgres: TestPostgres,
}

/// A client device: its signaling connection and its RTP endpoint.
struct Device {
    ws: VoiceClient,
    rtp: RtpEndpoint,
}

impl Fleet {
    fn new() -> Fleet {
        let mut wan = Wan::new(CORE).expect("a WAN (the end-to-end tests need root)");
        for (region, one_way) in SPOKES {
            wan.add_region(region, one_way).expect("a region and its delay line (ethtool installed?)");
        }
        let mut members = Vec::new();
        for (id, region) in MEMBERS {
            let ns = wan.add_peer_in(region, &id.replace("bh-", "")).expect("an appliance namespace");
            members.push(Member { app: None, ns, region });
        }
        let carrier = wan.add_peer_in(CORE, "carrier").expect("carrier");
        assert_eq!(carrier.ip, Ipv4Addr::new(192, 0, 2, 14), "the trunk's address");
        let phones = ["us1", "de1", "au1"]
            .into_iter()
            .map(|region| (region, wan.add_peer_in(region, &format!("ph{region}")).expect("phones")))
            .collect();
        let customer = CustomerApp::start_in(Some(wan.app()), wan.media_ip(), TOKEN)
            .expect("customer app (python3 with the twilio package)");
        let postgres = TestPostgres::start().unwrap_or_else(|e| panic!("{e}"));
        let db = postgres.create_database().unwrap_or_else(|e| panic!("{e}"));
        let store_url = postgres.socket_url(&db);
        let mut fleet = Fleet { members, customer, carrier, phones, wan, store_url, _postgres: postgres };
        for i in 0..fleet.members.len() {
            fleet.start(i);
        }
        fleet
    }

    fn config(&self, i: usize) -> ApplianceConfig {
        let (id, region) = MEMBERS[i];
        let ip = self.members[i].ip();
        let mut config = ApplianceConfig::sockets(IpAddr::V4(ip));
        config.id = id.into();
        config.region = region.into();
        config.https = Some(self.members[i].https());
        config.workers = 1;
        config.sessions = 32;
        config.ports = (20000, 20063);
        let seeds: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, m)| format!("\"{}:{GOSSIP_PORT}\"", m.ip()))
            .collect();
        // Only us1-a seeds the account: the others find it in the fleet store.
        let seeded = if i == US1_A { accounts(&self.customer) } else { String::new() };
        config.extra = format!(
            "[store]\nurl = {:?}\npool = 2\n\n[peers]\nlisten = \"{ip}:{GOSSIP_PORT}\"\nseeds = [{}]\nfleet_key = \"{FLEET_KEY}\"\nlatency_ms = {{ {} }}\n{seeded}",
            self.store_url,
            seeds.join(", "),
            self.latency_matrix(),
        );
        config
    }

    /// The configured latency matrix: the WAN's round trips (us1-de1 45,
    /// us1-au1 90, de1-au1 135), so the configuration and the measured
    /// latency agree.
    fn latency_matrix(&self) -> String {
        let regions = [CORE, SPOKES[0].0, SPOKES[1].0];
        let mut pairs = Vec::new();
        for (k, a) in regions.iter().enumerate() {
            for b in &regions[k + 1..] {
                let rtt = 2 * self.wan.one_way(a, b).unwrap();
                pairs.push(format!("\"{a}-{b}\" = {}", rtt.as_millis()));
            }
        }
        pairs.join(", ")
    }

    fn start(&mut self, i: usize) {
        let config = self.config(i);
        let app = Appliance::start(config, Some(&self.members[i].ns.ns))
            .unwrap_or_else(|e| panic!("starting {}: {e:#}", MEMBERS[i].0));
        self.members[i].app = Some(app);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut app) = self.members[i].app.take() {
            if let Some(pid) = app.pid() {
                let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
            let _ = app.stop(Duration::from_secs(5));
        }
    }

    /// Another host on the LAN (us1's side), in its own namespace.
    fn lan_peer(&mut self, role: &str) -> Peer {
        self.wan.add_peer_in(CORE, role).expect("a LAN peer")
    }

    fn twiml(&self, path: &str, body: &str) {
        self.customer.set_route(&Route::twiml(path, body)).unwrap();
    }

    fn phones(&self, region: &str) -> &Peer {
        &self.phones.iter().find(|(r, _)| *r == region).expect("phones of the region").1
    }

    // ------------------------------------------------------------ clients

    /// A signaling connection from `region`'s phones to member `i`,
    /// listening as `identity`.
    fn listening(&self, i: usize, region: &str, identity: &str) -> VoiceClient {
        self.listening_with(i, region, identity, &mint(identity))
    }

    /// [`Fleet::listening`] with a token of one's own.
    fn listening_with(&self, i: usize, region: &str, identity: &str, token: &str) -> VoiceClient {
        let member = &self.members[i];
        let options =
            ConnectOptions { ca_pem: Some(member.app().state_dir().join("tls/cert.pem")), ..Default::default() };
        let url = format!("wss://{}/signal", member.https());
        let mut ws = self
            .phones(region)
            .ns
            .run_in(|| VoiceClient::connect_with(&url, &options))
            .unwrap()
            .unwrap_or_else(|e| panic!("connecting to {url}: {e:#}\n{}", self.context()));
        ws.listen(token).unwrap();
        let connected =
            ws.expect("connected", SIGNAL).unwrap_or_else(|e| panic!("connected: {e:#}\n{}", self.context()));
        assert_eq!(connected["token"]["identity"], identity, "{connected:#}");
        ws
    }

    /// A registered device of `identity` on member `i`.
    fn device(&self, i: usize, region: &str, identity: &str) -> Device {
        let mut ws = self.listening(i, region, identity);
        ws.register().unwrap();
        ws.expect("ready", SIGNAL).unwrap_or_else(|e| panic!("ready: {e:#}\n{}", self.context()));
        Device { ws, rtp: self.phones(region).endpoint().unwrap() }
    }

    // ------------------------------------------------------------ carrier

    /// A carrier call to member `to`; every SDP it gets must name `media`.
    fn carrier_call(&self, scenario: &str, to: usize, rtp: &RtpEndpoint, media: usize) -> SippRun {
        let target = self.members[to].sip();
        Sipp::new(scenario, SocketAddr::new(IpAddr::V4(self.carrier.ip), CARRIER_SIP_PORT))
            .remote(target)
            .transport(Transport::Udp)
            .service(NUMBER)
            .key("caller", CALLER)
            .key("target", target)
            .key("rtp_ip", rtp.local_addr().ip())
            .key("rtp_port", rtp.local_addr().port())
            .key("tr", "UDP")
            .key("tr_param", "udp")
            .set("media_ip", self.members[media].ip())
            .start_in(&self.carrier.ns)
            .unwrap_or_else(|e| panic!("starting the carrier's sipp: {e:#}\n{}", self.context()))
    }

    // ------------------------------------------------------------ reading the fleet

    fn rest(&self, i: usize, op: &str, args: Value) -> Value {
        let member = &self.members[i];
        let cafile = member.app().state_dir().join("tls/cert.pem");
        let client = RestClient {
            netns: Some(self.wan.app()),
            base: format!("https://{}", member.https()),
            account: ACCOUNT.into(),
            token: TOKEN.into(),
            cafile: &cafile,
        };
        client.run(op, &args).unwrap_or_else(|e| panic!("{e:#}\n{}", self.context()))
    }

    /// Media sessions member `i`'s dataplane holds.
    fn sessions(&self, i: usize) -> usize {
        self.members[i].app().admin.sessions().map(|l| l.count).unwrap_or(usize::MAX)
    }

    fn context(&self) -> String {
        let mut out = String::new();
        for (m, (id, _)) in self.members.iter().zip(MEMBERS) {
            if let Some(app) = &m.app {
                out.push_str(&format!("\n===== {id}\n"));
                out.push_str(&call_checks::context(app, &self.customer, &["fleet", "gossip", "client", "call"]));
            }
        }
        out
    }
}

/// Waits for a `presence` frame of `identity` with `status`; returns when.
fn presence_becomes(ws: &mut VoiceClient, identity: &str, status: &str, within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let Ok(frame) = ws.expect("presence", deadline.saturating_duration_since(Instant::now())) else { break };
        if frame["identity"] == identity && frame["status"] == status {
            return Some(Instant::now());
        }
    }
    None
}

/// Devices member `i` sees busy, fleet-wide.
fn busy_seen(fleet: &Fleet, i: usize) -> anyhow::Result<u64> {
    let text = fleet.members[i].app().admin.metrics()?;
    Ok(metric_sum_with(&text, "bridgehead_client_devices", "status=\"busy\"").unwrap_or(0))
}

/// Waits until every appliance sees the `busy` devices of an answered call
/// busy. Call it before the call ends: a device's busy and available travel
/// to the others as two changes, in order, and an appliance that has not
/// heard the first yet shows no busy device either, so without this
/// [`nobody_busy`] can pass before the call's end (or even its start) has
/// reached a box; that box then hears busy and turns the next call away
/// (no-answer).
fn everyone_sees_busy(fleet: &Fleet, busy: u64) {
    for (i, (id, _)) in MEMBERS.iter().enumerate() {
        if fleet.members[i].app.is_some() {
            let seen = settle(PROPAGATION, || busy_seen(fleet, i), |n| *n == busy).unwrap();
            assert_eq!(seen, busy, "{id} sees {seen} devices busy in the call, not {busy}\n{}", fleet.context());
        }
    }
}

/// Waits until no appliance still sees a device busy: a call's end reaches
/// the others by gossip, and a device seen busy is not rung (the next call
/// would end no-answer). Only conclusive once every appliance saw the
/// call's devices busy ([`everyone_sees_busy`]).
fn nobody_busy(fleet: &Fleet) {
    for (i, (id, _)) in MEMBERS.iter().enumerate() {
        if fleet.members[i].app.is_some() {
            let left = settle(PROPAGATION, || busy_seen(fleet, i), |n| *n == 0).unwrap();
            assert_eq!(left, 0, "{id} still sees a busy device\n{}", fleet.context());
        }
    }
}

/// The carrier's 200 (its SDP names where it sends media) and its Call-ID.
fn answered(caller: &mut SippRun, fleet: &Fleet) -> (SocketAddr, String) {
    let answer = caller
        .wait_log(SIGNAL, |l| l.event == "sdp" && l.get("event") == Some("200"))
        .unwrap_or_else(|e| panic!("the carrier's 200: {e:#}\n{}", fleet.context()));
    (answer.media().expect("media in the 200"), answer.get("call_id").unwrap_or_default().to_owned())
}

/// A carrier call at us1-a to alice, who answers on `alice`; media flows
/// through member `anchor` only (its address in both SDPs, one session
/// there, none elsewhere); the carrier hangs up. Returns the child call's SID.
fn call_alice(fleet: &Fleet, alice: &mut Device, anchor: usize, what: &str) -> String {
    call_alice_at(fleet, US1_A, alice, anchor, what)
}

/// [`call_alice`] with the carrier's call arriving at member `at`.
fn call_alice_at(fleet: &Fleet, at: usize, alice: &mut Device, anchor: usize, what: &str) -> String {
    // Sessions held before the call (a test may fill a dataplane on purpose).
    let held: Vec<usize> =
        (0..MEMBERS.len()).map(|i| if fleet.members[i].app.is_some() { fleet.sessions(i) } else { 0 }).collect();
    let carrier_rtp = fleet.carrier.endpoint().unwrap();
    let mut caller = fleet.carrier_call("uac_call.xml", at, &carrier_rtp, anchor);
    let invite =
        alice.ws.expect("invite", SIGNAL).unwrap_or_else(|e| panic!("{what}: invite: {e:#}\n{}", fleet.context()));
    let child_sid = invite["callsid"].as_str().unwrap_or_default().to_owned();
    assert_eq!(invite["parameters"]["From"], CALLER, "{what}: {invite:#}");
    assert_eq!(invite["parameters"]["To"], "client:alice", "{what}: {invite:#}");
    let toward_alice = sdp_media_addr(invite["sdp"].as_str().unwrap_or_default()).unwrap();
    alice.ws.answer(&plain_rtp_sdp(alice.rtp.local_addr()), &child_sid).unwrap();
    let (toward_carrier, call_id) = answered(&mut caller, fleet);
    let anchor_ip = IpAddr::V4(fleet.members[anchor].ip());
    assert_eq!(toward_carrier.ip(), anchor_ip, "{what}: the carrier sends to the anchor\n{}", fleet.context());
    assert_eq!(toward_alice.ip(), anchor_ip, "{what}: alice sends to the anchor\n{}", fleet.context());
    for (i, (id, _)) in MEMBERS.iter().enumerate() {
        if fleet.members[i].app.is_some() {
            let want = held[i] + usize::from(i == anchor);
            let found = settle(AFTERMATH, || Ok(fleet.sessions(i)), |n| *n == want).unwrap();
            assert_eq!(found, want, "{what}: media sessions on {id}\n{}", fleet.context());
        }
    }
    let before = fleet.members[anchor].app().admin.worker_totals().unwrap().rx_packets;
    call_checks::media_flows(what, (&carrier_rtp, toward_carrier), (&alice.rtp, toward_alice), PACKETS, || {
        fleet.context()
    });
    let counted = fleet.members[anchor].app().admin.worker_totals().unwrap().rx_packets - before;
    assert!(counted >= 2 * PACKETS as u64, "{what}: the anchor's dataplane carried the media: {counted} packets");
    // alice, in the call, is the fleet's only busy device.
    everyone_sees_busy(fleet, 1);
    caller.poke(&call_id, &[("X-Poke", "hangup")]).unwrap();
    let hangup =
        alice.ws.expect("hangup", SIGNAL).unwrap_or_else(|e| panic!("{what}: hangup: {e:#}\n{}", fleet.context()));
    assert_eq!(hangup["callsid"], child_sid.as_str());
    let outcome = caller.wait(SIPP_END).unwrap_or_else(|e| panic!("{e:#}\n{}", fleet.context()));
    assert!(outcome.success(), "{what}: {}\n{}", outcome.report, fleet.context());
    for (i, (id, _)) in MEMBERS.iter().enumerate() {
        if fleet.members[i].app.is_some() {
            let left = settle(AFTERMATH, || Ok(fleet.sessions(i)), |n| *n == held[i]).unwrap();
            assert_eq!(left, held[i], "{what}: sessions left on {id}\n{}", fleet.context());
        }
    }
    nobody_busy(fleet);
    child_sid
}

/// The issue's fleet, in order: a call through one hop with the media
/// anchored where the policy says; the anchor moving off a draining box;
/// a dead box's routes withdrawn everywhere, calls to its client ending at
/// once until the client reconnects elsewhere; presence across the fleet.
#[test]
fn a_fleet_of_four_in_three_regions() {
    let _one = ONE_FLEET.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut fleet = Fleet::new();
    fleet.twiml("/voice", r#"<Response><Dial answerOnBridge="true"><Client>alice</Client></Dial></Response>"#);
    fleet.customer.route("/status", 204, "", Duration::ZERO).unwrap();

    // A watcher on every other appliance follows alice.
    let mut watchers: Vec<(usize, VoiceClient)> = [US1_A, US1_B, AU1]
        .into_iter()
        .map(|i| {
            let mut ws = fleet.listening(i, fleet.members[i].region, &format!("watcher{i}"));
            ws.presence_subscribe(&["alice"]).unwrap();
            let first = ws.expect("presence", SIGNAL).unwrap();
            assert_eq!(first["status"], "offline", "{first:#}");
            (i, ws)
        })
        .collect();

    // alice at de1: every appliance sees her within the propagation time.
    let registered = Instant::now();
    let mut alice = fleet.device(DE1, "de1", "alice");
    for (i, ws) in &mut watchers {
        let seen = presence_becomes(ws, "alice", "available", PROPAGATION);
        let seen = seen.unwrap_or_else(|| panic!("{} never saw alice available\n{}", MEMBERS[*i].0, fleet.context()));
        eprintln!("alice's route reached {} in {:?}", MEMBERS[*i].0, seen - registered);
    }

    // 1. Carrier at us1-a, alice at de1: one hop; de1 and us1-a tie at
    //    45 ms on the path and idle alike: the lower id, de1, anchors.
    let child = call_alice(&fleet, &mut alice, DE1, "us1-a -> de1, anchored at de1");
    let calls =
        call_checks::final_calls(AFTERMATH, 2, || Ok(fleet.rest(US1_A, "calls", json!({}))), || fleet.context());
    let child_record = record(&calls, "sid", &child);
    assert_eq!(child_record["status"], "completed", "{child_record:#}");
    assert_eq!(child_record["to"], "client:alice", "{child_record:#}");

    // 2. de1 draining: it still holds alice, the media moves to us1-a.
    let drained = fleet.members[DE1].app().admin.request("POST", "/drain", Some("on"), SIGNAL).unwrap();
    assert_eq!(drained.status, 200, "draining de1: {}", drained.body);
    std::thread::sleep(PROPAGATION);
    call_alice(&fleet, &mut alice, US1_A, "de1 draining: anchored at us1-a");
    let undrained = fleet.members[DE1].app().admin.request("POST", "/drain", Some("off"), SIGNAL).unwrap();
    assert_eq!(undrained.status, 200, "{}", undrained.body);

    // de1's dataplane full (every session taken through its admin API):
    // the media moves to us1-a the same way; freed, it comes back to de1.
    let de1_admin = &fleet.members[DE1].app().admin;
    let somewhere = SocketAddr::from(([192, 0, 2, 99], 9));
    let request = SessionRequest::new(LegRequest::to(somewhere), LegRequest::to(somewhere));
    let mut taken = Vec::new();
    while let Ok(session) = de1_admin.create_session(&request) {
        taken.push(session.id);
    }
    assert!(!taken.is_empty(), "de1 had room before");
    std::thread::sleep(PROPAGATION);
    call_alice(&fleet, &mut alice, US1_A, "de1 full: anchored at us1-a");
    for id in taken {
        de1_admin.delete_session(id).unwrap();
    }
    std::thread::sleep(PROPAGATION);
    call_alice(&fleet, &mut alice, DE1, "de1 has room again: anchored at de1");

    // 3. de1 dies: alice's route is withdrawn everywhere within 3 s.
    let killed = Instant::now();
    fleet.kill(DE1);
    for (i, ws) in &mut watchers {
        let gone = presence_becomes(ws, "alice", "offline", Duration::from_secs(10));
        let gone = gone.unwrap_or_else(|| panic!("{} kept alice's route\n{}", MEMBERS[*i].0, fleet.context()));
        let took = gone - killed;
        eprintln!("de1's routes withdrawn on {} in {took:?}", MEMBERS[*i].0);
        assert!(
            took <= Duration::from_secs(3) + Duration::from_millis(500),
            "withdrawal on {}: {took:?}",
            MEMBERS[*i].0
        );
    }
    drop(alice);
    // A call to alice now ends at once.
    let rtp = fleet.carrier.endpoint().unwrap();
    let started = Instant::now();
    let refused = fleet
        .carrier_call("uac_refused.xml", US1_A, &rtp, US1_A)
        .wait(SIPP_END)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", fleet.context()));
    let finals: Vec<u16> = refused.statuses_received().into_iter().filter(|s| *s >= 200).collect();
    assert_eq!(finals, [480], "alice present nowhere: {}\n{}", refused.report, fleet.context());
    eprintln!("call to alice present nowhere ended in {:?}", started.elapsed());

    // alice comes back at au1: the next call reaches her there (us1-a and
    // au1 tie at 90 ms on the path: au1 anchors, the lower id).
    let mut alice = fleet.device(AU1, "au1", "alice");
    for (i, ws) in &mut watchers {
        if *i != AU1 {
            assert!(
                presence_becomes(ws, "alice", "available", PROPAGATION).is_some(),
                "{} sees alice at au1",
                MEMBERS[*i].0
            );
        }
    }
    call_alice(&fleet, &mut alice, AU1, "us1-a -> au1 after de1 died");

    // Presence across the fleet: a watcher on us1-b sees alice (on au1)
    // go away and come back within a second.
    alice.ws.presence_set("away").unwrap();
    let (_, watcher_b) = watchers.iter_mut().find(|(i, _)| *i == US1_B).unwrap();
    assert!(presence_becomes(watcher_b, "alice", "away", Duration::from_secs(1)).is_some(), "{}", fleet.context());
    alice.ws.presence_set("available").unwrap();
    assert!(presence_becomes(watcher_b, "alice", "available", Duration::from_secs(1)).is_some(), "{}", fleet.context());

    // 4. au1 cut off (its line drops everything; alice stays connected to
    //    au1 within the region): us1-a and us1-b withdraw its routes within
    //    3 s, as for a dead box.
    let cut = Instant::now();
    fleet.wan.cut("au1").unwrap();
    for (i, ws) in watchers.iter_mut().filter(|(i, _)| *i != AU1) {
        let gone = presence_becomes(ws, "alice", "offline", Duration::from_secs(10));
        let gone = gone.unwrap_or_else(|| panic!("{} kept au1's routes\n{}", MEMBERS[*i].0, fleet.context()));
        let took = gone - cut;
        eprintln!("au1 cut off: its routes withdrawn on {} in {took:?}", MEMBERS[*i].0);
        assert!(
            took <= Duration::from_secs(3) + Duration::from_millis(500),
            "withdrawal on {}: {took:?}",
            MEMBERS[*i].0
        );
    }
    // Healed: alice's route on au1 comes back everywhere, and the next call
    // reaches her there (nothing stale from the partition).
    let healed = Instant::now();
    fleet.wan.heal("au1").unwrap();
    for (i, ws) in watchers.iter_mut().filter(|(i, _)| *i != AU1) {
        let back = presence_becomes(ws, "alice", "available", Duration::from_secs(10));
        let back = back.unwrap_or_else(|| panic!("{} never saw alice again\n{}", MEMBERS[*i].0, fleet.context()));
        eprintln!("au1 healed: alice's route back on {} in {:?}", MEMBERS[*i].0, back - healed);
    }
    call_alice(&fleet, &mut alice, AU1, "us1-a -> au1 after the partition healed");

    // The delays above were real: the lines carried the regions' traffic.
    for (region, _) in SPOKES {
        let stats = fleet.wan.line_stats(region).unwrap();
        eprintln!("{region}'s line: {stats:?}");
        assert!(stats.forwarded > 0, "{region}: {stats:?}");
    }
}

/// Endings and faults across the fleet: the far client hangs up first; the
/// carrier cancels while the far client rings; a forged fleet INVITE, junk
/// on the gossip port and an appliance with another fleet key are all
/// refused and counted.
#[test]
fn fleet_endings_and_refusals() {
    let _one = ONE_FLEET.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut fleet = Fleet::new();
    fleet.twiml("/voice", r#"<Response><Dial answerOnBridge="true"><Client>alice</Client></Dial></Response>"#);
    fleet.customer.route("/status", 204, "", Duration::ZERO).unwrap();
    let mut watcher = fleet.listening(US1_A, "us1", "watcher");
    watcher.presence_subscribe(&["alice"]).unwrap();
    watcher.expect("presence", SIGNAL).unwrap();
    let mut alice = fleet.device(DE1, "de1", "alice");
    assert!(presence_becomes(&mut watcher, "alice", "available", PROPAGATION).is_some(), "{}", fleet.context());

    // alice hangs up first: the carrier gets BYE, every session goes.
    let carrier_rtp = fleet.carrier.endpoint().unwrap();
    let mut caller = fleet.carrier_call("uac_call.xml", US1_A, &carrier_rtp, DE1);
    let invite = alice.ws.expect("invite", SIGNAL).unwrap_or_else(|e| panic!("invite: {e:#}\n{}", fleet.context()));
    let child = invite["callsid"].as_str().unwrap_or_default().to_owned();
    alice.ws.answer(&plain_rtp_sdp(alice.rtp.local_addr()), &child).unwrap();
    answered(&mut caller, &fleet);
    everyone_sees_busy(&fleet, 1);
    alice.ws.hangup(&child).unwrap();
    let outcome = caller.wait(SIPP_END).unwrap_or_else(|e| panic!("{e:#}\n{}", fleet.context()));
    assert!(outcome.success(), "the carrier is hung up on: {}\n{}", outcome.report, fleet.context());
    assert!(outcome.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("received")), "{}", outcome.report);
    for (i, (id, _)) in MEMBERS.iter().enumerate() {
        let left = settle(AFTERMATH, || Ok(fleet.sessions(i)), |n| *n == 0).unwrap();
        assert_eq!(left, 0, "sessions left on {id}\n{}", fleet.context());
    }
    let calls =
        call_checks::final_calls(AFTERMATH, 2, || Ok(fleet.rest(US1_A, "calls", json!({}))), || fleet.context());
    assert_eq!(record(&calls, "sid", &child)["status"], "completed");
    nobody_busy(&fleet);
    // (alice is ringable again: the next call rings her.)

    // A client places the call: bob on us1-b dials alice on de1 (the
    // application's `<Dial><Client>alice`): one hop, media anchored at de1
    // (45 ms tie on the path, the lower id), bob's own leg untouched.
    let mut bob = fleet.device(US1_B, "us1", "bob");
    bob.ws.invite(&plain_rtp_sdp(bob.rtp.local_addr()), &temp_call_sid(), &[("To", "alice")]).unwrap();
    let invite = alice.ws.expect("invite", SIGNAL).unwrap_or_else(|e| panic!("bob's call: {e:#}\n{}", fleet.context()));
    let child = invite["callsid"].as_str().unwrap_or_default().to_owned();
    assert_eq!(invite["parameters"]["From"], "client:bob", "{invite:#}");
    alice.ws.answer(&plain_rtp_sdp(alice.rtp.local_addr()), &child).unwrap();
    let answer = bob.ws.expect("answer", SIGNAL).unwrap_or_else(|e| panic!("bob's answer: {e:#}\n{}", fleet.context()));
    let toward_bob = sdp_media_addr(answer["sdp"].as_str().unwrap_or_default()).unwrap();
    let toward_alice = sdp_media_addr(invite["sdp"].as_str().unwrap_or_default()).unwrap();
    let de1_ip = IpAddr::V4(fleet.members[DE1].ip());
    assert_eq!((toward_bob.ip(), toward_alice.ip()), (de1_ip, de1_ip), "anchored at de1\n{}", fleet.context());
    assert_eq!(fleet.sessions(US1_B), 0, "us1-b relays nothing");
    call_checks::media_flows(
        "bob -> alice across",
        (&bob.rtp, toward_bob),
        (&alice.rtp, toward_alice),
        PACKETS,
        || fleet.context(),
    );
    // Both in the call: bob (placing it, on us1-b) and alice (on de1).
    everyone_sees_busy(&fleet, 2);
    bob.ws.hangup(answer["callsid"].as_str().unwrap_or_default()).unwrap();
    let hangup = alice.ws.expect("hangup", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", fleet.context()));
    assert_eq!(hangup["callsid"], child.as_str());
    for (i, (id, _)) in MEMBERS.iter().enumerate() {
        let left = settle(AFTERMATH, || Ok(fleet.sessions(i)), |n| *n == 0).unwrap();
        assert_eq!(left, 0, "sessions left on {id} after bob's call\n{}", fleet.context());
    }
    nobody_busy(&fleet);

    // A call for the number arriving in another region (au1) works the
    // same: one hop to de1; au1 and de1 tie at 135 ms on the path, the
    // lower id (au1) anchors.
    call_alice_at(&fleet, AU1, &mut alice, AU1, "au1 -> de1, anchored at au1");

    // The carrier gives up while alice rings at de1: she gets `cancel`.
    let rtp = fleet.carrier.endpoint().unwrap();
    let cancelling = fleet.carrier_call("uac_cancel.xml", US1_A, &rtp, US1_A);
    let invite = alice.ws.expect("invite", SIGNAL).unwrap_or_else(|e| panic!("invite: {e:#}\n{}", fleet.context()));
    let cancel = alice.ws.expect("cancel", SIGNAL).unwrap_or_else(|e| panic!("cancel: {e:#}\n{}", fleet.context()));
    assert_eq!(cancel["callsid"], invite["callsid"]);
    let outcome = cancelling.wait(SIPP_END).unwrap_or_else(|e| panic!("{e:#}\n{}", fleet.context()));
    assert!(outcome.logs.iter().any(|l| l.event == "cancelled"), "the carrier's 487: {}", outcome.report);

    // A fleet INVITE with a forged proof, straight to de1's SIP over TCP.
    let forged = format!(
        "INVITE sip:alice@{de1} SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.14:5099;branch=z9hG4bK-forged\r\n\
         From: <sip:evil@192.0.2.14>;tag=f1\r\nTo: <sip:alice@{de1}>\r\nCall-ID: forged-1@192.0.2.14\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:evil@192.0.2.14:5099;transport=tcp>\r\nMax-Forwards: 70\r\n\
         X-Bh-Fleet: bh-us1-a;ts=1;sig=00\r\nX-Bh-Account: {ACCOUNT}\r\nX-Bh-Identity: alice\r\n\
         X-Bh-Media: pass\r\nContent-Length: 0\r\n\r\n",
        de1 = fleet.members[DE1].sip()
    );
    let de1_sip = fleet.members[DE1].sip();
    let answer = fleet
        .carrier
        .ns
        .run_in(move || -> std::io::Result<String> {
            use std::io::{Read, Write};
            let mut tcp = std::net::TcpStream::connect_timeout(&de1_sip, SIGNAL)?;
            tcp.set_read_timeout(Some(SIGNAL))?;
            tcp.write_all(forged.as_bytes())?;
            let mut got = String::new();
            let mut buf = [0u8; 2048];
            while !got.contains("\r\n\r\n") {
                let n = tcp.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            Ok(got)
        })
        .unwrap()
        .expect("de1 answers the forged INVITE");
    assert!(answer.starts_with("SIP/2.0 403"), "forged fleet INVITE: {answer}");
    assert!(alice.ws.next_frame(Duration::from_millis(300)).is_err(), "alice never rang: {:?}", alice.ws.queued());
    let metrics = fleet.members[DE1].app().admin.metrics().unwrap();
    assert_eq!(metric_sum(&metrics, "bridgehead_fleet_sip_refused"), Some(1), "counted");
    // The calls above crossed over TLS, de1's certificate trusted by the
    // hash its sealed announcement carries (no CA, no name checked).
    let taken = |transport: &str| {
        let label = format!("transport=\"{transport}\"");
        metric_sum_with(&metrics, "bridgehead_fleet_client_legs", &label).unwrap_or(0)
    };
    assert!(taken("tls") >= 2 && taken("tcp") == 0, "fleet SIP over TLS: tls {}, tcp {}", taken("tls"), taken("tcp"));

    // A key deleted through us1-a (the fleet's store): its client on de1 is
    // told (31204) and disconnected; clients of other keys stay.
    let mut doomed = fleet.listening_with(DE1, "de1", "carol", &mint_with(KEY_DOOMED, SECRET_DOOMED, "carol"));
    let deleted = fleet.rest(US1_A, "delete_key", json!({"sid": KEY_DOOMED}));
    assert_eq!(deleted["deleted"], true, "{deleted:#}");
    let error = doomed.expect("error", SIGNAL).unwrap_or_else(|e| panic!("carol told: {e:#}\n{}", fleet.context()));
    assert_eq!(error["error"]["code"], 31204, "{error:#}");
    doomed.expect_closed(SIGNAL).unwrap();
    assert!(alice.ws.expect_closed(Duration::from_millis(500)).is_err(), "alice (another key) stays connected");

    // Junk on us1-a's gossip port, and an appliance with another fleet key.
    let gossip = SocketAddr::from((fleet.members[US1_A].ip(), GOSSIP_PORT));
    fleet
        .carrier
        .ns
        .run_in(move || {
            let udp = std::net::UdpSocket::bind("192.0.2.14:0").unwrap();
            udp.send_to(b"not a sealed gossip datagram", gossip).unwrap();
        })
        .unwrap();
    let rogue_ns = fleet.lan_peer("rogue");
    let mut rogue = ApplianceConfig::sockets(IpAddr::V4(rogue_ns.ip));
    rogue.id = "bh-rogue".into();
    rogue.region = "us1".into();
    rogue.workers = 1;
    rogue.extra = format!(
        "[peers]\nlisten = \"{}:{GOSSIP_PORT}\"\nseeds = [\"{gossip}\"]\nfleet_key = \"another-fleet-key-0123456789\"\n",
        rogue_ns.ip
    );
    let _rogue = Appliance::start(rogue, Some(&rogue_ns.ns)).expect("the rogue appliance");
    let us1_a = &fleet.members[US1_A].app().admin;
    let refused = |reason: &str| {
        let text = us1_a.metrics().unwrap_or_default();
        metric_sum_with(&text, "bridgehead_gossip_datagrams_refused", &format!("reason=\"{reason}\"")).unwrap_or(0)
    };
    let unauthentic = settle(AFTERMATH, || Ok(refused("unauthentic")), |n| *n > 0).unwrap();
    assert!(unauthentic > 0, "the rogue's gossip refused\n{}", fleet.context());
    assert!(refused("malformed") > 0, "the junk datagram counted");
    let peers = metric_sum(&us1_a.metrics().unwrap(), "bridgehead_fleet_peers");
    assert_eq!(peers, Some(3), "the rogue never joins: {peers:?}");
}
