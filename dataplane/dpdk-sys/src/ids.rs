//! Newtypes for the small integers DPDK uses as handles.

use std::fmt;

use crate::ffi;

/// An ethdev port number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

/// An rx or tx queue number within a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub u16);

/// An EAL logical core number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LcoreId(pub u32);

impl LcoreId {
    /// The lcore the calling thread runs as, or `None` for a thread EAL did
    /// not start (nor register).
    #[inline]
    pub fn current() -> Option<LcoreId> {
        // SAFETY: reads the per-thread lcore id; valid on any thread.
        let id = unsafe { ffi::rte_lcore_id() };
        (id != ffi::LCORE_ID_ANY).then_some(LcoreId(id))
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for LcoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
