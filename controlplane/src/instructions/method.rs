//! The HTTP method of a webhook: TwiML and the REST API allow only GET and POST.

use std::fmt;
use std::str::FromStr;

/// How a webhook is requested. POST is Twilio's default everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Method {
    Get,
    #[default]
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// An application's stored method is a webhook's method.
impl From<crate::store::HttpMethod> for Method {
    fn from(m: crate::store::HttpMethod) -> Method {
        match m {
            crate::store::HttpMethod::Get => Method::Get,
            crate::store::HttpMethod::Post => Method::Post,
        }
    }
}

/// The value was neither GET nor POST.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("method must be GET or POST")]
pub struct InvalidMethod;

impl FromStr for Method {
    type Err = InvalidMethod;

    /// Case-insensitive, as apps write `method="post"` and Twilio accepts it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("GET") {
            Ok(Method::Get)
        } else if s.trim().eq_ignore_ascii_case("POST") {
            Ok(Method::Post)
        } else {
            Err(InvalidMethod)
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively() {
        assert_eq!("get".parse(), Ok(Method::Get));
        assert_eq!(" POST ".parse(), Ok(Method::Post));
        assert_eq!("PUT".parse::<Method>(), Err(InvalidMethod));
    }
}
