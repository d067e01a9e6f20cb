//! The relay: what happens to one datagram that reached a media port, and the
//! worker loop that feeds it bursts from a [`PacketIo`](crate::io::PacketIo).
//!
//! [`Engine::relay`] is the whole per-packet decision: find the leg by local
//! endpoint, validate, check or latch the source, account RFC 3550 statistics,
//! rewrite RTP (payload type, SSRC, sequence, timestamp) and readdress the
//! datagram to the other leg's peer. It never allocates and never blocks.

pub mod checksum_delta;
pub mod counters;
pub mod tones;
pub mod worker;

use crate::control::{Command, Event, Shared};
use crate::session::table::SessionTable;
use crate::session::{LocalEndpoint, PeerAddr};
use crate::wire::{classify, rtp};
use checksum_delta::ChecksumDelta;
use counters::{bump, DropReason};
use std::net::SocketAddr;
use std::sync::Arc;

/// Largest payload relayed: a full 1500-byte IPv4 packet minus IP and UDP headers.
pub const MAX_PAYLOAD: usize = 1472;
const RTCP_MIN: usize = 8;

/// A received datagram as the engine sees it, whatever the backend.
pub trait Datagram {
    /// The local media endpoint it was sent to.
    fn local(&self) -> LocalEndpoint;
    fn source(&self) -> SocketAddr;
    fn payload_mut(&mut self) -> &mut [u8];
    /// Turns it into a datagram from `from` (the local leg `from_leg` of this
    /// worker) to `to`. `payload_delta` is what the engine's payload rewrite
    /// did to the UDP checksum.
    fn readdress(&mut self, from_leg: u32, from: LocalEndpoint, to: SocketAddr, payload_delta: ChecksumDelta);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    Drop(DropReason),
}

/// Wall time as the worker loop samples it once per burst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Now {
    pub us: u64,
}

impl Now {
    pub fn ms(self) -> u64 {
        self.us / 1000
    }
}

/// One worker's relay state.
pub struct Engine {
    pub(crate) worker: u32,
    pub(crate) table: SessionTable,
    pub(crate) shared: Arc<Shared>,
    /// Next local slot the timeout scan looks at.
    scan_cursor: usize,
    last_scan_us: u64,
    /// DTMF this worker plays into its sessions' streams.
    pub(crate) tones: tones::Tones,
}

/// The timeout scan covers every slot once per this many microseconds.
pub const SWEEP_US: u64 = 1_000_000;

impl Engine {
    pub fn new(worker: u32, table: SessionTable, shared: Arc<Shared>) -> Self {
        Engine { worker, table, shared, scan_cursor: 0, last_scan_us: 0, tones: tones::Tones::default() }
    }

    fn counters(&self) -> &counters::WorkerCounters {
        &self.shared.workers[self.worker as usize]
    }

    #[inline]
    /// Counts a datagram of `len` bytes that is not relayed: on the worker,
    /// and received and dropped on its leg when it has one.
    fn reject(&self, leg: Option<u32>, len: usize, reason: DropReason) -> Verdict {
        self.counters().drop(reason);
        if let Some(leg) = leg {
            let lc = &self.shared.legs[self.global_leg(leg)];
            bump(&lc.rx_packets, 1);
            bump(&lc.rx_bytes, len as u64);
            bump(&lc.dropped, 1);
        }
        Verdict::Drop(reason)
    }

    /// Adds what the legs of local slot `local` relayed since the last
    /// call to their shared counters, with the receiving legs' RFC 3550
    /// loss and jitter. A relayed packet counts as received and relayed
    /// on its receiving leg, and sent on the other.
    fn publish(&mut self, local: usize) {
        for sending in [local * 2, local * 2 + 1] {
            let (packets, bytes) = self.table.take_unpublished(sending);
            if packets == 0 {
                continue;
            }
            let receiving = (sending ^ 1) as u32;
            let lc = &self.shared.legs[self.global_leg(receiving)];
            bump(&lc.rx_packets, packets);
            bump(&lc.rx_bytes, bytes);
            bump(&lc.relayed_packets, packets);
            bump(&lc.relayed_bytes, bytes);
            let stats = &self.table.leg(receiving).stats;
            lc.lost.store(stats.lost() as u64, std::sync::atomic::Ordering::Relaxed);
            lc.jitter.store(u64::from(stats.jitter()), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Publishes every session's counters now (the scan does it once a
    /// second): for tests and for a worker that stops.
    pub fn publish_all(&mut self) {
        for local in 0..self.table.slot_count() {
            self.publish(local);
        }
    }

    #[inline]
    fn global_leg(&self, leg: u32) -> usize {
        self.table.global_slot(leg) as usize * 2 + (leg & 1) as usize
    }

    /// The cache line of this datagram's flow-index entry.
    #[inline]
    pub fn flow_line<D: Datagram>(&self, dg: &D) -> Option<*const u8> {
        self.table.flow_entry_addr(dg.local())
    }

    /// Calls `touch` with every cache line `relay` will use for this
    /// datagram's session: the receiving leg's hot line and the sending
    /// leg's two (its counts included). Call it once the flow entry is
    /// warm, so that this lookup itself does not miss.
    #[inline]
    pub fn session_lines<D: Datagram>(&self, dg: &D, mut touch: impl FnMut(*const u8)) {
        let Some((leg, _)) = self.table.lookup(dg.local()) else { return };
        for line in self.table.session_lines(leg) {
            touch(line);
        }
    }

    /// Decides the fate of one datagram and, when it is relayed, readdresses it.
    #[inline]
    pub fn relay<D: Datagram>(&mut self, now: Now, dg: &mut D) -> Verdict {
        let wc = &self.shared.workers[self.worker as usize];
        let Some((leg, rtcp_port)) = self.table.lookup(dg.local()) else {
            bump(&wc.rx_packets, 1);
            return self.reject(None, 0, DropReason::NoSession);
        };
        let src = dg.source();
        let payload = dg.payload_mut();
        let len = payload.len();
        bump(&wc.rx_packets, 1);
        bump(&wc.rx_bytes, len as u64);

        if len > MAX_PAYLOAD {
            return self.reject(Some(leg), len, DropReason::Oversized);
        }
        let is_rtcp = match classify::classify(payload) {
            classify::Kind::Rtp => false,
            classify::Kind::Rtcp => true,
            classify::Kind::Stun | classify::Kind::Dtls | classify::Kind::Turn | classify::Kind::ZrtpOrOther => {
                return self.reject(Some(leg), len, DropReason::Control)
            }
            classify::Kind::Unknown if len < 2 => return self.reject(Some(leg), len, DropReason::Truncated),
            // RFC 7983 leaves 64..=127 and 192..=255 unassigned: a version
            // field of 1 or 3 lands there.
            classify::Kind::Unknown if matches!(payload[0] >> 6, 1 | 3) => {
                return self.reject(Some(leg), len, DropReason::BadVersion)
            }
            classify::Kind::Unknown => return self.reject(Some(leg), len, DropReason::NotRtp),
        };
        if len < if is_rtcp { RTCP_MIN } else { rtp::HEADER_LEN } {
            return self.reject(Some(leg), len, DropReason::Truncated);
        }
        if rtcp_port && !is_rtcp {
            return self.reject(Some(leg), len, DropReason::NotRtp);
        }

        let (rx, _) = self.table.leg_pair_mut(leg);
        let (remote, latched) =
            if rtcp_port { (&mut rx.rtcp_remote, &mut rx.rtcp_latched) } else { (&mut rx.remote, &mut rx.latched) };
        let source = PeerAddr::new(src);
        // Source: strict legs accept only their peer; others latch the first source.
        match *remote {
            r if r == source => {}
            r if r.is_some() && rx.strict => return self.reject(Some(leg), len, DropReason::WrongSource),
            _ if !*latched => {
                *remote = source;
                *latched = true;
                if let Some(session) = self.table.slot_mut(leg).id {
                    self.emit(Event::Latched { session, side: (leg & 1) as u8, rtcp: rtcp_port, remote: src });
                }
            }
            _ => {}
        }
        let (rx, tx) = self.table.leg_pair_mut(leg);
        let (dest, from) = if rtcp_port {
            (tx.rtcp_remote, LocalEndpoint { port: tx.local.port + 1, ..tx.local })
        } else {
            (tx.remote, tx.local)
        };
        let Some(dest) = dest.get() else {
            return self.reject(Some(leg), len, DropReason::NoDestination);
        };

        let mut delta = ChecksumDelta::default();
        if is_rtcp {
            if let Some(rewrite) = &tx.rewrite {
                rewrite_rtcp_ssrcs(payload, rewrite, &mut delta);
            }
        } else {
            let mut packet = rtp::Packet::new_unchecked(&mut *payload);
            if packet.check_rtp().is_err() {
                return self.reject(Some(leg), len, DropReason::Malformed);
            }
            let (ssrc, seq, ts) = (packet.ssrc(), packet.sequence_number(), packet.timestamp());
            let clock_rate = rx.clock_rate;
            // u64 holds microseconds x 192 kHz for 3,000 years; a constant divisor is a multiply.
            let arrival = (now.us.wrapping_mul(u64::from(clock_rate)) / 1_000_000) as u32;
            rx.stats.update(seq, ts, arrival);

            let pt = packet.payload_type();
            let out_pt = tx.pt_map.map(pt);
            if out_pt != pt {
                // The low byte of its 16-bit word changes (marker kept); the
                // high byte is unchanged and cancels out of the checksum.
                let marker = if packet.marker() { 0x80 } else { 0 };
                packet.set_payload_type(out_pt);
                delta.replace16(u16::from(marker | pt), u16::from(marker | out_pt));
            }
            if let Some(rewrite) = &mut tx.rewrite {
                let (o_ssrc, o_seq, o_ts) = rewrite.apply(ssrc, seq, ts, tx.clock_rate);
                packet.set_ssrc(o_ssrc);
                packet.set_sequence_number(o_seq);
                packet.set_timestamp(o_ts);
                delta.replace32(ssrc, o_ssrc);
                delta.replace16(seq, o_seq);
                delta.replace32(ts, o_ts);
            }
        }
        let out_leg = leg ^ 1;
        let (rx, tx) = self.table.leg_pair_mut(leg);
        rx.last_rx_ms = now.ms() as u32;
        tx.unpublished_packets += 1;
        tx.unpublished_bytes += len as u64;
        dg.readdress(out_leg, from, dest, delta);
        Verdict::Forward
    }

    fn emit(&self, event: Event) {
        if self.shared.events.push(event).is_err() {
            bump(&self.counters().events_lost, 1);
        }
    }

    /// Applies one command from the control plane.
    pub fn apply(&mut self, now: Now, command: Command) -> Result<(), crate::session::table::TableError> {
        match command {
            Command::Install { id, locals, settings } => {
                self.table.install(id, locals, settings, now.ms())?;
                let slot = id.slot() as usize;
                for side in 0..2 {
                    self.shared.legs[slot * 2 + side].reset();
                }
                bump(&self.counters().sessions_active, 1);
            }
            Command::Update { id, side, settings } => self.table.update(id, side, settings)?,
            Command::Remove { id } => {
                if let Some(local) = self.table.local_of(id) {
                    self.publish(local);
                }
                self.table.remove(id)?;
                let c = &self.counters().sessions_active;
                c.store(
                    c.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(1),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            // The backend's business (`worker::apply`).
            Command::CloseIdle { .. } => {}
            Command::Digits { id, side, events, pt } => {
                self.table.originating_leg(id, side)?;
                self.tones.start(now, id, side, events, pt)?;
            }
        }
        Ok(())
    }

    /// Sends the DTMF packets due by `now` through `send`.
    pub fn play_tones(&mut self, now: Now, send: impl FnMut(tones::Originated)) {
        if !self.tones.is_empty() {
            self.tones.play(now, &mut self.table, send);
        }
    }

    /// Scans for media timeouts at the pace that covers the whole table once
    /// per [`SWEEP_US`]: cheap under load (a fixed number of slots per
    /// second, whatever the packet rate) and never more than a second late.
    pub fn scan_timeouts_paced(&mut self, now: Now) {
        let elapsed = now.us.saturating_sub(self.last_scan_us);
        let count = self.table.slot_count() as u64;
        let budget = (count * elapsed).div_ceil(SWEEP_US);
        if budget == 0 {
            return;
        }
        self.last_scan_us = now.us;
        self.scan_timeouts(now, budget.min(count) as usize);
    }

    /// Looks at up to `budget` sessions for media timeouts, continuing where
    /// the previous call stopped, so that a big table costs little per loop.
    pub fn scan_timeouts(&mut self, now: Now, budget: usize) {
        let timeout_ms = self.shared.media_timeout_ms;
        let count = self.table.slot_count();
        if count == 0 {
            return;
        }
        for _ in 0..budget.min(count) {
            let local = self.scan_cursor;
            // No modulo: a division per slot showed up in the profile.
            self.scan_cursor += 1;
            if self.scan_cursor >= count {
                self.scan_cursor = 0;
            }
            self.publish(local);
            let silent_ms = self.table.silence_ms(local, now.ms() as u32);
            let slot = self.table.slot_by_index(local);
            let Some(id) = slot.id else { continue };
            if !slot.timeout_reported && u64::from(silent_ms) >= timeout_ms {
                slot.timeout_reported = true;
                self.emit(Event::MediaTimeout { session: id });
            } else if slot.timeout_reported && u64::from(silent_ms) < timeout_ms {
                // Media came back: a later silence is reported again.
                slot.timeout_reported = false;
            }
        }
    }
}

/// Rewrites the sender SSRC of each packet of an RTCP compound that the
/// rewrite maps (SR, RR, SDES first chunk, BYE first source).
fn rewrite_rtcp_ssrcs(payload: &mut [u8], rewrite: &crate::session::rewrite::StreamRewrite, delta: &mut ChecksumDelta) {
    let mut offset = 0;
    while offset + 8 <= payload.len() {
        let words = usize::from(u16::from_be_bytes([payload[offset + 2], payload[offset + 3]]));
        let end = offset + (words + 1) * 4;
        if end > payload.len() {
            return;
        }
        let ssrc_at = offset + 4..offset + 8;
        let ssrc = u32::from_be_bytes([
            payload[ssrc_at.start],
            payload[ssrc_at.start + 1],
            payload[ssrc_at.start + 2],
            payload[ssrc_at.start + 3],
        ]);
        if let Some(new) = rewrite.map_rtcp_ssrc(ssrc) {
            payload[ssrc_at].copy_from_slice(&new.to_be_bytes());
            delta.replace32(ssrc, new);
        }
        offset = end;
    }
}

#[cfg(test)]
pub(crate) mod tests;
