//! Where the relays send: a few UDP sockets on 127.0.0.1 that nobody reads.
//!
//! Each sink's receive buffer is as small as the kernel allows, so it is
//! full after the first couple of datagrams; from then on every datagram a
//! relay delivers to it is dropped by the kernel and counted in the socket's
//! `drops` column of `/proc/net/udp`. The difference of that counter over a
//! window is the number of datagrams the relay delivered in the window,
//! counted the same way for every relay, by the kernel, at no cost to anyone
//! (no process reads them).

use nix::sys::socket::{setsockopt, sockopt};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

pub struct Sinks {
    sockets: Vec<UdpSocket>,
}

impl Sinks {
    pub fn bind(count: usize) -> Result<Sinks, String> {
        let sockets = (0..count)
            .map(|_| {
                let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("sink socket: {e}"))?;
                // The kernel rounds this up to its minimum (a few datagrams).
                let _ = setsockopt(&s, sockopt::RcvBuf, &0);
                Ok(s)
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Sinks { sockets })
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().filter_map(|s| s.local_addr().ok()).collect()
    }

    /// Datagrams the kernel dropped at the sinks so far (all of them but the
    /// first few that filled the buffers).
    pub fn dropped(&self) -> Result<u64, String> {
        let table = std::fs::read_to_string("/proc/net/udp").map_err(|e| format!("/proc/net/udp: {e}"))?;
        let ports: Vec<u16> = self.addrs().iter().map(SocketAddr::port).collect();
        Ok(sum_drops(&table, &ports))
    }
}

/// Sums the `drops` column of the 127.0.0.1 sockets bound to `ports` in a
/// `/proc/net/udp` table.
fn sum_drops(table: &str, ports: &[u16]) -> u64 {
    let mut total = 0;
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        let (Some(local), Some(drops)) = (fields.get(1), fields.get(12)) else {
            continue;
        };
        let Some((ip, port)) = local.split_once(':') else {
            continue;
        };
        // The address is the raw u32 in host order (little-endian here).
        let Ok(ip) = u32::from_str_radix(ip, 16) else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port, 16) else {
            continue;
        };
        if Ipv4Addr::from(ip.swap_bytes()) == Ipv4Addr::LOCALHOST && ports.contains(&port) {
            total += drops.parse::<u64>().unwrap_or(0);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  211: 0100007F:9C41 00000000:0000 07 00000000:00000900 00:00000000 00000000     0        0 81723 2 0000000000000000 123456
  212: 0100007F:9C42 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 81724 2 0000000000000000 7
  213: 00000000:9C41 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 81725 2 0000000000000000 1000
";

    #[test]
    fn drops_of_the_sinks_only() {
        assert_eq!(sum_drops(TABLE, &[0x9c41]), 123_456);
        assert_eq!(sum_drops(TABLE, &[0x9c41, 0x9c42]), 123_463);
        assert_eq!(sum_drops(TABLE, &[1]), 0);
    }

    #[test]
    fn a_full_sink_counts_what_arrives() {
        let sinks = Sinks::bind(1).unwrap();
        let to = sinks.addrs()[0];
        let before = sinks.dropped().unwrap();
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        for _ in 0..200 {
            tx.send_to(&[0x80; 172], to).unwrap();
        }
        let dropped = sinks.dropped().unwrap() - before;
        assert!((150..=200).contains(&dropped), "{dropped}");
    }
}
