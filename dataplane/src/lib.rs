//! Bridgehead's packet path.
//!
//! ```text
//!  control plane (tokio)                      dataplane workers (one thread each)
//!  ┌──────────────────────┐  commands (lock-free)  ┌───────────────────────────────┐
//!  │ DataplaneHandle      │ ─────────────────────▶ │ Worker loop                   │
//!  │  create/update/delete│                        │  rx_burst ─▶ Engine::relay ─▶ │
//!  │  counters, events    │ ◀───────────────────── │  tx_burst    (SessionTable)   │
//!  └──────────────────────┘   events (lock-free)   └──────────────┬────────────────┘
//!                                                                 │ PacketIo
//!                                              ┌──────────────────┴──────────────┐
//!                                              │ io::sockets (recvmmsg/sendmmsg) │
//!                                              │ io::dpdk (feature `dpdk`)        │
//!                                              └─────────────────────────────────┘
//! ```
//!
//! - [`wire`]: zero-copy views of Ethernet, ARP, IPv4/6, UDP, RTP, RTCP, RFC 4733.
//! - [`session`]: the fixed-capacity session table, RFC 3550 receive statistics
//!   and the SSRC/sequence/timestamp rewrite that keeps a leg's stream continuous.
//! - [`engine`]: the relay decision for one datagram, per-worker counters, and the
//!   worker loop written once against [`io::PacketIo`].
//! - [`control`]: the API the control plane uses: sessions, counters, events.
//!
//! Start it with [`Dataplane::start`] and keep the [`DataplaneHandle`] it gives.

pub mod config;
pub mod control;
pub mod engine;
pub mod io;
pub mod session;
pub mod wire;

pub use config::{AfXdpConfig, Backend, DataplaneConfig, XdpMode};
pub use control::{Dataplane, DataplaneHandle};
