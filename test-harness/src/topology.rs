//! The test network: an appliance namespace holding a bridge (the media LAN)
//! and peers, each in its own namespace, plugged into that bridge by a veth
//! pair. Optionally a peer sits behind a NAT namespace that masquerades its
//! private address.
//!
//! ```text
//!   peer a 192.0.2.10 ─┐
//!   peer b 192.0.2.11 ─┼─ br0 192.0.2.1 (media IP) ── [app namespace: bridgehead,
//!   nat    192.0.2.12 ─┘                                admin on 127.0.0.1]
//!     └─ in0 198.51.100.1 ── peer c 198.51.100.10 (private, masqueraded)
//! ```
//!
//! Addresses are TEST-NET ranges and exist only inside these namespaces.
//! Neighbour entries are static, between every two hosts of the LAN and
//! toward 192.0.2.1, so a first burst never waits on ARP. (A burst that
//! does arrives out of order: the packets queued while the address
//! resolves are overtaken by the first one sent after it. Across a
//! [`crate::wan::Wan`] delay line the wait is a whole round trip.)

use crate::netns::{run, veth, Netns};
use crate::rtp::RtpEndpoint;
use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The appliance's media address on the LAN.
pub const MEDIA_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LAN_PREFIX: &str = "24";
/// The app namespace's bridge, the LAN (with a [`crate::wan::Wan`], its core region).
pub(crate) const BRIDGE: &str = "br0";
const PRIVATE_NET_GW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PRIVATE_PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

fn mac(kind: u8, host: u8) -> String {
    format!("02:00:c0:{kind:02x}:02:{host:02x}")
}

/// The appliance's namespace and its media LAN.
#[derive(Debug)]
pub struct MediaLan {
    pub app: Netns,
    next_host: u8,
    /// The hosts plugged so far, by namespace name and host number: each
    /// new one gets static neighbour entries toward them, and they toward it.
    hosts: Vec<(String, u8)>,
    /// Peers compute their UDP checksums themselves (see
    /// [`MediaLan::full_checksums`]).
    full_checksums: bool,
}

/// A host on the LAN (or, for a NATed peer, behind it).
#[derive(Debug)]
pub struct Peer {
    pub ns: Netns,
    pub ip: Ipv4Addr,
}

/// A peer whose packets leave through a masquerading NAT.
#[derive(Debug)]
pub struct NattedPeer {
    /// The private host (198.51.100.10), with a default route through the NAT.
    pub peer: Peer,
    /// The NAT's address on the media LAN: what the appliance sees as source.
    pub public_ip: Ipv4Addr,
    pub nat: Netns,
}

impl MediaLan {
    /// The appliance namespace with `br0` = 192.0.2.1/24.
    pub fn new() -> Result<MediaLan> {
        let app = Netns::new("app")?;
        app.ip(&["link", "add", BRIDGE, "address", &mac(0, 1), "type", "bridge"])?;
        app.ip(&["addr", "add", &format!("{MEDIA_IP}/{LAN_PREFIX}"), "dev", BRIDGE])?;
        app.ip(&["link", "set", BRIDGE, "up"])?;
        Ok(MediaLan { app, next_host: 10, hosts: Vec::new(), full_checksums: false })
    }

    /// Peers plugged from now on send datagrams with their checksums filled
    /// in. A veth with transmit offload on leaves the UDP checksum to a NIC
    /// that is not there; the kernel's own stack knows, but a dataplane that
    /// reads the frame itself (AF_XDP, af_packet) sees a checksum never
    /// computed, as no physical NIC ever delivers.
    pub fn full_checksums(&mut self) {
        self.full_checksums = true;
    }

    pub fn media_ip(&self) -> IpAddr {
        IpAddr::V4(MEDIA_IP)
    }

    /// Plugs a namespace into `bridge` (of the app namespace) with the
    /// next free LAN address.
    fn plug(&mut self, ns: &Netns, bridge: &str) -> Result<Ipv4Addr> {
        let host = self.next_host;
        if host > 250 {
            bail!("the media LAN is full");
        }
        self.next_host += 1;
        let ip = Ipv4Addr::new(192, 0, 2, host);
        let port = format!("p{host}");
        veth(ns, "eth0", &mac(2, host), &self.app, &port, &mac(1, host))?;
        self.app.ip(&["link", "set", &port, "master", bridge])?;
        self.app.ip(&["link", "set", &port, "up"])?;
        ns.ip(&["addr", "add", &format!("{ip}/{LAN_PREFIX}"), "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        if self.full_checksums {
            ns.exec("ethtool", &["-K", "eth0", "tx", "off"], None).context("checksum offload off")?;
        }
        ns.ip(&["neigh", "replace", &MEDIA_IP.to_string(), "lladdr", &mac(0, 1), "dev", "eth0", "nud", "permanent"])?;
        self.app.ip(&[
            "neigh",
            "replace",
            &ip.to_string(),
            "lladdr",
            &mac(2, host),
            "dev",
            BRIDGE,
            "nud",
            "permanent",
        ])?;
        self.neighbours(ns, host)?;
        Ok(ip)
    }

    /// Static neighbour entries between host `host` (namespace `ns`, just
    /// plugged) and every host plugged before it that still exists.
    fn neighbours(&mut self, ns: &Netns, host: u8) -> Result<()> {
        let entry = |h: u8| format!("neigh replace 192.0.2.{h} lladdr {} dev eth0 nud permanent\n", mac(2, h));
        let gone = |name: &str| !std::path::Path::new("/run/netns").join(name).exists();
        self.hosts.retain(|(name, _)| !gone(name));
        let mut toward_them = String::new();
        for (name, other) in &self.hosts {
            toward_them.push_str(&entry(*other));
            let net = format!("--net=/run/netns/{name}");
            match run("nsenter", &[&net, "ip", "-batch", "-"], Some(&entry(host))) {
                // A peer dropped meanwhile needs no entry.
                Err(_) if gone(name) => {}
                result => result.with_context(|| format!("a neighbour entry for 192.0.2.{host} in {name}"))?,
            }
        }
        if !toward_them.is_empty() {
            ns.exec("ip", &["-batch", "-"], Some(&toward_them)).context("neighbour entries toward the LAN's hosts")?;
        }
        self.hosts.push((ns.name().to_owned(), host));
        Ok(())
    }

    /// A peer on the LAN in its own namespace.
    pub fn add_peer(&mut self, role: &str) -> Result<Peer> {
        self.add_peer_on(BRIDGE, role)
    }

    /// A peer in its own namespace plugged into `bridge` of the app
    /// namespace (a [`crate::wan::Wan`] region's).
    pub(crate) fn add_peer_on(&mut self, bridge: &str, role: &str) -> Result<Peer> {
        let ns = Netns::new(role)?;
        let ip = self.plug(&ns, bridge).with_context(|| format!("plugging peer {role} into the media LAN"))?;
        Ok(Peer { ns, ip })
    }

    /// A peer at 198.51.100.10 behind a NAT namespace on the LAN that
    /// masquerades it (nftables). The appliance has no route to the private
    /// net: only the NAT's public address works as a destination.
    pub fn add_natted_peer(&mut self, role: &str) -> Result<NattedPeer> {
        let nat = Netns::new(&format!("{role}nat"))?;
        let public_ip = self.plug(&nat, BRIDGE).context("plugging the NAT into the media LAN")?;
        let inner = Netns::new(role)?;
        veth(&inner, "eth0", &mac(3, 10), &nat, "in0", &mac(3, 1))?;
        nat.ip(&["addr", "add", &format!("{PRIVATE_NET_GW}/24"), "dev", "in0"])?;
        nat.ip(&["link", "set", "in0", "up"])?;
        inner.ip(&["addr", "add", &format!("{PRIVATE_PEER}/24"), "dev", "eth0"])?;
        inner.ip(&["link", "set", "eth0", "up"])?;
        inner.ip(&["route", "add", "default", "via", &PRIVATE_NET_GW.to_string()])?;
        inner.ip(&[
            "neigh",
            "replace",
            &PRIVATE_NET_GW.to_string(),
            "lladdr",
            &mac(3, 1),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])?;
        nat.ip(&[
            "neigh",
            "replace",
            &PRIVATE_PEER.to_string(),
            "lladdr",
            &mac(3, 10),
            "dev",
            "in0",
            "nud",
            "permanent",
        ])?;
        nat.sysctl("net.ipv4.ip_forward", "1")?;
        let rules = "table ip nat {\n\
                     \tchain postrouting {\n\
                     \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
                     \t\toifname \"eth0\" masquerade\n\
                     \t}\n\
                     }\n";
        nat.exec("nft", &["-f", "-"], Some(rules))
            .context("installing the masquerade rule (is nftables installed?)")?;
        Ok(NattedPeer { peer: Peer { ns: inner, ip: PRIVATE_PEER }, public_ip, nat })
    }
}

impl Peer {
    /// A UDP socket on this peer, on an ephemeral port.
    pub fn endpoint(&self) -> Result<RtpEndpoint> {
        self.endpoint_on(0)
    }

    /// A UDP socket on this peer, on `port` (0: any).
    pub fn endpoint_on(&self, port: u16) -> Result<RtpEndpoint> {
        RtpEndpoint::bind_in(&self.ns, SocketAddr::new(IpAddr::V4(self.ip), port))
    }
}
