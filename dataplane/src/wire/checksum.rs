//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums are kept un-complemented so partial sums (pseudo header, header,
//! payload) can be `combine`d; `finish` complements the total for the wire.

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// One's-complement sum of `bytes` as big-endian 16-bit words, folded, not
/// complemented. An odd trailing byte is padded with a zero byte.
pub fn data(bytes: &[u8]) -> u16 {
    // 32-bit words: w = hi * 2^16 + lo is congruent to hi + lo mod 0xffff.
    let mut acc: u64 = 0;
    let mut words = bytes.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for w in &mut rest {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let Some(&b) = rest.remainder().first() {
        acc += u64::from(b) << 8;
    }
    fold(acc)
}

/// One's-complement sum of partial sums.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The value written to the wire: the complement of the total sum.
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// Sum of the IPv4 pseudo header for TCP/UDP (RFC 768); `len` is the
/// transport length.
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u32) -> u16 {
    let acc =
        u64::from(u32::from_be_bytes(src)) + u64::from(u32::from_be_bytes(dst)) + u64::from(proto) + u64::from(len);
    fold(acc)
}

/// Sum of the IPv6 pseudo header (RFC 8200 section 8.1).
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: u32) -> u16 {
    combine(&[data(src), data(dst), fold(u64::from(len) + u64::from(proto))])
}

/// Checksum after a 16-bit word changed from `old` to `new`:
/// RFC 1624 eqn 3, `HC' = ~(~HC + ~m + m')`.
pub fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!checksum) + u64::from(!old) + u64::from(new))
}

/// As [`update16`] for an aligned 32-bit field (an IPv4 address, an SSRC).
pub fn update32(checksum: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!checksum)
        + u64::from(!(old >> 16) as u16)
        + u64::from(!(old as u16))
        + u64::from(new >> 16)
        + u64::from(new as u16);
    !fold(acc)
}

/// As [`update16`] for a field of several words (an IPv6 address). Both
/// slices must start at the same even offset of the checksummed data; they
/// should be equally long and of even length.
pub fn update_bytes(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    !combine(&[!checksum, !data(old), data(new)])
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 1071 section 3 example.
    static RFC1071: [u8; 8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];

    // An IPv4 header (UDP, 10.0.0.1 -> 10.0.0.2) with its checksum 0x0a75.
    static IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x30, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x0a, 0x75, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
        0x00, 0x02,
    ];

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn full(bytes: &[u8], at: usize) -> u16 {
        let mut b = bytes.to_vec();
        b[at..at + 2].fill(0);
        finish(data(&b))
    }

    #[test]
    fn rfc1071_example() {
        assert_eq!(data(&RFC1071), 0xddf2);
        assert_eq!(finish(data(&RFC1071)), 0x220d);
        assert_eq!(combine(&[data(&RFC1071[..4]), data(&RFC1071[4..])]), 0xddf2);
    }

    #[test]
    fn odd_length_and_empty() {
        assert_eq!(data(&[]), 0);
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x6834);
        assert_eq!(data(&[0x12, 0x34, 0x56, 0x78, 0x9a]), 0x02ad);
    }

    #[test]
    fn ipv4_header_verifies() {
        assert_eq!(full(&IPV4_HEADER, 10), 0x0a75);
        assert_eq!(data(&IPV4_HEADER), 0xffff);
    }

    #[test]
    fn pseudo_headers_match_byte_layout() {
        let (src, dst) = ([192, 0, 2, 1], [198, 51, 100, 7]);
        let bytes = [192, 0, 2, 1, 198, 51, 100, 7, 0, 17, 0x01, 0x2c];
        assert_eq!(pseudo_header_v4(src, dst, 17, 300), data(&bytes));
        let s6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let d6 = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55];
        let mut b6 = [0u8; 40];
        b6[..16].copy_from_slice(&s6);
        b6[16..32].copy_from_slice(&d6);
        b6[32..36].copy_from_slice(&70_000u32.to_be_bytes());
        b6[39] = 58;
        assert_eq!(pseudo_header_v6(&s6, &d6, 58, 70_000), data(&b6));
    }

    #[test]
    fn incremental_equals_full_recompute() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let mut pkt = IPV4_HEADER;
            for b in pkt.iter_mut().skip(4) {
                *b = rng.next() as u8;
            }
            let c = full(&pkt, 10);
            pkt[10..12].copy_from_slice(&c.to_be_bytes());
            let r = rng.next();

            let mut p16 = pkt;
            let old16 = u16::from_be_bytes([p16[4], p16[5]]);
            p16[4..6].copy_from_slice(&(r as u16).to_be_bytes());
            assert_eq!(update16(c, old16, r as u16), full(&p16, 10));

            let mut p32 = pkt;
            let old32 = u32::from_be_bytes([p32[12], p32[13], p32[14], p32[15]]);
            p32[12..16].copy_from_slice(&((r >> 16) as u32).to_be_bytes());
            assert_eq!(update32(c, old32, (r >> 16) as u32), full(&p32, 10));

            let mut pb = pkt;
            let new = r.to_be_bytes();
            pb[12..20].copy_from_slice(&new);
            assert_eq!(update_bytes(c, &pkt[12..20], &new), full(&pb, 10));
        }
    }

    #[test]
    fn incremental_edge_results() {
        // Pick a new TTL/protocol word so the full recompute gives 0x0000.
        let base = full(&IPV4_HEADER, 10);
        let old = u16::from_be_bytes([IPV4_HEADER[8], IPV4_HEADER[9]]);
        let mut hits = 0;
        for new in 0..=u16::MAX {
            let mut p = IPV4_HEADER;
            p[8..10].copy_from_slice(&new.to_be_bytes());
            let want = full(&p, 10);
            assert_eq!(update16(base, old, new), want);
            if want == 0x0000 {
                hits += 1;
            }
            assert_ne!(want, 0xffff);
        }
        assert!(hits > 0);
        // A checksum of 0x0000 (sum 0xffff) updated back.
        assert_eq!(update16(0x0000, 0x1234, 0x1234), 0x0000);
        assert_eq!(update32(0x0000, 0xdead_beef, 0xdead_beef), 0x0000);
    }
}
