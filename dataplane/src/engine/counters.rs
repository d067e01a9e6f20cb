//! Counters written by one worker and read by anyone. Each counter has a single
//! writer, so an increment is a relaxed load and store (a plain `mov` on
//! x86), never a locked read-modify-write; readers sum workers at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[inline]
pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}

/// Why a datagram was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Sent to a local port no session owns.
    NoSession,
    /// Shorter than the smallest RTP or RTCP packet.
    Truncated,
    /// Larger than an RTP packet may be on a 1500-byte path.
    Oversized,
    /// Neither RTP nor RTCP (first byte outside 128..=191).
    NotRtp,
    /// An RTP/RTCP version other than 2.
    BadVersion,
    /// RTP header fields that do not fit the packet (CSRCs, extension, padding).
    Malformed,
    /// STUN or DTLS: media-plane control the relay does not terminate.
    Control,
    /// From a source other than the leg's peer, on a strict leg.
    WrongSource,
    /// The other leg has no remote address yet.
    NoDestination,
    /// The backend could not send it (socket error, next hop unresolved, ring full).
    TxFailed,
}

impl DropReason {
    pub const ALL: [DropReason; 10] = [
        DropReason::NoSession,
        DropReason::Truncated,
        DropReason::Oversized,
        DropReason::NotRtp,
        DropReason::BadVersion,
        DropReason::Malformed,
        DropReason::Control,
        DropReason::WrongSource,
        DropReason::NoDestination,
        DropReason::TxFailed,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoSession => "no_session",
            DropReason::Truncated => "truncated",
            DropReason::Oversized => "oversized",
            DropReason::NotRtp => "not_rtp",
            DropReason::BadVersion => "bad_version",
            DropReason::Malformed => "malformed",
            DropReason::Control => "control",
            DropReason::WrongSource => "wrong_source",
            DropReason::NoDestination => "no_destination",
            DropReason::TxFailed => "tx_failed",
        }
    }
}

/// What a frame-building backend (DPDK, AF_XDP) did besides relaying:
/// the exception path, neighbour resolution, frames it could not send and
/// why. Each backend publishes its own totals at housekeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendEvent {
    /// Frames handed to the kernel through the TAP port (DPDK).
    ToKernel,
    /// Frames the kernel sent through the TAP port, out of the NIC (DPDK).
    FromKernel,
    /// Non-media frames dropped for want of a TAP port (DPDK).
    NoTapDropped,
    /// Frames the TAP port did not take (DPDK).
    TapTxFailed,
    /// Kernel frames and ARP/ND frames the NIC did not take (DPDK).
    PortTxFailed,
    /// ARP requests for a media address answered (DPDK).
    ArpReplies,
    /// Neighbor Solicitations for a media address answered (DPDK).
    NeighborAdverts,
    /// ARP requests and Neighbor Solicitations sent for next hops (DPDK).
    NeighbourRequests,
    /// Next hops the kernel was asked to resolve (AF_XDP).
    ResolutionsRequested,
    /// Frames steered to the backend that were not media after all (AF_XDP).
    NotMedia,
    /// Media not sent (`tx_failed`): the next hop's MAC is not known yet.
    Unresolved,
    /// Media not sent (`tx_failed`): no route to the destination.
    NoRoute,
    /// Media not sent (`tx_failed`): between an IPv4 and an IPv6 leg.
    FamilyMismatch,
}

impl BackendEvent {
    pub const ALL: [BackendEvent; 13] = [
        BackendEvent::ToKernel,
        BackendEvent::FromKernel,
        BackendEvent::NoTapDropped,
        BackendEvent::TapTxFailed,
        BackendEvent::PortTxFailed,
        BackendEvent::ArpReplies,
        BackendEvent::NeighborAdverts,
        BackendEvent::NeighbourRequests,
        BackendEvent::ResolutionsRequested,
        BackendEvent::NotMedia,
        BackendEvent::Unresolved,
        BackendEvent::NoRoute,
        BackendEvent::FamilyMismatch,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            BackendEvent::ToKernel => "to_kernel",
            BackendEvent::FromKernel => "from_kernel",
            BackendEvent::NoTapDropped => "no_tap_dropped",
            BackendEvent::TapTxFailed => "tap_tx_failed",
            BackendEvent::PortTxFailed => "port_tx_failed",
            BackendEvent::ArpReplies => "arp_replies",
            BackendEvent::NeighborAdverts => "neighbor_adverts",
            BackendEvent::NeighbourRequests => "neighbour_requests",
            BackendEvent::ResolutionsRequested => "resolutions_requested",
            BackendEvent::NotMedia => "not_media",
            BackendEvent::Unresolved => "unresolved",
            BackendEvent::NoRoute => "no_route",
            BackendEvent::FamilyMismatch => "family_mismatch",
        }
    }
}

/// One worker's totals.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct WorkerCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Events that did not fit the event queue (the control plane is not reading).
    pub events_lost: AtomicU64,
    pub sessions_active: AtomicU64,
    /// Loop iterations, and those that received nothing: load = 1 - idle/loops.
    pub loops: AtomicU64,
    pub idle_loops: AtomicU64,
    /// The backend's own totals, as it last published them.
    pub backend: [AtomicU64; BackendEvent::COUNT],
}

impl WorkerCounters {
    #[inline]
    pub fn drop(&self, reason: DropReason) {
        bump(&self.drops[reason as usize], 1);
    }

    /// Publishes a backend's total for `event` (the backend counts on its
    /// own and publishes now and then: a plain store, one writer).
    pub fn set_backend(&self, event: BackendEvent, total: u64) {
        self.backend[event as usize].store(total, Relaxed);
    }

    pub fn snapshot(&self) -> WorkerSnapshot {
        WorkerSnapshot {
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            drops: DropReason::ALL.map(|r| (r, self.drops[r as usize].load(Relaxed))).to_vec(),
            events_lost: self.events_lost.load(Relaxed),
            sessions_active: self.sessions_active.load(Relaxed),
            loops: self.loops.load(Relaxed),
            idle_loops: self.idle_loops.load(Relaxed),
            backend: BackendEvent::ALL.map(|e| (e, self.backend[e as usize].load(Relaxed))).to_vec(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerSnapshot {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: Vec<(DropReason, u64)>,
    pub events_lost: u64,
    pub sessions_active: u64,
    pub loops: u64,
    pub idle_loops: u64,
    pub backend: Vec<(BackendEvent, u64)>,
}

/// One leg's counters, all written when a packet arrives on this leg (one
/// cache line per packet). `rx` counts what its peer sent to the appliance on
/// this leg, `relayed` what of it went out of the other leg; the other leg's
/// `tx` in a [`LegSnapshot`] is this leg's `relayed`.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct LegCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub relayed_packets: AtomicU64,
    pub relayed_bytes: AtomicU64,
    pub dropped: AtomicU64,
    /// RFC 3550 cumulative loss of the RTP received on this leg (two's complement).
    pub lost: AtomicU64,
    /// RFC 3550 interarrival jitter of the RTP received, in timestamp units.
    pub jitter: AtomicU64,
}

impl LegCounters {
    pub(crate) fn reset(&self) {
        for c in [
            &self.rx_packets,
            &self.rx_bytes,
            &self.relayed_packets,
            &self.relayed_bytes,
            &self.dropped,
            &self.lost,
            &self.jitter,
        ] {
            c.store(0, Relaxed);
        }
    }

    /// This leg's figures; `other` is the session's other leg, whose relayed
    /// packets are what went out of this one.
    pub fn snapshot(&self, other: &LegCounters) -> LegSnapshot {
        LegSnapshot {
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_packets: other.relayed_packets.load(Relaxed),
            tx_bytes: other.relayed_bytes.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            lost: self.lost.load(Relaxed) as i64,
            jitter: self.jitter.load(Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LegSnapshot {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub dropped: u64,
    pub lost: i64,
    pub jitter: u64,
}
