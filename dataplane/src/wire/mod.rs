//! Wire formats: zero-copy packet views and their `Repr`s. No I/O, no unsafe.
//!
//! Every view follows one contract (after smoltcp): `Packet::new_unchecked`,
//! `Packet::new_checked` (= `new_unchecked` + `check_len`), getters on
//! `T: AsRef<[u8]>`, setters on `T: AsMut<[u8]>`. Once `check_len` succeeded,
//! no accessor panics.

/// Errors of the packet views: the buffer is too short, or a field holds a
/// value the format does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("packet truncated")]
    Truncated,
    #[error("malformed packet")]
    Malformed,
}

pub type Result<T> = core::result::Result<T, Error>;

pub(crate) type Field = core::ops::Range<usize>;
pub(crate) type Rest = core::ops::RangeFrom<usize>;

pub mod arp;
pub mod checksum;
pub mod classify;
pub mod ethernet;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod rtcp;
pub mod rtp;
pub mod stun;
pub mod telephone_event;
pub mod udp;

#[cfg(test)]
mod testing;
