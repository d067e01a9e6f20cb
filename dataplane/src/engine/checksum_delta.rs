//! The change a rewrite makes to a packet's one's-complement checksum
//! (RFC 1624, eqn. 3), accumulated while fields are rewritten and applied
//! once to the UDP checksum by a backend that carries one.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksumDelta(u32);

impl ChecksumDelta {
    #[inline]
    pub fn replace16(&mut self, old: u16, new: u16) {
        self.0 += u32::from(!old) + u32::from(new);
    }

    #[inline]
    pub fn replace32(&mut self, old: u32, new: u32) {
        self.replace16((old >> 16) as u16, (new >> 16) as u16);
        self.replace16(old as u16, new as u16);
    }

    /// Adds another delta (e.g. the address rewrite on top of the payload's).
    #[inline]
    pub fn add(&mut self, other: ChecksumDelta) {
        self.0 = fold(self.0) + fold(other.0);
    }

    pub fn is_zero(&self) -> bool {
        fold(self.0) as u16 == 0 || fold(self.0) as u16 == 0xffff
    }

    /// The new checksum field: `~(~old + delta)`.
    #[inline]
    pub fn apply(self, checksum: u16) -> u16 {
        let sum = fold(u32::from(!checksum) + fold(self.0));
        !(sum as u16)
    }
}

#[inline]
fn fold(mut sum: u32) -> u32 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(words: &[u16]) -> u16 {
        let sum = words.iter().fold(0u32, |s, &w| fold(s + u32::from(w)));
        !(sum as u16)
    }

    #[test]
    fn incremental_matches_full_recompute() {
        let mut words = [0x4500u16, 0x0073, 0x0000, 0x4000, 0x4011, 0xc0a8, 0x0001, 0xc0a8, 0x00c7, 0x1234, 0xffff];
        let before = full(&words);
        let mut delta = ChecksumDelta::default();
        for (i, new) in [(5usize, 0x0a00u16), (6, 0x0002), (10, 0x0000), (9, 0xfedc)] {
            delta.replace16(words[i], new);
            words[i] = new;
        }
        assert_eq!(delta.apply(before), full(&words));
    }

    #[test]
    fn replace32_is_two_words() {
        let mut words = [0xdeadu16, 0xbeef, 0x0102];
        let before = full(&words);
        let mut delta = ChecksumDelta::default();
        delta.replace32(0xdead_beef, 0x0000_0001);
        words[0] = 0;
        words[1] = 1;
        assert_eq!(delta.apply(before), full(&words));
    }
}
