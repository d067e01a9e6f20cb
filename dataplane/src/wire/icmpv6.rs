//! ICMPv6 (RFC 4443), only as far as Neighbor Discovery (RFC 4861) needs:
//! a gateway must answer neighbor solicitations for its own addresses.

use super::ethernet::EthernetAddress;
use super::{checksum, Error, Field, Result};

const PROTO_ICMPV6: u8 = 58;

/// ICMPv6 message types.
pub mod msg_type {
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// Neighbor Discovery option types.
pub mod nd_option {
    pub const SOURCE_LL_ADDR: u8 = 1;
    pub const TARGET_LL_ADDR: u8 = 2;
}

/// Neighbor Advertisement flags, as they sit in `nd_flags()`.
pub const FLAG_ROUTER: u8 = 0x80;
pub const FLAG_SOLICITED: u8 = 0x40;
pub const FLAG_OVERRIDE: u8 = 0x20;

mod field {
    use super::Field;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ND_FLAGS: usize = 4;
    pub const ND_TARGET: Field = 8..24;
}

/// Type, code, checksum and the 4-byte first word every message has.
pub const HEADER_LEN: usize = 8;
/// A Neighbor Solicitation or Advertisement without options.
pub const ND_HEADER_LEN: usize = field::ND_TARGET.end;
const LL_OPTION_LEN: usize = 8;

/// A view of an ICMPv6 message: the whole IPv6 payload, since the checksum
/// covers all of it.
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

    /// Ensures 8 bytes, or 24 for NS/NA; afterwards no getter panics
    /// (ND getters return `None` on other messages).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || (self.is_neighbor_discovery() && len < ND_HEADER_LEN) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::CHECKSUM.start], b[field::CHECKSUM.start + 1]])
    }

    /// Neighbor Solicitation or Advertisement.
    pub fn is_neighbor_discovery(&self) -> bool {
        let t = self.buffer.as_ref().first().copied();
        t == Some(msg_type::NEIGHBOR_SOLICIT) || t == Some(msg_type::NEIGHBOR_ADVERT)
    }

    /// The first byte after the checksum: R/S/O flags of an advertisement.
    pub fn nd_flags(&self) -> u8 {
        self.buffer.as_ref()[field::ND_FLAGS]
    }

    /// The target address of an NS or NA.
    pub fn target_addr(&self) -> Option<[u8; 16]> {
        if !self.is_neighbor_discovery() {
            return None;
        }
        let mut a = [0u8; 16];
        a.copy_from_slice(self.buffer.as_ref().get(field::ND_TARGET)?);
        Some(a)
    }

    /// The options of an NS or NA; empty for other messages.
    pub fn nd_options(&self) -> NdOptionIter<'_> {
        let b = self.buffer.as_ref();
        let rest = match (self.is_neighbor_discovery(), b.get(ND_HEADER_LEN..)) {
            (true, Some(rest)) => rest,
            _ => &[],
        };
        NdOptionIter { rest }
    }

    /// The source link-layer address of an NS, or the target link-layer
    /// address of an NA; `None` if absent or not NS/NA.
    pub fn link_layer_addr(&self) -> Result<Option<EthernetAddress>> {
        let wanted = match self.msg_type() {
            msg_type::NEIGHBOR_SOLICIT => nd_option::SOURCE_LL_ADDR,
            msg_type::NEIGHBOR_ADVERT => nd_option::TARGET_LL_ADDR,
            _ => return Ok(None),
        };
        let mut found = None;
        for opt in self.nd_options() {
            let opt = opt?;
            if opt.kind == wanted {
                if opt.data.len() != 6 {
                    return Err(Error::Malformed);
                }
                found = Some(EthernetAddress::from_bytes(opt.data));
            }
        }
        Ok(found)
    }

    /// Checks the checksum over the IPv6 pseudo header and the whole buffer.
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, PROTO_ICMPV6, b.len() as u32);
        checksum::combine(&[ph, checksum::data(b)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    pub fn set_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the flag byte and clears the rest of the reserved word.
    pub fn set_nd_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::ND_FLAGS..field::ND_TARGET.start].copy_from_slice(&[flags, 0, 0, 0]);
    }

    /// Panics on a buffer shorter than `ND_HEADER_LEN`.
    pub fn set_target_addr(&mut self, a: &[u8; 16]) {
        self.buffer.as_mut()[field::ND_TARGET].copy_from_slice(a);
    }

    /// Computes the checksum over the IPv6 pseudo header and the buffer.
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, PROTO_ICMPV6, b.len() as u32);
        let sum = checksum::combine(&[ph, checksum::data(b)]);
        self.set_checksum(checksum::finish(sum));
    }
}

/// One Neighbor Discovery option; `data` excludes the type and length bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdOption<'a> {
    pub kind: u8,
    pub data: &'a [u8],
}

/// Iterates over ND options; a zero length or an overrun yields `Malformed`
/// once, then the iterator ends.
#[derive(Debug, Clone)]
pub struct NdOptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NdOptionIter<'a> {
    type Item = Result<NdOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        let (&kind, &units) = match rest {
            [] => return None,
            [kind, units, ..] => (kind, units),
            [_] => {
                self.rest = &[];
                return Some(Err(Error::Malformed));
            }
        };
        let len = usize::from(units) * 8;
        if len == 0 || len > rest.len() {
            self.rest = &[];
            return Some(Err(Error::Malformed));
        }
        self.rest = &rest[len..];
        Some(Ok(NdOption { kind, data: &rest[2..len] }))
    }
}

/// A Neighbor Solicitation or Advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdRepr {
    Solicit {
        target_addr: [u8; 16],
        source_lladdr: Option<EthernetAddress>,
    },
    Advert {
        /// `FLAG_ROUTER | FLAG_SOLICITED | FLAG_OVERRIDE` bits.
        flags: u8,
        target_addr: [u8; 16],
        target_lladdr: Option<EthernetAddress>,
    },
}

impl NdRepr {
    /// Checks the RFC 4861 message rules this view can see (code 0, unicast
    /// target, well-formed options); the caller checks the checksum and that
    /// the IPv6 hop limit is 255.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<NdRepr> {
        packet.check_len()?;
        let target_addr = packet.target_addr().ok_or(Error::Malformed)?;
        if packet.code() != 0 || target_addr[0] == 0xff {
            return Err(Error::Malformed);
        }
        let lladdr = packet.link_layer_addr()?;
        Ok(match packet.msg_type() {
            msg_type::NEIGHBOR_SOLICIT => NdRepr::Solicit { target_addr, source_lladdr: lladdr },
            _ => NdRepr::Advert {
                flags: packet.nd_flags() & (FLAG_ROUTER | FLAG_SOLICITED | FLAG_OVERRIDE),
                target_addr,
                target_lladdr: lladdr,
            },
        })
    }

    pub fn buffer_len(&self) -> usize {
        let lladdr = match self {
            NdRepr::Solicit { source_lladdr, .. } => source_lladdr,
            NdRepr::Advert { target_lladdr, .. } => target_lladdr,
        };
        ND_HEADER_LEN + if lladdr.is_some() { LL_OPTION_LEN } else { 0 }
    }

    /// Writes the message and fills the checksum for the given IPv6 source
    /// and destination. The buffer must be exactly `buffer_len()` long, as
    /// the checksum covers all of it; panics if shorter.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut Packet<&mut T>,
        src: &[u8; 16],
        dst: &[u8; 16],
    ) {
        let (ty, flags, target, opt, lladdr) = match *self {
            NdRepr::Solicit { target_addr, source_lladdr } => {
                (msg_type::NEIGHBOR_SOLICIT, 0, target_addr, nd_option::SOURCE_LL_ADDR, source_lladdr)
            }
            NdRepr::Advert { flags, target_addr, target_lladdr } => {
                (msg_type::NEIGHBOR_ADVERT, flags, target_addr, nd_option::TARGET_LL_ADDR, target_lladdr)
            }
        };
        packet.set_msg_type(ty);
        packet.set_code(0);
        packet.set_nd_flags(flags);
        packet.set_target_addr(&target);
        if let Some(mac) = lladdr {
            let o = &mut packet.buffer.as_mut()[ND_HEADER_LEN..ND_HEADER_LEN + LL_OPTION_LEN];
            o[0] = opt;
            o[1] = 1;
            o[2..].copy_from_slice(&mac.0);
        }
        packet.fill_checksum(src, dst);
    }
}

/// Writes a Neighbor Advertisement with a target link-layer address option
/// into the start of `buffer` and returns its length (32).
pub fn emit_neighbor_advert(
    buffer: &mut [u8],
    src: &[u8; 16],
    dst: &[u8; 16],
    target_addr: &[u8; 16],
    target_lladdr: EthernetAddress,
    flags: u8,
) -> Result<usize> {
    let repr = NdRepr::Advert { flags, target_addr: *target_addr, target_lladdr: Some(target_lladdr) };
    let len = repr.buffer_len();
    let buf = buffer.get_mut(..len).ok_or(Error::Truncated)?;
    repr.emit(&mut Packet::new_unchecked(buf), src, dst);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    // fe80::5054:ff:fe12:3456 -> ff02::1:ff00:1: who has 2001:db8::1?
    static NS: [u8; 32] = [
        0x87, 0x00, 0x42, 0xea, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    ];

    // 2001:db8::1 -> fe80::5054:ff:fe12:3456: solicited, override.
    static NA: [u8; 32] = [
        0x88, 0x00, 0x78, 0xa2, 0x60, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x01, 0x00, 0x1b, 0x21, 0x3c, 0x9d, 0xf8,
    ];

    const LINK_LOCAL: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56];
    const SOLICITED_NODE: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0x00, 0x00, 0x01];
    const GLOBAL: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01];
    const OUR_MAC: EthernetAddress = EthernetAddress([0x00, 0x1b, 0x21, 0x3c, 0x9d, 0xf8]);
    const THEIR_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

    #[test]
    fn deconstruct_solicit() {
        let p = Packet::new_checked(&NS[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::NEIGHBOR_SOLICIT);
        assert_eq!(p.code(), 0);
        assert_eq!(p.checksum(), 0x42ea);
        assert!(p.verify_checksum(&LINK_LOCAL, &SOLICITED_NODE));
        assert!(!p.verify_checksum(&GLOBAL, &SOLICITED_NODE));
        assert_eq!(p.target_addr(), Some(GLOBAL));
        assert_eq!(p.link_layer_addr(), Ok(Some(THEIR_MAC)));
        assert_eq!(p.nd_options().count(), 1);
    }

    #[test]
    fn parse_and_emit() {
        let ns = NdRepr::parse(&Packet::new_unchecked(&NS[..])).unwrap();
        assert_eq!(ns, NdRepr::Solicit { target_addr: GLOBAL, source_lladdr: Some(THEIR_MAC) });
        let mut buf = [0u8; 32];
        ns.emit(&mut Packet::new_unchecked(&mut buf[..]), &LINK_LOCAL, &SOLICITED_NODE);
        assert_eq!(buf, NS);

        let na = NdRepr::parse(&Packet::new_unchecked(&NA[..])).unwrap();
        let flags = FLAG_SOLICITED | FLAG_OVERRIDE;
        let want = NdRepr::Advert { flags, target_addr: GLOBAL, target_lladdr: Some(OUR_MAC) };
        assert_eq!(na, want);
        assert_eq!(na.buffer_len(), 32);
    }

    #[test]
    fn answer_solicitation() {
        let mut buf = [0u8; 64];
        let n = emit_neighbor_advert(&mut buf, &GLOBAL, &LINK_LOCAL, &GLOBAL, OUR_MAC, FLAG_SOLICITED | FLAG_OVERRIDE)
            .unwrap();
        assert_eq!(&buf[..n], &NA[..]);
        assert!(Packet::new_unchecked(&buf[..n]).verify_checksum(&GLOBAL, &LINK_LOCAL));
        let short = emit_neighbor_advert(&mut buf[..31], &GLOBAL, &LINK_LOCAL, &GLOBAL, OUR_MAC, 0);
        assert_eq!(short, Err(Error::Truncated));
    }

    #[test]
    fn rejects() {
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert_eq!(check(&NS[..7]), Err(Error::Truncated));
        assert_eq!(check(&NS[..23]), Err(Error::Truncated));
        assert_eq!(check(&NS[..24]), Ok(()));
        let ping = [0x80, 0x00, 0x12, 0x34, 0x00, 0x01, 0x00, 0x01];
        let p = Packet::new_checked(&ping[..]).unwrap();
        assert_eq!((p.target_addr(), p.link_layer_addr()), (None, Ok(None)));
        assert_eq!(NdRepr::parse(&p), Err(Error::Malformed));

        let mut zero_len = NS;
        zero_len[25] = 0;
        let p = Packet::new_unchecked(&zero_len[..]);
        assert_eq!(p.link_layer_addr(), Err(Error::Malformed));
        assert_eq!(NdRepr::parse(&p), Err(Error::Malformed));
        let mut overrun = NS;
        overrun[25] = 2;
        assert_eq!(Packet::new_unchecked(&overrun[..]).link_layer_addr(), Err(Error::Malformed));
        let mut multicast_target = NS;
        multicast_target[8] = 0xff;
        let p = Packet::new_unchecked(&multicast_target[..]);
        assert_eq!(NdRepr::parse(&p), Err(Error::Malformed));
        let mut code = NS;
        code[1] = 1;
        assert_eq!(NdRepr::parse(&Packet::new_unchecked(&code[..])), Err(Error::Malformed));
    }

    #[test]
    fn no_panic_on_any_input() {
        for fixture in [&NS[..], &NA[..]] {
            super::super::testing::for_each_mutation(fixture, |b| {
                if let Ok(p) = Packet::new_checked(b) {
                    let _ = (p.msg_type(), p.code(), p.checksum(), p.nd_flags());
                    let _ = (p.target_addr(), p.link_layer_addr(), p.nd_options().count());
                    let _ = (p.verify_checksum(&GLOBAL, &LINK_LOCAL), NdRepr::parse(&p));
                }
            });
        }
    }
}
