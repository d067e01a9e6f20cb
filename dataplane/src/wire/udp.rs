//! UDP datagrams (RFC 768) and their checksum over IPv4 and IPv6.

use super::{checksum, Error, Field, Rest, Result};

const PROTO_UDP: u8 = 17;

mod field {
    use super::{Field, Rest};

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: Rest = 8..;
}

pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], f: Field) -> u16 {
    u16::from_be_bytes([b[f.start], b[f.start + 1]])
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

    /// Ensures `8 <= len <= buffer len`; afterwards no getter panics.
    pub fn check_len(&self) -> Result<()> {
        let buf_len = self.buffer.as_ref().len();
        if buf_len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len > buf_len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header plus payload.
    #[allow(clippy::len_without_is_empty)] // a field, not a container size
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload, bounded by the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    fn sum(&self) -> u16 {
        checksum::data(&self.buffer.as_ref()[..usize::from(self.len())])
    }

    /// True if the checksum is right or absent (0 means "none" over IPv4).
    pub fn verify_checksum_v4(&self, src: [u8; 4], dst: [u8; 4]) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let ph = checksum::pseudo_header_v4(src, dst, PROTO_UDP, u32::from(self.len()));
        checksum::combine(&[ph, self.sum()]) == 0xffff
    }

    /// True if the checksum is right; over IPv6 it is mandatory, so 0 fails.
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let ph = checksum::pseudo_header_v6(src, dst, PROTO_UDP, u32::from(self.len()));
        checksum::combine(&[ph, self.sum()]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    fn fill_with(&mut self, pseudo_header: u16) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::combine(&[pseudo_header, self.sum()]));
        // A computed 0 is sent as its one's-complement twin, 0 meaning "none".
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Computes the checksum; header (with `len`) and payload must be final.
    pub fn fill_checksum_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        let ph = checksum::pseudo_header_v4(src, dst, PROTO_UDP, u32::from(self.len()));
        self.fill_with(ph);
    }

    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        let ph = checksum::pseudo_header_v6(src, dst, PROTO_UDP, u32::from(self.len()));
        self.fill_with(ph);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A UDP header. `parse` does not check the checksum, which needs the IP
/// addresses: call `verify_checksum_v4/v6` on the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()) - HEADER_LEN,
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header with checksum 0; fill it once the payload is in.
    /// Panics if the buffer is shorter than `HEADER_LEN`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC4: [u8; 4] = [192, 168, 1, 20];
    const DST4: [u8; 4] = [203, 0, 113, 5];
    const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];
    const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01];

    // 5060 -> 10000, 4 payload bytes, checksum over IPv4, then 2 pad bytes.
    static V4: [u8; 14] = [0x13, 0xc4, 0x27, 0x10, 0x00, 0x0c, 0x29, 0xa2, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00];
    static V6: [u8; 12] = [0x13, 0xc4, 0x27, 0x10, 0x00, 0x0c, 0xcb, 0xd1, 0xde, 0xad, 0xbe, 0xef];
    // Odd payload "hello".
    static ODD: [u8; 13] = [0x13, 0xc4, 0x27, 0x10, 0x00, 0x0d, 0x83, 0x6b, 0x68, 0x65, 0x6c, 0x6c, 0x6f];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&V4[..]).unwrap();
        assert_eq!(p.src_port(), 5060);
        assert_eq!(p.dst_port(), 10000);
        assert_eq!(p.len(), 12);
        assert_eq!(p.checksum(), 0x29a2);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum_v4(SRC4, DST4));
        assert!(!p.verify_checksum_v4(DST4, SRC4.map(|b| b ^ 1)));
        assert!(Packet::new_unchecked(&V6[..]).verify_checksum_v6(&SRC6, &DST6));
        assert!(Packet::new_unchecked(&ODD[..]).verify_checksum_v4(SRC4, DST4));
    }

    #[test]
    fn construct_and_fill() {
        for (fixture, v6) in [(&V4[..12], false), (&V6[..], true), (&ODD[..], false)] {
            let mut buf = fixture.to_vec();
            buf[..8].fill(0);
            let mut p = Packet::new_unchecked(&mut buf[..]);
            p.set_src_port(5060);
            p.set_dst_port(10000);
            p.set_len(fixture.len() as u16);
            if v6 {
                p.fill_checksum_v6(&SRC6, &DST6);
            } else {
                p.fill_checksum_v4(SRC4, DST4);
            }
            assert_eq!(buf, fixture);
        }
    }

    #[test]
    fn zero_checksum() {
        let mut none = V4;
        none[6..8].fill(0);
        let p = Packet::new_unchecked(&none[..]);
        assert!(p.verify_checksum_v4(SRC4, DST4));
        assert!(!p.verify_checksum_v6(&SRC6, &DST6));

        // Pick a payload word so the computed checksum is 0: sent as 0xffff.
        let mut buf = V4;
        let word = (0..=u16::MAX)
            .find(|&w| {
                buf[8..10].copy_from_slice(&w.to_be_bytes());
                let mut p = Packet::new_unchecked(&mut buf[..]);
                p.set_checksum(0xffff);
                p.fill_checksum_v4(SRC4, DST4);
                p.checksum() == 0xffff
            })
            .unwrap();
        buf[8..10].copy_from_slice(&word.to_be_bytes());
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum_v4(SRC4, DST4);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v4(SRC4, DST4));
    }

    #[test]
    fn parse_and_emit() {
        let repr = Repr { src_port: 5060, dst_port: 10000, payload_len: 4 };
        assert_eq!(Repr::parse(&Packet::new_unchecked(&V4[..])), Ok(repr));
        assert_eq!(repr.buffer_len(), 12);
        let mut buf = [0u8; 12];
        buf[8..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.fill_checksum_v4(SRC4, DST4);
        assert_eq!(buf, V4[..12]);
    }

    #[test]
    fn rejects() {
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&V4[..7]), Err(Error::Truncated));
        assert_eq!(check(&V4[..11]), Err(Error::Truncated));
        let mut short = V4;
        short[5] = 7;
        assert_eq!(check(&short), Err(Error::Malformed));
    }

    #[test]
    fn no_panic_on_any_input() {
        super::super::testing::for_each_mutation(&V4, |b| {
            if let Ok(p) = Packet::new_checked(b) {
                let _ = (p.src_port(), p.dst_port(), p.payload().len(), Repr::parse(&p));
                let _ = p.verify_checksum_v4(SRC4, DST4) | p.verify_checksum_v6(&SRC6, &DST6);
            }
        });
    }
}
