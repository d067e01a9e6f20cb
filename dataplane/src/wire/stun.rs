//! STUN message headers and attributes (RFC 8489), enough for ICE-lite
//! connectivity checks on a media port. No integrity or fingerprint check.

use super::{Error, Field, Result};

pub const MAGIC_COOKIE: u32 = 0x2112_a442;
pub const BINDING_REQUEST: u16 = 0x0001;
pub const BINDING_SUCCESS: u16 = 0x0101;
pub const BINDING_ERROR: u16 = 0x0111;

/// Attribute types.
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const ICE_CONTROLLED: u16 = 0x8029;
    pub const ICE_CONTROLLING: u16 = 0x802a;
}

mod field {
    use super::Field;

    pub const TYPE: Field = 0..2;
    pub const LENGTH: Field = 2..4;
    pub const COOKIE: Field = 4..8;
    pub const TRANSACTION_ID: Field = 8..20;
}

pub const HEADER_LEN: usize = field::TRANSACTION_ID.end;

/// A view of a STUN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
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

    /// Ensures the header and the stated body fit; Malformed if the top two
    /// type bits are set or the length is not a multiple of 4. The magic
    /// cookie is left to `has_magic_cookie` (RFC 3489 peers lack it).
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[0] & 0xc0 != 0 || self.message_length() & 3 != 0 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(self.message_length()) > b.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn message_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TYPE.start)
    }

    /// The 12-bit method (1 = Binding), with the class bits taken out.
    pub fn method(&self) -> u16 {
        let t = self.message_type();
        (t & 0x000f) | ((t & 0x00e0) >> 1) | ((t & 0x3e00) >> 2)
    }

    /// The class: 0 request, 1 indication, 2 success, 3 error response.
    pub fn class(&self) -> u8 {
        let t = self.message_type();
        (((t >> 4) & 0x1) | ((t >> 7) & 0x2)) as u8
    }

    /// Length of the attributes, excluding the 20-byte header.
    pub fn message_length(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    pub fn magic_cookie(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }

    pub fn has_magic_cookie(&self) -> bool {
        self.magic_cookie() == MAGIC_COOKIE
    }

    pub fn transaction_id(&self) -> [u8; 12] {
        let mut id = [0u8; 12];
        id.copy_from_slice(&self.buffer.as_ref()[field::TRANSACTION_ID]);
        id
    }

    pub fn attributes(&self) -> AttributeIter<'_> {
        let end = HEADER_LEN + usize::from(self.message_length());
        AttributeIter { rest: &self.buffer.as_ref()[HEADER_LEN..end] }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_message_type(&mut self, v: u16) {
        self.buffer.as_mut()[field::TYPE].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_message_length(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_magic_cookie(&mut self, v: u32) {
        self.buffer.as_mut()[field::COOKIE].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_transaction_id(&mut self, id: &[u8; 12]) {
        self.buffer.as_mut()[field::TRANSACTION_ID].copy_from_slice(id);
    }
}

/// One attribute; `value` excludes the padding to 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub kind: u16,
    pub value: &'a [u8],
}

/// Iterates over attributes; one overrunning the message yields `Malformed`
/// once and ends the iteration.
#[derive(Debug, Clone)]
pub struct AttributeIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AttributeIter<'a> {
    type Item = Result<Attribute<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = self.rest;
        self.rest = &[];
        let header = rest.get(..4)?;
        let (kind, len) = (be16(header, 0), usize::from(be16(header, 2)));
        let Some(value) = rest.get(4..4 + len) else {
            return Some(Err(Error::Malformed));
        };
        self.rest = rest.get(4 + len.div_ceil(4) * 4..).unwrap_or(&[]);
        Some(Ok(Attribute { kind, value }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ICE connectivity check: Binding request with USERNAME "abcd:efgh",
    // PRIORITY and ICE-CONTROLLED.
    static REQUEST: [u8; 56] = [
        0x00, 0x01, 0x00, 0x24, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87,
        0xdf, 0xae, 0x00, 0x06, 0x00, 0x09, 0x61, 0x62, 0x63, 0x64, 0x3a, 0x65, 0x66, 0x67, 0x68, 0x00, 0x00, 0x00,
        0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26,
        0x3b, 0x36,
    ];

    const TXID: [u8; 12] = [0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.message_type(), BINDING_REQUEST);
        assert_eq!((p.method(), p.class()), (1, 0));
        assert_eq!(p.message_length(), 36);
        assert!(p.has_magic_cookie());
        assert_eq!(p.transaction_id(), TXID);
        let attrs: Vec<_> = p.attributes().collect::<Result<_>>().unwrap();
        assert_eq!(attrs.len(), 3);
        assert_eq!(attrs[0], Attribute { kind: attr::USERNAME, value: b"abcd:efgh" });
        assert_eq!(attrs[1].kind, attr::PRIORITY);
        assert_eq!(attrs[2].kind, attr::ICE_CONTROLLED);
        assert_eq!(attrs[2].value.len(), 8);
    }

    #[test]
    fn construct() {
        let mut buf = REQUEST;
        buf[..20].fill(0);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_message_type(BINDING_REQUEST);
        p.set_message_length(36);
        p.set_magic_cookie(MAGIC_COOKIE);
        p.set_transaction_id(&TXID);
        assert_eq!(buf, REQUEST);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_message_type(BINDING_ERROR);
        assert_eq!((p.method(), p.class()), (1, 3));
        p.set_message_type(BINDING_SUCCESS);
        assert_eq!((p.method(), p.class()), (1, 2));
    }

    #[test]
    fn rejects() {
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&REQUEST[..19]), Err(Error::Truncated));
        assert_eq!(check(&REQUEST[..55]), Err(Error::Truncated));
        let mut rtp = REQUEST;
        rtp[0] = 0x80;
        assert_eq!(check(&rtp), Err(Error::Malformed));
        let mut odd = REQUEST;
        odd[3] = 0x23;
        assert_eq!(check(&odd), Err(Error::Malformed));
        let mut overrun = REQUEST;
        overrun[47] = 0x0c;
        let p = Packet::new_checked(&overrun[..]).unwrap();
        assert_eq!(p.attributes().last(), Some(Err(Error::Malformed)));
    }

    #[test]
    fn no_panic_on_any_input() {
        super::super::testing::for_each_mutation(&REQUEST, |b| {
            if let Ok(p) = Packet::new_checked(b) {
                let _ = (p.method(), p.class(), p.has_magic_cookie(), p.transaction_id());
                let _ = p.attributes().count();
            }
        });
    }
}
