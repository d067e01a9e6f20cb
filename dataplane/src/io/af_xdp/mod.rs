//! The AF_XDP backend: the kernel keeps the interface, its addresses, ARP
//! and every protocol the appliance speaks (SIP, HTTP, SSH); an XDP program
//! on the interface hands the appliance only IPv4 UDP to a media address
//! and port, before the kernel's IP and UDP stack sees it, and relayed
//! frames go back out through the same sockets' transmit rings.
//!
//! ```text
//!   interface ─▶ XDP steering program ─┬─ media ─▶ AF_XDP socket per rx queue ─▶ frame::media_into ─▶ engine
//!                                      └─ everything else ─▶ kernel stack (SIP, HTTP, ARP, ping, ...)
//!   engine ─▶ tx_burst: frame::rewrite_media, next hop's MAC ─▶ tx ring ─▶ interface
//! ```
//!
//! What it saves against the socket backend is the kernel's per-datagram
//! UDP work on both sides of the relay: socket lookup, socket buffer queue,
//! copy to user space, route lookup and IP output (docs/benchmarks.md
//! "Where the socket backend's time goes": 98 % of that backend's CPU).
//!
//! Next hops: the kernel owns ARP and ND. A destination's next hop comes
//! from the kernel's routes through the interface; its MAC from the source
//! MAC of an on-link peer's own frames (a peer that sends to us is
//! reachable at the MAC it sent from) or from the kernel's neighbour caches,
//! which the backend asks the kernel to fill (`kernel::request_resolution`)
//! when the next hop is not in them. On loopback, frames carry zero MACs.
//!
//! Limits of this release: one worker, which serves every rx queue of the
//! interface; the program passes VLAN-tagged frames, IPv4 options and IPv6
//! extension headers to the kernel.

pub mod kernel;

use super::frame::{self, Addressing, Class, Media, Out, Unsent, UnsentCounts};
use super::neighbour::{LearnMemo, Lookup, NeighbourTable};
use super::{PacketIo, BURST};
use crate::config::{DataplaneConfig, XdpMode};
use crate::engine::checksum_delta::ChecksumDelta;
use crate::engine::counters::{bump, BackendEvent, DropReason, WorkerCounters};
use crate::engine::Datagram;
use crate::session::LocalEndpoint;
use crate::wire::ethernet::EthernetAddress;
use af_xdp::bpf::{AttachMode, Link, Program, SocketMap, Steering, XDP_PASS};
use af_xdp::xsk::{self, Socket};
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::EventFd;
use nix::sys::time::TimeSpec;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest frame relayed: a 1500-byte IP packet with its Ethernet header.
/// Longer ones (jumbo frames) are not media and are dropped as oversized.
const FRAME_MAX: usize = 1518;
const WAKER_TOKEN: u64 = u64::MAX;
/// Next hops waiting for the kernel's ARP cache.
const MAX_PENDING: usize = 16;
/// How often the ARP cache is read while next hops wait for it: the kernel
/// usually resolves one in a round trip.
const ARP_READ_EVERY_MS: u64 = 5;
/// How long a next hop waits for the kernel before it is given up (the next
/// frame to it asks again).
const RESOLVE_WITHIN_MS: u64 = 1_000;
/// Frames written to a transmit ring before the kernel is asked to send
/// them (one `sendto`; the kernel takes 32 a call in copy mode). Fewer wait
/// until the worker is about to sleep, two loops later at most once frames
/// stop coming: when frames trickle in a few at a time, a kick per burst
/// cost a `sendto` per two or three frames.
const KICK_AT: u32 = 32;
/// How often the routes through the interface (and its MAC) are read again.
const ROUTES_EVERY: Duration = Duration::from_secs(5);
/// While media flows, an idle worker sleeps this long before it looks
/// again, with the sockets out of its epoll: a socket in an epoll set makes
/// the kernel run the epoll wake-up path (a lock taken with interrupts off)
/// for every frame it has sent, 5 % of the worker's time on this machine.
/// Adds at most this (plus timer slack) to a frame's time through the relay.
const COALESCE: Duration = Duration::from_micros(50);

/// What the backend did besides relaying; logged when the worker stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AfXdpStats {
    /// Frames the program steered that are not media after all (a bad IP
    /// header checksum, a UDP length beyond the frame): dropped.
    pub not_media: u64,
    /// Media dropped (as `tx_failed`) by reason (no route: none through
    /// the interface).
    pub unsent: UnsentCounts,
    /// Requests to the kernel to resolve a next hop.
    pub resolutions_requested: u64,
}

/// One worker's share: the interface, made by [`prepare`].
pub struct AfXdpSpec {
    interface: kernel::Interface,
    mode: XdpMode,
    addressing: Addressing,
    waker: Arc<EventFd>,
}

/// Checks the interface and the config; the sockets and the program are set
/// up on the worker thread by [`AfXdpSpec::open`].
pub fn prepare(config: &DataplaneConfig, waker: Arc<EventFd>) -> Result<AfXdpSpec, String> {
    if config.workers != 1 {
        return Err(format!(
            "the AF_XDP backend runs exactly one worker (serving every rx queue) in this release; workers = {}",
            config.workers
        ));
    }
    let name = &config.af_xdp.interface;
    if name.is_empty() {
        return Err("dataplane.af_xdp.interface is empty: name the interface media arrives on (e.g. eth0)".into());
    }
    let interface = kernel::interface(name)?;
    let addressing = Addressing::new(interface.mac, &config.media_ips, config.ports.clone(), 32, None);
    Ok(AfXdpSpec { interface, mode: config.af_xdp.mode, addressing, waker })
}

impl AfXdpSpec {
    pub fn waker(&self) -> Arc<EventFd> {
        self.waker.clone()
    }

    /// Loads and attaches the steering program and opens a socket per rx
    /// queue; runs on the worker thread.
    pub fn open(self) -> Result<AfXdpIo, String> {
        let AfXdpSpec { interface, mode, addressing, waker } = self;
        let ifindex = interface.index;
        let name = interface.name.clone();
        let map = SocketMap::new(interface.rx_queues).map_err(|e| format!("AF_XDP on {name}: {e}"))?;
        let addrs: Vec<Ipv4Addr> = addressing.v4.iter().map(|(_, a)| Ipv4Addr::from(*a)).collect();
        let addrs6: Vec<Ipv6Addr> = addressing.v6.iter().map(|(_, a)| Ipv6Addr::from(*a)).collect();
        let steering = Steering { addrs, addrs6, ports: addressing.ports.clone(), fallback: XDP_PASS };
        let program = Program::load(&steering, &map).map_err(|e| format!("AF_XDP on {name}: {e}"))?;
        let link = match mode {
            XdpMode::Driver => program.attach(ifindex, AttachMode::Driver),
            XdpMode::Generic => program.attach(ifindex, AttachMode::Generic),
            XdpMode::Auto => {
                program.attach(ifindex, AttachMode::Driver).or_else(|_| program.attach(ifindex, AttachMode::Generic))
            }
        }
        .map_err(|e| format!("AF_XDP on {name}: {e} (another XDP program on the interface? running as root?)"))?;
        let copy = link.mode == AttachMode::Generic;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
        epoll
            .add(waker.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKER_TOKEN))
            .map_err(|e| format!("epoll: {e}"))?;
        let mut sockets = Vec::with_capacity(interface.rx_queues as usize);
        for queue in 0..interface.rx_queues {
            let socket = match Socket::open(ifindex, queue, xsk::Config::default(), copy) {
                Ok(socket) => socket,
                // rtnetlink tells the queues allocated, not those in use
                // (a veth has one per CPU, one in use): binding past the
                // last in use is refused.
                Err(af_xdp::Error::Sys { source, .. }) if queue > 0 && source.raw_os_error() == Some(libc::EINVAL) => {
                    break
                }
                Err(e) => return Err(format!("AF_XDP on {name} queue {queue}: {e}")),
            };
            map.insert(queue, &socket).map_err(|e| format!("AF_XDP on {name} queue {queue}: {e}"))?;
            epoll
                .add(socket.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, u64::from(queue)))
                .map_err(|e| format!("epoll: {e}"))?;
            sockets.push(socket);
        }
        tracing::info!(
            interface = %name, xdp = link.mode.name(), queues = sockets.len(),
            zero_copy = sockets.iter().all(Socket::zero_copy), loopback = interface.loopback,
            "AF_XDP steering attached"
        );
        let routes = kernel::routes(&name);
        Ok(AfXdpIo {
            slots: (0..BURST)
                .map(|_| XdpDatagram { buf: Box::new([0; FRAME_MAX]), len: 0, media: Media::NONE, out: None })
                .collect(),
            filled: 0,
            events: vec![EpollEvent::empty(); 8],
            flowing: false,
            watching: true,
            ctx: Context {
                addressing,
                interface,
                routes,
                routes_read: Instant::now(),
                neighbours: NeighbourTable::new(),
                learned: LearnMemo::default(),
                pending: [None; MAX_PENDING],
                arp_read_ms: 0,
                epoch: Instant::now(),
                stats: AfXdpStats::default(),
            },
            sockets,
            epoll,
            waker,
            _link: link,
            _program: program,
            _map: map,
        })
    }
}

/// A received media frame, copied out of the UMEM.
pub struct XdpDatagram {
    buf: Box<[u8; FRAME_MAX]>,
    len: usize,
    media: Media,
    out: Option<Out>,
}

impl Datagram for XdpDatagram {
    #[inline]
    fn local(&self) -> LocalEndpoint {
        self.media.local
    }

    #[inline]
    fn source(&self) -> SocketAddr {
        self.media.source
    }

    #[inline]
    fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.media.layout.payload();
        self.buf[..self.len].get_mut(range).unwrap_or_default()
    }

    #[inline]
    fn readdress(&mut self, _from_leg: u32, from: LocalEndpoint, to: SocketAddr, payload_delta: ChecksumDelta) {
        self.out = Some(Out { from, to, delta: payload_delta });
    }
}

/// A next hop the kernel's ARP cache has not given us yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    hop: IpAddr,
    /// When it was wanted (ms of `epoch`).
    since_ms: u64,
    /// The kernel was asked to resolve it.
    requested: bool,
}

struct Context {
    addressing: Addressing,
    interface: kernel::Interface,
    routes: Vec<kernel::Route>,
    routes_read: Instant,
    neighbours: NeighbourTable,
    learned: LearnMemo,
    /// Next hops to look up in the kernel's ARP cache.
    pending: [Option<Pending>; MAX_PENDING],
    /// When the ARP cache was last read (ms of `epoch`).
    arp_read_ms: u64,
    epoch: Instant,
    stats: AfXdpStats,
}

impl Context {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn want(&mut self, hop: IpAddr, now_ms: u64) {
        if self.pending.iter().flatten().any(|p| p.hop == hop) || !self.neighbours.should_request(hop, now_ms) {
            return;
        }
        if let Some(free) = self.pending.iter_mut().find(|p| p.is_none()) {
            *free = Some(Pending { hop, since_ms: now_ms, requested: false });
        }
    }

    /// The MAC a frame to `to` goes to.
    #[inline]
    fn next_hop_mac(&mut self, to: IpAddr, now_ms: u64) -> Result<EthernetAddress, Unsent> {
        if self.interface.loopback {
            return Ok(EthernetAddress([0; 6]));
        }
        let hop = kernel::next_hop(&self.routes, to).ok_or(Unsent::NoRoute)?;
        match self.neighbours.lookup(hop, now_ms) {
            Lookup::Known { mac, refresh } => {
                if refresh {
                    self.want(hop, now_ms);
                }
                Ok(mac)
            }
            Lookup::Unknown => {
                self.want(hop, now_ms);
                Err(Unsent::Unresolved)
            }
        }
    }

    /// A peer's frame taught us its next hop's MAC, if it is on-link (an
    /// off-link peer's frames come from the router, whose entry the kernel's
    /// cache keeps).
    #[inline]
    fn learn(&mut self, media: &Media, now_ms: u64) {
        if self.interface.loopback {
            return;
        }
        let routes = &self.routes;
        self.learned.learn(&mut self.neighbours, media.source.ip(), media.src_mac, now_ms, |src| {
            kernel::next_hop(routes, src) == Some(src)
        });
    }

    /// Rewrites a readdressed media frame in place for its destination.
    #[inline]
    fn prepare(&mut self, frame: &mut [u8], media: &Media, out: &Out, now_ms: u64) -> Result<(), Unsent> {
        let src = *self.addressing.media_ips.get(usize::from(out.from.addr)).ok_or(Unsent::NoRoute)?;
        if src.is_ipv4() != out.to.is_ipv4() || media.layout.v6 == out.to.is_ipv4() {
            return Err(Unsent::FamilyMismatch);
        }
        let mac = self.next_hop_mac(out.to.ip(), now_ms)?;
        frame::rewrite_media(frame, &media.layout, src, out.from.port, out.to, out.delta)
            .map_err(|_| Unsent::FamilyMismatch)?;
        frame::set_ethernet(frame, self.addressing.mac, mac);
        Ok(())
    }

    /// Looks the pending next hops up in the kernel's neighbour caches
    /// (ARP, and IPv6's when an IPv6 hop waits), asking the kernel to
    /// resolve those they lack; rereads the routes now and then.
    fn resolve_pending(&mut self) {
        if self.routes_read.elapsed() >= ROUTES_EVERY {
            self.routes = kernel::routes(&self.interface.name);
            self.routes_read = Instant::now();
            // A bridge's MAC follows its ports unless set; an operator may
            // change any interface's.
            if let Ok(now) = kernel::interface(&self.interface.name) {
                if now.mac != self.addressing.mac {
                    tracing::info!(interface = %now.name, mac = %now.mac, "interface MAC changed");
                    self.addressing.mac = now.mac;
                }
            }
        }
        let now = self.now_ms();
        if self.pending.iter().all(Option::is_none) || now.saturating_sub(self.arp_read_ms) < ARP_READ_EVERY_MS {
            return;
        }
        self.arp_read_ms = now;
        let arp = kernel::arp_cache();
        let nd = if self.pending.iter().flatten().any(|p| p.hop.is_ipv6()) {
            kernel::neighbours6(self.interface.index).unwrap_or_default()
        } else {
            Vec::new()
        };
        for slot in &mut self.pending {
            let Some(p) = slot.as_mut() else { continue };
            let known = match p.hop {
                IpAddr::V4(hop) => kernel::parse_arp(&arp, &self.interface.name, hop),
                IpAddr::V6(hop) => nd.iter().find(|(ip, _)| *ip == hop).map(|(_, mac)| *mac),
            };
            if let Some(mac) = known {
                self.neighbours.learn(p.hop, mac, now);
                *slot = None;
            } else if !p.requested {
                p.requested = true;
                self.stats.resolutions_requested += 1;
                if let Err(e) = kernel::request_resolution(self.interface.index, p.hop) {
                    tracing::debug!(hop = %p.hop, error = %e, "asking the kernel to resolve a next hop failed");
                }
            } else if now.saturating_sub(p.since_ms) > RESOLVE_WITHIN_MS {
                *slot = None;
            }
        }
    }
}

/// The worker's AF_XDP backend.
pub struct AfXdpIo {
    slots: Vec<XdpDatagram>,
    filled: usize,
    events: Vec<EpollEvent>,
    /// The last wait ended with media to take: sleep [`COALESCE`] next time.
    flowing: bool,
    /// The sockets are in `epoll` (only while no media flows).
    watching: bool,
    ctx: Context,
    sockets: Vec<Socket>,
    /// The sockets (while no media flows) and the waker.
    epoll: Epoll,
    waker: Arc<EventFd>,
    // Detached first, then the program and map go.
    _link: Link,
    _program: Program,
    _map: SocketMap,
}

impl AfXdpIo {
    pub fn stats(&self) -> AfXdpStats {
        self.ctx.stats
    }

    /// Puts the sockets in the epoll set or takes them out. Adding one whose
    /// ring already holds frames makes the next wait return at once, so
    /// nothing that arrived in between is slept through.
    fn watch(&mut self, on: bool) {
        if self.watching == on {
            return;
        }
        for (queue, socket) in self.sockets.iter().enumerate() {
            let done = if on {
                self.epoll.add(socket.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, queue as u64))
            } else {
                self.epoll.delete(socket.as_fd())
            };
            if let Err(e) = done {
                tracing::warn!(queue, error = %e, "AF_XDP socket: epoll registration failed");
            }
        }
        self.watching = on;
    }

    /// Sends what the transmit rings hold.
    fn kick(&mut self) {
        for socket in &mut self.sockets {
            if socket.unkicked() > 0 || socket.unsent() > 0 {
                socket.kick();
            }
        }
    }

    /// Sends again what a busy device left on a transmit ring.
    fn kick_leftovers(&mut self) {
        for socket in &mut self.sockets {
            if socket.unsent() > 0 {
                socket.kick();
            }
        }
    }

    /// Takes what the rx rings hold, up to a burst.
    fn receive(&mut self) {
        let now = self.ctx.now_ms();
        let AfXdpIo { slots, filled, ctx, sockets, .. } = self;
        for socket in sockets.iter_mut() {
            if *filled == BURST {
                break;
            }
            socket.receive(BURST - *filled, |bytes| {
                let Some(slot) = slots.get_mut(*filled) else { return };
                let media = bytes.len() <= FRAME_MAX
                    && (frame::media_into(bytes, &ctx.addressing, &mut slot.media)
                        // IPv6 media (IPv4 took the fast path).
                        || match frame::classify(bytes, &ctx.addressing) {
                            Class::Media(m) => {
                                slot.media = m;
                                true
                            }
                            _ => false,
                        });
                if !media {
                    ctx.stats.not_media += 1;
                    return;
                }
                slot.buf[..bytes.len()].copy_from_slice(bytes);
                slot.len = bytes.len();
                slot.out = None;
                ctx.learn(&slot.media, now);
                *filled += 1;
            });
        }
    }
}

impl PacketIo for AfXdpIo {
    type Datagram = XdpDatagram;

    fn rx_burst(&mut self, wait: Option<Duration>) -> &mut [XdpDatagram] {
        self.filled = 0;
        self.receive();
        if self.filled == 0 {
            if let Some(wait) = wait {
                // About to sleep: what the last bursts relayed goes now.
                self.kick();
                let woken = if self.flowing {
                    // epoll_wait counts in milliseconds (50 us would be 0:
                    // a spin); ppoll sleeps the microseconds asked.
                    let mut fds = [PollFd::new(self.waker.as_fd(), PollFlags::POLLIN)];
                    let timeout = TimeSpec::from_duration(wait.min(COALESCE));
                    ppoll(&mut fds, Some(timeout), None).unwrap_or(0) > 0
                } else {
                    self.watch(true);
                    let timeout = EpollTimeout::try_from(wait).unwrap_or(EpollTimeout::NONE);
                    let n = self.epoll.wait(&mut self.events, timeout).unwrap_or(0);
                    self.events[..n].iter().any(|e| e.data() == WAKER_TOKEN)
                };
                if woken {
                    let _ = self.waker.read();
                    // What arrived is taken by the next call, after the command.
                    return &mut self.slots[..0];
                }
                self.receive();
                self.flowing = self.filled > 0;
                if self.flowing {
                    self.watch(false);
                }
            }
        }
        &mut self.slots[..self.filled]
    }

    fn tx_burst(&mut self, counters: &WorkerCounters) {
        let now = self.ctx.now_ms();
        let AfXdpIo { slots, filled, ctx, sockets, .. } = self;
        let Some(socket) = sockets.first_mut() else { return };
        let (mut sent, mut bytes) = (0u64, 0u64);
        for slot in &mut slots[..*filled] {
            let Some(out) = slot.out.as_ref() else { continue };
            let frame = &mut slot.buf[..slot.len];
            match ctx.prepare(frame, &slot.media, out, now) {
                Ok(()) => {
                    let queued = socket.send_with(|chunk| {
                        let chunk = chunk.get_mut(..frame.len())?;
                        chunk.copy_from_slice(frame);
                        Some(frame.len())
                    });
                    if queued {
                        sent += 1;
                        bytes += slot.media.layout.payload().len() as u64;
                    } else {
                        counters.drop(DropReason::TxFailed);
                    }
                }
                Err(why) => {
                    ctx.stats.unsent.count(why);
                    counters.drop(DropReason::TxFailed);
                }
            }
        }
        *filled = 0;
        if socket.unkicked() >= KICK_AT {
            socket.kick();
        }
        bump(&counters.tx_packets, sent);
        bump(&counters.tx_bytes, bytes);
    }

    fn attach(&mut self, _leg: u32, _ports: Vec<(LocalEndpoint, Option<UdpSocket>)>) {
        // The program owns the media ports: no sockets.
    }

    fn detach(&mut self, _leg: u32) {}

    fn send_local(&mut self, from: LocalEndpoint, to: SocketAddr, payload: &[u8]) -> bool {
        let now = self.ctx.now_ms();
        let Some(&src) = self.ctx.addressing.media_ips.get(usize::from(from.addr)) else { return false };
        if src.is_ipv4() != to.is_ipv4() {
            return false;
        }
        let Ok(mac) = self.ctx.next_hop_mac(to.ip(), now) else { return false };
        let our_mac = self.ctx.addressing.mac;
        let Some(socket) = self.sockets.first_mut() else { return false };
        let queued = socket
            .send_with(|chunk| frame::emit_udp(chunk, (our_mac, mac), SocketAddr::new(src, from.port), to, payload));
        socket.kick();
        queued
    }

    fn housekeeping(&mut self, counters: &WorkerCounters) {
        self.ctx.resolve_pending();
        self.kick_leftovers();
        let s = &self.ctx.stats;
        s.unsent.publish(counters);
        counters.set_backend(BackendEvent::NotMedia, s.not_media);
        counters.set_backend(BackendEvent::ResolutionsRequested, s.resolutions_requested);
    }
}

impl Drop for AfXdpIo {
    fn drop(&mut self) {
        self.kick();
        let s = self.ctx.stats;
        let kernel: Vec<_> = self.sockets.iter().filter_map(|x| x.statistics().ok()).collect();
        tracing::info!(
            interface = %self.ctx.interface.name,
            not_media = s.not_media,
            unresolved = s.unsent.unresolved,
            no_route = s.unsent.no_route,
            family_mismatch = s.unsent.family_mismatch,
            resolutions_requested = s.resolutions_requested,
            rx_dropped = kernel.iter().map(|k| k.rx_dropped).sum::<u64>(),
            rx_ring_full = kernel.iter().map(|k| k.rx_ring_full).sum::<u64>(),
            rx_fill_ring_empty = kernel.iter().map(|k| k.rx_fill_ring_empty).sum::<u64>(),
            "AF_XDP backend stopped"
        );
    }
}
