//! The dataplane's validated settings. Parsing and reporting of the TOML file
//! happen once, in the control plane's config module; this is what it hands over.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

/// Which packet I/O backend the workers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Kernel UDP sockets with batched `recvmmsg`/`sendmmsg`; needs no system library.
    Sockets,
    /// DPDK poll-mode drivers (build feature `dpdk`).
    Dpdk,
    /// AF_XDP on a kernel interface: an XDP program steers media to the
    /// appliance before the kernel's IP stack; the rest stays the kernel's.
    #[serde(rename = "af_xdp")]
    AfXdp,
}

impl Backend {
    /// The name in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sockets => "sockets",
            Backend::Dpdk => "dpdk",
            Backend::AfXdp => "af_xdp",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    pub backend: Backend,
    /// Local media addresses. The first is the one put in SDP; more addresses
    /// multiply the ports available (a leg owns one address:port pair).
    pub media_ips: Vec<IpAddr>,
    /// UDP ports the legs are given, on every media address.
    pub ports: RangeInclusive<u16>,
    pub workers: usize,
    /// Capacity of the session table (a session joins two legs).
    pub sessions: usize,
    /// A session that carries no packet for this long is reported to the control plane.
    pub media_timeout: Duration,
    pub dpdk: DpdkConfig,
    pub af_xdp: AfXdpConfig,
}

#[derive(Debug, Clone, Default)]
pub struct DpdkConfig {
    /// EAL arguments, e.g. `["--no-huge", "--no-pci", "-m", "1024", "--vdev=net_af_packet0,iface=veth0"]`.
    pub eal_args: Vec<String>,
    /// The DPDK device that carries media, e.g. `net_af_packet0` or a PCI address.
    pub port: String,
    /// The TAP exception device handing the kernel what the dataplane does not own, e.g. `net_tap0`.
    pub tap: Option<String>,
    /// Prefix length of the media subnet: next hops inside it are resolved directly.
    pub prefix_len: u8,
    /// Next hop for destinations outside the media subnet.
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, Default)]
pub struct AfXdpConfig {
    /// The kernel interface media arrives on, e.g. `eth0`.
    pub interface: String,
    pub mode: XdpMode,
}

/// Where the steering program runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver where it can, else generic.
    #[default]
    Auto,
    /// In the driver only (fails on interfaces without native XDP).
    Driver,
    /// Generic XDP (every interface; AF_XDP copies frames).
    Generic,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            backend: Backend::Sockets,
            media_ips: vec![IpAddr::from([127, 0, 0, 1])],
            ports: 20000..=29999,
            workers: 2,
            sessions: 262_144,
            media_timeout: Duration::from_secs(30),
            dpdk: DpdkConfig::default(),
            af_xdp: AfXdpConfig::default(),
        }
    }
}

impl DataplaneConfig {
    /// Number of distinct local endpoints (address, port) the legs can be given.
    pub fn endpoint_count(&self) -> usize {
        self.media_ips.len() * (usize::from(*self.ports.end()) - usize::from(*self.ports.start()) + 1)
    }
}
