//! Ethernet II frames, with an optional 802.1Q VLAN tag.

use core::fmt;

use super::{Error, Field, Rest, Result};

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Panics unless `bytes` is 6 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(bytes);
        EthernetAddress(a)
    }

    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// The I/G bit; broadcast is multicast too.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// The IPv6 multicast MAC `33:33:xx:xx:xx:xx` (RFC 2464 section 7).
    pub fn ipv6_multicast(addr: &[u8; 16]) -> EthernetAddress {
        EthernetAddress([0x33, 0x33, addr[12], addr[13], addr[14], addr[15]])
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// An EtherType; a newtype so unknown values pass through unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: EtherType = EtherType(0x0800);
    pub const ARP: EtherType = EtherType(0x0806);
    pub const VLAN: EtherType = EtherType(0x8100);
    pub const IPV6: EtherType = EtherType(0x86dd);
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        EtherType(v)
    }
}

impl From<EtherType> for u16 {
    fn from(t: EtherType) -> u16 {
        t.0
    }
}

mod field {
    use super::{Field, Rest};

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
    pub const VLAN_TCI: Field = 14..16;
    pub const VLAN_ETHERTYPE: Field = 16..18;
    pub const VLAN_PAYLOAD: Rest = 18..;
}

pub const HEADER_LEN: usize = field::PAYLOAD.start;
pub const VLAN_HEADER_LEN: usize = field::VLAN_PAYLOAD.start;

/// A view of an Ethernet frame.
///
/// `ethertype()` is the type of the payload: the inner EtherType when the
/// frame carries an 802.1Q tag, so callers dispatch the same way on tagged and
/// untagged frames; `outer_ethertype()` is the raw field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], f: Field) -> u16 {
    u16::from_be_bytes([b[f.start], b[f.start + 1]])
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Ensures the (possibly tagged) header fits; afterwards no getter panics.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || (self.is_tagged() && len < VLAN_HEADER_LEN) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn is_tagged(&self) -> bool {
        let d = self.buffer.as_ref();
        d.len() >= HEADER_LEN && EtherType(be16(d, field::ETHERTYPE)) == EtherType::VLAN
    }

    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    pub fn outer_ethertype(&self) -> EtherType {
        EtherType(be16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// The EtherType of the payload (inner one when VLAN-tagged).
    pub fn ethertype(&self) -> EtherType {
        let d = self.buffer.as_ref();
        if self.is_tagged() {
            EtherType(be16(d, field::VLAN_ETHERTYPE))
        } else {
            EtherType(be16(d, field::ETHERTYPE))
        }
    }

    /// The whole 802.1Q TCI (priority, DEI, VLAN id), if tagged.
    pub fn vlan_tci(&self) -> Option<u16> {
        self.is_tagged().then(|| be16(self.buffer.as_ref(), field::VLAN_TCI))
    }

    /// The 12-bit VLAN id, if tagged.
    pub fn vlan(&self) -> Option<u16> {
        self.vlan_tci().map(|tci| tci & 0x0fff)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the payload's EtherType: the inner field when already tagged.
    pub fn set_ethertype(&mut self, ty: EtherType) {
        let f = if self.is_tagged() { field::VLAN_ETHERTYPE } else { field::ETHERTYPE };
        self.buffer.as_mut()[f].copy_from_slice(&ty.0.to_be_bytes());
    }

    pub fn set_outer_ethertype(&mut self, ty: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ty.0.to_be_bytes());
    }

    /// Writes an 802.1Q tag (outer type 0x8100 and the TCI); the inner
    /// EtherType is then set with `set_ethertype`. Panics on a buffer shorter
    /// than `VLAN_HEADER_LEN`.
    pub fn set_vlan_tci(&mut self, tci: u16) {
        let d = self.buffer.as_mut();
        d[field::ETHERTYPE].copy_from_slice(&EtherType::VLAN.0.to_be_bytes());
        d[field::VLAN_TCI].copy_from_slice(&tci.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// A parsed Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: EthernetAddress,
    pub dst_addr: EthernetAddress,
    pub ethertype: EtherType,
    /// The whole TCI of an 802.1Q tag.
    pub vlan_tci: Option<u16>,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &Frame<&T>) -> Result<Repr> {
        frame.check_len()?;
        Ok(Repr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
            vlan_tci: frame.vlan_tci(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        match self.vlan_tci {
            Some(_) => VLAN_HEADER_LEN,
            None => HEADER_LEN,
        }
    }

    /// Writes the header; panics if the buffer is shorter than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, frame: &mut Frame<&mut T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        match self.vlan_tci {
            Some(tci) => frame.set_vlan_tci(tci),
            None => frame.set_outer_ethertype(self.ethertype),
        }
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Broadcast ARP request frame header + first payload bytes.
    static FRAME: [u8; 18] =
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, 0x00, 0x01, 0x08, 0x00];

    // VLAN 100 (PCP 5) carrying IPv4.
    static TAGGED: [u8; 22] = [
        0x00, 0x1b, 0x21, 0x3c, 0x9d, 0xf8, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x81, 0x00, 0xa0, 0x64, 0x08, 0x00,
        0x45, 0x00, 0x00, 0x1c,
    ];

    #[test]
    fn deconstruct_untagged() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        assert!(f.dst_addr().is_broadcast());
        assert!(f.dst_addr().is_multicast());
        assert_eq!(f.src_addr(), EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        assert!(f.src_addr().is_unicast());
        assert_eq!(f.ethertype(), EtherType::ARP);
        assert_eq!(f.vlan(), None);
        assert_eq!(f.header_len(), HEADER_LEN);
        assert_eq!(f.payload(), &[0x00, 0x01, 0x08, 0x00]);
        assert_eq!(f.src_addr().to_string(), "52:54:00:12:34:56");
    }

    #[test]
    fn deconstruct_tagged() {
        let f = Frame::new_checked(&TAGGED[..]).unwrap();
        assert_eq!(f.outer_ethertype(), EtherType::VLAN);
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.vlan(), Some(100));
        assert_eq!(f.vlan_tci(), Some(0xa064));
        assert_eq!(f.header_len(), VLAN_HEADER_LEN);
        assert_eq!(f.payload(), &[0x45, 0x00, 0x00, 0x1c]);
    }

    #[test]
    fn construct_and_emit() {
        let mut buf = [0u8; 18];
        let mut f = Frame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(EthernetAddress::BROADCAST);
        f.set_src_addr(EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        f.set_ethertype(EtherType::ARP);
        f.payload_mut().copy_from_slice(&[0x00, 0x01, 0x08, 0x00]);
        assert_eq!(buf, FRAME);

        let repr = Repr::parse(&Frame::new_unchecked(&TAGGED[..])).unwrap();
        assert_eq!(repr.buffer_len(), 18);
        let mut out = TAGGED;
        out[..18].fill(0);
        repr.emit(&mut Frame::new_unchecked(&mut out[..]));
        assert_eq!(out, TAGGED);
    }

    #[test]
    fn truncated() {
        assert_eq!(Frame::new_checked(&FRAME[..13]).unwrap_err(), Error::Truncated);
        assert_eq!(Frame::new_checked(&TAGGED[..17]).unwrap_err(), Error::Truncated);
        assert!(Frame::new_checked(&FRAME[..14]).is_ok());
    }

    #[test]
    fn multicast_mapping() {
        let mut a = [0u8; 16];
        a[0] = 0xff;
        a[1] = 0x02;
        a[11] = 0x01;
        a[12..].copy_from_slice(&[0xff, 0x00, 0x00, 0x01]);
        let m = EthernetAddress::ipv6_multicast(&a);
        assert_eq!(m.to_string(), "33:33:ff:00:00:01");
        assert!(m.is_multicast() && !m.is_broadcast());
    }

    #[test]
    fn no_panic_on_any_input() {
        for fixture in [&FRAME[..], &TAGGED[..]] {
            super::super::testing::for_each_mutation(fixture, |b| {
                if let Ok(f) = Frame::new_checked(b) {
                    let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.vlan());
                    let _ = (f.header_len(), f.payload().len(), Repr::parse(&f));
                }
            });
        }
    }
}
