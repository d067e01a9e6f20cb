//! The WAN emulator (test_harness::wan): delay lines between regions really
//! delay, carry TCP, leave a region's own traffic alone, and cut and heal.
//!
//! Needs root (namespaces) and ethtool; fails rather than skips without them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use test_harness::topology::Peer;
use test_harness::wan::Wan;

/// A UDP echo server on a peer; stops when dropped.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn on(peer: &Peer) -> Echo {
        let socket = peer.ns.run_in(|| UdpSocket::bind((peer.ip, 0))).unwrap().unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        Echo { addr, stop, thread: Some(thread) }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Round trips of `count` UDP probes from `from` to `echo`, each waited for
/// up to `timeout`; `None` for a probe that got no answer.
fn probe(from: &Peer, echo: &Echo, count: u32, timeout: Duration) -> Vec<Option<Duration>> {
    let socket = from.ns.run_in(|| UdpSocket::bind((from.ip, 0))).unwrap().unwrap();
    socket.connect(echo.addr).unwrap();
    let mut rtts = Vec::new();
    for seq in 0..count {
        let sent = Instant::now();
        socket.send(&seq.to_be_bytes()).unwrap();
        let mut got = None;
        while got.is_none() {
            let left = timeout.saturating_sub(sent.elapsed());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 16];
            match socket.recv(&mut buf) {
                // A late answer to an earlier probe is not this one's.
                Ok(4) if buf[..4] == seq.to_be_bytes() => got = Some(sent.elapsed()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        rtts.push(got);
    }
    rtts
}

/// The median of answered probes; all must have been answered.
fn median(what: &str, rtts: &[Option<Duration>]) -> Duration {
    let mut answered: Vec<Duration> =
        rtts.iter().map(|r| r.unwrap_or_else(|| panic!("{what}: a probe got no answer: {rtts:?}"))).collect();
    answered.sort_unstable();
    answered[answered.len() / 2]
}

#[test]
fn a_line_delays_between_regions_and_not_within() {
    let mut wan = Wan::new("near").expect("a WAN (the end-to-end tests need root)");
    wan.add_region("far", Duration::from_millis(20)).unwrap();
    let near_a = wan.add_peer_in("near", "neara").unwrap();
    let near_b = wan.add_peer_in("near", "nearb").unwrap();
    let far_a = wan.add_peer_in("far", "fara").unwrap();
    let far_b = wan.add_peer_in("far", "farb").unwrap();
    assert_eq!(wan.one_way("near", "far").unwrap(), Duration::from_millis(20));

    let echo_far = Echo::on(&far_a);
    // A first probe (neighbours are static: no ARP crosses the line first).
    probe(&near_a, &echo_far, 1, Duration::from_secs(2));
    let rtts = probe(&near_a, &echo_far, 20, Duration::from_secs(2));
    let across = median("across", &rtts);
    let fastest = rtts.iter().flatten().min().copied().unwrap();
    eprintln!("UDP round trip across a 20 ms line: median {across:?}, min {fastest:?}");
    assert!(fastest >= Duration::from_millis(35), "{rtts:?}");
    assert!(across < Duration::from_millis(500), "{rtts:?}");

    // Within a region: no line on the way.
    let echo_near = Echo::on(&near_b);
    probe(&near_a, &echo_near, 1, Duration::from_secs(2));
    let within_near = median("within near", &probe(&near_a, &echo_near, 20, Duration::from_secs(2)));
    probe(&far_b, &echo_far, 1, Duration::from_secs(2));
    let within_far = median("within far", &probe(&far_b, &echo_far, 20, Duration::from_secs(2)));
    eprintln!("UDP round trip within the near region {within_near:?}, within the far one {within_far:?}");
    assert!(within_near < Duration::from_millis(10), "{within_near:?}");
    assert!(within_far < Duration::from_millis(10), "{within_far:?}");

    // The app namespace (192.0.2.1) is in the core region: a far host is
    // 20 ms from it too.
    let socket = wan.app().run_in(|| UdpSocket::bind("192.0.2.1:0")).unwrap().unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    for _ in 0..2 {
        let sent = Instant::now();
        socket.send_to(b"ping", echo_far.addr).unwrap();
        let mut buf = [0u8; 8];
        socket.recv_from(&mut buf).expect("the far host answers the app namespace");
        let rtt = sent.elapsed();
        eprintln!("UDP round trip app namespace -> far region: {rtt:?}");
        assert!(rtt >= Duration::from_millis(35), "{rtt:?}");
    }

    // And ICMP, by the ordinary ping.
    far_b.ns.exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", &near_a.ip.to_string()], None).expect("ping across");
    // What this test sent across, each way: 21 probes from near_a to the
    // far echo, 2 from the app namespace, 3 pings. The rest of what the
    // line carries (IPv6 router solicitations, MLD, DAD of the namespaces'
    // interfaces) depends on timing: 80 to 88 frames in all were seen.
    let stats = wan.line_stats("far").unwrap();
    assert!(stats.forwarded >= 2 * (21 + 2 + 3), "{stats:?}");
    eprintln!("line: {stats:?}");
}

#[test]
fn tcp_crosses_a_line_intact() {
    let mut wan = Wan::new("near").expect("a WAN (the end-to-end tests need root)");
    wan.add_region("far", Duration::from_millis(20)).unwrap();
    let client = wan.add_peer_in("near", "client").unwrap();
    let server = wan.add_peer_in("far", "server").unwrap();
    let listener = server.ns.run_in(|| TcpListener::bind((server.ip, 0))).unwrap().unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            conn.write_all(&buf[..n]).unwrap();
        }
    });
    let connecting = Instant::now();
    let stream = client.ns.run_in(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5))).unwrap().unwrap();
    let handshake = connecting.elapsed();
    eprintln!("TCP connect across a 20 ms line: {handshake:?}");
    assert!(handshake >= Duration::from_millis(35), "{handshake:?}");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    // 4 MiB: far more than a segment, so the send path segments (offloads
    // are off on the line) and every frame must arrive with a good checksum.
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let started = Instant::now();
    let mut writer = stream.try_clone().unwrap();
    let sent = data.clone();
    let writing = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    (&stream).read_to_end(&mut back).unwrap();
    writing.join().unwrap();
    echo.join().unwrap();
    eprintln!("4 MiB echoed across in {:?}; line: {:?}", started.elapsed(), wan.line_stats("far").unwrap());
    assert!(back == data, "the echo differs ({} of {} bytes back)", back.len(), data.len());
}

#[test]
fn delays_add_across_the_core_and_a_cut_line_heals() {
    let mut wan = Wan::new("core").expect("a WAN (the end-to-end tests need root)");
    wan.add_region("east", Duration::from_millis(20)).unwrap();
    wan.add_region("west", Duration::from_millis(10)).unwrap();
    let core = wan.add_peer_in("core", "core").unwrap();
    let east = wan.add_peer_in("east", "east").unwrap();
    let west = wan.add_peer_in("west", "west").unwrap();
    assert_eq!(wan.one_way("east", "west").unwrap(), Duration::from_millis(30));
    assert!(wan.cut("core").is_err(), "the core has no line");

    let echo_east = Echo::on(&east);
    probe(&west, &echo_east, 1, Duration::from_secs(2));
    let rtts = probe(&west, &echo_east, 10, Duration::from_secs(2));
    let fastest = rtts.iter().flatten().min().copied().unwrap();
    eprintln!("UDP round trip west -> east (10 + 20 ms each way): median {:?}", median("west-east", &rtts));
    assert!(fastest >= Duration::from_millis(55), "{rtts:?}");

    // Cut east: nobody reaches it, while east's own line keeps its stats.
    probe(&core, &echo_east, 1, Duration::from_secs(2));
    wan.cut("east").unwrap();
    // A frame being sent at the very moment of the cut may still count.
    std::thread::sleep(Duration::from_millis(50));
    let before = wan.line_stats("east").unwrap();
    let cut = probe(&core, &echo_east, 3, Duration::from_millis(300));
    assert!(cut.iter().all(Option::is_none), "east answered while cut: {cut:?}");
    assert!(probe(&west, &echo_east, 2, Duration::from_millis(300)).iter().all(Option::is_none));
    let during = wan.line_stats("east").unwrap();
    assert_eq!(during.forwarded, before.forwarded, "a cut line forwards nothing");
    assert!(during.dropped > before.dropped, "{during:?}");
    // West is not affected.
    let echo_west = Echo::on(&west);
    assert!(probe(&core, &echo_west, 2, Duration::from_secs(2)).iter().all(Option::is_some));

    wan.heal("east").unwrap();
    let healed = probe(&core, &echo_east, 5, Duration::from_secs(2));
    eprintln!("after healing: {healed:?}");
    assert!(healed.iter().all(Option::is_some), "{healed:?}");
    assert!(healed.iter().flatten().all(|rtt| *rtt >= Duration::from_millis(35)), "{healed:?}");
}
