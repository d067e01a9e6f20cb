//! An AF_XDP socket: its UMEM (the frame buffers the kernel writes received
//! frames into and reads frames to send from) and its four rings.
//!
//! ```text
//!   fill ring  ── free frames we give the kernel to receive into ──▶ kernel
//!   rx ring    ◀─ received frames (address, length) ──────────────── kernel
//!   tx ring    ── frames to send (address, length) ─────────────────▶ kernel
//!   completion ◀─ frames the kernel has sent and gives back ───────── kernel
//! ```
//!
//! The UMEM is `frames` chunks of `frame_size` bytes. A chunk is, at any
//! time, in exactly one place: the free list, the fill ring, the rx ring
//! (between the kernel's and our index), the tx ring or the completion ring.
//! Received bytes are lent to a closure and the chunk goes straight back to
//! the fill ring; frames to send are written into a free chunk. So the API
//! hands out no references into the shared memory beyond a call.

use crate::{Error, Result};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Sizes of one socket's buffers.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Chunks in the UMEM (half receive, half send).
    pub frames: u32,
    /// Bytes per chunk: a power of two, 2048 to the page size.
    pub frame_size: u32,
    /// Entries per ring, a power of two.
    pub ring: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config { frames: 4096, frame_size: 2048, ring: 2048 }
    }
}

/// `struct xdp_statistics`, read from the kernel.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Statistics {
    /// Dropped for reasons other than below.
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Received while our rx ring was full.
    pub rx_ring_full: u64,
    /// Received while we had given the kernel no free frame.
    pub rx_fill_ring_empty: u64,
    pub tx_ring_empty: u64,
}

/// An anonymous or socket mapping, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize, fd: Option<(&OwnedFd, libc::off_t)>, what: &'static str) -> Result<Mapping> {
        let (flags, raw, offset) = match fd {
            Some((fd, offset)) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd.as_raw_fd(), offset),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE, -1, 0),
        };
        // SAFETY: a fresh mapping chosen by the kernel (no fixed address),
        // so no existing memory is affected; the result is checked.
        let p =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, raw, offset) };
        if p == libc::MAP_FAILED {
            return Err(Error::last(what));
        }
        let ptr = NonNull::new(p.cast()).ok_or_else(|| Error::Invalid(format!("{what}: mmap returned null")))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `new`, and no
        // reference into it outlives its owner (the rings and the UMEM lend
        // slices only for the duration of a call).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One of the four rings: the kernel and we each move one index.
#[derive(Debug)]
struct Ring<T> {
    _map: Mapping,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    /// Our index (producer or consumer, by ring) as last published or
    /// about to be, and the other side's as last read.
    ours: u32,
    theirs: u32,
}

impl<T: Copy> Ring<T> {
    fn map(
        fd: &OwnedFd,
        offsets: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
        what: &'static str,
    ) -> Result<Ring<T>> {
        let len = offsets.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = Mapping::new(len, Some((fd, pgoff as libc::off_t)), what)?;
        let at = |off: u64| -> Result<NonNull<u8>> {
            if off as usize >= len {
                return Err(Error::Invalid(format!("{what}: ring offset {off} outside {len} bytes")));
            }
            // SAFETY: `off` is inside the mapping just made.
            Ok(unsafe { map.ptr.add(off as usize) })
        };
        let producer = at(offsets.producer)?.cast();
        let consumer = at(offsets.consumer)?.cast();
        let descs = at(offsets.desc)?.cast();
        Ok(Ring { producer, consumer, descs, mask: size - 1, ours: 0, theirs: 0, _map: map })
    }

    fn index(&self, which: NonNull<AtomicU32>) -> &AtomicU32 {
        // SAFETY: `which` is the producer or consumer word of this ring's
        // live mapping, 4-byte aligned (the kernel's layout), shared with
        // the kernel only through atomic accesses.
        unsafe { which.as_ref() }
    }

    fn read(&self, i: u32) -> T {
        // SAFETY: `i & mask` < ring size, so the slot is inside the mapping;
        // T is the ring's descriptor type; the slot belongs to us (between
        // the indices), the kernel does not write it concurrently.
        unsafe { self.descs.as_ptr().add((i & self.mask) as usize).read_volatile() }
    }

    fn write(&mut self, i: u32, v: T) {
        // SAFETY: as in `read`; the slot is free (between the consumer's
        // index and ours plus the ring size).
        unsafe { self.descs.as_ptr().add((i & self.mask) as usize).write_volatile(v) }
    }

    // --- rings we produce into (fill, tx) ---

    fn free_slots(&mut self) -> u32 {
        let size = self.mask + 1;
        if self.ours.wrapping_sub(self.theirs) >= size {
            self.theirs = self.index(self.consumer).load(Ordering::Acquire);
        }
        size - self.ours.wrapping_sub(self.theirs)
    }

    fn push(&mut self, v: T) -> bool {
        if self.free_slots() == 0 {
            return false;
        }
        self.write(self.ours, v);
        self.ours = self.ours.wrapping_add(1);
        true
    }

    fn publish(&self) {
        self.index(self.producer).store(self.ours, Ordering::Release);
    }

    // --- rings we consume from (rx, completion) ---

    fn available(&mut self) -> u32 {
        if self.theirs == self.ours {
            self.theirs = self.index(self.producer).load(Ordering::Acquire);
        }
        self.theirs.wrapping_sub(self.ours)
    }

    fn release(&self) {
        self.index(self.consumer).store(self.ours, Ordering::Release);
    }
}

fn setsockopt<T>(fd: &OwnedFd, name: libc::c_int, value: &T, what: &'static str) -> Result<()> {
    // SAFETY: `value` is a live T of the size passed, the layout the option expects.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(Error::last(what));
    }
    Ok(())
}

fn getsockopt<T: Default>(fd: &OwnedFd, name: libc::c_int, what: &'static str) -> Result<T> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a writable T and `len` says its size; the kernel
    // writes at most that much.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_XDP, name, (&mut value as *mut T).cast(), &mut len) };
    if r != 0 {
        return Err(Error::last(what));
    }
    Ok(value)
}

/// `sendto` calls one kick makes at most (32 frames each in copy mode).
const KICKS_PER_CALL: usize = 8;

/// `xdp_mmap_offsets` and `xdp_statistics` have no Default in libc.
#[derive(Default)]
#[repr(C)]
struct Offsets([u64; 16]);

impl Offsets {
    fn ring(&self, i: usize) -> libc::xdp_ring_offset {
        let o = &self.0[i * 4..i * 4 + 4];
        libc::xdp_ring_offset { producer: o[0], consumer: o[1], desc: o[2], flags: o[3] }
    }
}

#[derive(Default)]
#[repr(C)]
struct RawStatistics([u64; 6]);

/// An AF_XDP socket bound to one queue of one interface.
#[derive(Debug)]
pub struct Socket {
    // Rings and UMEM before the fd: unmapped before the socket closes.
    fill: Ring<u64>,
    completion: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    umem: Mapping,
    frame_size: u32,
    /// Chunks in no ring: ours to send from or to give the fill ring.
    free: Vec<u64>,
    /// Frames put on the tx ring since the last kick.
    unkicked: u32,
    zero_copy: bool,
    fd: OwnedFd,
}

impl Socket {
    /// Opens a socket on queue `queue` of the interface `ifindex`: in copy
    /// mode with `copy` (what generic XDP needs), else zero-copy when the
    /// driver offers it.
    pub fn open(ifindex: u32, queue: u32, config: Config, copy: bool) -> Result<Socket> {
        if !config.ring.is_power_of_two() || !config.frame_size.is_power_of_two() || config.frames < 2 {
            return Err(Error::Invalid(format!("bad AF_XDP sizes {config:?}")));
        }
        // SAFETY: plain socket creation; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(Error::last("creating an AF_XDP socket"));
        }
        // SAFETY: `raw` is the new socket, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Mapping::new(config.frames as usize * config.frame_size as usize, None, "allocating the UMEM")?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr.as_ptr() as u64,
            len: umem.len as u64,
            chunk_size: config.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&fd, libc::XDP_UMEM_REG, &reg, "registering the UMEM")?;
        setsockopt(&fd, libc::XDP_UMEM_FILL_RING, &config.ring, "sizing the fill ring")?;
        setsockopt(&fd, libc::XDP_UMEM_COMPLETION_RING, &config.ring, "sizing the completion ring")?;
        setsockopt(&fd, libc::XDP_RX_RING, &config.ring, "sizing the rx ring")?;
        setsockopt(&fd, libc::XDP_TX_RING, &config.ring, "sizing the tx ring")?;
        let off: Offsets = getsockopt(&fd, libc::XDP_MMAP_OFFSETS, "reading the ring offsets")?;
        let rx = Ring::map(&fd, &off.ring(0), config.ring, libc::XDP_PGOFF_RX_RING as u64, "mapping the rx ring")?;
        let tx =
            Ring::map(&fd, &off.ring(1), config.ring, libc::XDP_PGOFF_TX_RING as u32 as u64, "mapping the tx ring")?;
        let fill = Ring::map(&fd, &off.ring(2), config.ring, libc::XDP_UMEM_PGOFF_FILL_RING, "mapping the fill ring")?;
        let completion = Ring::map(
            &fd,
            &off.ring(3),
            config.ring,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            "mapping the completion ring",
        )?;

        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: if copy { libc::XDP_COPY } else { 0 },
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `addr` is a live sockaddr_xdp of the size passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(Error::last("binding the AF_XDP socket to its queue"));
        }
        let options: u32 = getsockopt(&fd, libc::XDP_OPTIONS, "reading the AF_XDP socket's options")?;
        let zero_copy = options & libc::XDP_OPTIONS_ZEROCOPY != 0;
        let mut socket = Socket {
            fill,
            completion,
            rx,
            tx,
            free: (0..u64::from(config.frames)).map(|i| i * u64::from(config.frame_size)).rev().collect(),
            umem,
            frame_size: config.frame_size,
            unkicked: 0,
            zero_copy,
            fd,
        };
        socket.refill();
        Ok(socket)
    }

    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Gives the kernel free chunks to receive into, keeping a quarter of
    /// the UMEM for sending.
    fn refill(&mut self) {
        let keep = self.umem.len / self.frame_size as usize / 4;
        let mut moved = false;
        while self.free.len() > keep {
            let Some(&addr) = self.free.last() else { break };
            if !self.fill.push(addr) {
                break;
            }
            self.free.pop();
            moved = true;
        }
        if moved {
            self.fill.publish();
        }
    }

    /// Takes back the chunks the kernel has sent.
    fn reclaim(&mut self) {
        let n = self.completion.available();
        for _ in 0..n {
            let addr = self.completion.read(self.completion.ours);
            self.completion.ours = self.completion.ours.wrapping_add(1);
            self.free.push(addr & !u64::from(self.frame_size - 1));
        }
        if n > 0 {
            self.completion.release();
        }
    }

    /// Calls `f` with each received frame, at most `max` of them; returns
    /// how many there were. The frames' chunks go back to the kernel.
    pub fn receive(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let n = (self.rx.available() as usize).min(max);
        for _ in 0..n {
            let d = self.rx.read(self.rx.ours);
            self.rx.ours = self.rx.ours.wrapping_add(1);
            let (start, len) = (d.addr as usize, d.len as usize);
            if start.checked_add(len).is_some_and(|end| end <= self.umem.len) {
                // SAFETY: the range is inside the UMEM (checked), and the
                // chunk is ours until we put it back on the fill ring below:
                // the kernel wrote it before publishing the descriptor.
                let frame = unsafe { std::slice::from_raw_parts(self.umem.ptr.as_ptr().add(start), len) };
                f(frame);
            }
            self.free.push(d.addr & !u64::from(self.frame_size - 1));
        }
        if n > 0 {
            self.rx.release();
            self.refill();
        }
        n
    }

    /// Writes a frame to send into a free chunk with `write`, which gets the
    /// whole chunk and returns the frame's length (`None`: nothing to send).
    /// False when no chunk or tx slot is free or `write` declined. Sent at
    /// the next [`Socket::kick`].
    pub fn send_with(&mut self, write: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        if self.free.is_empty() {
            self.reclaim();
        }
        let Some(&addr) = self.free.last() else { return false };
        if self.tx.free_slots() == 0 {
            return false;
        }
        // SAFETY: `addr` is a chunk on our free list (in no ring), inside
        // the UMEM; the slice lives only for this call.
        let chunk = unsafe {
            std::slice::from_raw_parts_mut(self.umem.ptr.as_ptr().add(addr as usize), self.frame_size as usize)
        };
        let Some(len) = write(chunk).filter(|&l| l > 0 && l <= self.frame_size as usize) else { return false };
        self.free.pop();
        self.tx.push(libc::xdp_desc { addr, len: len as u32, options: 0 });
        self.unkicked += 1;
        true
    }

    /// Publishes the frames written since the last kick and asks the kernel
    /// to send what the tx ring holds; returns how many were published.
    /// In copy mode the kernel sends at most 32 frames a call (and says
    /// EAGAIN when more wait), so it is asked again while it makes progress;
    /// what a busy device leaves on the ring goes at the next kick.
    pub fn kick(&mut self) -> u32 {
        let n = self.unkicked;
        if n > 0 {
            self.tx.publish();
            self.unkicked = 0;
        }
        for _ in 0..KICKS_PER_CALL {
            let waiting = self.tx.ours.wrapping_sub(self.tx.index(self.tx.consumer).load(Ordering::Acquire));
            if waiting == 0 {
                break;
            }
            // SAFETY: a zero-length send on our own socket: the kernel only
            // walks the tx ring.
            let r = unsafe {
                libc::sendto(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)
            };
            let progressed =
                self.tx.ours.wrapping_sub(self.tx.index(self.tx.consumer).load(Ordering::Acquire)) < waiting;
            if r < 0 && (std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) || !progressed) {
                break;
            }
        }
        self.reclaim();
        n
    }

    /// Frames written since the last kick.
    pub fn unkicked(&self) -> u32 {
        self.unkicked
    }

    /// Frames a kick published that the kernel has not taken yet.
    pub fn unsent(&self) -> u32 {
        let published = self.tx.ours.wrapping_sub(self.unkicked);
        published.wrapping_sub(self.tx.index(self.tx.consumer).load(Ordering::Acquire))
    }

    /// Frames received and not yet taken by [`Socket::receive`].
    pub fn pending(&mut self) -> u32 {
        self.rx.available()
    }

    pub fn statistics(&self) -> Result<Statistics> {
        let s: RawStatistics = getsockopt(&self.fd, libc::XDP_STATISTICS, "reading AF_XDP statistics")?;
        let [rx_dropped, rx_invalid_descs, tx_invalid_descs, rx_ring_full, rx_fill_ring_empty, tx_ring_empty] = s.0;
        Ok(Statistics {
            rx_dropped,
            rx_invalid_descs,
            tx_invalid_descs,
            rx_ring_full,
            rx_fill_ring_empty,
            tx_ring_empty,
        })
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// The interface's index, or None if there is no such interface.
pub fn interface_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::{AttachMode, Program, SocketMap, Steering, XDP_PASS};
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::{Duration, Instant};

    /// Moves the calling test thread into a network namespace of its own
    /// with loopback up, so that the program attached to its `lo` meets no
    /// other test's (an interface takes one XDP program). Frames sent on `lo`
    /// through AF_XDP carry no route, unlike the kernel's own loopback
    /// traffic, so 127/8 must be routable, and a local source acceptable, as
    /// if they came from outside.
    fn private_network() {
        // SAFETY: unshare changes only this thread's network namespace.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "unshare(CLONE_NEWNET): {} (needs root)", std::io::Error::last_os_error());
        // The child inherits this thread's namespace.
        let conf = "/proc/sys/net/ipv4/conf/lo";
        let script = format!("ip link set lo up && echo 1 > {conf}/route_localnet && echo 1 > {conf}/accept_local");
        let up = std::process::Command::new("sh").args(["-c", &script]).status().unwrap();
        assert!(up.success());
    }

    fn checksum(bytes: &[u8]) -> u16 {
        let mut sum: u32 =
            bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// Loopback frame (zero MACs) from 127.0.0.1:`from` to 127.0.0.1:`to`,
    /// UDP checksum 0 ("none", valid over IPv4).
    fn loopback_udp(buf: &mut [u8], from: u16, to: u16, payload: &[u8]) -> usize {
        let len = 42 + payload.len();
        buf[..len].fill(0);
        buf[12] = 0x08;
        buf[14] = 0x45;
        buf[16..18].copy_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
        buf[22] = 64;
        buf[23] = 17;
        buf[26..30].copy_from_slice(&Ipv4Addr::LOCALHOST.octets());
        buf[30..34].copy_from_slice(&Ipv4Addr::LOCALHOST.octets());
        let c = checksum(&buf[14..34]);
        buf[24..26].copy_from_slice(&c.to_be_bytes());
        buf[34..36].copy_from_slice(&from.to_be_bytes());
        buf[36..38].copy_from_slice(&to.to_be_bytes());
        buf[38..40].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        buf[42..len].copy_from_slice(payload);
        len
    }

    #[test]
    fn media_steered_on_loopback_is_received_and_what_is_sent_arrives() {
        private_network();
        let lo = interface_index("lo").unwrap();
        let map = SocketMap::new(1).unwrap();
        let steering =
            Steering { addrs: vec![Ipv4Addr::LOCALHOST], addrs6: vec![], ports: 40000..=40009, fallback: XDP_PASS };
        let program = Program::load(&steering, &map).unwrap();
        let mut socket = Socket::open(lo, 0, Config::default(), true).unwrap();
        map.insert(0, &socket).unwrap();
        let _link = program.attach(lo, AttachMode::Generic).unwrap();

        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let peer_port = peer.local_addr().unwrap().port();
        // Not media: still the kernel's.
        let kernel = UdpSocket::bind("127.0.0.1:40010").unwrap();
        kernel.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        peer.send_to(b"not media", "127.0.0.1:40010").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(kernel.recv(&mut buf).unwrap(), 9);

        for i in 0..3u8 {
            peer.send_to(&[b'm', i], "127.0.0.1:40003").unwrap();
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < 3 && Instant::now() < deadline {
            socket.receive(64, |f| got.push(f.to_vec()));
        }
        assert_eq!(got.len(), 3, "steered datagrams reach the socket");
        for (i, f) in got.iter().enumerate() {
            assert_eq!(&f[36..38], &40003u16.to_be_bytes());
            assert_eq!(&f[34..36], &peer_port.to_be_bytes());
            assert_eq!(&f[42..], &[b'm', i as u8]);
        }

        for i in 0..100u8 {
            assert!(socket.send_with(|b| Some(loopback_udp(b, 40003, peer_port, &[b'r', i]))));
            if i % 10 == 9 {
                assert_eq!(socket.kick(), 10);
            }
        }
        for i in 0..100u8 {
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from.port()), (&[b'r', i][..], 40003));
        }
        // More than the 32 frames the kernel sends per call, in one kick.
        for i in 0..64u8 {
            assert!(socket.send_with(|b| Some(loopback_udp(b, 40003, peer_port, &[b'b', i]))));
        }
        assert_eq!(socket.kick(), 64);
        assert_eq!(socket.unsent(), 0, "one kick sends a whole burst");
        for i in 0..64u8 {
            let (n, _) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[b'b', i][..]);
        }
        // (`tx_ring_empty` counts kicks that found the ring drained: normal.)
        let s = socket.statistics().unwrap();
        assert_eq!(Statistics { tx_ring_empty: 0, ..s }, Statistics::default());
        assert!(!socket.zero_copy());
    }
}
