//! The ARP and Neighbor Discovery frames the backend writes itself: answers
//! to requests for our media addresses (built in place in the request's
//! buffer) and requests for next hops it cannot resolve. Pure functions over
//! byte buffers.

use crate::wire::ethernet::{self, EtherType, EthernetAddress, Frame};
use crate::wire::ipv4::protocol;
use crate::wire::{arp, icmpv6, ipv6};

/// Shortest Ethernet frame (without FCS): ARP requests are padded to it.
pub const MIN_FRAME: usize = 60;
/// Length of a Neighbor Advertisement/Solicitation frame we write after an
/// `l3`-byte Ethernet header: IPv6 header, 24-byte message, 8-byte option.
pub const fn nd_frame_len(l3: usize) -> usize {
    l3 + ipv6::HEADER_LEN + icmpv6::ND_HEADER_LEN + 8
}

/// Turns an ARP request for one of our addresses (already classified as
/// such) into the reply, in place: "target is at `mac`", sent back to the
/// requester. The VLAN tag, if any, stays.
pub fn answer_arp_request(frame: &mut [u8], l3: usize, mac: EthernetAddress) -> bool {
    let Some(payload) = frame.get_mut(l3..) else { return false };
    let Ok(mut p) = arp::Packet::new_checked(payload) else { return false };
    let (sha, spa, tpa) = (p.source_hardware_addr(), p.source_protocol_addr(), p.target_protocol_addr());
    p.set_operation(arp::Operation::Reply);
    p.set_source_hardware_addr(mac);
    p.set_source_protocol_addr(tpa);
    p.set_target_hardware_addr(sha);
    p.set_target_protocol_addr(spa);
    let mut eth = Frame::new_unchecked(frame);
    eth.set_dst_addr(sha);
    eth.set_src_addr(mac);
    true
}

/// Writes a broadcast "who has `target`, tell `ip`" into `buf` and returns
/// its length ([`MIN_FRAME`]), or `None` if `buf` is shorter.
pub fn emit_arp_request(buf: &mut [u8], mac: EthernetAddress, ip: [u8; 4], target: [u8; 4]) -> Option<usize> {
    let buf = buf.get_mut(..MIN_FRAME)?;
    buf.fill(0);
    ethernet::Repr { src_addr: mac, dst_addr: EthernetAddress::BROADCAST, ethertype: EtherType::ARP, vlan_tci: None }
        .emit(&mut Frame::new_unchecked(&mut *buf));
    arp::Repr::EthernetIpv4 {
        operation: arp::Operation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    }
    .emit(&mut arp::Packet::new_unchecked(&mut buf[ethernet::HEADER_LEN..]));
    Some(MIN_FRAME)
}

/// The all-nodes multicast group, where answers to duplicate address
/// detection go.
const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Writes the Neighbor Advertisement answering a solicitation for our
/// `target` from `source` (at `source_mac`) over the frame that carried it,
/// keeping its Ethernet header (VLAN tag included) but for the addresses.
/// `frame` must be exactly [`nd_frame_len`]`(l3)` long (the caller sizes
/// the mbuf). Returns false if it is not.
pub fn answer_neighbor_solicit(
    frame: &mut [u8],
    l3: usize,
    mac: EthernetAddress,
    target: &[u8; 16],
    source: &[u8; 16],
    source_mac: EthernetAddress,
) -> bool {
    if frame.len() != nd_frame_len(l3) || l3 < ethernet::HEADER_LEN {
        return false;
    }
    // RFC 4861 7.2.4: to the solicitor, solicited; from :: (DAD) to all
    // nodes, unsolicited. Our address is not a router's.
    let (dst, dst_mac, flags) = if source == &[0; 16] {
        (ALL_NODES, EthernetAddress::ipv6_multicast(&ALL_NODES), icmpv6::FLAG_OVERRIDE)
    } else {
        (*source, source_mac, icmpv6::FLAG_SOLICITED | icmpv6::FLAG_OVERRIDE)
    };
    let mut eth = Frame::new_unchecked(&mut *frame);
    eth.set_dst_addr(dst_mac);
    eth.set_src_addr(mac);
    let (_, ip) = frame.split_at_mut(l3);
    let (header, message) = ip.split_at_mut(ipv6::HEADER_LEN);
    ipv6::Repr {
        src_addr: *target,
        dst_addr: dst,
        next_header: protocol::ICMPV6,
        payload_len: message.len(),
        hop_limit: 255,
    }
    .emit(&mut ipv6::Packet::new_unchecked(header));
    icmpv6::emit_neighbor_advert(message, target, &dst, target, mac, flags).is_ok()
}

/// Writes a Neighbor Solicitation for `target` from our `ip` to its
/// solicited-node multicast group; returns its length, or `None` if `buf`
/// is shorter than [`nd_frame_len`]`(14)`.
pub fn emit_neighbor_solicit(buf: &mut [u8], mac: EthernetAddress, ip: &[u8; 16], target: &[u8; 16]) -> Option<usize> {
    let len = nd_frame_len(ethernet::HEADER_LEN);
    let buf = buf.get_mut(..len)?;
    let mut group = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0, 0, 0];
    group[13..].copy_from_slice(&target[13..]);
    ethernet::Repr {
        src_addr: mac,
        dst_addr: EthernetAddress::ipv6_multicast(&group),
        ethertype: EtherType::IPV6,
        vlan_tci: None,
    }
    .emit(&mut Frame::new_unchecked(&mut *buf));
    let (header, message) = buf[ethernet::HEADER_LEN..].split_at_mut(ipv6::HEADER_LEN);
    ipv6::Repr {
        src_addr: *ip,
        dst_addr: group,
        next_header: protocol::ICMPV6,
        payload_len: message.len(),
        hop_limit: 255,
    }
    .emit(&mut ipv6::Packet::new_unchecked(header));
    icmpv6::NdRepr::Solicit { target_addr: *target, source_lladdr: Some(mac) }.emit(
        &mut icmpv6::Packet::new_unchecked(message),
        ip,
        &group,
    );
    Some(len)
}
