//! What the AF_XDP backend asks the kernel, which keeps owning the
//! interface: its MAC, flags and rx queues (rtnetlink), the routes through
//! it (`/proc/net/route`, `/proc/net/ipv6_route`), its ARP cache
//! (`/proc/net/arp`) and IPv6 neighbour cache (an rtnetlink dump), and,
//! for a next hop a cache lacks, a request that the kernel resolve it (an
//! `RTM_NEWNEIGH` with `NTF_USE`, as if traffic used the entry).
//!
//! The parsers are pure over the files' text, so they are tested on samples.

use crate::wire::ethernet::EthernetAddress;
use nix::sys::socket::{recv, MsgFlags};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};

/// `IFF_LOOPBACK` in `ifi_flags`.
const IFF_LOOPBACK: u32 = 0x8;
/// Route flags in `/proc/net/route`.
const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;
/// `ATF_COM` in `/proc/net/arp`: a complete entry.
const ATF_COM: u32 = 0x2;

/// The interface as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: EthernetAddress,
    /// Loopback: frames carry zero MACs and nothing is resolved.
    pub loopback: bool,
    /// Receive queues: one AF_XDP socket each.
    pub rx_queues: u32,
}

/// The interface `name` of this network namespace, asked of the kernel over
/// rtnetlink (`RTM_GETLINK`): sysfs would show the namespace it was mounted
/// in, not necessarily ours.
pub fn interface(name: &str) -> Result<Interface, String> {
    let index = nix::net::if_::if_nametoindex(name)
        .map_err(|e| format!("interface {name:?}: {e} (does it exist in this network namespace?)"))?;
    const RTM_GETLINK: u16 = 18;
    const NLM_F_REQUEST: u16 = 0x1;
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&[0; 8]); // sequence, port id
    msg.extend_from_slice(&[0; 4]); // ifinfomsg: family, padding, type
    msg.extend_from_slice(&(index as i32).to_ne_bytes());
    msg.extend_from_slice(&[0; 8]); // flags, change
    let reply = netlink_request(&msg).map_err(|e| format!("interface {name:?}: RTM_GETLINK: {e}"))?;
    parse_link(&reply, name, index).ok_or_else(|| format!("interface {name:?}: unreadable RTM_GETLINK answer"))
}

/// Sends one rtnetlink request on a socket of its own, returned for the
/// answers.
fn netlink_send(msg: &[u8]) -> Result<OwnedFd, String> {
    use nix::sys::socket::{sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};
    let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
        .map_err(|e| format!("netlink socket: {e}"))?;
    sendto(fd.as_raw_fd(), msg, &NetlinkAddr::new(0, 0), MsgFlags::empty()).map_err(|e| e.to_string())?;
    Ok(fd)
}

/// Sends one rtnetlink request and returns the first answer.
fn netlink_request(msg: &[u8]) -> Result<Vec<u8>, String> {
    let fd = netlink_send(msg)?;
    let mut buf = vec![0u8; 16 * 1024];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(|e| e.to_string())?;
    buf.truncate(n);
    Ok(buf)
}

/// The interface in an `RTM_NEWLINK` message: `ifi_flags`, `IFLA_ADDRESS`,
/// `IFLA_NUM_RX_QUEUES`. None for an error answer or a short message.
pub fn parse_link(msg: &[u8], name: &str, index: u32) -> Option<Interface> {
    const RTM_NEWLINK: u16 = 16;
    const IFLA_ADDRESS: u16 = 1;
    const IFLA_NUM_RX_QUEUES: u16 = 32;
    let u16_at = |at: usize| msg.get(at..at + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |at: usize| msg.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let len = (u32_at(0)? as usize).min(msg.len());
    if u16_at(4)? != RTM_NEWLINK {
        return None;
    }
    let flags = u32_at(16 + 8)?;
    let (mut mac, mut rx_queues) = (EthernetAddress([0; 6]), 1);
    let mut at = 32;
    while at + 4 <= len {
        let (alen, kind) = (usize::from(u16_at(at)?), u16_at(at + 2)? & 0x3fff);
        if alen < 4 || at + alen > len {
            break;
        }
        let value = &msg[at + 4..at + alen];
        match kind {
            IFLA_ADDRESS if value.len() == 6 => mac.0.copy_from_slice(value),
            IFLA_NUM_RX_QUEUES if value.len() == 4 => rx_queues = u32_at(at + 4)?.max(1),
            _ => {}
        }
        at += alen.div_ceil(4) * 4;
    }
    Some(Interface { name: name.to_owned(), index, mac, loopback: flags & IFF_LOOPBACK != 0, rx_queues })
}

fn parse_mac(s: &str) -> Option<EthernetAddress> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(EthernetAddress(mac))
}

/// A route through the interface, of either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dest: IpAddr,
    pub prefix_len: u8,
    /// None: on-link.
    pub gateway: Option<IpAddr>,
}

/// `/proc/net/route` holds addresses as the host's u32 in hex (little-endian here).
fn proc_addr(hex: &str) -> Option<Ipv4Addr> {
    let v = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(v.to_ne_bytes()))
}

/// `/proc/net/ipv6_route` holds addresses as 32 hex digits in network order.
fn proc_addr6(hex: &str) -> Option<Ipv6Addr> {
    u128::from_str_radix(hex, 16).ok().filter(|_| hex.len() == 32).map(Ipv6Addr::from)
}

/// The up IPv4 routes of `/proc/net/route` through `ifname`.
pub fn parse_routes(text: &str, ifname: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 || f[0] != ifname {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            if flags & RTF_UP == 0 {
                return None;
            }
            let mask = u32::from_be_bytes(proc_addr(f[7])?.octets());
            Some(Route {
                dest: IpAddr::V4(proc_addr(f[1])?),
                prefix_len: mask.count_ones() as u8,
                gateway: (flags & RTF_GATEWAY != 0).then(|| proc_addr(f[2]).map(IpAddr::V4)).flatten(),
            })
        })
        .collect()
}

/// The up IPv6 routes of `/proc/net/ipv6_route` through `ifname`
/// (destination, prefix, source, prefix, next hop, metric, references,
/// use, flags, interface).
pub fn parse_routes6(text: &str, ifname: &str) -> Vec<Route> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[9] != ifname {
                return None;
            }
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            if flags & RTF_UP == 0 {
                return None;
            }
            let gateway = proc_addr6(f[4]).filter(|g| flags & RTF_GATEWAY != 0 && !g.is_unspecified());
            Some(Route {
                dest: IpAddr::V6(proc_addr6(f[0])?),
                prefix_len: u8::from_str_radix(f[1], 16).ok()?.min(128),
                gateway: gateway.map(IpAddr::V6),
            })
        })
        .collect()
}

/// The routes through `ifname`, both families, longest prefix first.
pub fn routes(ifname: &str) -> Vec<Route> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let mut routes = parse_routes(&read("/proc/net/route"), ifname);
    routes.extend(parse_routes6(&read("/proc/net/ipv6_route"), ifname));
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix_len));
    routes
}

/// The neighbour a datagram to `dst` goes to through these routes (longest
/// prefix first): the gateway, or `dst` itself on-link.
pub fn next_hop(routes: &[Route], dst: IpAddr) -> Option<IpAddr> {
    routes.iter().find_map(|r| {
        let same = match (r.dest, dst) {
            (IpAddr::V4(net), IpAddr::V4(d)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(r.prefix_len.min(32))).unwrap_or(0);
                u32::from(d) & mask == u32::from(net) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(d)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(r.prefix_len.min(128))).unwrap_or(0);
                u128::from(d) & mask == u128::from(net) & mask
            }
            _ => false,
        };
        same.then_some(r.gateway.unwrap_or(dst))
    })
}

/// The complete entry for `ip` on `ifname` in `/proc/net/arp`.
pub fn parse_arp(text: &str, ifname: &str, ip: Ipv4Addr) -> Option<EthernetAddress> {
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[5] != ifname || f[0].parse::<Ipv4Addr>().ok()? != ip {
            return None;
        }
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
        (flags & ATF_COM != 0).then(|| parse_mac(f[3])).flatten()
    })
}

/// The text of `/proc/net/arp` (empty if unreadable).
pub fn arp_cache() -> String {
    std::fs::read_to_string("/proc/net/arp").unwrap_or_default()
}

/// The usable IPv6 neighbours of interface `ifindex` (IPv6 has no
/// `/proc` file for them): an rtnetlink dump.
pub fn neighbours6(ifindex: u32) -> Result<Vec<(Ipv6Addr, EthernetAddress)>, String> {
    const RTM_GETNEIGH: u16 = 30;
    const NLM_F_REQUEST_DUMP: u16 = 0x1 | 0x300;
    let mut msg = Vec::with_capacity(28);
    msg.extend_from_slice(&28u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST_DUMP.to_ne_bytes());
    msg.extend_from_slice(&[0; 8]);
    msg.push(libc::AF_INET6 as u8);
    msg.extend_from_slice(&[0; 3]);
    msg.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    msg.extend_from_slice(&[0; 4]);
    let fd = netlink_send(&msg)?;
    let mut found = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(|e| e.to_string())?;
        if n == 0 || parse_neighbours6(&buf[..n], ifindex, &mut found) {
            return Ok(found);
        }
    }
}

/// Adds the usable entries of one batch of `RTM_NEWNEIGH` messages to
/// `found`; true at the end of the dump (`NLMSG_DONE`, an error, or junk).
pub fn parse_neighbours6(batch: &[u8], ifindex: u32, found: &mut Vec<(Ipv6Addr, EthernetAddress)>) -> bool {
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const RTM_NEWNEIGH: u16 = 28;
    const NDA_DST: u16 = 1;
    const NDA_LLADDR: u16 = 2;
    // REACHABLE, STALE, DELAY, PROBE, NOARP, PERMANENT: an address to send to.
    const USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;
    let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).map(|x| u16::from_ne_bytes([x[0], x[1]]));
    let u32_at = |b: &[u8], at: usize| b.get(at..at + 4).map(|x| u32::from_ne_bytes([x[0], x[1], x[2], x[3]]));
    let mut at = 0;
    while at + 16 <= batch.len() {
        let (Some(len), Some(kind)) = (u32_at(batch, at), u16_at(batch, at + 4)) else { return true };
        let len = len as usize;
        if len < 16 || at + len > batch.len() || kind == NLMSG_DONE || kind == NLMSG_ERROR {
            return true;
        }
        let m = &batch[at..at + len];
        if kind == RTM_NEWNEIGH && m.len() >= 28 && u32_at(m, 20) == Some(ifindex) {
            let state = u16_at(m, 24).unwrap_or(0);
            let (mut dst, mut mac) = (None, None);
            let mut a = 28;
            while a + 4 <= m.len() {
                let (Some(alen), Some(akind)) = (u16_at(m, a), u16_at(m, a + 2)) else { break };
                let alen = usize::from(alen);
                if alen < 4 || a + alen > m.len() {
                    break;
                }
                let value = &m[a + 4..a + alen];
                match akind {
                    NDA_DST => dst = <[u8; 16]>::try_from(value).ok().map(Ipv6Addr::from),
                    NDA_LLADDR => mac = <[u8; 6]>::try_from(value).ok().map(EthernetAddress),
                    _ => {}
                }
                a += alen.div_ceil(4) * 4;
            }
            if let (Some(dst), Some(mac), true) = (dst, mac, state & USABLE != 0) {
                found.push((dst, mac));
            }
        }
        at += len.div_ceil(4) * 4;
    }
    false
}

/// Asks the kernel to resolve `ip` on the interface `ifindex`, as if
/// traffic were waiting for it (`RTM_NEWNEIGH`, `NTF_USE`): it sends the
/// ARP request, and the answer lands in its cache, where [`arp`] finds it.
pub fn request_resolution(ifindex: u32, ip: IpAddr) -> Result<(), String> {
    const RTM_NEWNEIGH: u16 = 28;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_REPLACE: u16 = 0x100;
    const NLM_F_CREATE: u16 = 0x400;
    const NTF_USE: u8 = 0x1;
    const NDA_DST: u16 = 1;
    let (family, addr) = match ip {
        IpAddr::V4(a) => (libc::AF_INET, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6, a.octets().to_vec()),
    };
    let len = 16 + 12 + 4 + addr.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes()); // nlmsghdr: length
    msg.extend_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE).to_ne_bytes());
    msg.extend_from_slice(&[0; 8]); // sequence, port id
    msg.push(family as u8); // ndmsg: family, padding
    msg.extend_from_slice(&[0; 3]);
    msg.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes()); // state
    msg.push(NTF_USE);
    msg.push(0); // type
    msg.extend_from_slice(&((4 + addr.len()) as u16).to_ne_bytes()); // rtattr NDA_DST
    msg.extend_from_slice(&NDA_DST.to_ne_bytes());
    msg.extend_from_slice(&addr);
    netlink_send(&msg).map_err(|e| format!("RTM_NEWNEIGH {ip}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010011AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth1\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn routes_give_the_gateway_off_link_and_the_destination_on_link() {
        let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        let mut r = parse_routes(ROUTES, "eth0");
        r.sort_by_key(|r| std::cmp::Reverse(r.prefix_len));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], Route { dest: v4(172, 17, 0, 0), prefix_len: 16, gateway: None });
        assert_eq!(next_hop(&r, v4(172, 17, 3, 4)), Some(v4(172, 17, 3, 4)));
        assert_eq!(next_hop(&r, v4(8, 8, 8, 8)), Some(v4(172, 17, 0, 1)));
        let r1 = parse_routes(ROUTES, "eth1");
        assert_eq!(next_hop(&r1, v4(10, 0, 2, 9)), Some(v4(10, 0, 2, 9)));
        assert_eq!(next_hop(&r1, v4(10, 0, 3, 9)), None, "no default route through eth1");
        assert_eq!(next_hop(&r, "2001:db8::1".parse().unwrap()), None, "no IPv6 route");
    }

    #[test]
    fn ipv6_routes_give_the_gateway_off_link_and_the_destination_on_link() {
        let text = "\
20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth1
";
        let mut r = parse_routes6(text, "eth0");
        r.sort_by_key(|r| std::cmp::Reverse(r.prefix_len));
        assert_eq!(r.len(), 2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(next_hop(&r, ip("2001:db8::42")), Some(ip("2001:db8::42")));
        assert_eq!(next_hop(&r, ip("2001:4860::8888")), Some(ip("2001:db8::1")));
        assert_eq!(next_hop(&r, ip("192.0.2.1")), None);
    }

    #[test]
    fn only_complete_arp_entries_of_the_interface_count() {
        let arp = "\
IP address       HW type     Flags       HW address            Mask     Device
172.17.0.1       0x1         0x2         02:42:ac:11:00:01     *        eth0
172.17.0.9       0x1         0x0         00:00:00:00:00:00     *        eth0
10.0.2.1         0x1         0x2         52:54:00:12:35:02     *        eth1
";
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(parse_arp(arp, "eth0", ip("172.17.0.1")), Some(EthernetAddress([0x02, 0x42, 0xac, 0x11, 0, 1])));
        assert_eq!(parse_arp(arp, "eth0", ip("172.17.0.9")), None, "incomplete");
        assert_eq!(parse_arp(arp, "eth0", ip("10.0.2.1")), None, "another interface");
    }

    #[test]
    fn ipv6_neighbours_of_the_interface_in_a_usable_state_are_read() {
        // Two RTM_NEWNEIGH messages (ifindex 7: reachable with a MAC; ifindex
        // 7: incomplete), one of another interface, then NLMSG_DONE.
        let neigh = |ifindex: i32, state: u16, dst: &str, mac: Option<[u8; 6]>| {
            let mut m = Vec::new();
            let len = 16 + 12 + 20 + if mac.is_some() { 12 } else { 0 };
            m.extend_from_slice(&(len as u32).to_ne_bytes());
            m.extend_from_slice(&28u16.to_ne_bytes());
            m.extend_from_slice(&[0; 10]);
            m.push(libc::AF_INET6 as u8);
            m.extend_from_slice(&[0; 3]);
            m.extend_from_slice(&ifindex.to_ne_bytes());
            m.extend_from_slice(&state.to_ne_bytes());
            m.extend_from_slice(&[0, 0]);
            m.extend_from_slice(&20u16.to_ne_bytes());
            m.extend_from_slice(&1u16.to_ne_bytes());
            m.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
            if let Some(mac) = mac {
                m.extend_from_slice(&10u16.to_ne_bytes());
                m.extend_from_slice(&2u16.to_ne_bytes());
                m.extend_from_slice(&mac);
                m.extend_from_slice(&[0, 0]);
            }
            m
        };
        let mut batch = neigh(7, 0x02, "2001:db8::a", Some([2, 0, 0, 0, 0, 0x0a]));
        batch.extend(neigh(7, 0x01, "2001:db8::b", None));
        batch.extend(neigh(8, 0x80, "2001:db8::c", Some([2, 0, 0, 0, 0, 0x0c])));
        let mut found = Vec::new();
        assert!(!parse_neighbours6(&batch, 7, &mut found), "no NLMSG_DONE yet");
        assert_eq!(found, vec![("2001:db8::a".parse().unwrap(), EthernetAddress([2, 0, 0, 0, 0, 0x0a]))]);
        let mut done = 16u32.to_ne_bytes().to_vec();
        done.extend_from_slice(&3u16.to_ne_bytes());
        done.extend_from_slice(&[0; 10]);
        assert!(parse_neighbours6(&done, 7, &mut found));
        assert!(parse_neighbours6(&[1, 2, 3], 7, &mut found) || found.len() == 1);
    }

    #[test]
    fn loopback_is_seen_as_such() {
        let lo = interface("lo").unwrap();
        assert!(lo.loopback);
        assert_eq!(lo.mac, EthernetAddress([0; 6]));
        assert!(lo.rx_queues >= 1);
        assert!(interface("no-such-if0").unwrap_err().contains("no-such-if0"));
    }
}
