//! Offer/answer (RFC 3264) for the codecs the relay carries unchanged:
//! G.711 µ-law and A-law and RFC 4733 telephone-events. The B2BUA forwards
//! one leg's offer to the other leg (with its own address), answers the
//! first leg with what the second accepted, and gives the dataplane the
//! payload-type map between the two when their numbers differ.

use super::{Direction, Media, Origin, RtpMap, SessionDescription};
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
    TelephoneEvent,
}

impl Codec {
    pub const ALL: [Codec; 3] = [Codec::Pcmu, Codec::Pcma, Codec::TelephoneEvent];

    pub fn encoding(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::TelephoneEvent => "telephone-event",
        }
    }

    pub fn clock_rate(self) -> u32 {
        8000
    }

    /// RFC 3551's static payload type, if the codec has one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::TelephoneEvent => None,
        }
    }

    fn of(media: &Media, pt: u8) -> Option<Codec> {
        match media.rtpmap(pt) {
            Some(map) => Codec::ALL.into_iter().find(|c| {
                map.encoding.eq_ignore_ascii_case(c.encoding())
                    && map.clock_rate == c.clock_rate()
                    && map.channels.unwrap_or(1) == 1
            }),
            None => Codec::ALL.into_iter().find(|c| c.static_payload_type() == Some(pt)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("no audio stream in the SDP")]
    NoAudio,
    #[error("media protocol {0} is not supported (plain RTP/AVP only)")]
    Protocol(String),
    #[error("no common audio codec (supported: PCMU, PCMA)")]
    NoCommonCodec,
    #[error("the SDP has no connection address for its audio")]
    NoAddress,
}

impl NegotiationError {
    /// The SIP status that refuses an offer for this reason.
    pub fn status(&self) -> u16 {
        488
    }
}

/// What one side of a leg said about its media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegMedia {
    /// Where that side receives RTP; `None` when it put the stream on hold
    /// with a zero address or port.
    pub remote: Option<SocketAddr>,
    pub direction: Direction,
    /// Supported codecs in that side's order of preference, with its payload types.
    pub codecs: Vec<(Codec, u8)>,
    pub rtcp_mux: bool,
    pub ptime: Option<u32>,
}

impl LegMedia {
    pub fn payload_type(&self, codec: Codec) -> Option<u8> {
        self.codecs.iter().find(|(c, _)| *c == codec).map(|&(_, pt)| pt)
    }

    fn has_audio_codec(&self) -> bool {
        self.codecs.iter().any(|(c, _)| *c != Codec::TelephoneEvent)
    }

    /// Reads the audio of an offer or answer, keeping the codecs we relay.
    pub fn from_sdp(sdp: &SessionDescription) -> Result<LegMedia, NegotiationError> {
        let audio = sdp.audio().ok_or(NegotiationError::NoAudio)?;
        if !audio.is_plain_rtp() {
            return Err(NegotiationError::Protocol(audio.protocol.clone()));
        }
        let mut codecs: Vec<(Codec, u8)> = Vec::new();
        for pt in audio.payload_types() {
            if let Some(codec) = Codec::of(audio, pt) {
                if !codecs.iter().any(|(c, _)| *c == codec) {
                    codecs.push((codec, pt));
                }
            }
        }
        let address = sdp.media_address(audio).ok_or(NegotiationError::NoAddress)?;
        let remote = (audio.port != 0 && !address.is_unspecified()).then(|| SocketAddr::new(address, audio.port));
        Ok(LegMedia {
            remote,
            direction: sdp.media_direction(audio),
            codecs,
            rtcp_mux: audio.rtcp_mux,
            ptime: audio.ptime,
        })
    }
}

/// Our side of one leg's SDP: the origin line's session and version, which
/// must stay the same session and grow by one with each new description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSdp {
    pub session_id: u64,
    pub version: u64,
    pub address: IpAddr,
}

impl LocalSdp {
    pub fn new(session_id: u64, address: IpAddr) -> Self {
        LocalSdp { session_id, version: session_id, address }
    }

    /// Writes a description of our media: `port` on our address, `codecs`
    /// with their payload types, in that order.
    pub fn describe(
        &mut self,
        port: u16,
        codecs: &[(Codec, u8)],
        direction: Direction,
        ptime: Option<u32>,
    ) -> SessionDescription {
        self.version += 1;
        let mut media = Media {
            kind: "audio".into(),
            port,
            port_count: None,
            protocol: "RTP/AVP".into(),
            formats: codecs.iter().map(|(_, pt)| pt.to_string()).collect(),
            connection: None,
            rtpmaps: codecs
                .iter()
                .map(|&(c, pt)| RtpMap {
                    payload_type: pt,
                    encoding: c.encoding().into(),
                    clock_rate: c.clock_rate(),
                    channels: None,
                })
                .collect(),
            fmtps: Vec::new(),
            direction: Some(direction),
            rtcp_mux: false,
            ptime,
            attributes: Vec::new(),
        };
        if let Some(&(_, pt)) = codecs.iter().find(|(c, _)| *c == Codec::TelephoneEvent) {
            media.fmtps.push((pt, "0-16".into()));
        }
        SessionDescription {
            origin: Origin {
                username: "bridgehead".into(),
                session_id: self.session_id.to_string(),
                session_version: self.version,
                address: self.address.to_string(),
            },
            session_name: "bridgehead".into(),
            connection: Some(self.address),
            direction: None,
            attributes: Vec::new(),
            media: vec![media],
        }
    }
}

/// Checks an offer can be served: plain RTP and at least one audio codec we relay.
pub fn accept_offer(offer: &SessionDescription) -> Result<LegMedia, NegotiationError> {
    let media = LegMedia::from_sdp(offer)?;
    if !media.has_audio_codec() {
        return Err(NegotiationError::NoCommonCodec);
    }
    Ok(media)
}

/// The codecs to answer an offer with, given what the other leg accepted:
/// the offer's order and payload types, restricted to the accepted codecs.
pub fn answer_codecs(offered: &LegMedia, accepted: &LegMedia) -> Result<Vec<(Codec, u8)>, NegotiationError> {
    let codecs: Vec<(Codec, u8)> =
        offered.codecs.iter().copied().filter(|(c, _)| accepted.payload_type(*c).is_some()).collect();
    if !codecs.iter().any(|(c, _)| *c != Codec::TelephoneEvent) {
        return Err(NegotiationError::NoCommonCodec);
    }
    Ok(codecs)
}

/// Payload-type renumbering for RTP received from `from` and sent to `to`:
/// pairs only where the two sides use different numbers for one codec.
pub fn payload_type_map(from: &LegMedia, to: &LegMedia) -> Vec<(u8, u8)> {
    from.codecs
        .iter()
        .filter_map(|&(codec, pt)| to.payload_type(codec).filter(|&out| out != pt).map(|out| (pt, out)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::tests::CARRIER_OFFER;

    fn sdp(text: &str) -> SessionDescription {
        SessionDescription::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn reads_offered_codecs_in_order() {
        let offer = accept_offer(&sdp(CARRIER_OFFER)).unwrap();
        assert_eq!(offer.codecs, [(Codec::Pcmu, 0), (Codec::Pcma, 8), (Codec::TelephoneEvent, 101)]);
        assert_eq!(offer.remote, Some("192.0.2.10:6000".parse().unwrap()));
    }

    #[test]
    fn static_payload_types_need_no_rtpmap() {
        let bare =
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0\r\n";
        assert_eq!(accept_offer(&sdp(bare)).unwrap().codecs, [(Codec::Pcma, 8), (Codec::Pcmu, 0)]);
    }

    #[test]
    fn refuses_what_the_relay_cannot_serve() {
        let opus_only = CARRIER_OFFER
            .replace("m=audio 6000 RTP/AVP 0 8 101", "m=audio 6000 RTP/AVP 111 101")
            .replace("a=rtpmap:0 PCMU/8000\n", "a=rtpmap:111 opus/48000/2\n");
        assert_eq!(accept_offer(&sdp(&opus_only)), Err(NegotiationError::NoCommonCodec));
        let webrtc = CARRIER_OFFER.replace("RTP/AVP", "UDP/TLS/RTP/SAVPF");
        assert_eq!(accept_offer(&sdp(&webrtc)), Err(NegotiationError::Protocol("UDP/TLS/RTP/SAVPF".into())));
        let video_only = CARRIER_OFFER.replace("m=audio", "m=video");
        assert_eq!(accept_offer(&sdp(&video_only)), Err(NegotiationError::NoAudio));
    }

    #[test]
    fn answer_follows_the_offer_and_maps_payload_types() {
        let a = accept_offer(&sdp(CARRIER_OFFER)).unwrap();
        // The far side accepts PCMA and numbers telephone-event 96.
        let b_answer = CARRIER_OFFER
            .replace("m=audio 6000 RTP/AVP 0 8 101", "m=audio 7000 RTP/AVP 8 96")
            .replace("a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16", "a=rtpmap:96 telephone-event/8000");
        let b = LegMedia::from_sdp(&sdp(&b_answer)).unwrap();
        assert_eq!(answer_codecs(&a, &b).unwrap(), [(Codec::Pcma, 8), (Codec::TelephoneEvent, 101)]);
        assert_eq!(payload_type_map(&a, &b), [(101, 96)]);
        assert_eq!(payload_type_map(&b, &a), [(96, 101)]);
    }

    #[test]
    fn our_descriptions_carry_our_address_and_grow_their_version() {
        let mut local = LocalSdp::new(4242, "203.0.113.1".parse().unwrap());
        let first =
            local.describe(20000, &[(Codec::Pcmu, 0), (Codec::TelephoneEvent, 101)], Direction::SendRecv, Some(20));
        let text = first.to_string();
        assert!(text.contains("c=IN IP4 203.0.113.1\r\n"), "{text}");
        assert!(text.contains("m=audio 20000 RTP/AVP 0 101\r\n"), "{text}");
        assert!(text.contains("a=fmtp:101 0-16\r\n"), "{text}");
        let second = local.describe(20000, &[(Codec::Pcmu, 0)], Direction::SendOnly, None);
        assert_eq!(second.origin.session_id, first.origin.session_id);
        assert_eq!(second.origin.session_version, first.origin.session_version + 1);
        // What we write, we read back the same.
        let back = LegMedia::from_sdp(&SessionDescription::parse(second.to_string().as_bytes()).unwrap()).unwrap();
        assert_eq!((back.direction, back.codecs), (Direction::SendOnly, vec![(Codec::Pcmu, 0)]));
    }
}
