//! Keeps the stream sent out of a leg one continuous RTP stream (one SSRC,
//! sequence numbers and timestamps without jumps) when what feeds it changes:
//! a transfer, a re-INVITE to another party, a new media source.

/// Timestamp step assumed between the last packet of the old source and the
/// first of the new one: one 20 ms frame. The exact gap is unknowable; a
/// receiver's jitter buffer absorbs one frame of error.
const FRAME_MS: u32 = 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamRewrite {
    out_ssrc: u32,
    in_ssrc: Option<u32>,
    seq_delta: u16,
    ts_delta: u32,
    last_out_seq: u16,
    last_out_ts: u32,
    /// The appliance put packets of its own in the stream before any
    /// source: the first source continues after them.
    originated: bool,
}

impl StreamRewrite {
    pub fn new(out_ssrc: u32) -> Self {
        StreamRewrite { out_ssrc, ..Default::default() }
    }

    pub fn out_ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// Maps one packet's (ssrc, seq, timestamp) to the values sent.
    #[inline]
    pub fn apply(&mut self, ssrc: u32, seq: u16, ts: u32, clock_rate: u32) -> (u32, u16, u32) {
        let first = self.in_ssrc.is_none();
        match self.in_ssrc {
            Some(current) if current == ssrc => {}
            Some(_) => {
                // A new source: continue right after the last packet sent.
                self.seq_delta = self.last_out_seq.wrapping_add(1).wrapping_sub(seq);
                let step = clock_rate / 1000 * FRAME_MS;
                self.ts_delta = self.last_out_ts.wrapping_add(step).wrapping_sub(ts);
                self.in_ssrc = Some(ssrc);
            }
            None if self.originated => {
                // After packets of our own (DTMF before any relayed one): continue after them.
                self.seq_delta = self.last_out_seq.wrapping_add(1).wrapping_sub(seq);
                let step = clock_rate / 1000 * FRAME_MS;
                self.ts_delta = self.last_out_ts.wrapping_add(step).wrapping_sub(ts);
                self.in_ssrc = Some(ssrc);
            }
            None => {
                // The first source keeps its own numbering.
                self.in_ssrc = Some(ssrc);
            }
        }
        let out_seq = seq.wrapping_add(self.seq_delta);
        let out_ts = ts.wrapping_add(self.ts_delta);
        // Track the newest packet sent; a reordered older one must not pull it back.
        if first || (out_seq.wrapping_sub(self.last_out_seq) as i16) > 0 {
            self.last_out_seq = out_seq;
            self.last_out_ts = out_ts;
        }
        (self.out_ssrc, out_seq, out_ts)
    }

    /// Numbers a packet the appliance itself puts in this stream (an RFC
    /// 4733 event): the SSRC, the next sequence number (relayed packets
    /// shift by one after it, so the numbering stays gapless) and the
    /// timestamp of the newest packet sent.
    pub fn originate(&mut self) -> (u32, u16, u32) {
        let seq = self.last_out_seq.wrapping_add(1);
        self.seq_delta = self.seq_delta.wrapping_add(1);
        self.last_out_seq = seq;
        self.originated = true;
        (self.out_ssrc, seq, self.last_out_ts)
    }

    /// The timestamp for an event the appliance starts now: one frame
    /// (`step`) after the newest packet sent.
    pub fn originate_timestamp(&self, step: u32) -> u32 {
        self.last_out_ts.wrapping_add(step)
    }

    /// The SSRC this stream's RTCP should carry for a packet from `ssrc`.
    pub fn map_rtcp_ssrc(&self, ssrc: u32) -> Option<u32> {
        (self.in_ssrc == Some(ssrc)).then_some(self.out_ssrc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_source_keeps_numbers_but_gets_new_ssrc() {
        let mut r = StreamRewrite::new(0xAAAA_0001);
        assert_eq!(r.apply(0x1234, 100, 16000, 8000), (0xAAAA_0001, 100, 16000));
        assert_eq!(r.apply(0x1234, 101, 16160, 8000), (0xAAAA_0001, 101, 16160));
    }

    #[test]
    fn new_source_continues_the_stream() {
        let mut r = StreamRewrite::new(7);
        r.apply(1, 100, 16000, 8000);
        r.apply(1, 101, 16160, 8000);
        // The other side changes: a different SSRC with unrelated numbering.
        assert_eq!(r.apply(2, 5000, 999_999, 8000), (7, 102, 16320));
        assert_eq!(r.apply(2, 5001, 1_000_159, 8000), (7, 103, 16480));
    }

    #[test]
    fn reordered_packet_does_not_rewind_continuation_point() {
        let mut r = StreamRewrite::new(7);
        r.apply(1, 10, 1600, 8000);
        r.apply(1, 12, 1920, 8000);
        r.apply(1, 11, 1760, 8000);
        assert_eq!(r.apply(2, 0, 0, 8000), (7, 13, 1920 + 160));
    }

    #[test]
    fn wraps_around() {
        let mut r = StreamRewrite::new(7);
        r.apply(1, 65535, u32::MAX - 10, 8000);
        assert_eq!(r.apply(2, 40, 40, 8000), (7, 0, (u32::MAX - 10).wrapping_add(160)));
    }
}
