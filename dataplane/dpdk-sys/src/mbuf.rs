//! One owned packet buffer.

use std::ptr::NonNull;

use crate::ffi;
use crate::ids::PortId;

/// Not enough headroom, tailroom or data for the requested change; the mbuf
/// is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not enough room in the mbuf")]
pub struct NoRoom;

/// Which checksums the NIC should fill in on transmit (see
/// [`Mbuf::set_tx_checksum_offload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxChecksum {
    /// The IPv4 header checksum.
    pub ipv4: bool,
    /// The UDP checksum.
    pub udp: bool,
}

/// An owned `rte_mbuf`: freed back to its pool on drop, unless handed to a
/// driver (`Port::tx_burst`) or out with [`Mbuf::into_raw`].
///
/// The data accessors look at the first segment, which holds the whole
/// packet for every pool whose data room exceeds the MTU (ours do).
#[repr(transparent)]
pub struct Mbuf(NonNull<ffi::rte_mbuf>);

// SAFETY: an Mbuf is the only owner of its buffer (we never raise its
// refcount), and freeing it from any thread is allowed by DPDK mempools.
unsafe impl Send for Mbuf {}
// SAFETY: shared references only read the mbuf.
unsafe impl Sync for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `ptr` must be a valid, non-null mbuf that nothing else owns or uses
    /// (refcount 1, from a pool that stays alive), e.g. one from
    /// [`Mbuf::into_raw`] or from a DPDK call that hands over ownership.
    #[inline]
    pub unsafe fn from_raw(ptr: *mut ffi::rte_mbuf) -> Mbuf {
        debug_assert!(!ptr.is_null());
        // SAFETY: the caller promises ptr is non-null.
        Mbuf(unsafe { NonNull::new_unchecked(ptr) })
    }

    /// Gives up ownership; the caller must free or hand on the mbuf.
    #[inline]
    pub fn into_raw(self) -> *mut ffi::rte_mbuf {
        let ptr = self.0.as_ptr();
        std::mem::forget(self);
        ptr
    }

    /// The raw mbuf, still owned by `self`.
    #[inline]
    pub fn as_ptr(&self) -> *const ffi::rte_mbuf {
        self.0.as_ptr()
    }

    /// The raw mbuf, still owned by `self`.
    #[inline]
    pub fn as_mut_ptr(&mut self) -> *mut ffi::rte_mbuf {
        self.0.as_ptr()
    }

    #[inline]
    fn raw(&self) -> &ffi::rte_mbuf {
        // SAFETY: we own a valid mbuf; &self keeps it from being mutated.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn raw_mut(&mut self) -> &mut ffi::rte_mbuf {
        // SAFETY: we own a valid mbuf exclusively (&mut self).
        unsafe { self.0.as_mut() }
    }

    /// Bytes of data in the first segment (`data_len`).
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.raw().data_len)
    }

    /// Whether the first segment holds no data.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.raw().data_len == 0
    }

    /// Bytes of data in the whole packet, all segments (`pkt_len`).
    #[inline]
    pub fn pkt_len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// Number of segments in the packet.
    #[inline]
    pub fn segments(&self) -> u16 {
        self.raw().nb_segs
    }

    /// Free bytes in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.raw().data_off)
    }

    /// Free bytes after the data of the first segment.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let m = self.raw();
        usize::from(m.buf_len) - usize::from(m.data_off) - usize::from(m.data_len)
    }

    /// The data of the first segment (what `rte_pktmbuf_mtod` points at,
    /// `data_len` bytes).
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's
        // buffer (a DPDK invariant every mutator here keeps) and is
        // initialised packet data; &self keeps it unchanged.
        unsafe {
            std::slice::from_raw_parts(m.buf_addr.cast::<u8>().add(usize::from(m.data_off)), usize::from(m.data_len))
        }
    }

    /// The data of the first segment, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw_mut();
        // SAFETY: as in `data`; &mut self makes the access exclusive, and
        // the mbuf's refcount is 1 so no other holder sees the bytes.
        unsafe {
            std::slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    /// Grows the packet by `len` bytes at its end and returns them
    /// (uninitialised packet memory: old bytes from the buffer's last use).
    #[inline]
    pub fn append(&mut self, len: u16) -> Result<&mut [u8], NoRoom> {
        // SAFETY: we own the mbuf exclusively; DPDK checks the tailroom.
        let ptr = unsafe { ffi::rte_pktmbuf_append(self.as_mut_ptr(), len) };
        if ptr.is_null() {
            return Err(NoRoom);
        }
        // SAFETY: DPDK returned the start of `len` bytes inside the (last
        // segment's) buffer, now counted as data and owned by us.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), usize::from(len)) })
    }

    /// Grows the packet by `len` bytes at its front and returns them.
    #[inline]
    pub fn prepend(&mut self, len: u16) -> Result<&mut [u8], NoRoom> {
        // SAFETY: we own the mbuf exclusively; DPDK checks the headroom.
        let ptr = unsafe { ffi::rte_pktmbuf_prepend(self.as_mut_ptr(), len) };
        if ptr.is_null() {
            return Err(NoRoom);
        }
        // SAFETY: DPDK returned the new start of data, `len` bytes before
        // the old one, inside the buffer.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), usize::from(len)) })
    }

    /// Drops `len` bytes from the front of the packet (e.g. a header).
    #[inline]
    pub fn adj(&mut self, len: u16) -> Result<(), NoRoom> {
        // SAFETY: we own the mbuf exclusively; DPDK checks data_len.
        let ptr = unsafe { ffi::rte_pktmbuf_adj(self.as_mut_ptr(), len) };
        if ptr.is_null() {
            Err(NoRoom)
        } else {
            Ok(())
        }
    }

    /// Drops `len` bytes from the end of the packet.
    #[inline]
    pub fn trim(&mut self, len: u16) -> Result<(), NoRoom> {
        // SAFETY: we own the mbuf exclusively; DPDK checks the last
        // segment's data_len.
        let ret = unsafe { ffi::rte_pktmbuf_trim(self.as_mut_ptr(), len) };
        if ret == 0 {
            Ok(())
        } else {
            Err(NoRoom)
        }
    }

    /// Empties the mbuf and restores its default headroom and fields.
    #[inline]
    pub fn reset(&mut self) {
        // SAFETY: we own the mbuf exclusively.
        unsafe { ffi::rte_pktmbuf_reset(self.as_mut_ptr()) }
    }

    /// The port the packet arrived on (meaningful for received mbufs).
    #[inline]
    pub fn port(&self) -> PortId {
        PortId(self.raw().port)
    }

    /// The offload flags (`ol_flags`, `RTE_MBUF_F_*`).
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.raw().ol_flags
    }

    /// Asks the NIC to fill in the IPv4 header and/or UDP checksum of this
    /// IPv4 packet, whose Ethernet header is `l2_len` bytes and IPv4 header
    /// `l3_len` bytes. Only takes effect on a port configured with
    /// [`crate::PortConfig::tx_checksum`] for what [`crate::Port::tx_checksum_capa`]
    /// offers.
    ///
    /// DPDK's contract for the packet bytes: the IPv4 checksum field must be
    /// 0, and for UDP the checksum field must hold the pseudo-header
    /// checksum (not complemented), as `rte_ipv4_phdr_cksum` computes; or
    /// call `Port::tx_prepare`, which fixes both for the device.
    #[inline]
    pub fn set_tx_checksum_offload(&mut self, l2_len: u8, l3_len: u16, what: TxChecksum) {
        let m = self.raw_mut();
        let mut flags = ffi::RTE_MBUF_F_TX_IPV4;
        if what.ipv4 {
            flags |= ffi::RTE_MBUF_F_TX_IP_CKSUM;
        }
        if what.udp {
            flags |= ffi::RTE_MBUF_F_TX_UDP_CKSUM;
        }
        m.ol_flags = (m.ol_flags & !ffi::RTE_MBUF_F_TX_L4_MASK) | flags;
        // SAFETY: tx_offload is a plain u64 union of bitfields; every bit
        // pattern is valid for both views.
        let tx = unsafe { &mut m.__bindgen_anon_3.__bindgen_anon_1 };
        tx.set_l2_len(u64::from(l2_len));
        tx.set_l3_len(u64::from(l3_len));
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (and its chain); nothing uses it after.
        unsafe { ffi::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("port", &self.raw().port)
            .field("len", &self.len())
            .field("pkt_len", &self.pkt_len())
            .field("ol_flags", &format_args!("{:#x}", self.ol_flags()))
            .finish()
    }
}
