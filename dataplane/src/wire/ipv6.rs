//! IPv6 fixed headers (RFC 8200). Extension headers are not walked:
//! `next_header` is whatever the fixed header says.

use core::net::Ipv6Addr;

use super::{Error, Field, Result};

pub use super::ipv4::protocol;

mod field {
    use super::Field;

    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// A view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn addr16(b: &[u8], f: Field) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[f]);
    a
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Ensures version 6 and `40 + payload_len <= buffer len`; afterwards no
    /// getter panics.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn ver_tc_flow(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    pub fn payload_len(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::LENGTH.start], b[field::LENGTH.start + 1]])
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> [u8; 16] {
        addr16(self.buffer.as_ref(), field::SRC_ADDR)
    }

    pub fn dst_addr(&self) -> [u8; 16] {
        addr16(self.buffer.as_ref(), field::DST_ADDR)
    }

    pub fn src_ipv6(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src_addr())
    }

    pub fn dst_ipv6(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst_addr())
    }

    /// The payload, bounded by `payload_len` (not by the buffer).
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_ver_tc_flow(&mut self, v: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_version(&mut self, v: u8) {
        self.set_ver_tc_flow((self.ver_tc_flow() & 0x0fff_ffff) | (u32::from(v) << 28));
    }

    pub fn set_traffic_class(&mut self, v: u8) {
        self.set_ver_tc_flow((self.ver_tc_flow() & 0xf00f_ffff) | (u32::from(v) << 20));
    }

    pub fn set_flow_label(&mut self, v: u32) {
        self.set_ver_tc_flow((self.ver_tc_flow() & 0xfff0_0000) | (v & 0x000f_ffff));
    }

    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = v;
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    pub fn set_src_addr(&mut self, a: &[u8; 16]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(a);
    }

    pub fn set_dst_addr(&mut self, a: &[u8; 16]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(a);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// An IPv6 fixed header; the slow path's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub next_header: u8,
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with traffic class and flow label 0. Panics if the
    /// buffer is shorter than `buffer_len()`; `payload_len` must fit 16 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_ver_tc_flow(6 << 28);
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(&self.src_addr);
        packet.set_dst_addr(&self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // UDP 2001:db8::20 -> 2001:db8::1, traffic class 0xb8 (EF), flow 0x12345,
    // 12 bytes of payload.
    static PACKET: [u8; 52] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x0c, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01, 0x13, 0xc4, 0x27, 0x10, 0x00, 0x0c, 0xcb, 0xd1, 0xde, 0xad, 0xbe, 0xef,
    ];

    const SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];
    const DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01];

    fn repr() -> Repr {
        Repr { src_addr: SRC, dst_addr: DST, next_header: protocol::UDP, payload_len: 12, hop_limit: 64 }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 12);
        assert_eq!(p.next_header(), protocol::UDP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_ipv6(), "2001:db8::20".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), DST);
        assert_eq!(p.payload(), &PACKET[40..]);
    }

    #[test]
    fn construct() {
        let mut buf = PACKET;
        buf[..40].fill(0);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(6);
        p.set_traffic_class(0xb8);
        p.set_flow_label(0x12345);
        p.set_payload_len(12);
        p.set_next_header(protocol::UDP);
        p.set_hop_limit(64);
        p.set_src_addr(&SRC);
        p.set_dst_addr(&DST);
        p.payload_mut()[8..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn parse_and_emit() {
        assert_eq!(Repr::parse(&Packet::new_unchecked(&PACKET[..])), Ok(repr()));
        let mut buf = PACKET;
        buf[..40].fill(0xee);
        repr().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[4..], &PACKET[4..]);
        assert_eq!(&buf[..4], &[0x60, 0, 0, 0]);
    }

    #[test]
    fn rejects() {
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&PACKET[..39]), Err(Error::Truncated));
        assert_eq!(check(&PACKET[..51]), Err(Error::Truncated));
        let mut v4 = PACKET;
        v4[0] = 0x4b;
        assert_eq!(check(&v4), Err(Error::Malformed));
    }

    #[test]
    fn no_panic_on_any_input() {
        super::super::testing::for_each_mutation(&PACKET, |b| {
            if let Ok(p) = Packet::new_checked(b) {
                let _ = (p.traffic_class(), p.flow_label(), p.src_ipv6(), p.dst_ipv6());
                let _ = (p.payload().len(), Repr::parse(&p));
            }
        });
    }
}
