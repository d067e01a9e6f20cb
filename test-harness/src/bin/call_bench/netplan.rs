//! Who listens where. Everything is on loopback addresses inside the run's
//! own network namespace (`lo` holds all of 127.0.0.0/8), so nothing here
//! meets the host's addresses or another run's ports.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The caller (sipp UAC): SIP and its RTP echo socket.
pub const UAC: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The callee (sipp UAS): SIP and the socket it sends RTP from, where the
/// echoed packets are counted.
pub const UAS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// kamailio's SIP listener (reference).
pub const KAMAILIO: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
/// rtpengine's media address and ng control socket (reference).
pub const RTPENGINE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// bridgehead's SIP, media and admin address.
pub const BRIDGEHEAD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 20);
/// The customer's app (the TwiML server) of the bridgehead side.
pub const TWIML: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 30);

pub const SIP_PORT: u16 = 5060;
/// sipp's media socket (`-mp`), on the UAC's and on the UAS's address.
pub const MEDIA_PORT: u16 = 6000;
pub const RTPENGINE_NG_PORT: u16 = 2223;
pub const ADMIN_PORT: u16 = 9090;
pub const TWIML_PORT: u16 = 8080;

/// The number the caller dials (routed to the app on the bridgehead side).
pub const NUMBER: &str = "+15550100001";
/// The number the app dials (`<Dial><Number>`): the callee, behind the trunk.
pub const DIALLED: &str = "+15550001111";

/// RTP packets the callee sends per call (20 ms of PCMU each); each comes
/// back once through the anchor.
pub const RTP_PACKETS_PER_CALL: u64 = 5;
/// The hold between the ACK and the BYE (`<pause>` in uac.xml).
pub const HOLD_SECONDS: f64 = 1.0;

pub fn sip(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, SIP_PORT))
}

pub fn uas_media() -> SocketAddrV4 {
    SocketAddrV4::new(UAS, MEDIA_PORT)
}
