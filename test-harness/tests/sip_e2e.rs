//! End-to-end tests of the SIP transports: the `bridgehead` process in its
//! namespace, a carrier (inside a trunk's `allow`) and a stranger in theirs,
//! real `sipp` (Debian `sip-tester`) as the carrier's user agent, and the
//! RFC 4475 torture messages sent as they are, over UDP and TCP.

use controlplane::sip::{verdict, Message, Verdict};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;
use test_harness::admin::metric_sum_with;
use test_harness::appliance::{Appliance, ApplianceConfig};
use test_harness::topology::{MediaLan, Peer};

struct Rig {
    app: Appliance,
    carrier: Peer,
    stranger: Peer,
    _lan: MediaLan,
}

const TRUNK: &str = r#"
[[accounts]]
sid = "AC00000000000000000000000000000001"
auth_token = "e2e-auth-token"
[[accounts.trunks]]
name = "carrier-a"
allow = ["192.0.2.10/32"]
outbound = "sip:192.0.2.10:5080"
"#;

impl Rig {
    fn new() -> Rig {
        let mut lan = MediaLan::new().expect("media LAN");
        let carrier = lan.add_peer("carrier").expect("carrier");
        let stranger = lan.add_peer("stranger").expect("stranger");
        assert_eq!(carrier.ip.octets()[3], 10, "the trunk allows 192.0.2.10");
        let mut config = ApplianceConfig::sockets(lan.media_ip());
        config.extra = TRUNK.into();
        let app = Appliance::start(config, Some(&lan.app)).expect("appliance");
        Rig { app, carrier, stranger, _lan: lan }
    }

    fn sip_udp(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::from([192, 0, 2, 1]), 5060)
    }

    /// Runs sipp with `scenario` from `peer`; true when every call passed.
    fn sipp(&self, peer: &Peer, scenario: &str, calls: u32, transport: &str) -> (bool, String) {
        let sipp = Path::new("/usr/bin/sipp");
        assert!(sipp.exists(), "sipp missing: apt-get install sip-tester (scripts/test.sh does)");
        let dir = scratch_dir();
        let out = peer
            .ns
            .command(sipp)
            .current_dir(&dir)
            .args(["-sf", &scenario_path(scenario).to_string_lossy(), &self.sip_udp().to_string()])
            .args(["-i", &peer.ip.to_string(), "-t", transport, "-m", &calls.to_string(), "-r", "20"])
            .args(["-timeout", "15s", "-timeout_error", "-nostdin", "-trace_err", "-bg"][..5].iter())
            .arg("-nostdin")
            .output()
            .expect("run sipp");
        let log = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        let _ = std::fs::remove_dir_all(&dir);
        (out.status.success(), log)
    }
}

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp").join(name)
}

fn scratch_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("bh-sipp-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn torture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/rfc4475")
}

fn torture_messages() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(torture_dir())
        .expect("../shared/testdata/rfc4475 beside the project")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "sip"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    assert_eq!(files.len(), 49, "the RFC 4475 set");
    files
}

/// The status the appliance must answer `bytes` from the carrier with, or
/// None for no answer: the parser's verdict, then the call layer's rule
/// (OPTIONS 200; an in-dialog request of no call 481; a new INVITE from a
/// trunk to a number no account has 404; other methods outside a dialog 405).
fn expected(bytes: &[u8]) -> Option<u16> {
    match verdict(bytes) {
        Verdict::Accept(Message::Request(r)) => {
            let in_dialog = r.headers.to_addr().ok().and_then(|t| t.tag().map(|_| ())).is_some();
            match r.method.as_str() {
                "OPTIONS" => Some(200),
                "ACK" => None,
                _ if in_dialog => Some(481),
                "INVITE" => Some(404),
                _ => Some(405),
            }
        }
        Verdict::Accept(Message::Response(_)) | Verdict::Drop { .. } => None,
        Verdict::Reject { status, response, .. } => response.map(|_| status),
    }
}

fn status_of(reply: &[u8]) -> Option<u16> {
    let line = reply.split(|&b| b == b'\r').next()?;
    let text = std::str::from_utf8(line).ok()?;
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

#[test]
fn options_from_sipp_is_answered_200_over_udp_and_tcp() {
    let rig = Rig::new();
    for transport in ["u1", "t1"] {
        let (ok, log) = rig.sipp(&rig.carrier, "options.xml", 5, transport);
        assert!(ok, "sipp OPTIONS over {transport}:\n{log}\nappliance:\n{}", rig.app.stderr());
    }
    let metrics = rig.app.admin.metrics().unwrap();
    let options = metric_sum_with(&metrics, "bridgehead_sip_requests_received_total", "method=\"OPTIONS\"");
    let ok = metric_sum_with(&metrics, "bridgehead_sip_responses_sent_total", "class=\"2xx\"");
    assert!(options >= Some(10) && ok >= Some(10), "OPTIONS {options:?}, 2xx sent {ok:?}:\n{metrics}");
}

#[test]
fn invite_from_an_address_no_trunk_allows_is_refused_403() {
    let rig = Rig::new();
    let (ok, log) = rig.sipp(&rig.stranger, "invite_refused.xml", 3, "u1");
    assert!(ok, "sipp INVITE from a stranger:\n{log}\nappliance:\n{}", rig.app.stderr());
    let sessions = rig.app.admin.worker_totals().unwrap();
    assert_eq!(sessions.rx_packets, 0, "a refused call costs no media");
}

#[test]
fn rfc4475_torture_messages_get_the_right_answer_over_udp_and_tcp_and_nothing_breaks() {
    let rig = Rig::new();
    let target = rig.sip_udp();
    let mut mismatches = Vec::new();
    rig.carrier
        .ns
        .run_in(|| {
            let mut buf = vec![0u8; 65_536];
            for (name, bytes) in torture_messages() {
                let want = expected(&bytes);
                // A socket per message: a late answer cannot be taken for the next one's.
                let udp = UdpSocket::bind("192.0.2.10:0").unwrap();
                let wait = if want.is_some() { 2000 } else { 300 };
                udp.set_read_timeout(Some(Duration::from_millis(wait))).unwrap();
                // UDP: the datagram as the file holds it.
                udp.send_to(&bytes, target).unwrap();
                let got = udp.recv_from(&mut buf).ok().and_then(|(n, _)| status_of(&buf[..n]));
                if got != want {
                    mismatches.push(format!("{name} over UDP: want {want:?}, got {got:?}"));
                }
                // TCP: a connection per message, so one framing error does not hide the next.
                let mut tcp = TcpStream::connect_timeout(&target, Duration::from_secs(2)).unwrap();
                // Without Content-Length a stream cannot be framed: the
                // appliance waits for more, and so need we not.
                let framed = String::from_utf8_lossy(&bytes).lines().any(|l| {
                    let l = l.to_ascii_lowercase();
                    l.starts_with("content-length:") || l.starts_with("l:")
                });
                let tcp_wait = if want.is_some() && framed { 2000 } else { 300 };
                tcp.set_read_timeout(Some(Duration::from_millis(tcp_wait))).unwrap();
                tcp.write_all(&bytes).unwrap();
                let mut reply = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = tcp.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    reply.extend_from_slice(&chunk[..n]);
                    if reply.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let got_tcp = status_of(&reply);
                // Over a stream a message needs Content-Length; without it
                // the stream cannot be framed and is closed unanswered.
                if got_tcp.is_some() && got_tcp != want {
                    mismatches.push(format!("{name} over TCP: want {want:?}, got {got_tcp:?}"));
                }
            }
        })
        .unwrap();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // Still serving afterwards.
    let (ok, log) = rig.sipp(&rig.carrier, "options.xml", 2, "u1");
    assert!(ok, "OPTIONS after the torture:\n{log}");
}
