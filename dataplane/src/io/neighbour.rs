//! The neighbour table: IP address -> MAC of the next hops the port sends
//! to, learned from ARP, Neighbor Discovery and the source MAC of received
//! media (a peer that sends to us is reachable at the MAC it sent from).
//!
//! Fixed capacity, open addressing with a short probe window, no allocation
//! after construction and no deletion: a full window gives up its least
//! recently updated entry. Time is passed in (milliseconds of a monotonic
//! clock), so the table is a plain state machine.

use crate::wire::ethernet::EthernetAddress;
use std::net::IpAddr;

/// Entries; a power of two. Next hops are the media subnet's hosts that
/// talk to us and the gateway: a thousand is plenty.
pub const CAPACITY: usize = 1024;
/// Slots looked at for one address.
const PROBES: usize = 8;
/// At most one request per address this often.
pub const REQUEST_INTERVAL_MS: u64 = 200;
/// A resolved entry not confirmed for this long is asked for again (while
/// still used), so a peer that changed its MAC is found.
pub const REFRESH_AFTER_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Empty,
    /// Asked for, no answer yet.
    Incomplete,
    Resolved,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    key: u128,
    state: State,
    mac: [u8; 6],
    /// When it was last learned or confirmed (Resolved) or created (Incomplete).
    updated_ms: u64,
    /// When we last sent a request for it; `None` never.
    requested_ms: Option<u64>,
}

/// What the table knows of a next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Resolved; `refresh` asks the caller to send a request (rate-limited)
    /// because the entry is old.
    Known {
        mac: EthernetAddress,
        refresh: bool,
    },
    Unknown,
}

pub struct NeighbourTable {
    entries: Box<[Entry]>,
}

impl Default for NeighbourTable {
    fn default() -> Self {
        NeighbourTable::new()
    }
}

/// IPv4 as its IPv4-mapped IPv6 form: one key space for both families.
fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn home(key: u128) -> usize {
    let x = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize & (CAPACITY - 1)
}

impl NeighbourTable {
    pub fn new() -> NeighbourTable {
        NeighbourTable { entries: vec![Entry::default(); CAPACITY].into_boxed_slice() }
    }

    fn find(&self, key: u128) -> Option<usize> {
        let h = home(key);
        (0..PROBES).map(|i| (h + i) & (CAPACITY - 1)).find(|&s| {
            let e = &self.entries[s];
            e.state != State::Empty && e.key == key
        })
    }

    /// The slot for `key`: its own, else an empty one, else the window's
    /// least recently updated (evicted).
    fn slot_for(&mut self, key: u128) -> usize {
        if let Some(s) = self.find(key) {
            return s;
        }
        let h = home(key);
        let window = (0..PROBES).map(|i| (h + i) & (CAPACITY - 1));
        if let Some(s) = window.clone().find(|&s| self.entries[s].state == State::Empty) {
            return s;
        }
        window.min_by_key(|&s| self.entries[s].updated_ms).unwrap_or(h)
    }

    /// Records that `ip` is at `mac`.
    #[inline]
    pub fn learn(&mut self, ip: IpAddr, mac: EthernetAddress, now_ms: u64) {
        if !mac.is_unicast() || mac.0 == [0; 6] {
            return;
        }
        let k = key(ip);
        let s = self.slot_for(k);
        let e = &mut self.entries[s];
        if e.key != k || e.state == State::Empty {
            e.requested_ms = None;
        }
        e.key = k;
        e.state = State::Resolved;
        e.mac = mac.0;
        e.updated_ms = now_ms;
    }

    #[inline]
    pub fn lookup(&self, ip: IpAddr, now_ms: u64) -> Lookup {
        match self.find(key(ip)).map(|s| &self.entries[s]) {
            Some(e) if e.state == State::Resolved => Lookup::Known {
                mac: EthernetAddress(e.mac),
                refresh: now_ms.saturating_sub(e.updated_ms) >= REFRESH_AFTER_MS,
            },
            _ => Lookup::Unknown,
        }
    }

    /// Whether to send a request for `ip` now: at most one per
    /// [`REQUEST_INTERVAL_MS`] per address. Remembers the request.
    pub fn should_request(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        let k = key(ip);
        let s = self.slot_for(k);
        let e = &mut self.entries[s];
        if e.key != k || e.state == State::Empty {
            *e = Entry { key: k, state: State::Incomplete, mac: [0; 6], updated_ms: now_ms, requested_ms: None };
        }
        match e.requested_ms {
            Some(t) if now_ms.saturating_sub(t) < REQUEST_INTERVAL_MS => false,
            _ => {
                e.requested_ms = Some(now_ms);
                true
            }
        }
    }

    /// Resolved entries (for logs and tests).
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.state == State::Resolved).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What media packets taught a [`NeighbourTable`] lately, direct-mapped by
/// source address: a peer keeps sending from the same MAC, so most packets
/// find their (address, MAC) here and skip the table, and the checks in
/// front of it, entirely.
#[derive(Debug, Clone)]
pub struct LearnMemo {
    slots: [(IpAddr, EthernetAddress, u64); LEARN_MEMO],
}

/// Entries of a [`LearnMemo`].
const LEARN_MEMO: usize = 64;
/// A neighbour confirmed by traffic is written to the table at most this often.
const RELEARN_AFTER_MS: u64 = 1_000;

impl Default for LearnMemo {
    fn default() -> Self {
        LearnMemo { slots: [(IpAddr::from([0, 0, 0, 0]), EthernetAddress([0; 6]), 0); LEARN_MEMO] }
    }
}

impl LearnMemo {
    fn slot(ip: IpAddr) -> usize {
        let low = match ip {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(a) => (u128::from(a) as u32) ^ ((u128::from(a) >> 64) as u32),
        };
        (low.wrapping_mul(0x9e37_79b9) >> 26) as usize % LEARN_MEMO
    }

    /// Teaches `table` that `ip` is at `mac` if `is_neighbour(ip)` (only next
    /// hops are ever looked up), unless the same was taught within a second.
    #[inline]
    pub fn learn(
        &mut self,
        table: &mut NeighbourTable,
        ip: IpAddr,
        mac: EthernetAddress,
        now_ms: u64,
        is_neighbour: impl FnOnce(IpAddr) -> bool,
    ) {
        let slot = &mut self.slots[Self::slot(ip)];
        if slot.0 == ip && slot.1 == mac && now_ms.saturating_sub(slot.2) < RELEARN_AFTER_MS {
            return;
        }
        if is_neighbour(ip) {
            table.learn(ip, mac, now_ms);
            *slot = (ip, mac, now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MAC_A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0a]);
    const MAC_B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0b]);

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn learn_lookup_update() {
        let mut t = NeighbourTable::new();
        assert_eq!(t.lookup(v4(2), 0), Lookup::Unknown);
        t.learn(v4(2), MAC_A, 10);
        assert_eq!(t.lookup(v4(2), 20), Lookup::Known { mac: MAC_A, refresh: false });
        t.learn(v4(2), MAC_B, 30);
        assert_eq!(t.lookup(v4(2), 40), Lookup::Known { mac: MAC_B, refresh: false });
        assert_eq!(t.lookup(v4(3), 40), Lookup::Unknown);
        assert_eq!(t.len(), 1);
        // Old entries ask for a refresh but still resolve.
        assert_eq!(t.lookup(v4(2), 30 + REFRESH_AFTER_MS), Lookup::Known { mac: MAC_B, refresh: true });
    }

    #[test]
    fn families_do_not_collide() {
        let mut t = NeighbourTable::new();
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 2).to_ipv6_mapped());
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
        t.learn(v6, MAC_B, 0);
        t.learn(v4(2), MAC_A, 0);
        assert_eq!(t.lookup(v6, 0), Lookup::Known { mac: MAC_B, refresh: false });
        assert_eq!(t.lookup(v4(2), 0), Lookup::Known { mac: MAC_A, refresh: false });
        // (an IPv4-mapped IPv6 address is the same neighbour as the IPv4 one)
        assert_eq!(t.lookup(mapped, 0), Lookup::Known { mac: MAC_A, refresh: false });
    }

    #[test]
    fn ignores_broadcast_and_zero_macs() {
        let mut t = NeighbourTable::new();
        t.learn(v4(2), EthernetAddress::BROADCAST, 0);
        t.learn(v4(3), EthernetAddress([0; 6]), 0);
        t.learn(v4(4), EthernetAddress([0x33, 0x33, 0, 0, 0, 1]), 0);
        assert!(t.is_empty());
    }

    #[test]
    fn requests_are_rate_limited_per_address() {
        let mut t = NeighbourTable::new();
        assert!(t.should_request(v4(9), 1000));
        assert!(!t.should_request(v4(9), 1000 + REQUEST_INTERVAL_MS - 1));
        assert!(t.should_request(v4(8), 1001), "another address is not held back");
        assert!(t.should_request(v4(9), 1000 + REQUEST_INTERVAL_MS));
        assert_eq!(t.lookup(v4(9), 2000), Lookup::Unknown, "incomplete is not resolved");
        t.learn(v4(9), MAC_A, 2000);
        assert_eq!(t.lookup(v4(9), 2000), Lookup::Known { mac: MAC_A, refresh: false });
    }

    #[test]
    fn full_table_evicts_the_oldest_and_keeps_working() {
        let mut t = NeighbourTable::new();
        // Many more addresses than slots: every lookup of a recent one works.
        for i in 0..(4 * CAPACITY) as u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            t.learn(ip, MAC_A, u64::from(i));
            assert_eq!(t.lookup(ip, u64::from(i)), Lookup::Known { mac: MAC_A, refresh: false });
        }
        assert!(t.len() <= CAPACITY);
        assert!(t.len() > CAPACITY / 2, "the table fills up: {}", t.len());
    }
}
