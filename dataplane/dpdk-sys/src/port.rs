//! An ethdev port: found by device name, configured with queues, polled in
//! bursts.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::burst::Burst;
use crate::eal::{Eal, EalToken};
use crate::error::{rte_result, Errno, Error};
use crate::ffi;
use crate::ids::{PortId, QueueId};
use crate::mbuf::TxChecksum;
use crate::mempool::Mempool;

const MAX_PORTS: usize = ffi::RTE_MAX_ETHPORTS as usize;

/// Which port ids have a live `Port` value: each port has at most one, so
/// `&mut Port` really is exclusive access to its queues.
static CLAIMED: [AtomicBool; MAX_PORTS] = [const { AtomicBool::new(false) }; MAX_PORTS];

/// How to set a port up (see [`Port::configure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    /// Receive queues; one per worker core that polls this port.
    pub rx_queues: u16,
    /// Transmit queues; one per worker core that sends on this port.
    pub tx_queues: u16,
    /// Descriptors per rx queue, rounded to what the device accepts. 1024
    /// rides out a few hundred microseconds of a stalled core at 10 Gbit/s
    /// line rate of small packets without drops.
    pub rx_desc: u16,
    /// Descriptors per tx queue, rounded to what the device accepts.
    pub tx_desc: u16,
    /// Checksums to offload to the NIC; only what the device offers is
    /// enabled (see [`Port::tx_checksum`]).
    pub tx_checksum: TxChecksum,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig { rx_queues: 1, tx_queues: 1, rx_desc: 1024, tx_desc: 1024, tx_checksum: TxChecksum::default() }
    }
}

/// Counters of a port, as `rte_eth_stats` has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets dropped by the hardware because the rx queues were full.
    pub imissed: u64,
    /// Erroneous received packets.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// Receive allocation failures (the mempool ran dry).
    pub rx_nombuf: u64,
}

/// One ethdev port, exclusively owned. Stopped (not closed) on drop, so it
/// can be found and set up again.
pub struct Port {
    id: PortId,
    name: String,
    driver: String,
    max_rx_queues: u16,
    max_tx_queues: u16,
    tx_offload_capa: u64,
    // Queues usable by rx_burst/tx_burst: 0 until configure succeeded.
    n_rx: u16,
    n_tx: u16,
    tx_checksum: TxChecksum,
    started: bool,
    // The rx queues refill from this pool; it must outlive them.
    pool: Option<Mempool>,
    _eal: Arc<EalToken>,
}

impl Port {
    /// The port whose device is called `name`: a PCI address such as
    /// `0000:01:00.0`, or a virtual device from `--vdev`, such as
    /// `net_null0`, `net_ring0`, `net_tap0`, `net_af_packet0`.
    pub fn by_name(eal: &Eal, name: &str) -> Result<Port, Error> {
        let not_found = || Error::PortNotFound(name.to_owned());
        let cname = CString::new(name).map_err(|_| not_found())?;
        let mut id = 0u16;
        // SAFETY: EAL is initialised; cname is a C string and id a valid
        // out-pointer for the duration of the call.
        let ret = unsafe { ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if ret != 0 || usize::from(id) >= MAX_PORTS {
            return Err(not_found());
        }
        let id = PortId(id);
        if CLAIMED[usize::from(id.0)].swap(true, Ordering::AcqRel) {
            return Err(Error::PortInUse(name.to_owned()));
        }
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: id is a valid port; info is a valid out-pointer.
        let ret = unsafe { ffi::rte_eth_dev_info_get(id.0, &mut info) };
        if let Err(e) = rte_result(ret) {
            CLAIMED[usize::from(id.0)].store(false, Ordering::Release);
            return Err(Error::PortInfo(id, e));
        }
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name points at the driver's static NUL-terminated name.
            unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
        };
        Ok(Port {
            id,
            name: name.to_owned(),
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            tx_offload_capa: info.tx_offload_capa,
            n_rx: 0,
            n_tx: 0,
            tx_checksum: TxChecksum::default(),
            started: false,
            pool: None,
            _eal: Arc::clone(&eal.token),
        })
    }

    /// The port number.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// The device name it was found by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The poll-mode driver's name, e.g. `net_null`.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// The NUMA socket of the device, if known.
    pub fn socket_id(&self) -> Option<u32> {
        // SAFETY: id is a valid port.
        let s = unsafe { ffi::rte_eth_dev_socket_id(self.id.0) };
        u32::try_from(s).ok()
    }

    /// The transmit checksums the device can compute.
    pub fn tx_checksum_capa(&self) -> TxChecksum {
        TxChecksum {
            ipv4: self.tx_offload_capa & u64::from(ffi::BH_RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) != 0,
            udp: self.tx_offload_capa & u64::from(ffi::BH_RTE_ETH_TX_OFFLOAD_UDP_CKSUM) != 0,
        }
    }

    /// The transmit checksums enabled by the last `configure`.
    pub fn tx_checksum(&self) -> TxChecksum {
        self.tx_checksum
    }

    /// All of the device's transmit offload bits (`RTE_ETH_TX_OFFLOAD_*`).
    pub fn tx_offload_capa(&self) -> u64 {
        self.tx_offload_capa
    }

    /// Sets the port up with `config`'s queues, the rx queues taking mbufs
    /// from `pool`. The port must be stopped.
    pub fn configure(&mut self, config: &PortConfig, pool: &Mempool) -> Result<(), Error> {
        let id = self.id;
        for (direction, requested, max) in
            [("rx", config.rx_queues, self.max_rx_queues), ("tx", config.tx_queues, self.max_tx_queues)]
        {
            if requested > max {
                return Err(Error::QueueCount { port: id, direction, requested, max });
            }
        }
        // Until every queue is set up, the burst calls see no queue.
        self.n_rx = 0;
        self.n_tx = 0;

        let capa = self.tx_checksum_capa();
        let enabled =
            TxChecksum { ipv4: config.tx_checksum.ipv4 && capa.ipv4, udp: config.tx_checksum.udp && capa.udp };
        let mut conf = ffi::rte_eth_conf::default();
        if enabled.ipv4 {
            conf.txmode.offloads |= u64::from(ffi::BH_RTE_ETH_TX_OFFLOAD_IPV4_CKSUM);
        }
        if enabled.udp {
            conf.txmode.offloads |= u64::from(ffi::BH_RTE_ETH_TX_OFFLOAD_UDP_CKSUM);
        }
        // SAFETY: id is a valid port; conf is a fully initialised config
        // that DPDK copies.
        let ret = unsafe { ffi::rte_eth_dev_configure(id.0, config.rx_queues, config.tx_queues, &conf) };
        rte_result(ret).map_err(|e| Error::PortConfigure(id, e))?;

        let (mut rx_desc, mut tx_desc) = (config.rx_desc, config.tx_desc);
        // SAFETY: id is a valid, configured port; both are valid in/out pointers.
        let ret = unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(id.0, &mut rx_desc, &mut tx_desc) };
        rte_result(ret).map_err(|e| Error::PortConfigure(id, e))?;

        // SAFETY: id is a valid port.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(id.0) };
        let socket = socket.max(ffi::SOCKET_ID_ANY) as u32;
        for q in 0..config.rx_queues {
            // SAFETY: id is configured with rx_queues queues, q is one of
            // them; a null rxconf means the driver defaults; the pool
            // outlives the queue (we keep a clone below).
            let ret = unsafe { ffi::rte_eth_rx_queue_setup(id.0, q, rx_desc, socket, std::ptr::null(), pool.as_ptr()) };
            rte_result(ret).map_err(|e| Error::RxQueueSetup(id, QueueId(q), e))?;
        }
        for q in 0..config.tx_queues {
            let mut txconf = self.default_txconf()?;
            txconf.offloads = conf.txmode.offloads;
            // SAFETY: id is configured with tx_queues queues, q is one of
            // them; txconf is copied by DPDK.
            let ret = unsafe { ffi::rte_eth_tx_queue_setup(id.0, q, tx_desc, socket, &txconf) };
            rte_result(ret).map_err(|e| Error::TxQueueSetup(id, QueueId(q), e))?;
        }
        self.pool = Some(pool.clone());
        self.tx_checksum = enabled;
        self.n_rx = config.rx_queues;
        self.n_tx = config.tx_queues;
        Ok(())
    }

    fn default_txconf(&self) -> Result<ffi::rte_eth_txconf, Error> {
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: id is a valid port; info is a valid out-pointer.
        let ret = unsafe { ffi::rte_eth_dev_info_get(self.id.0, &mut info) };
        rte_result(ret).map_err(|e| Error::PortInfo(self.id, e))?;
        Ok(info.default_txconf)
    }

    /// Starts the port: the burst calls move packets from now on.
    pub fn start(&mut self) -> Result<(), Error> {
        if self.pool.is_none() {
            return Err(Error::PortNotConfigured(self.id));
        }
        // SAFETY: id is a valid, configured port.
        let ret = unsafe { ffi::rte_eth_dev_start(self.id.0) };
        rte_result(ret).map_err(|e| Error::PortStart(self.id, e))?;
        self.started = true;
        Ok(())
    }

    /// Stops the port. Bursts on a stopped port move nothing.
    pub fn stop(&mut self) -> Result<(), Error> {
        // SAFETY: id is a valid port; stopping a stopped port is harmless.
        let ret = unsafe { ffi::rte_eth_dev_stop(self.id.0) };
        rte_result(ret).map_err(|e| Error::PortStop(self.id, e))?;
        self.started = false;
        Ok(())
    }

    /// Whether `start` succeeded and no `stop` followed.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The port's MAC address.
    pub fn mac_addr(&self) -> Result<[u8; 6], Error> {
        let mut mac = ffi::rte_ether_addr::default();
        // SAFETY: id is a valid port; mac is a valid out-pointer.
        let ret = unsafe { ffi::rte_eth_macaddr_get(self.id.0, &mut mac) };
        rte_result(ret).map_err(|e| Error::MacAddr(self.id, e))?;
        Ok(mac.addr_bytes)
    }

    /// Sets the port's MAC address. On `net_tap` this is also the MAC of
    /// the kernel's side of the TAP interface.
    pub fn set_mac_addr(&mut self, mac: [u8; 6]) -> Result<(), Error> {
        let mut addr = ffi::rte_ether_addr { addr_bytes: mac };
        // SAFETY: id is a valid port; addr is a valid pointer that DPDK
        // only reads during the call.
        let ret = unsafe { ffi::rte_eth_dev_default_mac_addr_set(self.id.0, &mut addr) };
        rte_result(ret).map(drop).map_err(|e| Error::SetMacAddr(self.id, e))
    }

    /// Receives every multicast frame (`true`), e.g. IPv6 solicited-node
    /// addresses, or only the multicast groups configured.
    pub fn allmulticast(&mut self, on: bool) -> Result<(), Error> {
        // SAFETY: id is a valid port.
        let ret = unsafe {
            if on {
                ffi::rte_eth_allmulticast_enable(self.id.0)
            } else {
                ffi::rte_eth_allmulticast_disable(self.id.0)
            }
        };
        rte_result(ret).map(drop).map_err(|e| Error::AllMulticast(self.id, e))
    }

    /// Stops and closes the port: its queues are released, and with them
    /// the mbufs a driver keeps in its rx rings, so that the pool can be
    /// freed afterwards. A closed port cannot be found or used again in
    /// this process (PCI and virtual devices are released on close).
    pub fn close(mut self) -> Result<(), Error> {
        if self.started {
            self.stop()?;
        }
        self.n_rx = 0;
        self.n_tx = 0;
        // SAFETY: id is a valid, stopped port; we are its only user and no
        // burst call can reach it after this (self is consumed, and the
        // queue counts are 0 for the Drop that follows).
        let ret = unsafe { ffi::rte_eth_dev_close(self.id.0) };
        rte_result(ret).map(drop).map_err(|e| Error::PortClose(self.id, e))
    }

    /// The device names of every port EAL probed (`net_tap0`,
    /// `0000:01:00.0`, ...), for error messages and logs.
    pub fn names(_eal: &Eal) -> Vec<String> {
        let mut names = Vec::new();
        for id in 0..MAX_PORTS as u16 {
            // SAFETY: any id may be asked about; EAL is initialised (_eal).
            if unsafe { ffi::rte_eth_dev_is_valid_port(id) } == 0 {
                continue;
            }
            let mut buf = [0 as std::os::raw::c_char; ffi::RTE_ETH_NAME_MAX_LEN as usize];
            // SAFETY: id is a valid port and buf has the RTE_ETH_NAME_MAX_LEN
            // bytes DPDK writes at most (NUL included).
            let ret = unsafe { ffi::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) };
            if ret == 0 {
                // SAFETY: on success buf holds a NUL-terminated name.
                let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
                names.push(name.to_string_lossy().into_owned());
            }
        }
        names
    }

    /// Receives frames for every destination MAC (`true`) or only ours.
    pub fn promiscuous(&mut self, on: bool) -> Result<(), Error> {
        // SAFETY: id is a valid port.
        let ret = unsafe {
            if on {
                ffi::rte_eth_promiscuous_enable(self.id.0)
            } else {
                ffi::rte_eth_promiscuous_disable(self.id.0)
            }
        };
        rte_result(ret).map(drop).map_err(|e| Error::Promiscuous(self.id, e))
    }

    /// Whether the link is up, without waiting for negotiation.
    pub fn link_up(&self) -> Result<bool, Error> {
        let mut link = ffi::rte_eth_link::default();
        // SAFETY: id is a valid port; link is a valid out-pointer.
        let ret = unsafe { ffi::rte_eth_link_get_nowait(self.id.0, &mut link) };
        rte_result(ret).map_err(|e| Error::Link(self.id, e))?;
        Ok(u32::from(link.link_status()) == ffi::RTE_ETH_LINK_UP)
    }

    /// The port's counters.
    pub fn stats(&self) -> Result<PortStats, Error> {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: id is a valid port; s is a valid out-pointer.
        let ret = unsafe { ffi::rte_eth_stats_get(self.id.0, &mut s) };
        rte_result(ret).map_err(|e| Error::Stats(self.id, e))?;
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Sets the port's counters to zero.
    pub fn reset_stats(&mut self) -> Result<(), Error> {
        // SAFETY: id is a valid port.
        let ret = unsafe { ffi::rte_eth_stats_reset(self.id.0) };
        rte_result(ret).map(drop).map_err(|e| Error::Stats(self.id, e))
    }

    /// Receives up to `burst`'s free slots from rx queue `queue`, appending
    /// them after what `burst` holds; returns how many arrived. Returns 0,
    /// without calling DPDK, for a queue that is not configured or a port
    /// that is not started.
    #[inline]
    pub fn rx_burst(&mut self, queue: QueueId, burst: &mut Burst) -> usize {
        if !self.started || queue.0 >= self.n_rx || burst.is_full() {
            return 0;
        }
        let room = burst.spare() as u16;
        // SAFETY: the port is started and the queue set up (queue < n_rx),
        // and this Port is its only user (&mut self, one Port per id); the
        // spare slots are writable, and DPDK writes `n` owned mbufs there
        // that `commit` hands to the burst.
        unsafe {
            let n = ffi::rte_eth_rx_burst(self.id.0, queue.0, burst.spare_ptr(), room);
            burst.commit(usize::from(n));
            usize::from(n)
        }
    }

    /// Hands `burst`'s mbufs, first to last, to tx queue `queue`; returns
    /// how many the driver took (they are its to free). The ones it did not
    /// take stay in `burst`, moved to the front: retry them, or drop or
    /// `clear` the burst to free them. Sends nothing on a queue that is not
    /// configured or a port that is not started.
    #[inline]
    pub fn tx_burst(&mut self, queue: QueueId, burst: &mut Burst) -> usize {
        if !self.started || queue.0 >= self.n_tx || burst.is_empty() {
            return 0;
        }
        let len = burst.len() as u16;
        // SAFETY: the port is started and the queue set up (queue < n_tx),
        // used by this Port alone; the first `len` slots hold owned mbufs. The driver takes
        // ownership of the first `n`, which `consume_front` forgets.
        unsafe {
            let n = ffi::rte_eth_tx_burst(self.id.0, queue.0, burst.as_raw_mut(), len);
            burst.consume_front(usize::from(n));
            usize::from(n)
        }
    }

    /// Prepares `burst`'s mbufs for transmit offloads on this device
    /// (`rte_eth_tx_prepare`: fills in pseudo-header checksums where the
    /// NIC needs them). Returns how many, from the front, are ready; if fewer
    /// than all, the next one is invalid for the device and the error tells
    /// why.
    #[inline]
    pub fn tx_prepare(&mut self, queue: QueueId, burst: &mut Burst) -> Result<usize, (usize, Errno)> {
        if queue.0 >= self.n_tx || burst.is_empty() {
            return Ok(0);
        }
        let len = burst.len() as u16;
        // SAFETY: as in tx_burst; tx_prepare only edits the mbufs in place
        // and keeps ownership with us.
        let n = unsafe { ffi::rte_eth_tx_prepare(self.id.0, queue.0, burst.as_raw_mut(), len) };
        if n == len {
            Ok(usize::from(n))
        } else {
            Err((usize::from(n), Errno::last()))
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if self.started {
            // SAFETY: id is a valid, started port; its queues are not used
            // after this (we are its only user).
            unsafe {
                ffi::rte_eth_dev_stop(self.id.0);
            }
        }
        CLAIMED[usize::from(self.id.0)].store(false, Ordering::Release);
    }
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("driver", &self.driver)
            .field("rx_queues", &self.n_rx)
            .field("tx_queues", &self.n_tx)
            .field("started", &self.started)
            .finish()
    }
}
