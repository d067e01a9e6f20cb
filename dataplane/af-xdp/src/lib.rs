//! AF_XDP for Bridgehead's dataplane: media reaches the appliance straight
//! from the network driver, before the kernel's IP and UDP stack, and leaves
//! the same way; everything else (SIP, HTTP, SSH, ARP, ping) stays the
//! kernel's, which keeps owning the interface and its addresses.
//!
//! ```text
//!   NIC / veth / lo ──▶ XDP hook: steering program (bpf.rs)
//!                         ├─ IPv4 UDP to a media address and port ─▶ XSKMAP[rx queue] ─▶ AF_XDP socket (xsk.rs)
//!                         └─ anything else ─▶ XDP_PASS: the kernel's stack, as without us
//!   AF_XDP socket TX ring ─▶ driver (or the generic transmit path) ─▶ out of the interface
//! ```
//!
//! - [`bpf`]: the `bpf(2)` system call (maps, program load, links, test
//!   runs) and the steering program, assembled here instruction by
//!   instruction with the media addresses and port range as constants: no
//!   C toolchain, no libbpf, nothing to install.
//! - [`xsk`]: an AF_XDP socket with its UMEM (the packet buffers shared with
//!   the kernel) and its four rings.
//!
//! Like `dpdk-sys`, this is a kernel-interface crate: the unsafe code of the
//! AF_XDP path lives here and nowhere else, every block saying why it is
//! sound, behind a safe API whose users never see a raw pointer.
#![allow(unsafe_code)]

pub mod bpf;
pub mod xsk;

/// What went wrong talking to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Sys { what: &'static str, source: std::io::Error },
    #[error("the kernel's verifier refused the steering program: {source}\n{log}")]
    Verifier { source: std::io::Error, log: String },
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The last OS error, as the failure of `what`.
    pub(crate) fn last(what: &'static str) -> Error {
        Error::Sys { what, source: std::io::Error::last_os_error() }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
