//! SDP: `SessionDescription::parse`, the offer/answer checks of
//! `sdp::negotiate`, and `sdp::with_media_address` (the relay rewrite).
//!
//! Invariants beyond "no panic":
//! - a parsed description, printed, parses again to the same description;
//! - the answer we would build for an acceptable offer is itself acceptable;
//! - `with_media_address` output parses when its input did, and its first
//!   audio stream is where we said (unless declined or held).
#![no_main]

use std::net::SocketAddr;

use controlplane::sdp::negotiate::{accept_offer, answer_codecs, payload_type_map, LocalSdp};
use controlplane::sdp::{with_media_address, SessionDescription, MAX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = SessionDescription::parse(data) else {
        // Whatever the rewrite makes of bytes we refuse does not matter,
        // but it must not panic either.
        let _ = with_media_address(data, SocketAddr::from(([203, 0, 113, 7], 40_000)));
        return;
    };
    for m in &sdp.media {
        let _ = (m.payload_types().count(), m.is_plain_rtp(), sdp.media_direction(m));
        for pt in m.payload_types() {
            let _ = (m.rtpmap(pt), m.fmtp(pt));
        }
    }

    let printed = sdp.to_string();
    if printed.len() <= MAX_LEN {
        match SessionDescription::parse(printed.as_bytes()) {
            Ok(again) => assert_eq!(again, sdp, "printing changed the description:\n{printed}"),
            Err(e) => panic!("our printing of a parsed SDP does not parse: {e}\n{printed}"),
        }
    }

    if let Ok(offer) = accept_offer(&sdp) {
        let _ = payload_type_map(&offer, &offer);
        if let Ok(codecs) = answer_codecs(&offer, &offer) {
            let mut local = LocalSdp::new(7, [198, 51, 100, 1].into());
            let answer = local.describe(40_000, &codecs, offer.direction.reversed(), offer.ptime);
            let text = answer.to_string();
            let back = SessionDescription::parse(text.as_bytes()).expect("our answer parses");
            assert!(accept_offer(&back).is_ok(), "our own answer is not acceptable:\n{text}");
        }
    }

    for at in [SocketAddr::from(([203, 0, 113, 7], 40_000)), "[2001:db8::7]:40002".parse().expect("literal")] {
        let Some(out) = with_media_address(data, at) else { continue };
        if out.len() > MAX_LEN {
            continue;
        }
        let moved = match SessionDescription::parse(out.as_bytes()) {
            Ok(moved) => moved,
            Err(e) => panic!("with_media_address made an SDP that does not parse: {e}\n{out}"),
        };
        assert_eq!(moved.media.len(), sdp.media.len());
        let (Some(before), Some(after)) = (sdp.audio(), moved.audio()) else {
            panic!("with_media_address lost the audio stream:\n{out}");
        };
        if before.port != 0 {
            assert_eq!(after.port, at.port(), "audio port not moved:\n{out}");
        }
        let held = sdp.media_address(before).is_some_and(|ip| ip.is_unspecified());
        if !held && sdp.media_address(before).is_some() {
            assert_eq!(moved.media_address(after), Some(at.ip()), "audio address not moved:\n{out}");
        }
    }
});
