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
