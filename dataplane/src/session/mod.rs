//! Sessions: two legs joined in the dataplane.
//!
//! - [`table`]: the per-worker fixed-capacity table and the flow index that maps
//!   a local endpoint to its leg in one array access.
//! - [`receive_stats`]: RFC 3550 loss and interarrival jitter.
//! - [`rewrite`]: SSRC/sequence/timestamp rewrite keeping a stream continuous.

pub mod receive_stats;
pub mod rewrite;
pub mod table;

use std::net::SocketAddr;

/// A local media endpoint: index into the configured media addresses, and UDP port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct LocalEndpoint {
    pub addr: u8,
    pub port: u16,
}

/// Numbers the local endpoints of the configured media addresses and port
/// range densely (address-major): the session table's flow index, the
/// socket backend's sockets and the control plane's bound flags all use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortIndex {
    first_port: u16,
    port_count: usize,
    addrs: usize,
}

impl PortIndex {
    pub fn new(addrs: usize, ports: &std::ops::RangeInclusive<u16>) -> PortIndex {
        PortIndex { first_port: *ports.start(), port_count: usize::from(*ports.end() - *ports.start()) + 1, addrs }
    }

    /// How many endpoints there are.
    pub fn len(&self) -> usize {
        self.addrs * self.port_count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The endpoint's number; `None` outside the addresses or the range.
    #[inline]
    pub fn of(&self, local: LocalEndpoint) -> Option<usize> {
        let port = usize::from(local.port.checked_sub(self.first_port)?);
        (port < self.port_count && usize::from(local.addr) < self.addrs)
            .then(|| usize::from(local.addr) * self.port_count + port)
    }
}

/// Identifies a session: its slot in the table and the generation of that slot,
/// so an id of a deleted session never reaches the session that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub u64);

impl SessionId {
    pub fn new(slot: u32, generation: u32) -> Self {
        SessionId(u64::from(generation) << 32 | u64::from(slot))
    }
    pub fn slot(self) -> u32 {
        self.0 as u32
    }
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A peer's transport address in 20 bytes (`Option<SocketAddr>` takes 32):
/// small enough that a leg's hot state fits one cache line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerAddr {
    /// IPv4 addresses are stored in the first four bytes.
    ip: [u8; 16],
    port: u16,
    kind: u8,
}

const PEER_NONE: u8 = 0;
const PEER_V4: u8 = 4;
const PEER_V6: u8 = 6;

impl PeerAddr {
    pub const NONE: PeerAddr = PeerAddr { ip: [0; 16], port: 0, kind: PEER_NONE };

    #[inline]
    pub fn new(addr: SocketAddr) -> PeerAddr {
        let mut ip = [0u8; 16];
        let kind = match addr.ip() {
            std::net::IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                PEER_V4
            }
            std::net::IpAddr::V6(v6) => {
                ip = v6.octets();
                PEER_V6
            }
        };
        PeerAddr { ip, port: addr.port(), kind }
    }

    #[inline]
    pub fn from_option(addr: Option<SocketAddr>) -> PeerAddr {
        addr.map_or(PeerAddr::NONE, PeerAddr::new)
    }

    #[inline]
    pub fn is_some(&self) -> bool {
        self.kind != PEER_NONE
    }

    #[inline]
    pub fn get(&self) -> Option<SocketAddr> {
        match self.kind {
            PEER_V4 => {
                let [a, b, c, d, ..] = self.ip;
                Some(SocketAddr::from(([a, b, c, d], self.port)))
            }
            PEER_V6 => Some(SocketAddr::from((self.ip, self.port))),
            _ => None,
        }
    }
}

/// Maps incoming RTP payload types to the numbers the other leg negotiated.
/// Small and fixed: a call carries a handful of payload types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PayloadTypeMap {
    entries: [(u8, u8); PayloadTypeMap::CAPACITY],
    len: u8,
}

impl PayloadTypeMap {
    pub const CAPACITY: usize = 8;

    /// Builds a map; `None` when it has more entries than fit.
    pub fn new(pairs: &[(u8, u8)]) -> Option<Self> {
        if pairs.len() > Self::CAPACITY || pairs.iter().any(|&(a, b)| a > 127 || b > 127) {
            return None;
        }
        let mut map = PayloadTypeMap::default();
        map.entries[..pairs.len()].copy_from_slice(pairs);
        map.len = pairs.len() as u8;
        Some(map)
    }

    #[inline]
    pub fn map(&self, pt: u8) -> u8 {
        self.entries[..usize::from(self.len)].iter().find(|&&(from, _)| from == pt).map_or(pt, |&(_, to)| to)
    }

    pub fn pairs(&self) -> &[(u8, u8)] {
        &self.entries[..usize::from(self.len)]
    }
}

/// What the control plane sets on a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegSettings {
    /// Where this leg's peer is, as signalled (SDP); learned from traffic when `None`
    /// or, unless `strict`, replaced by the source of the first packet received.
    pub remote: Option<SocketAddr>,
    /// Drop packets from any source but the remote address.
    pub strict: bool,
    /// Rewrite SSRC, sequence and timestamp of the stream sent out of this leg.
    pub ssrc_rewrite: bool,
    /// Payload-type renumbering of the stream sent out of this leg.
    pub pt_map: PayloadTypeMap,
    /// RTP clock rate of the stream received on this leg, for jitter.
    pub clock_rate: u32,
}

impl Default for LegSettings {
    fn default() -> Self {
        LegSettings {
            remote: None,
            strict: false,
            ssrc_rewrite: false,
            pt_map: PayloadTypeMap::default(),
            clock_rate: 8000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addr_round_trips_both_families_and_none() {
        for text in ["192.0.2.7:4000", "[2001:db8::7]:30000", "0.0.0.0:0"] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(PeerAddr::new(addr).get(), Some(addr));
        }
        assert_eq!(PeerAddr::NONE.get(), None);
        assert_eq!(PeerAddr::from_option(None), PeerAddr::NONE);
        assert_ne!(
            PeerAddr::new("192.0.2.7:4000".parse().unwrap()),
            PeerAddr::new("[::c000:207]:4000".parse().unwrap())
        );
        assert_eq!(std::mem::size_of::<PeerAddr>(), 20);
    }
}
