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

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use test_harness::admin::{metric_sum_with, LegRequest, SessionInfo, SessionRequest};
use test_harness::appliance::{run_bridgehead, Appliance, ApplianceConfig, ScratchDir};
use test_harness::relay_checks::{assert_bad_packets_counted, live_over_tcp, relay_both_ways, until_relayed};
use test_harness::rtp::{assert_relayed_verbatim, Pace, RtpStream};
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
    let live = live_over_tcp(&rig.a.ns, SocketAddr::from((MEDIA_IP, 9090)));
    assert!(live.starts_with("HTTP/1.1 200") && live.ends_with("live\n"), "{live}");

    // Media: A -> B and B -> A through the dataplane.
    let (ea, eb) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let s = rig.create(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr()));
    until_relayed(&ea, s.legs[0].local, &eb, || rig.app.stderr());
    // The probes' counts reach the session within a sweep (a second).
    std::thread::sleep(Duration::from_millis(1200));
    let before = rig.app.admin.session(s.id).unwrap();
    relay_both_ways(&ea, &eb, &s, 200, [0xA1, 0xB1]);
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
    until_relayed(&ea, s.legs[0].local, &ec, || rig.app.stderr());
    let rx = ec.receive_in_background(100, ARRIVE).unwrap();
    let sent = ea.send_stream(s.legs[0].local, &mut RtpStream::pcmu(0xA2, 1, 160), 100, Pace::Bursts(20)).unwrap();
    assert_relayed_verbatim("a -> c", &sent, &rx.join().unwrap().unwrap(), s.legs[1].local);
    // The app namespace's ARP cache, read from a thread inside it.
    let arp = rig.lan.app.run_in(|| std::fs::read_to_string("/proc/thread-self/net/arp")).unwrap().unwrap();
    let c_mac = "02:00:c0:02:02:0c";
    let entry = arp.lines().find(|l| l.split_whitespace().next() == Some(&rig.c.ip.to_string()));
    assert!(
        entry.is_some_and(|e| e.contains(c_mac) && e.split_whitespace().nth(2) == Some("0x2")),
        "the kernel resolved c itself (complete, not permanent): {entry:?} in\n{arp}"
    ); // Published with the worker's housekeeping (an idle loop at most).
    let asked = settle(
        Duration::from_secs(3),
        || {
            rig.app
                .admin
                .metrics()
                .map(|m| metric_sum_with(&m, "bridgehead_dataplane_backend_events", "event=\"resolutions_requested\""))
        },
        |n| n.is_some_and(|n| n >= 1),
    )
    .unwrap();
    assert!(asked.is_some_and(|n| n >= 1), "resolutions_requested in /metrics: {asked:?}");
}

#[test]
fn bad_packets_and_unallocated_ports_are_counted_not_relayed() {
    let rig = Rig::new();
    let (ea, eb) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let s = rig.create(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr()));
    let leg0 = s.legs[0].local;
    until_relayed(&ea, leg0, &eb, || rig.app.stderr());
    assert_bad_packets_counted(&rig.app.admin, (&ea, &eb), &s, SocketAddr::new(IpAddr::V4(MEDIA_IP), 20198));
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
    until_relayed(&ea, s.legs[0].local, &eb, || app.stderr());
    relay_both_ways(&ea, &eb, &s, 200, [0xA3, 0xB3]);
    drop(app);
}

#[test]
fn ipv6_media_is_relayed_with_next_hops_the_kernel_resolves() {
    use std::net::Ipv6Addr;
    let media6: Ipv6Addr = "2001:db8:0:2::1".parse().unwrap();
    let mut lan = MediaLan::new().expect("media LAN");
    lan.full_checksums();
    let a = lan.add_peer("a").unwrap();
    let b = lan.add_peer("b").unwrap();
    // IPv6 beside the LAN's IPv4, no duplicate address detection to wait
    // for, and no static neighbour entries: the kernel resolves both peers.
    lan.app.ip(&["-6", "addr", "add", &format!("{media6}/64"), "dev", "br0", "nodad"]).unwrap();
    let peer6 = |peer: &Peer, host: u16| -> Ipv6Addr {
        let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, host);
        peer.ns.ip(&["-6", "addr", "add", &format!("{ip}/64"), "dev", "eth0", "nodad"]).unwrap();
        ip
    };
    let (a6, b6) = (peer6(&a, 0xa), peer6(&b, 0xb));
    let mut config = ApplianceConfig::sockets(IpAddr::V6(media6));
    config.backend = "af_xdp".into();
    config.workers = 1;
    config.extra = "[dataplane.af_xdp]\ninterface = \"br0\"\n".into();
    let app = Appliance::start(config, Some(&lan.app)).expect("appliance on AF_XDP with IPv6 media");

    let ea = test_harness::rtp::RtpEndpoint::bind_in(&a.ns, SocketAddr::new(IpAddr::V6(a6), 0)).unwrap();
    let eb = test_harness::rtp::RtpEndpoint::bind_in(&b.ns, SocketAddr::new(IpAddr::V6(b6), 0)).unwrap();
    let s = app
        .admin
        .create_session(&SessionRequest::new(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr())))
        .unwrap();
    assert!(s.legs[0].local.is_ipv6(), "{s:?}");
    until_relayed(&ea, s.legs[0].local, &eb, || app.stderr());
    relay_both_ways(&ea, &eb, &s, 200, [0xA6, 0xB6]);
}
