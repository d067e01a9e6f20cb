//! Twilio's list paging: `PageSize` (default 50, at most 1000), `Page`
//! (from 0) and `PageToken` in the query, and the envelope around each page:
//!
//! ```json
//! {"applications": [...], "page": 1, "page_size": 2, "start": 2, "end": 3,
//!  "uri": "/2010-04-01/Accounts/AC.../Applications.json?PageSize=2&Page=1&PageToken=PT1",
//!  "first_page_uri": "...?PageSize=2&Page=0",
//!  "previous_page_uri": "...?PageSize=2&Page=0&PageToken=PT0",
//!  "next_page_uri": "...?PageSize=2&Page=2&PageToken=PT2"}
//! ```
//!
//! The helper libraries follow `next_page_uri` as it is (prefixing their
//! host), and find the records under the one key that is not a paging key,
//! so the envelope holds exactly the keys above. The store pages by number;
//! a page token here is `PT` and the page number, and when a request has
//! both, the token wins (the helper libraries send `Page` as client state).

use super::error::{code, ApiError};
use super::params::Params;
use crate::store::PageRequest;
use serde_json::{json, Value};

/// The page a list request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: u32,
    pub page_size: u32,
}

impl Paging {
    /// `PageSize`, `Page` and `PageToken` of a query. A `PageSize` above 1000
    /// is taken as 1000 (Twilio's largest page); 0 or a non-number is refused.
    pub fn from_query(query: &Params) -> Result<Paging, ApiError> {
        let page_size = match query.get("PageSize") {
            None | Some("") => PageRequest::DEFAULT_SIZE,
            Some(s) => match s.parse::<u64>() {
                Ok(0) | Err(_) => {
                    return Err(ApiError::bad_request(
                        code::INVALID_PARAMETER,
                        format!("PageSize must be a number from 1 to {}, not {s:?}", PageRequest::MAX_SIZE),
                    ))
                }
                Ok(n) => u32::try_from(n.min(u64::from(PageRequest::MAX_SIZE))).unwrap_or(PageRequest::MAX_SIZE),
            },
        };
        let page = match (query.get("PageToken"), query.get("Page")) {
            (Some(token), _) if !token.is_empty() => parse_token(token)?,
            (_, None | Some("")) => 0,
            (_, Some(p)) => p.parse::<u32>().map_err(|_| {
                ApiError::bad_request(code::INVALID_PARAMETER, format!("Page must be a number from 0, not {p:?}"))
            })?,
        };
        if u64::from(page) * u64::from(page_size) > i64::MAX as u64 {
            return Err(ApiError::bad_request(code::INVALID_PARAMETER, format!("Page {page} is too far")));
        }
        Ok(Paging { page, page_size })
    }

    pub fn request(self) -> PageRequest {
        PageRequest::new(self.page, self.page_size)
    }

    /// The index of the first record of this page in the whole list.
    pub fn start(self) -> u64 {
        u64::from(self.page) * u64::from(self.page_size)
    }
}

fn parse_token(token: &str) -> Result<u32, ApiError> {
    token
        .strip_prefix("PT")
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(|| ApiError::bad_request(code::INVALID_PARAMETER, format!("PageToken {token:?} is not valid")))
}

/// One page of `items` (already JSON) under `key`, with the paging fields.
/// `path` is the list's path (`/2010-04-01/Accounts/AC.../Calls.json`);
/// `filters` are the query parameters that selected the list, repeated in
/// every page URI.
pub fn envelope(
    path: &str,
    filters: &[(&str, String)],
    paging: Paging,
    has_more: bool,
    key: &str,
    items: Vec<Value>,
) -> Value {
    let page_uri = |page: u32, token: bool| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in filters {
            query.append_pair(name, value);
        }
        query.append_pair("PageSize", &paging.page_size.to_string());
        query.append_pair("Page", &page.to_string());
        if token {
            query.append_pair("PageToken", &format!("PT{page}"));
        }
        format!("{path}?{}", query.finish())
    };
    let start = paging.start();
    let end = (start + items.len() as u64).saturating_sub(1).max(start);
    let mut body = serde_json::Map::new();
    body.insert("first_page_uri".into(), json!(page_uri(0, false)));
    body.insert("end".into(), json!(end));
    body.insert(
        "previous_page_uri".into(),
        if paging.page > 0 { json!(page_uri(paging.page - 1, true)) } else { Value::Null },
    );
    body.insert("uri".into(), json!(page_uri(paging.page, paging.page > 0)));
    body.insert("page_size".into(), json!(paging.page_size));
    body.insert("start".into(), json!(start));
    body.insert(
        "next_page_uri".into(),
        if has_more { json!(page_uri(paging.page.saturating_add(1), true)) } else { Value::Null },
    );
    body.insert("page".into(), json!(paging.page));
    body.insert(key.into(), Value::Array(items));
    Value::Object(body)
}

/// Pages a list held in memory (API keys, a filtered list of numbers).
pub fn page_of<T>(mut all: Vec<T>, paging: Paging) -> (Vec<T>, bool) {
    let start = usize::try_from(paging.start()).unwrap_or(usize::MAX).min(all.len());
    let end = start.saturating_add(paging.page_size as usize).min(all.len());
    let has_more = end < all.len();
    all.truncate(end);
    (all.split_off(start), has_more)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paging(q: &str) -> Result<Paging, ApiError> {
        Paging::from_query(&Params::parse(q.as_bytes()))
    }

    #[test]
    fn query_parameters() {
        assert_eq!(paging("").unwrap(), Paging { page: 0, page_size: 50 });
        assert_eq!(paging("PageSize=2&Page=3").unwrap(), Paging { page: 3, page_size: 2 });
        assert_eq!(paging("PageSize=5000").unwrap().page_size, 1000);
        assert_eq!(paging("PageSize=2&Page=1&PageToken=PT4").unwrap().page, 4, "the token wins");
        for bad in ["PageSize=0", "PageSize=x", "Page=-1", "PageToken=PAxyz", "Page=4294967296"] {
            let e = paging(bad).map(|_| ()).unwrap_err();
            assert_eq!((e.status.as_u16(), e.code), (400, code::INVALID_PARAMETER), "{bad}");
        }
        // Twilio's largest page at the furthest page still fits.
        assert!(paging("Page=4294967295&PageSize=1000").is_ok());
    }

    #[test]
    fn envelope_math_and_uris() {
        let p = Paging { page: 1, page_size: 2 };
        let body = envelope("/L.json", &[("To", "+1 5".into())], p, true, "calls", vec![json!(1), json!(2)]);
        assert_eq!(body["start"], 2);
        assert_eq!(body["end"], 3);
        assert_eq!(body["page"], 1);
        assert_eq!(body["page_size"], 2);
        assert_eq!(body["first_page_uri"], "/L.json?To=%2B1+5&PageSize=2&Page=0");
        assert_eq!(body["previous_page_uri"], "/L.json?To=%2B1+5&PageSize=2&Page=0&PageToken=PT0");
        assert_eq!(body["next_page_uri"], "/L.json?To=%2B1+5&PageSize=2&Page=2&PageToken=PT2");
        assert_eq!(body["uri"], "/L.json?To=%2B1+5&PageSize=2&Page=1&PageToken=PT1");
        assert_eq!(body["calls"], json!([1, 2]));
        // Exactly one key besides the paging keys: the helper libraries rely on it.
        assert_eq!(body.as_object().unwrap().len(), 9);

        let first = envelope("/L.json", &[], Paging { page: 0, page_size: 50 }, false, "calls", vec![]);
        assert_eq!((first["start"].as_u64(), first["end"].as_u64()), (Some(0), Some(0)));
        assert!(first["next_page_uri"].is_null() && first["previous_page_uri"].is_null());
        assert_eq!(first["uri"], "/L.json?PageSize=50&Page=0");
    }

    #[test]
    fn pages_in_memory() {
        let all: Vec<u32> = (0..5).collect();
        assert_eq!(page_of(all.clone(), Paging { page: 0, page_size: 2 }), (vec![0, 1], true));
        assert_eq!(page_of(all.clone(), Paging { page: 2, page_size: 2 }), (vec![4], false));
        assert_eq!(page_of(all.clone(), Paging { page: 1, page_size: 3 }), (vec![3, 4], false));
        assert_eq!(page_of(all, Paging { page: 9, page_size: 2 }), (vec![], false));
    }
}
