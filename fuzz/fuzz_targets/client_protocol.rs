//! Client (Voice JS SDK) frames: `client::protocol::parse`, then what the
//! client session does with a call's fields: the custom parameters decoded,
//! the SDP parsed.
//!
//! Invariants beyond "no panic": a frame above `MAX_FRAME` is refused as
//! too large; decoded custom parameters, encoded and decoded again, are the
//! same.
#![no_main]

use controlplane::client::protocol::{decode_params, encode_params, parse, ClientMessage, ProtocolError, MAX_FRAME};
use controlplane::sdp::SessionDescription;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = parse(text);
    if text.len() > MAX_FRAME {
        assert_eq!(parsed, Err(ProtocolError::TooLarge));
    }
    let Ok(message) = parsed else { return };
    let _ = message.kind();
    match message {
        ClientMessage::Invite { params, sdp, .. } => {
            let decoded = decode_params(&params);
            assert_eq!(decode_params(&encode_params(&decoded)), decoded);
            let _ = SessionDescription::parse(sdp.as_bytes());
        }
        ClientMessage::Answer { sdp, .. } | ClientMessage::Reinvite { sdp, .. } => {
            let _ = SessionDescription::parse(sdp.as_bytes());
        }
        _ => {}
    }
});
