//! SIP trunks: the carriers an account connects through. A trunk says which
//! source addresses may send calls in (`allow`), where outbound calls go
//! (`outbound`), and the digest credentials to answer the carrier's
//! challenge with.

use super::sid::AccountSid;
use super::timestamp::Timestamp;
use super::StoreError;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

#[derive(Clone, PartialEq, Eq)]
pub struct Trunk {
    pub account_sid: AccountSid,
    /// Unique within the account; letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Carrier networks allowed to send INVITEs. Empty: none (outbound only).
    pub allow: Vec<Cidr>,
    /// A `sip:` or `sips:` URI, where `<Dial><Number>` goes.
    pub outbound: String,
    /// Digest credentials toward the carrier, both or neither.
    pub username: Option<String>,
    pub password: Option<String>,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

impl Trunk {
    pub fn new(account_sid: AccountSid, name: String, outbound: String) -> Trunk {
        let now = Timestamp::now();
        Trunk {
            account_sid,
            name,
            allow: Vec::new(),
            outbound,
            username: None,
            password: None,
            date_created: now,
            date_updated: now,
        }
    }

    /// Whether `source` may send calls in over this trunk.
    pub fn allows(&self, source: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(source))
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_trunk_name(&self.name).map_err(StoreError::Invalid)?;
        check_sip_uri(&self.outbound).map_err(|reason| StoreError::Invalid(format!("outbound: {reason}")))?;
        for (i, cidr) in self.allow.iter().enumerate() {
            if self.allow[..i].contains(cidr) {
                return Err(StoreError::Invalid(format!("allow lists {cidr} twice")));
            }
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(StoreError::Invalid("a trunk's username and password go together".into()));
        }
        Ok(())
    }
}

impl fmt::Debug for Trunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trunk")
            .field("account_sid", &self.account_sid)
            .field("name", &self.name)
            .field("allow", &self.allow)
            .field("outbound", &self.outbound)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

pub fn check_trunk_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!("trunk name {name:?}: 1 to 64 letters, digits, '-', '_' or '.'"));
    }
    Ok(())
}

/// `sip:` or `sips:` followed by a host (with optional user part, port and
/// parameters); the SIP layer parses it fully when it sends.
pub fn check_sip_uri(uri: &str) -> Result<(), String> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .ok_or_else(|| format!("{uri:?} is not a sip: or sips: URI"))?;
    let host_port = rest.rsplit('@').next().unwrap_or(rest);
    let host = host_port.split([';', '?']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{uri:?} has no host"));
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{uri:?} contains whitespace or control characters"));
    }
    Ok(())
}

/// An IP network: an address and a prefix length (`192.0.2.0/24`,
/// `2001:db8::/32`; a bare address is a /32 or /128). Host bits must be zero,
/// so that `10.0.0.1/8` (a likely typo) is refused rather than guessed at.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an address or a network like 192.0.2.0/24")]
    Syntax(String),
    #[error("{0:?}: the prefix length must be at most {1}")]
    PrefixTooLong(String, u8),
    #[error("{given:?} has host bits set; the network is {network}")]
    HostBits { given: String, network: String },
}

impl Cidr {
    pub fn new(network: IpAddr, prefix_len: u8) -> Result<Cidr, CidrError> {
        let given = format!("{network}/{prefix_len}");
        let max = max_len(network);
        if prefix_len > max {
            return Err(CidrError::PrefixTooLong(given, max));
        }
        let cidr = Cidr { network, prefix_len };
        let masked = cidr.masked(network);
        if masked != network {
            return Err(CidrError::HostBits { given, network: Cidr { network: masked, prefix_len }.to_string() });
        }
        Ok(cidr)
    }

    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| CidrError::Syntax(s.into()))?;
        let prefix_len = match len {
            None => max_len(network),
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
                l.parse().map_err(|_| CidrError::PrefixTooLong(s.into(), max_len(network)))?
            }
            Some(_) => return Err(CidrError::Syntax(s.into())),
        };
        Cidr::new(network, prefix_len)
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is inside. An IPv4 address written as IPv6
    /// (`::ffff:192.0.2.1`, as a dual-stack socket reports it) counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && self.masked(ip) == self.network
    }

    /// The network as one range of IPv6 addresses (IPv4 as `::ffff:a.b.c.d`),
    /// lowest and highest, big-endian: how the database indexes it, since
    /// byte strings compare like the addresses they hold.
    pub fn v6_range(&self) -> ([u8; 16], [u8; 16]) {
        let lo = to_v6(self.network);
        let len = self.v6_prefix_len();
        let host_mask = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        let hi = u128::from_be_bytes(lo) | host_mask;
        (lo, hi.to_be_bytes())
    }

    /// The prefix length in the IPv6 view of `v6_range` (IPv4 lengths + 96),
    /// so that the most specific network wins across families.
    pub fn v6_prefix_len(&self) -> u8 {
        match self.network {
            IpAddr::V4(_) => self.prefix_len + 96,
            IpAddr::V6(_) => self.prefix_len,
        }
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix_len)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }
}

/// An address in the IPv6 view (IPv4 mapped into `::ffff:0:0/96`), as the
/// database compares it with `v6_range`.
pub fn to_v6(ip: IpAddr) -> [u8; 16] {
    match ip.to_canonical() {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => Ipv6Addr::octets(&a),
    }
}

fn max_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        Cidr::parse(s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_bare_addresses() {
        let c = Cidr::parse("192.0.2.0/24").unwrap();
        assert_eq!(c.to_string(), "192.0.2.0/24");
        assert_eq!(Cidr::parse("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert_eq!(Cidr::parse("2001:db8::/32").unwrap().prefix_len(), 32);
        assert_eq!(Cidr::parse("::1").unwrap().prefix_len(), 128);
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().prefix_len(), 0);
        assert!(matches!(
            Cidr::parse("10.0.0.1/8"),
            Err(CidrError::HostBits { network, .. }) if network == "10.0.0.0/8"
        ));
        assert!(matches!(Cidr::parse("10.0.0.0/33"), Err(CidrError::PrefixTooLong(_, 32))));
        assert!(matches!(Cidr::parse("10.0.0.0/999"), Err(CidrError::PrefixTooLong(..))));
        for bad in ["", "10.0.0.0/", "10.0.0/8", "10.0.0.0/-1", "host/24", "10.0.0.0/ 8"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn contains() {
        let v4 = Cidr::parse("192.0.2.0/24").unwrap();
        assert!(v4.contains(ip("192.0.2.0")));
        assert!(v4.contains(ip("192.0.2.255")));
        assert!(!v4.contains(ip("192.0.3.0")));
        assert!(v4.contains(ip("::ffff:192.0.2.7")));
        assert!(!v4.contains(ip("2001:db8::1")));
        let host = Cidr::parse("127.0.0.1/32").unwrap();
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
    }

    #[test]
    fn v6_range_matches_contains() {
        let c = Cidr::parse("192.0.2.0/24").unwrap();
        let (lo, hi) = c.v6_range();
        assert_eq!(lo, to_v6(ip("192.0.2.0")));
        assert_eq!(hi, to_v6(ip("192.0.2.255")));
        assert_eq!(c.v6_prefix_len(), 120);
        let all = Cidr::parse("::/0").unwrap().v6_range();
        assert_eq!(all, ([0; 16], [0xff; 16]));
        let host = Cidr::parse("2001:db8::1").unwrap().v6_range();
        assert_eq!(host.0, host.1);
    }

    #[test]
    fn trunk_checks() {
        assert!(check_sip_uri("sip:127.0.0.1:5080").is_ok());
        assert!(check_sip_uri("sips:carrier.example.com;transport=tls").is_ok());
        assert!(check_sip_uri("sip:+15550100001@carrier.example.com").is_ok());
        assert!(check_sip_uri("http://carrier").is_err());
        assert!(check_sip_uri("sip:").is_err());
        assert!(check_sip_uri("sip:user@").is_err());
        assert!(check_trunk_name("carrier-a").is_ok());
        assert!(check_trunk_name("carrier a").is_err());
        assert!(check_trunk_name("").is_err());
    }
}
