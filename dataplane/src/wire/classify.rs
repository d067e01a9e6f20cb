//! First-byte demultiplexing of a media port (RFC 7983, with RFC 5761 for
//! RTP versus RTCP): one UDP socket carries STUN, DTLS, TURN and RTP/RTCP.

use super::rtcp::is_rtcp_packet_type;

/// What a datagram on a media port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Stun,
    ZrtpOrOther,
    Dtls,
    Turn,
    Rtp,
    Rtcp,
    Unknown,
}

/// Classifies by the first byte (and the second, for RTP versus RTCP). A
/// one-byte datagram in the RTP range is `Unknown`: it cannot be either.
pub fn classify(payload: &[u8]) -> Kind {
    match payload {
        [] => Kind::Unknown,
        [0..=3, ..] => Kind::Stun,
        [16..=19, ..] => Kind::ZrtpOrOther,
        [20..=63, ..] => Kind::Dtls,
        [64..=79, ..] => Kind::Turn,
        [128..=191, pt, ..] if is_rtcp_packet_type(*pt) => Kind::Rtcp,
        [128..=191, _, ..] => Kind::Rtp,
        _ => Kind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_edges() {
        let cases: &[(u8, Kind)] = &[
            (0, Kind::Stun),
            (3, Kind::Stun),
            (4, Kind::Unknown),
            (15, Kind::Unknown),
            (16, Kind::ZrtpOrOther),
            (19, Kind::ZrtpOrOther),
            (20, Kind::Dtls),
            (63, Kind::Dtls),
            (64, Kind::Turn),
            (79, Kind::Turn),
            (80, Kind::Unknown),
            (127, Kind::Unknown),
            (128, Kind::Rtp),
            (191, Kind::Rtp),
            (192, Kind::Unknown),
            (255, Kind::Unknown),
        ];
        for &(first, kind) in cases {
            assert_eq!(classify(&[first, 0x00, 0x00, 0x00]), kind, "first byte {first}");
        }
    }

    #[test]
    fn rtp_versus_rtcp() {
        assert_eq!(classify(&[0x80, 0x00]), Kind::Rtp);
        assert_eq!(classify(&[0x80, 0xe0]), Kind::Rtp); // marker + PT 96
        assert_eq!(classify(&[0x80, 191]), Kind::Rtp);
        assert_eq!(classify(&[0x80, 192]), Kind::Rtcp);
        assert_eq!(classify(&[0x81, 0xc8]), Kind::Rtcp); // SR
        assert_eq!(classify(&[0x80, 223]), Kind::Rtcp);
        assert_eq!(classify(&[0x80, 224]), Kind::Rtp);
        assert_eq!(classify(&[0x80]), Kind::Unknown);
        assert_eq!(classify(&[]), Kind::Unknown);
    }

    #[test]
    fn captured_first_bytes() {
        // STUN binding request, DTLS ClientHello record, TURN ChannelData.
        assert_eq!(classify(&[0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42]), Kind::Stun);
        assert_eq!(classify(&[0x16, 0xfe, 0xfd, 0x00, 0x00]), Kind::Dtls);
        assert_eq!(classify(&[0x40, 0x00, 0x00, 0x0c]), Kind::Turn);
    }
}
