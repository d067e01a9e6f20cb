//! Twilio-shaped resource identifiers: a two-letter prefix naming the kind of
//! resource and 32 lowercase hexadecimal digits (128 bits).
//!
//! Each kind is its own type, so an application SID cannot be passed where an
//! account SID is expected. A SID is checked when it is made (`parse`) and is
//! valid from then on; new ones come from the operating system's random
//! generator (`generate`).

use std::fmt;
use std::str::FromStr;

/// Why a string is not a SID of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidError {
    #[error("{value:?} is not a {kind} SID: it must be {prefix} followed by 32 lowercase hex digits (34 characters, not {len})")]
    Length { kind: &'static str, prefix: &'static str, value: String, len: usize },
    #[error("{value:?} is not a {kind} SID: it must start with {prefix}")]
    Prefix { kind: &'static str, prefix: &'static str, value: String },
    #[error("{value:?} is not a {kind} SID: after {prefix} come 32 lowercase hex digits (0-9, a-f)")]
    Digits { kind: &'static str, prefix: &'static str, value: String },
}

const HEX_DIGITS: usize = 32;

fn check(kind: &'static str, prefix: &'static str, value: &str) -> Result<(), SidError> {
    if value.len() != prefix.len() + HEX_DIGITS {
        return Err(SidError::Length { kind, prefix, value: value.to_string(), len: value.len() });
    }
    if !value.starts_with(prefix) {
        return Err(SidError::Prefix { kind, prefix, value: value.to_string() });
    }
    if !value[prefix.len()..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(SidError::Digits { kind, prefix, value: value.to_string() });
    }
    Ok(())
}

/// 128 random bits as 32 lowercase hex digits after `prefix`.
fn random(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    // The OS generator fails only when the kernel has no entropy source at
    // all (a broken system); nothing sensible can go on without one.
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    let mut s = String::with_capacity(prefix.len() + HEX_DIGITS);
    s.push_str(prefix);
    for b in bytes {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 0x0f)]));
    }
    s
}

/// A random secret (auth token, API key secret): 128 bits as 32 hex digits,
/// the shape of a Twilio auth token.
pub fn random_secret() -> String {
    random("")
}

macro_rules! sid_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            pub const KIND: &'static str = $kind;

            /// Checks `value` (prefix, length, lowercase hex).
            pub fn parse(value: &str) -> Result<Self, SidError> {
                check($kind, $prefix, value)?;
                Ok(Self(value.to_string()))
            }

            /// A new random SID (128 bits from the OS generator).
            pub fn generate() -> Self {
                Self(random($prefix))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = SidError;
            fn from_str(s: &str) -> Result<Self, SidError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

sid_type!(
    /// An account: `AC` + 32 hex digits.
    AccountSid, "AC", "account"
);
sid_type!(
    /// An API key: `SK` + 32 hex digits.
    ApiKeySid, "SK", "API key"
);
sid_type!(
    /// An application (voice URL and friends): `AP` + 32 hex digits.
    ApplicationSid, "AP", "application"
);
sid_type!(
    /// An incoming phone number: `PN` + 32 hex digits.
    PhoneNumberSid, "PN", "phone number"
);
sid_type!(
    /// A call (one leg): `CA` + 32 hex digits.
    CallSid, "CA", "call"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_shape() {
        let sid = AccountSid::parse("AC00000000000000000000000000000001").unwrap();
        assert_eq!(sid.as_str(), "AC00000000000000000000000000000001");
        assert_eq!(sid.to_string(), sid.as_str());
        assert!(CallSid::parse("CA0123456789abcdef0123456789abcdef").is_ok());
        assert!("SK00000000000000000000000000000001".parse::<ApiKeySid>().is_ok());
    }

    #[test]
    fn refuses_each_kind_of_mistake_with_its_reason() {
        assert!(matches!(AccountSid::parse("AC0000"), Err(SidError::Length { len: 6, .. })));
        assert!(matches!(
            AccountSid::parse("AP00000000000000000000000000000001"),
            Err(SidError::Prefix { prefix: "AC", .. })
        ));
        assert!(matches!(AccountSid::parse("ac00000000000000000000000000000001"), Err(SidError::Prefix { .. })));
        // Upper-case hex is refused: SIDs compare as strings.
        assert!(matches!(CallSid::parse("CA0123456789ABCDEF0123456789abcdef"), Err(SidError::Digits { .. })));
        assert!(matches!(CallSid::parse("CA0123456789abcdef0123456789abcdeg"), Err(SidError::Digits { .. })));
        // Multi-byte characters do not panic the slicing.
        assert!(CallSid::parse("CAé123456789abcdef0123456789abcde").is_err());
        let msg = ApplicationSid::parse("AP1").unwrap_err().to_string();
        assert!(msg.contains("application SID"), "{msg}");
    }

    #[test]
    fn generated_sids_are_valid_and_distinct() {
        let a = CallSid::generate();
        let b = CallSid::generate();
        assert_ne!(a, b);
        assert_eq!(CallSid::parse(a.as_str()).unwrap(), a);
        assert!(PhoneNumberSid::generate().as_str().starts_with("PN"));
        let secret = random_secret();
        assert_eq!(secret.len(), 32);
        assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
