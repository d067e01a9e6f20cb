//! Calls end to end: a carrier's INVITE to a number, the customer app's
//! TwiML, `<Dial><Number>` out through the trunk to a callee, the media
//! anchored in the dataplane, and everything the app and the REST API see.
//!
//! ```text
//!  carrier  192.0.2.10  sipp uac_*.xml :5070, RTP endpoint ─┐
//!  callee   192.0.2.11  sipp uas_callee.xml :5080, RTP      ├─ br0 ─ app namespace: bridgehead
//!  stranger 192.0.2.12  sipp (no trunk allows it)          ─┘        (SIP :5060 udp/tcp, :5061 tls,
//!                                                                     media 192.0.2.1, admin, REST :8443)
//!                                                                     customer_app.py on 127.0.0.1
//! ```
//!
//! The trunk allows 192.0.2.10 and sends `<Number>`s to sip:192.0.2.11:5080,
//! where one sipp answers as the number dialed says (uas_callee.xml). Every
//! SDP the sipps receive must carry the appliance's media address (checked
//! in the scenarios); RTP endpoints send G.711 to the addresses those SDPs
//! gave and check the payloads at the other end. The app's requests (and
//! their signatures, checked by Twilio's `RequestValidator`) come from the
//! customer app's log; call records from the REST API through Twilio's
//! Python helper library.
//!
//! Needs root, sipp (Debian `sip-tester`) and python3 with `twilio`
//! (scripts/test.sh provides them); fails rather than skips without them.

use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;
use test_harness::admin::{metric_sum_with, SessionInfo};
use test_harness::appliance::{Appliance, ApplianceConfig, ScratchDir};
use test_harness::call_checks::{self, record};
use test_harness::customer_app::{AppRequest, CustomerApp, Route};
use test_harness::netns::Netns;
use test_harness::rtp::RtpEndpoint;
use test_harness::settle;
use test_harness::sipp::{LogLine, Sipp, SippOutcome, SippRun, Transport};
use test_harness::topology::{MediaLan, Peer, MEDIA_IP};
use test_harness::twilio_py::RestClient;

const ACCOUNT: &str = "AC0000000000000000000000000000ca11";
const TOKEN: &str = "calls-e2e-auth-token";
/// Voice URL `/voice`, fallback `/fallback`, status callback `/status`.
const APP_MAIN: &str = "AP0000000000000000000000000000ca01";
/// Voice URL `/bare`, no fallback, status callback `/bare-status`.
const APP_BARE: &str = "AP0000000000000000000000000000ca02";

/// The number whose calls go to [`APP_MAIN`].
const NUMBER: &str = "+15550100001";
/// The number whose calls go to [`APP_BARE`].
const NUMBER_BARE: &str = "+15550100009";
/// Nobody's number.
const UNKNOWN_NUMBER: &str = "+15550100999";
/// Who calls (the From of the carrier's INVITE).
const CALLER: &str = "+15550100002";
/// Numbers behind the trunk, answered by uas_callee.xml as it says.
const CALLEE: &str = "+15550100003";
const BUSY: &str = "+15550100486";
const RINGS: &str = "+15550100180";

const SIP_UDP: SocketAddr = SocketAddr::new(IpAddr::V4(MEDIA_IP), 5060);
const SIP_TLS: SocketAddr = SocketAddr::new(IpAddr::V4(MEDIA_IP), 5061);
const CARRIER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const CALLEE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const CARRIER_SIP_PORT: u16 = 5070;
const CALLEE_SIP_PORT: u16 = 5080;
const HTTPS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443);
/// Where the TLS relay (sipp's way to TLS) listens, in the carrier's namespace.
const TLS_RELAY_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(CARRIER_IP), 5062);

/// A signaling step (a response, a request relayed) must come within this.
const SIGNAL: Duration = Duration::from_secs(15);
/// A sipp run must end within this once its call should be over.
const SIPP_END: Duration = Duration::from_secs(30);
/// Records, callbacks and media teardown follow the call within this.
const AFTERMATH: Duration = Duration::from_secs(15);
const PACKETS: usize = 50;

/// A TLS client relay for sipp, which Debian builds without TLS: accepts
/// TCP on LISTEN_IP:LISTEN_PORT and carries each connection over TLS to
/// TARGET (source address LISTEN_IP), trusting CAFILE (the appliance's
/// certificate, which names the media address TARGET). Prints "listening", then "tls <version> <cipher>" per
/// connection. One thread per connection, one select loop (an SSL object
/// is not used from two threads at once), the TLS side non-blocking.
const TLS_RELAY: &str = r#"
import select, socket, ssl, sys, threading
listen_ip, listen_port, target_ip, target_port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
ctx = ssl.create_default_context(cafile=cafile)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((listen_ip, listen_port))
server.listen(8)
print("listening", flush=True)

def send_all(sock, data):
    while data:
        try:
            data = data[sock.send(data):]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            select.select([], [sock], [], 1)

def relay(plain, tls):
    # The TLS side is non-blocking: a record that is no application data
    # (a TLS 1.3 session ticket) wakes select, and a blocking recv would
    # then wait for data that may never come instead of serving the other side.
    tls.setblocking(False)
    try:
        while True:
            ready = [tls] if tls.pending() else select.select([plain, tls], [], [])[0]
            for s in ready:
                try:
                    data = s.recv(65536)
                except ssl.SSLWantReadError:
                    continue
                if not data:
                    return
                send_all(tls if s is plain else plain, data)
    except OSError:
        pass
    finally:
        plain.close()
        tls.close()

while True:
    plain, _ = server.accept()
    raw = socket.create_connection((target_ip, target_port), source_address=(listen_ip, 0))
    tls = ctx.wrap_socket(raw, server_hostname=target_ip)
    print("tls", tls.version(), tls.cipher()[0], flush=True)
    threading.Thread(target=relay, args=(plain, tls), daemon=True).start()
"#;

fn accounts(app: &CustomerApp, outbound: &str) -> String {
    format!(
        r#"
[[accounts]]
sid = "{ACCOUNT}"
auth_token = "{TOKEN}"
[[accounts.applications]]
sid = "{APP_MAIN}"
voice_url = "{voice}"
voice_method = "POST"
voice_fallback_url = "{fallback}"
status_callback = "{status}"
[[accounts.applications]]
sid = "{APP_BARE}"
voice_url = "{bare}"
status_callback = "{bare_status}"
[[accounts.numbers]]
number = "{NUMBER}"
application = "{APP_MAIN}"
[[accounts.numbers]]
number = "{NUMBER_BARE}"
application = "{APP_BARE}"
[[accounts.trunks]]
name = "carrier"
allow = ["{CARRIER_IP}/32"]
outbound = "{outbound}"
"#,
        voice = app.url("/voice"),
        fallback = app.url("/fallback"),
        status = app.url("/status"),
        bare = app.url("/bare"),
        bare_status = app.url("/bare-status"),
    )
}

/// How the caller's sipp reaches the appliance.
#[derive(Debug, Clone, Copy)]
enum Signaling {
    Udp,
    Tcp,
    /// sipp over TCP to a TLS relay at this address, the relay over TLS to :5061.
    TlsVia(SocketAddr),
}

struct Rig {
    // Dropped in this order: the processes before the namespaces.
    app: Appliance,
    customer: CustomerApp,
    carrier: Peer,
    callee: Peer,
    stranger: Peer,
    lan: MediaLan,
}

/// The parties of one call from the carrier.
struct Parties {
    caller: SippRun,
    callee: SippRun,
    carrier_rtp: RtpEndpoint,
    callee_rtp: RtpEndpoint,
}

/// A bridged call: where the appliance told each party to send media.
#[derive(Debug, Clone)]
struct Bridged {
    caller_call_id: String,
    callee_call_id: String,
    toward_caller: SocketAddr,
    toward_callee: SocketAddr,
}

impl Rig {
    /// The trunk sends `<Number>`s to sip:192.0.2.11:5080 over UDP.
    fn new() -> Rig {
        Rig::with_outbound(&format!("sip:{CALLEE_IP}:{CALLEE_SIP_PORT}"))
    }

    fn with_outbound(outbound: &str) -> Rig {
        Rig::configured(outbound, "", |_| {})
    }

    /// The trunk sends `<Number>`s to `outbound`, with `trunk_keys` (TOML
    /// lines) added to its table; `tune` changes the rest of the
    /// appliance's configuration (sections go at the end of `extra`).
    fn configured(outbound: &str, trunk_keys: &str, tune: impl FnOnce(&mut ApplianceConfig)) -> Rig {
        let mut lan = MediaLan::new().expect("media LAN (the end-to-end tests need root)");
        let carrier = lan.add_peer("carrier").expect("carrier");
        let callee = lan.add_peer("callee").expect("callee");
        let stranger = lan.add_peer("stranger").expect("stranger");
        assert_eq!((carrier.ip, callee.ip), (CARRIER_IP, CALLEE_IP), "the trunk's addresses");
        let customer = CustomerApp::start_in(Some(&lan.app), IpAddr::V4(Ipv4Addr::LOCALHOST), TOKEN)
            .expect("customer app (python3 with the twilio package)");
        let mut config = ApplianceConfig::sockets(lan.media_ip());
        config.https = Some(HTTPS);
        config.extra = accounts(&customer, outbound) + trunk_keys;
        tune(&mut config);
        let app = Appliance::start(config, Some(&lan.app)).expect("appliance");
        Rig { app, customer, carrier, callee, stranger, lan }
    }

    // ------------------------------------------------------------ the app

    fn twiml(&self, path: &str, body: &str) {
        self.customer.set_route(&Route::twiml(path, body)).unwrap();
    }

    /// Status callback paths answer 204.
    fn accept_callbacks(&self, paths: &[&str]) {
        for path in paths {
            self.customer.route(path, 204, "", Duration::ZERO).unwrap();
        }
    }

    /// The one request `path` received (fails on none or several).
    fn only_request(&self, path: &str) -> AppRequest {
        let found = self.customer.wait_requests(path, 1, AFTERMATH).unwrap();
        assert_eq!(found.len(), 1, "requests on {path}: {found:#?}\n{}", self.context());
        found.into_iter().next().unwrap()
    }

    /// Waits for `count` requests on `path` and checks there are exactly
    /// that many.
    fn exactly_requests(&self, path: &str, count: usize) -> Vec<AppRequest> {
        let found = self.customer.wait_requests(path, count, AFTERMATH).unwrap();
        assert_eq!(found.len(), count, "requests on {path}: {found:#?}\n{}", self.context());
        found
    }

    // ------------------------------------------------------------ sipp

    /// The carrier's caller: `scenario` calling `number` over UDP.
    fn caller(&self, scenario: &str, number: &str, rtp: &RtpEndpoint) -> SippRun {
        self.caller_over(scenario, number, rtp, Signaling::Udp)
    }

    fn caller_over(&self, scenario: &str, number: &str, rtp: &RtpEndpoint, signaling: Signaling) -> SippRun {
        self.caller_from(&self.carrier, scenario, number, rtp, signaling)
    }

    fn caller_from(
        &self,
        peer: &Peer,
        scenario: &str,
        number: &str,
        rtp: &RtpEndpoint,
        signaling: Signaling,
    ) -> SippRun {
        let (transport, connect, target, tr) = match signaling {
            Signaling::Udp => (Transport::Udp, SIP_UDP, SIP_UDP, "UDP"),
            Signaling::Tcp => (Transport::Tcp, SIP_UDP, SIP_UDP, "TCP"),
            Signaling::TlsVia(relay) => (Transport::Tcp, relay, SIP_TLS, "TLS"),
        };
        Sipp::new(scenario, SocketAddr::new(IpAddr::V4(peer.ip), CARRIER_SIP_PORT))
            .remote(connect)
            .transport(transport)
            .service(number)
            .key("caller", CALLER)
            .key("target", target)
            .key("rtp_ip", rtp.local_addr().ip())
            .key("rtp_port", rtp.local_addr().port())
            .key("tr", tr)
            .key("tr_param", tr.to_ascii_lowercase())
            .set("media_ip", MEDIA_IP)
            .start_in(&peer.ns)
            .unwrap_or_else(|e| panic!("starting the caller's sipp: {e:#}\n{}", self.context()))
    }

    /// The callee behind the trunk, taking `calls` calls.
    fn callee(&self, rtp: &RtpEndpoint, calls: u32, transport: Transport) -> SippRun {
        let tr = if transport == Transport::Tcp { "TCP" } else { "UDP" };
        Sipp::new("uas_callee.xml", SocketAddr::new(IpAddr::V4(self.callee.ip), CALLEE_SIP_PORT))
            .transport(transport)
            .calls(calls)
            .key("rtp_ip", rtp.local_addr().ip())
            .key("rtp_port", rtp.local_addr().port())
            .key("tr", tr)
            .key("tr_param", tr.to_ascii_lowercase())
            .set("media_ip", MEDIA_IP)
            .start_in(&self.callee.ns)
            .unwrap_or_else(|e| panic!("starting the callee's sipp: {e:#}\n{}", self.context()))
    }

    /// Starts the callee (taking `callee_calls` calls), then the carrier's
    /// call to `number` with `scenario`, both over UDP.
    fn dial_in(&self, scenario: &str, number: &str, callee_calls: u32) -> Parties {
        self.dial_in_over(scenario, number, callee_calls, Signaling::Udp, Transport::Udp)
    }

    fn dial_in_over(
        &self,
        scenario: &str,
        number: &str,
        callee_calls: u32,
        signaling: Signaling,
        callee_transport: Transport,
    ) -> Parties {
        let carrier_rtp = self.carrier.endpoint().unwrap();
        let callee_rtp = self.callee.endpoint().unwrap();
        let callee = self.callee(&callee_rtp, callee_calls, callee_transport);
        let caller = self.caller_over(scenario, number, &carrier_rtp, signaling);
        Parties { caller, callee, carrier_rtp, callee_rtp }
    }

    /// A `<log>` line of `run` that `matches`, or a failure with everything known.
    fn expect_log(&self, run: &mut SippRun, what: &str, matches: impl Fn(&LogLine) -> bool) -> LogLine {
        run.wait_log(SIGNAL, matches).unwrap_or_else(|e| panic!("{what}: {e:#}\n{}", self.context()))
    }

    /// Waits for sipp to end and checks every call went through its scenario.
    fn finished(&self, run: SippRun, what: &str) -> SippOutcome {
        let outcome = run.wait(SIPP_END).unwrap_or_else(|e| panic!("{what}: {e:#}\n{}", self.context()));
        assert!(outcome.success(), "{what}: sipp failed ({})\n{}\n{}", outcome.status, outcome.report, self.context());
        outcome
    }

    /// A refused call's final status (uac_refused.xml), after sipp ended.
    fn refused_with(&self, run: SippRun, what: &str) -> u16 {
        let outcome = self.finished(run, what);
        let finals: Vec<u16> = outcome.statuses_received().into_iter().filter(|s| *s >= 200).collect();
        let logged = outcome.logs.iter().find(|l| l.event == "final").and_then(|l| l.get("status")?.parse().ok());
        assert_eq!(logged, finals.first().copied(), "the final status in the log and the trace:\n{}", outcome.report);
        logged.unwrap_or_else(|| panic!("{what}: no final status\n{}", outcome.report))
    }

    // ------------------------------------------------------------ media

    /// Follows one call from the callee's INVITE for `dialed` to the bridge:
    /// the SDPs carry the appliance's media address, the dataplane session
    /// joins the two RTP endpoints on exactly those addresses, and media
    /// flows both ways.
    fn bridged(&self, p: &mut Parties, dialed: &str) -> Bridged {
        let invite = p
            .callee
            .wait_log(SIGNAL, |l| {
                l.event == "sdp" && l.get("event") == Some("invite") && l.get("dialed") == Some(dialed)
            })
            .unwrap_or_else(|e| {
                panic!("the appliance's INVITE for {dialed}: {e:#}\n{}\n{}", p.caller.report(), self.context())
            });
        let callee_call_id = invite.get("call_id").unwrap().to_owned();
        let answer =
            p.caller.wait_log(SIGNAL, |l| l.event == "sdp" && l.get("event") == Some("200")).unwrap_or_else(|e| {
                panic!("the appliance's 200 to the caller: {e:#}\n{}\n{}", p.callee.report(), self.context())
            });
        let caller_call_id = answer.get("call_id").unwrap().to_owned();
        let toward_caller = answer.media().unwrap_or_else(|| panic!("no c=/m= in {answer:?}"));
        let toward_callee = invite.media().unwrap_or_else(|| panic!("no c=/m= in {invite:?}"));
        assert_eq!(toward_caller.ip(), IpAddr::V4(MEDIA_IP), "the SDP to the caller: {answer:?}");
        assert_eq!(toward_callee.ip(), IpAddr::V4(MEDIA_IP), "the SDP to the callee: {invite:?}");
        assert_eq!(invite.get("from"), Some(CALLER), "the caller ID passed to the callee: {invite:?}");
        self.expect_log(&mut p.callee, "the appliance's ACK to the callee", |l| {
            l.event == "acked" && l.get("call_id") == Some(callee_call_id.as_str())
        });
        let session = self.session_joining(p.carrier_rtp.local_addr(), p.callee_rtp.local_addr());
        assert_eq!(
            (session.legs[0].local, session.legs[1].local),
            (toward_caller, toward_callee),
            "the dataplane session's addresses are the ones the SDPs gave: {session:#?}"
        );
        self.media_flows("bridged", p, toward_caller, toward_callee);
        Bridged { caller_call_id, callee_call_id, toward_caller, toward_callee }
    }

    /// The dataplane session with the caller's endpoint on side 0 and the
    /// callee's on side 1.
    fn session_joining(&self, carrier: SocketAddr, callee: SocketAddr) -> SessionInfo {
        let joins = |s: &SessionInfo| s.legs[0].remote == Some(carrier) && s.legs[1].remote == Some(callee);
        let list = settle(SIGNAL, || self.app.admin.sessions(), |l| l.sessions.iter().any(joins)).unwrap();
        let found = list.sessions.iter().find(|s| joins(s)).cloned();
        found.unwrap_or_else(|| {
            panic!(
                "no dataplane session joins the caller's {carrier} (side 0) and the callee's {callee} (side 1): \
                 {list:#?}\n{}",
                self.context()
            )
        })
    }

    /// Sends PACKETS G.711 packets each way and checks they arrive, payload
    /// intact, from the appliance's addresses.
    fn media_flows(&self, what: &str, p: &Parties, toward_caller: SocketAddr, toward_callee: SocketAddr) {
        let a = (&p.carrier_rtp, toward_caller);
        let b = (&p.callee_rtp, toward_callee);
        call_checks::media_flows(what, a, b, PACKETS, || self.context());
    }

    /// Waits until the dataplane holds no session (the call's media is freed).
    fn no_media_left(&self) {
        let list = settle(AFTERMATH, || self.app.admin.sessions(), |l| l.count == 0).unwrap();
        assert_eq!(list.count, 0, "media sessions left after the call: {list:#?}\n{}", self.context());
    }

    // ------------------------------------------------------------ REST

    fn rest(&self, op: &str, args: Value) -> Value {
        let cafile = self.app.state_dir().join("tls/cert.pem");
        // The generated certificate names 127.0.0.1 (and localhost, which a
        // fresh machine may not resolve).
        let client = RestClient {
            netns: Some(&self.lan.app),
            base: format!("https://{HTTPS}"),
            account: ACCOUNT.into(),
            token: TOKEN.into(),
            cafile: &cafile,
        };
        client.run(op, &args).unwrap_or_else(|e| panic!("{e:#}\n{}", self.context()))
    }

    /// The call records, once `count` of them are final.
    fn final_calls(&self, count: usize) -> Vec<Value> {
        call_checks::final_calls(AFTERMATH, count, || Ok(self.rest("calls", serde_json::json!({}))), || self.context())
    }

    fn poke(&self, run: &SippRun, call_id: &str, poke: &str) {
        run.poke(call_id, &[("X-Poke", poke)]).unwrap_or_else(|e| panic!("poke {poke}: {e:#}\n{}", self.context()));
    }

    /// What the appliance logged and what the app received, for failures.
    fn context(&self) -> String {
        call_checks::context(&self.app, &self.customer, &["sip", "call", "webhook"])
    }
}

/// The parent call's SID, as the voice URL request gave it.
fn call_sid(request: &AppRequest) -> String {
    let sid = request.param("CallSid").unwrap_or_default().to_owned();
    assert!(sid.starts_with("CA") && sid.len() == 34, "CallSid {sid:?} in {request:#?}");
    sid
}

/// Checks a request carried Twilio's voice parameters for this call.
fn assert_voice_request(r: &AppRequest, sid: &str, status: &str, direction: &str, from: &str, to: &str) {
    assert!(r.signature_valid, "X-Twilio-Signature refused by the app: {r:#?}");
    let got: Vec<Option<&str>> =
        ["CallSid", "AccountSid", "CallStatus", "Direction", "From", "To", "ApiVersion"].map(|k| r.param(k)).to_vec();
    let want: Vec<Option<&str>> =
        [Some(sid), Some(ACCOUNT), Some(status), Some(direction), Some(from), Some(to), Some("2010-04-01")].to_vec();
    assert_eq!(got, want, "CallSid, AccountSid, CallStatus, Direction, From, To, ApiVersion of {r:#?}");
}

/// Checks status callbacks: signed, numbered from 0 in order, with these
/// statuses, for call `sid`; the final one with `CallDuration`.
fn assert_callbacks(found: &[AppRequest], sid: &str, statuses: &[&str]) {
    let mut sorted: Vec<&AppRequest> = found.iter().collect();
    sorted.sort_by_key(|r| r.param("SequenceNumber").and_then(|n| n.parse::<u32>().ok()).unwrap_or(u32::MAX));
    let seen: Vec<(Option<&str>, Option<&str>)> =
        sorted.iter().map(|r| (r.param("SequenceNumber"), r.param("CallStatus"))).collect();
    let numbers: Vec<String> = (0..statuses.len()).map(|n| n.to_string()).collect();
    let want: Vec<(Option<&str>, Option<&str>)> =
        numbers.iter().zip(statuses).map(|(n, s)| (Some(n.as_str()), Some(*s))).collect();
    assert_eq!(seen, want, "status callbacks (SequenceNumber, CallStatus): {found:#?}");
    for r in &sorted {
        assert!(r.signature_valid, "status callback signature refused: {r:#?}");
        assert_eq!(r.method, "POST", "{r:#?}");
        assert_eq!(r.param("CallSid"), Some(sid), "{r:#?}");
        assert_eq!(r.param("AccountSid"), Some(ACCOUNT), "{r:#?}");
        assert_eq!(r.param("CallbackSource"), Some("call-progress-events"), "{r:#?}");
        assert!(r.param("Timestamp").is_some_and(|t| t.ends_with("+0000")), "Timestamp (RFC 2822): {r:#?}");
    }
    let last = sorted.last().unwrap();
    assert!(last.param("CallDuration").and_then(|d| d.parse::<u64>().ok()).is_some(), "CallDuration: {last:#?}");
}

/// A record's whole seconds, as the REST API gives them.
fn duration(call: &Value) -> u64 {
    call["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or_else(|| panic!("no duration in {call:#}"))
}

fn assert_record(call: &Value, status: &str, direction: &str, from: &str, to: &str) {
    let got = (call["status"].as_str(), call["direction"].as_str(), call["from"].as_str(), call["to"].as_str());
    assert_eq!(got, (Some(status), Some(direction), Some(from), Some(to)), "status, direction, from, to of {call:#}");
    assert_eq!(call["account_sid"], ACCOUNT, "{call:#}");
    assert!(call["start_time"].is_string() && call["end_time"].is_string(), "start and end times: {call:#}");
}

// ---------------------------------------------------------------- tests

/// The issue's main path: the carrier calls a number, the app dials a
/// number through the trunk, media flows both ways through the dataplane
/// (the appliance's address in every SDP), the caller hangs up; the
/// webhooks, status callbacks and call records say so.
#[test]
fn carrier_call_dials_a_number_media_flows_both_ways_and_the_caller_hangs_up() {
    let rig = Rig::new();
    rig.twiml(
        "/voice",
        &format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Dial><Number statusCallback="/child-status" statusCallbackEvent="initiated ringing answered completed">{CALLEE}</Number></Dial></Response>"#
        ),
    );
    rig.accept_callbacks(&["/status", "/child-status"]);
    let mut p = rig.dial_in("uac_call.xml", NUMBER, 1);
    let call = rig.bridged(&mut p, CALLEE);

    rig.poke(&p.caller, &call.caller_call_id, "hangup");
    let caller = rig.finished(p.caller, "caller");
    assert!(caller.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("sent")), "{}", caller.report);
    let callee = rig.finished(p.callee, "callee");
    assert!(
        callee.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("received")),
        "the callee got the caller's BYE:\n{}",
        callee.report
    );
    rig.no_media_left();

    let voice = rig.only_request("/voice");
    let sid = call_sid(&voice);
    assert_eq!(voice.method, "POST");
    assert_voice_request(&voice, &sid, "ringing", "inbound", CALLER, NUMBER);

    let calls = rig.final_calls(2);
    let parent = record(&calls, "sid", &sid);
    assert_record(parent, "completed", "inbound", CALLER, NUMBER);
    assert!(parent["parent_call_sid"].is_null(), "{parent:#}");
    assert!(parent["error_code"].is_null(), "{parent:#}");
    let child = record(&calls, "parent_call_sid", &sid);
    assert_record(child, "completed", "outbound-dial", CALLER, CALLEE);
    let child_sid = child["sid"].as_str().unwrap();
    assert!(duration(parent) >= duration(child), "the parent lasts at least as long as the child: {calls:#?}");

    let status = rig.exactly_requests("/status", 1);
    assert_callbacks(&status, &sid, &["completed"]);
    assert_voice_request(&status[0], &sid, "completed", "inbound", CALLER, NUMBER);
    assert_eq!(status[0].param("CallDuration"), parent["duration"].as_str(), "CallDuration = the record's duration");

    let child_status = rig.exactly_requests("/child-status", 4);
    assert_callbacks(&child_status, child_sid, &["initiated", "ringing", "in-progress", "completed"]);
    for r in &child_status {
        assert_eq!(r.param("ParentCallSid"), Some(sid.as_str()), "{r:#?}");
        assert_eq!(r.param("Direction"), Some("outbound-dial"), "{r:#?}");
        assert_eq!(r.param("To"), Some(CALLEE), "{r:#?}");
    }
}

/// `<Number sendDigits>`: once the callee answers, the digits reach it as
/// RFC 4733 events (its telephone-event type, 101) in the stream the
/// appliance sends it; `w` pauses half a second.
#[test]
fn send_digits_are_played_to_the_answering_number() {
    let rig = Rig::new();
    rig.twiml("/voice", &format!(r#"<Response><Dial><Number sendDigits="1w#">{CALLEE}</Number></Dial></Response>"#));
    rig.accept_callbacks(&["/status"]);
    let mut p = rig.dial_in("uac_call.xml", NUMBER, 1);
    let heard = p.callee_rtp.receive_raw_in_background(16, Duration::from_secs(8)).unwrap();
    let answer = p.caller.wait_log(SIGNAL, |l| l.event == "sdp" && l.get("event") == Some("200"));
    let caller_call_id = answer
        .unwrap_or_else(|e| panic!("the appliance's 200 to the caller: {e:#}\n{}", rig.context()))
        .get("call_id")
        .unwrap()
        .to_owned();
    let heard = heard.join().unwrap().unwrap();
    let events: Vec<(u8, bool, u8)> = heard
        .iter()
        .filter(|(_, d)| d.len() == 16 && d[1] & 0x7f == 101)
        .map(|(_, d)| (d[12], d[13] & 0x80 != 0, d[13] & 0x3f))
        .collect();
    assert_eq!(events.len(), 16, "two digits, 8 packets each: {heard:?}\n{}", rig.context());
    for (i, (event, end, volume)) in events.iter().enumerate() {
        assert_eq!((*event, *end, *volume), (if i < 8 { 1 } else { 11 }, i % 8 >= 5, 10), "packet {i}: {events:?}");
    }
    rig.poke(&p.caller, &caller_call_id, "hangup");
    rig.finished(p.caller, "caller");
    rig.finished(p.callee, "callee");
    rig.no_media_left();
}

/// BYE from the callee ends the dial; with nothing after the `<Dial>` the
/// appliance then hangs up on the caller.
#[test]
fn callee_hangs_up_and_the_appliance_hangs_up_on_the_caller() {
    let rig = Rig::new();
    rig.twiml("/voice", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    rig.accept_callbacks(&["/status"]);
    let mut p = rig.dial_in("uac_call.xml", NUMBER, 1);
    let call = rig.bridged(&mut p, CALLEE);

    rig.poke(&p.callee, &call.callee_call_id, "hangup");
    let callee = rig.finished(p.callee, "callee");
    assert!(callee.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("sent")), "{}", callee.report);
    let caller = rig.finished(p.caller, "caller");
    assert!(
        caller.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("received")),
        "the appliance hung up on the caller:\n{}",
        caller.report
    );
    rig.no_media_left();

    let sid = call_sid(&rig.only_request("/voice"));
    let calls = rig.final_calls(2);
    assert_record(record(&calls, "sid", &sid), "completed", "inbound", CALLER, NUMBER);
    assert_record(record(&calls, "parent_call_sid", &sid), "completed", "outbound-dial", CALLER, CALLEE);
    assert_callbacks(&rig.exactly_requests("/status", 1), &sid, &["completed"]);
}

#[test]
fn invite_from_an_address_no_trunk_allows_is_refused_403() {
    let rig = Rig::new();
    rig.twiml("/voice", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    let rtp = rig.stranger.endpoint().unwrap();
    let caller = rig.caller_from(&rig.stranger, "uac_refused.xml", NUMBER, &rtp, Signaling::Udp);
    assert_eq!(rig.refused_with(caller, "stranger"), 403, "{}", rig.context());
    assert!(rig.customer.all_requests().unwrap().is_empty(), "no webhook for a refused call:\n{}", rig.context());
    assert_eq!(rig.app.admin.worker_totals().unwrap().rx_packets, 0, "a refused call costs no media");
    assert_eq!(rig.app.admin.sessions().unwrap().count, 0);
    assert_eq!(rig.rest("calls", serde_json::json!({})), serde_json::json!([]), "no call record");
}

#[test]
fn call_to_an_unknown_number_is_refused_404() {
    let rig = Rig::new();
    let rtp = rig.carrier.endpoint().unwrap();
    let caller = rig.caller("uac_refused.xml", UNKNOWN_NUMBER, &rtp);
    assert_eq!(rig.refused_with(caller, "unknown number"), 404, "{}", rig.context());
    assert!(rig.customer.all_requests().unwrap().is_empty(), "no webhook:\n{}", rig.context());
    assert_eq!(rig.app.admin.sessions().unwrap().count, 0, "no media for a refused call");
    assert_eq!(rig.rest("calls", serde_json::json!({})), serde_json::json!([]), "no call record");
}

/// The caller gives up while the callee rings (`answerOnBridge`, so the
/// caller is not answered before the callee): CANCEL reaches the callee.
#[test]
fn caller_cancels_while_the_callee_rings() {
    let rig = Rig::new();
    rig.twiml(
        "/voice",
        &format!(r#"<Response><Dial answerOnBridge="true"><Number>{RINGS}</Number></Dial></Response>"#),
    );
    rig.accept_callbacks(&["/status"]);
    let mut p = rig.dial_in("uac_cancel.xml", NUMBER, 1);
    rig.expect_log(&mut p.callee, "the INVITE to the ringing callee", |l| {
        l.event == "sdp" && l.get("dialed") == Some(RINGS)
    });
    let caller = rig.finished(p.caller, "caller");
    assert!(caller.logs.iter().any(|l| l.event == "cancelled"), "the caller's 487:\n{}", caller.report);
    let callee = rig.finished(p.callee, "callee");
    assert!(callee.logs.iter().any(|l| l.event == "cancelled"), "the callee got CANCEL:\n{}", callee.report);
    rig.no_media_left();

    let sid = call_sid(&rig.only_request("/voice"));
    let calls = rig.final_calls(2);
    let parent = record(&calls, "sid", &sid);
    assert_record(parent, "canceled", "inbound", CALLER, NUMBER);
    assert_eq!(duration(parent), 0, "{parent:#}");
    assert_record(record(&calls, "parent_call_sid", &sid), "canceled", "outbound-dial", CALLER, RINGS);
    assert_callbacks(&rig.exactly_requests("/status", 1), &sid, &["canceled"]);
}

/// A busy callee with `answerOnBridge` and nothing after the `<Dial>`: the
/// unanswered caller is refused busy.
#[test]
fn busy_callee_makes_the_unanswered_caller_busy() {
    let rig = Rig::new();
    rig.twiml("/voice", &format!(r#"<Response><Dial answerOnBridge="true"><Number>{BUSY}</Number></Dial></Response>"#));
    rig.accept_callbacks(&["/status"]);
    let mut p = rig.dial_in("uac_refused.xml", NUMBER, 1);
    rig.expect_log(&mut p.callee, "the callee said busy", |l| l.event == "busy");
    assert_eq!(rig.refused_with(p.caller, "caller"), 486, "{}", rig.context());
    rig.finished(p.callee, "callee");
    rig.no_media_left();

    let sid = call_sid(&rig.only_request("/voice"));
    let calls = rig.final_calls(2);
    assert_record(record(&calls, "sid", &sid), "busy", "inbound", CALLER, NUMBER);
    assert_record(record(&calls, "parent_call_sid", &sid), "busy", "outbound-dial", CALLER, BUSY);
    assert_callbacks(&rig.exactly_requests("/status", 1), &sid, &["busy"]);
}

/// `<Dial timeout>` passes without an answer: the callee gets CANCEL, the
/// `action` URL hears `no-answer` and its `<Hangup/>` ends the call.
#[test]
fn callee_not_answering_times_out_and_the_action_url_hears_no_answer() {
    let rig = Rig::new();
    rig.twiml(
        "/voice",
        &format!(r#"<Response><Dial timeout="2" action="/after-dial"><Number>{RINGS}</Number></Dial></Response>"#),
    );
    rig.twiml("/after-dial", "<Response><Hangup/></Response>");
    rig.accept_callbacks(&["/status"]);
    let mut p = rig.dial_in("uac_call.xml", NUMBER, 1);
    let callee = rig.finished(p.callee, "callee");
    assert!(callee.logs.iter().any(|l| l.event == "cancelled"), "the callee got CANCEL:\n{}", callee.report);
    rig.expect_log(&mut p.caller, "the appliance hangs up on the caller", |l| l.event == "bye");
    let caller = rig.finished(p.caller, "caller");
    assert!(caller.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("received")), "{}", caller.report);
    rig.no_media_left();

    let voice = rig.only_request("/voice");
    let sid = call_sid(&voice);
    let after = rig.only_request("/after-dial");
    assert_voice_request(&after, &sid, "in-progress", "inbound", CALLER, NUMBER);
    assert_eq!(after.param("DialCallStatus"), Some("no-answer"), "{after:#?}");
    assert_eq!(after.param("DialCallDuration"), None, "no duration for an unanswered dial: {after:#?}");
    let waited = after.received_at - voice.received_at;
    assert!((2.0..10.0).contains(&waited), "the dial gave up after {waited:.1} s, not after its 2 s timeout");

    let calls = rig.final_calls(2);
    assert_record(record(&calls, "sid", &sid), "completed", "inbound", CALLER, NUMBER);
    let child = record(&calls, "parent_call_sid", &sid);
    assert_record(child, "no-answer", "outbound-dial", CALLER, RINGS);
    assert_eq!(after.param("DialCallSid"), child["sid"].as_str(), "DialCallSid names the child call");
}

/// The `action` URL continues the call: a busy first dial, then the
/// action's document dials another number, which answers.
#[test]
fn dial_action_url_continues_the_call_after_a_busy_callee() {
    let rig = Rig::new();
    rig.twiml("/voice", &format!(r#"<Response><Dial action="/after-dial"><Number>{BUSY}</Number></Dial></Response>"#));
    rig.twiml("/after-dial", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    rig.accept_callbacks(&["/status"]);
    let mut p = rig.dial_in("uac_call.xml", NUMBER, 2);
    rig.expect_log(&mut p.callee, "the first callee said busy", |l| l.event == "busy");
    let call = rig.bridged(&mut p, CALLEE);
    rig.poke(&p.caller, &call.caller_call_id, "hangup");
    rig.finished(p.caller, "caller");
    rig.finished(p.callee, "callee");
    rig.no_media_left();

    let sid = call_sid(&rig.only_request("/voice"));
    let after = rig.only_request("/after-dial");
    assert_voice_request(&after, &sid, "in-progress", "inbound", CALLER, NUMBER);
    assert_eq!(after.param("DialCallStatus"), Some("busy"), "{after:#?}");
    let calls = rig.final_calls(3);
    assert_record(record(&calls, "sid", &sid), "completed", "inbound", CALLER, NUMBER);
    let busy = record(&calls, "to", BUSY);
    assert_record(busy, "busy", "outbound-dial", CALLER, BUSY);
    assert_eq!(busy["parent_call_sid"], sid.as_str());
    assert_eq!(after.param("DialCallSid"), busy["sid"].as_str(), "DialCallSid names the busy child");
    let answered = record(&calls, "to", CALLEE);
    assert_record(answered, "completed", "outbound-dial", CALLER, CALLEE);
    assert_eq!(answered["parent_call_sid"], sid.as_str());
}

/// `<Redirect>` fetches the next document (POST by default) and runs it.
#[test]
fn redirect_verb_runs_the_next_document() {
    let rig = Rig::new();
    rig.twiml("/voice", "<Response><Redirect>/second</Redirect><Hangup/></Response>");
    rig.twiml("/second", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    let mut p = rig.dial_in("uac_call.xml", NUMBER, 1);
    let call = rig.bridged(&mut p, CALLEE);
    rig.poke(&p.caller, &call.caller_call_id, "hangup");
    rig.finished(p.caller, "caller");
    rig.finished(p.callee, "callee");

    let sid = call_sid(&rig.only_request("/voice"));
    let second = rig.only_request("/second");
    assert_eq!(second.method, "POST");
    assert_voice_request(&second, &sid, "ringing", "inbound", CALLER, NUMBER);
    let calls = rig.final_calls(2);
    assert_record(record(&calls, "sid", &sid), "completed", "inbound", CALLER, NUMBER);
}

/// Two `<Number>`s ring at once; the first to answer is bridged, the other
/// gets CANCEL.
#[test]
fn parallel_numbers_first_answer_wins_and_the_other_is_cancelled() {
    let rig = Rig::new();
    rig.twiml(
        "/voice",
        &format!("<Response><Dial><Number>{RINGS}</Number><Number>{CALLEE}</Number></Dial></Response>"),
    );
    let mut p = rig.dial_in("uac_call.xml", NUMBER, 2);
    let call = rig.bridged(&mut p, CALLEE);
    rig.expect_log(&mut p.callee, "the losing fork is cancelled", |l| l.event == "cancelled");
    rig.poke(&p.caller, &call.caller_call_id, "hangup");
    rig.finished(p.caller, "caller");
    rig.finished(p.callee, "callee");
    rig.no_media_left();

    let sid = call_sid(&rig.only_request("/voice"));
    let calls = rig.final_calls(3);
    assert_record(record(&calls, "sid", &sid), "completed", "inbound", CALLER, NUMBER);
    let winner = record(&calls, "to", CALLEE);
    assert_record(winner, "completed", "outbound-dial", CALLER, CALLEE);
    let loser = record(&calls, "to", RINGS);
    assert_record(loser, "canceled", "outbound-dial", CALLER, RINGS);
    assert_eq!((winner["parent_call_sid"].as_str(), loser["parent_call_sid"].as_str()), (Some(&*sid), Some(&*sid)));
}

/// The callee puts the call on hold (re-INVITE a=sendonly) and takes it
/// back (sendrecv): each offer reaches the caller with the appliance's
/// address and the same direction, each answer comes back; media flows
/// again afterwards.
#[test]
fn re_invite_puts_the_call_on_hold_and_back() {
    let rig = Rig::new();
    rig.twiml("/voice", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    let mut p = rig.dial_in("uac_call.xml", NUMBER, 1);
    let call = rig.bridged(&mut p, CALLEE);
    let by_caller = |dir: &'static str| {
        move |l: &LogLine| l.event == "sdp" && l.get("event") == Some("reinvite") && l.get("dir") == Some(dir)
    };

    rig.poke(&p.callee, &call.callee_call_id, "hold");
    let offer = rig.expect_log(&mut p.caller, "the hold offer relayed to the caller", by_caller("sendonly"));
    assert_eq!(offer.media(), Some(call.toward_caller), "the relayed offer keeps the caller's media address");
    let answer = rig.expect_log(&mut p.callee, "the hold answer relayed to the callee", |l| {
        l.event == "sdp" && l.get("event") == Some("hold-answer")
    });
    assert_eq!(answer.get("dir"), Some("recvonly"), "{answer:?}");
    assert_eq!(answer.media(), Some(call.toward_callee), "the relayed answer keeps the callee's media address");

    rig.poke(&p.callee, &call.callee_call_id, "resume");
    let offer = rig.expect_log(&mut p.caller, "the resume offer relayed to the caller", by_caller("sendrecv"));
    assert_eq!(offer.media(), Some(call.toward_caller));
    let answer = rig.expect_log(&mut p.callee, "the resume answer relayed to the callee", |l| {
        l.event == "sdp" && l.get("event") == Some("resume-answer")
    });
    assert_eq!((answer.get("dir"), answer.media()), (Some("sendrecv"), Some(call.toward_callee)), "{answer:?}");
    rig.media_flows("after resume", &p, call.toward_caller, call.toward_callee);

    rig.poke(&p.caller, &call.caller_call_id, "hangup");
    rig.finished(p.caller, "caller");
    rig.finished(p.callee, "callee");
    rig.no_media_left();
}

/// `POST /Calls/{sid}.json` with `Url` redirects the live call: the dial is
/// left (the callee gets BYE), the new document runs (its `<Hangup/>` ends
/// the call).
#[test]
fn rest_redirect_of_a_live_call_runs_new_instructions() {
    let rig = Rig::new();
    rig.twiml("/voice", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    rig.twiml("/redirected", "<Response><Hangup/></Response>");
    let mut p = rig.dial_in("uac_call.xml", NUMBER, 1);
    rig.bridged(&mut p, CALLEE);
    let sid = call_sid(&rig.only_request("/voice"));

    let updated =
        rig.rest("update", serde_json::json!({"sid": sid, "url": rig.customer.url("/redirected"), "method": "POST"}));
    assert_eq!(updated["sid"], sid.as_str(), "the update answers the call's record: {updated:#}\n{}", rig.context());
    let callee = rig.finished(p.callee, "callee");
    assert!(callee.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("received")), "{}", callee.report);
    let caller = rig.finished(p.caller, "caller");
    assert!(caller.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("received")), "{}", caller.report);
    rig.no_media_left();

    let redirected = rig.only_request("/redirected");
    assert_eq!(redirected.method, "POST");
    assert_voice_request(&redirected, &sid, "in-progress", "inbound", CALLER, NUMBER);
    let calls = rig.final_calls(2);
    assert_record(record(&calls, "sid", &sid), "completed", "inbound", CALLER, NUMBER);
    assert_record(record(&calls, "parent_call_sid", &sid), "completed", "outbound-dial", CALLER, CALLEE);
}

/// `POST /Calls/{sid}.json` with `Status=completed` hangs up a live call:
/// both parties get BYE.
#[test]
fn rest_hangup_of_a_live_call() {
    let rig = Rig::new();
    rig.twiml("/voice", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    rig.accept_callbacks(&["/status"]);
    let mut p = rig.dial_in("uac_call.xml", NUMBER, 1);
    rig.bridged(&mut p, CALLEE);
    let sid = call_sid(&rig.only_request("/voice"));

    let updated = rig.rest("update", serde_json::json!({"sid": sid, "status": "completed"}));
    assert_eq!(updated["sid"], sid.as_str(), "{updated:#}\n{}", rig.context());
    let caller = rig.finished(p.caller, "caller");
    assert!(caller.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("received")), "{}", caller.report);
    let callee = rig.finished(p.callee, "callee");
    assert!(callee.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("received")), "{}", callee.report);
    rig.no_media_left();

    let calls = rig.final_calls(2);
    assert_record(record(&calls, "sid", &sid), "completed", "inbound", CALLER, NUMBER);
    assert_record(record(&calls, "parent_call_sid", &sid), "completed", "outbound-dial", CALLER, CALLEE);
    assert_callbacks(&rig.exactly_requests("/status", 1), &sid, &["completed"]);
}

/// `POST /Calls.json` places a call through the trunk; once answered, its
/// `Url` is fetched (outbound-api, in-progress) and run; the requested
/// status callbacks come in order.
#[test]
fn outbound_call_created_through_rest() {
    let rig = Rig::new();
    rig.twiml("/outbound", r#"<Response><Pause length="1"/></Response>"#);
    rig.accept_callbacks(&["/api-status"]);
    let callee_rtp = rig.callee.endpoint().unwrap();
    let mut callee = rig.callee(&callee_rtp, 1, Transport::Udp);

    let created = rig.rest(
        "create",
        serde_json::json!({
            "to": CALLEE,
            "from_": NUMBER,
            "url": rig.customer.url("/outbound"),
            "status_callback": rig.customer.url("/api-status"),
            "status_callback_event": ["initiated", "ringing", "answered", "completed"],
        }),
    );
    let sid = created["sid"].as_str().unwrap_or_else(|| panic!("no call created: {created:#}\n{}", rig.context()));
    assert_eq!(created["direction"], "outbound-api", "{created:#}");
    assert_eq!((created["to"].as_str(), created["from"].as_str()), (Some(CALLEE), Some(NUMBER)), "{created:#}");
    assert!(matches!(created["status"].as_str(), Some("queued" | "initiated")), "{created:#}");

    let invite = rig.expect_log(&mut callee, "the INVITE of the REST call", |l| {
        l.event == "sdp" && l.get("dialed") == Some(CALLEE)
    });
    assert_eq!(invite.get("from"), Some(NUMBER), "the caller ID is the From of the request: {invite:?}");
    assert_eq!(invite.media().map(|a| a.ip()), Some(IpAddr::V4(MEDIA_IP)), "{invite:?}");
    let callee = rig.finished(callee, "callee");
    assert!(
        callee.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("received")),
        "the document's end hangs up:\n{}",
        callee.report
    );
    rig.no_media_left();

    let outbound = rig.only_request("/outbound");
    assert_voice_request(&outbound, sid, "in-progress", "outbound-api", NUMBER, CALLEE);
    let calls = rig.final_calls(1);
    let call = record(&calls, "sid", sid);
    assert_record(call, "completed", "outbound-api", NUMBER, CALLEE);
    assert!(duration(call) >= 1, "the call lasted the 1 s pause: {call:#}");
    assert_callbacks(
        &rig.exactly_requests("/api-status", 4),
        sid,
        &["initiated", "ringing", "in-progress", "completed"],
    );
}

/// The same call with SIP over TCP on both legs (the trunk's outbound URI
/// says `transport=tcp`).
#[test]
fn call_over_tcp_on_both_legs() {
    let rig = Rig::with_outbound(&format!("sip:{CALLEE_IP}:{CALLEE_SIP_PORT};transport=tcp"));
    rig.twiml("/voice", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    let mut p = rig.dial_in_over("uac_call.xml", NUMBER, 1, Signaling::Tcp, Transport::Tcp);
    let call = rig.bridged(&mut p, CALLEE);
    rig.poke(&p.caller, &call.caller_call_id, "hangup");
    rig.finished(p.caller, "caller");
    rig.finished(p.callee, "callee");
    rig.no_media_left();
    let sid = call_sid(&rig.only_request("/voice"));
    let calls = rig.final_calls(2);
    assert_record(record(&calls, "sid", &sid), "completed", "inbound", CALLER, NUMBER);
}

/// A relay script (python3) run in a test namespace: its stdout and stderr
/// kept in a scratch directory, shown when the test fails; killed on drop.
struct PyRelay {
    name: &'static str,
    child: Child,
    dir: ScratchDir,
}

impl PyRelay {
    /// Starts `script` with `args` in `ns` and waits for it to print "listening".
    fn start(
        rig: &Rig,
        name: &'static str,
        ns: &Netns,
        script: &str,
        args: &[std::ffi::OsString],
        dir: ScratchDir,
    ) -> PyRelay {
        let child = ns
            .command(Path::new("python3"))
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.txt")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.txt")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 for the {name}: {e}"));
        let relay = PyRelay { name, child, dir };
        let said = settle(SIGNAL, || Ok(relay.said()), |s| s.contains("listening")).unwrap();
        assert!(said.contains("listening"), "the {name} did not start: {said}\n{}\n{}", relay.stderr(), rig.context());
        relay
    }

    fn said(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.txt")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.txt")).unwrap_or_default()
    }
}

impl Drop for PyRelay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} ---\nstdout:\n{}\nstderr:\n{}", self.name, self.said(), self.stderr());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TLS client relay for sipp, in the carrier's namespace (TLS_RELAY).
fn tls_relay(rig: &Rig, listen: SocketAddr) -> PyRelay {
    let args: Vec<std::ffi::OsString> = vec![
        listen.ip().to_string().into(),
        listen.port().to_string().into(),
        SIP_TLS.ip().to_string().into(),
        SIP_TLS.port().to_string().into(),
        rig.app.state_dir().join("tls/cert.pem").into(),
    ];
    PyRelay::start(rig, "TLS relay", &rig.carrier.ns, TLS_RELAY, &args, ScratchDir::new("tls-relay").unwrap())
}

/// The carrier's leg over TLS (to :5061, the appliance's certificate).
#[test]
fn call_from_the_carrier_over_tls() {
    let rig = Rig::new();
    rig.twiml("/voice", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    let relay = tls_relay(&rig, TLS_RELAY_ADDR);
    let mut p = rig.dial_in_over("uac_call.xml", NUMBER, 1, Signaling::TlsVia(TLS_RELAY_ADDR), Transport::Udp);
    let call = rig.bridged(&mut p, CALLEE);
    let said = relay.said();
    assert!(said.contains("tls TLSv1.3") || said.contains("tls TLSv1.2"), "the relay's TLS session: {said}");
    rig.poke(&p.caller, &call.caller_call_id, "hangup");
    rig.finished(p.caller, "caller");
    rig.finished(p.callee, "callee");
    rig.no_media_left();
    let sid = call_sid(&rig.only_request("/voice"));
    let calls = rig.final_calls(2);
    assert_record(record(&calls, "sid", &sid), "completed", "inbound", CALLER, NUMBER);
}

/// The voice URL answers 500: the fallback URL is requested with
/// `ErrorCode` 11200 and `ErrorUrl`, and its document runs.
#[test]
fn app_error_500_uses_the_fallback_url() {
    let rig = Rig::new();
    rig.customer.route("/voice", 500, "<html>Internal Server Error</html>", Duration::ZERO).unwrap();
    rig.twiml("/fallback", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    let mut p = rig.dial_in("uac_call.xml", NUMBER, 1);
    let call = rig.bridged(&mut p, CALLEE);
    rig.poke(&p.caller, &call.caller_call_id, "hangup");
    rig.finished(p.caller, "caller");
    rig.finished(p.callee, "callee");

    let voice = rig.only_request("/voice");
    let sid = call_sid(&voice);
    let fallback = rig.only_request("/fallback");
    assert_eq!(fallback.method, "POST");
    assert_voice_request(&fallback, &sid, "ringing", "inbound", CALLER, NUMBER);
    assert_eq!(fallback.param("ErrorCode"), Some("11200"), "{fallback:#?}");
    assert_eq!(fallback.param("ErrorUrl"), Some(rig.customer.url("/voice").as_str()), "{fallback:#?}");
    let calls = rig.final_calls(2);
    assert_record(record(&calls, "sid", &sid), "completed", "inbound", CALLER, NUMBER);
}

/// The voice URL does not answer in time (Twilio waits 15 s): the fallback
/// URL is requested with `ErrorCode` 11205 before the app would have
/// answered, and its `<Reject reason="busy"/>` refuses the caller.
#[test]
fn app_timing_out_uses_the_fallback_url() {
    let rig = Rig::new();
    rig.customer.route("/voice", 200, "<Response><Hangup/></Response>", Duration::from_secs(25)).unwrap();
    rig.twiml("/fallback", r#"<Response><Reject reason="busy"/></Response>"#);
    rig.accept_callbacks(&["/status"]);
    let rtp = rig.carrier.endpoint().unwrap();
    let caller = rig.caller("uac_refused.xml", NUMBER, &rtp);
    assert_eq!(rig.refused_with(caller, "caller"), 486, "{}", rig.context());

    let voice = rig.only_request("/voice");
    let sid = call_sid(&voice);
    let fallback = rig.only_request("/fallback");
    assert_voice_request(&fallback, &sid, "ringing", "inbound", CALLER, NUMBER);
    assert_eq!(fallback.param("ErrorCode"), Some("11205"), "{fallback:#?}");
    assert_eq!(fallback.param("ErrorUrl"), Some(rig.customer.url("/voice").as_str()), "{fallback:#?}");
    let waited = fallback.received_at - voice.received_at;
    assert!((1.0..20.0).contains(&waited), "gave up on the app after {waited:.1} s (it would answer after 25 s)");
    let calls = rig.final_calls(1);
    assert_record(record(&calls, "sid", &sid), "busy", "inbound", CALLER, NUMBER);
    assert_eq!(rig.app.admin.sessions().unwrap().count, 0);
}

/// A document that fails, on an application without fallback: the caller
/// is refused, the record is `failed` with the Twilio error code.
fn call_fails_with(document: &str, code: u64) -> (Rig, Value) {
    let rig = Rig::new();
    rig.twiml("/bare", document);
    rig.accept_callbacks(&["/bare-status"]);
    let rtp = rig.carrier.endpoint().unwrap();
    let caller = rig.caller("uac_refused.xml", NUMBER_BARE, &rtp);
    let status = rig.refused_with(caller, "caller");
    assert!(status >= 400, "refused, not answered: {status}");
    rig.no_media_left();
    let sid = call_sid(&rig.customer.wait_requests("/bare", 1, AFTERMATH).unwrap()[0]);
    let calls = rig.final_calls(1);
    let call = record(&calls, "sid", &sid).clone();
    assert_record(&call, "failed", "inbound", CALLER, NUMBER_BARE);
    assert_eq!(call["error_code"].as_u64(), Some(code), "{call:#}");
    assert!(call["error_message"].as_str().is_some_and(|m| !m.is_empty()), "{call:#}");
    assert_callbacks(&rig.exactly_requests("/bare-status", 1), &sid, &["failed"]);
    (rig, call)
}

#[test]
fn malformed_twiml_fails_the_call_12100() {
    let (rig, _) = call_fails_with("<Response><Dial>", 12100);
    assert_eq!(rig.exactly_requests("/bare", 1).len(), 1);
}

#[test]
fn unsupported_verb_fails_the_call_12200() {
    let (_, call) = call_fails_with("<Response><Enqueue>support</Enqueue></Response>", 12200);
    assert!(call["error_message"].as_str().unwrap().contains("Enqueue"), "names the verb: {call:#}");
}

#[test]
fn redirect_loop_is_cut_11215() {
    let (rig, _) = call_fails_with("<Response><Redirect>/bare</Redirect></Response>", 11215);
    let fetched = rig.customer.requests("/bare").unwrap().len();
    assert!((2..=11).contains(&fetched), "the loop was followed {fetched} times before it was cut");
}

// ------------------------------------------------------- trunk digest

/// The trunk's credentials, and the callee's realm and nonce.
const TRUNK_USER: &str = "bridgehead-e2e";
const TRUNK_PASSWORD: &str = "trunk-secret-9f2c";
const REALM: &str = "callee.e2e";
const NONCE: &str = "5ca1ab1e0ddba11";

/// Checks a digest `Authorization`/`Proxy-Authorization` value with
/// Python's hashlib (RFC 2617, MD5, with or without qop): prints one JSON
/// line, the value's parameters and whether its `response` is the one
/// PASSWORD gives for METHOD.
///
/// usage: python3 -c DIGEST_CHECK VALUE METHOD PASSWORD
const DIGEST_CHECK: &str = r#"
import hashlib, json, re, sys
value, method, password = sys.argv[1:4]
if not value.startswith("Digest "):
    raise SystemExit("not a Digest credential: " + value)
params = {k.lower(): (q if q else t) for k, q, t in re.findall(r'([A-Za-z-]+)=(?:"([^"]*)"|([^\s,]+))', value[7:])}
md5 = lambda s: hashlib.md5(s.encode()).hexdigest()
ha1 = md5("%s:%s:%s" % (params.get("username", ""), params.get("realm", ""), password))
ha2 = md5("%s:%s" % (method, params.get("uri", "")))
if "qop" in params:
    want = md5(":".join([ha1, params.get("nonce", ""), params.get("nc", ""), params.get("cnonce", ""), params["qop"], ha2]))
else:
    want = md5("%s:%s:%s" % (ha1, params.get("nonce", ""), ha2))
print(json.dumps({"params": params, "valid": want == params.get("response")}))
"#;

/// The challenge the callee answers the first INVITE with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Challenge {
    /// 401 with `WWW-Authenticate`: the answer is an `Authorization`.
    Unauthorized,
    /// 407 with `Proxy-Authenticate`: the answer is a `Proxy-Authorization`.
    Proxy,
}

impl Challenge {
    fn code(self) -> u16 {
        match self {
            Challenge::Unauthorized => 401,
            Challenge::Proxy => 407,
        }
    }

    /// The answer's header, as uas_digest.xml logs it.
    fn answer_header(self) -> &'static str {
        match self {
            Challenge::Unauthorized => "authorization",
            Challenge::Proxy => "proxy-authorization",
        }
    }
}

/// What the appliance answered a challenge with (uas_digest.xml's log).
#[derive(Debug)]
struct Offered {
    call_id: String,
    /// The challenged INVITE's CSeq number, and the answering one's.
    cseqs: (u32, u32),
    ruri: String,
    /// Whether sipp's own `<verifyauth>` accepted it (meaningful after a 401 only).
    sipp_verified: bool,
    value: String,
}

impl Offered {
    /// The parameters of the credentials, and whether `password` gives
    /// their response.
    fn check(&self, password: &str) -> (Value, bool) {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(DIGEST_CHECK)
            .args([&self.value, "INVITE", password])
            .output()
            .expect("python3 for the digest check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!("digest check of {self:?}: {e} ({})\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr))
        });
        (v["params"].clone(), v["valid"] == true)
    }
}

impl Rig {
    /// A trunk with digest credentials `user`/`password`.
    fn with_trunk_credentials(user: &str, password: &str) -> Rig {
        let keys = format!("username = \"{user}\"\npassword = \"{password}\"\n");
        Rig::configured(&format!("sip:{CALLEE_IP}:{CALLEE_SIP_PORT}"), &keys, |_| {})
    }

    /// The callee behind the trunk wanting credentials (uas_digest.xml):
    /// challenges with `challenge`, and its sipp checks against the
    /// trunk's real credentials.
    fn digest_callee(&self, rtp: &RtpEndpoint, challenge: Challenge) -> SippRun {
        Sipp::new("uas_digest.xml", SocketAddr::new(IpAddr::V4(self.callee.ip), CALLEE_SIP_PORT))
            .set("challenge", challenge.code())
            .key("realm", REALM)
            .key("nonce", NONCE)
            .key("auth_user", TRUNK_USER)
            .key("auth_pass", TRUNK_PASSWORD)
            .key("rtp_ip", rtp.local_addr().ip())
            .key("rtp_port", rtp.local_addr().port())
            .key("tr_param", "udp")
            .set("media_ip", MEDIA_IP)
            .start_in(&self.callee.ns)
            .unwrap_or_else(|e| panic!("starting the digest callee's sipp: {e:#}\n{}", self.context()))
    }

    /// Waits for the INVITE answering `challenge` and reads its credentials.
    fn offered(&self, callee: &mut SippRun, challenge: Challenge) -> Offered {
        let challenged = self.expect_log(callee, "the callee challenges the first INVITE", |l| l.event == "challenged");
        self.expect_log(callee, "the appliance's ACK of the challenge", |l| l.event == "challenge-acked");
        let header = challenge.answer_header();
        let line = self.expect_log(callee, "the INVITE with credentials", |l| {
            l.event == "credentials" && l.get("header") == Some(header)
        });
        let cseq = |l: &LogLine| l.get("cseq").and_then(|c| c.parse::<u32>().ok());
        let answering = callee.logs().into_iter().find(|l| l.event == "sdp" && l.get("event") == Some("invite"));
        let answering = answering.unwrap_or_else(|| panic!("no sdp line beside {line:?}"));
        let value = line.raw.split_once(" value=").map(|(_, v)| v.trim().to_owned()).unwrap_or_default();
        assert_eq!(challenged.get("call_id"), line.get("call_id"), "the answer is in the challenged call");
        Offered {
            call_id: line.get("call_id").unwrap_or_default().to_owned(),
            cseqs: (cseq(&challenged).unwrap_or(0), cseq(&answering).unwrap_or(0)),
            ruri: line.get("ruri").unwrap_or_default().to_owned(),
            sipp_verified: line.get("sipp_verified") == Some("true"),
            value,
        }
    }
}

/// Checks that credentials answer the callee's challenge for
/// `TRUNK_USER` (realm, nonce, uri, qop, nc, CSeq); returns whether their
/// response is the one `password` gives.
fn assert_digest_answers_the_challenge(offered: &Offered, password: &str) -> bool {
    assert!(!offered.value.is_empty(), "no credentials in the answering INVITE: {offered:#?}");
    let (params, valid) = offered.check(password);
    let p = |k: &str| params[k].as_str().map(str::to_owned);
    assert_eq!(p("username").as_deref(), Some(TRUNK_USER), "{offered:#?}");
    assert_eq!(p("realm").as_deref(), Some(REALM), "{offered:#?}");
    assert_eq!(p("nonce").as_deref(), Some(NONCE), "{offered:#?}");
    assert_eq!(p("uri"), Some(offered.ruri.clone()), "uri is the Request-URI: {offered:#?}");
    assert_eq!(p("qop").as_deref(), Some("auth"), "{offered:#?}");
    assert_eq!(p("nc").as_deref(), Some("00000001"), "{offered:#?}");
    assert!(p("cnonce").is_some_and(|c| !c.is_empty()), "qop=auth needs a cnonce: {offered:#?}");
    assert!(p("algorithm").is_none_or(|a| a.eq_ignore_ascii_case("MD5")), "{offered:#?}");
    assert_eq!(offered.cseqs, (1, 2), "the answering INVITE is the next CSeq in the same Call-ID: {offered:#?}");
    valid
}

/// A trunk's digest challenge answered: the callee checks the answer and
/// takes the call; media flows, the caller hangs up, both records say
/// `completed`.
fn digest_challenge_is_answered(challenge: Challenge) {
    let rig = Rig::with_trunk_credentials(TRUNK_USER, TRUNK_PASSWORD);
    rig.twiml("/voice", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    let carrier_rtp = rig.carrier.endpoint().unwrap();
    let callee_rtp = rig.callee.endpoint().unwrap();
    let mut callee = rig.digest_callee(&callee_rtp, challenge);
    let caller = rig.caller("uac_call.xml", NUMBER, &carrier_rtp);

    let offered = rig.offered(&mut callee, challenge);
    assert!(
        assert_digest_answers_the_challenge(&offered, TRUNK_PASSWORD),
        "the response is not the one the trunk's password gives: {offered:#?}\n{}",
        rig.context()
    );
    if challenge == Challenge::Unauthorized {
        assert!(offered.sipp_verified, "sipp's <verifyauth> refused what hashlib accepted: {offered:#?}");
    }
    rig.poke(&callee, &offered.call_id, "accept");

    let mut p = Parties { caller, callee, carrier_rtp, callee_rtp };
    let call = rig.bridged(&mut p, CALLEE);
    rig.poke(&p.caller, &call.caller_call_id, "hangup");
    rig.finished(p.caller, "caller");
    let callee = rig.finished(p.callee, "callee");
    assert!(callee.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("received")), "{}", callee.report);
    rig.no_media_left();

    let sid = call_sid(&rig.only_request("/voice"));
    let calls = rig.final_calls(2);
    assert_record(record(&calls, "sid", &sid), "completed", "inbound", CALLER, NUMBER);
    assert_record(record(&calls, "parent_call_sid", &sid), "completed", "outbound-dial", CALLER, CALLEE);
    assert!(!rig.app.stderr().contains(TRUNK_PASSWORD), "the trunk's password is in the appliance's log");
}

/// The callee answers the first INVITE with 407 Proxy-Authenticate; the
/// appliance sends it again (CSeq 2) with a Proxy-Authorization built from
/// the trunk's `username`/`password`, and the call goes through.
#[test]
fn trunk_digest_challenge_is_answered() {
    digest_challenge_is_answered(Challenge::Proxy);
}

/// The same with 401 WWW-Authenticate, where sipp's own `<verifyauth>`
/// (which reads `Authorization` only) checks the answer too.
#[test]
fn trunk_digest_401_challenge_is_answered() {
    digest_challenge_is_answered(Challenge::Unauthorized);
}

/// The trunk's password is wrong: the callee challenges the answer again,
/// the appliance gives up on that leg (no third INVITE), the dial fails,
/// and with nothing after the `<Dial>` the unanswered caller is refused.
#[test]
fn trunk_digest_with_a_wrong_password_fails_the_dial() {
    const WRONG: &str = "not-the-trunk-secret";
    let rig = Rig::with_trunk_credentials(TRUNK_USER, WRONG);
    rig.twiml(
        "/voice",
        &format!(r#"<Response><Dial answerOnBridge="true"><Number>{CALLEE}</Number></Dial></Response>"#),
    );
    rig.accept_callbacks(&["/status"]);
    let carrier_rtp = rig.carrier.endpoint().unwrap();
    let callee_rtp = rig.callee.endpoint().unwrap();
    let mut callee = rig.digest_callee(&callee_rtp, Challenge::Proxy);
    let caller = rig.caller("uac_refused.xml", NUMBER, &carrier_rtp);

    let offered = rig.offered(&mut callee, Challenge::Proxy);
    assert!(!assert_digest_answers_the_challenge(&offered, TRUNK_PASSWORD), "a wrong password passed: {offered:#?}");
    assert!(offered.check(WRONG).1, "the answer is not even right for the password configured: {offered:#?}");
    rig.poke(&callee, &offered.call_id, "refuse");
    rig.expect_log(&mut callee, "the appliance ACKs the second challenge", |l| l.event == "refused");

    let status = rig.refused_with(caller, "caller");
    assert!(status >= 400, "the caller is refused, not answered: {status}");
    let callee = rig.finished(callee, "callee");
    assert_eq!(
        invite_cseqs_received(&callee.messages),
        vec![1, 2],
        "the appliance tries its credentials once:\n{}",
        callee.report
    );
    rig.no_media_left();

    let sid = call_sid(&rig.only_request("/voice"));
    let calls = rig.final_calls(2);
    assert_record(record(&calls, "sid", &sid), "failed", "inbound", CALLER, NUMBER);
    assert_record(record(&calls, "parent_call_sid", &sid), "failed", "outbound-dial", CALLER, CALLEE);
    assert_callbacks(&rig.exactly_requests("/status", 1), &sid, &["failed"]);
}

/// The CSeq numbers of the INVITEs in a sipp message trace that sipp
/// received, each once (a retransmission is the same INVITE).
fn invite_cseqs_received(trace: &str) -> Vec<u32> {
    let mut seen: Vec<u32> = trace
        .split("-----------------------------------------------")
        .filter(|m| m.contains("message received"))
        .filter(|m| m.lines().any(|l| l.starts_with("INVITE sip:")))
        .filter_map(|m| {
            let cseq = m.lines().find_map(|l| l.strip_prefix("CSeq:"))?;
            cseq.split_whitespace().next()?.parse().ok()
        })
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen
}

// ------------------------------------------------------- TLS toward the trunk

/// Where the callee's TLS relay listens: the trunk's `outbound` port.
const CALLEE_TLS_PORT: u16 = 5081;

/// A TLS server relay for sipp: accepts TLS on LISTEN_IP:LISTEN_PORT with
/// CERT/KEY and carries each connection in clear to TARGET (source address
/// LISTEN_IP). Prints "listening", then "tls <version> <cipher>" per
/// connection, and per message start line it passes "from-appliance
/// <METHOD>" or "from-callee <status>". One thread per connection, one
/// select loop, the TLS side non-blocking (as the client relay above).
const TLS_SERVER_RELAY: &str = r#"
import re, select, socket, ssl, sys, threading
listen_ip, listen_port, target_ip, target_port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((listen_ip, listen_port))
server.listen(8)
lock = threading.Lock()
REQUEST = re.compile(rb"(?m)^([A-Z]+) sip:\S+ SIP/2\.0\r?$")
STATUS = re.compile(rb"(?m)^SIP/2\.0 (\d{3}) ")

def say(*words):
    with lock:
        print(*words, flush=True)

say("listening")

def send_all(sock, data):
    while data:
        try:
            data = data[sock.send(data):]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            select.select([], [sock], [], 1)

def relay(tls, plain):
    tls.setblocking(False)
    try:
        while True:
            ready = [tls] if tls.pending() else select.select([plain, tls], [], [])[0]
            for s in ready:
                try:
                    data = s.recv(65536)
                except ssl.SSLWantReadError:
                    continue
                if not data:
                    return
                if s is tls:
                    for m in REQUEST.finditer(data):
                        say("from-appliance", m.group(1).decode())
                else:
                    for m in STATUS.finditer(data):
                        say("from-callee", m.group(1).decode())
                send_all(plain if s is tls else tls, data)
    except OSError:
        pass
    finally:
        plain.close()
        tls.close()

while True:
    raw, _ = server.accept()
    try:
        tls = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError) as e:
        say("handshake-failed", e)
        raw.close()
        continue
    plain = socket.create_connection((target_ip, target_port), source_address=(listen_ip, 0))
    say("tls", tls.version(), tls.cipher()[0])
    threading.Thread(target=relay, args=(tls, plain), daemon=True).start()
"#;

/// A TLS server relay in the callee's namespace, with a throwaway
/// self-signed certificate; killed on drop.
fn tls_server_relay(rig: &Rig, listen: SocketAddr, target: SocketAddr) -> PyRelay {
    let dir = ScratchDir::new("tls-server-relay").unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "1", "-subj", "/CN=callee", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl for the callee's certificate");
    assert!(made.status.success(), "openssl req: {}", String::from_utf8_lossy(&made.stderr));
    let args: Vec<std::ffi::OsString> = vec![
        listen.ip().to_string().into(),
        listen.port().to_string().into(),
        target.ip().to_string().into(),
        target.port().to_string().into(),
        cert.into(),
        key.into(),
    ];
    PyRelay::start(rig, "TLS server relay", &rig.callee.ns, TLS_SERVER_RELAY, &args, dir)
}

/// The trunk's outbound URI says `transport=tls`: the appliance opens TLS
/// to the callee (a relay in front of a TCP sipp, its certificate
/// self-signed, accepted with `sip_tls_insecure`), and the dialog's ACK and
/// BYE reuse that connection, the callee's Contact naming the same address.
#[test]
fn tls_toward_the_trunk() {
    let outbound = format!("sip:{CALLEE_IP}:{CALLEE_TLS_PORT};transport=tls");
    let rig = Rig::configured(&outbound, "", |c| c.extra.push_str("\n[calls]\nsip_tls_insecure = true\n"));
    rig.twiml("/voice", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    let tls_addr = SocketAddr::new(IpAddr::V4(CALLEE_IP), CALLEE_TLS_PORT);
    let sipp_addr = SocketAddr::new(IpAddr::V4(CALLEE_IP), CALLEE_SIP_PORT);
    let relay = tls_server_relay(&rig, tls_addr, sipp_addr);

    let carrier_rtp = rig.carrier.endpoint().unwrap();
    let callee_rtp = rig.callee.endpoint().unwrap();
    let callee = Sipp::new("uas_callee_relayed.xml", sipp_addr)
        .transport(Transport::Tcp)
        .key("contact", format!("{tls_addr};transport=tls"))
        .key("via", format!("TLS {tls_addr}"))
        .key("rtp_ip", callee_rtp.local_addr().ip())
        .key("rtp_port", callee_rtp.local_addr().port())
        .set("media_ip", MEDIA_IP)
        .start_in(&rig.callee.ns)
        .unwrap_or_else(|e| panic!("starting the relayed callee's sipp: {e:#}\n{}", rig.context()));
    let caller = rig.caller("uac_call.xml", NUMBER, &carrier_rtp);
    let mut p = Parties { caller, callee, carrier_rtp, callee_rtp };
    let call = rig.bridged(&mut p, CALLEE);
    rig.poke(&p.caller, &call.caller_call_id, "hangup");
    rig.finished(p.caller, "caller");
    let callee = rig.finished(p.callee, "callee");
    assert!(callee.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("received")), "{}", callee.report);
    assert!(
        callee.messages.contains("Via: SIP/2.0/TLS ") || callee.messages.contains("Via: SIP/2.0/tls "),
        "the INVITE's Via says TLS:\n{}",
        callee.report
    );
    rig.no_media_left();

    let said = relay.said();
    let sessions: Vec<&str> = said.lines().filter(|l| l.starts_with("tls ")).collect();
    assert_eq!(sessions.len(), 1, "one TLS connection carries the dialog: {said}\n{}", relay.stderr());
    assert!(sessions[0].starts_with("tls TLSv1.3") || sessions[0].starts_with("tls TLSv1.2"), "{said}");
    let from_appliance: Vec<&str> = said.lines().filter_map(|l| l.strip_prefix("from-appliance ")).collect();
    assert_eq!(from_appliance, ["INVITE", "ACK", "BYE"], "requests through the relay: {said}");
    let from_callee: Vec<&str> = said.lines().filter_map(|l| l.strip_prefix("from-callee ")).collect();
    assert_eq!(from_callee, ["180", "200", "200"], "responses through the relay: {said}");

    let sid = call_sid(&rig.only_request("/voice"));
    let calls = rig.final_calls(2);
    assert_record(record(&calls, "sid", &sid), "completed", "inbound", CALLER, NUMBER);
    assert_record(record(&calls, "parent_call_sid", &sid), "completed", "outbound-dial", CALLER, CALLEE);
}

// ------------------------------------------------------- media timeout

/// `[dataplane] media_timeout_s = 2`: a bridged call whose parties stop
/// sending is hung up both ways about 2 s later; the call's record is
/// `completed` and its `error_message` says why.
#[test]
fn media_timeout_ends_a_call_whose_parties_went_silent() {
    let rig = Rig::configured(&format!("sip:{CALLEE_IP}:{CALLEE_SIP_PORT}"), "", |c| c.media_timeout_s = 2);
    rig.twiml("/voice", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    rig.accept_callbacks(&["/status"]);
    let mut p = rig.dial_in("uac_call.xml", NUMBER, 1);
    rig.bridged(&mut p, CALLEE);
    let silent_since = std::time::Instant::now();

    let bye = |l: &LogLine| l.event == "bye" && l.get("event") == Some("received");
    rig.expect_log(&mut p.caller, "the appliance's BYE to the silent caller", bye);
    let after = silent_since.elapsed();
    rig.expect_log(&mut p.callee, "the appliance's BYE to the silent callee", bye);
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(8)).contains(&after),
        "hung up {after:?} after the media stopped, with a 2 s media timeout"
    );
    rig.finished(p.caller, "caller");
    rig.finished(p.callee, "callee");
    rig.no_media_left();

    let sid = call_sid(&rig.only_request("/voice"));
    let calls = rig.final_calls(2);
    let parent = record(&calls, "sid", &sid);
    assert_record(parent, "completed", "inbound", CALLER, NUMBER);
    let message = parent["error_message"].as_str().unwrap_or_default();
    assert!(message.to_ascii_lowercase().contains("media timeout"), "the record says why: {parent:#}");
    assert_record(record(&calls, "parent_call_sid", &sid), "completed", "outbound-dial", CALLER, CALLEE);
    assert_callbacks(&rig.exactly_requests("/status", 1), &sid, &["completed"]);
}

/// Without `sip_tls_insecure` the callee's self-signed certificate is
/// refused: no INVITE reaches it, and the failed connection fails the
/// dial at once (RFC 3261 8.1.3.1: a transport error counts as a 503), so
/// the unanswered caller is refused in seconds, the child record `failed`.
#[test]
fn tls_toward_the_trunk_refuses_an_untrusted_certificate() {
    let outbound = format!("sip:{CALLEE_IP}:{CALLEE_TLS_PORT};transport=tls");
    let rig = Rig::with_outbound(&outbound);
    rig.twiml(
        "/voice",
        &format!(r#"<Response><Dial answerOnBridge="true"><Number>{CALLEE}</Number></Dial></Response>"#),
    );
    let tls_addr = SocketAddr::new(IpAddr::V4(CALLEE_IP), CALLEE_TLS_PORT);
    let sipp_addr = SocketAddr::new(IpAddr::V4(CALLEE_IP), CALLEE_SIP_PORT);
    let relay = tls_server_relay(&rig, tls_addr, sipp_addr);
    let carrier_rtp = rig.carrier.endpoint().unwrap();
    let started = std::time::Instant::now();
    let caller = rig.caller("uac_refused.xml", NUMBER, &carrier_rtp);
    // Waits longer than it should take, to tell "late" from "never".
    let outcome = caller.wait(Duration::from_secs(50)).unwrap_or_else(|e| panic!("caller: {e:#}\n{}", rig.context()));
    let took = started.elapsed();
    let finals: Vec<u16> = outcome.statuses_received().into_iter().filter(|s| *s >= 200).collect();
    let said = relay.said();
    assert!(said.contains("handshake-failed"), "the appliance tried TLS and gave up on the handshake: {said}");
    assert!(!said.contains("from-appliance"), "nothing went through the relay: {said}");
    rig.no_media_left();

    let sid = call_sid(&rig.only_request("/voice"));
    let calls = rig.final_calls(2);
    let child = record(&calls, "parent_call_sid", &sid);
    assert!(
        took < Duration::from_secs(10) && child["status"] == "failed",
        "the refused connection should fail the dial at once: the caller's final {finals:?} came after {took:?}, \
         the child record is {child:#}\n{}",
        rig.context()
    );
    assert!(outcome.success() && finals.first().is_some_and(|s| *s >= 400), "{}", outcome.report);
    assert_record(record(&calls, "sid", &sid), "failed", "inbound", CALLER, NUMBER);
    assert_record(child, "failed", "outbound-dial", CALLER, CALLEE);
}

/// SIGTERM drains: the call in progress goes on (media flows), a new call
/// is refused 503 meanwhile; when the grace (`drain_s`) is over, the call
/// left is hung up with BYE both ways, and the appliance exits 0.
#[test]
fn sigterm_drains_calls_then_hangs_up_the_rest() {
    let outbound = format!("sip:{CALLEE_IP}:{CALLEE_SIP_PORT}");
    let mut rig = Rig::configured(&outbound, "", |c| c.drain_s = 3);
    rig.twiml("/voice", &format!("<Response><Dial><Number>{CALLEE}</Number></Dial></Response>"));
    rig.accept_callbacks(&["/status"]);
    let mut p = rig.dial_in("uac_call.xml", NUMBER, 1);
    let call = rig.bridged(&mut p, CALLEE);

    rig.app.terminate().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    rig.media_flows("while draining", &p, call.toward_caller, call.toward_callee);
    let rtp = rig.carrier.endpoint().unwrap();
    let late = rig.caller_from(&rig.carrier, "uac_refused.xml", NUMBER, &rtp, Signaling::Tcp);
    assert_eq!(rig.refused_with(late, "a call while draining"), 503, "{}", rig.context());
    let metrics = rig.app.admin.metrics().unwrap();
    assert_eq!(metric_sum_with(&metrics, "bridgehead_calls_refused", "reason=\"draining\""), Some(1), "{metrics}");

    let caller = rig.finished(p.caller, "caller");
    assert!(caller.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("received")), "{}", caller.report);
    let callee = rig.finished(p.callee, "callee");
    assert!(callee.logs.iter().any(|l| l.event == "bye" && l.get("event") == Some("received")), "{}", callee.report);
    let status = rig.app.wait_exit(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "exit after draining: {status}");
}
