//! RFC 3550 receive statistics of one stream: extended highest sequence number,
//! cumulative loss (appendix A.3) and interarrival jitter (appendix A.8).

const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: u32 = 1 << 16;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    started: bool,
    max_seq: u16,
    /// Sequence number wrap-arounds, shifted by 16 (as in RFC 3550 A.1).
    cycles: u32,
    base_seq: u32,
    /// The sequence number after which a large jump is taken as a restart.
    bad_seq: u32,
    received: u32,
    /// Relative transit time of the previous packet, in RTP timestamp units.
    transit: u32,
    /// Jitter estimate scaled by 16 (A.8).
    jitter: u32,
}

impl ReceiveStats {
    /// Accounts one packet. `arrival` is the arrival time in the stream's RTP
    /// timestamp units (any origin: only differences matter).
    #[inline]
    pub fn update(&mut self, seq: u16, timestamp: u32, arrival: u32) {
        if !self.started {
            self.restart(seq);
            self.started = true;
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(SEQ_MOD);
                }
                self.max_seq = seq;
            } else if delta <= u16::MAX - MAX_MISORDER {
                // A very large jump: the source restarted, unless it is the
                // first of two sequential packets after the jump.
                if u32::from(seq) == self.bad_seq {
                    self.restart(seq);
                } else {
                    self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
                    return;
                }
            }
            // else: duplicate or reordered packet; counted, max unchanged.
        }
        self.received = self.received.wrapping_add(1);

        let transit = arrival.wrapping_sub(timestamp);
        if self.received > 1 {
            let d = transit.wrapping_sub(self.transit) as i32;
            let d = d.unsigned_abs();
            // J += (|D| - J) / 16, in the scaled form of A.8.
            self.jitter = self.jitter.wrapping_add(d).wrapping_sub((self.jitter.wrapping_add(8)) >> 4);
        }
        self.transit = transit;
    }

    fn restart(&mut self, seq: u16) {
        self.max_seq = seq;
        self.cycles = 0;
        self.base_seq = u32::from(seq);
        self.bad_seq = SEQ_MOD + 1;
        self.received = 0;
    }

    pub fn extended_max_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    pub fn expected(&self) -> u32 {
        if !self.started {
            return 0;
        }
        self.extended_max_seq().wrapping_sub(self.base_seq).wrapping_add(1)
    }

    pub fn received(&self) -> u32 {
        self.received
    }

    /// Cumulative packets lost; negative when duplicates outnumber losses.
    pub fn lost(&self) -> i64 {
        i64::from(self.expected()) - i64::from(self.received)
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter >> 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(stats: &mut ReceiveStats, seqs: &[u16]) {
        for &s in seqs {
            // Perfectly paced 20 ms G.711 frames: zero jitter.
            let ts = u32::from(s) * 160;
            stats.update(s, ts, ts + 1000);
        }
    }

    #[test]
    fn no_loss_in_order() {
        let mut s = ReceiveStats::default();
        feed(&mut s, &[10, 11, 12, 13]);
        assert_eq!(s.expected(), 4);
        assert_eq!(s.lost(), 0);
        assert_eq!(s.jitter(), 0);
    }

    #[test]
    fn counts_gaps_as_loss() {
        let mut s = ReceiveStats::default();
        feed(&mut s, &[1, 2, 5, 6, 9]);
        assert_eq!(s.expected(), 9);
        assert_eq!(s.received(), 5);
        assert_eq!(s.lost(), 4);
    }

    #[test]
    fn wraps_sequence_numbers() {
        let mut s = ReceiveStats::default();
        feed(&mut s, &[65534, 65535, 0, 1]);
        assert_eq!(s.extended_max_seq(), 65536 + 1);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn reordered_packet_is_not_loss() {
        let mut s = ReceiveStats::default();
        feed(&mut s, &[1, 3, 2, 4]);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn restart_after_two_sequential_packets_past_a_jump() {
        let mut s = ReceiveStats::default();
        feed(&mut s, &[100, 101, 30000, 30001, 30002]);
        assert_eq!(s.lost(), 0);
        assert_eq!(s.extended_max_seq(), 30002);
    }

    #[test]
    fn jitter_follows_rfc3550_estimator() {
        let mut s = ReceiveStats::default();
        // Every packet 80 units (10 ms) late relative to the one before it,
        // alternating: |D| = 80 for each pair.
        for i in 0..200u32 {
            let ts = i * 160;
            let arrival = ts + if i % 2 == 0 { 0 } else { 80 };
            s.update(i as u16, ts, arrival);
        }
        // J converges to |D| = 80.
        assert!((75..=80).contains(&s.jitter()), "jitter {}", s.jitter());
    }
}
