//! SIP over TCP/TLS: `StreamFramer` cutting a byte stream into messages,
//! each frame then judged by `verdict_with` as the stream transport does.
//!
//! Invariant beyond "no panic": the frames (and the first error) do not
//! depend on how the stream was cut into reads: one read of everything and
//! reads of 1 to 16 bytes (the first input byte picks the sizes) agree.
#![no_main]

use controlplane::sip::{verdict_with, BodyFraming, Frame, FramingError, Limits, Policy, StreamFramer};
use libfuzzer_sys::fuzz_target;

/// Small enough that the fuzzer reaches the size limits.
const LIMITS: Limits = Limits { max_message: 2048, max_headers: 32, max_line: 512 };

fn frames(chunks: impl Iterator<Item = Vec<u8>>) -> (Vec<Frame>, Option<FramingError>) {
    let mut framer = StreamFramer::new(LIMITS);
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(&chunk);
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => out.push(frame),
                Ok(None) => break,
                // The transport closes the connection on any error.
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stream)) = data.split_first() else { return };
    let whole = frames(std::iter::once(stream.to_vec()));
    let sizes = [1 + usize::from(pick & 0x0f), 1 + usize::from(pick >> 4)];
    let mut at = 0;
    let chunked = frames(sizes.iter().cycle().map_while(|&n| {
        let end = (at + n).min(stream.len());
        let chunk = stream.get(at..end).filter(|c| !c.is_empty())?.to_vec();
        at = end;
        Some(chunk)
    }));
    assert_eq!(whole, chunked, "framing depends on how the stream was read");
    let policy = Policy { framing: BodyFraming::Stream, limits: LIMITS, ..Policy::default() };
    for frame in whole.0 {
        if let Frame::Message(bytes) = frame {
            assert!(bytes.len() <= LIMITS.max_message);
            let _ = verdict_with(bytes, &policy);
        }
    }
});
