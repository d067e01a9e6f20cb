//! Checks the dataplane's end-to-end tests share across backends: a session
//! relaying both ways verbatim, bad packets counted by reason, the kernel
//! still answering TCP on the appliance's address.

use crate::admin::{AdminClient, SessionInfo};
use crate::netns::Netns;
use crate::rtp::{assert_relayed_verbatim, Pace, RtpEndpoint, RtpStream};
use crate::settle;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Time a burst of a few hundred packets gets to arrive.
const ARRIVE: Duration = Duration::from_secs(5);

/// Sends `count` packets from `a` to leg 0 and from `b` to leg 1 of session
/// `s` (SSRCs `ssrcs`), and asserts each side receives the other's verbatim
/// from the session's other leg.
pub fn relay_both_ways(a: &RtpEndpoint, b: &RtpEndpoint, s: &SessionInfo, count: usize, ssrcs: [u32; 2]) {
    for (from, to, leg_in, leg_out, ssrc) in [(a, b, 0, 1, ssrcs[0]), (b, a, 1, 0, ssrcs[1])] {
        let rx = to.receive_in_background(count, ARRIVE).expect("receiver");
        let sent = from
            .send_stream(s.legs[leg_in].local, &mut RtpStream::pcmu(ssrc, 1, 160), count, Pace::Bursts(20))
            .expect("send");
        let got = rx.join().expect("receiver thread").expect("receive");
        assert_relayed_verbatim(&format!("leg {leg_in} -> leg {leg_out}"), &sent, &got, s.legs[leg_out].local);
    }
}

/// Sends single packets from `from` to `local` until one reaches
/// `receiver` (the worker installed the session and resolved the next
/// hop); panics with `log()` after 5 s. Returns how many were sent.
pub fn until_relayed(from: &RtpEndpoint, local: SocketAddr, receiver: &RtpEndpoint, log: impl Fn() -> String) -> usize {
    let mut probe = RtpStream::pcmu(0xC0, 1, 160);
    let started = Instant::now();
    let mut sent = 0;
    loop {
        let rx = receiver.receive_in_background(1, Duration::from_millis(100)).expect("receiver");
        from.send_stream(local, &mut probe, 1, Pace::Bursts(1)).expect("send");
        sent += 1;
        if !rx.join().expect("receiver thread").expect("receive").is_empty() {
            return sent;
        }
        assert!(started.elapsed() < ARRIVE, "nothing relayed; appliance log:\n{}", log());
    }
}

/// Sends a truncated, a version-3, a non-RTP packet from `a` to leg 0 of
/// session `s` and one packet to `unallocated` (a media port no session
/// has), asserts the workers count each under its reason, once, and that
/// the session still relays `a`'s stream to `b` verbatim.
pub fn assert_bad_packets_counted(
    admin: &AdminClient,
    (a, b): (&RtpEndpoint, &RtpEndpoint),
    s: &SessionInfo,
    unallocated: SocketAddr,
) {
    let (from, leg) = (a, s.legs[0].local);
    let before = admin.worker_totals().expect("worker totals");
    from.send_raw(leg, &[0x80, 0, 0]).unwrap();
    from.send_raw(leg, &[0xC0; 40]).unwrap();
    from.send_raw(leg, &[0x08; 40]).unwrap();
    from.send_raw(unallocated, &[0x80; 40]).unwrap();
    let reasons = ["truncated", "bad_version", "not_rtp", "no_session"];
    let t = settle(
        Duration::from_secs(3),
        || admin.worker_totals(),
        |t| reasons.iter().map(|r| t.drops(r) - before.drops(r)).sum::<u64>() >= 4,
    )
    .expect("worker totals");
    for reason in reasons {
        assert_eq!(t.drops(reason) - before.drops(reason), 1, "{reason}: {t:?}");
    }
    let rx = b.receive_in_background(50, ARRIVE).expect("receiver");
    let sent = a.send_stream(leg, &mut RtpStream::pcmu(0xC1, 1, 160), 50, Pace::Bursts(10)).expect("send");
    let got = rx.join().expect("receiver thread").expect("receive");
    assert_relayed_verbatim("after the bad packets", &sent, &got, s.legs[1].local);
}

/// `GET /live` over TCP to `addr` from inside `ns`: the whole response.
pub fn live_over_tcp(ns: &Netns, addr: SocketAddr) -> String {
    ns.run_in(|| -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"GET /live HTTP/1.1\r\nHost: bh\r\nConnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .expect("into the namespace")
    .expect("TCP to the admin port")
}
