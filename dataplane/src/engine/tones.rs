//! DTMF the appliance plays itself: RFC 4733 telephone-events put into the
//! stream a leg sends its peer (a client's `dtmf` message, a dialled
//! number's digits), numbered as part of that stream (its rewrite state
//! gives the SSRC and the next sequence number; relayed audio shifts after
//! them).
//!
//! Each digit: five packets 20 ms apart with the event's duration growing
//! by 20 ms (the first one marked), then three end packets (`E` set) with
//! the final 100 ms duration, then 100 ms of silence before the next digit.
//! A pause (`w`) is 500 ms. Volume 10 (-10 dBm0).

use super::Now;
use crate::session::table::{SessionTable, TableError};
use crate::session::{LocalEndpoint, SessionId};
use std::net::SocketAddr;

/// The event code of a pause (`w`): no packets for [`PAUSE_US`].
pub const PAUSE: u8 = 0xff;
/// Digit sequences playing at once on one worker.
pub const MAX_PLAYING: usize = 1024;
const STEP_US: u64 = 20_000;
const STEPS: u16 = 5;
const END_PACKETS: usize = 3;
const GAP_US: u64 = 100_000;
const PAUSE_US: u64 = 500_000;
const VOLUME: u8 = 10;
/// RTP header and the 4-byte event.
pub const PACKET_LEN: usize = 16;

/// The RFC 4733 event code of a DTMF character, [`PAUSE`] for `w`.
pub fn event_code(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(c as u8 - b'A' + 12),
        'a'..='d' => Some(c as u8 - b'a' + 12),
        'w' | 'W' => Some(PAUSE),
        _ => None,
    }
}

struct Playing {
    id: SessionId,
    side: usize,
    events: Vec<u8>,
    pt: u8,
    /// The event being played.
    next: usize,
    /// Packets of it sent so far (0 before it starts).
    step: u16,
    /// Its RTP timestamp (the stream's newest when it started).
    timestamp: u32,
    due_us: u64,
}

/// A packet to send: out of `from`, to `to`.
pub struct Originated {
    pub from: LocalEndpoint,
    pub to: SocketAddr,
    pub packet: [u8; PACKET_LEN],
}

#[derive(Default)]
pub struct Tones {
    playing: Vec<Playing>,
}

impl Tones {
    pub fn start(&mut self, now: Now, id: SessionId, side: usize, events: Vec<u8>, pt: u8) -> Result<(), TableError> {
        if self.playing.len() >= MAX_PLAYING {
            return Err(TableError::TonesFull);
        }
        self.playing.push(Playing { id, side, events, pt, next: 0, step: 0, timestamp: 0, due_us: now.us });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.playing.is_empty()
    }

    /// Sends what is due by `now` through `send`; forgets sequences that
    /// ended or whose session is gone.
    pub fn play(&mut self, now: Now, table: &mut SessionTable, mut send: impl FnMut(Originated)) {
        self.playing.retain_mut(|p| {
            while p.due_us <= now.us {
                let Some(&event) = p.events.get(p.next) else { return false };
                if event == PAUSE {
                    p.next += 1;
                    p.due_us += PAUSE_US;
                    continue;
                }
                let Ok(leg) = table.originating_leg(p.id, p.side) else { return false };
                let (from, clock) = (leg.local, leg.clock_rate.max(1000));
                let Some(rewrite) = leg.rewrite.as_mut() else { return false };
                let per_step = clock / 1000 * 20;
                let to = leg.remote.get();
                if p.step == 0 {
                    p.timestamp = rewrite.originate_timestamp(per_step);
                }
                let (count, end) = if p.step < STEPS { (1, false) } else { (END_PACKETS, true) };
                let duration = u32::from(p.step.min(STEPS - 1) + 1) * per_step;
                for _ in 0..count {
                    let (ssrc, seq, _) = rewrite.originate();
                    if let Some(to) = to {
                        let packet = event_packet(p.pt, p.step == 0, seq, p.timestamp, ssrc, event, end, duration);
                        send(Originated { from, to, packet });
                    }
                }
                if end {
                    p.step = 0;
                    p.next += 1;
                    p.due_us += GAP_US;
                } else {
                    p.step += 1;
                    p.due_us += STEP_US;
                }
            }
            true
        });
    }
}

#[allow(clippy::too_many_arguments)]
fn event_packet(
    pt: u8,
    marker: bool,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    event: u8,
    end: bool,
    duration: u32,
) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = 0x80;
    p[1] = (u8::from(marker) << 7) | (pt & 0x7f);
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&timestamp.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p[12] = event;
    p[13] = (u8::from(end) << 7) | VOLUME;
    p[14..16].copy_from_slice(&(duration.min(u32::from(u16::MAX)) as u16).to_be_bytes());
    p
}
