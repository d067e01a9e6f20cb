//! SDP (RFC 4566/8866): parse and write session descriptions, and the
//! offer/answer negotiation (RFC 3264) the B2BUA does for each leg.
//!
//! - this file: the types, `parse` and `Display`;
//! - [`negotiate`]: codecs we relay (PCMU, PCMA, RFC 4733 telephone-event),
//!   answers, offers, and the payload-type map between two legs.
//!
//! Parsing is tolerant where RFC 8866 asks receivers to be (LF line ends,
//! unknown lines and attributes kept and written back) and strict where a
//! mistake would break media (ports, addresses, payload types).

pub mod negotiate;

use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("SDP lacks a {0}= line")]
    Missing(&'static str),
    #[error("SDP too large ({0} bytes)")]
    TooLarge(usize),
}

/// Most bytes of SDP accepted: a call's SDP is well under 4 KiB; WebRTC's a few.
pub const MAX_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    pub session_version: u64,
    pub address: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attr(name: &str) -> Option<Direction> {
        Some(match name {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answerer (or the far leg) uses for an offered one.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
}

/// An attribute line kept as received: `a=name` or `a=name:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub kind: String,
    pub port: u16,
    pub port_count: Option<u16>,
    pub protocol: String,
    /// Formats as listed on the m= line (payload types for RTP).
    pub formats: Vec<String>,
    pub connection: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    pub fmtps: Vec<(u8, String)>,
    pub direction: Option<Direction>,
    pub rtcp_mux: bool,
    pub ptime: Option<u32>,
    /// Every other attribute, in order.
    pub attributes: Vec<Attribute>,
}

impl Media {
    /// RTP payload types on the m= line; other formats are skipped.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse::<u8>().ok()).filter(|pt| *pt < 128)
    }

    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.payload_type == pt)
    }

    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps.iter().find(|(p, _)| *p == pt).map(|(_, f)| f.as_str())
    }

    pub fn is_plain_rtp(&self) -> bool {
        self.protocol == "RTP/AVP"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    pub connection: Option<IpAddr>,
    pub direction: Option<Direction>,
    /// Session-level attributes other than direction, in order.
    pub attributes: Vec<Attribute>,
    pub media: Vec<Media>,
}

impl SessionDescription {
    /// The effective connection address of a media section.
    pub fn media_address(&self, media: &Media) -> Option<IpAddr> {
        media.connection.or(self.connection)
    }

    /// The effective direction of a media section. An address of 0.0.0.0
    /// is the RFC 2543 way of putting a call on hold.
    pub fn media_direction(&self, media: &Media) -> Direction {
        let d = media.direction.or(self.direction).unwrap_or_default();
        match self.media_address(media) {
            Some(ip) if ip.is_unspecified() && d == Direction::SendRecv => Direction::Inactive,
            _ => d,
        }
    }

    /// The first audio section.
    pub fn audio(&self) -> Option<&Media> {
        self.media.iter().find(|m| m.kind == "audio")
    }

    pub fn parse(text: &[u8]) -> Result<SessionDescription, SdpError> {
        if text.len() > MAX_LEN {
            return Err(SdpError::TooLarge(text.len()));
        }
        let text = std::str::from_utf8(text).map_err(|_| SdpError::Syntax { line: 0, reason: "not UTF-8".into() })?;
        let mut origin = None;
        let mut session_name = None;
        let mut session = SessionLevel::default();
        let mut media: Vec<Media> = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            let line_no = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            let err = |reason: &str| SdpError::Syntax { line: line_no, reason: reason.to_string() };
            let (kind, value) = match line.as_bytes() {
                [k, b'=', ..] => (*k, &line[2..]),
                _ => return Err(err("expected <type>=<value>")),
            };
            match kind {
                b'v' if value != "0" => return Err(err("version must be 0")),
                b'o' => origin = Some(parse_origin(value).ok_or_else(|| err("bad o= line"))?),
                b's' => session_name = Some(value.to_string()),
                b'c' => {
                    let addr = parse_connection(value).ok_or_else(|| err("bad c= line"))?;
                    match media.last_mut() {
                        Some(m) => m.connection = Some(addr),
                        None => session.connection = Some(addr),
                    }
                }
                b'm' => media.push(parse_media(value).ok_or_else(|| err("bad m= line"))?),
                b'a' => {
                    let (name, val) = match value.split_once(':') {
                        Some((n, v)) => (n, Some(v)),
                        None => (value, None),
                    };
                    match media.last_mut() {
                        Some(m) => media_attribute(m, name, val).map_err(|r| err(&r))?,
                        None => match Direction::from_attr(name) {
                            Some(d) => session.direction = Some(d),
                            None => session
                                .attributes
                                .push(Attribute { name: name.to_string(), value: val.map(str::to_string) }),
                        },
                    }
                }
                // v, t, b, i, u, e, p, k, r, z: accepted, not needed to relay audio.
                _ => {}
            }
        }
        Ok(SessionDescription {
            origin: origin.ok_or(SdpError::Missing("o"))?,
            session_name: session_name.unwrap_or_else(|| "-".into()),
            connection: session.connection,
            direction: session.direction,
            attributes: session.attributes,
            media,
        })
    }
}

#[derive(Default)]
struct SessionLevel {
    connection: Option<IpAddr>,
    direction: Option<Direction>,
    attributes: Vec<Attribute>,
}

fn parse_origin(value: &str) -> Option<Origin> {
    let f: Vec<&str> = value.split_whitespace().collect();
    if f.len() != 6 || f[3] != "IN" {
        return None;
    }
    Some(Origin {
        username: f[0].to_string(),
        session_id: f[1].to_string(),
        session_version: f[2].parse().ok()?,
        address: f[5].to_string(),
    })
}

fn parse_connection(value: &str) -> Option<IpAddr> {
    let f: Vec<&str> = value.split_whitespace().collect();
    if f.len() != 3 || f[0] != "IN" || !matches!(f[1], "IP4" | "IP6") {
        return None;
    }
    // Multicast TTL suffix ("/127") is not used for unicast media.
    let addr = f[2].split('/').next()?;
    addr.parse().ok()
}

fn parse_media(value: &str) -> Option<Media> {
    let mut f = value.split_whitespace();
    let kind = f.next()?.to_string();
    let port_field = f.next()?;
    let (port, port_count) = match port_field.split_once('/') {
        Some((p, n)) => (p.parse().ok()?, Some(n.parse().ok()?)),
        None => (port_field.parse().ok()?, None),
    };
    let protocol = f.next()?.to_string();
    let formats: Vec<String> = f.map(str::to_string).collect();
    if formats.is_empty() {
        return None;
    }
    Some(Media {
        kind,
        port,
        port_count,
        protocol,
        formats,
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        direction: None,
        rtcp_mux: false,
        ptime: None,
        attributes: Vec::new(),
    })
}

fn media_attribute(m: &mut Media, name: &str, value: Option<&str>) -> Result<(), String> {
    if let Some(d) = Direction::from_attr(name) {
        m.direction = Some(d);
        return Ok(());
    }
    match (name, value) {
        ("rtpmap", Some(v)) => m.rtpmaps.push(parse_rtpmap(v).ok_or("bad a=rtpmap")?),
        ("fmtp", Some(v)) => {
            let (pt, params) = v.split_once(' ').ok_or("bad a=fmtp")?;
            m.fmtps.push((pt.parse().map_err(|_| "bad a=fmtp payload type")?, params.trim().to_string()));
        }
        ("rtcp-mux", None) => m.rtcp_mux = true,
        ("ptime", Some(v)) => m.ptime = v.trim().parse().ok(),
        _ => m.attributes.push(Attribute { name: name.to_string(), value: value.map(str::to_string) }),
    }
    Ok(())
}

fn parse_rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.split_once(' ')?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.to_string();
    let clock_rate = parts.next()?.parse().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse().ok()?),
        None => None,
    };
    let payload_type = pt.parse().ok().filter(|p: &u8| *p < 128)?;
    Some(RtpMap { payload_type, encoding, clock_rate, channels })
}

fn ip_kind(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

impl fmt::Display for SessionDescription {
    /// Writes the description with CRLF line ends, in RFC 8866 order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        let o_kind = if o.address.contains(':') { "IP6" } else { "IP4" };
        write!(
            f,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\n",
            o.username, o.session_id, o.session_version, o_kind, o.address, self.session_name
        )?;
        if let Some(c) = self.connection {
            write!(f, "c=IN {} {}\r\n", ip_kind(&c), c)?;
        }
        f.write_str("t=0 0\r\n")?;
        for a in &self.attributes {
            write_attr(f, a)?;
        }
        if let Some(d) = self.direction {
            write!(f, "a={}\r\n", d.as_str())?;
        }
        for m in &self.media {
            write!(f, "m={} {}", m.kind, m.port)?;
            if let Some(n) = m.port_count {
                write!(f, "/{n}")?;
            }
            write!(f, " {} {}\r\n", m.protocol, m.formats.join(" "))?;
            if let Some(c) = m.connection {
                write!(f, "c=IN {} {}\r\n", ip_kind(&c), c)?;
            }
            for r in &m.rtpmaps {
                write!(f, "a=rtpmap:{} {}/{}", r.payload_type, r.encoding, r.clock_rate)?;
                if let Some(ch) = r.channels {
                    write!(f, "/{ch}")?;
                }
                f.write_str("\r\n")?;
            }
            for (pt, params) in &m.fmtps {
                write!(f, "a=fmtp:{pt} {params}\r\n")?;
            }
            if let Some(p) = m.ptime {
                write!(f, "a=ptime:{p}\r\n")?;
            }
            if m.rtcp_mux {
                f.write_str("a=rtcp-mux\r\n")?;
            }
            for a in &m.attributes {
                write_attr(f, a)?;
            }
            if let Some(d) = m.direction {
                write!(f, "a={}\r\n", d.as_str())?;
            }
        }
        Ok(())
    }
}

fn write_attr(f: &mut fmt::Formatter<'_>, a: &Attribute) -> fmt::Result {
    match &a.value {
        Some(v) => write!(f, "a={}:{}\r\n", a.name, v),
        None => write!(f, "a={}\r\n", a.name),
    }
}

/// `sdp` with its (first) audio stream carried at `at` instead: the
/// session-level `c=` and the audio section's name `at`'s address, its
/// `m=` line `at`'s port, and its `a=rtcp:` line (which would name the old
/// port) is dropped, so RTCP goes to the port after (RFC 3550), where the
/// dataplane relays it. Left as they are: a declined stream (port 0), a
/// held one (`c=` 0.0.0.0), other media sections, codecs, direction and
/// every other attribute. `None` when `sdp` has no audio.
///
/// For an appliance that relays a stream it does not terminate: it moves
/// the stream to its dataplane and leaves the offer/answer to the ends.
pub fn with_media_address(sdp: &[u8], at: std::net::SocketAddr) -> Option<String> {
    #[derive(PartialEq)]
    enum Section {
        Session,
        Audio,
        Other,
    }
    let text = std::str::from_utf8(sdp).ok()?;
    let family = if at.is_ipv4() { "IP4" } else { "IP6" };
    let mut out = String::with_capacity(text.len() + 16);
    let mut section = Section::Session;
    let mut audio_seen = false;
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        // The media kind is the first whitespace-separated field, as
        // `parse_media` reads it (a tab or vertical tab separates too).
        let media = line.strip_prefix("m=").map(|m| (m.split_whitespace().next() == Some("audio"), m));
        if let Some((is_audio, _)) = media {
            section = if is_audio && !audio_seen { Section::Audio } else { Section::Other };
        }
        let ours = section != Section::Other;
        if let (true, Some(value)) = (ours, line.strip_prefix("c=")) {
            let held = parse_connection(value).is_some_and(|ip| ip.is_unspecified());
            if !held {
                out.push_str(&format!("c=IN {family} {}\r\n", at.ip()));
                continue;
            }
        } else if let (Section::Audio, Some((_, value))) = (&section, media) {
            audio_seen = true;
            // Fields split as `parse_media` splits them: the port is the
            // second one, whatever whitespace surrounds it.
            let rest = value.trim_start().strip_prefix("audio")?.trim_start();
            let (port, after) = rest.split_once(char::is_whitespace)?;
            let port = if port.split('/').next() == Some("0") { 0 } else { at.port() };
            out.push_str(&format!("m=audio {port} {}\r\n", after.trim_start()));
            continue;
        } else if ours && line.starts_with("a=rtcp:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    audio_seen.then_some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An offer as sipp's uac scenario sends it (LF line ends, as some carriers do).
    pub(crate) const CARRIER_OFFER: &str = "v=0\n\
o=user1 53655765 2353687637 IN IP4 192.0.2.10\n\
s=-\n\
c=IN IP4 192.0.2.10\n\
t=0 0\n\
m=audio 6000 RTP/AVP 0 8 101\n\
a=rtpmap:0 PCMU/8000\n\
a=rtpmap:8 PCMA/8000\n\
a=rtpmap:101 telephone-event/8000\n\
a=fmtp:101 0-16\n\
a=ptime:20\n\
a=sendrecv\n";

    #[test]
    fn parses_a_carrier_offer() {
        let sdp = SessionDescription::parse(CARRIER_OFFER.as_bytes()).unwrap();
        assert_eq!(sdp.origin.address, "192.0.2.10");
        let audio = sdp.audio().unwrap();
        assert_eq!((audio.port, audio.protocol.as_str()), (6000, "RTP/AVP"));
        assert_eq!(audio.payload_types().collect::<Vec<_>>(), [0, 8, 101]);
        assert_eq!(audio.rtpmap(101).unwrap().encoding, "telephone-event");
        assert_eq!(audio.fmtp(101), Some("0-16"));
        assert_eq!(sdp.media_address(audio), Some("192.0.2.10".parse().unwrap()));
        assert_eq!(sdp.media_direction(audio), Direction::SendRecv);
        assert_eq!(audio.ptime, Some(20));
    }

    #[test]
    fn writes_what_it_reads() {
        let sdp = SessionDescription::parse(CARRIER_OFFER.as_bytes()).unwrap();
        let text = sdp.to_string();
        assert!(text.contains("\r\nm=audio 6000 RTP/AVP 0 8 101\r\n"));
        assert_eq!(SessionDescription::parse(text.as_bytes()).unwrap(), sdp);
    }

    #[test]
    fn old_style_hold_is_inactive() {
        let held = CARRIER_OFFER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0");
        let sdp = SessionDescription::parse(held.as_bytes()).unwrap();
        assert_eq!(sdp.media_direction(sdp.audio().unwrap()), Direction::Inactive);
        let sendonly = CARRIER_OFFER.replace("a=sendrecv", "a=sendonly");
        let sdp = SessionDescription::parse(sendonly.as_bytes()).unwrap();
        assert_eq!(sdp.media_direction(sdp.audio().unwrap()), Direction::SendOnly);
    }

    #[test]
    fn rejects_what_would_break_media() {
        for bad in [
            CARRIER_OFFER.replace("m=audio 6000", "m=audio 70000"),
            CARRIER_OFFER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 not-an-ip"),
            CARRIER_OFFER.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:200 PCMU/8000"),
            CARRIER_OFFER.replace("o=user1 53655765 2353687637 IN IP4 192.0.2.10\n", ""),
            CARRIER_OFFER.replace("v=0", "v=1"),
            "garbage".to_string(),
        ] {
            assert!(SessionDescription::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(SessionDescription::parse(&vec![b'a'; MAX_LEN + 1]).is_err());
    }

    #[test]
    fn never_panics_on_any_bytes() {
        let mut seed = 0x1234_5678u32;
        for len in 0..600 {
            let mut bytes = CARRIER_OFFER.as_bytes().to_vec();
            for _ in 0..(len % 7 + 1) {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let at = (seed as usize >> 8) % bytes.len();
                bytes[at] = (seed >> 16) as u8;
            }
            bytes.truncate(len % bytes.len().max(1));
            let _ = SessionDescription::parse(&bytes);
        }
    }

    #[test]
    fn media_address_moves_connection_and_audio_port_only() {
        let sdp = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtcp:4001\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
        let at: std::net::SocketAddr = "192.0.2.9:20002".parse().unwrap();
        let moved = with_media_address(sdp, at).unwrap();
        let parsed = SessionDescription::parse(moved.as_bytes()).unwrap();
        let audio = parsed.audio().unwrap();
        assert_eq!(parsed.media_address(audio), Some(at.ip()));
        assert_eq!(audio.port, 20002);
        assert!(!moved.contains("a=rtcp:"), "{moved}");
        assert!(moved.contains("a=rtpmap:101 telephone-event/8000\r\n") && moved.contains("a=sendrecv"), "{moved}");
        assert!(moved.starts_with("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n"), "{moved}");
        assert_eq!(with_media_address(b"v=0\r\ns=-\r\n", at), None);

        // Declined, held and other streams stay as they are.
        let mixed = "v=0\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\nm=video 5000 RTP/AVP 96\r\nc=IN IP4 10.0.0.2\r\n";
        let moved = with_media_address(mixed.as_bytes(), at).unwrap();
        assert!(
            moved.contains("m=audio 0 RTP/AVP 0")
                && moved.contains("m=video 5000")
                && moved.contains("c=IN IP4 10.0.0.2"),
            "{moved}"
        );
        let held = "v=0\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\n";
        let moved = with_media_address(held.as_bytes(), at).unwrap();
        assert!(moved.contains("c=IN IP4 0.0.0.0") && moved.contains("m=audio 20002"), "{moved}");
    }

    /// Found by the `sdp` fuzz target: the parser splits an m= line on any
    /// whitespace (here a vertical tab: port 60, protocol `0/2`), the
    /// rewrite split it on spaces only and wrote an m= line without formats.
    #[test]
    fn fuzz_media_address_splits_m_lines_as_the_parser_does() {
        let sdp = b"v=0\no=%- 1 2 IN IP6 400:9\nt=0 0\na=sendonly\nm=audio 60\x0b0/2 R \nc=IN IP4 0.0.0.0\n";
        assert!(SessionDescription::parse(sdp).is_ok());
        let at: std::net::SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let moved = with_media_address(sdp, at).unwrap();
        let parsed = SessionDescription::parse(moved.as_bytes()).unwrap();
        let audio = parsed.audio().unwrap();
        assert_eq!((audio.port, audio.protocol.as_str(), &audio.formats[..]), (40000, "0/2", &["R".to_owned()][..]));
        // A tab after the kind is still the audio section.
        let tabbed = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio\t4000 RTP/AVP 0\r\n";
        assert!(with_media_address(tabbed, at).unwrap().contains("m=audio 40000 RTP/AVP 0\r\n"));
    }
}
