//! The relay decision on hand-made datagrams: no sockets, no threads.

use super::checksum_delta::ChecksumDelta;
use super::counters::DropReason;
use super::{tones, Datagram, Engine, Now, Verdict, SWEEP_US};
use crate::control::{Command, Event, Shared};
use crate::session::table::SessionTable;
use crate::session::{LegSettings, LocalEndpoint, PayloadTypeMap, SessionId};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct TestDatagram {
    pub local: LocalEndpoint,
    pub source: SocketAddr,
    pub payload: Vec<u8>,
    pub out: Option<(u32, LocalEndpoint, SocketAddr, ChecksumDelta)>,
}

impl Datagram for TestDatagram {
    fn local(&self) -> LocalEndpoint {
        self.local
    }
    fn source(&self) -> SocketAddr {
        self.source
    }
    fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.payload
    }
    fn readdress(&mut self, from_leg: u32, from: LocalEndpoint, to: SocketAddr, payload_delta: ChecksumDelta) {
        self.out = Some((from_leg, from, to, payload_delta));
    }
}

pub(crate) fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160).map(|i| (i as u8) ^ (seq as u8)));
    p
}

pub(crate) fn ep(port: u16) -> LocalEndpoint {
    LocalEndpoint { addr: 0, port }
}

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const A: &str = "192.0.2.10:4000";
const B: &str = "192.0.2.20:6000";

pub(crate) fn engine_with_session(settings: [LegSettings; 2]) -> (Engine, SessionId) {
    let shared = Arc::new(Shared::new(1, 16, Duration::from_secs(1)));
    let table = SessionTable::new(0, 1, 16, 1, 20000..=20099);
    let mut engine = Engine::new(0, table, shared);
    let id = SessionId::new(3, 7);
    engine.apply(Now::default(), Command::Install { id, locals: [ep(20000), ep(20002)], settings }).unwrap();
    (engine, id)
}

fn signalled(a: &str, b: &str) -> [LegSettings; 2] {
    [
        LegSettings { remote: Some(addr(a)), ..Default::default() },
        LegSettings { remote: Some(addr(b)), ..Default::default() },
    ]
}

fn send(engine: &mut Engine, now_ms: u64, local: u16, from: &str, payload: Vec<u8>) -> (Verdict, TestDatagram) {
    let mut dg = TestDatagram { local: ep(local), source: addr(from), payload, out: None };
    let v = engine.relay(Now { us: now_ms * 1000 }, &mut dg);
    (v, dg)
}

#[test]
fn relays_to_the_other_legs_peer_from_the_other_legs_port() {
    let (mut e, id) = engine_with_session(signalled(A, B));
    let (v, dg) = send(&mut e, 0, 20000, A, rtp(0, 1, 160, 0x1111));
    assert_eq!(v, Verdict::Forward);
    let (leg, from, to, delta) = dg.out.unwrap();
    assert_eq!((leg & 1, from, to), (1, ep(20002), addr(B)));
    assert!(delta.is_zero(), "no rewrite, no checksum change");
    assert_eq!(dg.payload, rtp(0, 1, 160, 0x1111), "payload untouched");

    let (v, dg) = send(&mut e, 0, 20002, B, rtp(8, 9, 100, 0x2222));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(dg.out.unwrap().2, addr(A));

    e.publish_all();
    let legs = &e.shared.legs[id.slot() as usize * 2..];
    assert_eq!(legs[0].rx_packets.load(Relaxed), 1);
    assert_eq!(legs[0].relayed_packets.load(Relaxed), 1);
    assert_eq!(legs[1].snapshot(&legs[0]).tx_packets, 1, "leg 1 sent what leg 0 relayed");
    assert_eq!(legs[1].rx_bytes.load(Relaxed), 172);
    assert_eq!(legs[0].snapshot(&legs[1]).tx_bytes, 172);
}

#[test]
fn latches_first_source_and_reports_it() {
    let nat = "203.0.113.5:31000";
    let (mut e, id) = engine_with_session(signalled(A, B));
    let (v, _) = send(&mut e, 0, 20000, nat, rtp(0, 1, 160, 1));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(e.shared.events.pop(), Some(Event::Latched { session: id, side: 0, rtcp: false, remote: addr(nat) }));
    // Replies now go to the latched address.
    let (_, dg) = send(&mut e, 0, 20002, B, rtp(0, 1, 160, 2));
    assert_eq!(dg.out.unwrap().2, addr(nat));
    // A later source is relayed but does not steal the latch.
    let (v, _) = send(&mut e, 0, 20000, "198.51.100.9:1", rtp(0, 2, 320, 1));
    assert_eq!(v, Verdict::Forward);
    let (_, dg) = send(&mut e, 0, 20002, B, rtp(0, 2, 320, 2));
    assert_eq!(dg.out.unwrap().2, addr(nat));
}

#[test]
fn strict_leg_drops_other_sources() {
    let mut s = signalled(A, B);
    s[0].strict = true;
    let (mut e, _) = engine_with_session(s);
    let (v, _) = send(&mut e, 0, 20000, "198.51.100.9:1", rtp(0, 1, 160, 1));
    assert_eq!(v, Verdict::Drop(DropReason::WrongSource));
    let (v, _) = send(&mut e, 0, 20000, A, rtp(0, 2, 320, 1));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(e.shared.workers[0].drops[DropReason::WrongSource as usize].load(Relaxed), 1);
}

#[test]
fn waits_for_a_destination() {
    let (mut e, _) = engine_with_session([LegSettings::default(); 2]);
    let (v, _) = send(&mut e, 0, 20000, A, rtp(0, 1, 160, 1));
    assert_eq!(v, Verdict::Drop(DropReason::NoDestination));
    // B speaks: it latches, and A's next packet finds it.
    let (v, dg) = send(&mut e, 0, 20002, B, rtp(0, 1, 160, 2));
    assert_eq!((v, dg.out.unwrap().2), (Verdict::Forward, addr(A)));
    let (v, dg) = send(&mut e, 0, 20000, A, rtp(0, 2, 320, 1));
    assert_eq!((v, dg.out.unwrap().2), (Verdict::Forward, addr(B)));
}

#[test]
fn bad_packets_are_dropped_by_reason() {
    let (mut e, _) = engine_with_session(signalled(A, B));
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (vec![0x80], DropReason::Truncated),
        (vec![0x80, 0, 0], DropReason::Truncated),
        (vec![0x80; 1473], DropReason::Oversized),
        (vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42], DropReason::Control),
        (vec![0xC0; 20], DropReason::BadVersion),
        (vec![0x41; 20], DropReason::Control), // a TURN channel number (RFC 7983)
        (vec![0x55; 20], DropReason::BadVersion),
        (vec![0x08; 20], DropReason::NotRtp),
        (vec![0x60; 20], DropReason::BadVersion),
        (vec![0xF0; 20], DropReason::BadVersion),
        (vec![], DropReason::Truncated),
        // CSRC count 15 but only the fixed header present.
        (vec![0x8F, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0], DropReason::Malformed),
    ];
    for (payload, reason) in cases {
        let (v, _) = send(&mut e, 0, 20000, A, payload.clone());
        assert_eq!(v, Verdict::Drop(reason), "{payload:02x?}");
    }
    // Not a session's port at all.
    let (v, _) = send(&mut e, 0, 20050, A, rtp(0, 1, 1, 1));
    assert_eq!(v, Verdict::Drop(DropReason::NoSession));
    // The session is undisturbed.
    let (v, _) = send(&mut e, 0, 20000, A, rtp(0, 1, 160, 1));
    assert_eq!(v, Verdict::Forward);
}

#[test]
fn rewrite_keeps_one_stream_and_checksum_delta_matches() {
    let mut s = signalled(A, B);
    s[1].ssrc_rewrite = true;
    s[1].pt_map = PayloadTypeMap::new(&[(101, 96)]).unwrap();
    let (mut e, _) = engine_with_session(s);
    let mut seen = Vec::new();
    for (seq, ts, ssrc) in
        [(10u16, 1600u32, 0xAAAAu32), (11, 1760, 0xAAAA), (5000, 777_777, 0xBBBB), (5001, 777_937, 0xBBBB)]
    {
        let original = rtp(0, seq, ts, ssrc);
        let (v, dg) = send(&mut e, 0, 20000, A, original.clone());
        assert_eq!(v, Verdict::Forward);
        let out = &dg.payload;
        let (o_seq, o_ts, o_ssrc) = (
            u16::from_be_bytes([out[2], out[3]]),
            u32::from_be_bytes([out[4], out[5], out[6], out[7]]),
            u32::from_be_bytes([out[8], out[9], out[10], out[11]]),
        );
        assert_eq!(out[12..], original[12..], "payload intact");
        // The delta turns the original's checksum into the rewritten one's.
        let sum = |b: &[u8]| crate::wire::checksum::finish(crate::wire::checksum::data(b));
        assert_eq!(dg.out.unwrap().3.apply(sum(&original)), sum(out));
        seen.push((o_seq, o_ts, o_ssrc));
    }
    let ssrc = seen[0].2;
    assert!(seen.iter().all(|s| s.2 == ssrc) && ssrc != 0xAAAA && ssrc != 0xBBBB);
    let seqs: Vec<_> = seen.iter().map(|s| s.0).collect();
    assert_eq!(seqs, [10, 11, 12, 13]);
    let tss: Vec<_> = seen.iter().map(|s| s.1).collect();
    assert_eq!(tss, [1600, 1760, 1920, 2080]);

    // Payload type mapping: 101 in, 96 out, marker kept.
    let mut dtmf = rtp(101, 12, 2080, 0xBBBB);
    dtmf[1] |= 0x80;
    let (_, dg) = send(&mut e, 0, 20000, A, dtmf);
    assert_eq!(dg.payload[1], 0x80 | 96);
}

#[test]
fn rtcp_on_the_odd_port_goes_to_the_peers_rtcp_port() {
    let (mut e, _) = engine_with_session(signalled(A, B));
    // A receiver report: V=2, RC=0, PT=201, length 1 word, SSRC.
    let rr = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
    let (v, dg) = send(&mut e, 0, 20001, "192.0.2.10:4001", rr.clone());
    assert_eq!(v, Verdict::Forward);
    let (_, from, to, _) = dg.out.unwrap();
    assert_eq!((from, to), (ep(20003), addr("192.0.2.20:6001")));
    // RTP does not belong on the RTCP port.
    let (v, _) = send(&mut e, 0, 20001, "192.0.2.10:4001", rtp(0, 1, 1, 1));
    assert_eq!(v, Verdict::Drop(DropReason::NotRtp));
    // Muxed RTCP on the RTP port goes to the peer's RTP port.
    let (v, dg) = send(&mut e, 0, 20000, A, rr);
    assert_eq!((v, dg.out.unwrap().2), (Verdict::Forward, addr(B)));
}

#[test]
fn loss_and_jitter_are_tracked_per_leg() {
    let (mut e, id) = engine_with_session(signalled(A, B));
    for seq in [1u16, 2, 3, 6, 7] {
        send(&mut e, u64::from(seq) * 20, 20000, A, rtp(0, seq, u32::from(seq) * 160, 1));
    }
    e.publish_all();
    let leg = &e.shared.legs[id.slot() as usize * 2];
    assert_eq!(leg.lost.load(Relaxed) as i64, 2);
    assert_eq!(leg.jitter.load(Relaxed), 0, "perfectly paced");
}

#[test]
fn media_timeout_is_reported_once_per_silence() {
    let (mut e, id) = engine_with_session(signalled(A, B));
    e.scan_timeouts(Now { us: 500_000 }, 100);
    assert!(e.shared.events.pop().is_none());
    e.scan_timeouts(Now { us: 1_000_000 }, 100);
    assert_eq!(e.shared.events.pop(), Some(Event::MediaTimeout { session: id }));
    e.scan_timeouts(Now { us: 2_000_000 }, 100);
    assert!(e.shared.events.pop().is_none(), "reported once");
    // Media comes back, then stops again: reported again.
    send(&mut e, 2_100, 20000, A, rtp(0, 1, 1, 1));
    e.scan_timeouts(Now { us: 2_200_000 }, 100);
    e.scan_timeouts(Now { us: 3_200_000 }, 100);
    assert_eq!(e.shared.events.pop(), Some(Event::MediaTimeout { session: id }));
}

#[test]
fn removed_session_stops_relaying() {
    let (mut e, id) = engine_with_session(signalled(A, B));
    e.apply(Now::default(), Command::Remove { id }).unwrap();
    let (v, _) = send(&mut e, 0, 20000, A, rtp(0, 1, 1, 1));
    assert_eq!(v, Verdict::Drop(DropReason::NoSession));
}

#[test]
fn paced_scan_covers_the_table_once_per_sweep() {
    let (mut e, id) = engine_with_session(signalled(A, B));
    // 1.5 s after start: a sweep and a half, capped at the whole table (16 slots).
    e.scan_timeouts_paced(Now { us: 1_500_000 });
    assert_eq!(e.shared.events.pop(), Some(Event::MediaTimeout { session: id }));
    e.scan_timeouts_paced(Now { us: 1_500_000 });
    assert!(e.shared.events.pop().is_none(), "no time passed, nothing scanned");
    assert_eq!(e.scan_cursor, 0, "the whole table, once");
    // A quarter sweep later: a quarter of the table.
    e.scan_timeouts_paced(Now { us: 1_750_000 });
    assert_eq!(e.scan_cursor, 4);
}

/// Plays the tones due by `ms` and returns them as (from, to, packet).
fn tones_at(e: &mut Engine, ms: u64) -> Vec<(LocalEndpoint, SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    e.play_tones(Now { us: ms * 1000 }, |o| out.push((o.from, o.to, o.packet.to_vec())));
    out
}

#[test]
fn digits_are_rfc_4733_events_in_the_stream_the_leg_sends() {
    let (mut e, id) = engine_with_session(signalled(A, B));
    // Audio from A goes out of leg 1 to B: its numbering is what the events continue.
    send(&mut e, 0, 20000, A, rtp(0, 500, 8000, 0x1111));
    let events = "1#".chars().map(|c| tones::event_code(c).unwrap()).collect();
    e.apply(Now { us: 10_000 }, Command::Digits { id, side: 1, events, pt: 101 }).unwrap();

    let mut packets = Vec::new();
    for ms in (10..=600).step_by(10) {
        packets.extend(tones_at(&mut e, ms));
    }
    assert_eq!(packets.len(), 16, "two digits: 5 packets and 3 end packets each");
    for (from, to, _) in &packets {
        assert_eq!((*from, *to), (ep(20002), addr(B)), "out of leg 1, to its peer");
    }
    let field = |(_, _, p): &(LocalEndpoint, SocketAddr, Vec<u8>)| {
        let event = crate::wire::telephone_event::Packet::new_checked(&p[12..]).unwrap();
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let ts = u32::from_be_bytes(p[4..8].try_into().unwrap());
        let ssrc = u32::from_be_bytes(p[8..12].try_into().unwrap());
        (p[1] & 0x80 != 0, p[1] & 0x7f, seq, ts, ssrc, event.event(), event.end_of_event(), event.duration())
    };
    let first = field(&packets[0]);
    assert_eq!((first.0, first.1, first.5, first.6, first.7), (true, 101, 1, false, 160), "marked, event 1, 20 ms");
    assert_ne!(first.4, 0x1111, "the leg's stream is rewritten from the first event on");
    for (i, p) in packets.iter().enumerate() {
        let f = field(p);
        assert_eq!(f.2, first.2.wrapping_add(i as u16), "gapless sequence numbers");
        assert_eq!(f.4, first.4, "one SSRC");
        assert_eq!(f.0, i % 8 == 0, "the first packet of each event is marked");
        let (event, end) = (if i < 8 { 1 } else { 11 }, i % 8 >= 5);
        assert_eq!((f.5, f.6), (event, end), "packet {i}");
        assert_eq!(f.7, if end { 800 } else { 160 * (i as u16 % 8 + 1) }, "duration of packet {i}");
        assert_eq!(f.3, if i < 8 { first.3 } else { field(&packets[8]).3 }, "one timestamp per event");
    }
    assert!(tones_at(&mut e, 2000).is_empty(), "done");
    // Audio resumes right after the events in the numbering.
    let (_, dg) = send(&mut e, 700, 20000, A, rtp(0, 501, 8160, 0x1111));
    let seq = u16::from_be_bytes([dg.payload[2], dg.payload[3]]);
    assert_eq!(seq, field(&packets[15]).2.wrapping_add(1), "relayed audio continues after the events");
}

#[test]
fn digits_for_a_removed_session_stop() {
    let (mut e, id) = engine_with_session(signalled(A, B));
    e.apply(Now::default(), Command::Digits { id, side: 0, events: vec![5, 5, 5], pt: 101 }).unwrap();
    assert_eq!(tones_at(&mut e, 0).len(), 1);
    e.apply(Now::default(), Command::Remove { id }).unwrap();
    assert!(tones_at(&mut e, 1000).is_empty());
    assert!(e.tones.is_empty(), "forgotten");
}

#[test]
fn relayed_counts_reach_the_shared_counters_within_a_sweep_and_at_removal() {
    let (mut e, id) = engine_with_session(signalled(A, B));
    // Leg 0's received, relayed and dropped packets, and its received bytes.
    let leg0 = |e: &Engine| {
        let c = &e.shared.legs[id.slot() as usize * 2];
        [&c.rx_packets, &c.relayed_packets, &c.dropped, &c.rx_bytes].map(|v| v.load(Relaxed))
    };
    send(&mut e, 0, 20000, A, rtp(0, 1, 160, 1));
    // A dropped datagram is counted at once; a relayed one waits for the scan.
    send(&mut e, 0, 20000, A, vec![0x80, 0]);
    assert_eq!(leg0(&e), [1, 0, 1, 2]);
    // The paced scan covers the whole table once per SWEEP_US.
    e.scan_timeouts_paced(Now { us: SWEEP_US });
    assert_eq!(leg0(&e), [2, 1, 1, 2 + 172]);
    send(&mut e, SWEEP_US / 1000 + 20, 20000, A, rtp(0, 2, 320, 1));
    e.apply(Now { us: SWEEP_US + 40_000 }, Command::Remove { id }).unwrap();
    assert_eq!(leg0(&e)[1], 2, "published before the session went");
}
