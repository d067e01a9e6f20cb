//! End-to-end tests of the socket backend: the `bridgehead` binary in its own
//! network namespace, RTP peers in theirs, all on a private bridge.
//!
//! Needs root and `nft` (Debian `nftables`). Run:
//! `cargo build -p controlplane && cargo test -p test-harness --test sockets_e2e`
//! (same CARGO_TARGET_DIR for both, or BRIDGEHEAD_BIN pointing at the binary).
//!
//! Every test has its own namespaces and appliance, and every wait has a
//! deadline. A datagram a test endpoint receives passed the kernel's UDP
//! checksum check (Linux drops a datagram whose checksum is wrong before any
//! socket sees it), so arrival also proves the relay's checksums are valid.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use test_harness::admin::{metric_sum, metric_sum_with, Event, LegCounters, LegRequest, SessionInfo, SessionRequest};
use test_harness::appliance::{run_bridgehead, Appliance, ApplianceConfig, ScratchDir};
use test_harness::rtp::{assert_relayed_verbatim, Pace, Received, RtpEndpoint, RtpStream};
use test_harness::settle;
use test_harness::topology::{MediaLan, Peer};

/// Time any burst of a few hundred packets gets to arrive.
const ARRIVE: Duration = Duration::from_secs(5);
/// Time the dataplane's counters get to catch up with what arrived.
const COUNTERS: Duration = Duration::from_secs(2);
/// A fast burst: 1 ms pause every 20 packets.
const FAST: Pace = Pace::Bursts(20);

/// An appliance on the media LAN with two peers, A and B. Fields drop in
/// order: the appliance stops before its namespaces go.
struct Rig {
    app: Appliance,
    a: Peer,
    b: Peer,
    lan: MediaLan,
}

impl Rig {
    fn new(tweak: impl FnOnce(&mut ApplianceConfig)) -> Rig {
        let mut lan = MediaLan::new().expect("media LAN");
        let a = lan.add_peer("a").expect("peer a");
        let b = lan.add_peer("b").expect("peer b");
        let mut config = ApplianceConfig::sockets(lan.media_ip());
        tweak(&mut config);
        let app = Appliance::start(config, Some(&lan.app)).expect("appliance start");
        Rig { app, a, b, lan }
    }

    fn create(&self, leg0: LegRequest, leg1: LegRequest) -> SessionInfo {
        self.app.admin.create_session(&SessionRequest::new(leg0, leg1)).expect("create session")
    }

    /// The session once its counters satisfy `done` (or the last seen after the deadline).
    fn session_when(&self, id: u64, done: impl Fn(&SessionInfo) -> bool) -> SessionInfo {
        settle(COUNTERS, || self.app.admin.session(id), done).expect("GET session")
    }
}

/// Sends `count` packets of `stream` from `from` to `to` while `receiver`
/// collects them; returns (sent, received).
fn relay(
    from: &RtpEndpoint,
    to: SocketAddr,
    stream: &mut RtpStream,
    count: usize,
    receiver: &RtpEndpoint,
) -> (Vec<test_harness::rtp::Stamp>, Vec<Received>) {
    let rx = receiver.receive_in_background(count, ARRIVE).expect("receiver thread");
    let sent = from.send_stream(to, stream, count, FAST).expect("send");
    let got = rx.join().expect("receiver panicked").expect("receive");
    (sent, got)
}

fn assert_nothing_more(endpoint: &RtpEndpoint, what: &str) {
    let extra = endpoint.receive(1, Duration::from_millis(150)).expect("receive");
    assert!(extra.is_empty(), "{what}: unexpected extra datagram {extra:?}");
}

fn counters(rx: u64, tx: u64, len: u64) -> LegCounters {
    LegCounters { rx_packets: rx, rx_bytes: rx * len, tx_packets: tx, tx_bytes: tx * len, ..Default::default() }
}

/// Leg counters without jitter (a timing figure, not a count).
fn counts(s: &SessionInfo, leg: usize) -> LegCounters {
    LegCounters { jitter: 0, ..s.legs[leg].counters }
}

#[test]
fn relays_both_ways_with_exact_counters() {
    const N: usize = 200;
    let rig = Rig::new(|_| {});
    let (ea, eb) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let s = rig.create(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr()));
    let (la, lb) = (s.legs[0].local, s.legs[1].local);
    assert_eq!(la.ip(), rig.lan.media_ip(), "leg 0 local address");
    assert_eq!(lb.ip(), rig.lan.media_ip(), "leg 1 local address");
    assert_ne!(la.port(), lb.port());
    assert!(la.port() % 2 == 0 && lb.port() % 2 == 0, "RTP ports are even: {la} {lb}");

    let mut sa = RtpStream::pcmu(0x0a0a_0001, 1000, 80_000);
    let len = sa.packet_len() as u64;
    let (sent, got) = relay(&ea, la, &mut sa, N, &eb);
    assert_relayed_verbatim("A -> B", &sent, &got, lb);
    let mut sb = RtpStream::pcmu(0x0b0b_0002, 60_000, 4_000_000_000);
    let (sent, got) = relay(&eb, lb, &mut sb, N, &ea);
    assert_relayed_verbatim("B -> A", &sent, &got, la);
    assert_nothing_more(&ea, "A");
    assert_nothing_more(&eb, "B");

    let n = N as u64;
    let want = counters(n, n, len);
    let s = rig.session_when(s.id, |s| counts(s, 0) == want && counts(s, 1) == want);
    assert_eq!(counts(&s, 0), want, "leg 0 counters (A's side)");
    assert_eq!(counts(&s, 1), want, "leg 1 counters (B's side)");
    assert!(!s.legs[0].latched && !s.legs[1].latched, "signalled remotes are not latched: {s:?}");

    let totals = settle(COUNTERS, || rig.app.admin.worker_totals(), |t| t.tx_packets == 2 * n).unwrap();
    assert_eq!((totals.rx_packets, totals.tx_packets), (2 * n, 2 * n), "worker totals {totals:?}");
    assert_eq!((totals.rx_bytes, totals.tx_bytes), (2 * n * len, 2 * n * len), "worker totals {totals:?}");
    assert_eq!(totals.drops.values().sum::<u64>(), 0, "no drops expected: {totals:?}");

    let m = rig.app.admin.metrics().unwrap();
    assert_eq!(metric_sum(&m, "bridgehead_dataplane_rx_packets"), Some(2 * n), "metrics:\n{m}");
    assert_eq!(metric_sum(&m, "bridgehead_dataplane_tx_packets"), Some(2 * n), "metrics:\n{m}");
    assert_eq!(metric_sum(&m, "bridgehead_dataplane_rx_bytes"), Some(2 * n * len), "metrics:\n{m}");
    assert_eq!(metric_sum(&m, "bridgehead_dataplane_tx_bytes"), Some(2 * n * len), "metrics:\n{m}");
    assert_eq!(metric_sum(&m, "bridgehead_dataplane_drops"), Some(0), "metrics:\n{m}");
    assert_eq!(metric_sum(&m, "bridgehead_dataplane_sessions"), Some(1), "metrics:\n{m}");
}

#[test]
fn ssrc_rewrite_keeps_one_continuous_stream_across_a_source_change() {
    const N: usize = 40;
    let rig = Rig::new(|_| {});
    let (ea, eb) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let s = rig.create(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr()).ssrc_rewrite());
    assert!(s.legs[1].ssrc_rewrite && !s.legs[0].ssrc_rewrite);
    let (la, lb) = (s.legs[0].local, s.legs[1].local);

    let (x, y) = (0x1111_1111, 0x2222_2222);
    let rx = eb.receive_in_background(2 * N, ARRIVE).unwrap();
    let mut sent = ea.send_stream(la, &mut RtpStream::pcmu(x, 1000, 50_000), N, FAST).unwrap();
    // The source changes: another SSRC with unrelated numbering, as after a transfer.
    sent.extend(ea.send_stream(la, &mut RtpStream::pcmu(y, 40_000, 3_000_000_000), N, FAST).unwrap());
    let got = rx.join().unwrap().unwrap();

    assert_eq!(got.len(), 2 * N, "B received {} of {}", got.len(), 2 * N);
    let out_ssrc = got[0].header.unwrap().ssrc;
    assert!(out_ssrc != x && out_ssrc != y, "the rewritten SSRC {out_ssrc:#x} must be the leg's own, not a source's");
    for (i, (r, s)) in got.iter().zip(&sent).enumerate() {
        let h = r.header.unwrap();
        assert_eq!(r.from, lb, "packet {i} source");
        assert_eq!(r.origin, Some(*s), "packet {i} is not the {i}th sent (order or content)");
        assert!(r.intact, "packet {i} payload changed");
        assert_eq!((h.version, h.pt), (2, 0), "packet {i} version/payload type");
        assert_eq!(h.ssrc, out_ssrc, "packet {i}: B must see one SSRC");
        if i > 0 {
            let p = got[i - 1].header.unwrap();
            assert_eq!(h.seq, p.seq.wrapping_add(1), "packet {i}: sequence number not +1 (switch at {N})");
            assert_eq!(h.ts, p.ts.wrapping_add(160), "packet {i}: timestamp not +160 (switch at {N})");
        }
    }
    assert_nothing_more(&eb, "B");
}

#[test]
fn latches_a_natted_peer_and_relays_both_ways() {
    const N: usize = 50;
    let mut lan = MediaLan::new().unwrap();
    let c = lan.add_natted_peer("c").unwrap();
    let b = lan.add_peer("b").unwrap();
    let app = Appliance::start(ApplianceConfig::sockets(lan.media_ip()), Some(&lan.app)).unwrap();
    let (ec, eb) = (c.peer.endpoint().unwrap(), b.endpoint().unwrap());
    // Signalled: the private address, unreachable from the appliance.
    let s = app
        .admin
        .create_session(&SessionRequest::new(LegRequest::to(ec.local_addr()), LegRequest::to(eb.local_addr())))
        .unwrap();
    let (lc, lb) = (s.legs[0].local, s.legs[1].local);
    let after = app.admin.last_event_seq().unwrap();

    let (sent, got) = relay(&ec, lc, &mut RtpStream::pcmu(0x0c0c_0003, 7, 700), N, &eb);
    assert_relayed_verbatim("C (behind NAT) -> B", &sent, &got, lb);

    let (event, _) = app
        .admin
        .wait_event(
            after,
            Duration::from_secs(3),
            |e| matches!(e, Event::Latched { session, side: 0, rtcp: false, .. } if *session == s.id),
        )
        .expect("latched event for leg 0");
    let Event::Latched { remote, .. } = event.event else { unreachable!() };
    assert_eq!(remote.ip(), std::net::IpAddr::V4(c.public_ip), "latched to the NAT's public address");
    assert_ne!(remote, ec.local_addr());
    let info = settle(COUNTERS, || app.admin.session(s.id), |s| s.legs[0].latched).unwrap();
    assert!(info.legs[0].latched, "GET shows leg 0 latched: {info:?}");
    assert_eq!(info.legs[0].remote, Some(remote), "GET shows the latched remote");

    let (sent, got) = relay(&eb, lb, &mut RtpStream::pcmu(0x0b0b_0004, 9, 900), N, &ec);
    assert_relayed_verbatim("B -> C through the NAT", &sent, &got, lc);

    let n = N as u64;
    let len = RtpStream::pcmu(0, 0, 0).packet_len() as u64;
    let s = settle(COUNTERS, || app.admin.session(s.id), |s| counts(s, 0) == counters(n, n, len)).unwrap();
    assert_eq!(counts(&s, 0), counters(n, n, len), "leg 0 (C's side)");
    assert_eq!(counts(&s, 1), counters(n, n, len), "leg 1 (B's side)");
}

#[test]
fn strict_leg_drops_a_third_source_without_disturbing_the_peer() {
    const N: usize = 100;
    const INTRUDER: usize = 30;
    let mut rig = Rig::new(|_| {});
    let d = rig.lan.add_peer("d").unwrap();
    let (ea, eb, ed) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap(), d.endpoint().unwrap());
    let s = rig.create(LegRequest::to(ea.local_addr()).strict(), LegRequest::to(eb.local_addr()));
    let (la, lb) = (s.legs[0].local, s.legs[1].local);
    let after = rig.app.admin.last_event_seq().unwrap();

    let rx = eb.receive_in_background(N + INTRUDER, ARRIVE).unwrap();
    let sent = std::thread::scope(|scope| {
        let intruder =
            scope.spawn(|| ed.send_stream(la, &mut RtpStream::pcmu(0xdead_0001, 1, 1), INTRUDER, Pace::Bursts(3)));
        let sent = ea.send_stream(la, &mut RtpStream::pcmu(0x0a0a_0005, 500, 5000), N, Pace::Bursts(10)).unwrap();
        intruder.join().unwrap().unwrap();
        sent
    });
    let got = rx.join().unwrap().unwrap();
    assert_relayed_verbatim("A -> B on a strict leg while D sends too", &sent, &got, lb);

    let n = N as u64;
    let k = INTRUDER as u64;
    let s = rig.session_when(s.id, |s| s.legs[0].counters.dropped == k && s.legs[1].counters.tx_packets == n);
    assert_eq!(
        (s.legs[0].counters.rx_packets, s.legs[0].counters.dropped),
        (n + k, k),
        "leg 0 counts D's packets as received and dropped"
    );
    assert_eq!(s.legs[1].counters.tx_packets, n, "only A's packets go out to B");
    assert_eq!(s.legs[0].remote, Some(ea.local_addr()), "a strict leg keeps its signalled remote");
    assert!(!s.legs[0].latched);
    let totals = rig.app.admin.worker_totals().unwrap();
    assert_eq!(totals.drops("wrong_source"), k, "wrong_source drops: {totals:?}");
    let events = rig.app.admin.events(after, Duration::ZERO).unwrap();
    assert!(events.events.is_empty(), "nothing latched or timed out: {:?}", events.events);
}

#[test]
fn media_timeout_is_reported_for_the_silent_session_only() {
    let rig = Rig::new(|c| c.media_timeout_s = 1);
    let (a1, b1, a2, b2) =
        (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap(), rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let silent = rig.create(LegRequest::to(a1.local_addr()), LegRequest::to(b1.local_addr()));
    let flowing = rig.create(LegRequest::to(a2.local_addr()), LegRequest::to(b2.local_addr()));
    let after = rig.app.admin.last_event_seq().unwrap();
    const FLOW_FOR: Duration = Duration::from_millis(3500);

    std::thread::scope(|scope| {
        let flow_to = flowing.legs[0].local;
        let flow = scope.spawn(move || {
            // Real time: one packet per 20 ms, for longer than the timeout wait below.
            let count = (FLOW_FOR.as_millis() / 20) as usize;
            a2.send_stream(
                flow_to,
                &mut RtpStream::pcmu(0x0f10_0001, 0, 0),
                count,
                Pace::Every(Duration::from_millis(20)),
            )
        });

        let (sent, got) = relay(&a1, silent.legs[0].local, &mut RtpStream::pcmu(0x0510_0001, 0, 0), 20, &b1);
        assert_relayed_verbatim("the soon silent session", &sent, &got, silent.legs[1].local);
        let stopped = Instant::now();
        let (event, _) = rig
            .app
            .admin
            .wait_event(after, Duration::from_secs(5), |e| *e == Event::MediaTimeout { session: silent.id })
            .expect("media_timeout for the silent session");
        let took = stopped.elapsed();
        assert!(took >= Duration::from_millis(900), "media_timeout after {took:?}, before the configured 1 s");
        assert!(took <= Duration::from_secs(4), "media_timeout only after {took:?}");

        let flowing_now = rig.app.admin.session(flowing.id).unwrap();
        assert!(!flowing_now.timed_out, "the flowing session is not timed out: {flowing_now:?}");
        assert!(rig.app.admin.session(silent.id).unwrap().timed_out, "GET shows the silent session timed out");
        // Everything until the flow ends: no timeout for the flowing session.
        let all = rig.app.admin.events_until(after, stopped + Duration::from_millis(3000).min(FLOW_FOR)).unwrap();
        let wrong: Vec<_> = all.iter().filter(|e| e.event == Event::MediaTimeout { session: flowing.id }).collect();
        assert!(wrong.is_empty(), "media_timeout for a session with flowing media: {wrong:?} (event {event:?})");
        let count = flow.join().unwrap().unwrap().len() as u64;
        let f = rig.session_when(flowing.id, |s| s.legs[1].counters.tx_packets == count);
        assert_eq!(f.legs[1].counters.tx_packets, count, "every flowing packet relayed");
    });
}

#[test]
fn bad_packets_are_dropped_by_reason_and_other_streams_flow() {
    const N: usize = 200;
    let mut rig = Rig::new(|_| {});
    let d = rig.lan.add_peer("d").unwrap();
    let (ea, eb, ed, eb2) =
        (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap(), d.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let good = rig.create(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr()));
    // The target of the bad packets; leg 1 has a peer so nothing fails for lack of a destination.
    let target = rig.create(LegRequest::default(), LegRequest::to(eb2.local_addr()));
    let to = target.legs[0].local;
    let before = rig.app.admin.worker_totals().unwrap();

    let stun = {
        let mut p = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        p.extend_from_slice(&[7; 12]);
        p
    };
    let with_first = |first: u8, len: usize| {
        let mut p = vec![0u8; len];
        p[0] = first;
        p
    };
    // (datagram, copies, reason)
    let bad: Vec<(Vec<u8>, usize, &str)> = vec![
        (vec![0x80, 0x00, 0x01], 3, "truncated"),
        (with_first(0x80, 1600), 2, "oversized"),
        (stun, 4, "control"),                     // 0x00: STUN (RFC 7983)
        (with_first(0x41, 20), 1, "control"),     // 64-79: TURN channel (RFC 7983)
        (with_first(0x0a, 20), 2, "not_rtp"),     // unassigned, version 0
        (with_first(0xc0, 20), 3, "bad_version"), // version 3
        (with_first(0x8f, 20), 1, "malformed"),   // 15 CSRCs do not fit
    ];
    let mut expected = std::collections::BTreeMap::<&str, u64>::new();
    for (_, copies, reason) in &bad {
        *expected.entry(reason).or_default() += *copies as u64;
    }
    let total_bad: u64 = expected.values().sum();

    let rx = eb.receive_in_background(N, ARRIVE).unwrap();
    let sent = std::thread::scope(|scope| {
        let bad = &bad;
        let ed = &ed;
        scope.spawn(move || {
            for (packet, copies, _) in bad {
                for _ in 0..*copies {
                    ed.send_raw(to, packet).unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        ea.send_stream(good.legs[0].local, &mut RtpStream::pcmu(0x600d_0001, 1, 1), N, Pace::Bursts(10)).unwrap()
    });
    let got = rx.join().unwrap().unwrap();
    assert_relayed_verbatim("the good session while bad packets arrive", &sent, &got, good.legs[1].local);
    assert_nothing_more(&eb2, "the bad packets' target leg");

    let after = settle(
        COUNTERS,
        || rig.app.admin.worker_totals(),
        |t| t.drops.values().sum::<u64>() >= before.drops.values().sum::<u64>() + total_bad,
    )
    .unwrap();
    for reason in [
        "no_session",
        "truncated",
        "oversized",
        "not_rtp",
        "bad_version",
        "malformed",
        "control",
        "wrong_source",
        "no_destination",
        "tx_failed",
    ] {
        let want = expected.get(reason).copied().unwrap_or(0);
        assert_eq!(after.drops(reason) - before.drops(reason), want, "drops for {reason}: {after:?}");
    }
    let m = rig.app.admin.metrics().unwrap();
    for (reason, want) in &expected {
        assert_eq!(
            metric_sum_with(&m, "bridgehead_dataplane_drops", &format!("reason=\"{reason}\"")),
            Some(*want),
            "metric drops {reason}"
        );
    }
    let t = rig.session_when(target.id, |s| s.legs[0].counters.dropped == total_bad);
    assert_eq!(
        (t.legs[0].counters.rx_packets, t.legs[0].counters.dropped, t.legs[1].counters.tx_packets),
        (total_bad, total_bad, 0)
    );
    // Relayed packets reach the session counters with the worker's sweep (within a second).
    let g = rig.session_when(good.id, |s| s.legs[1].counters.tx_packets == N as u64);
    assert_eq!((g.legs[0].counters.dropped, g.legs[1].counters.tx_packets), (0, N as u64), "good session: {g:?}");
    for path in ["/live", "/ready"] {
        assert_eq!(rig.app.admin.get(path).unwrap().status, 200, "{path} after bad input");
    }
    assert!(rig.app.running(), "the appliance still runs");
}

#[test]
fn packets_to_an_unallocated_media_port_never_reach_the_dataplane() {
    // The socket backend binds only the ports of live sessions, so the
    // kernel refuses datagrams to any other port (ICMP port unreachable)
    // before the dataplane sees them: nothing is counted, nothing is
    // disturbed. (The DPDK backend sees them and counts `no_session`.)
    const K: usize = 5;
    let rig = Rig::new(|c| c.ports = (20000, 20199));
    let (ea, eb) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let s = rig.create(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr()));
    // Ports are handed out from the bottom of the range: the top is free.
    let free = SocketAddr::new(rig.lan.media_ip(), 20196);
    assert!(s.legs.iter().all(|l| l.local.port() < 20190), "sessions took {:?}", s.legs.map(|l| l.local));
    ea.send_stream(free, &mut RtpStream::pcmu(0x0000_0bad, 1, 1), K, FAST).unwrap();

    let mut stream = RtpStream::pcmu(0x0000_1111, 100, 8000);
    let (sent, got) = relay(&ea, s.legs[0].local, &mut stream, 50, &eb);
    assert_relayed_verbatim("A -> B beside the stray packets", &sent, &got, s.legs[1].local);
    let t = rig.app.admin.worker_totals().unwrap();
    assert_eq!(t.rx_packets, 50, "only the session's packets reached the dataplane: {t:?}");
    assert_eq!(t.drops("no_session"), 0, "{t:?}");
}

#[test]
fn full_table_refuses_then_accepts_after_a_delete() {
    const N: usize = 20;
    let rig = Rig::new(|c| c.sessions = 4);
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let (ea, eb) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
        let s = rig.create(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr()));
        sessions.push((s, ea, eb));
    }
    let (ex, ey) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let request = SessionRequest::new(LegRequest::to(ex.local_addr()), LegRequest::to(ey.local_addr()));
    let refused = rig.app.admin.create_session_raw(&request).unwrap();
    assert_eq!(refused.status, 503, "5th create: {}", refused.body);
    assert_eq!(refused.error_code().as_deref(), Some("table_full"), "5th create: {}", refused.body);
    let list = rig.app.admin.sessions().unwrap();
    assert_eq!((list.count, list.capacity), (4, 4));

    for (i, (s, ea, eb)) in sessions.iter().enumerate() {
        let (sent, got) = relay(ea, s.legs[0].local, &mut RtpStream::pcmu(0x4000 + i as u32, 0, 0), N, eb);
        assert_relayed_verbatim(&format!("session {i} with the table full"), &sent, &got, s.legs[1].local);
    }

    let (gone, _, _) = &sessions[0];
    rig.app.admin.delete_session(gone.id).unwrap();
    let missing = rig.app.admin.get(&format!("/v1/dataplane/sessions/{}", gone.id)).unwrap();
    assert_eq!(missing.status, 404, "deleted session: {}", missing.body);
    let s = rig.app.admin.create_session(&request).expect("create after a delete");
    let (sent, got) = relay(&ex, s.legs[0].local, &mut RtpStream::pcmu(0x5000, 0, 0), N, &ey);
    assert_relayed_verbatim("the session made after the delete", &sent, &got, s.legs[1].local);
}

#[test]
fn config_errors_are_all_reported_with_file_and_key_and_exit_2() {
    let dir = ScratchDir::new("badconfig").unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[appliance]\ncolour = \"red\"\n\n[dataplane]\nworkers = 0\nports = \"9-1\"\n").unwrap();
    let run = run_bridgehead(&["--config".as_ref(), path.as_os_str()], Duration::from_secs(10)).unwrap();
    assert_eq!(run.status.code(), Some(2), "exit status; stderr:\n{}", run.stderr);
    let file = path.display().to_string();
    for key in ["appliance.colour", "dataplane.workers", "dataplane.ports"] {
        let prefix = format!("{file}: {key}: ");
        assert!(
            run.stderr.lines().any(|l| l.starts_with(&prefix)),
            "no line starting {prefix:?} in stderr:\n{}",
            run.stderr
        );
    }
    assert!(run.stderr.contains("unknown key"), "{}", run.stderr);
}

#[test]
fn sigterm_stops_cleanly_with_exit_0() {
    let mut rig = Rig::new(|_| {});
    let (ea, eb) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let s = rig.create(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr()));
    let (sent, got) = relay(&ea, s.legs[0].local, &mut RtpStream::pcmu(1, 1, 1), 20, &eb);
    assert_relayed_verbatim("before the stop", &sent, &got, s.legs[1].local);
    let asked = Instant::now();
    let status = rig.app.stop(Duration::from_secs(5)).expect("stops after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM; stderr:\n{}", rig.app.stderr());
    assert!(asked.elapsed() < Duration::from_secs(3), "took {:?} to stop", asked.elapsed());
}

#[test]
fn admin_api_refuses_bad_json_and_writes_without_the_token() {
    let rig = Rig::new(|_| {});
    let (ea, eb) = (rig.a.endpoint().unwrap(), rig.b.endpoint().unwrap());
    let admin = &rig.app.admin;
    let timeout = Duration::from_secs(5);
    let bad = admin.request("POST", "/v1/dataplane/sessions", Some("{\"legs\": ["), timeout).unwrap();
    assert_eq!((bad.status, bad.error_code().as_deref()), (400, Some("invalid")), "{}", bad.body);

    let request = SessionRequest::new(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr()));
    let anonymous = test_harness::admin::AdminClient::new(rig.app.config.admin, None, Some(rig.lan.app.handle()));
    let refused = anonymous.create_session_raw(&request).unwrap();
    assert_eq!(refused.status, 401, "a write without the token: {}", refused.body);
    assert_eq!(anonymous.sessions().unwrap().count, 0, "reads need no token; nothing was created");

    let s = admin.create_session(&request).unwrap();
    let patched = admin.update_session(s.id, 1, &LegRequest::default().ssrc_rewrite()).unwrap();
    assert!(patched.legs[1].ssrc_rewrite && !patched.legs[0].ssrc_rewrite, "{patched:?}");
    assert_eq!(patched.legs[1].remote, Some(eb.local_addr()), "PATCH keeps fields not given");
    let body = serde_json::json!({"leg": 2, "strict": true}).to_string();
    let wrong_leg = admin.request("PATCH", &format!("/v1/dataplane/sessions/{}", s.id), Some(&body), timeout).unwrap();
    assert_eq!(wrong_leg.status, 400, "leg 2: {}", wrong_leg.body);
    let unknown = admin.request("DELETE", "/v1/dataplane/sessions/999999", None, timeout).unwrap();
    assert_eq!(unknown.status, 404, "{}", unknown.body);
}

#[test]
fn rtcp_without_mux_uses_the_odd_ports_both_ways() {
    let rig = Rig::new(|_| {});
    // Fixed ports so that RTCP is RTP + 1 on the peers too.
    let (ea, ea_rtcp) = (rig.a.endpoint_on(30000).unwrap(), rig.a.endpoint_on(30001).unwrap());
    let (eb, eb_rtcp) = (rig.b.endpoint_on(30002).unwrap(), rig.b.endpoint_on(30003).unwrap());
    let s = rig.create(LegRequest::to(ea.local_addr()), LegRequest::to(eb.local_addr()));
    assert_eq!(s.legs[0].rtcp_remote, Some(ea_rtcp.local_addr()));
    let plus_one = |a: SocketAddr| SocketAddr::new(a.ip(), a.port() + 1);
    let (la_rtcp, lb_rtcp) = (plus_one(s.legs[0].local), plus_one(s.legs[1].local));
    // A receiver report: V=2, RC=1, PT=201, length 7 words, one report block.
    let mut rr = vec![0x81, 201, 0x00, 0x07, 0x0a, 0x0a, 0x00, 0x07];
    rr.extend((0u8..24).map(|i| i.wrapping_mul(13)));
    for (from, to, receiver, expected_source, what) in
        [(&ea_rtcp, la_rtcp, &eb_rtcp, lb_rtcp, "A -> B RTCP"), (&eb_rtcp, lb_rtcp, &ea_rtcp, la_rtcp, "B -> A RTCP")]
    {
        let rx = receiver.receive_raw_in_background(1, ARRIVE).unwrap();
        from.send_raw(to, &rr).unwrap();
        let got = rx.join().unwrap().unwrap();
        assert_eq!(got.len(), 1, "{what}: received {} datagrams", got.len());
        assert_eq!(got[0], (expected_source, rr.clone()), "{what}: source or content");
    }
    assert_nothing_more(&ea, "A's RTP port");
    assert_nothing_more(&eb, "B's RTP port");
}

#[test]
fn start_up_refuses_a_table_too_large_for_memory() {
    let dir = ScratchDir::new("hugetable").unwrap();
    let path = dir.path().join("huge.toml");
    let config = format!(
        "[appliance]\nstate_dir = {:?}\n[listen]\nadmin = \"127.0.0.1:0\"\n[dataplane]\nsessions = 1073741824\n",
        dir.path().join("state")
    );
    std::fs::write(&path, config).unwrap();
    let run = run_bridgehead(&["--config".as_ref(), path.as_os_str()], Duration::from_secs(20)).unwrap();
    assert_eq!(run.status.code(), Some(1), "exit status; stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("the session table needs") && run.stderr.contains("MiB"),
        "a clear message naming the memory needed:\n{}",
        run.stderr
    );
}
