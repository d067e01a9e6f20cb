//! Frames as the DPDK backend receives them: the Ethernet, IPv4, IPv6,
//! UDP, ARP and ICMPv6 Neighbor Discovery views of `dataplane::wire`, in
//! the order the backend's frame classifier takes them (the classifier
//! itself needs libdpdk; these are the views it is built on).
//!
//! Invariants beyond "no panic": every `Repr` that parses, emitted into a
//! buffer of its `buffer_len`, parses back to itself; a checked view's
//! payload lies within the buffer.
#![no_main]

use dataplane::wire::ethernet::{EtherType, Frame};
use dataplane::wire::{arp, ethernet, icmpv6, ipv4, ipv6, udp};
use libfuzzer_sys::fuzz_target;

fn udp_datagram(bytes: &[u8], v4: Option<([u8; 4], [u8; 4])>, v6: Option<([u8; 16], [u8; 16])>) {
    let Ok(dgram) = udp::Packet::new_checked(bytes) else { return };
    assert!(dgram.payload().len() <= bytes.len());
    let _ = (dgram.src_port(), dgram.dst_port(), dgram.len(), dgram.checksum());
    if let Some((s, d)) = v4 {
        let _ = dgram.verify_checksum_v4(s, d);
    }
    if let Some((s, d)) = v6 {
        let _ = dgram.verify_checksum_v6(&s, &d);
    }
    if let Ok(repr) = udp::Repr::parse(&dgram) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut udp::Packet::new_unchecked(&mut buf[..]));
        assert_eq!(udp::Repr::parse(&udp::Packet::new_unchecked(&buf[..])), Ok(repr));
    }
}

fn ipv4_packet(bytes: &[u8]) {
    let Ok(ip) = ipv4::Packet::new_checked(bytes) else { return };
    assert!(ip.payload().len() <= bytes.len());
    let _ = (ip.version(), ip.dscp_ecn(), ip.ident(), ip.dont_frag(), ip.more_frags(), ip.frag_offset());
    let _ = (ip.hop_limit(), ip.checksum(), ip.src_ipv4(), ip.dst_ipv4(), ip.verify_checksum());
    if let Ok(repr) = ipv4::Repr::parse(&ip) {
        let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len];
        repr.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]));
        assert_eq!(ipv4::Repr::parse(&ipv4::Packet::new_unchecked(&buf[..])), Ok(repr));
    }
    if ip.next_header() == ipv4::protocol::UDP && !ip.is_fragment() {
        udp_datagram(ip.payload(), Some((ip.src_addr(), ip.dst_addr())), None);
    }
}

fn ipv6_packet(bytes: &[u8]) {
    let Ok(ip) = ipv6::Packet::new_checked(bytes) else { return };
    assert!(ip.payload().len() <= bytes.len());
    let _ = (ip.version(), ip.traffic_class(), ip.flow_label(), ip.hop_limit(), ip.src_ipv6(), ip.dst_ipv6());
    if let Ok(repr) = ipv6::Repr::parse(&ip) {
        let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len];
        repr.emit(&mut ipv6::Packet::new_unchecked(&mut buf[..]));
        assert_eq!(ipv6::Repr::parse(&ipv6::Packet::new_unchecked(&buf[..])), Ok(repr));
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    match ip.next_header() {
        ipv4::protocol::UDP => udp_datagram(ip.payload(), None, Some((src, dst))),
        ipv4::protocol::ICMPV6 => {
            let Ok(msg) = icmpv6::Packet::new_checked(ip.payload()) else { return };
            let _ = (msg.msg_type(), msg.code(), msg.is_neighbor_discovery(), msg.nd_flags(), msg.target_addr());
            let _ = (msg.nd_options().count(), msg.link_layer_addr(), msg.verify_checksum(&src, &dst));
            if let Ok(nd) = icmpv6::NdRepr::parse(&msg) {
                let mut buf = vec![0u8; nd.buffer_len()];
                nd.emit(&mut icmpv6::Packet::new_unchecked(&mut buf[..]), &src, &dst);
                let back = icmpv6::Packet::new_unchecked(&buf[..]);
                assert!(back.verify_checksum(&src, &dst));
                assert_eq!(icmpv6::NdRepr::parse(&back), Ok(nd));
            }
        }
        _ => {}
    }
}

fn arp_packet(bytes: &[u8]) {
    let Ok(p) = arp::Packet::new_checked(bytes) else { return };
    let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len(), p.operation());
    if let Ok(repr) = arp::Repr::parse(&p) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut arp::Packet::new_unchecked(&mut buf[..]));
        assert_eq!(arp::Repr::parse(&arp::Packet::new_unchecked(&buf[..])), Ok(repr));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(eth) = Frame::new_checked(data) else { return };
    assert!(eth.header_len() + eth.payload().len() <= data.len());
    let _ = (eth.dst_addr().is_unicast(), eth.src_addr().is_multicast(), eth.outer_ethertype(), eth.vlan());
    if let Ok(repr) = ethernet::Repr::parse(&eth) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Frame::new_unchecked(&mut buf[..]));
        assert_eq!(ethernet::Repr::parse(&Frame::new_unchecked(&buf[..])), Ok(repr));
    }
    match eth.ethertype() {
        EtherType::IPV4 => ipv4_packet(eth.payload()),
        EtherType::IPV6 => ipv6_packet(eth.payload()),
        EtherType::ARP => arp_packet(eth.payload()),
        _ => {}
    }
});
