//! End-to-end tests of the AF_XDP backend: the `bridgehead` process on the
//! media LAN's bridge (`br0` = 192.0.2.1 in the app namespace, the kernel's
//! address), its XDP program steering media to it and leaving the rest
//! (ping, ARP, TCP to the admin port) to the kernel.
//!
//! ```text
//!   peer a 192.0.2.10 ─┐
//!   peer b 192.0.2.11 ─┼─ br0 192.0.2.1 ── XDP: media ─▶ bridgehead (AF_XDP)
//!   peer c 192.0.2.12 ─┘                     rest  ─▶ kernel
//! ```
//!
//! Peers send with their checksum offload off (see
//! [`MediaLan::full_checksums`]); a datagram a peer receives passed its
//! kernel's UDP checksum check, so arrival proves the incremental update.
//! Needs root, `ip`, `ethtool`, `ping` and a kernel with AF_XDP.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use test_harness::admin::{LegRequest, SessionInfo, SessionRequest};
use test_harness::appliance::{run_bridgehead, Appliance, ApplianceConfig, ScratchDir};
use test_harness::rtp::{assert_relayed_verbatim, Pace, RtpEndpoint, RtpStream};
use test_harness::settle;
use test_harness::topology::{MediaLan, Peer, MEDIA_IP};

const ARRIVE: Duration = Duration::from_secs(5);

/// The appliance on AF_XDP and three peers. Fields drop in order: the
/// appliance stops (detaching its program) before the namespaces go.
struct Rig {
    app: Appliance,
    a: Peer,
    b: Peer,
    c: Peer,
    lan: MediaLan,
}

impl Rig {
    fn new() -> Rig {
        let mut lan = MediaLan::new().expect("media LAN");
        lan.full_checksums();
        let a = lan.add_peer("a").expect("peer a");
        let b = lan.add_peer("b").expect("peer b");
        let c = lan.add_peer("c").expect("peer c");
        lan.app.ip(&["link", "set", "lo", "up"]).unwrap();
        let mut config = ApplianceConfig::sockets(lan.media_ip());
        config.backend = "af_xdp".into();
        config.workers = 1;
        config.admin = SocketAddr::from(([0, 0, 0, 0], 9090));
        config.extra = "[dataplane.af_xdp]\ninterface = \"br0\"\n".into();
        let app = Appliance::start(config, Some(&lan.app)).expect("appliance on AF_XDP");
        Rig { app, a, b, c, lan }
    }

    fn create(&self, leg0: LegRequest, leg1: LegRequest) -> SessionInfo {
        self.app.admin.create_session(&SessionRequest::new(leg0, leg1)).expect("create session")
    }

    /// Sends single packets from `from` to `to_local` until one reaches
    /// `receiver`: the worker has installed the session and resolved the
    /// next hop. Returns how many probes it took.
    fn until_relayed(&self, from: &RtpEndpoint, to_local: SocketAddr, receiver: &RtpEndpoint) -> usize {
        let mut probe = RtpStream::pcmu(0xC0, 1, 160);
        let started = Instant::now();
        for sent in 1.. {
            let rx = receiver.receive_in_background(1, Duration::from_millis(100)).unwrap();
            from.send_stream(to_local, &mut probe, 1, Pace::Bursts(1)).unwrap();
            if !rx.join().unwrap().unwrap().is_empty() {
                return sent;
            }
            assert!(started.elapsed() < ARRIVE, "nothing relayed; appliance log:\n{}", self.app.stderr());
        }
        unreachable!()
    }
}

#[test]
fn relays_both_ways_and_the_kernel_keeps_everything_else() {
    let rig = Rig::new();
    assert!(
        rig.app.stderr().contains("AF_XDP steering attached"),
        "the log says how the program runs:\n{}",
        rig.app.stderr()
    );

    // Not media: the kernel's, as if there were no program.
    rig.a
        .ns
        .exec("ping", &["-c", "2", "-i", "0.2", "-W", "2", &MEDIA_IP.to_string()], None)
        .expect("ping the appliance's address");
    let live = rig
        .a
        .ns
        .run_in(|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&SocketAddr::from((MEDIA_IP, 9090)), Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(b"GET /live HTTP/1.1\r\nHost: bh\r\nConnection: close\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
        .unwrap()
        .expect("TCP to the admin port");
    assert!(live.starts_with("HTTP/1.1 200") && live.ends_with("live\n"), "{live}");

    // Media: A -> B and B -> A through the dataplane.
    let (ea, eb) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let s = rig.create(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr()));
    rig.until_relayed(&ea, s.legs[0].local, &eb);
    // The probes' counts reach the session within a sweep (a second).
    std::thread::sleep(Duration::from_millis(1200));
    let before = rig.app.admin.session(s.id).unwrap();
    for (from, to, leg_in, leg_out, ssrc) in [(&ea, &eb, 0, 1, 0xA1), (&eb, &ea, 1, 0, 0xB1)] {
        let rx = to.receive_in_background(200, ARRIVE).unwrap();
        let sent =
            from.send_stream(s.legs[leg_in].local, &mut RtpStream::pcmu(ssrc, 1, 160), 200, Pace::Bursts(20)).unwrap();
        let got = rx.join().expect("receiver").expect("receive");
        assert_relayed_verbatim(&format!("leg {leg_in} -> leg {leg_out}"), &sent, &got, s.legs[leg_out].local);
    }
    let delta = |s: &SessionInfo, leg: usize| {
        let (now, then) = (&s.legs[leg].counters, &before.legs[leg].counters);
        (now.rx_packets - then.rx_packets, now.tx_packets - then.tx_packets)
    };
    let both = |s: &SessionInfo| delta(s, 0).1 >= 200 && delta(s, 1).1 >= 200;
    let after = settle(Duration::from_secs(3), || rig.app.admin.session(s.id), both).unwrap();
    assert_eq!((delta(&after, 0), delta(&after, 1)), ((200, 200), (200, 200)), "{after:?}");

    // DTMF the dataplane originates goes out through the socket's ring.
    let rx = eb.receive_raw_in_background(8, ARRIVE).unwrap();
    rig.app.admin.digits(s.id, 1, "5").expect("digits");
    let got = rx.join().expect("receiver").expect("receive");
    assert_eq!(got.len(), 8, "one digit, 8 packets: {}", rig.app.stderr());
    for (from, d) in &got {
        assert_eq!((*from, d[1] & 0x7f, d[12]), (s.legs[1].local, 101, 5));
    }
}

#[test]
fn a_next_hop_missing_from_the_kernel_cache_is_resolved_by_the_kernel() {
    let rig = Rig::new();
    // The LAN's static entry for c goes: only the kernel's ARP, which the
    // backend asks for, can find it again.
    rig.lan.app.ip(&["neigh", "del", &rig.c.ip.to_string(), "dev", "br0"]).unwrap();
    let (ea, ec) = (rig.a.endpoint().unwrap(), rig.c.endpoint().unwrap());
    let s = rig.create(LegRequest::to(ea.local_addr()), LegRequest::to(ec.local_addr()));
    rig.until_relayed(&ea, s.legs[0].local, &ec);
    let rx = ec.receive_in_background(100, ARRIVE).unwrap();
    let sent = ea.send_stream(s.legs[0].local, &mut RtpStream::pcmu(0xA2, 1, 160), 100, Pace::Bursts(20)).unwrap();
    assert_relayed_verbatim("a -> c", &sent, &rx.join().unwrap().unwrap(), s.legs[1].local);
    let out = std::process::Command::new("ip")
        .args(["-n", rig.lan.app.name(), "neigh", "show", &rig.c.ip.to_string(), "dev", "br0"])
        .output()
        .unwrap();
    let entry = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(entry.contains("lladdr") && !entry.contains("PERMANENT"), "the kernel resolved c itself: {entry:?}");
}

#[test]
fn bad_packets_and_unallocated_ports_are_counted_not_relayed() {
    let rig = Rig::new();
    let (ea, eb) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let s = rig.create(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr()));
    let leg0 = s.legs[0].local;
    rig.until_relayed(&ea, leg0, &eb);
    let before = rig.app.admin.worker_totals().unwrap();
    ea.send_raw(leg0, &[0x80, 0, 0]).unwrap(); // truncated
    ea.send_raw(leg0, &[0xC0; 40]).unwrap(); // version 3
    ea.send_raw(leg0, &[0x08; 40]).unwrap(); // not RTP
    ea.send_raw(SocketAddr::new(IpAddr::V4(MEDIA_IP), 20198), &[0x80; 40]).unwrap(); // no session
    let reasons = ["truncated", "bad_version", "not_rtp", "no_session"];
    let t = settle(
        Duration::from_secs(3),
        || rig.app.admin.worker_totals(),
        |t| reasons.iter().map(|r| t.drops(r) - before.drops(r)).sum::<u64>() >= 4,
    )
    .unwrap();
    for reason in reasons {
        assert_eq!(t.drops(reason) - before.drops(reason), 1, "{reason}: {t:?}");
    }
    let rx = eb.receive_in_background(50, ARRIVE).unwrap();
    let sent = ea.send_stream(leg0, &mut RtpStream::pcmu(0xC1, 1, 160), 50, Pace::Bursts(10)).unwrap();
    assert_relayed_verbatim("after the bad packets", &sent, &rx.join().unwrap().unwrap(), s.legs[1].local);
}

#[test]
fn start_up_names_a_missing_interface_and_a_missing_key() {
    let dir = ScratchDir::new("noxdp").unwrap();
    let run = |name: &str, section: &str| {
        let path = dir.path().join(name);
        let config = format!(
            "[appliance]\nstate_dir = {:?}\n[listen]\nadmin = \"127.0.0.1:0\"\n[dataplane]\nbackend = \"af_xdp\"\nworkers = 1\n{section}",
            dir.path().join("state")
        );
        std::fs::write(&path, config).unwrap();
        run_bridgehead(&["--config".as_ref(), path.as_os_str()], Duration::from_secs(20)).unwrap()
    };
    let missing = run("missing.toml", "[dataplane.af_xdp]\ninterface = \"bh-no-such0\"\n");
    assert_eq!(missing.status.code(), Some(1), "stderr:\n{}", missing.stderr);
    assert!(missing.stderr.contains("bh-no-such0"), "names the interface:\n{}", missing.stderr);
    let unnamed = run("unnamed.toml", "");
    assert_eq!(unnamed.status.code(), Some(2), "stderr:\n{}", unnamed.stderr);
    assert!(unnamed.stderr.contains("dataplane.af_xdp.interface"), "names the key:\n{}", unnamed.stderr);
}

#[test]
fn driver_mode_on_a_veth_relays_both_ways() {
    use test_harness::netns::{veth, Netns};
    // app: nic0 192.0.2.1 ═══ sw: br0 ─ a 192.0.2.10, b 192.0.2.11. The
    // program runs in veth's driver hook, before any socket buffer exists.
    let mut lan = MediaLan::new().expect("switch");
    lan.full_checksums();
    let a = lan.add_peer("a").unwrap();
    let b = lan.add_peer("b").unwrap();
    let sw = &lan.app;
    // The switch gives up the media address and its MAC (which the peers'
    // static entries name) to the app namespace's nic0.
    sw.ip(&["addr", "del", &format!("{MEDIA_IP}/24"), "dev", "br0"]).unwrap();
    sw.ip(&["link", "set", "br0", "address", "02:00:c0:00:00:fe"]).unwrap();
    let app_ns = Netns::new("xapp").unwrap();
    veth(&app_ns, "nic0", "02:00:c0:00:02:01", sw, "pnic", "02:00:c0:01:02:01").unwrap();
    sw.ip(&["link", "set", "pnic", "master", "br0"]).unwrap();
    sw.ip(&["link", "set", "pnic", "up"]).unwrap();
    app_ns.ip(&["addr", "add", &format!("{MEDIA_IP}/24"), "dev", "nic0"]).unwrap();
    app_ns.ip(&["link", "set", "nic0", "up"]).unwrap();
    app_ns.ip(&["link", "set", "lo", "up"]).unwrap();
    let mut config = ApplianceConfig::sockets(IpAddr::V4(MEDIA_IP));
    config.backend = "af_xdp".into();
    config.workers = 1;
    config.extra = "[dataplane.af_xdp]\ninterface = \"nic0\"\nmode = \"driver\"\n".into();
    let app = Appliance::start(config, Some(&app_ns)).expect("appliance on AF_XDP, driver mode");
    assert!(app.stderr().contains("driver"), "{}", app.stderr());

    let (ea, eb) = (a.endpoint().unwrap(), b.endpoint().unwrap());
    let s = app
        .admin
        .create_session(&SessionRequest::new(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr())))
        .unwrap();
    // Neither peer is in the app namespace's ARP cache yet: the first
    // frames wait for the kernel to resolve them.
    let started = Instant::now();
    let mut probe = RtpStream::pcmu(0xC0, 1, 160);
    loop {
        let rx = eb.receive_in_background(1, Duration::from_millis(100)).unwrap();
        ea.send_stream(s.legs[0].local, &mut probe, 1, Pace::Bursts(1)).unwrap();
        if !rx.join().unwrap().unwrap().is_empty() {
            break;
        }
        assert!(started.elapsed() < ARRIVE, "nothing relayed; appliance log:\n{}", app.stderr());
    }
    for (from, to, leg_in, leg_out, ssrc) in [(&ea, &eb, 0, 1, 0xA3), (&eb, &ea, 1, 0, 0xB3)] {
        let rx = to.receive_in_background(200, ARRIVE).unwrap();
        let sent =
            from.send_stream(s.legs[leg_in].local, &mut RtpStream::pcmu(ssrc, 1, 160), 200, Pace::Bursts(20)).unwrap();
        let got = rx.join().expect("receiver").expect("receive");
        assert_relayed_verbatim(&format!("leg {leg_in} -> leg {leg_out}"), &sent, &got, s.legs[leg_out].local);
    }
    drop(app);
}
