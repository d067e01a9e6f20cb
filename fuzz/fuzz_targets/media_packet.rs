//! What arrives on a media port: first-byte classification
//! (`wire::classify`), the RTP, RTCP (compound), STUN and telephone-event
//! views, then the relay engine itself (`Engine::relay`) on a stream of
//! such datagrams through one session that renumbers payload types and
//! rewrites SSRCs (the path that edits packets in place).
//!
//! Input: datagrams, each a length byte (the top bit: which leg sends it)
//! and that many bytes (the rest, if short).
//!
//! Invariants beyond "no panic": an RTP `Repr` that parses, emitted,
//! parses back to itself; a forwarded datagram was readdressed and kept its
//! length.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dataplane::control::{Command, Shared};
use dataplane::engine::checksum_delta::ChecksumDelta;
use dataplane::engine::{Datagram, Engine, Now, Verdict};
use dataplane::session::table::SessionTable;
use dataplane::session::{LegSettings, LocalEndpoint, PayloadTypeMap, SessionId};
use dataplane::wire::classify::{classify, Kind};
use dataplane::wire::{rtcp, rtp, stun, telephone_event};
use libfuzzer_sys::fuzz_target;

fn views(p: &[u8]) {
    match classify(p) {
        Kind::Rtp => {
            let Ok(packet) = rtp::Packet::new_checked(p) else { return };
            let _ = (packet.check_rtp(), packet.version(), packet.marker(), packet.extension_data());
            let _ = (packet.csrc(15), packet.padding_len(), packet.header_len());
            if let Ok(repr) = rtp::Repr::parse(&packet) {
                assert!(repr.buffer_len() <= p.len(), "an RTP header longer than its packet");
                let mut buf = vec![0u8; repr.buffer_len()];
                repr.emit(&mut rtp::Packet::new_unchecked(&mut buf[..]));
                assert_eq!(rtp::Repr::parse(&rtp::Packet::new_unchecked(&buf[..])), Ok(repr));
            }
            let payload = packet.payload();
            if let Ok(ev) = telephone_event::Packet::new_checked(payload) {
                let _ = (ev.event(), ev.end_of_event(), ev.volume(), ev.duration());
                let _ = telephone_event::Repr::parse(&ev);
            }
        }
        Kind::Rtcp => {
            let _ = rtcp::validate_compound(p);
            for packet in rtcp::CompoundIter::new(p).flatten() {
                let _ = (packet.count(), packet.packet_len(), packet.padding_len(), packet.body(), packet.ssrc());
                let _ = (packet.sender_info(), packet.report_blocks().count(), packet.bye_ssrcs().count());
                let _ = (packet.bye_reason(), packet.app_name(), packet.app_data());
                let _ = (packet.fb_media_ssrc(), packet.fb_fci());
                for chunk in packet.sdes_chunks().flatten() {
                    let _ = chunk.items().count();
                }
            }
        }
        Kind::Stun => {
            let Ok(packet) = stun::Packet::new_checked(p) else { return };
            let _ = (packet.method(), packet.class(), packet.has_magic_cookie(), packet.transaction_id());
            let _ = packet.attributes().count();
        }
        _ => {}
    }
}

struct Dgram {
    local: LocalEndpoint,
    source: SocketAddr,
    payload: Vec<u8>,
    out: bool,
}

impl Datagram for Dgram {
    fn local(&self) -> LocalEndpoint {
        self.local
    }
    fn source(&self) -> SocketAddr {
        self.source
    }
    fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.payload
    }
    fn readdress(&mut self, _from_leg: u32, _from: LocalEndpoint, _to: SocketAddr, _delta: ChecksumDelta) {
        self.out = true;
    }
}

const PEERS: [&str; 2] = ["192.0.2.10:4000", "192.0.2.20:6000"];
const LOCALS: [LocalEndpoint; 2] = [LocalEndpoint { addr: 0, port: 20_000 }, LocalEndpoint { addr: 0, port: 20_002 }];

fn engine() -> Option<Engine> {
    let shared = Arc::new(Shared::new(1, 4, Duration::from_secs(5)));
    let mut engine = Engine::new(0, SessionTable::new(0, 1, 4, 1, 20_000..=20_009), shared);
    let leg = |peer: &str, pairs: &[(u8, u8)]| LegSettings {
        remote: peer.parse().ok(),
        ssrc_rewrite: true,
        pt_map: PayloadTypeMap::new(pairs).unwrap_or_default(),
        ..LegSettings::default()
    };
    let settings = [leg(PEERS[0], &[(0, 8), (101, 96)]), leg(PEERS[1], &[(8, 0), (96, 101)])];
    let id = SessionId::new(1, 1);
    engine.apply(Now::default(), Command::Install { id, locals: LOCALS, settings }).ok()?;
    Some(engine)
}

fuzz_target!(|data: &[u8]| {
    views(data);
    let Some(mut engine) = engine() else { return };
    let mut rest = data;
    let mut now = Now { us: 1_000 };
    while let Some((&head, tail)) = rest.split_first() {
        let len = usize::from(head & 0x7f).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        let leg = usize::from(head >> 7);
        views(payload);
        let source = PEERS[leg].parse().expect("literal");
        let mut dg = Dgram { local: LOCALS[leg], source, payload: payload.to_vec(), out: false };
        if engine.relay(now, &mut dg) == Verdict::Forward {
            assert!(dg.out, "forwarded without a destination");
        }
        assert_eq!(dg.payload.len(), len);
        now.us += 20_000;
    }
    engine.scan_timeouts(now, 4);
});
