//! IPv4 headers (RFC 791). Options are kept but not interpreted.

use core::net::Ipv4Addr;

use super::{checksum, Error, Field, Result};

/// IP protocol numbers, shared by IPv4 `protocol` and IPv6 `next_header`.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

mod field {
    use super::Field;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], f: Field) -> u16 {
    u16::from_be_bytes([b[f.start], b[f.start + 1]])
}

fn addr4(b: &[u8], f: Field) -> [u8; 4] {
    [b[f.start], b[f.start + 1], b[f.start + 2], b[f.start + 3]]
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

    /// Ensures version 4 and `20 <= header_len <= total_len <= buffer len`;
    /// afterwards no getter panics. A buffer longer than `total_len` (Ethernet
    /// padding) is fine.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 || self.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        let total = usize::from(self.total_len());
        if total < self.header_len() {
            return Err(Error::Malformed);
        }
        if total > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), field::FLG_OFF) & 0x1fff) << 3
    }

    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// The TTL.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol field, see [`protocol`].
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> [u8; 4] {
        addr4(self.buffer.as_ref(), field::SRC_ADDR)
    }

    pub fn dst_addr(&self) -> [u8; 4] {
        addr4(self.buffer.as_ref(), field::DST_ADDR)
    }

    pub fn src_ipv4(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src_addr())
    }

    pub fn dst_ipv4(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst_addr())
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::data(&self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }

    /// The payload, bounded by `total_len` (not by the buffer).
    pub fn payload(&self) -> &[u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &self.buffer.as_ref()[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (v << 4);
    }

    /// `len` in bytes; must be a multiple of 4.
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    pub fn set_total_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_ident(&mut self, v: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&v.to_be_bytes());
    }

    fn set_flg_off(&mut self, mask: u16, bits: u16) {
        let old = be16(self.buffer.as_ref(), field::FLG_OFF);
        let new = (old & !mask) | (bits & mask);
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&new.to_be_bytes());
    }

    pub fn set_dont_frag(&mut self, on: bool) {
        self.set_flg_off(FLAG_DF, if on { FLAG_DF } else { 0 });
    }

    pub fn set_more_frags(&mut self, on: bool) {
        self.set_flg_off(FLAG_MF, if on { FLAG_MF } else { 0 });
    }

    /// Offset in bytes; must be a multiple of 8.
    pub fn set_frag_offset(&mut self, bytes: u16) {
        self.set_flg_off(0x1fff, bytes >> 3);
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_src_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a);
    }

    pub fn set_dst_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a);
    }

    /// Recomputes the header checksum after the header was written.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(checksum::finish(sum));
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// An unfragmented IPv4 datagram header; the slow path's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: [u8; 4],
    pub dst_addr: [u8; 4],
    pub next_header: u8,
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Repr {
    /// Fragments and bad checksums are `Malformed`: a `Repr` cannot describe
    /// the former and must not be built from the latter.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.is_fragment() || !packet.verify_checksum() {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            hop_limit: packet.hop_limit(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with DF set, ident 0 and the checksum filled.
    /// Panics if the buffer is shorter than `buffer_len()`; `payload_len`
    /// must not exceed 65515.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp_ecn(0);
        packet.set_total_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(0);
        packet.set_flg_off(0xffff, FLAG_DF);
        packet.set_hop_limit(self.hop_limit);
        packet.set_next_header(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // UDP 192.168.1.20 -> 203.0.113.5, 8 bytes of UDP header + 4 payload,
    // followed by 2 bytes of Ethernet padding.
    static PACKET: [u8; 34] = [
        0x45, 0x00, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x3d, 0x0b, 0xc0, 0xa8, 0x01, 0x14, 0xcb, 0x00,
        0x71, 0x05, 0x13, 0xc4, 0x27, 0x10, 0x00, 0x0c, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00,
    ];

    fn repr() -> Repr {
        Repr {
            src_addr: [192, 168, 1, 20],
            dst_addr: [203, 0, 113, 5],
            next_header: protocol::UDP,
            payload_len: 12,
            hop_limit: 64,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 32);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.next_header(), protocol::UDP);
        assert_eq!(p.checksum(), 0x3d0b);
        assert_eq!(p.src_ipv4(), Ipv4Addr::new(192, 168, 1, 20));
        assert_eq!(p.dst_ipv4(), Ipv4Addr::new(203, 0, 113, 5));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 12);
        assert_eq!(&p.payload()[8..], &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 34];
        buf[20..].copy_from_slice(&PACKET[20..]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(4);
        p.set_header_len(20);
        p.set_total_len(32);
        p.set_dont_frag(true);
        p.set_hop_limit(64);
        p.set_next_header(protocol::UDP);
        p.set_src_addr([192, 168, 1, 20]);
        p.set_dst_addr([203, 0, 113, 5]);
        p.fill_checksum();
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn fragments() {
        let mut buf = PACKET;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_dont_frag(false);
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])), Err(Error::Malformed));
    }

    #[test]
    fn parse_and_emit() {
        assert_eq!(Repr::parse(&Packet::new_unchecked(&PACKET[..])), Ok(repr()));
        let mut buf = PACKET;
        buf[..20].fill(0xee);
        repr().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, PACKET);
        let mut bad = PACKET;
        bad[11] ^= 1;
        assert_eq!(Repr::parse(&Packet::new_unchecked(&bad[..])), Err(Error::Malformed));
    }

    #[test]
    fn rejects() {
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&PACKET[..19]), Err(Error::Truncated));
        assert_eq!(check(&PACKET[..31]), Err(Error::Truncated));
        assert_eq!(check(&PACKET[..32]), Ok(()));
        let mut v6 = PACKET;
        v6[0] = 0x65;
        assert_eq!(check(&v6), Err(Error::Malformed));
        let mut ihl = PACKET;
        ihl[0] = 0x44;
        assert_eq!(check(&ihl), Err(Error::Malformed));
        let mut long_ihl = PACKET;
        long_ihl[0] = 0x49;
        assert_eq!(check(&long_ihl), Err(Error::Malformed));
        let mut short_total = PACKET;
        short_total[3] = 19;
        assert_eq!(check(&short_total), Err(Error::Malformed));
    }

    #[test]
    fn no_panic_on_any_input() {
        super::super::testing::for_each_mutation(&PACKET, |b| {
            if let Ok(p) = Packet::new_checked(b) {
                let _ = (p.ident(), p.dscp_ecn(), p.frag_offset(), p.is_fragment());
                let _ = (p.src_ipv4(), p.dst_ipv4(), p.checksum(), p.verify_checksum());
                let _ = (p.payload().len(), Repr::parse(&p));
            }
        });
    }
}
