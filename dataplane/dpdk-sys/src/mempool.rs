//! Packet-buffer pools (`rte_pktmbuf_pool_create`).

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::burst::{Burst, BURST_SIZE};
use crate::eal::{Eal, EalToken, LEAKED_POOLS};
use crate::error::{Errno, Error};
use crate::ffi;
use crate::mbuf::Mbuf;

/// Longest pool name DPDK accepts (`RTE_MEMPOOL_NAMESIZE` less the NUL).
pub const MEMPOOL_NAME_MAX: usize = ffi::BH_RTE_MEMPOOL_NAMESIZE as usize - 1;

/// A pool of packet mbufs. Cloning shares the pool; it is freed when the last
/// clone goes, unless mbufs from it are still out, in which case it is
/// leaked (and the EAL is then not cleaned up either) rather than pulled from
/// under them.
#[derive(Clone)]
pub struct Mempool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    ptr: NonNull<ffi::rte_mempool>,
    name: String,
    _eal: Arc<EalToken>,
}

// SAFETY: a DPDK mempool is built for concurrent get/put from any thread
// (the default ring_mp_mc ops; non-EAL threads bypass the per-lcore cache).
unsafe impl Send for PoolInner {}
// SAFETY: as above; every method takes the pool pointer read-only on our side.
unsafe impl Sync for PoolInner {}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: ptr is a live pool created by us and not yet freed.
        let in_use = unsafe { ffi::rte_mempool_in_use_count(self.ptr.as_ptr()) };
        if in_use == 0 {
            // SAFETY: no mbuf of this pool is out and this is the last
            // handle, so nothing can reach the pool after this.
            unsafe { ffi::rte_mempool_free(self.ptr.as_ptr()) };
        } else {
            LEAKED_POOLS.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Mempool {
    /// Creates a pool of `n_mbufs` packet mbufs with `data_room` bytes each
    /// (headroom included: `ffi::RTE_MBUF_DEFAULT_BUF_SIZE` gives 2048 bytes
    /// of data after the 128-byte headroom) and a per-lcore cache of `cache`
    /// mbufs, on the calling thread's NUMA socket. `n_mbufs` is best a power
    /// of two minus one. `name` must be unique in the process and at most
    /// [`MEMPOOL_NAME_MAX`] bytes.
    pub fn new_pktmbuf(eal: &Eal, name: &str, n_mbufs: u32, cache: u32, data_room: u16) -> Result<Mempool, Error> {
        let fail = |errno| Error::MempoolCreate(name.to_owned(), Errno(errno));
        if name.len() > MEMPOOL_NAME_MAX {
            return Err(fail(libc::ENAMETOOLONG));
        }
        let cname = CString::new(name).map_err(|_| fail(libc::EINVAL))?;
        // SAFETY: EAL is initialised (we hold `eal`); cname is a valid C
        // string for the duration of the call (DPDK copies the name).
        let ptr = unsafe {
            ffi::rte_pktmbuf_pool_create(cname.as_ptr(), n_mbufs, cache, 0, data_room, ffi::rte_socket_id() as i32)
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| Error::MempoolCreate(name.to_owned(), Errno::last()))?;
        Ok(Mempool { inner: Arc::new(PoolInner { ptr, name: name.to_owned(), _eal: Arc::clone(&eal.token) }) })
    }

    /// The name the pool was created with.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// One mbuf, reset (empty, default headroom), or `None` if the pool is
    /// exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is live while self is; the returned mbuf, if any,
        // is ours alone.
        let m = unsafe { ffi::rte_pktmbuf_alloc(self.as_ptr()) };
        // SAFETY: a non-null result is a freshly allocated mbuf we own.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m.as_ptr()) })
    }

    /// Appends `n` fresh mbufs to `burst`, all or none: returns `false` (and
    /// adds nothing) if the pool has fewer or `burst` has no room for `n`.
    #[inline]
    pub fn alloc_bulk(&self, burst: &mut Burst, n: usize) -> bool {
        if n > BURST_SIZE - burst.len() {
            return false;
        }
        let (tail, n) = (burst.spare_ptr(), n as u32);
        // SAFETY: tail points at `n` unused slots inside the burst's array;
        // on success DPDK writes `n` owned mbuf pointers there, which
        // `commit` hands to the burst. On failure nothing is written.
        let ret = unsafe { ffi::rte_pktmbuf_alloc_bulk(self.as_ptr(), tail, n) };
        if ret == 0 {
            // SAFETY: the n slots after len were just filled with owned mbufs.
            unsafe { burst.commit(n as usize) };
            true
        } else {
            false
        }
    }

    /// Mbufs currently free in the pool (per-lcore caches included).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is live while self is.
        unsafe { ffi::rte_mempool_avail_count(self.as_ptr()) }
    }

    /// Mbufs currently out of the pool (held by us, by queues, by drivers).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is live while self is.
        unsafe { ffi::rte_mempool_in_use_count(self.as_ptr()) }
    }

    /// The pool's total number of mbufs.
    pub fn capacity(&self) -> u32 {
        // SAFETY: the pool is live while self is; `size` never changes
        // after creation.
        unsafe { (*self.as_ptr()).size }
    }

    /// The raw pool, for calls this crate does not wrap. It stays valid while
    /// any clone of this `Mempool` is alive.
    #[inline]
    pub fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.inner.ptr.as_ptr()
    }
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.inner.name)
            .field("capacity", &self.capacity())
            .field("available", &self.available())
            .finish()
    }
}
