//! The one error type of this crate, and the helper that turns DPDK's
//! return codes into it.

use std::ffi::CStr;
use std::fmt;

use crate::ffi;
use crate::ids::{PortId, QueueId};

/// A positive errno value as DPDK reports it (`-ret` or `rte_errno`),
/// displayed with `rte_strerror`'s text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's `rte_errno`.
    pub fn last() -> Errno {
        // SAFETY: reads a thread-local int through our C shim; no arguments.
        Errno(unsafe { ffi::bh_rte_errno() })
    }

    /// `rte_strerror`'s text for this value (it also knows DPDK's own codes
    /// above 1000, such as `E_RTE_SECONDARY`).
    pub fn text(self) -> String {
        // SAFETY: rte_strerror accepts any int and returns a pointer to a
        // NUL-terminated string, either static or in a per-thread buffer
        // that stays valid until this thread's next call; we copy it out at
        // once.
        unsafe {
            let ptr = ffi::rte_strerror(self.0);
            if ptr.is_null() {
                return format!("errno {}", self.0);
            }
            CStr::from_ptr(ptr).to_string_lossy().into_owned()
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", self.text(), self.0)
    }
}

/// What went wrong, named for the operation that failed, with its context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `Eal::init` was called a second time in this process.
    #[error("the DPDK EAL can be initialised only once per process")]
    EalAlreadyInitialised,
    /// An EAL argument contains a NUL byte.
    #[error("EAL argument {0:?} contains a NUL byte")]
    EalArgument(String),
    /// `rte_eal_init` failed; the second field is the argument line.
    #[error("rte_eal_init({1}) failed: {0}")]
    EalInit(Errno, String),
    /// No ethdev port has this device name (`net_null0`, `0000:01:00.0`, ...).
    #[error("no DPDK port named {0:?}")]
    PortNotFound(String),
    /// The port is already held by another `Port` value of this process.
    #[error("DPDK port {0:?} is already in use by this process")]
    PortInUse(String),
    /// `rte_eth_dev_info_get` failed.
    #[error("port {0}: reading device info failed: {1}")]
    PortInfo(PortId, Errno),
    /// More queues were asked for than the device has.
    #[error("port {port}: {requested} {direction} queues requested, the device has {max}")]
    QueueCount {
        /// The port.
        port: PortId,
        /// `"rx"` or `"tx"`.
        direction: &'static str,
        /// What the caller asked for.
        requested: u16,
        /// What the device offers.
        max: u16,
    },
    /// `rte_eth_dev_configure` (or the descriptor adjustment before it) failed.
    #[error("port {0}: configure failed: {1}")]
    PortConfigure(PortId, Errno),
    /// `rte_eth_rx_queue_setup` failed.
    #[error("port {0} rx queue {1}: setup failed: {2}")]
    RxQueueSetup(PortId, QueueId, Errno),
    /// `rte_eth_tx_queue_setup` failed.
    #[error("port {0} tx queue {1}: setup failed: {2}")]
    TxQueueSetup(PortId, QueueId, Errno),
    /// `start` was called on a port that was never configured.
    #[error("port {0}: start before configure")]
    PortNotConfigured(PortId),
    /// `rte_eth_dev_start` failed.
    #[error("port {0}: start failed: {1}")]
    PortStart(PortId, Errno),
    /// `rte_eth_dev_stop` failed.
    #[error("port {0}: stop failed: {1}")]
    PortStop(PortId, Errno),
    /// Switching promiscuous mode failed (some PMDs do not support it).
    #[error("port {0}: setting promiscuous mode failed: {1}")]
    Promiscuous(PortId, Errno),
    /// `rte_eth_macaddr_get` failed.
    #[error("port {0}: reading the MAC address failed: {1}")]
    MacAddr(PortId, Errno),
    /// `rte_eth_dev_default_mac_addr_set` failed.
    #[error("port {0}: setting the MAC address failed: {1}")]
    SetMacAddr(PortId, Errno),
    /// Switching all-multicast mode failed.
    #[error("port {0}: setting all-multicast mode failed: {1}")]
    AllMulticast(PortId, Errno),
    /// `rte_eth_dev_close` failed.
    #[error("port {0}: close failed: {1}")]
    PortClose(PortId, Errno),
    /// `rte_eth_stats_get` or `rte_eth_stats_reset` failed.
    #[error("port {0}: reading or resetting statistics failed: {1}")]
    Stats(PortId, Errno),
    /// `rte_eth_link_get_nowait` failed.
    #[error("port {0}: reading the link state failed: {1}")]
    Link(PortId, Errno),
    /// `rte_pktmbuf_pool_create` failed (name taken, too long, no memory).
    #[error("creating mbuf pool {0:?} failed: {1}")]
    MempoolCreate(String, Errno),
}

/// Turns a DPDK return code into a `Result`: negative values are `-errno`,
/// anything else is success and is handed back.
#[inline]
pub(crate) fn rte_result(ret: libc::c_int) -> Result<libc::c_int, Errno> {
    if ret < 0 {
        Err(Errno(-ret))
    } else {
        Ok(ret)
    }
}
