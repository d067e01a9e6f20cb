//! The socket backend: a nonblocking UDP socket per local port, registered in
//! the worker's `epoll`; each readable socket is drained with `recvmmsg`, and
//! what the engine relays goes out of the other leg's socket with `sendmmsg`
//! (consecutive datagrams leaving by the same socket share one call).
//!
//! A port's socket outlives its session: it is bound the first time a
//! session uses the port and stays open and watched, idle, until the next
//! session there (or until the control plane asks for idle ones back when the
//! process runs out of files). Creating, watching, unwatching and closing
//! four sockets a call was about 8 % of the appliance's CPU per call
//! (docs/benchmarks.md). What an idle socket receives is read and dropped as
//! `no_session`, as the DPDK backend does for a port no session owns.

use super::{PacketIo, BURST};
use crate::engine::checksum_delta::ChecksumDelta;
use crate::engine::counters::{bump, DropReason, WorkerCounters};
use crate::engine::Datagram;
use crate::session::{LocalEndpoint, PortIndex};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::EventFd;
use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;

/// Receive buffer per datagram: larger than any payload relayed, so that an
/// oversized one is seen whole (and dropped as oversized), not truncated.
const BUF_LEN: usize = 2048;
/// Socket receive buffer: a few hundred ms of a G.711 stream.
const SO_RCVBUF: usize = 256 * 1024;
const WAKER_TOKEN: u64 = u64::MAX;
/// Ready sockets taken per `epoll_wait`: many, so that one system call
/// feeds several bursts under load.
const READY_EVENTS: usize = 256;
/// What a datagram received on an idle port claims as its local endpoint:
/// port 0 is never a media port, so the engine finds no session for it.
const UNOWNED: LocalEndpoint = LocalEndpoint { addr: 0, port: 0 };

pub struct SocketDatagram {
    buf: Box<[u8; BUF_LEN]>,
    len: usize,
    local: LocalEndpoint,
    source: SocketAddr,
    /// Where it goes, once readdressed: the port it leaves by and the destination.
    out: Option<(LocalEndpoint, SocketAddr)>,
}

impl Datagram for SocketDatagram {
    #[inline]
    fn local(&self) -> LocalEndpoint {
        self.local
    }
    #[inline]
    fn source(&self) -> SocketAddr {
        self.source
    }
    #[inline]
    fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
    #[inline]
    fn readdress(&mut self, _from_leg: u32, from: LocalEndpoint, to: SocketAddr, _payload_delta: ChecksumDelta) {
        // The kernel computes the checksum.
        self.out = Some((from, to));
    }
}

/// A bound media port.
struct Port {
    local: LocalEndpoint,
    socket: UdpSocket,
    /// A session receives on it; otherwise what arrives is dropped.
    active: bool,
    /// Registered in the worker's epoll (a failed registration is retried
    /// when a session next takes the port).
    watched: bool,
}

pub struct SocketIo {
    epoll: Epoll,
    waker: Arc<EventFd>,
    events: Vec<EpollEvent>,
    /// Ready sockets `epoll_wait` reported that no burst has served yet:
    /// served before asking the kernel again, so none is polled twice.
    ready: Vec<u64>,
    ready_next: usize,
    index: PortIndex,
    /// Indexed by `index`; the epoll token of a port is its index.
    ports: Vec<Option<Port>>,
    /// Per local leg, the ports its session receives on (RTP, RTCP).
    legs: Vec<[Option<usize>; 2]>,
    batch: Vec<SocketDatagram>,
    filled: usize,
    rx_headers: MultiHeaders<SockaddrStorage>,
    tx_headers: MultiHeaders<SockaddrStorage>,
}

/// Binds one media port: nonblocking, with a receive buffer sized for bursts.
pub fn bind_media_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &SO_RCVBUF);
    Ok(socket)
}

impl SocketIo {
    /// `legs`: the most legs this worker's share of the table holds;
    /// `addrs` media addresses, each with the port range `ports`.
    pub fn new(
        waker: Arc<EventFd>,
        legs: usize,
        addrs: usize,
        ports: std::ops::RangeInclusive<u16>,
    ) -> std::io::Result<Self> {
        let index = PortIndex::new(addrs, &ports);
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(waker.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKER_TOKEN))?;
        let batch = (0..BURST)
            .map(|_| SocketDatagram {
                buf: Box::new([0; BUF_LEN]),
                len: 0,
                local: LocalEndpoint { addr: 0, port: 0 },
                source: SocketAddr::from(([0, 0, 0, 0], 0)),
                out: None,
            })
            .collect();
        Ok(SocketIo {
            epoll,
            waker,
            events: vec![EpollEvent::empty(); READY_EVENTS],
            ready: Vec::with_capacity(READY_EVENTS),
            ready_next: 0,
            ports: (0..index.len()).map(|_| None).collect(),
            index,
            legs: vec![[None; 2]; legs],
            batch,
            filled: 0,
            rx_headers: MultiHeaders::preallocate(BURST, None),
            tx_headers: MultiHeaders::preallocate(BURST, None),
        })
    }

    /// Drains up to the batch's free room from one socket; true when the
    /// socket has nothing more (it returned less than asked).
    fn receive_from(&mut self, port: usize) -> bool {
        let Some(Some(p)) = self.ports.get(port) else {
            return true;
        };
        let (local, fd) = (if p.active { p.local } else { UNOWNED }, p.socket.as_raw_fd());
        let room = BURST - self.filled;
        let mut results = [(0usize, None::<SocketAddr>); BURST];
        let received = {
            let mut slots = self.batch[self.filled..].iter_mut();
            let mut iovs: [[IoSliceMut<'_>; 1]; BURST] = std::array::from_fn(|_| match slots.next() {
                Some(d) => [IoSliceMut::new(&mut d.buf[..])],
                None => [IoSliceMut::new(&mut [])],
            });
            match recvmmsg(fd, &mut self.rx_headers, iovs[..room].iter_mut(), MsgFlags::MSG_DONTWAIT, None) {
                Ok(msgs) => {
                    let mut n = 0;
                    for (r, msg) in results.iter_mut().zip(msgs) {
                        *r = (msg.bytes, msg.address.as_ref().and_then(to_std));
                        n += 1;
                    }
                    n
                }
                Err(_) => 0,
            }
        };
        for (d, (bytes, source)) in self.batch[self.filled..].iter_mut().zip(&results[..received]) {
            // UDP always names its source; were one missing, the datagram
            // stays in place (buffers are positional) as an empty one.
            d.len = if source.is_some() { (*bytes).min(BUF_LEN) } else { 0 };
            d.local = local;
            d.source = source.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            d.out = None;
        }
        self.filled += received;
        received < room
    }
}

fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

impl PacketIo for SocketIo {
    type Datagram = SocketDatagram;

    fn rx_burst(&mut self, wait: Option<Duration>) -> &mut [SocketDatagram] {
        self.filled = 0;
        if self.ready_next == self.ready.len() {
            let timeout = match wait {
                Some(d) => EpollTimeout::try_from(d).unwrap_or(EpollTimeout::NONE),
                None => EpollTimeout::ZERO,
            };
            let n = self.epoll.wait(&mut self.events, timeout).unwrap_or(0);
            self.ready.clear();
            self.ready_next = 0;
            let mut woken = false;
            for event in &self.events[..n] {
                if event.data() == WAKER_TOKEN {
                    let _ = self.waker.read();
                    woken = true;
                } else {
                    self.ready.push(event.data());
                }
            }
            if woken {
                // The ready sockets are served by the next call, after the command.
                return &mut self.batch[..0];
            }
        }
        while self.filled < BURST && self.ready_next < self.ready.len() {
            let token = self.ready[self.ready_next];
            if self.receive_from(token as usize) {
                self.ready_next += 1;
            }
        }
        &mut self.batch[..self.filled]
    }

    fn tx_burst(&mut self, counters: &WorkerCounters) {
        let mut start = 0;
        while start < self.filled {
            let Some((from, _)) = self.batch[start].out else {
                start += 1;
                continue;
            };
            // The run of datagrams leaving by the same socket.
            let mut end = start + 1;
            while end < self.filled && matches!(self.batch[end].out, Some((f, _)) if f == from) {
                end += 1;
            }
            let run = &self.batch[start..end];
            let sent = match self.index.of(from).and_then(|i| self.ports[i].as_ref()) {
                Some(Port { socket, .. }) => {
                    let mut parts = run.iter();
                    let iovs: [[IoSlice<'_>; 1]; BURST] = std::array::from_fn(|_| match parts.next() {
                        Some(d) => [IoSlice::new(&d.buf[..d.len])],
                        None => [IoSlice::new(&[])],
                    });
                    let mut addrs: [Option<SockaddrStorage>; BURST] = [None; BURST];
                    for (a, d) in addrs.iter_mut().zip(run) {
                        *a = d.out.map(|(_, to)| SockaddrStorage::from(to));
                    }
                    match sendmmsg(
                        socket.as_raw_fd(),
                        &mut self.tx_headers,
                        &iovs[..run.len()],
                        &addrs[..run.len()],
                        [],
                        MsgFlags::MSG_DONTWAIT,
                    ) {
                        Ok(results) => results.count(),
                        Err(_) => 0,
                    }
                }
                None => 0,
            };
            for (i, d) in run.iter().enumerate() {
                if i < sent {
                    bump(&counters.tx_packets, 1);
                    bump(&counters.tx_bytes, d.len as u64);
                } else {
                    counters.drop(DropReason::TxFailed);
                }
            }
            start = end;
        }
    }

    fn attach(&mut self, leg: u32, ports: Vec<(LocalEndpoint, Option<UdpSocket>)>) {
        let locals: Vec<LocalEndpoint> = ports.iter().map(|(l, _)| *l).collect();
        self.adopt(ports);
        let Some(slot) = self.legs.get_mut(leg as usize) else {
            return;
        };
        *slot = [None; 2];
        for (n, local) in locals.into_iter().take(2).enumerate() {
            let Some(i) = self.index.of(local) else {
                tracing::error!(port = local.port, "media port outside the range");
                continue;
            };
            let Some(p) = &mut self.ports[i] else {
                tracing::error!(port = local.port, "media port has no socket");
                continue;
            };
            if !p.watched {
                match self.epoll.add(p.socket.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64)) {
                    Ok(()) => p.watched = true,
                    Err(e) => tracing::error!(port = local.port, error = %e, "cannot watch media socket"),
                }
            }
            p.active = true;
            slot[n] = Some(i);
        }
    }

    fn send_local(&mut self, from: LocalEndpoint, to: SocketAddr, payload: &[u8]) -> bool {
        let Some(Port { socket, .. }) = self.index.of(from).and_then(|i| self.ports[i].as_ref()) else {
            return false;
        };
        socket.send_to(payload, to).is_ok()
    }

    fn adopt(&mut self, ports: Vec<(LocalEndpoint, Option<UdpSocket>)>) {
        for (local, socket) in ports {
            let (Some(i), Some(socket)) = (self.index.of(local), socket) else { continue };
            if let Some(old) = self.ports[i].take() {
                if old.watched {
                    let _ = self.epoll.delete(old.socket.as_fd());
                }
            }
            let watched = match self.epoll.add(socket.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64)) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(port = local.port, error = %e, "cannot watch media socket; retried at its next session");
                    false
                }
            };
            self.ports[i] = Some(Port { local, socket, active: false, watched });
        }
    }

    fn detach(&mut self, leg: u32) {
        let Some(slot) = self.legs.get_mut(leg as usize) else {
            return;
        };
        for i in std::mem::take(slot).into_iter().flatten() {
            if let Some(p) = &mut self.ports[i] {
                p.active = false;
            }
        }
    }

    fn close_idle(&mut self, locals: &[LocalEndpoint]) {
        for &local in locals {
            let Some(i) = self.index.of(local) else { continue };
            if self.ports[i].as_ref().is_some_and(|p| !p.active) {
                if let Some(p) = self.ports[i].take().filter(|p| p.watched) {
                    let _ = self.epoll.delete(p.socket.as_fd());
                }
            }
        }
    }
}
