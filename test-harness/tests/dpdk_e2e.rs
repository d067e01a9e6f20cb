//! End-to-end tests of the DPDK backend: the `bridgehead` process (built
//! with `--features dpdk`) owns its media address on a veth through
//! `net_af_packet`, with `net_tap` as the exception path to its kernel.
//!
//! ```text
//!  ns app                                 ns sw (bridge br0)      ns a / ns b
//!  bridgehead ── net_af_packet0 ── nic0 ═══ pnic ─┬─ p10 ═══ eth0 192.0.2.10
//!      └─ net_tap0 ── bh0 (kernel, 192.0.2.1/24)  └─ p11 ═══ eth0 192.0.2.11
//! ```
//!
//! Everything lives in namespaces the test makes; nothing touches the host's
//! own interfaces or addresses. Needs root, `ip`, `nft`, `ethtool`, `ping`.
//! Checksum offload is off on the veths: a frame read by af_packet from a
//! veth with offload on carries a checksum the kernel never filled in.
//! A datagram a peer receives passed its kernel's UDP checksum check, so
//! arrival proves the dataplane's incremental checksum update.
#![cfg(feature = "dpdk")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use test_harness::admin::{metric_sum_with, LegRequest, SessionInfo, SessionRequest};
use test_harness::appliance::{Appliance, ApplianceConfig};
use test_harness::netns::{veth, Netns};
use test_harness::relay_checks::{assert_bad_packets_counted, live_over_tcp, relay_both_ways, until_relayed};
use test_harness::settle;
use test_harness::topology::Peer;

const MEDIA_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ARRIVE: Duration = Duration::from_secs(5);

fn mac(kind: u8, host: u8) -> String {
    format!("02:00:d0:{kind:02x}:02:{host:02x}")
}

/// The appliance on DPDK, two peers on a switch. Fields drop in order: the
/// appliance stops before its namespaces go.
struct Rig {
    app: Appliance,
    a: Peer,
    b: Peer,
    _app_ns: Netns,
    _sw: Netns,
}

fn plug_peer(sw: &Netns, role: &str, host: u8) -> Peer {
    let ns = Netns::new(role).expect("peer namespace");
    let port = format!("p{host}");
    veth(&ns, "eth0", &mac(2, host), sw, &port, &mac(1, host)).expect("peer veth");
    sw.ip(&["link", "set", &port, "master", "br0"]).unwrap();
    sw.ip(&["link", "set", &port, "up"]).unwrap();
    let ip = Ipv4Addr::new(192, 0, 2, host);
    ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]).unwrap();
    ns.ip(&["link", "set", "eth0", "up"]).unwrap();
    ns.exec("ethtool", &["-K", "eth0", "tx", "off", "rx", "off"], None).expect("ethtool on the peer");
    Peer { ns, ip }
}

impl Rig {
    fn new() -> Rig {
        let sw = Netns::new("sw").expect("switch namespace");
        sw.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
        sw.ip(&["link", "set", "br0", "up"]).unwrap();

        let app_ns = Netns::new("dapp").expect("appliance namespace");
        veth(&app_ns, "nic0", &mac(0, 1), &sw, "pnic", &mac(1, 1)).expect("appliance veth");
        sw.ip(&["link", "set", "pnic", "master", "br0"]).unwrap();
        sw.ip(&["link", "set", "pnic", "up"]).unwrap();
        app_ns.ip(&["link", "set", "nic0", "up"]).unwrap();
        app_ns.ip(&["link", "set", "lo", "up"]).unwrap();
        app_ns.exec("ethtool", &["-K", "nic0", "tx", "off", "rx", "off"], None).expect("ethtool on nic0");
        // The NIC belongs to the dataplane: the namespace's kernel must not
        // also answer on it. An ingress drop in the netdev family runs
        // after af_packet took its copy.
        let rules = "table netdev bh {\n  chain in {\n    type filter hook ingress device \"nic0\" priority 0; policy drop;\n  }\n}\n";
        app_ns.exec("nft", &["-f", "-"], Some(rules)).expect("nft ingress drop on nic0");

        let a = plug_peer(&sw, "a", 10);
        let b = plug_peer(&sw, "b", 11);

        let mut config = ApplianceConfig::sockets(IpAddr::V4(MEDIA_IP));
        config.backend = "dpdk".into();
        config.workers = 1;
        config.admin = SocketAddr::from(([0, 0, 0, 0], 9090));
        config.extra = [
            "[dataplane.dpdk]",
            "eal_args = [\"--no-huge\", \"--no-pci\", \"-m\", \"512\", \"--log-level=warning\",",
            "            \"--vdev=net_af_packet0,iface=nic0\", \"--vdev=net_tap0,iface=bh0\"]",
            "port = \"net_af_packet0\"",
            "tap = \"net_tap0\"",
            "prefix_len = 24",
        ]
        .join("\n");
        let app = Appliance::start(config, Some(&app_ns)).expect("appliance on DPDK");
        // The kernel side of the exception path: the appliance's host address.
        let _ = app_ns.sysctl("net.ipv6.conf.bh0.disable_ipv6", "1");
        app_ns.exec("ethtool", &["-K", "bh0", "tx", "off"], None).expect("ethtool on bh0");
        app_ns.ip(&["addr", "add", &format!("{MEDIA_IP}/24"), "dev", "bh0"]).unwrap();
        app_ns.ip(&["link", "set", "bh0", "up"]).unwrap();
        Rig { app, a, b, _app_ns: app_ns, _sw: sw }
    }

    /// Each peer pings the media address once: the dataplane answers their
    /// ARP (and learns them), the kernel answers the ping through the TAP.
    fn ping_from(&self, peer: &Peer) -> bool {
        peer.ns.exec("ping", &["-c", "2", "-i", "0.2", "-W", "2", &MEDIA_IP.to_string()], None).is_ok()
    }
}

#[test]
fn relays_both_ways_and_the_kernel_answers_through_the_tap() {
    let rig = Rig::new();

    // Exception path: ping and a TCP connection to the admin port.
    assert!(rig.ping_from(&rig.a), "ping from a; appliance log:\n{}", rig.app.stderr());
    assert!(rig.ping_from(&rig.b), "ping from b");
    let live = live_over_tcp(&rig.a.ns, SocketAddr::from((MEDIA_IP, 9090)));
    assert!(live.starts_with("HTTP/1.1 200") && live.ends_with("live\n"), "{live}");
    // The backend's own counts reach /metrics with its housekeeping.
    let counts = settle(
        Duration::from_secs(3),
        || {
            rig.app.admin.metrics().map(|m| {
                let event =
                    |e: &str| metric_sum_with(&m, "bridgehead_dataplane_backend_events", &format!("event=\"{e}\""));
                (event("arp_replies"), event("to_kernel"), event("from_kernel"))
            })
        },
        |&(arp, to, from)| [arp, to, from].iter().all(|n| n.is_some_and(|n| n >= 2)),
    )
    .unwrap();
    assert!([counts.0, counts.1, counts.2].iter().all(|n| n.is_some_and(|n| n >= 2)), "{counts:?}");

    // Media: A -> B and B -> A through the dataplane.
    let (ea, eb) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let s = rig
        .app
        .admin
        .create_session(&SessionRequest::new(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr())))
        .expect("create session");
    relay_both_ways(&ea, &eb, &s, 200, [0xA1, 0xB1]);
    // Relayed packets reach the session counters with the worker's sweep (within a second).
    let both_sent = |s: &SessionInfo| s.legs.iter().all(|l| l.counters.tx_packets >= 200);
    let after = settle(Duration::from_secs(3), || rig.app.admin.session(s.id), both_sent).unwrap();
    for leg in &after.legs {
        assert_eq!((leg.counters.rx_packets, leg.counters.tx_packets), (200, 200), "{leg:?}");
        assert_eq!(leg.counters.lost, 0);
    }

    // DTMF the dataplane originates: built whole (Ethernet, IP, UDP with
    // checksums the peer's kernel accepts), from leg 1's address to its peer.
    let rx = eb.receive_raw_in_background(16, ARRIVE).unwrap();
    rig.app.admin.digits(s.id, 1, "1#").expect("digits");
    let got = rx.join().expect("receiver").expect("receive");
    let events: Vec<(SocketAddr, u8, u8, bool)> =
        got.iter().map(|(from, d)| (*from, d[1] & 0x7f, d[12], d[13] & 0x80 != 0)).collect();
    assert_eq!(events.len(), 16, "two digits, 8 packets each: {events:?}\n{}", rig.app.stderr());
    for (i, (from, pt, event, end)) in events.iter().enumerate() {
        assert_eq!((*from, *pt), (s.legs[1].local, 101), "packet {i}");
        assert_eq!((*event, *end), (if i < 8 { 1 } else { 11 }, i % 8 >= 5), "packet {i}: {events:?}");
    }

    // A clean stop removes the EAL's runtime directory.
    let mut rig = rig;
    let pid = rig.app.pid().expect("pid");
    let status = rig.app.stop(Duration::from_secs(10)).expect("stop");
    assert!(status.success(), "{status}; log:\n{}", rig.app.stderr());
    assert!(!std::path::Path::new(&format!("/var/run/dpdk/bridgehead-{pid}")).exists(), "EAL runtime dir left behind");
}

#[test]
fn bad_packets_and_unallocated_ports_are_counted_not_relayed() {
    let rig = Rig::new();
    assert!(rig.ping_from(&rig.a) && rig.ping_from(&rig.b), "pings; log:\n{}", rig.app.stderr());
    let (ea, eb) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let s = rig
        .app
        .admin
        .create_session(&SessionRequest::new(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr())))
        .unwrap();
    let leg0 = s.legs[0].local;
    // The worker installs a session from its command queue, after the
    // admin API answered: a packet relayed first shows it is in place (else
    // the bad packets below could meet no session and count as that).
    until_relayed(&ea, leg0, &eb, || rig.app.stderr());
    assert_bad_packets_counted(&rig.app.admin, (&ea, &eb), &s, SocketAddr::new(IpAddr::V4(MEDIA_IP), 20198));
}

#[test]
fn start_up_names_a_missing_dpdk_device() {
    use test_harness::appliance::{run_bridgehead, ScratchDir};
    let dir = ScratchDir::new("nodev").unwrap();
    let path = dir.path().join("nodev.toml");
    let config = format!(
        "[appliance]\nstate_dir = {:?}\n[listen]\nadmin = \"127.0.0.1:0\"\n[dataplane]\nbackend = \"dpdk\"\nworkers = 1\n\
         [dataplane.dpdk]\neal_args = [\"--no-huge\", \"--no-pci\", \"-m\", \"256\", \"--vdev=net_null0\"]\nport = \"net_bogus0\"\n",
        dir.path().join("state")
    );
    std::fs::write(&path, config).unwrap();
    let run = run_bridgehead(&["--config".as_ref(), path.as_os_str()], Duration::from_secs(20)).unwrap();
    assert_eq!(run.status.code(), Some(1), "exit status; stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("net_bogus0") && run.stderr.contains("not found"),
        "a clear message naming the device:\n{}",
        run.stderr
    );
}
