//! Bindings to the system's DPDK (Debian 12: 22.11) and the small safe layer
//! Bridgehead's packet path is written against.
//!
//! ```text
//!   dataplane (DPDK backend)
//!        |
//!   Eal ── Mempool ── Mbuf ── Burst ── Port        safe layer (this crate)
//!        |
//!   ffi: bindgen output + C wrappers of DPDK's     generated in OUT_DIR
//!        static inline functions + shim.c
//!        |
//!   librte_*.so (pkg-config libdpdk); PMDs loaded by EAL from its plugin dir
//! ```
//!
//! All unsafe code of the workspace that touches DPDK lives here; every
//! unsafe block states why it is sound.
//!
//! # Use
//!
//! ```no_run
//! use dpdk_sys::{Burst, Eal, Mempool, Port, PortConfig, QueueId};
//!
//! let eal = Eal::init(&["bridgehead", "--no-pci", "--vdev=net_tap0"])?;
//! let pool = Mempool::new_pktmbuf(&eal, "rx0", 8191, 256, dpdk_sys::ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16)?;
//! let mut port = Port::by_name(&eal, "net_tap0")?;
//! port.configure(&PortConfig::default(), &pool)?;
//! port.start()?;
//! let mut burst = Burst::new();
//! loop {
//!     port.rx_burst(QueueId(0), &mut burst);
//!     // classify, rewrite in place with Mbuf::data_mut ...
//!     port.tx_burst(QueueId(0), &mut burst);
//!     burst.clear(); // free what the NIC did not take
//! #   break;
//! }
//! # Ok::<(), dpdk_sys::Error>(())
//! ```
//!
//! # Lifetimes
//!
//! The EAL initialises once per process ([`Eal::init`]). [`Mempool`] and
//! [`Port`] keep it alive; it is cleaned up when the last of them and the
//! `Eal` are gone. A [`Mempool`] dropped while some of its mbufs are still
//! out is leaked rather than freed (and the EAL is then not cleaned up), so
//! an [`Mbuf`] can never point at freed memory.
#![allow(unsafe_code)]

pub mod ffi {
    //! The raw bindings, generated at build time by bindgen from
    //! `csrc/wrapper.h`. DPDK's `static inline` functions are reached
    //! through generated C wrappers (`<name>__extern`), transparently.
    #![allow(
        non_upper_case_globals,
        non_camel_case_types,
        non_snake_case,
        dead_code,
        improper_ctypes,
        unnecessary_transmutes,
        unsafe_op_in_unsafe_fn,
        clippy::all,
        clippy::pedantic,
        clippy::undocumented_unsafe_blocks,
        rustdoc::all
    )]
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

mod burst;
mod eal;
mod error;
mod ids;
mod mbuf;
mod mempool;
mod port;

pub use burst::{Burst, Drain, BURST_SIZE};
pub use eal::{rdtsc, Eal};
pub use error::{Errno, Error};
pub use ids::{LcoreId, PortId, QueueId};
pub use mbuf::{Mbuf, NoRoom, TxChecksum};
pub use mempool::{Mempool, MEMPOOL_NAME_MAX};
pub use port::{Port, PortConfig, PortStats};

/// Asks the CPU to bring the cache line holding `p` closer (DPDK's
/// `rte_prefetch0`): the packet loop warms the session state of a whole
/// burst before touching it. Any address is fine; nothing is read.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint that never faults, whatever the address,
    // and SSE, which it needs, is part of every x86_64 CPU.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
