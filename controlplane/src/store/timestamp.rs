//! Points in time as the store keeps them: UTC milliseconds since the Unix
//! epoch (an `INTEGER` column, ordered and indexable), formatted for the REST
//! API the way Twilio formats dates (RFC 2822, `Wed, 18 Aug 2010 20:01:40
//! +0000`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    pub const fn from_unix_ms(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// Whole seconds from `self` to `later` (0 if `later` is earlier), as
    /// Twilio counts a call's `Duration`.
    pub fn seconds_until(self, later: Timestamp) -> u32 {
        u32::try_from((later.0 - self.0).max(0) / 1000).unwrap_or(u32::MAX)
    }

    /// `Wed, 18 Aug 2010 20:01:40 +0000`: the date format of Twilio's JSON.
    pub fn rfc2822(self) -> impl fmt::Display {
        Rfc2822(self)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        let ms = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Timestamp(ms)
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> SystemTime {
        if t.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(t.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(t.0.unsigned_abs())
        }
    }
}

struct Rfc2822(Timestamp);

impl fmt::Display for Rfc2822 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let secs = self.0 .0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400);
        let (year, month, day) = civil_date(days);
        write!(
            f,
            "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
            // 1970-01-01 was a Thursday.
            DAYS[days.rem_euclid(7) as usize],
            day,
            MONTHS[(month - 1) as usize],
            year,
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        )
    }
}

/// The proleptic Gregorian (year, month 1-12, day 1-31) of a day number
/// counted from 1970-01-01. Works in 400-year eras of 146,097 days, with
/// years starting on 1 March so that the leap day falls at the end.
fn civil_date(days_since_epoch: i64) -> (i64, i64, i64) {
    // 719,468 days from 0000-03-01 to 1970-01-01.
    let z = days_since_epoch + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_twilio() {
        let t = Timestamp::from_unix_ms(1_282_161_700_000);
        assert_eq!(t.rfc2822().to_string(), "Wed, 18 Aug 2010 20:01:40 +0000");
        assert_eq!(Timestamp::from_unix_ms(0).rfc2822().to_string(), "Thu, 01 Jan 1970 00:00:00 +0000");
        // A leap day and the day after it.
        assert_eq!(Timestamp::from_unix_ms(951_782_400_000).rfc2822().to_string(), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(Timestamp::from_unix_ms(951_868_799_999).rfc2822().to_string(), "Tue, 29 Feb 2000 23:59:59 +0000");
        assert_eq!(Timestamp::from_unix_ms(1_709_251_200_000).rfc2822().to_string(), "Fri, 01 Mar 2024 00:00:00 +0000");
        assert_eq!(Timestamp::from_unix_ms(-1000).rfc2822().to_string(), "Wed, 31 Dec 1969 23:59:59 +0000");
    }

    #[test]
    fn converts_to_and_from_system_time() {
        let now = SystemTime::now();
        let t = Timestamp::from(now);
        let back = SystemTime::from(t);
        assert!(now.duration_since(back).unwrap() < Duration::from_millis(1));
        assert_eq!(Timestamp::from_unix_ms(1_000).seconds_until(Timestamp::from_unix_ms(62_999)), 61);
        assert_eq!(Timestamp::from_unix_ms(5_000).seconds_until(Timestamp::from_unix_ms(1_000)), 0);
    }
}
