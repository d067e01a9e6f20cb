//! A userspace WAN for tests: regions of one media LAN, joined by delay
//! lines that hold every frame for a fixed time.
//!
//! The kernels this project is tested on (CI's among them) are built
//! without `sch_netem`, nor any other qdisc that can delay (no prio, fq or
//! etf either), so `tc` cannot add latency. Here a *delay line* does it in
//! userspace: a namespace holding two veth ends, `core` and `edge`, whose
//! peers are ports of two bridges; a thread per direction in the test process
//! reads every frame arriving on one end with an `AF_PACKET` socket and sends
//! it out of the other once the line's one-way delay has passed.
//!
//! ```text
//!   app namespace
//!     br0 192.0.2.1 (the core region) ── p10, p11, ...  hosts of the core region
//!      ├─ de1-c ═ [line namespace: core ⇄ edge, 22.5 ms each way] ═ de1-e ─ br-de1 ── p12, ...
//!      └─ au1-c ═ [line namespace: core ⇄ edge, 45 ms each way]   ═ au1-e ─ br-au1 ── p13, ...
//! ```
//!
//! Every host keeps its address in 192.0.2.0/24 and its static neighbour
//! entry toward 192.0.2.1 ([`MediaLan`]'s addressing): the whole WAN is one
//! L2 segment, so nothing in the appliances changes. The regions form a star
//! around the core (a triangle would be an L2 loop), so between two
//! non-core regions a frame crosses both spokes: their delays add.
//!
//! Offloads are off on the bridge-side ends of a line, so the kernel hands
//! the line finished frames (segmented, checksummed) that fit the MTU: a
//! socket-sent frame bigger than the MTU would be refused, and one with a
//! checksum left to the hardware would arrive corrupt.

use crate::netns::Netns;
use crate::topology::{MediaLan, Peer, BRIDGE};
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::socket::{self, AddressFamily, LinkAddr, MsgFlags, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeSpec;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A frame larger than this cannot be a single Ethernet frame; with
/// offloads off none arrives, but a GSO super-packet would fit and then be
/// refused by `send` (and counted as dropped) rather than truncated.
const FRAME_BUF: usize = 65_536 + 64;
/// Frames in flight per direction before arrivals are dropped: ~12 MB at
/// full size, far more than the tests' traffic keeps in a 100 ms line.
const MAX_QUEUED: usize = 8_192;
/// How long a forwarder waits for a frame before it checks its stop flag.
const IDLE: Duration = Duration::from_millis(50);
/// Socket buffers: a burst must wait in the kernel while the thread sleeps.
const SOCKET_BUF: usize = 4 << 20;

/// A bidirectional line that delays every frame by a fixed time. Its
/// threads stop and its namespace goes when it drops.
#[derive(Debug)]
pub struct DelayLine {
    one_way: Duration,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    // Last: deleted after the threads stopped using its sockets.
    ns: Netns,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    cut: AtomicBool,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

/// What a line did, both directions together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineStats {
    /// Frames sent on after their delay.
    pub forwarded: u64,
    /// Frames lost: while cut, to a full queue, or refused by the kernel.
    pub dropped: u64,
}

impl DelayLine {
    /// A line named `name` (at most 12 characters: it names the ports)
    /// between bridges `near` and `far` of namespace `host`, delaying
    /// `one_way` in each direction. Its ports on the bridges are
    /// `<name>-c` (on `near`) and `<name>-e` (on `far`).
    pub fn new(name: &str, one_way: Duration, host: &Netns, near: &str, far: &str) -> Result<DelayLine> {
        if name.is_empty() || name.len() > 12 {
            bail!("a delay line's name must have 1 to 12 characters: {name:?}");
        }
        let ns = Netns::new(&format!("wan{name}"))?;
        // A pure wire: the line's own stack must not add frames (IPv6
        // router solicitations and the like) to the ones it carries.
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        let near_port = format!("{name}-c");
        let far_port = format!("{name}-e");
        for (end, port, bridge) in [("core", &near_port, near), ("edge", &far_port, far)] {
            crate::netns::ip(&[
                "link",
                "add",
                port,
                "netns",
                host.name(),
                "type",
                "veth",
                "peer",
                "name",
                end,
                "netns",
                ns.name(),
            ])
            .with_context(|| format!("a veth pair for delay line {name}"))?;
            ns.ip(&["link", "set", end, "promisc", "on", "up"])?;
            ns.exec("ethtool", &["-K", end, "gro", "off"], None).context("ethtool (is it installed?)")?;
            host.exec("ethtool", &["-K", port, "tx", "off", "tso", "off", "gso", "off", "gro", "off"], None)
                .context("ethtool (is it installed?)")?;
            host.ip(&["link", "set", port, "master", bridge])?;
        }
        let (core, edge) = ns.run_in(|| -> Result<(OwnedFd, OwnedFd)> { Ok((open("core")?, open("edge")?)) })??;
        let (core, edge) = (Arc::new(core), Arc::new(edge));
        // Built before the threads start: if one fails to start, dropping
        // the line stops the other.
        let mut line = DelayLine { one_way, shared: Arc::new(Shared::default()), threads: Vec::new(), ns };
        for (rx, tx, dir) in [(&core, &edge, "out"), (&edge, &core, "in")] {
            let (rx, tx, shared) = (rx.clone(), tx.clone(), line.shared.clone());
            let thread = std::thread::Builder::new()
                .name(format!("wan-{name}-{dir}"))
                .spawn(move || forward(&rx, &tx, one_way, &shared))
                .context("starting a delay line's thread")?;
            line.threads.push(thread);
        }
        // Only now the bridges see the line: nothing arrived before the
        // sockets were bound.
        host.ip(&["link", "set", &near_port, "up"])?;
        host.ip(&["link", "set", &far_port, "up"])?;
        Ok(line)
    }

    pub fn one_way(&self) -> Duration {
        self.one_way
    }

    /// Cuts the line (`true`: frames in flight and arriving are dropped,
    /// both ways) or heals it (`false`).
    pub fn set_cut(&self, cut: bool) {
        self.shared.cut.store(cut, Ordering::Relaxed);
    }

    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> LineStats {
        LineStats {
            forwarded: self.shared.forwarded.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
        }
    }

    pub fn ns(&self) -> &Netns {
        &self.ns
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A non-blocking packet socket receiving every frame of interface `name`
/// (run inside the line's namespace).
fn open(name: &str) -> Result<OwnedFd> {
    // The interface's link address comes from getifaddrs: nix has no safe
    // way to build a `sockaddr_ll`, but hands out the kernel's. Its
    // protocol field is 0, so binding keeps the socket's ETH_P_ALL.
    let addrs = nix::ifaddrs::getifaddrs().context("getifaddrs")?;
    let link: LinkAddr = addrs
        .filter(|a| a.interface_name == name)
        .find_map(|a| a.address.and_then(|s| s.as_link_addr().copied()))
        .with_context(|| format!("no link address for interface {name}"))?;
    let fd = socket::socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::EthAll,
    )
    .context("an AF_PACKET socket")?;
    socket::bind(fd.as_raw_fd(), &link).with_context(|| format!("binding a packet socket to {name}"))?;
    // Forced sizes: root may exceed net.core.[rw]mem_max.
    socket::setsockopt(&fd, socket::sockopt::RcvBufForce, &SOCKET_BUF).context("SO_RCVBUFFORCE")?;
    socket::setsockopt(&fd, socket::sockopt::SndBufForce, &SOCKET_BUF).context("SO_SNDBUFFORCE")?;
    // Frames that arrived before the bind (from any interface) are not
    // this interface's: drop them.
    let mut buf = [0u8; 2048];
    while socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).is_ok() {}
    Ok(fd)
}

/// One direction of a line: frames read from `rx` go out of `tx` `delay`
/// after they arrived, in arrival order, until the stop flag is set.
fn forward(rx: &OwnedFd, tx: &OwnedFd, delay: Duration, shared: &Shared) {
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut buf = vec![0u8; FRAME_BUF];
    let count = |counter: &AtomicU64, n: usize| {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    };
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.cut.load(Ordering::Relaxed) && !queue.is_empty() {
            count(&shared.dropped, queue.len());
            queue.clear();
        }
        let now = Instant::now();
        while let Some((due, _)) = queue.front() {
            if *due > now {
                break;
            }
            let Some((_, frame)) = queue.pop_front() else { break };
            if shared.cut.load(Ordering::Relaxed) {
                // Cut while it waited its turn: a cut line delivers nothing.
                count(&shared.dropped, 1 + queue.len());
                queue.clear();
                break;
            }
            match socket::send(tx.as_raw_fd(), &frame, MsgFlags::empty()) {
                Ok(_) => count(&shared.forwarded, 1),
                Err(_) => count(&shared.dropped, 1),
            }
        }
        // Sleep until the next frame is due or one arrives; ppoll takes a
        // timespec, so the delay is kept to microseconds, not rounded up
        // to poll's milliseconds.
        let wait = queue.front().map_or(IDLE, |(due, _)| due.saturating_duration_since(now).min(IDLE));
        let mut fds = [PollFd::new(rx.as_fd(), PollFlags::POLLIN)];
        match ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => {
                // Not expected on a live socket; do not spin on it.
                std::thread::sleep(IDLE);
                continue;
            }
        }
        // Read after the wait: a heal while it slept applies to what woke it.
        let cut = shared.cut.load(Ordering::Relaxed);
        // Until drained (EAGAIN), or until an error the socket reports once
        // (an interface going down during teardown): then wait again.
        while let Ok((len, from)) = socket::recvfrom::<LinkAddr>(rx.as_raw_fd(), &mut buf) {
            // Frames leaving through this interface are not arrivals. The
            // other direction's sends are not among them (a packet socket
            // never sees its own), but anything else sent there would be.
            if from.is_some_and(|a| a.pkttype() == nix::libc::PACKET_OUTGOING) {
                continue;
            }
            if cut || queue.len() >= MAX_QUEUED {
                count(&shared.dropped, 1);
                continue;
            }
            queue.push_back((Instant::now() + delay, buf[..len.min(buf.len())].to_vec()));
        }
    }
}

/// A region of the WAN: its bridge and, except for the core, its line.
#[derive(Debug)]
struct Region {
    name: String,
    bridge: String,
    line: Option<DelayLine>,
}

/// A [`MediaLan`] split into regions: the core region is the app
/// namespace's `br0` (192.0.2.1, where the customer's app and the admin
/// clients live); every other region is a bridge `br-<name>` in the app
/// namespace joined to `br0` by a [`DelayLine`]. Hosts get the LAN's next
/// address (192.0.2.10, .11, ...) in plugging order, whatever their region.
#[derive(Debug)]
pub struct Wan {
    // First: the lines stop before the LAN's namespaces go.
    regions: Vec<Region>,
    lan: MediaLan,
}

impl Wan {
    /// A WAN whose core region, `core`, is [`MediaLan::new`]'s `br0`.
    pub fn new(core: &str) -> Result<Wan> {
        let lan = MediaLan::new()?;
        Ok(Wan { regions: vec![Region { name: core.into(), bridge: BRIDGE.into(), line: None }], lan })
    }

    /// Region `name`, `one_way` from the core in each direction (so
    /// `one_way` plus the other's from another non-core region).
    pub fn add_region(&mut self, name: &str, one_way: Duration) -> Result<()> {
        if self.regions.iter().any(|r| r.name == name) {
            bail!("region {name} exists");
        }
        let bridge = format!("br-{name}");
        if bridge.len() > 15 {
            bail!("region name too long for an interface name: {name}");
        }
        let app = &self.lan.app;
        app.ip(&["link", "add", &bridge, "type", "bridge"])?;
        app.ip(&["link", "set", &bridge, "up"])?;
        let line = DelayLine::new(name, one_way, app, BRIDGE, &bridge)
            .with_context(|| format!("the delay line to region {name}"))?;
        self.regions.push(Region { name: name.into(), bridge, line: Some(line) });
        Ok(())
    }

    /// A host in `region`, in its own namespace, with the LAN's next address.
    pub fn add_peer_in(&mut self, region: &str, role: &str) -> Result<Peer> {
        let bridge = self.region(region)?.bridge.clone();
        self.lan.add_peer_on(&bridge, role)
    }

    /// The one-way delay between two regions (zero within one).
    pub fn one_way(&self, a: &str, b: &str) -> Result<Duration> {
        if a == b {
            return Ok(Duration::ZERO);
        }
        let spoke =
            |r: &str| -> Result<Duration> { Ok(self.region(r)?.line.as_ref().map_or(Duration::ZERO, |l| l.one_way())) };
        Ok(spoke(a)? + spoke(b)?)
    }

    /// Cuts `region` off the others (its line drops everything, both
    /// ways); hosts within the region still reach each other.
    pub fn cut(&self, region: &str) -> Result<()> {
        self.line(region)?.set_cut(true);
        Ok(())
    }

    /// Joins a cut region again.
    pub fn heal(&self, region: &str) -> Result<()> {
        self.line(region)?.set_cut(false);
        Ok(())
    }

    pub fn line_stats(&self, region: &str) -> Result<LineStats> {
        Ok(self.line(region)?.stats())
    }

    pub fn lan(&self) -> &MediaLan {
        &self.lan
    }

    pub fn lan_mut(&mut self) -> &mut MediaLan {
        &mut self.lan
    }

    /// The app namespace (the core region's bridge, 192.0.2.1).
    pub fn app(&self) -> &Netns {
        &self.lan.app
    }

    pub fn media_ip(&self) -> IpAddr {
        self.lan.media_ip()
    }

    fn region(&self, name: &str) -> Result<&Region> {
        self.regions.iter().find(|r| r.name == name).with_context(|| format!("no region {name}"))
    }

    fn line(&self, region: &str) -> Result<&DelayLine> {
        match &self.region(region)?.line {
            Some(line) => Ok(line),
            None => bail!("{region} is the core region: it has no line of its own (cut the others)"),
        }
    }
}
