//! Counts the RTP packets that came back to the callee: the kernel's drop
//! counter of the callee's media socket.
//!
//! The callee (sipp UAS) sends each call's packets from its media socket
//! and never reads it (no `-rtp_echo` there). Once that socket's receive
//! buffer is full, every datagram that reaches it is dropped and counted in
//! the `drops` column of `/proc/net/udp`, by the kernel, at no cost to
//! anyone. [`EchoCount::prime`] fills the buffer with datagrams of its own
//! before the first call, so from then on the counter's difference over a
//! step is the number of packets that arrived in it: each one went callee ->
//! anchor -> caller (which echoes it) -> anchor -> callee.

use crate::rig::Rig;
use anyhow::{bail, Context, Result};
use std::net::{SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// The size of a PCMU RTP packet of 20 ms, as the callee sends them.
const FILLER_LEN: usize = 172;
/// More than any default receive buffer holds (212,992 bytes hold about
/// 256 such datagrams on loopback).
const MAX_FILLERS: usize = 20_000;

#[derive(Debug, Clone, Copy)]
pub struct UdpCounters {
    pub rcvbuf_errors: u64,
    pub no_ports: u64,
}

pub struct EchoCount {
    /// The callee's pid: its `/proc/<pid>/net/udp` is the namespace's table.
    pid: u32,
    /// The `local_address` column of the socket: `0300007F:1770`.
    local: String,
}

impl EchoCount {
    pub fn new(callee_pid: u32, socket: SocketAddrV4) -> EchoCount {
        // The address as the kernel stores it (network order), printed as a
        // host-order (little-endian here) u32; the port in host order.
        let local = format!("{:08X}:{:04X}", u32::from_le_bytes(socket.ip().octets()), socket.port());
        EchoCount { pid: callee_pid, local }
    }

    /// Datagrams the socket dropped so far.
    pub fn count(&self) -> Result<u64> {
        let path = format!("/proc/{}/net/udp", self.pid);
        let table = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(1) == Some(&self.local.as_str()) {
                return f.last().and_then(|d| d.parse().ok()).with_context(|| format!("{path}: bad line {line:?}"));
            }
        }
        bail!("{path}: no socket {} (the callee's media socket)", self.local)
    }

    /// The namespace's UDP counters (`/proc/net/snmp`, line `Udp:`):
    /// `RcvbufErrors` (datagrams any socket dropped for a full receive
    /// buffer, the counted socket's included) and `NoPorts` (datagrams to a
    /// port no socket is bound to).
    pub fn namespace_udp(&self) -> Result<UdpCounters> {
        let path = format!("/proc/{}/net/snmp", self.pid);
        let snmp = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
        let (names, values) = (udp.next().unwrap_or_default(), udp.next().unwrap_or_default());
        let field = |name: &str| {
            names
                .split_whitespace()
                .zip(values.split_whitespace())
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .with_context(|| format!("{path}: no Udp {name}"))
        };
        Ok(UdpCounters { rcvbuf_errors: field("RcvbufErrors")?, no_ports: field("NoPorts")? })
    }

    /// Fills the socket's receive buffer until the kernel starts dropping.
    pub fn prime(&self, rig: &Rig, to: SocketAddrV4) -> Result<()> {
        let before = self.count()?;
        let socket = rig.inside(|| UdpSocket::bind("127.0.0.1:0"))??;
        let filler = [0u8; FILLER_LEN];
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut sent = 0;
        while self.count()? == before {
            for _ in 0..64 {
                socket.send_to(&filler, to)?;
            }
            sent += 64;
            if sent > MAX_FILLERS || Instant::now() > deadline {
                bail!("{to}: still not dropping after {sent} datagrams; is it read after all?");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn local_address_as_proc_net_udp_prints_it() {
        let e = EchoCount::new(1, SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), 6000));
        assert_eq!(e.local, "0300007F:1770");
    }
}
