//! RTCP (RFC 3550 section 6) and its demultiplexing from RTP (RFC 5761).
//!
//! A datagram holds a compound packet: `CompoundIter` splits it, each
//! `Packet` views one RTCP packet. The view reads only within the length its
//! header states, so it may sit over the rest of the compound as well.

use super::{Error, Field, Result};

/// RTCP packet types.
pub mod packet_type {
    pub const SR: u8 = 200;
    pub const RR: u8 = 201;
    pub const SDES: u8 = 202;
    pub const BYE: u8 = 203;
    pub const APP: u8 = 204;
    /// Transport-layer feedback (RFC 4585), carried raw.
    pub const RTPFB: u8 = 205;
    /// Payload-specific feedback (RFC 4585), carried raw.
    pub const PSFB: u8 = 206;
}

/// SDES item types.
pub mod sdes_item {
    pub const END: u8 = 0;
    pub const CNAME: u8 = 1;
    pub const NAME: u8 = 2;
    pub const EMAIL: u8 = 3;
    pub const PHONE: u8 = 4;
    pub const LOC: u8 = 5;
    pub const TOOL: u8 = 6;
    pub const NOTE: u8 = 7;
    pub const PRIV: u8 = 8;
}

/// RFC 5761 section 4: an RTP/RTCP datagram is RTCP when its second byte
/// (RTP's marker and payload type) is 192..=223.
pub fn is_rtcp_packet_type(byte1: u8) -> bool {
    (192..=223).contains(&byte1)
}

mod field {
    use super::Field;

    pub const VPC: usize = 0;
    pub const PT: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const SSRC: Field = 4..8;
    pub const SENDER_INFO: Field = 8..28;
    pub const APP_NAME: Field = 8..12;
    pub const FB_MEDIA_SSRC: Field = 8..12;
}

pub const HEADER_LEN: usize = 4;
pub const SENDER_INFO_LEN: usize = 20;
pub const REPORT_BLOCK_LEN: usize = 24;
const SR_BLOCKS: usize = field::SENDER_INFO.end;
const RR_BLOCKS: usize = field::SSRC.end;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The sender info of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    pub ntp_timestamp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

impl SenderInfo {
    pub fn parse(b: &[u8]) -> Result<SenderInfo> {
        let b = b.get(..SENDER_INFO_LEN).ok_or(Error::Truncated)?;
        Ok(SenderInfo {
            ntp_timestamp: u64::from(be32(b, 0)) << 32 | u64::from(be32(b, 4)),
            rtp_timestamp: be32(b, 8),
            packet_count: be32(b, 12),
            octet_count: be32(b, 16),
        })
    }

    /// Panics if `b` is shorter than `SENDER_INFO_LEN`.
    pub fn emit(&self, b: &mut [u8]) {
        b[..8].copy_from_slice(&self.ntp_timestamp.to_be_bytes());
        b[8..12].copy_from_slice(&self.rtp_timestamp.to_be_bytes());
        b[12..16].copy_from_slice(&self.packet_count.to_be_bytes());
        b[16..20].copy_from_slice(&self.octet_count.to_be_bytes());
    }
}

/// A reception report block of an SR or RR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed on the wire: duplicates can make it negative.
    pub cumulative_lost: i32,
    pub ext_highest_seq: u32,
    pub jitter: u32,
    pub lsr: u32,
    pub dlsr: u32,
}

impl ReportBlock {
    pub fn parse(b: &[u8]) -> Result<ReportBlock> {
        let b = b.get(..REPORT_BLOCK_LEN).ok_or(Error::Truncated)?;
        Ok(ReportBlock {
            ssrc: be32(b, 0),
            fraction_lost: b[4],
            cumulative_lost: i32::from_be_bytes([b[5], b[6], b[7], 0]) >> 8,
            ext_highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            lsr: be32(b, 16),
            dlsr: be32(b, 20),
        })
    }

    /// `cumulative_lost` is clamped to 24 bits. Panics if `b` is shorter
    /// than `REPORT_BLOCK_LEN`.
    pub fn emit(&self, b: &mut [u8]) {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff).to_be_bytes();
        b[..4].copy_from_slice(&self.ssrc.to_be_bytes());
        b[4..8].copy_from_slice(&[self.fraction_lost, lost[1], lost[2], lost[3]]);
        b[8..12].copy_from_slice(&self.ext_highest_seq.to_be_bytes());
        b[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        b[16..20].copy_from_slice(&self.lsr.to_be_bytes());
        b[20..24].copy_from_slice(&self.dlsr.to_be_bytes());
    }
}

/// A view of one RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
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

    /// Truncated if the stated length exceeds the buffer; Malformed if the
    /// padding count or the type's fixed parts (sender info, report blocks,
    /// BYE SSRCs and reason, APP name, feedback SSRCs) do not fit in it.
    /// Afterwards no getter panics. SDES chunks are checked by their iterator.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN || self.packet_len() > b.len() {
            return Err(Error::Truncated);
        }
        if self.padding() {
            let pad = usize::from(b[self.packet_len() - 1]);
            if pad == 0 || pad > self.packet_len() - HEADER_LEN {
                return Err(Error::Malformed);
            }
        }
        let end = self.body_end();
        let count = usize::from(self.count());
        let needed = match self.packet_type() {
            packet_type::SR => SR_BLOCKS + REPORT_BLOCK_LEN * count,
            packet_type::RR => RR_BLOCKS + REPORT_BLOCK_LEN * count,
            packet_type::BYE => {
                let ssrc_end = HEADER_LEN + 4 * count;
                match b.get(ssrc_end) {
                    Some(&len) if ssrc_end < end => ssrc_end + 1 + usize::from(len),
                    _ => ssrc_end,
                }
            }
            packet_type::APP | packet_type::RTPFB | packet_type::PSFB => 12,
            _ => HEADER_LEN,
        };
        if needed > end {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VPC] >> 6
    }

    pub fn padding(&self) -> bool {
        self.buffer.as_ref()[field::VPC] & 0x20 != 0
    }

    /// Report count (SR/RR), source count (SDES/BYE), subtype (APP) or
    /// feedback message type (RTPFB/PSFB).
    pub fn count(&self) -> u8 {
        self.buffer.as_ref()[field::VPC] & 0x1f
    }

    pub fn packet_type(&self) -> u8 {
        self.buffer.as_ref()[field::PT]
    }

    /// The length field: 32-bit words minus one.
    pub fn length_words(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::LENGTH.start], b[field::LENGTH.start + 1]])
    }

    /// The packet's length in bytes, header and padding included.
    pub fn packet_len(&self) -> usize {
        (usize::from(self.length_words()) + 1) * 4
    }

    pub fn padding_len(&self) -> usize {
        if self.padding() {
            usize::from(self.buffer.as_ref()[self.packet_len() - 1])
        } else {
            0
        }
    }

    fn body_end(&self) -> usize {
        self.packet_len() - self.padding_len()
    }

    /// Everything after the 4-byte header, without padding.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.body_end()]
    }

    /// The sender SSRC (SR, RR, APP, feedback), or the first source of an
    /// SDES or BYE; `None` when the packet names none.
    pub fn ssrc(&self) -> Option<u32> {
        if self.body_end() < field::SSRC.end {
            return None;
        }
        let t = self.packet_type();
        if (t == packet_type::SDES || t == packet_type::BYE) && self.count() == 0 {
            return None;
        }
        Some(be32(self.buffer.as_ref(), field::SSRC.start))
    }

    pub fn sender_info(&self) -> Option<SenderInfo> {
        if self.packet_type() != packet_type::SR {
            return None;
        }
        SenderInfo::parse(&self.buffer.as_ref()[field::SENDER_INFO.start..self.body_end()]).ok()
    }

    fn report_area(&self) -> &[u8] {
        let start = match self.packet_type() {
            packet_type::SR => SR_BLOCKS,
            packet_type::RR => RR_BLOCKS,
            _ => return &[],
        };
        let end = start + REPORT_BLOCK_LEN * usize::from(self.count());
        self.buffer.as_ref().get(start..end.min(self.body_end())).unwrap_or(&[])
    }

    /// The report blocks of an SR or RR; empty for other types.
    pub fn report_blocks(&self) -> impl Iterator<Item = ReportBlock> + '_ {
        self.report_area().chunks_exact(REPORT_BLOCK_LEN).filter_map(|b| ReportBlock::parse(b).ok())
    }

    /// The chunks of an SDES; empty for other types.
    pub fn sdes_chunks(&self) -> SdesChunkIter<'_> {
        let (rest, remaining) =
            if self.packet_type() == packet_type::SDES { (self.body(), self.count()) } else { (&[][..], 0) };
        SdesChunkIter { rest, remaining }
    }

    fn bye_ssrc_end(&self) -> usize {
        (HEADER_LEN + 4 * usize::from(self.count())).min(self.body_end())
    }

    /// The sources leaving; empty unless BYE.
    pub fn bye_ssrcs(&self) -> impl Iterator<Item = u32> + '_ {
        let area = match self.packet_type() {
            packet_type::BYE => &self.buffer.as_ref()[HEADER_LEN..self.bye_ssrc_end()],
            _ => &[],
        };
        area.chunks_exact(4).map(|c| be32(c, 0))
    }

    /// The optional reason text of a BYE.
    pub fn bye_reason(&self) -> Option<&[u8]> {
        if self.packet_type() != packet_type::BYE {
            return None;
        }
        let b = &self.buffer.as_ref()[..self.body_end()];
        let at = self.bye_ssrc_end();
        let len = usize::from(*b.get(at)?);
        b.get(at + 1..at + 1 + len)
    }

    pub fn app_name(&self) -> Option<[u8; 4]> {
        if self.packet_type() != packet_type::APP {
            return None;
        }
        let n = self.buffer.as_ref().get(field::APP_NAME)?;
        Some([n[0], n[1], n[2], n[3]])
    }

    pub fn app_data(&self) -> Option<&[u8]> {
        if self.packet_type() != packet_type::APP {
            return None;
        }
        self.buffer.as_ref().get(field::APP_NAME.end..self.body_end())
    }

    fn is_feedback(&self) -> bool {
        matches!(self.packet_type(), packet_type::RTPFB | packet_type::PSFB)
    }

    /// The media source of an RTPFB/PSFB message.
    pub fn fb_media_ssrc(&self) -> Option<u32> {
        if !self.is_feedback() {
            return None;
        }
        let b = self.buffer.as_ref().get(field::FB_MEDIA_SSRC)?;
        Some(be32(b, 0))
    }

    /// The feedback control information of an RTPFB/PSFB message.
    pub fn fb_fci(&self) -> Option<&[u8]> {
        if !self.is_feedback() {
            return None;
        }
        self.buffer.as_ref().get(field::FB_MEDIA_SSRC.end..self.body_end())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::VPC];
        *b = (*b & 0x3f) | (v << 6);
    }

    pub fn set_padding(&mut self, on: bool) {
        let b = &mut self.buffer.as_mut()[field::VPC];
        *b = (*b & !0x20) | if on { 0x20 } else { 0 };
    }

    pub fn set_count(&mut self, n: u8) {
        let b = &mut self.buffer.as_mut()[field::VPC];
        *b = (*b & 0xe0) | (n & 0x1f);
    }

    pub fn set_packet_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::PT] = t;
    }

    pub fn set_length_words(&mut self, n: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&n.to_be_bytes());
    }

    /// Rewrites the SSRC `ssrc()` returns; does nothing when it is `None`.
    pub fn set_ssrc(&mut self, v: u32) {
        if self.ssrc().is_some() {
            self.buffer.as_mut()[field::SSRC].copy_from_slice(&v.to_be_bytes());
        }
    }

    /// Panics unless the packet has room for a sender info.
    pub fn set_sender_info(&mut self, info: &SenderInfo) {
        info.emit(&mut self.buffer.as_mut()[field::SENDER_INFO]);
    }

    /// Writes report block `index` of an SR or RR (e.g. to translate its
    /// SSRC). Panics unless `index < count()` and the packet was checked.
    pub fn set_report_block(&mut self, index: usize, block: &ReportBlock) {
        assert!(index < usize::from(self.count()));
        let start = if self.packet_type() == packet_type::SR { SR_BLOCKS } else { RR_BLOCKS };
        let at = start + REPORT_BLOCK_LEN * index;
        block.emit(&mut self.buffer.as_mut()[at..at + REPORT_BLOCK_LEN]);
    }
}

/// An SDES chunk: a source and its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    pub ssrc: u32,
    items: &'a [u8],
}

impl<'a> SdesChunk<'a> {
    pub fn items(&self) -> SdesItemIter<'a> {
        SdesItemIter { rest: self.items }
    }
}

/// One SDES item; `text` is UTF-8 by the RFC, but not checked here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    pub kind: u8,
    pub text: &'a [u8],
}

/// Iterates over SDES chunks; a chunk without its END item, or fewer chunks
/// than the count says, yields `Malformed` once and ends the iteration.
#[derive(Debug, Clone)]
pub struct SdesChunkIter<'a> {
    rest: &'a [u8],
    remaining: u8,
}

impl<'a> SdesChunkIter<'a> {
    fn chunk(rest: &'a [u8]) -> Option<(SdesChunk<'a>, usize)> {
        let ssrc = be32(rest.get(..4)?, 0);
        let mut at = 4;
        while *rest.get(at)? != sdes_item::END {
            at += 2 + usize::from(*rest.get(at + 1)?);
        }
        let items = rest.get(4..at)?;
        let chunk_len = (at + 1).div_ceil(4) * 4;
        (chunk_len <= rest.len()).then_some((SdesChunk { ssrc, items }, chunk_len))
    }
}

impl<'a> Iterator for SdesChunkIter<'a> {
    type Item = Result<SdesChunk<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        match Self::chunk(self.rest) {
            Some((chunk, len)) => {
                self.rest = &self.rest[len..];
                Some(Ok(chunk))
            }
            None => {
                self.remaining = 0;
                Some(Err(Error::Malformed))
            }
        }
    }
}

/// Iterates over the items of a chunk (already validated by the chunk
/// iterator), without the END item.
#[derive(Debug, Clone)]
pub struct SdesItemIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SdesItemIter<'a> {
    type Item = SdesItem<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, &len) = (self.rest.first()?, self.rest.get(1)?);
        let end = 2 + usize::from(len);
        let text = self.rest.get(2..end)?;
        self.rest = &self.rest[end..];
        Some(SdesItem { kind, text })
    }
}

/// Splits a compound packet; a packet whose length does not fit yields its
/// error once and ends the iteration.
#[derive(Debug, Clone)]
pub struct CompoundIter<'a> {
    rest: &'a [u8],
}

impl<'a> CompoundIter<'a> {
    pub fn new(buffer: &'a [u8]) -> CompoundIter<'a> {
        CompoundIter { rest: buffer }
    }
}

impl<'a> Iterator for CompoundIter<'a> {
    type Item = Result<Packet<&'a [u8]>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match Packet::new_checked(self.rest) {
            Ok(p) => {
                let (this, rest) = self.rest.split_at(p.packet_len());
                self.rest = rest;
                Some(Ok(Packet::new_unchecked(this)))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// RFC 3550 A.2 header validity of a compound packet: version 2 throughout,
/// the first an SR or RR without padding, padding only on the last, and the
/// lengths summing exactly to the datagram.
pub fn validate_compound(buffer: &[u8]) -> Result<()> {
    if buffer.is_empty() {
        return Err(Error::Truncated);
    }
    let mut offset = 0;
    for packet in CompoundIter::new(buffer) {
        let packet = packet?;
        if packet.version() != 2 {
            return Err(Error::Malformed);
        }
        if offset == 0 && (packet.padding() || !matches!(packet.packet_type(), packet_type::SR | packet_type::RR)) {
            return Err(Error::Malformed);
        }
        offset += packet.packet_len();
        if packet.padding() && offset != buffer.len() {
            return Err(Error::Malformed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // SR (one report block) + SDES with CNAME "bh@gateway".
    static SR_SDES: [u8; 76] = [
        0x81, 0xc8, 0x00, 0x0c, 0x12, 0x34, 0x56, 0x78, 0xe8, 0x2c, 0x5b, 0x8e, 0x4a, 0x3d, 0x70, 0xa4, 0x00, 0x01,
        0xf4, 0x00, 0x00, 0x00, 0x00, 0x32, 0x00, 0x00, 0x1f, 0x40, 0xde, 0xad, 0xbe, 0xef, 0x19, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x1a, 0x2b, 0x00, 0x00, 0x00, 0x10, 0x5b, 0x8e, 0x4a, 0x3d, 0x00, 0x01, 0x00, 0x00, 0x81, 0xca,
        0x00, 0x05, 0x12, 0x34, 0x56, 0x78, 0x01, 0x0a, 0x62, 0x68, 0x40, 0x67, 0x61, 0x74, 0x65, 0x77, 0x61, 0x79,
        0x00, 0x00, 0x00, 0x00,
    ];

    // Empty RR + BYE with reason "shutdown" and 4 bytes of padding.
    static RR_BYE: [u8; 32] = [
        0x80, 0xc9, 0x00, 0x01, 0x12, 0x34, 0x56, 0x78, 0xa1, 0xcb, 0x00, 0x05, 0x12, 0x34, 0x56, 0x78, 0x08, 0x73,
        0x68, 0x75, 0x74, 0x64, 0x6f, 0x77, 0x6e, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04,
    ];

    // RR + APP "BHGW" subtype 1 + PSFB PLI.
    static RR_APP_PLI: [u8; 36] = [
        0x80, 0xc9, 0x00, 0x01, 0x12, 0x34, 0x56, 0x78, 0x81, 0xcc, 0x00, 0x03, 0x12, 0x34, 0x56, 0x78, 0x42, 0x48,
        0x47, 0x57, 0x00, 0x00, 0x00, 0x2a, 0x81, 0xce, 0x00, 0x02, 0x12, 0x34, 0x56, 0x78, 0xde, 0xad, 0xbe, 0xef,
    ];

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0xdead_beef,
            fraction_lost: 0x19,
            cumulative_lost: 3,
            ext_highest_seq: 0x0001_1a2b,
            jitter: 16,
            lsr: 0x5b8e_4a3d,
            dlsr: 0x0001_0000,
        }
    }

    fn info() -> SenderInfo {
        SenderInfo { ntp_timestamp: 0xe82c_5b8e_4a3d_70a4, rtp_timestamp: 128_000, packet_count: 50, octet_count: 8000 }
    }

    fn packets(b: &[u8]) -> Vec<Packet<&[u8]>> {
        CompoundIter::new(b).collect::<Result<Vec<_>>>().unwrap()
    }

    #[test]
    fn deconstruct_sr_sdes() {
        assert_eq!(validate_compound(&SR_SDES), Ok(()));
        let ps = packets(&SR_SDES);
        assert_eq!(ps.len(), 2);
        let sr = &ps[0];
        assert_eq!((sr.version(), sr.padding(), sr.count()), (2, false, 1));
        assert_eq!((sr.packet_type(), sr.length_words(), sr.packet_len()), (200, 12, 52));
        assert_eq!(sr.ssrc(), Some(0x1234_5678));
        assert_eq!(sr.sender_info(), Some(info()));
        assert_eq!(sr.report_blocks().collect::<Vec<_>>(), vec![block()]);
        assert_eq!(sr.sdes_chunks().count(), 0);

        let sdes = &ps[1];
        assert_eq!(sdes.packet_type(), packet_type::SDES);
        assert_eq!(sdes.ssrc(), Some(0x1234_5678));
        assert_eq!(sdes.sender_info(), None);
        let chunks: Vec<_> = sdes.sdes_chunks().collect::<Result<_>>().unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].ssrc, 0x1234_5678);
        let items: Vec<_> = chunks[0].items().collect();
        assert_eq!(items, vec![SdesItem { kind: sdes_item::CNAME, text: b"bh@gateway" }]);
    }

    #[test]
    fn deconstruct_bye_app_fb() {
        assert_eq!(validate_compound(&RR_BYE), Ok(()));
        let ps = packets(&RR_BYE);
        assert_eq!(ps[0].report_blocks().count(), 0);
        let bye = &ps[1];
        assert_eq!((bye.padding(), bye.padding_len()), (true, 4));
        assert_eq!(bye.bye_ssrcs().collect::<Vec<_>>(), vec![0x1234_5678]);
        assert_eq!(bye.bye_reason(), Some(&b"shutdown"[..]));
        assert_eq!(bye.body().len(), 16);

        assert_eq!(validate_compound(&RR_APP_PLI), Ok(()));
        let ps = packets(&RR_APP_PLI);
        assert_eq!((ps[1].count(), ps[1].app_name()), (1, Some(*b"BHGW")));
        assert_eq!(ps[1].app_data(), Some(&[0, 0, 0, 0x2a][..]));
        assert_eq!((ps[2].packet_type(), ps[2].count()), (packet_type::PSFB, 1));
        assert_eq!(ps[2].fb_media_ssrc(), Some(0xdead_beef));
        assert_eq!(ps[2].fb_fci(), Some(&[][..]));
        assert_eq!(ps[1].fb_media_ssrc(), None);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 52];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(2);
        p.set_count(1);
        p.set_packet_type(packet_type::SR);
        p.set_length_words(12);
        p.set_ssrc(0x1234_5678);
        p.set_sender_info(&info());
        p.set_report_block(0, &block());
        assert_eq!(&buf[..], &SR_SDES[..52]);
    }

    #[test]
    fn rewrite_ssrcs() {
        let mut buf = SR_SDES;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_ssrc(0x0bad_cafe);
        p.set_report_block(0, &ReportBlock { ssrc: 7, ..block() });
        let p = Packet::new_unchecked(&buf[..]);
        assert_eq!(p.ssrc(), Some(0x0bad_cafe));
        assert_eq!(p.report_blocks().next().map(|b| b.ssrc), Some(7));
    }

    #[test]
    fn report_block_negative_loss() {
        let mut b = [0u8; 24];
        let neg = ReportBlock { cumulative_lost: -2, ..block() };
        neg.emit(&mut b);
        assert_eq!(&b[4..8], &[0x19, 0xff, 0xff, 0xfe]);
        assert_eq!(ReportBlock::parse(&b), Ok(neg));
        ReportBlock { cumulative_lost: 1 << 30, ..block() }.emit(&mut b);
        assert_eq!(&b[5..8], &[0x7f, 0xff, 0xff]);
        assert_eq!(ReportBlock::parse(&b[..23]), Err(Error::Truncated));
    }

    #[test]
    fn demux() {
        assert!(is_rtcp_packet_type(SR_SDES[1]));
        assert!(is_rtcp_packet_type(192) && is_rtcp_packet_type(223));
        assert!(!is_rtcp_packet_type(191) && !is_rtcp_packet_type(224));
        assert!(!is_rtcp_packet_type(0x80 | 96));
    }

    #[test]
    fn invalid_compounds() {
        assert_eq!(validate_compound(&[]), Err(Error::Truncated));
        assert_eq!(validate_compound(&SR_SDES[52..]), Err(Error::Malformed));
        assert_eq!(validate_compound(&SR_SDES[..75]), Err(Error::Truncated));
        let mut extra = [0u8; 80];
        extra[..76].copy_from_slice(&SR_SDES);
        assert_eq!(validate_compound(&extra[..77]), Err(Error::Truncated));
        let mut v1 = SR_SDES;
        v1[52] = 0x41;
        assert_eq!(validate_compound(&v1), Err(Error::Malformed));
        let mut pad_first = RR_BYE;
        pad_first[0] = 0xa0;
        assert_eq!(validate_compound(&pad_first), Err(Error::Malformed));
        // Padding on the BYE, then one more packet after it.
        let mut pad_middle = [0u8; 40];
        pad_middle[..32].copy_from_slice(&RR_BYE);
        pad_middle[32..].copy_from_slice(&RR_BYE[..8]);
        assert_eq!(validate_compound(&pad_middle), Err(Error::Malformed));
    }

    #[test]
    fn malformed_packets() {
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&SR_SDES[..3]), Err(Error::Truncated));
        assert_eq!(check(&SR_SDES[..51]), Err(Error::Truncated));
        let mut rc2 = SR_SDES;
        rc2[0] = 0x82;
        assert_eq!(check(&rc2), Err(Error::Malformed));
        let mut pad0 = RR_BYE;
        pad0[31] = 0;
        assert_eq!(check(&pad0[8..]), Err(Error::Malformed));
        let mut pad_big = RR_BYE;
        pad_big[31] = 24;
        assert_eq!(check(&pad_big[8..]), Err(Error::Malformed));
        let mut reason = RR_BYE;
        reason[16] = 12;
        assert_eq!(check(&reason[8..]), Err(Error::Malformed));
        let mut no_end = SR_SDES;
        no_end[72..74].copy_from_slice(&[0x05, 0x07]);
        let sdes = Packet::new_checked(&no_end[52..]).unwrap();
        assert_eq!(sdes.sdes_chunks().collect::<Vec<_>>(), vec![Err(Error::Malformed)]);
        let mut two = SR_SDES;
        two[52] = 0x82;
        let sdes = Packet::new_checked(&two[52..]).unwrap();
        assert_eq!(sdes.sdes_chunks().filter(|c| c.is_err()).count(), 1);
        let empty_bye = [0x80, 0xcb, 0x00, 0x00];
        let p = Packet::new_checked(&empty_bye[..]).unwrap();
        assert_eq!((p.ssrc(), p.bye_ssrcs().count(), p.bye_reason()), (None, 0, None));
    }

    #[test]
    fn no_panic_on_any_input() {
        for fixture in [&SR_SDES[..], &RR_BYE[..], &RR_APP_PLI[..]] {
            super::super::testing::for_each_mutation(fixture, |b| {
                let _ = validate_compound(b);
                for p in CompoundIter::new(b).flatten() {
                    let _ = (p.version(), p.padding_len(), p.count(), p.body().len(), p.ssrc());
                    let _ = (p.sender_info(), p.report_blocks().count(), p.bye_ssrcs().count());
                    for c in p.sdes_chunks().flatten() {
                        let _ = c.items().count();
                    }
                    let _ = (p.bye_reason(), p.app_name(), p.app_data(), p.fb_media_ssrc());
                    let _ = p.fb_fci();
                }
            });
        }
    }
}
