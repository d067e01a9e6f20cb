//! What a received frame is, and the in-place rewrite of a relayed one: pure
//! functions over the frame bytes (the mbuf's data), so they are testable and
//! fuzzable without EAL.
//!
//! [`classify`] sorts a frame into media (UDP to one of our media addresses,
//! on a media port), neighbour protocol traffic we answer or learn from, and
//! everything else, which the kernel gets through the TAP exception port.
//! [`rewrite_media`] turns a received media frame into the relayed one:
//! addresses, ports, TTL, and both checksums updated incrementally (RFC 1624).

use crate::engine::checksum_delta::ChecksumDelta;
use crate::session::LocalEndpoint;
use crate::wire::ethernet::{EtherType, EthernetAddress, Frame};
use crate::wire::ipv4::protocol;
use crate::wire::{arp, icmpv6, ipv4, ipv6, udp};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

/// TTL / hop limit of relayed datagrams: they start afresh at the appliance,
/// as if it had sent them (it is their source now).
pub const RELAY_TTL: u8 = 64;

/// The appliance's own addresses on the port, and the media subnet.
#[derive(Debug, Clone)]
pub struct Addressing {
    /// The port's (and the TAP's) MAC.
    pub mac: EthernetAddress,
    /// Media IPv4 addresses with their index in `media_ips`.
    pub v4: Vec<(u8, [u8; 4])>,
    /// Media IPv6 addresses with their index in `media_ips`.
    pub v6: Vec<(u8, [u8; 16])>,
    /// Every media address, by index (`LocalEndpoint::addr`).
    pub media_ips: Vec<IpAddr>,
    pub ports: RangeInclusive<u16>,
    /// Prefix length of the media subnet (clamped to 32 for IPv4).
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
}

impl Addressing {
    pub fn new(
        mac: EthernetAddress,
        media_ips: &[IpAddr],
        ports: RangeInclusive<u16>,
        prefix_len: u8,
        gateway: Option<IpAddr>,
    ) -> Addressing {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (i, ip) in media_ips.iter().enumerate() {
            match ip {
                IpAddr::V4(a) => v4.push((i as u8, a.octets())),
                IpAddr::V6(a) => v6.push((i as u8, a.octets())),
            }
        }
        Addressing { mac, v4, v6, media_ips: media_ips.to_vec(), ports, prefix_len, gateway }
    }

    #[inline]
    fn index_v4(&self, a: [u8; 4]) -> Option<u8> {
        self.v4.iter().find(|(_, m)| *m == a).map(|(i, _)| *i)
    }

    #[inline]
    fn index_v6(&self, a: &[u8; 16]) -> Option<u8> {
        self.v6.iter().find(|(_, m)| m == a).map(|(i, _)| *i)
    }

    /// Whether `ip` is inside the media subnet of one of our addresses.
    pub fn on_link(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let len = u32::from(self.prefix_len.min(32));
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let a = u32::from(a);
                self.v4.iter().any(|(_, m)| (u32::from_be_bytes(*m) ^ a) & mask == 0)
            }
            IpAddr::V6(a) => {
                let len = u32::from(self.prefix_len.min(128));
                let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
                let a = u128::from(a);
                self.v6.iter().any(|(_, m)| (u128::from_be_bytes(*m) ^ a) & mask == 0)
            }
        }
    }

    /// The neighbour a datagram to `dst` goes to: `dst` itself on the media
    /// subnet, else the gateway (of the same family).
    pub fn next_hop(&self, dst: IpAddr) -> Option<IpAddr> {
        if self.on_link(dst) {
            return Some(dst);
        }
        self.gateway.filter(|g| g.is_ipv4() == dst.is_ipv4())
    }

    /// Whether a neighbour learned from traffic is worth keeping: only next
    /// hops (the subnet and the gateway) are ever looked up.
    pub fn is_neighbour(&self, ip: IpAddr) -> bool {
        !ip.is_unspecified() && (self.on_link(ip) || self.gateway == Some(ip))
    }

    /// Our first address of the family of `ip`, the source of our own
    /// ARP and ND requests.
    pub fn source_for(&self, ip: IpAddr) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(_) => self.v4.first().map(|(_, a)| IpAddr::V4(Ipv4Addr::from(*a))),
            IpAddr::V6(_) => self.v6.first().map(|(_, a)| IpAddr::V6(Ipv6Addr::from(*a))),
        }
    }
}

/// Where the parts of a media frame are, as found by [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLayout {
    /// Offset of the IP header (the Ethernet header's length, 14 or 18).
    pub l3: u16,
    /// Offset of the UDP header.
    pub l4: u16,
    /// The UDP payload: `l4 + 8 .. payload_end`.
    pub payload_end: u16,
    pub v6: bool,
}

impl MediaLayout {
    pub fn payload(&self) -> std::ops::Range<usize> {
        usize::from(self.l4) + udp::HEADER_LEN..usize::from(self.payload_end)
    }
}

/// A media datagram: where it is in the frame and who sent it to which of
/// our endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Media {
    pub layout: MediaLayout,
    pub local: LocalEndpoint,
    pub source: SocketAddr,
    pub src_mac: EthernetAddress,
}

impl Media {
    /// A placeholder, for a slot not filled yet.
    pub const NONE: Media = Media {
        layout: MediaLayout { l3: 0, l4: 0, payload_end: 0, v6: false },
        local: LocalEndpoint { addr: 0, port: 0 },
        source: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        src_mac: EthernetAddress([0; 6]),
    };
}

/// What a received frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// UDP to a media address and port: the engine's.
    Media(Media),
    /// An ARP request for one of our media addresses: answered here.
    ArpRequestForUs { l3: u16, sender: (Ipv4Addr, EthernetAddress) },
    /// Other ARP: learned from, then the kernel's.
    Arp { sender: (Ipv4Addr, EthernetAddress) },
    /// A Neighbor Solicitation for one of our media addresses: answered here.
    SolicitForUs { l3: u16, target: [u8; 16], source: [u8; 16], source_mac: EthernetAddress },
    /// A Neighbor Advertisement: learned from, then the kernel's.
    Advert { target: Ipv6Addr, mac: EthernetAddress },
    /// Everything else: SIP, HTTP, SSH, ping, TCP, UDP to other ports,
    /// fragments, frames for other MACs, malformed ones.
    Kernel,
}

/// Sorts one received frame. Never panics, whatever the bytes.
pub fn classify(frame: &[u8], a: &Addressing) -> Class {
    let Ok(eth) = Frame::new_checked(frame) else { return Class::Kernel };
    let l3 = eth.header_len();
    match eth.ethertype() {
        EtherType::IPV4 => classify_ipv4(&eth, l3, a),
        EtherType::IPV6 => classify_ipv6(&eth, l3, a),
        EtherType::ARP => classify_arp(eth.payload(), l3, a),
        _ => Class::Kernel,
    }
}

fn classify_ipv4(eth: &Frame<&[u8]>, l3: usize, a: &Addressing) -> Class {
    let mut media = Media::NONE;
    if ipv4_media(eth, l3, a, &mut media) {
        Class::Media(media)
    } else {
        Class::Kernel
    }
}

/// The receive loop's fast path: when `frame` is IPv4 media (what
/// [`classify`] calls `Class::Media`), writes it to `out`, the burst slot
/// itself, and says so; anything else (IPv6 media included) is for
/// [`classify`]. Writing in place spares a `Class` returned through the
/// stack and copied into the slot, whose pieces the CPU could not forward
/// to the wider loads of the copy.
#[inline]
pub fn media_into(frame: &[u8], a: &Addressing, out: &mut Media) -> bool {
    let Ok(eth) = Frame::new_checked(frame) else { return false };
    eth.ethertype() == EtherType::IPV4 && ipv4_media(&eth, eth.header_len(), a, out)
}

#[inline]
fn ipv4_media(eth: &Frame<&[u8]>, l3: usize, a: &Addressing, out: &mut Media) -> bool {
    if eth.dst_addr() != a.mac {
        return false;
    }
    let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) else { return false };
    // Fragments need reassembly (the kernel's job); a bad header checksum
    // is the kernel's to drop and count.
    if ip.next_header() != protocol::UDP || ip.is_fragment() || !ip.verify_checksum() {
        return false;
    }
    let Some(addr) = a.index_v4(ip.dst_addr()) else { return false };
    let Ok(dgram) = udp::Packet::new_checked(ip.payload()) else { return false };
    let port = dgram.dst_port();
    if !a.ports.contains(&port) {
        return false;
    }
    let l4 = l3 + ip.header_len();
    out.layout =
        MediaLayout { l3: l3 as u16, l4: l4 as u16, payload_end: (l4 + usize::from(dgram.len())) as u16, v6: false };
    out.local = LocalEndpoint { addr, port };
    out.source = SocketAddr::new(IpAddr::V4(ip.src_ipv4()), dgram.src_port());
    out.src_mac = eth.src_addr();
    true
}

fn classify_ipv6(eth: &Frame<&[u8]>, l3: usize, a: &Addressing) -> Class {
    let Ok(ip) = ipv6::Packet::new_checked(eth.payload()) else { return Class::Kernel };
    match ip.next_header() {
        protocol::UDP if eth.dst_addr() == a.mac => {
            let Some(addr) = a.index_v6(&ip.dst_addr()) else { return Class::Kernel };
            let Ok(dgram) = udp::Packet::new_checked(ip.payload()) else { return Class::Kernel };
            let port = dgram.dst_port();
            if !a.ports.contains(&port) {
                return Class::Kernel;
            }
            let l4 = l3 + ipv6::HEADER_LEN;
            Class::Media(Media {
                layout: MediaLayout {
                    l3: l3 as u16,
                    l4: l4 as u16,
                    payload_end: (l4 + usize::from(dgram.len())) as u16,
                    v6: true,
                },
                local: LocalEndpoint { addr, port },
                source: SocketAddr::new(IpAddr::V6(ip.src_ipv6()), dgram.src_port()),
                src_mac: eth.src_addr(),
            })
        }
        protocol::ICMPV6 => classify_nd(eth, &ip, l3, a),
        _ => Class::Kernel,
    }
}

fn classify_nd(eth: &Frame<&[u8]>, ip: &ipv6::Packet<&[u8]>, l3: usize, a: &Addressing) -> Class {
    // RFC 4861 7.1.1: hop limit 255 (it never crossed a router), valid checksum.
    if ip.hop_limit() != 255 {
        return Class::Kernel;
    }
    let Ok(msg) = icmpv6::Packet::new_checked(ip.payload()) else { return Class::Kernel };
    if !msg.is_neighbor_discovery() || !msg.verify_checksum(&ip.src_addr(), &ip.dst_addr()) {
        return Class::Kernel;
    }
    match icmpv6::NdRepr::parse(&msg) {
        Ok(icmpv6::NdRepr::Solicit { target_addr, source_lladdr }) if a.index_v6(&target_addr).is_some() => {
            let source = ip.src_addr();
            // From :: (duplicate address detection) there is no option and
            // no unicast answer; otherwise answer the frame's sender.
            Class::SolicitForUs {
                l3: l3 as u16,
                target: target_addr,
                source,
                source_mac: source_lladdr.unwrap_or(eth.src_addr()),
            }
        }
        Ok(icmpv6::NdRepr::Advert { target_addr, target_lladdr: Some(mac), .. }) => {
            Class::Advert { target: Ipv6Addr::from(target_addr), mac }
        }
        _ => Class::Kernel,
    }
}

fn classify_arp(payload: &[u8], l3: usize, a: &Addressing) -> Class {
    let Ok(p) = arp::Packet::new_checked(payload) else { return Class::Kernel };
    let sender = (Ipv4Addr::from(p.source_protocol_addr()), p.source_hardware_addr());
    match p.operation() {
        arp::Operation::Request if a.index_v4(p.target_protocol_addr()).is_some() => {
            Class::ArpRequestForUs { l3: l3 as u16, sender }
        }
        _ => Class::Arp { sender },
    }
}

/// Where the engine sends a media frame: what `Datagram::readdress`
/// recorded, applied when the frame is transmitted (where the next hop is
/// resolved).
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub from: LocalEndpoint,
    pub to: SocketAddr,
    pub delta: ChecksumDelta,
}

/// Why a readdressed media frame was not sent (it counts as `tx_failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsent {
    /// The next hop's MAC is not known yet.
    Unresolved,
    /// No route: off-subnet with no gateway of that family.
    NoRoute,
    /// Between an IPv4 and an IPv6 leg.
    FamilyMismatch,
}

/// Frames not sent, by [`Unsent`] reason: kept by the backends that build
/// whole frames, logged when their worker stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnsentCounts {
    pub unresolved: u64,
    pub no_route: u64,
    pub family_mismatch: u64,
}

impl UnsentCounts {
    /// Publishes the totals to the worker's counters.
    pub fn publish(&self, counters: &crate::engine::counters::WorkerCounters) {
        use crate::engine::counters::BackendEvent;
        counters.set_backend(BackendEvent::Unresolved, self.unresolved);
        counters.set_backend(BackendEvent::NoRoute, self.no_route);
        counters.set_backend(BackendEvent::FamilyMismatch, self.family_mismatch);
    }

    pub fn count(&mut self, why: Unsent) {
        match why {
            Unsent::Unresolved => self.unresolved += 1,
            Unsent::NoRoute => self.no_route += 1,
            Unsent::FamilyMismatch => self.family_mismatch += 1,
        }
    }
}

/// Why a media frame could not be rewritten for its new destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteError {
    /// Source, destination and frame are not all of one IP family (relaying
    /// between IPv4 and IPv6 legs is not supported by this backend).
    FamilyMismatch,
    /// The layout does not fit the frame (a bug, or a changed mbuf).
    Layout,
}

/// Readdresses a media frame in place: IP source `src`, destination `to`,
/// UDP source port `src_port`, TTL/hop limit [`RELAY_TTL`]; the IPv4 header
/// checksum and the UDP checksum are updated incrementally (RFC 1624 eqn. 3),
/// `payload_delta` being what the engine's payload rewrite did to the latter.
/// A UDP checksum of 0 over IPv4 ("none") stays 0. Ethernet addresses are
/// the caller's (the next hop is resolved separately).
pub fn rewrite_media(
    frame: &mut [u8],
    layout: &MediaLayout,
    src: IpAddr,
    src_port: u16,
    to: SocketAddr,
    payload_delta: ChecksumDelta,
) -> Result<(), RewriteError> {
    let (l3, l4, end) = (usize::from(layout.l3), usize::from(layout.l4), usize::from(layout.payload_end));
    if l3 > l4 || l4 + udp::HEADER_LEN > end || end > frame.len() {
        return Err(RewriteError::Layout);
    }
    let (head, rest) = frame.split_at_mut(l4);
    let mut dgram = udp::Packet::new_unchecked(&mut rest[..end - l4]);
    let mut l4_delta = payload_delta;
    let old_ports = (dgram.src_port(), dgram.dst_port());
    l4_delta.replace16(old_ports.0, src_port);
    l4_delta.replace16(old_ports.1, to.port());
    match (layout.v6, src, to.ip()) {
        (false, IpAddr::V4(src), IpAddr::V4(dst)) => {
            if l4 - l3 < ipv4::HEADER_LEN {
                return Err(RewriteError::Layout);
            }
            let mut ip = ipv4::Packet::new_unchecked(&mut head[l3..]);
            let (old_src, old_dst) = (u32::from_be_bytes(ip.src_addr()), u32::from_be_bytes(ip.dst_addr()));
            let (new_src, new_dst) = (u32::from(src), u32::from(dst));
            let old_ttl_word = u16::from_be_bytes([ip.hop_limit(), ip.next_header()]);
            let new_ttl_word = u16::from_be_bytes([RELAY_TTL, ip.next_header()]);
            let mut addrs = ChecksumDelta::default();
            addrs.replace32(old_src, new_src);
            addrs.replace32(old_dst, new_dst);
            let mut header = addrs;
            header.replace16(old_ttl_word, new_ttl_word);
            ip.set_checksum(header.apply(ip.checksum()));
            ip.set_src_addr(src.octets());
            ip.set_dst_addr(dst.octets());
            ip.set_hop_limit(RELAY_TTL);
            let old = dgram.checksum();
            if old != 0 {
                l4_delta.add(addrs);
                let new = l4_delta.apply(old);
                dgram.set_checksum(if new == 0 { 0xffff } else { new });
            }
        }
        (true, IpAddr::V6(src), IpAddr::V6(dst)) => {
            if l4 - l3 < ipv6::HEADER_LEN {
                return Err(RewriteError::Layout);
            }
            let mut ip = ipv6::Packet::new_unchecked(&mut head[l3..]);
            let (new_src, new_dst) = (src.octets(), dst.octets());
            let old = dgram.checksum();
            if old == 0 {
                // Invalid over IPv6 (RFC 8200 8.1): computed whole instead, so
                // what leaves is valid.
                ip.set_src_addr(&new_src);
                ip.set_dst_addr(&new_dst);
                dgram.set_src_port(src_port);
                dgram.set_dst_port(to.port());
                dgram.fill_checksum_v6(&new_src, &new_dst);
            } else {
                for (old_addr, new_addr) in [(ip.src_addr(), new_src), (ip.dst_addr(), new_dst)] {
                    for (o, n) in old_addr.chunks_exact(2).zip(new_addr.chunks_exact(2)) {
                        l4_delta.replace16(u16::from_be_bytes([o[0], o[1]]), u16::from_be_bytes([n[0], n[1]]));
                    }
                }
                let new = l4_delta.apply(old);
                dgram.set_checksum(if new == 0 { 0xffff } else { new });
                ip.set_src_addr(&new_src);
                ip.set_dst_addr(&new_dst);
            }
            ip.set_hop_limit(RELAY_TTL);
        }
        _ => return Err(RewriteError::FamilyMismatch),
    }
    dgram.set_src_port(src_port);
    dgram.set_dst_port(to.port());
    Ok(())
}

/// Length of a UDP frame (no VLAN tag) carrying `payload` bytes.
pub fn udp_frame_len(v6: bool, payload: usize) -> usize {
    let ip = if v6 { ipv6::HEADER_LEN } else { ipv4::HEADER_LEN };
    crate::wire::ethernet::HEADER_LEN + ip + udp::HEADER_LEN + payload
}

/// Writes a whole UDP datagram from `src` to `dst` (one family) into
/// `buf` (at least [`udp_frame_len`] long), checksums computed: a packet
/// the dataplane originates (DTMF). Returns its length.
pub fn emit_udp(
    buf: &mut [u8],
    macs: (EthernetAddress, EthernetAddress),
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> Option<usize> {
    let v6 = src.is_ipv6();
    let len = udp_frame_len(v6, payload.len());
    let buf = buf.get_mut(..len)?;
    buf.fill(0);
    let eth_len = crate::wire::ethernet::HEADER_LEN;
    let mut eth = Frame::new_unchecked(&mut *buf);
    eth.set_src_addr(macs.0);
    eth.set_dst_addr(macs.1);
    eth.set_ethertype(if v6 { EtherType::IPV6 } else { EtherType::IPV4 });
    let udp_len = u16::try_from(udp::HEADER_LEN + payload.len()).ok()?;
    let l4 = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = ipv4::Packet::new_unchecked(&mut buf[eth_len..]);
            ip.set_version(4);
            ip.set_header_len(ipv4::HEADER_LEN);
            ip.set_total_len(u16::try_from(ipv4::HEADER_LEN).ok()? + udp_len);
            ip.set_dont_frag(true);
            ip.set_hop_limit(RELAY_TTL);
            ip.set_next_header(protocol::UDP);
            ip.set_src_addr(s.octets());
            ip.set_dst_addr(d.octets());
            ip.fill_checksum();
            eth_len + ipv4::HEADER_LEN
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ip = ipv6::Packet::new_unchecked(&mut buf[eth_len..]);
            ip.set_version(6);
            ip.set_payload_len(udp_len);
            ip.set_next_header(protocol::UDP);
            ip.set_hop_limit(RELAY_TTL);
            ip.set_src_addr(&s.octets());
            ip.set_dst_addr(&d.octets());
            eth_len + ipv6::HEADER_LEN
        }
        _ => return None,
    };
    let mut dgram = udp::Packet::new_unchecked(&mut buf[l4..]);
    dgram.set_src_port(src.port());
    dgram.set_dst_port(dst.port());
    dgram.set_len(udp_len);
    dgram.payload_mut()[..payload.len()].copy_from_slice(payload);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => dgram.fill_checksum_v4(s.octets(), d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => dgram.fill_checksum_v6(&s.octets(), &d.octets()),
        _ => return None,
    }
    Some(len)
}

/// Sets the Ethernet addresses of a frame going out of the port.
pub fn set_ethernet(frame: &mut [u8], src: EthernetAddress, dst: EthernetAddress) {
    if frame.len() >= 12 {
        let mut eth = Frame::new_unchecked(frame);
        eth.set_src_addr(src);
        eth.set_dst_addr(dst);
    }
}
