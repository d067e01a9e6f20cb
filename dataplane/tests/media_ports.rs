//! The socket backend keeps a media port's socket open between sessions:
//! the next session on the port binds nothing, what reaches an idle port is
//! read and counted as `no_session`, and a process out of files gets its
//! idle sockets back and refuses only the session that could not bind.

use dataplane::control::SessionRequest;
use dataplane::engine::counters::DropReason;
use dataplane::session::LegSettings;
use dataplane::{Dataplane, DataplaneConfig, DataplaneHandle};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend([0xd5; 160]);
    p
}

fn start(ports: std::ops::RangeInclusive<u16>) -> Dataplane {
    let config = DataplaneConfig { ports, workers: 1, sessions: 64, ..DataplaneConfig::default() };
    let dataplane = Dataplane::start(config).expect("dataplane starts");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dataplane.handle().ready() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    dataplane
}

struct Peers {
    a: UdpSocket,
    b: UdpSocket,
}

fn peers() -> Peers {
    let bind = || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        s
    };
    Peers { a: bind(), b: bind() }
}

fn request(p: &Peers, rtcp_mux: bool) -> SessionRequest {
    let leg = |s: &UdpSocket| LegSettings { remote: Some(s.local_addr().unwrap()), ..LegSettings::default() };
    SessionRequest { legs: [leg(&p.a), leg(&p.b)], rtcp_mux }
}

/// Sends one packet from peer a to `to` and says whether peer b got it.
fn relayed(p: &Peers, to: SocketAddr, seq: u16) -> bool {
    p.a.send_to(&rtp(seq), to).unwrap();
    let mut buf = [0u8; 2048];
    matches!(p.b.recv_from(&mut buf), Ok((n, _)) if n == 172)
}

fn no_session_drops(h: &DataplaneHandle) -> u64 {
    h.worker_stats()
        .iter()
        .flat_map(|w| w.drops.iter())
        .filter(|(r, _)| *r == DropReason::NoSession)
        .map(|(_, n)| n)
        .sum()
}

fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn a_port_keeps_its_socket_for_the_next_session() {
    // 4 port pairs: two sessions, then the first one's ports come round again.
    let dataplane = start(46100..=46107);
    let h = dataplane.handle();
    let p = peers();

    let first = h.create_session(request(&p, false)).unwrap();
    let port = first.legs[0].local;
    assert!(relayed(&p, port, 1), "the first session relays");
    h.delete_session(first.id).unwrap();

    // Idle, the port is still ours and what reaches it is counted, not relayed.
    let err = UdpSocket::bind(port).expect_err("the idle port's socket is kept open");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    let before = no_session_drops(&h);
    assert!(!relayed(&p, port, 2), "an idle port relays nothing");
    assert!(wait_for(|| no_session_drops(&h) > before), "a packet to an idle port counts as no_session");

    // Oldest freed first: the second session takes the other pairs, the third the first's again.
    let second = h.create_session(request(&p, false)).unwrap();
    let third = h.create_session(request(&p, true)).unwrap();
    assert_ne!(second.legs[0].local, port);
    assert_eq!(third.legs[0].local, port, "the first session's port came round");
    assert!(relayed(&p, port, 3), "the reused socket relays for its new session");

    // The third session multiplexes RTCP: its (still open) RTCP port delivers nothing.
    let rtcp_port = SocketAddr::new(port.ip(), port.port() + 1);
    let before = no_session_drops(&h);
    assert!(!relayed(&p, rtcp_port, 4), "an rtcp-mux session does not take its odd port");
    assert!(wait_for(|| no_session_drops(&h) > before));
    assert!(relayed(&p, second.legs[0].local, 5), "the other session is untouched");
    dataplane.stop();
}
