//! Test helper: feeds every truncation of a fixture, mutated copies of it and
//! random garbage to a closure, to show no view accessor panics.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

pub(crate) fn for_each_mutation(fixture: &[u8], mut f: impl FnMut(&[u8])) {
    for n in 0..=fixture.len() {
        f(&fixture[..n]);
    }
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ fixture.len() as u64);
    let mut buf = [0u8; 2048];
    for round in 0..3000 {
        let len = (rng.next() as usize) % (fixture.len() + 24);
        if round % 2 == 0 {
            let n = len.min(fixture.len());
            buf[..n].copy_from_slice(&fixture[..n]);
            for b in &mut buf[n..len] {
                *b = rng.next() as u8;
            }
            for _ in 0..1 + rng.next() % 4 {
                if len > 0 {
                    buf[(rng.next() as usize) % len] = rng.next() as u8;
                }
            }
        } else {
            for b in &mut buf[..len] {
                *b = rng.next() as u8;
            }
        }
        f(&buf[..len]);
    }
}
