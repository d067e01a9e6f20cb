//! A fixed array of owned mbufs: what rx fills and tx drains, without
//! allocating.

use std::ptr;

use crate::ffi;
use crate::mbuf::Mbuf;

/// How many mbufs a [`Burst`] holds: DPDK's customary burst size.
pub const BURST_SIZE: usize = 64;

/// Up to [`BURST_SIZE`] owned mbufs in a fixed array. Slots `0..len` hold
/// mbufs this burst owns; the rest are unused. Whatever is still in it when
/// it is dropped or [`clear`](Burst::clear)ed is freed to its pool.
///
/// `Port::rx_burst` appends received mbufs after the current ones;
/// `Port::tx_burst` hands the leading ones to the driver and keeps the rest,
/// moved to the front, for the caller to retry or drop.
pub struct Burst {
    slots: [*mut ffi::rte_mbuf; BURST_SIZE],
    len: usize,
}

// SAFETY: the burst exclusively owns the mbufs in 0..len, which are Send
// (see Mbuf); the array itself is plain data.
unsafe impl Send for Burst {}

impl Default for Burst {
    fn default() -> Self {
        Burst::new()
    }
}

impl Burst {
    /// An empty burst.
    #[inline]
    pub const fn new() -> Burst {
        Burst { slots: [ptr::null_mut(); BURST_SIZE], len: 0 }
    }

    /// Mbufs held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no mbuf is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether all [`BURST_SIZE`] slots are taken.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == BURST_SIZE
    }

    /// Adds an mbuf at the end, or gives it back if the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.is_full() {
            return Err(m);
        }
        self.slots[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Takes the last mbuf out.
    #[inline]
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slot `len` (the old last) held an owned mbuf, which is no
        // longer counted as ours.
        Some(unsafe { Mbuf::from_raw(self.slots[self.len]) })
    }

    /// The held mbufs.
    #[inline]
    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: Mbuf is repr(transparent) over a non-null pointer, and the
        // first `len` slots hold valid, non-null mbufs we own.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr().cast::<Mbuf>(), self.len) }
    }

    /// The held mbufs, writable (swapping them around keeps ownership right).
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: as in as_slice; &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.slots.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }

    /// Takes every mbuf out, first to last, leaving the burst empty. Mbufs
    /// the iterator does not yield (it is dropped early) are freed.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_> {
        let len = std::mem::take(&mut self.len);
        Drain { burst: self, next: 0, end: len }
    }

    /// Frees every held mbuf to its pool.
    #[inline]
    pub fn clear(&mut self) {
        if self.len > 0 {
            // SAFETY: the first `len` slots hold owned mbufs; after this call
            // they are forgotten (len = 0). rte_pktmbuf_free_bulk handles
            // mbufs from different pools.
            unsafe { ffi::rte_pktmbuf_free_bulk(self.slots.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }

    /// Keeps the mbufs for which `keep` returns true, in order, and frees
    /// the others.
    #[inline]
    pub fn retain(&mut self, mut keep: impl FnMut(&mut Mbuf) -> bool) {
        let mut kept = 0;
        for i in 0..self.len {
            // SAFETY: slot i < len holds an owned mbuf; we take it out of the
            // array here and either put it back at `kept` or drop it.
            let mut m = unsafe { Mbuf::from_raw(self.slots[i]) };
            if keep(&mut m) {
                self.slots[kept] = m.into_raw();
                kept += 1;
            }
        }
        self.len = kept;
    }

    /// The first unused slot, for DPDK calls that fill the array.
    #[inline]
    pub(crate) fn spare_ptr(&mut self) -> *mut *mut ffi::rte_mbuf {
        // SAFETY: len <= BURST_SIZE, so this is at most one past the end.
        unsafe { self.slots.as_mut_ptr().add(self.len) }
    }

    /// Unused slots.
    #[inline]
    pub(crate) fn spare(&self) -> usize {
        BURST_SIZE - self.len
    }

    /// Counts `n` slots after the current ones as held.
    ///
    /// # Safety
    /// Those slots must have just been filled with owned, valid mbufs.
    #[inline]
    pub(crate) unsafe fn commit(&mut self, n: usize) {
        debug_assert!(n <= self.spare());
        self.len += n;
    }

    /// The held mbufs as a raw array, for DPDK calls that consume a prefix.
    #[inline]
    pub(crate) fn as_raw_mut(&mut self) -> *mut *mut ffi::rte_mbuf {
        self.slots.as_mut_ptr()
    }

    /// Forgets the first `n` mbufs (the driver took them) and moves the
    /// rest to the front.
    ///
    /// # Safety
    /// The first `n` held mbufs must now belong to someone else.
    #[inline]
    pub(crate) unsafe fn consume_front(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        self.slots.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.clear();
    }
}

impl std::fmt::Debug for Burst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The iterator of [`Burst::drain`].
pub struct Drain<'a> {
    burst: &'a mut Burst,
    next: usize,
    end: usize,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.end {
            return None;
        }
        let ptr = self.burst.slots[self.next];
        self.next += 1;
        // SAFETY: slots next..end hold owned mbufs that the burst no longer
        // counts (its len is 0); each is yielded once.
        Some(unsafe { Mbuf::from_raw(ptr) })
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Drain<'_> {}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        for m in self.by_ref() {
            drop(m);
        }
    }
}
