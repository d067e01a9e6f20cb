//! DTMF telephone-events in RTP (RFC 4733 section 2.3).

use super::{Error, Field, Result};

mod field {
    use super::Field;

    pub const EVENT: usize = 0;
    pub const E_R_VOLUME: usize = 1;
    pub const DURATION: Field = 2..4;
}

pub const PAYLOAD_LEN: usize = field::DURATION.end;

const FLAG_END: u8 = 0x80;
const FLAG_RESERVED: u8 = 0x40;

/// A view of one 4-byte telephone-event payload block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Ensures 4 bytes; afterwards no getter panics.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PAYLOAD_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn event(&self) -> u8 {
        self.buffer.as_ref()[field::EVENT]
    }

    /// The E bit: this is (a retransmission of) the event's last packet.
    pub fn end_of_event(&self) -> bool {
        self.buffer.as_ref()[field::E_R_VOLUME] & FLAG_END != 0
    }

    pub fn reserved(&self) -> bool {
        self.buffer.as_ref()[field::E_R_VOLUME] & FLAG_RESERVED != 0
    }

    /// Power level in -dBm0, 0..=63.
    pub fn volume(&self) -> u8 {
        self.buffer.as_ref()[field::E_R_VOLUME] & 0x3f
    }

    /// Duration in timestamp units since the event began.
    pub fn duration(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::DURATION.start], b[field::DURATION.start + 1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_event(&mut self, v: u8) {
        self.buffer.as_mut()[field::EVENT] = v;
    }

    fn set_bits(&mut self, mask: u8, bits: u8) {
        let b = &mut self.buffer.as_mut()[field::E_R_VOLUME];
        *b = (*b & !mask) | (bits & mask);
    }

    pub fn set_end_of_event(&mut self, on: bool) {
        self.set_bits(FLAG_END, if on { FLAG_END } else { 0 });
    }

    pub fn set_reserved(&mut self, on: bool) {
        self.set_bits(FLAG_RESERVED, if on { FLAG_RESERVED } else { 0 });
    }

    pub fn set_volume(&mut self, v: u8) {
        self.set_bits(0x3f, v);
    }

    pub fn set_duration(&mut self, v: u16) {
        self.buffer.as_mut()[field::DURATION].copy_from_slice(&v.to_be_bytes());
    }
}

/// A parsed telephone event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub event: u8,
    pub end_of_event: bool,
    pub volume: u8,
    pub duration: u16,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            event: packet.event(),
            end_of_event: packet.end_of_event(),
            volume: packet.volume(),
            duration: packet.duration(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        PAYLOAD_LEN
    }

    /// Writes the block with R clear. Panics on a buffer shorter than 4.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_event(self.event);
        packet.set_end_of_event(self.end_of_event);
        packet.set_reserved(false);
        packet.set_volume(self.volume);
        packet.set_duration(self.duration);
    }
}

/// A DTMF event code (RFC 4733 section 3.2): 0-9, `*`, `#`, A-D.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event(pub u8);

const DTMF_CHARS: &[u8; 16] = b"0123456789*#ABCD";

impl Event {
    pub fn to_char(self) -> Option<char> {
        DTMF_CHARS.get(usize::from(self.0)).map(|&c| char::from(c))
    }

    /// Accepts lower-case a-d too.
    pub fn from_char(c: char) -> Option<Event> {
        let c = c.to_ascii_uppercase();
        DTMF_CHARS.iter().position(|&d| char::from(d) == c).map(|i| Event(i as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Digit 5, end, -10 dBm0, 1280 samples (160 ms at 8 kHz).
    static END_5: [u8; 4] = [0x05, 0x8a, 0x05, 0x00];
    // '*' begins, -7 dBm0, 160 samples.
    static STAR: [u8; 4] = [0x0a, 0x07, 0x00, 0xa0];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&END_5[..]).unwrap();
        assert_eq!(p.event(), 5);
        assert!(p.end_of_event() && !p.reserved());
        assert_eq!((p.volume(), p.duration()), (10, 1280));
        let p = Packet::new_checked(&STAR[..]).unwrap();
        assert_eq!(Event(p.event()).to_char(), Some('*'));
        assert!(!p.end_of_event());
        assert_eq!((p.volume(), p.duration()), (7, 160));
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 4];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_event(5);
        p.set_reserved(false);
        p.set_volume(10);
        p.set_duration(1280);
        assert_eq!(buf, END_5);
    }

    #[test]
    fn parse_and_emit() {
        let repr = Repr { event: 10, end_of_event: false, volume: 7, duration: 160 };
        assert_eq!(Repr::parse(&Packet::new_unchecked(&STAR[..])), Ok(repr));
        let mut buf = [0xffu8; 4];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, STAR);
        assert_eq!(repr.buffer_len(), 4);
    }

    #[test]
    fn events() {
        let all: Vec<char> = (0..16).filter_map(|e| Event(e).to_char()).collect();
        assert_eq!(all.iter().collect::<String>(), "0123456789*#ABCD");
        assert_eq!(Event(16).to_char(), None);
        assert_eq!(Event::from_char('#'), Some(Event(11)));
        assert_eq!(Event::from_char('d'), Some(Event(15)));
        assert_eq!(Event::from_char('E'), None);
    }

    #[test]
    fn truncated() {
        assert_eq!(Packet::new_checked(&END_5[..3]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn no_panic_on_any_input() {
        super::super::testing::for_each_mutation(&END_5, |b| {
            if let Ok(p) = Packet::new_checked(b) {
                let _ = (p.event(), p.end_of_event(), p.reserved(), p.volume(), p.duration());
                let _ = (Repr::parse(&p), Event(p.event()).to_char());
            }
        });
    }
}
