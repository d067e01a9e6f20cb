//! One worker's share of the session table: fixed capacity, allocated once at
//! start-up, and a flow index that maps a local endpoint to its leg with one
//! array access (no hashing, no probing on the packet path).
//!
//! Global session slots are dealt round-robin to the workers: worker `w` of
//! `n` owns the slots `s` with `s % n == w`, stored at local index `s / n`.
//! A session's two legs sit side by side (`2 * local`, `2 * local + 1`), so
//! the other leg of leg `i` is `i ^ 1`.
//!
//! A leg owns a pair of ports: the even one for RTP (and RTCP when muxed,
//! RFC 5761), the odd one above it for RTCP. The flow index maps both; its
//! entry is `leg << 1 | is_rtcp_port`.

use super::receive_stats::ReceiveStats;
use super::rewrite::StreamRewrite;
use super::{LegSettings, LocalEndpoint, PayloadTypeMap, PeerAddr, PortIndex, SessionId};
use std::net::SocketAddr;

pub const NO_LEG: u32 = u32::MAX;

/// One leg's state, laid out for the packet path: what a receiving leg
/// reads for every packet is in its first cache line; what the sending leg
/// adds (rewrite, payload-type map) and RTCP's own address come after.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct Leg {
    // First cache line: every packet.
    /// Where packets for this leg's peer go: signalled, then latched.
    pub remote: PeerAddr,
    pub local: LocalEndpoint,
    /// The remote was learned from traffic since the last update.
    pub latched: bool,
    /// Drop packets from any source but the remote address.
    pub strict: bool,
    pub rtcp_latched: bool,
    /// RTP clock rate of the stream received on this leg.
    pub clock_rate: u32,
    pub stats: ReceiveStats,
    /// When this leg last received a packet (or was installed), in
    /// milliseconds of the dataplane clock, wrapping every 49 days: the
    /// timeout scan compares it with `wrapping_sub` once a second.
    pub last_rx_ms: u32,
    // Second cache line: the stream sent out of this leg, and RTCP.
    /// Rewrite state of the stream sent out of this leg, when enabled.
    pub rewrite: Option<StreamRewrite>,
    pub pt_map: PayloadTypeMap,
    /// Packets and bytes relayed out of this leg that are not yet in the
    /// shared counters of the other (receiving) leg: kept here, in a line
    /// every relayed packet writes anyway, and added to the shared
    /// [`LegCounters`](crate::engine::counters::LegCounters) by the
    /// timeout scan (every session once a second) and at removal. A
    /// separate counters line per packet cost a cache miss each.
    pub unpublished_packets: u64,
    pub unpublished_bytes: u64,
    // Third cache line: RTCP on its own port (a packet every few seconds).
    /// Where RTCP sent on the odd port goes: signalled port + 1, then latched.
    pub rtcp_remote: PeerAddr,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Slot {
    pub id: Option<SessionId>,
    pub timeout_reported: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("slot {0} does not belong to this worker or is out of range")]
    ForeignSlot(u32),
    #[error("too many digit sequences playing at once")]
    TonesFull,
    #[error("slot {0} is in use")]
    SlotInUse(u32),
    #[error("session {0} not found")]
    NotFound(SessionId),
    #[error("local endpoint {0:?} is outside the media port range or in use")]
    BadEndpoint(LocalEndpoint),
}

pub struct SessionTable {
    worker: u32,
    workers: u32,
    slots: Vec<Slot>,
    legs: Vec<Leg>,
    /// (address index, port - first port) -> local leg index, or NO_LEG.
    flow: Vec<u32>,
    ports: PortIndex,
}

impl SessionTable {
    /// A table for worker `worker` of `workers`, holding its share of `capacity` sessions.
    pub fn new(worker: u32, workers: u32, capacity: usize, addrs: usize, ports: std::ops::RangeInclusive<u16>) -> Self {
        let per_worker = capacity.div_ceil(workers as usize);
        let index = PortIndex::new(addrs, &ports);
        SessionTable {
            worker,
            workers,
            slots: vec![Slot::default(); per_worker],
            legs: vec![Leg::default(); per_worker * 2],
            flow: vec![NO_LEG; index.len()],
            ports: index,
        }
    }

    /// Bytes a table of this shape takes (for the start-up memory check).
    pub fn bytes_for(capacity: usize, addrs: usize, ports: usize) -> usize {
        capacity * (std::mem::size_of::<Slot>() + 2 * std::mem::size_of::<Leg>()) + addrs * ports * 4
    }

    fn local_index(&self, slot: u32) -> Result<usize, TableError> {
        if slot % self.workers != self.worker {
            return Err(TableError::ForeignSlot(slot));
        }
        let local = (slot / self.workers) as usize;
        if local >= self.slots.len() {
            return Err(TableError::ForeignSlot(slot));
        }
        Ok(local)
    }

    #[inline]
    fn flow_index(&self, local: LocalEndpoint) -> Option<usize> {
        self.ports.of(local)
    }

    /// The global slot of a local leg index.
    #[inline]
    pub fn global_slot(&self, leg: u32) -> u32 {
        (leg / 2) * self.workers + self.worker
    }

    /// The leg owning a local endpoint, and whether it is that leg's RTCP port.
    #[inline]
    pub fn lookup(&self, local: LocalEndpoint) -> Option<(u32, bool)> {
        let entry = *self.flow.get(self.flow_index(local)?)?;
        (entry != NO_LEG).then_some((entry >> 1, entry & 1 == 1))
    }

    /// Where the flow-index entry of `local` lives (for prefetching).
    #[inline]
    pub fn flow_entry_addr(&self, local: LocalEndpoint) -> Option<*const u8> {
        self.flow_index(local).and_then(|i| self.flow.get(i)).map(|e| std::ptr::from_ref(e).cast())
    }

    /// The cache lines a packet received on `leg` uses: the receiving leg's
    /// first line and the sending leg's first two (for prefetching).
    #[inline]
    pub fn session_lines(&self, leg: u32) -> [*const u8; 3] {
        let line = |i: u32, offset: usize| {
            self.legs
                .get(i as usize)
                .map_or(std::ptr::null(), |l| std::ptr::from_ref(l).cast::<u8>().wrapping_add(offset))
        };
        [line(leg, 0), line(leg ^ 1, 0), line(leg ^ 1, 64)]
    }

    pub fn install(
        &mut self,
        id: SessionId,
        locals: [LocalEndpoint; 2],
        settings: [LegSettings; 2],
        now_ms: u64,
    ) -> Result<(), TableError> {
        let local = self.local_index(id.slot())?;
        if self.slots[local].id.is_some() {
            return Err(TableError::SlotInUse(id.slot()));
        }
        let mut flows = [[0usize; 2]; 2];
        for (f, l) in flows.iter_mut().zip(locals) {
            let rtcp = LocalEndpoint { port: l.port.wrapping_add(1), ..l };
            for (slot, ep) in f.iter_mut().zip([l, rtcp]) {
                *slot = self.flow_index(ep).filter(|_| l.port % 2 == 0).ok_or(TableError::BadEndpoint(l))?;
                if self.flow[*slot] != NO_LEG {
                    return Err(TableError::BadEndpoint(l));
                }
            }
        }
        for side in 0..2 {
            let leg = local * 2 + side;
            self.flow[flows[side][0]] = (leg as u32) << 1;
            self.flow[flows[side][1]] = (leg as u32) << 1 | 1;
            self.legs[leg] = Leg { local: locals[side], ..Leg::default() };
            self.apply_settings(leg, settings[side], id);
        }
        for leg in &mut self.legs[local * 2..local * 2 + 2] {
            leg.last_rx_ms = now_ms as u32;
        }
        self.slots[local] = Slot { id: Some(id), timeout_reported: false };
        Ok(())
    }

    fn apply_settings(&mut self, leg: usize, settings: LegSettings, id: SessionId) {
        let l = &mut self.legs[leg];
        let rewrite = match (settings.ssrc_rewrite, l.rewrite) {
            (true, Some(existing)) => Some(existing),
            // Deterministic per leg, distinct per session and side.
            (true, None) => Some(StreamRewrite::new(ssrc_for(id, leg as u32 & 1))),
            (false, _) => None,
        };
        l.strict = settings.strict;
        l.clock_rate = settings.clock_rate.max(1);
        l.pt_map = settings.pt_map;
        l.remote = PeerAddr::from_option(settings.remote);
        l.latched = false;
        l.rtcp_remote =
            PeerAddr::from_option(settings.remote.map(|r| SocketAddr::new(r.ip(), r.port().wrapping_add(1))));
        l.rtcp_latched = false;
        l.rewrite = rewrite;
    }

    pub fn update(&mut self, id: SessionId, side: usize, settings: LegSettings) -> Result<(), TableError> {
        let local = self.find(id)?;
        self.apply_settings(local * 2 + (side & 1), settings, id);
        Ok(())
    }

    /// Leg `side` of session `id`, to originate packets out of: its
    /// outgoing stream is rewritten from now on (SSRC, numbering), so that
    /// what the appliance adds continues the stream its peer receives.
    pub fn originating_leg(&mut self, id: SessionId, side: usize) -> Result<&mut Leg, TableError> {
        let local = self.find(id)?;
        let leg = &mut self.legs[local * 2 + (side & 1)];
        if leg.rewrite.is_none() {
            leg.rewrite = Some(StreamRewrite::new(ssrc_for(id, side as u32 & 1)));
        }
        Ok(leg)
    }

    pub fn remove(&mut self, id: SessionId) -> Result<(), TableError> {
        let local = self.find(id)?;
        for side in 0..2 {
            let leg = self.legs[local * 2 + side];
            for port in [leg.local.port, leg.local.port.wrapping_add(1)] {
                if let Some(f) = self.flow_index(LocalEndpoint { port, ..leg.local }) {
                    self.flow[f] = NO_LEG;
                }
            }
        }
        self.slots[local] = Slot::default();
        Ok(())
    }

    /// The local index of session `id`'s slot, if it is installed.
    pub fn local_of(&self, id: SessionId) -> Option<usize> {
        self.find(id).ok()
    }

    /// Takes the packets and bytes relayed out of local leg `leg` since the
    /// last call.
    #[inline]
    pub fn take_unpublished(&mut self, leg: usize) -> (u64, u64) {
        let l = &mut self.legs[leg];
        let taken = (l.unpublished_packets, l.unpublished_bytes);
        (l.unpublished_packets, l.unpublished_bytes) = (0, 0);
        taken
    }

    fn find(&self, id: SessionId) -> Result<usize, TableError> {
        let local = self.local_index(id.slot()).map_err(|_| TableError::NotFound(id))?;
        if self.slots[local].id != Some(id) {
            return Err(TableError::NotFound(id));
        }
        Ok(local)
    }

    #[inline]
    pub fn leg(&self, leg: u32) -> &Leg {
        &self.legs[leg as usize]
    }

    /// Both legs of a session, the receiving one first.
    #[inline]
    pub fn leg_pair_mut(&mut self, leg: u32) -> (&mut Leg, &mut Leg) {
        let base = (leg & !1) as usize;
        let (a, b) = self.legs[base..base + 2].split_at_mut(1);
        if leg & 1 == 0 {
            (&mut a[0], &mut b[0])
        } else {
            (&mut b[0], &mut a[0])
        }
    }

    #[inline]
    pub fn slot_mut(&mut self, leg: u32) -> &mut Slot {
        &mut self.slots[(leg / 2) as usize]
    }

    /// How long the session in local slot `local` has carried no packet
    /// either way, in ms (`now_ms` on the same wrapping clock as `last_rx_ms`).
    pub fn silence_ms(&self, local: usize, now_ms: u32) -> u32 {
        let since = |leg: &Leg| now_ms.wrapping_sub(leg.last_rx_ms);
        match self.legs.get(local * 2..local * 2 + 2) {
            Some([a, b]) => since(a).min(since(b)),
            _ => 0,
        }
    }

    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub fn slot_by_index(&mut self, local: usize) -> &mut Slot {
        &mut self.slots[local]
    }

    pub fn in_use(&self) -> usize {
        self.slots.iter().filter(|s| s.id.is_some()).count()
    }
}

/// The SSRC a leg sends when it rewrites: unique per session and side while
/// the session lives, and different from a plain counter so that two
/// appliances are unlikely to collide.
fn ssrc_for(id: SessionId, side: u32) -> u32 {
    let mut x = id.0 ^ (u64::from(side) << 63) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> LocalEndpoint {
        LocalEndpoint { addr: 0, port }
    }

    #[test]
    fn install_lookup_remove() {
        let mut t = SessionTable::new(1, 2, 8, 1, 20000..=20009);
        let id = SessionId::new(3, 1);
        t.install(id, [ep(20000), ep(20002)], [LegSettings::default(); 2], 0).unwrap();
        let (leg, rtcp) = t.lookup(ep(20002)).unwrap();
        assert_eq!((leg, rtcp), (3, false), "slot 3 of worker 1 is local 1, its second leg is 3");
        assert_eq!(t.lookup(ep(20003)), Some((3, true)));
        assert_eq!(t.lookup(ep(20001)), Some((2, true)));
        assert_eq!(t.global_slot(leg), 3);
        assert_eq!(t.lookup(ep(20004)), None);
        t.remove(id).unwrap();
        assert_eq!(t.lookup(ep(20002)), None);
        assert_eq!(t.lookup(ep(20003)), None);
        assert_eq!(t.remove(id), Err(TableError::NotFound(id)));
    }

    #[test]
    fn refuses_foreign_slots_and_used_endpoints() {
        let mut t = SessionTable::new(0, 2, 8, 1, 20000..=20009);
        let s = [LegSettings::default(); 2];
        assert_eq!(t.install(SessionId::new(1, 0), [ep(20000), ep(20002)], s, 0), Err(TableError::ForeignSlot(1)));
        assert_eq!(t.install(SessionId::new(8, 0), [ep(20000), ep(20002)], s, 0), Err(TableError::ForeignSlot(8)));
        t.install(SessionId::new(0, 0), [ep(20000), ep(20002)], s, 0).unwrap();
        assert_eq!(
            t.install(SessionId::new(2, 0), [ep(20002), ep(20004)], s, 0),
            Err(TableError::BadEndpoint(ep(20002)))
        );
        assert_eq!(
            t.install(SessionId::new(2, 0), [ep(20004), ep(20005)], s, 0),
            Err(TableError::BadEndpoint(ep(20005))),
            "odd port"
        );
        assert_eq!(
            t.install(SessionId::new(2, 0), [ep(19998), ep(20004)], s, 0),
            Err(TableError::BadEndpoint(ep(19998)))
        );
        assert_eq!(
            t.install(SessionId::new(2, 0), [ep(20008), ep(20010)], s, 0),
            Err(TableError::BadEndpoint(ep(20010))),
            "past the range"
        );
        assert_eq!(t.install(SessionId::new(0, 1), [ep(20004), ep(20006)], s, 0), Err(TableError::SlotInUse(0)));
        // The failed installs left nothing behind.
        assert_eq!(t.lookup(ep(20004)), None);
        assert_eq!(t.in_use(), 1);
    }

    #[test]
    fn stale_id_does_not_reach_reused_slot() {
        let mut t = SessionTable::new(0, 1, 4, 1, 20000..=20009);
        let old = SessionId::new(0, 1);
        t.install(old, [ep(20000), ep(20002)], [LegSettings::default(); 2], 0).unwrap();
        t.remove(old).unwrap();
        let new = SessionId::new(0, 2);
        t.install(new, [ep(20004), ep(20006)], [LegSettings::default(); 2], 0).unwrap();
        assert_eq!(t.remove(old), Err(TableError::NotFound(old)));
        assert!(t.lookup(ep(20004)).is_some());
    }

    #[test]
    fn a_legs_hot_state_fits_its_first_cache_line() {
        assert_eq!(std::mem::align_of::<Leg>(), 64);
        assert!(std::mem::offset_of!(Leg, last_rx_ms) + 4 <= 64);
        assert!(std::mem::offset_of!(Leg, pt_map) + std::mem::size_of::<PayloadTypeMap>() <= 128);
        assert!(
            std::mem::offset_of!(Leg, unpublished_bytes) + 8 <= 128,
            "a relayed packet's counts share the sending leg's second line"
        );
    }

    #[test]
    fn leg_pair_orders_receiver_first() {
        let mut t = SessionTable::new(0, 1, 4, 1, 20000..=20009);
        t.install(SessionId::new(0, 0), [ep(20000), ep(20002)], [LegSettings::default(); 2], 0).unwrap();
        let (rx, tx) = t.leg_pair_mut(1);
        assert_eq!((rx.local.port, tx.local.port), (20002, 20000));
    }
}
