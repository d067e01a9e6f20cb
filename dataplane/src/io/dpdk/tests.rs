//! Tests of the pure parts of the DPDK backend, on byte buffers: no EAL.

use super::frame::{classify, rewrite_media, set_ethernet, Addressing, Class, RewriteError, RELAY_TTL};
use super::neighbour_frames::{
    answer_arp_request, answer_neighbor_solicit, emit_arp_request, emit_neighbor_solicit, nd_frame_len,
};
use super::*;
use crate::wire::ethernet::{self, EtherType, Frame};
use crate::wire::ipv4::protocol;
use crate::wire::{arp, icmpv6, ipv4, ipv6, udp};
use std::net::{Ipv4Addr, Ipv6Addr};

const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0xbb, 0, 0, 0, 1]);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0xaa, 0, 0, 0, 2]);
const NEXT_MAC: EthernetAddress = EthernetAddress([0x02, 0xaa, 0, 0, 0, 3]);
const MEDIA4: [u8; 4] = [192, 0, 2, 1];
const MEDIA4_B: [u8; 4] = [192, 0, 2, 9];
const PEER4: [u8; 4] = [192, 0, 2, 2];
const MEDIA6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const PEER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn addressing() -> Addressing {
    Addressing::new(
        OUR_MAC,
        &[IpAddr::from(MEDIA4), IpAddr::from(MEDIA6), IpAddr::from(MEDIA4_B)],
        20000..=20099,
        24,
        Some(IpAddr::from([192, 0, 2, 254])),
    )
}

/// An RTP-looking payload: version 2, PT 0, seq 7, ts 160, SSRC 0x11223344.
fn rtp_payload(len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[..12].copy_from_slice(&[0x80, 0x00, 0x00, 0x07, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44]);
    for (i, b) in p[12..].iter_mut().enumerate() {
        *b = i as u8 ^ 0x5a;
    }
    p
}

fn eth_header(buf: &mut Vec<u8>, dst: EthernetAddress, ethertype: EtherType, vlan: Option<u16>) {
    let repr = ethernet::Repr { src_addr: PEER_MAC, dst_addr: dst, ethertype, vlan_tci: vlan };
    let start = buf.len();
    buf.resize(start + repr.buffer_len(), 0);
    repr.emit(&mut Frame::new_unchecked(&mut buf[start..]));
}

/// An Ethernet/IPv4/UDP frame from the peer to `dst:dport`.
fn udp4(vlan: Option<u16>, dst: [u8; 4], dport: u16, payload: &[u8], with_checksum: bool) -> Vec<u8> {
    let mut f = Vec::new();
    eth_header(&mut f, OUR_MAC, EtherType::IPV4, vlan);
    let l3 = f.len();
    f.resize(l3 + ipv4::HEADER_LEN + udp::HEADER_LEN + payload.len(), 0);
    let ip = ipv4::Repr {
        src_addr: PEER4,
        dst_addr: dst,
        next_header: protocol::UDP,
        payload_len: udp::HEADER_LEN + payload.len(),
        hop_limit: 61,
    };
    ip.emit(&mut ipv4::Packet::new_unchecked(&mut f[l3..]));
    let l4 = l3 + ipv4::HEADER_LEN;
    let mut d = udp::Packet::new_unchecked(&mut f[l4..]);
    udp::Repr { src_port: 40000, dst_port: dport, payload_len: payload.len() }.emit(&mut d);
    d.payload_mut().copy_from_slice(payload);
    if with_checksum {
        d.fill_checksum_v4(PEER4, dst);
    }
    f
}

fn udp6(dst: [u8; 16], dport: u16, payload: &[u8], with_checksum: bool) -> Vec<u8> {
    let mut f = Vec::new();
    eth_header(&mut f, OUR_MAC, EtherType::IPV6, None);
    let l3 = f.len();
    f.resize(l3 + ipv6::HEADER_LEN + udp::HEADER_LEN + payload.len(), 0);
    ipv6::Repr {
        src_addr: PEER6,
        dst_addr: dst,
        next_header: protocol::UDP,
        payload_len: udp::HEADER_LEN + payload.len(),
        hop_limit: 50,
    }
    .emit(&mut ipv6::Packet::new_unchecked(&mut f[l3..]));
    let mut d = udp::Packet::new_unchecked(&mut f[l3 + ipv6::HEADER_LEN..]);
    udp::Repr { src_port: 40000, dst_port: dport, payload_len: payload.len() }.emit(&mut d);
    d.payload_mut().copy_from_slice(payload);
    if with_checksum {
        d.fill_checksum_v6(&PEER6, &dst);
    }
    f
}

fn arp_frame(op: arp::Operation, target: [u8; 4], dst: EthernetAddress) -> Vec<u8> {
    let mut f = Vec::new();
    eth_header(&mut f, dst, EtherType::ARP, None);
    let l3 = f.len();
    f.resize(neighbour_frames::MIN_FRAME, 0);
    arp::Repr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: PEER_MAC,
        source_protocol_addr: PEER4,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    }
    .emit(&mut arp::Packet::new_unchecked(&mut f[l3..]));
    f
}

fn media(class: Class) -> Media {
    match class {
        Class::Media(m) => m,
        other => panic!("not media: {other:?}"),
    }
}

#[test]
fn classifies_ipv4_media() {
    let a = addressing();
    let payload = rtp_payload(172);
    let f = udp4(None, MEDIA4, 20010, &payload, true);
    let m = media(classify(&f, &a));
    assert_eq!(m.local, LocalEndpoint { addr: 0, port: 20010 });
    assert_eq!(m.source, SocketAddr::from((PEER4, 40000)));
    assert_eq!(m.src_mac, PEER_MAC);
    assert_eq!((m.layout.l3, m.layout.l4, m.layout.v6), (14, 34, false));
    assert_eq!(&f[m.layout.payload()], &payload[..]);
    // The third configured address is index 2.
    let f = udp4(None, MEDIA4_B, 20099, &payload, true);
    assert_eq!(media(classify(&f, &a)).local, LocalEndpoint { addr: 2, port: 20099 });
    // Ethernet padding after the datagram is not payload.
    let mut padded = udp4(None, MEDIA4, 20010, &payload[..12], true);
    padded.resize(60, 0);
    assert_eq!(media(classify(&padded, &a)).layout.payload().len(), 12);
}

#[test]
fn classifies_vlan_tagged_media() {
    let a = addressing();
    let payload = rtp_payload(60);
    let f = udp4(Some(0x2064), MEDIA4, 20000, &payload, true);
    let m = media(classify(&f, &a));
    assert_eq!((m.layout.l3, m.layout.l4), (18, 38));
    assert_eq!(&f[m.layout.payload()], &payload[..]);
}

#[test]
fn classifies_ipv6_media() {
    let a = addressing();
    let payload = rtp_payload(40);
    let f = udp6(MEDIA6, 20002, &payload, true);
    let m = media(classify(&f, &a));
    assert_eq!(m.local, LocalEndpoint { addr: 1, port: 20002 });
    assert_eq!(m.source, SocketAddr::from((PEER6, 40000)));
    assert_eq!((m.layout.l3, m.layout.l4, m.layout.v6), (14, 54, true));
    assert_eq!(&f[m.layout.payload()], &payload[..]);
}

#[test]
fn everything_else_goes_to_the_kernel() {
    let a = addressing();
    let payload = rtp_payload(40);
    // SIP to a media address, port outside the media range.
    assert_eq!(classify(&udp4(None, MEDIA4, 5060, &payload, true), &a), Class::Kernel);
    // Not our address.
    assert_eq!(classify(&udp4(None, [192, 0, 2, 77], 20000, &payload, true), &a), Class::Kernel);
    // Not our MAC.
    let mut f = udp4(None, MEDIA4, 20000, &payload, true);
    f[..6].copy_from_slice(&NEXT_MAC.0);
    assert_eq!(classify(&f, &a), Class::Kernel);
    // A fragment (more fragments set): the kernel reassembles.
    let mut f = udp4(None, MEDIA4, 20000, &payload, true);
    let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
    ip.set_more_frags(true);
    ip.fill_checksum();
    assert_eq!(classify(&f, &a), Class::Kernel);
    // A bad IPv4 header checksum.
    let mut f = udp4(None, MEDIA4, 20000, &payload, true);
    f[14 + 10] ^= 0xff;
    assert_eq!(classify(&f, &a), Class::Kernel);
    // TCP and ICMP to a media address and port.
    for proto in [protocol::TCP, protocol::ICMP] {
        let mut f = udp4(None, MEDIA4, 20000, &payload, true);
        let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
        ip.set_next_header(proto);
        ip.fill_checksum();
        assert_eq!(classify(&f, &a), Class::Kernel);
    }
    // A UDP length beyond the packet.
    let mut f = udp4(None, MEDIA4, 20000, &payload, true);
    f[34 + 4..34 + 6].copy_from_slice(&2000u16.to_be_bytes());
    assert_eq!(classify(&f, &a), Class::Kernel);
    // Unknown EtherType, runts.
    let mut f = udp4(None, MEDIA4, 20000, &payload, true);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    assert_eq!(classify(&f, &a), Class::Kernel);
    assert_eq!(classify(&f[..13], &a), Class::Kernel);
    assert_eq!(classify(&[], &a), Class::Kernel);
}

#[test]
fn arp_requests_for_us_are_answered_in_place() {
    let a = addressing();
    let mut f = arp_frame(arp::Operation::Request, MEDIA4_B, EthernetAddress::BROADCAST);
    let sender = (Ipv4Addr::from(PEER4), PEER_MAC);
    assert_eq!(classify(&f, &a), Class::ArpRequestForUs { l3: 14, sender });
    assert!(answer_arp_request(&mut f, 14, OUR_MAC));
    let eth = Frame::new_checked(&f[..]).unwrap();
    assert_eq!((eth.dst_addr(), eth.src_addr(), eth.ethertype()), (PEER_MAC, OUR_MAC, EtherType::ARP));
    let reply = arp::Repr::parse(&arp::Packet::new_unchecked(&f[14..])).unwrap();
    assert_eq!(
        reply,
        arp::Repr::EthernetIpv4 {
            operation: arp::Operation::Reply,
            source_hardware_addr: OUR_MAC,
            source_protocol_addr: MEDIA4_B,
            target_hardware_addr: PEER_MAC,
            target_protocol_addr: PEER4,
        }
    );
    // Requests for other addresses and replies are learned from, then the kernel's.
    let other = arp_frame(arp::Operation::Request, [192, 0, 2, 3], EthernetAddress::BROADCAST);
    assert_eq!(classify(&other, &a), Class::Arp { sender });
    let reply = arp_frame(arp::Operation::Reply, MEDIA4, OUR_MAC);
    assert_eq!(classify(&reply, &a), Class::Arp { sender });
}

#[test]
fn arp_request_we_send() {
    let mut buf = [0xeeu8; 80];
    assert_eq!(emit_arp_request(&mut buf, OUR_MAC, MEDIA4, PEER4), Some(60));
    let eth = Frame::new_checked(&buf[..60]).unwrap();
    assert!(eth.dst_addr().is_broadcast());
    assert_eq!(eth.ethertype(), EtherType::ARP);
    let p = arp::Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(p.operation(), arp::Operation::Request);
    assert_eq!(
        (p.source_hardware_addr(), p.source_protocol_addr(), p.target_protocol_addr()),
        (OUR_MAC, MEDIA4, PEER4)
    );
    assert!(buf[42..60].iter().all(|&b| b == 0), "padded with zeros");
    assert_eq!(emit_arp_request(&mut buf[..59], OUR_MAC, MEDIA4, PEER4), None);
}

fn solicit(source: [u8; 16], target: [u8; 16], vlan: Option<u16>) -> Vec<u8> {
    let mut f = Vec::new();
    let mut group = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0, 0, 0];
    group[13..].copy_from_slice(&target[13..]);
    eth_header(&mut f, EthernetAddress::ipv6_multicast(&group), EtherType::IPV6, vlan);
    let l3 = f.len();
    let lladdr = (source != [0; 16]).then_some(PEER_MAC);
    let nd = icmpv6::NdRepr::Solicit { target_addr: target, source_lladdr: lladdr };
    f.resize(l3 + ipv6::HEADER_LEN + nd.buffer_len(), 0);
    ipv6::Repr {
        src_addr: source,
        dst_addr: group,
        next_header: protocol::ICMPV6,
        payload_len: nd.buffer_len(),
        hop_limit: 255,
    }
    .emit(&mut ipv6::Packet::new_unchecked(&mut f[l3..]));
    nd.emit(&mut icmpv6::Packet::new_unchecked(&mut f[l3 + ipv6::HEADER_LEN..]), &source, &group);
    f
}

fn check_advert(f: &[u8], l3: usize, dst: [u8; 16], dst_mac: EthernetAddress, flags: u8) {
    let eth = Frame::new_checked(f).unwrap();
    assert_eq!((eth.dst_addr(), eth.src_addr(), eth.ethertype()), (dst_mac, OUR_MAC, EtherType::IPV6));
    let ip = ipv6::Packet::new_checked(&f[l3..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr(), ip.hop_limit(), ip.next_header()), (MEDIA6, dst, 255, protocol::ICMPV6));
    let msg = icmpv6::Packet::new_checked(ip.payload()).unwrap();
    assert!(msg.verify_checksum(&MEDIA6, &dst));
    assert_eq!(
        icmpv6::NdRepr::parse(&msg).unwrap(),
        icmpv6::NdRepr::Advert { flags, target_addr: MEDIA6, target_lladdr: Some(OUR_MAC) }
    );
}

#[test]
fn neighbor_solicitations_for_us_are_answered() {
    let a = addressing();
    for vlan in [None, Some(7)] {
        let mut f = solicit(PEER6, MEDIA6, vlan);
        let l3 = if vlan.is_some() { 18 } else { 14 };
        let Class::SolicitForUs { l3: got_l3, target, source, source_mac } = classify(&f, &a) else {
            panic!("not a solicitation for us: {:?}", classify(&f, &a))
        };
        assert_eq!((usize::from(got_l3), target, source, source_mac), (l3, MEDIA6, PEER6, PEER_MAC));
        f.resize(nd_frame_len(l3), 0);
        assert!(answer_neighbor_solicit(&mut f, l3, OUR_MAC, &target, &source, source_mac));
        check_advert(&f, l3, PEER6, PEER_MAC, icmpv6::FLAG_SOLICITED | icmpv6::FLAG_OVERRIDE);
    }
    // Duplicate address detection (from ::): answered to all nodes, unsolicited.
    let mut f = solicit([0; 16], MEDIA6, None);
    let Class::SolicitForUs { target, source, source_mac, .. } = classify(&f, &a) else { panic!() };
    f.resize(nd_frame_len(14), 0);
    assert!(answer_neighbor_solicit(&mut f, 14, OUR_MAC, &target, &source, source_mac));
    let all_nodes = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    check_advert(&f, 14, all_nodes, EthernetAddress::ipv6_multicast(&all_nodes), icmpv6::FLAG_OVERRIDE);
    // For someone else, or with a hop limit below 255: the kernel's.
    assert_eq!(classify(&solicit(PEER6, PEER6, None), &a), Class::Kernel);
    let mut f = solicit(PEER6, MEDIA6, None);
    f[14 + 7] = 254;
    assert_eq!(classify(&f, &a), Class::Kernel);
    // A wrong buffer size is refused, not written.
    let mut f = solicit(PEER6, MEDIA6, None);
    f.truncate(nd_frame_len(14) - 8);
    assert!(!answer_neighbor_solicit(&mut f, 14, OUR_MAC, &MEDIA6, &PEER6, PEER_MAC));
}

#[test]
fn neighbor_solicitation_we_send() {
    let a = addressing();
    let mut buf = [0u8; 128];
    let n = emit_neighbor_solicit(&mut buf, OUR_MAC, &MEDIA6, &PEER6).unwrap();
    assert_eq!(n, 86);
    let eth = Frame::new_checked(&buf[..n]).unwrap();
    assert_eq!(eth.dst_addr(), EthernetAddress([0x33, 0x33, 0xff, 0, 0, 2]));
    let ip = ipv6::Packet::new_checked(eth.payload()).unwrap();
    let msg = icmpv6::Packet::new_checked(ip.payload()).unwrap();
    assert!(msg.verify_checksum(&MEDIA6, &ip.dst_addr()));
    assert_eq!(
        icmpv6::NdRepr::parse(&msg).unwrap(),
        icmpv6::NdRepr::Solicit { target_addr: PEER6, source_lladdr: Some(OUR_MAC) }
    );
    // The peer's answer is learned from.
    let mut advert = vec![0u8; nd_frame_len(14)];
    advert[..14].copy_from_slice(&buf[..14]);
    advert[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let (hdr, msg) = advert[14..].split_at_mut(ipv6::HEADER_LEN);
    ipv6::Repr { src_addr: PEER6, dst_addr: MEDIA6, next_header: protocol::ICMPV6, payload_len: 32, hop_limit: 255 }
        .emit(&mut ipv6::Packet::new_unchecked(hdr));
    icmpv6::emit_neighbor_advert(msg, &PEER6, &MEDIA6, &PEER6, NEXT_MAC, icmpv6::FLAG_SOLICITED).unwrap();
    assert_eq!(classify(&advert, &a), Class::Advert { target: Ipv6Addr::from(PEER6), mac: NEXT_MAC });
}

/// What the engine does to an RTP payload: a new SSRC and sequence number,
/// with the checksum delta it reports.
fn engine_rewrite(f: &mut [u8], m: &Media) -> ChecksumDelta {
    let p = &mut f[m.layout.payload()];
    let mut delta = ChecksumDelta::default();
    let old_seq = u16::from_be_bytes([p[2], p[3]]);
    let old_ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
    p[2..4].copy_from_slice(&0xbeefu16.to_be_bytes());
    p[8..12].copy_from_slice(&0xcafe_f00du32.to_be_bytes());
    delta.replace16(old_seq, 0xbeef);
    delta.replace32(old_ssrc, 0xcafe_f00d);
    delta
}

fn check_ipv4_out(f: &[u8], l3: usize, dst: SocketAddr, checksum_expected: bool) {
    let ip = ipv4::Packet::new_checked(&f[l3..]).unwrap();
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    assert_eq!(ip.hop_limit(), RELAY_TTL);
    assert_eq!(ip.src_addr(), MEDIA4_B);
    assert_eq!(IpAddr::from(ip.dst_addr()), dst.ip());
    let d = udp::Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((d.src_port(), d.dst_port()), (20042, dst.port()));
    assert_eq!(d.checksum() != 0, checksum_expected);
    assert!(d.verify_checksum_v4(ip.src_addr(), ip.dst_addr()), "UDP checksum");
    if checksum_expected {
        // Matches a full recompute (a computed 0 is sent as 0xffff either way).
        let mut copy = ip.payload().to_vec();
        let mut c = udp::Packet::new_unchecked(&mut copy[..]);
        c.fill_checksum_v4(ip.src_addr(), ip.dst_addr());
        assert_eq!(c.checksum(), d.checksum());
    }
}

#[test]
fn readdress_ipv4_updates_checksums_incrementally() {
    let a = addressing();
    let to = SocketAddr::from(([198, 51, 100, 7], 31000));
    for vlan in [None, Some(0x0064)] {
        for len in [12, 13, 160, 1200] {
            let mut f = udp4(vlan, MEDIA4, 20010, &rtp_payload(len), true);
            let m = media(classify(&f, &a));
            let delta = engine_rewrite(&mut f, &m);
            rewrite_media(&mut f, &m.layout, IpAddr::from(MEDIA4_B), 20042, to, delta).unwrap();
            set_ethernet(&mut f, OUR_MAC, NEXT_MAC);
            let eth = Frame::new_checked(&f[..]).unwrap();
            assert_eq!((eth.src_addr(), eth.dst_addr(), eth.vlan()), (OUR_MAC, NEXT_MAC, vlan.map(|t| t & 0xfff)));
            check_ipv4_out(&f, usize::from(m.layout.l3), to, true);
            assert_eq!(&f[m.layout.payload()][8..12], &0xcafe_f00du32.to_be_bytes());
        }
    }
}

#[test]
fn readdress_keeps_a_zero_udp_checksum_over_ipv4() {
    let a = addressing();
    let to = SocketAddr::from(([192, 0, 2, 3], 40002));
    let mut f = udp4(None, MEDIA4, 20010, &rtp_payload(160), false);
    let m = media(classify(&f, &a));
    let delta = engine_rewrite(&mut f, &m);
    rewrite_media(&mut f, &m.layout, IpAddr::from(MEDIA4_B), 20042, to, delta).unwrap();
    check_ipv4_out(&f, 14, to, false);
}

#[test]
fn readdress_every_checksum_value() {
    // Payload words chosen so the result sweeps the checksum space,
    // including the 0 / 0xffff edge.
    let a = addressing();
    let to = SocketAddr::from(([192, 0, 2, 3], 40002));
    for k in 0..2048u16 {
        let mut payload = rtp_payload(20);
        payload[12..14].copy_from_slice(&k.wrapping_mul(32).to_be_bytes());
        payload[14..16].copy_from_slice(&(!k).to_be_bytes());
        let mut f = udp4(None, MEDIA4, 20010, &payload, true);
        let m = media(classify(&f, &a));
        let delta = engine_rewrite(&mut f, &m);
        rewrite_media(&mut f, &m.layout, IpAddr::from(MEDIA4_B), 20042, to, delta).unwrap();
        check_ipv4_out(&f, 14, to, true);
    }
}

#[test]
fn readdress_ipv6() {
    let a = addressing();
    let to = SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x99), 30000));
    for with_checksum in [true, false] {
        let mut f = udp6(MEDIA6, 20002, &rtp_payload(100), with_checksum);
        let m = media(classify(&f, &a));
        let delta = engine_rewrite(&mut f, &m);
        rewrite_media(&mut f, &m.layout, IpAddr::from(MEDIA6), 20042, to, delta).unwrap();
        let ip = ipv6::Packet::new_checked(&f[14..]).unwrap();
        assert_eq!((ip.src_addr(), IpAddr::from(ip.dst_addr()), ip.hop_limit()), (MEDIA6, to.ip(), RELAY_TTL));
        let d = udp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((d.src_port(), d.dst_port()), (20042, 30000));
        assert!(d.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr()), "with_checksum={with_checksum}");
    }
}

#[test]
fn readdress_refuses_mixed_families() {
    let a = addressing();
    let mut f = udp4(None, MEDIA4, 20010, &rtp_payload(40), true);
    let before = f.clone();
    let m = media(classify(&f, &a));
    let v6 = SocketAddr::from((PEER6, 1));
    assert_eq!(
        rewrite_media(&mut f, &m.layout, IpAddr::from(MEDIA4), 1, v6, ChecksumDelta::default()),
        Err(RewriteError::FamilyMismatch)
    );
    assert_eq!(
        rewrite_media(&mut f, &m.layout, IpAddr::from(MEDIA6), 1, v6, ChecksumDelta::default()),
        Err(RewriteError::FamilyMismatch)
    );
    assert_eq!(f, before, "a refused rewrite changes nothing");
    let mut short = m.layout;
    short.payload_end = 2000;
    assert_eq!(
        rewrite_media(&mut f, &short, IpAddr::from(MEDIA4), 1, SocketAddr::from((PEER4, 1)), ChecksumDelta::default()),
        Err(RewriteError::Layout)
    );
}

#[test]
fn next_hops() {
    let a = addressing();
    let on_link = IpAddr::from([192, 0, 2, 200]);
    assert_eq!(a.next_hop(on_link), Some(on_link));
    assert_eq!(a.next_hop(IpAddr::from([198, 51, 100, 7])), Some(IpAddr::from([192, 0, 2, 254])));
    // No IPv6 gateway; /24 over IPv6 makes 2001:db8::/24 on-link.
    assert_eq!(a.next_hop(IpAddr::from(PEER6)), Some(IpAddr::from(PEER6)));
    assert_eq!(a.next_hop(IpAddr::from(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 1))), None);
    assert!(a.is_neighbour(on_link));
    assert!(!a.is_neighbour(IpAddr::from([198, 51, 100, 7])));
    assert!(!a.is_neighbour(IpAddr::from([0, 0, 0, 0])));
    let no_gw = Addressing::new(OUR_MAC, &[IpAddr::from(MEDIA4)], 20000..=20001, 32, None);
    assert_eq!(no_gw.next_hop(on_link), None);
    assert_eq!(a.source_for(on_link), Some(IpAddr::from(MEDIA4)));
    assert_eq!(a.source_for(IpAddr::from(PEER6)), Some(IpAddr::from(MEDIA6)));
}

#[test]
fn eal_arguments() {
    let configured = vec!["--no-huge".to_owned(), "--vdev=net_tap0".to_owned()];
    let (args, prefix) = eal_args(&configured, 4242);
    assert_eq!(args, ["bridgehead", "--no-huge", "--vdev=net_tap0", "--file-prefix=bridgehead-4242"]);
    assert_eq!(prefix.as_deref(), Some("bridgehead-4242"));
    for given in [vec!["--file-prefix=mine".to_owned()], vec!["--file-prefix".to_owned(), "mine".to_owned()]] {
        let (args, prefix) = eal_args(&given, 1);
        assert_eq!(args.len(), given.len() + 1);
        assert_eq!(prefix, None);
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn no_panic_and_valid_output_on_mutated_frames() {
    let a = addressing();
    let to = SocketAddr::from(([192, 0, 2, 3], 40002));
    let fixtures = [
        udp4(None, MEDIA4, 20010, &rtp_payload(40), true),
        udp4(Some(5), MEDIA4, 20010, &rtp_payload(40), false),
        udp6(MEDIA6, 20002, &rtp_payload(40), true),
        arp_frame(arp::Operation::Request, MEDIA4, EthernetAddress::BROADCAST),
        solicit(PEER6, MEDIA6, None),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for fixture in &fixtures {
        for round in 0..4000 {
            let mut f = fixture.clone();
            if round % 3 == 0 {
                f.truncate(rng.next() as usize % (f.len() + 1));
            }
            for _ in 0..1 + rng.next() % 3 {
                if !f.is_empty() {
                    let i = rng.next() as usize % f.len();
                    f[i] = rng.next() as u8;
                }
            }
            // The receive loop's fast path agrees with `classify`, field by field.
            let mut fast = Media::NONE;
            let class = classify(&f, &a);
            match (super::frame::media_into(&f, &a, &mut fast), &class) {
                (true, Class::Media(m)) => assert_eq!(&fast, m),
                (false, Class::Media(m)) => assert!(m.layout.v6, "IPv4 media the fast path missed: {m:?}"),
                (true, other) => panic!("the fast path took {other:?} for media"),
                (false, _) => {}
            }
            match class {
                Class::Media(m) => {
                    let v4 = !m.layout.v6;
                    let (src, dst) = if v4 {
                        (IpAddr::from(MEDIA4), to)
                    } else {
                        (IpAddr::from(MEDIA6), SocketAddr::from((PEER6, 9)))
                    };
                    rewrite_media(&mut f, &m.layout, src, 20042, dst, ChecksumDelta::default()).unwrap();
                    if v4 {
                        let ip = ipv4::Packet::new_checked(&f[usize::from(m.layout.l3)..]).unwrap();
                        assert!(ip.verify_checksum());
                    }
                }
                Class::ArpRequestForUs { l3, .. } => assert!(answer_arp_request(&mut f, usize::from(l3), OUR_MAC)),
                Class::SolicitForUs { l3, target, source, source_mac } => {
                    f.resize(nd_frame_len(usize::from(l3)), 0);
                    assert!(answer_neighbor_solicit(&mut f, usize::from(l3), OUR_MAC, &target, &source, source_mac));
                }
                _ => {}
            }
        }
    }
}

#[test]
fn originated_udp_frames_are_whole_and_valid() {
    let a = addressing();
    let payload = [0x80, 101, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 1, 10, 0, 160];
    // IPv4: what a peer at the media address would see as media for it.
    let mut buf = vec![0u8; 128];
    let (from, to) = (SocketAddr::from((PEER4, 40000)), SocketAddr::from((MEDIA4, 20010)));
    let len = super::frame::emit_udp(&mut buf, (PEER_MAC, OUR_MAC), from, to, &payload).unwrap();
    assert_eq!(len, super::frame::udp_frame_len(false, payload.len()));
    let f = &buf[..len];
    let m = media(classify(f, &a));
    assert_eq!((m.local, m.source, m.src_mac), (LocalEndpoint { addr: 0, port: 20010 }, from, PEER_MAC));
    assert_eq!(&f[m.layout.payload()], &payload[..]);
    let ip = ipv4::Packet::new_checked(&f[14..]).unwrap();
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    assert_eq!((ip.hop_limit(), ip.next_header()), (RELAY_TTL, protocol::UDP));
    let d = udp::Packet::new_checked(ip.payload()).unwrap();
    assert!(d.checksum() != 0 && d.verify_checksum_v4(ip.src_addr(), ip.dst_addr()), "UDP checksum");
    // IPv6.
    let (from, to) = (SocketAddr::from((PEER6, 40000)), SocketAddr::from((MEDIA6, 20012)));
    let len = super::frame::emit_udp(&mut buf, (PEER_MAC, OUR_MAC), from, to, &payload).unwrap();
    let f = &buf[..len];
    let m = media(classify(f, &a));
    assert_eq!((m.local, m.source), (LocalEndpoint { addr: 1, port: 20012 }, from));
    let ip = ipv6::Packet::new_checked(&f[14..]).unwrap();
    let d = udp::Packet::new_checked(ip.payload()).unwrap();
    assert!(d.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr()));
    // Mixed families and short buffers are refused.
    assert!(super::frame::emit_udp(&mut buf, (PEER_MAC, OUR_MAC), SocketAddr::from((PEER4, 1)), to, &payload).is_none());
    assert!(super::frame::emit_udp(&mut buf[..40], (PEER_MAC, OUR_MAC), from, to, &payload).is_none());
}
