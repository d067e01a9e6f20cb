//! RTP packets (RFC 3550 section 5.1).
//!
//! `check_len` only makes the accessors safe; `check_rtp` is the stricter
//! validity test, since a relay may want to forward what it cannot parse.

use super::{Error, Field, Result};

mod field {
    use super::Field;

    pub const VPXCC: usize = 0;
    pub const MPT: usize = 1;
    pub const SEQ: Field = 2..4;
    pub const TIMESTAMP: Field = 4..8;
    pub const SSRC: Field = 8..12;
    pub const CSRC: usize = 12;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::SSRC.end;
/// The most CSRCs the 4-bit count allows.
pub const MAX_CSRCS: usize = 15;

const FLAG_PADDING: u8 = 0x20;
const FLAG_EXTENSION: u8 = 0x10;
const FLAG_MARKER: u8 = 0x80;

/// A view of an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
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

    /// Ensures the fixed header, CSRCs and extension fit; afterwards no
    /// getter panics. Does not look at version or padding.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < self.csrc_end() {
            return Err(Error::Truncated);
        }
        if self.extension() && (len < self.csrc_end() + 4 || len < self.header_len()) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// RFC 3550 A.1 validity: version 2, CSRCs and extension fit, padding
    /// count non-zero and within the payload area. Safe on any buffer.
    pub fn check_rtp(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 2 || self.check_len().is_err() {
            return Err(Error::Malformed);
        }
        if self.padding() {
            let pad = self.padding_len();
            if pad == 0 || pad > len - self.header_len() {
                return Err(Error::Malformed);
            }
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VPXCC] >> 6
    }

    pub fn padding(&self) -> bool {
        self.buffer.as_ref()[field::VPXCC] & FLAG_PADDING != 0
    }

    pub fn extension(&self) -> bool {
        self.buffer.as_ref()[field::VPXCC] & FLAG_EXTENSION != 0
    }

    pub fn csrc_count(&self) -> u8 {
        self.buffer.as_ref()[field::VPXCC] & 0x0f
    }

    pub fn marker(&self) -> bool {
        self.buffer.as_ref()[field::MPT] & FLAG_MARKER != 0
    }

    pub fn payload_type(&self) -> u8 {
        self.buffer.as_ref()[field::MPT] & 0x7f
    }

    pub fn sequence_number(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SEQ.start)
    }

    pub fn timestamp(&self) -> u32 {
        be32(self.buffer.as_ref(), field::TIMESTAMP.start)
    }

    pub fn ssrc(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SSRC.start)
    }

    /// The `index`th CSRC, `None` past `csrc_count`.
    pub fn csrc(&self, index: usize) -> Option<u32> {
        if index >= usize::from(self.csrc_count()) {
            return None;
        }
        let at = field::CSRC + 4 * index;
        let b = self.buffer.as_ref().get(at..at + 4)?;
        Some(be32(b, 0))
    }

    fn csrc_end(&self) -> usize {
        field::CSRC + 4 * usize::from(self.csrc_count())
    }

    /// Fixed header, CSRCs and the extension (4 + 4 * length bytes).
    pub fn header_len(&self) -> usize {
        let end = self.csrc_end();
        if self.extension() {
            end + 4 + 4 * usize::from(be16(self.buffer.as_ref(), end + 2))
        } else {
            end
        }
    }

    /// The profile-defined 16 bits of the extension (0xBEDE: RFC 8285
    /// one-byte elements).
    pub fn extension_profile(&self) -> Option<u16> {
        self.extension().then(|| be16(self.buffer.as_ref(), self.csrc_end()))
    }

    /// The extension body, without its 4-byte header.
    pub fn extension_data(&self) -> Option<&[u8]> {
        let start = self.csrc_end() + 4;
        self.extension().then(|| &self.buffer.as_ref()[start..self.header_len()])
    }

    /// Padding bytes at the end, counting the count byte; 0 without the P bit.
    pub fn padding_len(&self) -> usize {
        match self.buffer.as_ref().last() {
            Some(&n) if self.padding() => usize::from(n),
            _ => 0,
        }
    }

    fn payload_range(&self) -> Field {
        let start = self.header_len();
        let len = self.buffer.as_ref().len();
        start..len.saturating_sub(self.padding_len()).max(start)
    }

    /// The payload without padding (empty if the padding count is too big).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_range()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_bits(&mut self, at: usize, mask: u8, bits: u8) {
        let b = &mut self.buffer.as_mut()[at];
        *b = (*b & !mask) | (bits & mask);
    }

    pub fn set_version(&mut self, v: u8) {
        self.set_bits(field::VPXCC, 0xc0, v << 6);
    }

    pub fn set_padding(&mut self, on: bool) {
        self.set_bits(field::VPXCC, FLAG_PADDING, if on { FLAG_PADDING } else { 0 });
    }

    pub fn set_extension(&mut self, on: bool) {
        self.set_bits(field::VPXCC, FLAG_EXTENSION, if on { FLAG_EXTENSION } else { 0 });
    }

    pub fn set_csrc_count(&mut self, n: u8) {
        self.set_bits(field::VPXCC, 0x0f, n);
    }

    pub fn set_marker(&mut self, on: bool) {
        self.set_bits(field::MPT, FLAG_MARKER, if on { FLAG_MARKER } else { 0 });
    }

    pub fn set_payload_type(&mut self, pt: u8) {
        self.set_bits(field::MPT, 0x7f, pt);
    }

    pub fn set_sequence_number(&mut self, v: u16) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_timestamp(&mut self, v: u32) {
        self.buffer.as_mut()[field::TIMESTAMP].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_ssrc(&mut self, v: u32) {
        self.buffer.as_mut()[field::SSRC].copy_from_slice(&v.to_be_bytes());
    }

    /// Panics if the buffer has no room for CSRC `index`.
    pub fn set_csrc(&mut self, index: usize, v: u32) {
        let at = field::CSRC + 4 * index;
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        &mut self.buffer.as_mut()[range]
    }
}

/// An RTP header extension: the profile word and the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    pub profile: u16,
    /// Emitted zero-padded to a multiple of 4 bytes.
    pub data: &'a [u8],
}

/// A parsed RTP header, borrowing the extension body from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The first `csrc_count` entries are used.
    pub csrcs: [u32; MAX_CSRCS],
    pub csrc_count: u8,
    pub extension: Option<Extension<'a>>,
    pub payload_len: usize,
    pub padding_len: u8,
}

impl<'a> Repr<'a> {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        packet.check_rtp()?;
        let mut csrcs = [0u32; MAX_CSRCS];
        for (i, c) in csrcs.iter_mut().enumerate() {
            *c = packet.csrc(i).unwrap_or(0);
        }
        let buffer: &'a [u8] = packet.buffer.as_ref();
        let extension = packet
            .extension_profile()
            .map(|profile| Extension { profile, data: &buffer[packet.csrc_end() + 4..packet.header_len()] });
        Ok(Repr {
            marker: packet.marker(),
            payload_type: packet.payload_type(),
            sequence_number: packet.sequence_number(),
            timestamp: packet.timestamp(),
            ssrc: packet.ssrc(),
            csrcs,
            csrc_count: packet.csrc_count(),
            extension,
            payload_len: packet.payload().len(),
            padding_len: packet.padding_len() as u8,
        })
    }

    pub fn csrcs(&self) -> &[u32] {
        &self.csrcs[..usize::from(self.csrc_count).min(MAX_CSRCS)]
    }

    fn extension_len(&self) -> usize {
        self.extension.map_or(0, |e| 4 + e.data.len().div_ceil(4) * 4)
    }

    pub fn header_len(&self) -> usize {
        HEADER_LEN + 4 * self.csrcs().len() + self.extension_len()
    }

    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len + usize::from(self.padding_len)
    }

    /// Writes header, extension and padding (the payload area is left as
    /// is). Panics if the buffer is shorter than `buffer_len()`; the
    /// extension body must not exceed 65535 words.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        let csrcs = self.csrcs();
        packet.set_version(2);
        packet.set_padding(self.padding_len > 0);
        packet.set_extension(self.extension.is_some());
        packet.set_csrc_count(csrcs.len() as u8);
        packet.set_marker(self.marker);
        packet.set_payload_type(self.payload_type);
        packet.set_sequence_number(self.sequence_number);
        packet.set_timestamp(self.timestamp);
        packet.set_ssrc(self.ssrc);
        for (i, &c) in csrcs.iter().enumerate() {
            packet.set_csrc(i, c);
        }
        let buf = packet.buffer.as_mut();
        if let Some(ext) = self.extension {
            let at = HEADER_LEN + 4 * csrcs.len();
            let words = ext.data.len().div_ceil(4) as u16;
            buf[at..at + 2].copy_from_slice(&ext.profile.to_be_bytes());
            buf[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
            let body = &mut buf[at + 4..at + self.extension_len()];
            body.fill(0);
            body[..ext.data.len()].copy_from_slice(ext.data);
        }
        if self.padding_len > 0 {
            let start = self.header_len() + self.payload_len;
            let pad = &mut buf[start..start + usize::from(self.padding_len)];
            pad.fill(0);
            pad[pad.len() - 1] = self.padding_len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PCMU, seq 6699, ts 40960, SSRC 0xdeadbeef, 4 bytes of mu-law silence.
    static PCMU: [u8; 16] =
        [0x80, 0x00, 0x1a, 0x2b, 0x00, 0x00, 0xa0, 0x00, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff];

    // Marker, PT 111, one CSRC, RFC 8285 one-byte extension (id 1, len 1),
    // 3 payload bytes, 3 bytes of padding.
    static FULL: [u8; 30] = [
        0xb1, 0xef, 0x00, 0x01, 0x00, 0x00, 0x02, 0x80, 0x12, 0x34, 0x56, 0x78, 0xca, 0xfe, 0xba, 0xbe, 0xbe, 0xde,
        0x00, 0x01, 0x10, 0xaa, 0x00, 0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x03,
    ];

    fn full_repr() -> Repr<'static> {
        let mut csrcs = [0; MAX_CSRCS];
        csrcs[0] = 0xcafe_babe;
        Repr {
            marker: true,
            payload_type: 111,
            sequence_number: 1,
            timestamp: 640,
            ssrc: 0x1234_5678,
            csrcs,
            csrc_count: 1,
            extension: Some(Extension { profile: 0xbede, data: &[0x10, 0xaa, 0x00, 0x00] }),
            payload_len: 3,
            padding_len: 3,
        }
    }

    #[test]
    fn deconstruct_simple() {
        let p = Packet::new_checked(&PCMU[..]).unwrap();
        assert_eq!(p.check_rtp(), Ok(()));
        assert_eq!(p.version(), 2);
        assert!(!p.padding() && !p.extension() && !p.marker());
        assert_eq!(p.csrc_count(), 0);
        assert_eq!(p.payload_type(), 0);
        assert_eq!(p.sequence_number(), 6699);
        assert_eq!(p.timestamp(), 40960);
        assert_eq!(p.ssrc(), 0xdead_beef);
        assert_eq!(p.csrc(0), None);
        assert_eq!(p.header_len(), 12);
        assert_eq!(p.extension_profile(), None);
        assert_eq!(p.payload(), &[0xff; 4]);
    }

    #[test]
    fn deconstruct_full() {
        let p = Packet::new_checked(&FULL[..]).unwrap();
        assert_eq!(p.check_rtp(), Ok(()));
        assert!(p.padding() && p.extension() && p.marker());
        assert_eq!(p.payload_type(), 111);
        assert_eq!(p.csrc(0), Some(0xcafe_babe));
        assert_eq!(p.csrc(1), None);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.extension_profile(), Some(0xbede));
        assert_eq!(p.extension_data(), Some(&[0x10, 0xaa, 0x00, 0x00][..]));
        assert_eq!(p.padding_len(), 3);
        assert_eq!(p.payload(), &[1, 2, 3]);
    }

    #[test]
    fn construct() {
        let mut buf = PCMU;
        buf[..12].fill(0);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(2);
        p.set_payload_type(0);
        p.set_sequence_number(6699);
        p.set_timestamp(40960);
        p.set_ssrc(0xdead_beef);
        assert_eq!(buf, PCMU);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_marker(true);
        p.set_payload_type(8);
        assert_eq!(&buf[..2], &[0x80, 0x88]);
    }

    #[test]
    fn parse_and_emit() {
        let repr = Repr::parse(&Packet::new_unchecked(&FULL[..])).unwrap();
        assert_eq!(repr, full_repr());
        assert_eq!(repr.csrcs(), &[0xcafe_babe]);
        assert_eq!(repr.buffer_len(), 30);
        let mut buf = [0xee; 30];
        buf[24..27].copy_from_slice(&[1, 2, 3]);
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, FULL);

        let simple = Repr::parse(&Packet::new_unchecked(&PCMU[..])).unwrap();
        assert_eq!((simple.payload_len, simple.padding_len, simple.extension), (4, 0, None));
    }

    #[test]
    fn emit_pads_extension() {
        let mut repr = full_repr();
        repr.extension = Some(Extension { profile: 0x1000, data: &[0x01, 0x02] });
        let mut buf = [0xee; 30];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[16..24], &[0x10, 0x00, 0x00, 0x01, 0x01, 0x02, 0x00, 0x00]);
    }

    #[test]
    fn truncated() {
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&PCMU[..11]), Err(Error::Truncated));
        assert_eq!(check(&PCMU[..12]), Ok(()));
        assert_eq!(check(&FULL[..15]), Err(Error::Truncated));
        assert_eq!(check(&FULL[..19]), Err(Error::Truncated));
        assert_eq!(check(&FULL[..23]), Err(Error::Truncated));
        assert_eq!(check(&FULL[..24]), Ok(()));
    }

    #[test]
    fn malformed() {
        let rtp = |b: &[u8]| Packet::new_unchecked(b).check_rtp();
        assert_eq!(rtp(&PCMU[..11]), Err(Error::Truncated));
        let mut v1 = PCMU;
        v1[0] = 0x40;
        assert_eq!(rtp(&v1), Err(Error::Malformed));
        assert!(Packet::new_checked(&v1[..]).is_ok());
        let mut many_csrcs = PCMU;
        many_csrcs[0] = 0x82;
        assert_eq!(rtp(&many_csrcs), Err(Error::Malformed));
        assert_eq!(rtp(&FULL[..23]), Err(Error::Malformed));
        let mut zero_pad = FULL;
        zero_pad[29] = 0;
        assert_eq!(rtp(&zero_pad), Err(Error::Malformed));
        let mut big_pad = FULL;
        big_pad[29] = 7;
        assert_eq!(rtp(&big_pad), Err(Error::Malformed));
        assert_eq!(Packet::new_unchecked(&big_pad[..]).payload(), &[]);
        big_pad[29] = 6;
        assert_eq!(rtp(&big_pad), Ok(()));
        assert_eq!(Repr::parse(&Packet::new_unchecked(&v1[..])), Err(Error::Malformed));
    }

    #[test]
    fn no_panic_on_any_input() {
        for fixture in [&PCMU[..], &FULL[..]] {
            super::super::testing::for_each_mutation(fixture, |b| {
                let _ = Packet::new_unchecked(b).check_rtp();
                if let Ok(p) = Packet::new_checked(b) {
                    let _ = (p.version(), p.marker(), p.payload_type(), p.sequence_number());
                    let _ = (p.timestamp(), p.ssrc(), p.csrc(0), p.csrc(14), p.header_len());
                    let _ = (p.extension_profile(), p.extension_data(), p.padding_len());
                    let _ = (p.payload().len(), p.check_rtp(), Repr::parse(&p));
                }
            });
        }
    }
}
