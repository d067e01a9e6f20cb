//! The DPDK backend: the appliance owns its media addresses on a DPDK port,
//! relays media in place in the received mbufs, answers ARP and Neighbor
//! Discovery for those addresses, and hands every other frame to the kernel
//! through a TAP exception port (and the kernel's frames back out).
//!
//! ```text
//!             NIC port (config.dpdk.port)
//!   rx_burst ──▶ frame::classify ─┬─ media ──────────▶ engine ─▶ tx_burst: rewrite_media,
//!                                 │                              next hop MAC, one tx burst
//!                                 ├─ ARP req / NS for us ─▶ answered in place, out of the port
//!                                 ├─ ARP / NA ─▶ neighbour table, then ─┐
//!                                 └─ everything else ───────────────────┴▶ TAP ─▶ kernel
//!   housekeeping: TAP rx ─▶ NIC tx unchanged (kernel replies, its ARP), pending ARP/NS requests
//! ```
//!
//! - [`frame`]: classification and the header rewrite, pure over `&[u8]`
//!   (shared with the AF_XDP backend).
//! - [`neighbour`]: the fixed-capacity neighbour table (shared too).
//! - [`neighbour_frames`]: the ARP/ND frames we answer and send.
//!
//! [`prepare`] runs on the starting thread: EAL initialisation (once per
//! process), the ports and the mbuf pool. [`DpdkSpec::open`] runs on the
//! worker thread. The packet path allocates nothing and takes no lock; an
//! idle worker sleeps [`IDLE_BACKOFF`] between empty polls (the "idle
//! back-off"), so it does not spin a core at 100 % on a shared machine.

pub mod neighbour_frames;

pub use super::{frame, neighbour};

use super::{PacketIo, BURST};
use crate::config::DataplaneConfig;
use crate::engine::checksum_delta::ChecksumDelta;
use crate::engine::counters::{bump, BackendEvent, DropReason, WorkerCounters};
use crate::engine::Datagram;
use crate::session::LocalEndpoint;
use crate::wire::ethernet::EthernetAddress;
use dpdk_sys::{Burst, Eal, Mbuf, Mempool, Port, PortConfig, QueueId, BURST_SIZE};
use frame::{Addressing, Class, Media, Out, Unsent, UnsentCounts};
use neighbour::{LearnMemo, Lookup, NeighbourTable};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Mbufs in the pool: NIC and TAP rx rings (1024 descriptors each), a burst
/// in flight, and the TX rings' share until the driver frees them.
const POOL_MBUFS: u32 = 8191;
/// Per-lcore cache of the pool (used by EAL threads; the worker, a non-EAL
/// thread, goes to the pool's lock-free ring directly).
const POOL_CACHE: u32 = 256;
/// Descriptors per rx/tx queue.
const RING_DESC: u16 = 1024;
/// How long an idle worker sleeps between two empty polls. `thread::sleep`
/// adds the kernel's timer slack (50 us by default), so a packet arriving at
/// an idle worker waits about 100 us at most; a busy worker never sleeps.
pub const IDLE_BACKOFF: Duration = Duration::from_micros(50);
/// TAP bursts moved to the NIC per housekeeping call.
const TAP_BURSTS_PER_TICK: usize = 4;
/// Next hops waiting for an ARP/NS request to be sent.
const MAX_PENDING: usize = 16;
const QUEUE: QueueId = QueueId(0);
const PROGRAM_NAME: &str = "bridgehead";

const _: () = assert!(BURST == BURST_SIZE, "a DPDK burst fills the engine's batch exactly");

/// What the backend did besides relaying media; read with [`DpdkIo::stats`],
/// logged when the worker stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DpdkStats {
    /// Frames handed to the kernel through the TAP port.
    pub to_kernel: u64,
    /// Frames the kernel sent through the TAP port, out of the NIC.
    pub from_kernel: u64,
    /// Non-media frames dropped because no TAP port is configured.
    pub no_tap_dropped: u64,
    /// Frames the TAP port did not take.
    pub tap_tx_failed: u64,
    /// Kernel frames, ARP/ND answers and requests the NIC did not take.
    pub port_tx_failed: u64,
    pub arp_replies: u64,
    pub neighbor_adverts: u64,
    /// ARP requests and Neighbor Solicitations sent for next hops.
    pub neighbour_requests: u64,
    /// Media dropped (as `tx_failed`) by reason.
    pub unsent: UnsentCounts,
}

/// The EAL, ports and pool, torn down in the right order: ports closed
/// (their rx rings give back their mbufs), pool freed, EAL cleaned up, then
/// the EAL runtime directory we named removed.
struct Devices {
    port: Option<Port>,
    tap: Option<Port>,
    pool: Option<Mempool>,
    eal: Option<Eal>,
    runtime_dirs: Vec<PathBuf>,
}

impl Drop for Devices {
    fn drop(&mut self) {
        for port in [self.tap.take(), self.port.take()].into_iter().flatten() {
            let name = port.name().to_owned();
            if let Err(e) = port.close() {
                tracing::warn!(device = %name, error = %e, "closing DPDK port failed");
            }
        }
        drop(self.pool.take());
        drop(self.eal.take());
        for dir in &self.runtime_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One worker's share of the DPDK devices, made by [`prepare`].
pub struct DpdkSpec(Box<SpecParts>);

struct SpecParts {
    devices: Devices,
    addressing: Addressing,
}

/// The EAL arguments: a program name, the configured ones, and
/// `--file-prefix=bridgehead-<pid>` unless a prefix is given (so two
/// appliances on one host do not share runtime files). Returns the prefix
/// when it is ours.
pub fn eal_args(configured: &[String], pid: u32) -> (Vec<String>, Option<String>) {
    let mut args = Vec::with_capacity(configured.len() + 2);
    args.push(PROGRAM_NAME.to_owned());
    args.extend(configured.iter().cloned());
    if configured.iter().any(|a| a == "--file-prefix" || a.starts_with("--file-prefix=")) {
        return (args, None);
    }
    let prefix = format!("{PROGRAM_NAME}-{pid}");
    args.push(format!("--file-prefix={prefix}"));
    (args, Some(prefix))
}

/// Where EAL puts its runtime directory for `prefix`: `/var/run/dpdk` for
/// root, else `$XDG_RUNTIME_DIR/dpdk` or `/tmp/dpdk`.
fn runtime_dirs(prefix: &str) -> Vec<PathBuf> {
    let mut bases = vec!["/var/run".to_owned(), "/tmp".to_owned()];
    if let Ok(xdg) = std::env::var("XDG_RUNTIME_DIR") {
        bases.push(xdg);
    }
    bases.into_iter().map(|b| PathBuf::from(b).join("dpdk").join(prefix)).collect()
}

/// Initialises EAL, finds, configures and starts the media port and the TAP
/// port, and creates the mbuf pool: one spec, for the one worker.
/// A locally administered unicast MAC (02:...) derived from the device name.
fn local_mac(device: &str) -> [u8; 6] {
    let h = device.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let b = h.to_be_bytes();
    [0x02, b[3], b[4], b[5], b[6], b[7]]
}

pub fn prepare(config: &DataplaneConfig) -> Result<Vec<DpdkSpec>, String> {
    if config.workers != 1 {
        return Err(format!(
            "the DPDK backend runs exactly one worker (one rx/tx queue) in this release; workers = {}",
            config.workers
        ));
    }
    let d = &config.dpdk;
    if d.port.is_empty() {
        return Err("dataplane.dpdk.port is empty: name the DPDK device that carries media (e.g. net_af_packet0 or a PCI address)".into());
    }
    let (args, own_prefix) = eal_args(&d.eal_args, std::process::id());
    let line = args.join(" ");
    let eal = Eal::init_unpinned(&args).map_err(|e| match e {
        dpdk_sys::Error::EalAlreadyInitialised => {
            "the DPDK EAL is already initialised in this process: the DPDK dataplane starts once per process".to_owned()
        }
        e => format!(
            "DPDK EAL initialisation failed: {e} (are hugepages set up, or is --no-huge given? running as root?)"
        ),
    })?;
    // From here on, `devices` tears down whatever was set up if a step fails.
    let mut devices = Devices {
        port: None,
        tap: None,
        pool: None,
        eal: Some(eal.clone()),
        runtime_dirs: own_prefix.as_deref().map(runtime_dirs).unwrap_or_default(),
    };
    let pool =
        Mempool::new_pktmbuf(&eal, "bh_mbufs", POOL_MBUFS, POOL_CACHE, dpdk_sys::ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16)
            .map_err(|e| format!("DPDK mbuf pool: {e} (too little memory for EAL? raise -m or hugepages)"))?;
    devices.pool = Some(pool.clone());

    let find = |name: &str| {
        Port::by_name(&eal, name).map_err(|e| match e {
            dpdk_sys::Error::PortNotFound(_) => {
                format!(
                    "DPDK device '{name}' not found (EAL args: {line}; devices present: [{}])",
                    Port::names(&eal).join(", ")
                )
            }
            dpdk_sys::Error::PortInUse(_) => {
                format!("DPDK device '{name}' is named twice (dataplane.dpdk.port and dataplane.dpdk.tap must differ)")
            }
            e => format!("DPDK device '{name}': {e}"),
        })
    };
    // Checksums: no offload is asked for. The rewrite updates both checksums
    // incrementally (RFC 1624), which costs less than preparing the
    // pseudo-header sum an offload needs and, unlike a NIC recomputing the
    // UDP checksum, keeps the sender's end-to-end protection of the payload.
    let port_config = PortConfig { rx_desc: RING_DESC, tx_desc: RING_DESC, ..PortConfig::default() };
    let mut port = find(&d.port)?;
    let setup = |port: &mut Port| -> Result<(), dpdk_sys::Error> {
        port.configure(&port_config, &pool)?;
        port.start()
    };
    setup(&mut port).map_err(|e| format!("DPDK device '{}': {e}", d.port))?;
    let mut mac = port.mac_addr().map_err(|e| format!("DPDK device '{}': {e}", d.port))?;
    if mac == [0; 6] {
        // A device without an address of its own (net_ring, some virtual
        // functions): a locally administered unicast MAC, stable for the port.
        mac = local_mac(&d.port);
        if let Err(e) = port.set_mac_addr(mac) {
            tracing::debug!(device = %d.port, error = %e, "device keeps no MAC; using one in software");
        }
        tracing::info!(device = %d.port, mac = %EthernetAddress(mac), "device has no MAC: using a locally administered one");
    }
    if config.media_ips.iter().any(IpAddr::is_ipv6) {
        // Neighbor Solicitations go to solicited-node multicast groups.
        if let Err(e) = port.allmulticast(true) {
            tracing::warn!(device = %d.port, error = %e, "cannot receive all multicast; IPv6 neighbours may not resolve us");
        }
    }
    let driver = port.driver().to_owned();
    let link_up = port.link_up().unwrap_or(false);
    devices.port = Some(port);

    if let Some(tap_name) = d.tap.as_deref() {
        let mut tap = find(tap_name)?;
        // The kernel's side of the TAP must answer with the port's MAC: the
        // peers resolve our addresses to it, whoever (we or the kernel) replies.
        tap.set_mac_addr(mac)
            .map_err(|e| format!("DPDK TAP device '{tap_name}': cannot give it the port's MAC: {e}"))?;
        setup(&mut tap).map_err(|e| format!("DPDK TAP device '{tap_name}': {e}"))?;
        let tap_mac = tap.mac_addr().map_err(|e| format!("DPDK TAP device '{tap_name}': {e}"))?;
        if tap_mac != mac {
            return Err(format!(
                "DPDK TAP device '{tap_name}' has MAC {} after setting {}",
                EthernetAddress(tap_mac),
                EthernetAddress(mac)
            ));
        }
        devices.tap = Some(tap);
    } else {
        tracing::warn!("no dataplane.dpdk.tap: traffic other than media (SIP, HTTP, SSH, ping) is dropped");
    }
    tracing::info!(
        device = %d.port, %driver, mac = %EthernetAddress(mac), link_up, tap = ?d.tap, eal = %line,
        "DPDK port started"
    );
    let addressing =
        Addressing::new(EthernetAddress(mac), &config.media_ips, config.ports.clone(), d.prefix_len, d.gateway);
    Ok(vec![DpdkSpec(Box::new(SpecParts { devices, addressing }))])
}

impl DpdkSpec {
    /// Builds the worker's backend; runs on the worker thread.
    pub fn open(self) -> Result<DpdkIo, String> {
        let SpecParts { devices, addressing } = *self.0;
        Ok(DpdkIo {
            slots: (0..BURST).map(|_| DpdkDatagram { mbuf: None, media: Media::NONE, out: None }).collect(),
            filled: 0,
            bufs: Box::new(Buffers {
                rx: Burst::new(),
                tx: Burst::new(),
                tx_lens: [0; BURST_SIZE],
                to_port: Burst::new(),
                to_tap: Burst::new(),
                from_tap: Burst::new(),
            }),
            ctx: Box::new(Context {
                addressing,
                neighbours: NeighbourTable::new(),
                pending: [None; MAX_PENDING],
                learned: LearnMemo::default(),
                epoch: Instant::now(),
                stats: DpdkStats::default(),
            }),
            devices: Box::new(devices),
        })
    }
}

/// A received media datagram, in its mbuf.
pub struct DpdkDatagram {
    mbuf: Option<Mbuf>,
    media: Media,
    out: Option<Out>,
}

impl Datagram for DpdkDatagram {
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
        match self.mbuf.as_mut() {
            Some(m) => m.data_mut().get_mut(range).unwrap_or_default(),
            None => &mut [],
        }
    }

    #[inline]
    fn readdress(&mut self, _from_leg: u32, from: LocalEndpoint, to: SocketAddr, payload_delta: ChecksumDelta) {
        // The rewrite happens in tx_burst, where the next hop is resolved.
        self.out = Some(Out { from, to, delta: payload_delta });
    }
}

/// The backend's state apart from its buffers.
struct Context {
    addressing: Addressing,
    neighbours: NeighbourTable,
    /// Next hops to send a request for.
    pending: [Option<IpAddr>; MAX_PENDING],
    learned: LearnMemo,
    epoch: Instant,
    stats: DpdkStats,
}

impl Context {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    #[inline]
    fn learn(&mut self, ip: IpAddr, mac: EthernetAddress, now_ms: u64) {
        let addressing = &self.addressing;
        self.learned.learn(&mut self.neighbours, ip, mac, now_ms, |ip| addressing.is_neighbour(ip));
    }

    /// Queues a request for `hop`, at most one per address per 200 ms.
    fn want(&mut self, hop: IpAddr, now_ms: u64) {
        if self.pending.contains(&Some(hop)) || !self.neighbours.should_request(hop, now_ms) {
            return;
        }
        if let Some(free) = self.pending.iter_mut().find(|p| p.is_none()) {
            *free = Some(hop);
        }
    }

    /// Rewrites a readdressed media frame for its destination.
    #[inline]
    fn prepare(&mut self, m: &mut Mbuf, media: &Media, out: &Out, now_ms: u64) -> Result<(), Unsent> {
        let src = *self.addressing.media_ips.get(usize::from(out.from.addr)).ok_or(Unsent::NoRoute)?;
        if src.is_ipv4() != out.to.is_ipv4() || media.layout.v6 == out.to.is_ipv4() {
            return Err(Unsent::FamilyMismatch);
        }
        let hop = self.addressing.next_hop(out.to.ip()).ok_or(Unsent::NoRoute)?;
        let mac = match self.neighbours.lookup(hop, now_ms) {
            Lookup::Known { mac, refresh } => {
                if refresh {
                    self.want(hop, now_ms);
                }
                mac
            }
            Lookup::Unknown => {
                self.want(hop, now_ms);
                return Err(Unsent::Unresolved);
            }
        };
        let data = m.data_mut();
        frame::rewrite_media(data, &media.layout, src, out.from.port, out.to, out.delta)
            .map_err(|_| Unsent::FamilyMismatch)?;
        frame::set_ethernet(data, self.addressing.mac, mac);
        Ok(())
    }
}

/// The worker's DPDK backend.
pub struct DpdkIo {
    slots: Vec<DpdkDatagram>,
    filled: usize,
    bufs: Box<Buffers>,
    ctx: Box<Context>,
    // Last: dropped after every mbuf above went back to the pool.
    devices: Box<Devices>,
}

/// The bursts the backend moves frames in, reused, never reallocated.
struct Buffers {
    rx: Burst,
    tx: Burst,
    /// Payload length of each datagram in `tx`, for the byte counters.
    tx_lens: [u16; BURST_SIZE],
    /// ARP/ND answers and requests, out of the port.
    to_port: Burst,
    to_tap: Burst,
    from_tap: Burst,
}

impl DpdkIo {
    pub fn stats(&self) -> DpdkStats {
        self.ctx.stats
    }

    /// Resolved neighbours (for logs and tests).
    pub fn neighbours(&self) -> usize {
        self.ctx.neighbours.len()
    }

    fn release_slots(&mut self) {
        for slot in &mut self.slots[..self.filled] {
            slot.mbuf = None;
            slot.out = None;
        }
        self.filled = 0;
    }

    /// Receives one burst from the port and sorts it; returns the number of
    /// frames received.
    fn poll_port(&mut self) -> usize {
        let Some(port) = self.devices.port.as_mut() else { return 0 };
        let n = port.rx_burst(QUEUE, &mut self.bufs.rx);
        if n == 0 {
            return 0;
        }
        let now = self.ctx.now_ms();
        let mut rx = std::mem::take(&mut self.bufs.rx);
        for m in rx.drain() {
            self.handle(m, now);
        }
        self.bufs.rx = rx;
        self.flush_control();
        n
    }

    #[inline]
    fn handle(&mut self, mut m: Mbuf, now: u64) {
        if m.segments() > 1 {
            // Larger than one mbuf: not media we relay (jumbo frames).
            return self.send_to_kernel(m);
        }
        if let Some(slot) = self.slots.get_mut(self.filled) {
            if frame::media_into(m.data(), &self.ctx.addressing, &mut slot.media) {
                return self.queue_media(m, now);
            }
        }
        let ctx = &mut self.ctx;
        match frame::classify(m.data(), &ctx.addressing) {
            // IPv6 media (IPv4 took the fast path above).
            Class::Media(media) => {
                if let Some(slot) = self.slots.get_mut(self.filled) {
                    slot.media = media;
                }
                self.queue_media(m, now);
            }
            Class::ArpRequestForUs { l3, sender } => {
                ctx.learn(IpAddr::V4(sender.0), sender.1, now);
                if neighbour_frames::answer_arp_request(m.data_mut(), usize::from(l3), ctx.addressing.mac) {
                    ctx.stats.arp_replies += 1;
                    push_or_count(&mut self.bufs.to_port, m, &mut ctx.stats.port_tx_failed);
                }
            }
            Class::Arp { sender } => {
                ctx.learn(IpAddr::V4(sender.0), sender.1, now);
                self.send_to_kernel(m);
            }
            Class::SolicitForUs { l3, target, source, source_mac } => {
                if source != [0; 16] {
                    ctx.learn(IpAddr::from(source), source_mac, now);
                }
                let l3 = usize::from(l3);
                let need = neighbour_frames::nd_frame_len(l3);
                let sized = match m.len() {
                    len if len < need => m.append((need - len) as u16).is_ok(),
                    len => m.trim((len - need) as u16).is_ok(),
                };
                if sized
                    && neighbour_frames::answer_neighbor_solicit(
                        m.data_mut(),
                        l3,
                        ctx.addressing.mac,
                        &target,
                        &source,
                        source_mac,
                    )
                {
                    ctx.stats.neighbor_adverts += 1;
                    push_or_count(&mut self.bufs.to_port, m, &mut ctx.stats.port_tx_failed);
                }
            }
            Class::Advert { target, mac } => {
                ctx.learn(IpAddr::V6(target), mac, now);
                self.send_to_kernel(m);
            }
            Class::Kernel => self.send_to_kernel(m),
        }
    }

    /// Puts a media frame, whose `Media` is already in the next free slot,
    /// into the burst for the engine.
    #[inline]
    fn queue_media(&mut self, m: Mbuf, now: u64) {
        // Cannot be full: a burst is at most BURST frames (`m` is freed).
        let Some(slot) = self.slots.get_mut(self.filled) else { return };
        // Symmetric learning: the peer is at the MAC it sent from.
        self.ctx.learn(slot.media.source.ip(), slot.media.src_mac, now);
        slot.mbuf = Some(m);
        slot.out = None;
        self.filled += 1;
    }

    #[inline]
    fn send_to_kernel(&mut self, m: Mbuf) {
        if self.devices.tap.is_none() {
            self.ctx.stats.no_tap_dropped += 1;
            return;
        }
        self.ctx.stats.to_kernel += 1;
        push_or_count(&mut self.bufs.to_tap, m, &mut self.ctx.stats.tap_tx_failed);
    }

    /// Sends the ARP/ND answers out of the port and the kernel's frames into
    /// the TAP; what a driver does not take is freed and counted.
    fn flush_control(&mut self) {
        if !self.bufs.to_port.is_empty() {
            if let Some(port) = self.devices.port.as_mut() {
                port.tx_burst(QUEUE, &mut self.bufs.to_port);
            }
            self.ctx.stats.port_tx_failed += self.bufs.to_port.len() as u64;
            self.bufs.to_port.clear();
        }
        if !self.bufs.to_tap.is_empty() {
            if let Some(tap) = self.devices.tap.as_mut() {
                tap.tx_burst(QUEUE, &mut self.bufs.to_tap);
            }
            self.ctx.stats.tap_tx_failed += self.bufs.to_tap.len() as u64;
            self.bufs.to_tap.clear();
        }
    }

    /// Sends an ARP request or Neighbor Solicitation for each pending next hop.
    fn send_requests(&mut self) {
        if self.ctx.pending.iter().all(Option::is_none) {
            return;
        }
        let Some(pool) = self.devices.pool.as_ref() else { return };
        let mac = self.ctx.addressing.mac;
        for hop in self.ctx.pending.iter_mut().filter_map(Option::take) {
            let Some(source) = self.ctx.addressing.source_for(hop) else { continue };
            let Some(mut m) = pool.alloc() else { break };
            let written = match (source, hop) {
                (IpAddr::V4(ip), IpAddr::V4(target)) => m
                    .append(neighbour_frames::MIN_FRAME as u16)
                    .ok()
                    .and_then(|buf| neighbour_frames::emit_arp_request(buf, mac, ip.octets(), target.octets())),
                (IpAddr::V6(ip), IpAddr::V6(target)) => m
                    .append(neighbour_frames::nd_frame_len(14) as u16)
                    .ok()
                    .and_then(|buf| neighbour_frames::emit_neighbor_solicit(buf, mac, &ip.octets(), &target.octets())),
                _ => None,
            };
            if written.is_some() {
                self.ctx.stats.neighbour_requests += 1;
                push_or_count(&mut self.bufs.to_port, m, &mut self.ctx.stats.port_tx_failed);
            }
        }
        self.flush_control();
    }
}

/// Adds `m` to `burst`, or frees and counts it when the burst is full.
#[inline]
fn push_or_count(burst: &mut Burst, m: Mbuf, failed: &mut u64) {
    if burst.push(m).is_err() {
        *failed += 1;
    }
}

impl PacketIo for DpdkIo {
    type Datagram = DpdkDatagram;

    fn rx_burst(&mut self, wait: Option<Duration>) -> &mut [DpdkDatagram] {
        self.release_slots();
        if self.poll_port() == 0 && wait.is_some() {
            // Idle back-off: the last loop found nothing either.
            std::thread::sleep(IDLE_BACKOFF);
            self.poll_port();
        }
        &mut self.slots[..self.filled]
    }

    fn tx_burst(&mut self, counters: &WorkerCounters) {
        let now = self.ctx.now_ms();
        let mut queued = 0;
        for slot in &mut self.slots[..self.filled] {
            let Some(mut m) = slot.mbuf.take() else { continue };
            // Not readdressed: the engine dropped it (and counted why).
            // Borrowed, not taken: moving the record out copied it through
            // the stack in pieces that the next load could not forward from
            // (a store-forwarding stall, 29 % of this function's samples).
            // `handle` clears `out` when it fills the slot again.
            let Some(out) = slot.out.as_ref() else { continue };
            match self.ctx.prepare(&mut m, &slot.media, out, now) {
                Ok(()) => {
                    self.bufs.tx_lens[queued] = slot.media.layout.payload().len() as u16;
                    queued += 1;
                    if self.bufs.tx.push(m).is_err() {
                        queued -= 1; // cannot happen: at most BURST datagrams
                        counters.drop(DropReason::TxFailed);
                    }
                }
                Err(why) => {
                    self.ctx.stats.unsent.count(why);
                    counters.drop(DropReason::TxFailed);
                }
            }
        }
        self.filled = 0;
        if queued > 0 {
            let sent = match self.devices.port.as_mut() {
                Some(port) => port.tx_burst(QUEUE, &mut self.bufs.tx),
                None => 0,
            };
            bump(&counters.tx_packets, sent as u64);
            bump(&counters.tx_bytes, self.bufs.tx_lens[..sent].iter().map(|&l| u64::from(l)).sum());
            for _ in sent..queued {
                counters.drop(DropReason::TxFailed);
            }
            self.bufs.tx.clear();
        }
        self.send_requests();
    }

    fn attach(&mut self, _leg: u32, _ports: Vec<(LocalEndpoint, Option<UdpSocket>)>) {
        // The port owns every media address: no sockets.
    }

    fn send_local(&mut self, from: LocalEndpoint, to: SocketAddr, payload: &[u8]) -> bool {
        let now = self.ctx.now_ms();
        let ctx = &mut self.ctx;
        let Some(&src) = ctx.addressing.media_ips.get(usize::from(from.addr)) else { return false };
        let Some(hop) = ctx.addressing.next_hop(to.ip()) else { return false };
        let mac = match ctx.neighbours.lookup(hop, now) {
            Lookup::Known { mac, .. } => mac,
            Lookup::Unknown => {
                ctx.want(hop, now);
                return false;
            }
        };
        let Some(pool) = self.devices.pool.as_ref() else { return false };
        let Some(mut m) = pool.alloc() else { return false };
        let len = frame::udp_frame_len(src.is_ipv6(), payload.len());
        let written = u16::try_from(len).ok().and_then(|l| m.append(l).ok()).and_then(|buf| {
            frame::emit_udp(buf, (ctx.addressing.mac, mac), SocketAddr::new(src, from.port), to, payload)
        });
        if written.is_none() {
            return false;
        }
        let before = ctx.stats.port_tx_failed;
        push_or_count(&mut self.bufs.to_port, m, &mut self.ctx.stats.port_tx_failed);
        self.flush_control();
        self.ctx.stats.port_tx_failed == before
    }

    fn detach(&mut self, _leg: u32) {}

    #[inline]
    fn prefetch(line: *const u8) {
        dpdk_sys::prefetch(line);
    }

    fn housekeeping(&mut self, counters: &WorkerCounters) {
        let s = &self.ctx.stats;
        s.unsent.publish(counters);
        for (event, total) in [
            (BackendEvent::ToKernel, s.to_kernel),
            (BackendEvent::FromKernel, s.from_kernel),
            (BackendEvent::NoTapDropped, s.no_tap_dropped),
            (BackendEvent::TapTxFailed, s.tap_tx_failed),
            (BackendEvent::PortTxFailed, s.port_tx_failed),
            (BackendEvent::ArpReplies, s.arp_replies),
            (BackendEvent::NeighborAdverts, s.neighbor_adverts),
            (BackendEvent::NeighbourRequests, s.neighbour_requests),
        ] {
            counters.set_backend(event, total);
        }
        if let (Some(tap), Some(port)) = (self.devices.tap.as_mut(), self.devices.port.as_mut()) {
            for _ in 0..TAP_BURSTS_PER_TICK {
                let n = tap.rx_burst(QUEUE, &mut self.bufs.from_tap);
                if n == 0 {
                    break;
                }
                self.ctx.stats.from_kernel += n as u64;
                port.tx_burst(QUEUE, &mut self.bufs.from_tap);
                self.ctx.stats.port_tx_failed += self.bufs.from_tap.len() as u64;
                self.bufs.from_tap.clear();
            }
        }
        self.send_requests();
    }
}

impl Drop for DpdkIo {
    fn drop(&mut self) {
        self.release_slots();
        let s = self.ctx.stats;
        tracing::info!(
            to_kernel = s.to_kernel,
            from_kernel = s.from_kernel,
            no_tap_dropped = s.no_tap_dropped,
            tap_tx_failed = s.tap_tx_failed,
            port_tx_failed = s.port_tx_failed,
            arp_replies = s.arp_replies,
            neighbor_adverts = s.neighbor_adverts,
            neighbour_requests = s.neighbour_requests,
            unresolved = s.unsent.unresolved,
            no_route = s.unsent.no_route,
            family_mismatch = s.unsent.family_mismatch,
            neighbours = self.ctx.neighbours.len(),
            "DPDK backend stopped"
        );
    }
}

#[cfg(test)]
mod tests;
