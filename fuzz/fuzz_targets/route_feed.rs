//! The route feed's receiving side: groups of route changes (and snapshot
//! parts) as a peer's relay, repair or snapshot would carry them, applied
//! to an appliance's index.
//!
//! Input: a relay/repair body (`tag u32, first, count, length, changes` per
//! group), also read as a run of snapshot parts (`seq, device, part,
//! parts, length, changes`).
//!
//! Invariants beyond "no panic": after every change the index's counts
//! agree with the devices it holds (checked inside `fuzz_receive`).
#![no_main]

use controlplane::routes::gossip::fuzz_receive;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzz_receive(data);
});
