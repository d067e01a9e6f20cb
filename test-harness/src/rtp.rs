//! An RTP endpoint for tests: a UDP socket that sends G.711 (PCMU) packets
//! and receives and checks what comes back.
//!
//! Each payload starts with the stamp it was sent with (SSRC, sequence
//! number, timestamp: 10 bytes), followed by a pattern derived from that
//! stamp. A receiver can so tell which packet it got even after the relay
//! rewrote the header, and whether the payload arrived unchanged.

use crate::netns::Netns;
use anyhow::{Context, Result};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

pub const HEADER_LEN: usize = 12;
/// 20 ms of G.711 at 8 kHz.
pub const PCMU_SAMPLES: u32 = 160;
pub const PT_PCMU: u8 = 0;
const STAMP_LEN: usize = 10;
/// Receive buffer asked for on test sockets (the kernel caps it at rmem_max).
const RCVBUF: usize = 4 << 20;

/// What identifies one sent packet: the header it was sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
}

/// An outgoing RTP stream: one SSRC, consecutive sequence numbers, the
/// timestamp advancing one frame per packet.
#[derive(Debug, Clone)]
pub struct RtpStream {
    pub ssrc: u32,
    pub next_seq: u16,
    pub next_ts: u32,
    pub pt: u8,
    pub samples_per_packet: u32,
    pub payload_len: usize,
}

impl RtpStream {
    /// PCMU, 20 ms frames, 160-byte payloads.
    pub fn pcmu(ssrc: u32, first_seq: u16, first_ts: u32) -> RtpStream {
        RtpStream {
            ssrc,
            next_seq: first_seq,
            next_ts: first_ts,
            pt: PT_PCMU,
            samples_per_packet: PCMU_SAMPLES,
            payload_len: 160,
        }
    }

    /// Size of each datagram (RTP header + payload).
    pub fn packet_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// The next packet, and its stamp.
    pub fn next_packet(&mut self) -> (Vec<u8>, Stamp) {
        let stamp = Stamp { ssrc: self.ssrc, seq: self.next_seq, ts: self.next_ts };
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_ts = self.next_ts.wrapping_add(self.samples_per_packet);
        let mut p = Vec::with_capacity(self.packet_len());
        p.push(0x80); // V=2, no padding, no extension, no CSRC
        p.push(self.pt & 0x7f);
        p.extend_from_slice(&stamp.seq.to_be_bytes());
        p.extend_from_slice(&stamp.ts.to_be_bytes());
        p.extend_from_slice(&stamp.ssrc.to_be_bytes());
        p.extend_from_slice(&stamp.ssrc.to_be_bytes());
        p.extend_from_slice(&stamp.seq.to_be_bytes());
        p.extend_from_slice(&stamp.ts.to_be_bytes());
        for i in STAMP_LEN..self.payload_len.max(STAMP_LEN) {
            p.push(pattern(stamp, i));
        }
        (p, stamp)
    }
}

fn pattern(stamp: Stamp, i: usize) -> u8 {
    (u32::from(stamp.seq).wrapping_mul(31) ^ stamp.ssrc.rotate_left(i as u32 % 32) ^ (i as u32).wrapping_mul(7)) as u8
}

/// The fixed RTP header of a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
}

/// One datagram as a test endpoint received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: SocketAddr,
    pub len: usize,
    /// None when shorter than an RTP header.
    pub header: Option<Header>,
    /// The stamp the original sender put in the payload.
    pub origin: Option<Stamp>,
    /// The payload is exactly what the original sender made for `origin`.
    pub intact: bool,
}

impl Received {
    pub fn parse(from: SocketAddr, data: &[u8]) -> Received {
        let header = (data.len() >= HEADER_LEN).then(|| Header {
            version: data[0] >> 6,
            marker: data[1] & 0x80 != 0,
            pt: data[1] & 0x7f,
            seq: u16::from_be_bytes([data[2], data[3]]),
            ts: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        });
        let payload = data.get(HEADER_LEN..).unwrap_or_default();
        let origin = (payload.len() >= STAMP_LEN).then(|| Stamp {
            ssrc: u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
            seq: u16::from_be_bytes([payload[4], payload[5]]),
            ts: u32::from_be_bytes([payload[6], payload[7], payload[8], payload[9]]),
        });
        let intact =
            origin.is_some_and(|o| payload.iter().enumerate().skip(STAMP_LEN).all(|(i, &b)| b == pattern(o, i)));
        Received { from, len: data.len(), header, origin, intact }
    }
}

/// How fast a stream is sent.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As fast as possible, pausing 1 ms after every this many packets.
    Bursts(usize),
    /// One packet per interval (real time is 20 ms for G.711).
    Every(Duration),
}

/// A UDP socket in some namespace, used from the test thread.
#[derive(Debug)]
pub struct RtpEndpoint {
    socket: UdpSocket,
    local: SocketAddr,
}

impl RtpEndpoint {
    /// Binds `addr` (port 0: any) inside `ns`.
    pub fn bind_in(ns: &Netns, addr: SocketAddr) -> Result<RtpEndpoint> {
        let socket =
            ns.run_in(|| UdpSocket::bind(addr))?.with_context(|| format!("binding {addr} in {}", ns.name()))?;
        let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &RCVBUF);
        let local = socket.local_addr()?;
        Ok(RtpEndpoint { socket, local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn send_raw(&self, to: SocketAddr, data: &[u8]) -> Result<()> {
        let n = self
            .socket
            .send_to(data, to)
            .with_context(|| format!("sending {} bytes from {} to {to}", data.len(), self.local))?;
        anyhow::ensure!(n == data.len(), "short send: {n} of {} bytes", data.len());
        Ok(())
    }

    /// Sends `count` packets of `stream` to `to`; returns their stamps in order.
    pub fn send_stream(&self, to: SocketAddr, stream: &mut RtpStream, count: usize, pace: Pace) -> Result<Vec<Stamp>> {
        let mut sent = Vec::with_capacity(count);
        for i in 0..count {
            let (packet, stamp) = stream.next_packet();
            self.send_raw(to, &packet)?;
            sent.push(stamp);
            match pace {
                Pace::Bursts(n) if (i + 1) % n.max(1) == 0 => std::thread::sleep(Duration::from_millis(1)),
                Pace::Bursts(_) => {}
                Pace::Every(d) => std::thread::sleep(d),
            }
        }
        Ok(sent)
    }

    /// Receives until `count` datagrams arrived or `within` passed, whichever
    /// comes first; the caller checks how many came.
    pub fn receive(&self, count: usize, within: Duration) -> Result<Vec<Received>> {
        receive_on(&self.socket, count, within)
    }

    /// Like [`receive`](Self::receive), on a background thread, so that a
    /// burst is read while it arrives.
    pub fn receive_in_background(
        &self,
        count: usize,
        within: Duration,
    ) -> Result<std::thread::JoinHandle<Result<Vec<Received>>>> {
        let socket = self.socket.try_clone()?;
        Ok(std::thread::spawn(move || receive_on(&socket, count, within)))
    }

    /// Like [`receive_in_background`](Self::receive_in_background), keeping
    /// each datagram's source and bytes as they are (for RTCP and the like).
    pub fn receive_raw_in_background(
        &self,
        count: usize,
        within: Duration,
    ) -> Result<std::thread::JoinHandle<Result<Vec<Raw>>>> {
        let socket = self.socket.try_clone()?;
        Ok(std::thread::spawn(move || receive_raw_on(&socket, count, within)))
    }

    /// Discards whatever is queued.
    pub fn drain(&self) -> Result<usize> {
        Ok(receive_on(&self.socket, usize::MAX, Duration::from_millis(1))?.len())
    }
}

/// A datagram as it arrived: source and bytes.
pub type Raw = (SocketAddr, Vec<u8>);

fn receive_on(socket: &UdpSocket, count: usize, within: Duration) -> Result<Vec<Received>> {
    Ok(receive_raw_on(socket, count, within)?.iter().map(|(from, data)| Received::parse(*from, data)).collect())
}

/// Receives until `count` datagrams arrived or `within` passed.
fn receive_raw_on(socket: &UdpSocket, count: usize, within: Duration) -> Result<Vec<Raw>> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => out.push((from, buf[..n].to_vec())),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
            // An ICMP error for an earlier send of this socket: not a datagram.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e).context("receiving"),
        }
    }
    Ok(out)
}

/// Checks that `got` is exactly `sent`, in order, unchanged (header and
/// payload), every packet coming from `from`.
pub fn assert_relayed_verbatim(what: &str, sent: &[Stamp], got: &[Received], from: SocketAddr) {
    assert_eq!(got.len(), sent.len(), "{what}: received {} of {} packets", got.len(), sent.len());
    for (i, (s, r)) in sent.iter().zip(got).enumerate() {
        assert_eq!(r.from, from, "{what}: packet {i} came from {} instead of {from}", r.from);
        assert_eq!(r.origin, Some(*s), "{what}: packet {i} is not the one sent {i}th (out of order or foreign)");
        assert!(r.intact, "{what}: packet {i} (seq {}) payload changed", s.seq);
        let h = r.header.expect("origin implies a header");
        assert_eq!((h.version, h.ssrc, h.seq, h.ts), (2, s.ssrc, s.seq, s.ts), "{what}: packet {i} header rewritten");
    }
}

/// Checks that `got` holds the packets of `sent`, in order, each payload
/// exactly as its sender made it and every packet from `from`; the headers
/// may have been rewritten on the way (a B2BUA may renumber a stream).
pub fn assert_payloads_delivered(what: &str, sent: &[Stamp], got: &[Received], from: SocketAddr) {
    assert_eq!(got.len(), sent.len(), "{what}: received {} of {} packets", got.len(), sent.len());
    for (i, (s, r)) in sent.iter().zip(got).enumerate() {
        assert_eq!(r.from, from, "{what}: packet {i} came from {} instead of {from}", r.from);
        assert_eq!(r.origin, Some(*s), "{what}: packet {i} is not the one sent {i}th (out of order or foreign)");
        assert!(r.intact, "{what}: packet {i} (seq {}) payload changed", s.seq);
        let h = r.header.expect("origin implies a header");
        assert_eq!((h.version, h.pt), (2, PT_PCMU), "{what}: packet {i} is not RTP/PCMU");
    }
}
