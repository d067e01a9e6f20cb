//! The Environment Abstraction Layer: once per process, torn down when the
//! last handle that needs it is gone.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::{Errno, Error};
use crate::ffi;

/// Set by the first `Eal::init`, successful or not: DPDK cannot run
/// `rte_eal_init` twice, nor again after `rte_eal_cleanup`.
static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// Mempools dropped while some of their mbufs were still out. Those pools
/// are leaked instead of freed, and then `rte_eal_cleanup` is skipped too,
/// because it unmaps the memory the stray mbufs live in.
pub(crate) static LEAKED_POOLS: AtomicUsize = AtomicUsize::new(0);

/// The initialised EAL. Dropping it (and every `Mempool` and `Port`, which
/// hold a share of it) calls `rte_eal_cleanup`.
#[derive(Clone)]
pub struct Eal {
    pub(crate) token: Arc<EalToken>,
}

/// Keeps the EAL alive; the last one to go cleans it up.
pub(crate) struct EalToken {
    // rte_eal_init gets pointers into these strings; they stay alive until
    // cleanup in case EAL kept any of them.
    _args: Vec<CString>,
    _argv: Vec<*mut c_char>,
}

// SAFETY: the raw pointers in `_argv` point into `_args`, which this struct
// owns; neither is read or written after `rte_eal_init` returned.
unsafe impl Send for EalToken {}
// SAFETY: as above; the token has no methods and no interior mutability.
unsafe impl Sync for EalToken {}

impl Drop for EalToken {
    fn drop(&mut self) {
        if LEAKED_POOLS.load(Ordering::Acquire) == 0 {
            // SAFETY: EAL was initialised (a token exists only after a
            // successful rte_eal_init) and this is the last token, so no
            // Mempool or Port of ours is alive, and no mbuf is out (a pool
            // dropped with mbufs out is counted in LEAKED_POOLS).
            unsafe {
                ffi::rte_eal_cleanup();
            }
        }
    }
}

impl Eal {
    /// Runs `rte_eal_init` with `args`, which are a whole argv: `args[0]` is
    /// the program name, then EAL options such as `-l 0-1`, `--vdev=net_tap0`,
    /// `--no-huge`, `-d /path/to/driver.so`.
    ///
    /// The calling thread becomes EAL's main lcore. Fails with
    /// [`Error::EalAlreadyInitialised`] on a second call in the process.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal, Error> {
        let args: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_ref()).map_err(|_| Error::EalArgument(a.as_ref().to_owned())))
            .collect::<Result<_, _>>()?;
        let line = args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
        if INIT_CALLED.swap(true, Ordering::AcqRel) {
            return Err(Error::EalAlreadyInitialised);
        }
        let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
        let argc = libc::c_int::try_from(argv.len()).map_err(|_| Error::EalArgument(line.clone()))?;
        // SAFETY: argv holds argc pointers to NUL-terminated strings that
        // outlive the EAL (they move into the token below); INIT_CALLED
        // guarantees this runs once per process. EAL may permute argv.
        let ret = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(Error::EalInit(Errno::last(), line));
        }
        Ok(Eal { token: Arc::new(EalToken { _args: args, _argv: argv }) })
    }

    /// As [`Eal::init`], but gives the calling thread back the CPU
    /// affinity it had before. `rte_eal_init` pins the calling thread to the
    /// main lcore's CPU, and every thread it starts later inherits that
    /// pin; a program that initialises EAL from a general-purpose thread
    /// (an async runtime's) and runs its packet loops on threads of its own
    /// does not want that. EAL's own lcore bookkeeping (`rte_lcore_id`,
    /// the socket id) is per thread and unaffected.
    pub fn init_unpinned<S: AsRef<str>>(args: &[S]) -> Result<Eal, Error> {
        // SAFETY: cpu_set_t is plain data; all zeroes is an empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: pid 0 is the calling thread; set is a valid out-pointer of
        // `size` bytes.
        let saved = unsafe { libc::sched_getaffinity(0, size, &mut set) } == 0;
        let eal = Eal::init(args)?;
        if saved {
            // SAFETY: as above; set holds the mask read before init. A
            // failure leaves the EAL pin in place, which is only slower.
            unsafe {
                libc::sched_setaffinity(0, size, &set);
            }
        }
        Ok(eal)
    }

    /// Ticks per second of the time-stamp counter `rdtsc` reads.
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: EAL is initialised (self exists), which calibrated the TSC.
        unsafe { ffi::rte_get_tsc_hz() }
    }

    /// The time-stamp counter, in ticks of `tsc_hz`.
    #[inline]
    pub fn rdtsc() -> u64 {
        rdtsc()
    }

    /// DPDK's version string, e.g. `DPDK 22.11.11`.
    pub fn version() -> String {
        // SAFETY: rte_version returns a pointer to a static NUL-terminated
        // string; it needs no EAL.
        unsafe { CStr::from_ptr(ffi::rte_version()) }.to_string_lossy().into_owned()
    }
}

/// The time-stamp counter (`rte_rdtsc`); needs no EAL, only its frequency does.
#[inline]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC exists on every x86_64 CPU and has no preconditions.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: the generated wrapper of rte_rdtsc reads a counter register.
        unsafe { ffi::rte_rdtsc() }
    }
}
