//! Phone numbers: an E.164 number owned by an account, pointing at the
//! application that answers calls to it.

use super::sid::{AccountSid, ApplicationSid, PhoneNumberSid};
use super::timestamp::Timestamp;
use super::{check_text, StoreError};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber {
    pub sid: PhoneNumberSid,
    pub account_sid: AccountSid,
    pub phone_number: E164,
    /// The application of the same account that answers calls to this number;
    /// `None`: calls to it are refused.
    pub application_sid: Option<ApplicationSid>,
    pub friendly_name: String,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

impl PhoneNumber {
    /// A new number with a generated SID, named after the number, dated now.
    pub fn new(account_sid: AccountSid, phone_number: E164, application_sid: Option<ApplicationSid>) -> PhoneNumber {
        let now = Timestamp::now();
        PhoneNumber {
            sid: PhoneNumberSid::generate(),
            account_sid,
            friendly_name: phone_number.to_string(),
            phone_number,
            application_sid,
            date_created: now,
            date_updated: now,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_text("phone number friendly_name", &self.friendly_name, 64)
    }
}

/// An E.164 number: `+`, a country code not starting with 0, at most 15
/// digits in all, nothing else (no spaces, dashes or parentheses).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an E.164 number: '+' and 2 to 15 digits, the first not 0 (like +15550100001)")]
pub struct E164Error(pub String);

impl E164 {
    pub fn parse(s: &str) -> Result<E164, E164Error> {
        let digits = s.strip_prefix('+').ok_or_else(|| E164Error(s.into()))?;
        if !(2..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
            return Err(E164Error(s.into()));
        }
        Ok(E164(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for E164 {
    type Err = E164Error;
    fn from_str(s: &str) -> Result<E164, E164Error> {
        E164::parse(s)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        assert!(E164::parse("+15550100001").is_ok());
        assert!(E164::parse("+442071234567").is_ok());
        assert!(E164::parse("+123456789012345").is_ok());
        for bad in [
            "15550100001",
            "+1",
            "+1234567890123456",
            "+05550100001",
            "+1 555 0100",
            "+1-555-0100",
            "+",
            "",
            "+1555010000a",
        ] {
            assert!(E164::parse(bad).is_err(), "{bad}");
        }
    }
}
