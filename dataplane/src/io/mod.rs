//! Packet I/O backends. The engine is written once against [`PacketIo`]; each
//! backend turns its own buffers into [`Datagram`](crate::engine::Datagram)s.
//!
//! - [`sockets`]: kernel UDP sockets, one per local port, `epoll` for
//!   readiness, `recvmmsg`/`sendmmsg` in batches. No system library needed.
//! - `dpdk` (feature `dpdk`): poll-mode drivers; owns the media IP on the
//!   port, answers ARP/ND, hands everything else to the kernel through TAP.
//! - [`af_xdp`]: AF_XDP sockets on a kernel interface, an XDP program
//!   steering media to them; the kernel keeps everything else. No system
//!   library needed either.

pub mod af_xdp;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod frame;
pub mod neighbour;
pub mod sockets;

use crate::config::{Backend, DataplaneConfig};
use crate::engine::counters::WorkerCounters;
use crate::engine::Datagram;
use crate::session::LocalEndpoint;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

/// Most datagrams handled per burst.
pub const BURST: usize = 64;

pub trait PacketIo {
    type Datagram: Datagram;

    /// Receives one burst. With `wait`, the previous loop found nothing and
    /// the backend may block up to that long (or until woken). Woken for a
    /// command, it returns without reading, so that the worker applies the
    /// command before it reads what came after it.
    fn rx_burst(&mut self, wait: Option<Duration>) -> &mut [Self::Datagram];

    /// Sends the datagrams of the last burst that the engine readdressed and
    /// releases the others, counting what could not be sent.
    fn tx_burst(&mut self, counters: &WorkerCounters);

    /// A session's leg `leg` (local index) was installed: it receives on
    /// these ports (RTP, then RTCP without rtcp-mux), each with the socket
    /// the control plane bound for it when the backend has none there yet.
    fn attach(&mut self, leg: u32, ports: Vec<(LocalEndpoint, Option<UdpSocket>)>);

    /// A session's leg was removed: its ports stop delivering (their
    /// sockets, if any, stay open for the next session).
    fn detach(&mut self, leg: u32);

    /// Sends a packet the dataplane originates (DTMF) out of `from` to
    /// `to`; false when it could not (no socket, next hop unresolved, ...).
    fn send_local(&mut self, from: LocalEndpoint, to: SocketAddr, payload: &[u8]) -> bool;

    /// Keeps sockets the control plane bound for a session that could not
    /// be installed, idle, for the next session on their ports.
    fn adopt(&mut self, _ports: Vec<(LocalEndpoint, Option<UdpSocket>)>) {}

    /// Closes the sockets of these ports if no session uses them (the
    /// process ran out of files).
    fn close_idle(&mut self, _locals: &[LocalEndpoint]) {}

    /// Background work between bursts (ARP, the exception path), and the
    /// backend's own totals published to `counters`; cheap.
    fn housekeeping(&mut self, _counters: &WorkerCounters) {}

    /// Hints that the engine is about to touch the cache line at `line`.
    /// Only backends that run at memory speed (DPDK) bother.
    #[inline]
    fn prefetch(_line: *const u8) {}
}

/// Wakes a worker blocked in `rx_burst` when a command is queued for it.
#[derive(Clone)]
pub struct Waker(Option<Arc<nix::sys::eventfd::EventFd>>);

impl Waker {
    pub fn none() -> Self {
        Waker(None)
    }

    pub fn wake(&self) {
        if let Some(fd) = &self.0 {
            // A full counter (EAGAIN) already means "wake up".
            let _ = fd.write(1);
        }
    }
}

/// One backend instance per worker, as built inside its worker thread (its
/// buffers and driver handles stay on that thread).
pub enum AnyIo {
    Sockets(Box<sockets::SocketIo>),
    #[cfg(feature = "dpdk")]
    Dpdk(dpdk::DpdkIo),
    AfXdp(Box<af_xdp::AfXdpIo>),
}

/// What a worker thread needs to open its backend instance; made on the
/// starting thread, where process-wide set-up (DPDK's EAL) happens once.
pub enum IoSpec {
    Sockets {
        waker: Arc<nix::sys::eventfd::EventFd>,
        legs: usize,
        addrs: usize,
        ports: std::ops::RangeInclusive<u16>,
    },
    #[cfg(feature = "dpdk")]
    Dpdk(dpdk::DpdkSpec),
    AfXdp(af_xdp::AfXdpSpec),
}

impl IoSpec {
    pub fn waker(&self) -> Waker {
        match self {
            IoSpec::Sockets { waker, .. } => Waker(Some(waker.clone())),
            #[cfg(feature = "dpdk")]
            IoSpec::Dpdk(_) => Waker::none(),
            IoSpec::AfXdp(spec) => Waker(Some(spec.waker())),
        }
    }

    /// Opens the instance; called on the worker's own thread.
    pub fn open(self) -> Result<AnyIo, String> {
        match self {
            IoSpec::Sockets { waker, legs, addrs, ports } => sockets::SocketIo::new(waker, legs, addrs, ports)
                .map(|io| AnyIo::Sockets(Box::new(io)))
                .map_err(|e| format!("socket backend: {e}")),
            #[cfg(feature = "dpdk")]
            IoSpec::Dpdk(spec) => spec.open().map(AnyIo::Dpdk),
            IoSpec::AfXdp(spec) => spec.open().map(|io| AnyIo::AfXdp(Box::new(io))),
        }
    }
}

/// Prepares the configured backend, one spec per worker.
pub fn prepare(config: &DataplaneConfig) -> Result<Vec<IoSpec>, String> {
    let waker = || {
        let flags = nix::sys::eventfd::EfdFlags::EFD_NONBLOCK | nix::sys::eventfd::EfdFlags::EFD_CLOEXEC;
        nix::sys::eventfd::EventFd::from_flags(flags).map_err(|e| format!("eventfd: {e}"))
    };
    match config.backend {
        Backend::Sockets => {
            let legs = config.sessions.div_ceil(config.workers) * 2;
            (0..config.workers)
                .map(|_| {
                    let waker = waker()?;
                    Ok(IoSpec::Sockets {
                        waker: Arc::new(waker),
                        legs,
                        addrs: config.media_ips.len(),
                        ports: config.ports.clone(),
                    })
                })
                .collect()
        }
        #[cfg(feature = "dpdk")]
        Backend::Dpdk => dpdk::prepare(config).map(|specs| specs.into_iter().map(IoSpec::Dpdk).collect()),
        #[cfg(not(feature = "dpdk"))]
        Backend::Dpdk => Err("this build has no DPDK support (cargo feature `dpdk`)".into()),
        Backend::AfXdp => Ok(vec![IoSpec::AfXdp(af_xdp::prepare(config, Arc::new(waker()?))?)]),
    }
}
