//! Header fields as received: the name as written, its canonical
//! [`HeaderName`] (long and compact forms, any case), and the raw value
//! (folded lines kept; typed views in [`super::typed`] read through them).
//! Values of a parsed message are slices of the one received buffer.

use bytes::Bytes;

use super::lex;

macro_rules! header_names {
    ($( $variant:ident => $canon:literal $(, $compact:literal)? ; )*) => {
        /// Header names the stack knows by name. Anything else is
        /// [`HeaderName::Other`] and compared by its bytes.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum HeaderName {
            $( $variant, )*
            /// An extension header; look at [`Header::name`].
            Other,
        }

        impl HeaderName {
            /// The canonical long form, e.g. `Call-ID`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other => "",
                }
            }

            /// Recognise a header name, long or compact form, any case.
            pub fn lookup(name: &[u8]) -> HeaderName {
                if name.len() == 1 {
                    let c = name[0].to_ascii_lowercase();
                    $( $( if c == $compact { return HeaderName::$variant; } )? )*
                    return HeaderName::Other;
                }
                $( if name.eq_ignore_ascii_case($canon.as_bytes()) { return HeaderName::$variant; } )*
                HeaderName::Other
            }
        }
    };
}

header_names! {
    Accept => "Accept";
    AcceptContact => "Accept-Contact", b'a';
    AcceptEncoding => "Accept-Encoding";
    Allow => "Allow";
    AllowEvents => "Allow-Events", b'u';
    Authorization => "Authorization";
    CallId => "Call-ID", b'i';
    Contact => "Contact", b'm';
    ContentEncoding => "Content-Encoding", b'e';
    ContentLength => "Content-Length", b'l';
    ContentType => "Content-Type", b'c';
    CSeq => "CSeq";
    Date => "Date";
    Event => "Event", b'o';
    Expires => "Expires";
    From => "From", b'f';
    Identity => "Identity", b'y';
    MaxForwards => "Max-Forwards";
    ProxyAuthenticate => "Proxy-Authenticate";
    ProxyAuthorization => "Proxy-Authorization";
    ProxyRequire => "Proxy-Require";
    RecordRoute => "Record-Route";
    ReferTo => "Refer-To", b'r';
    ReferredBy => "Referred-By", b'b';
    RejectContact => "Reject-Contact", b'j';
    RequestDisposition => "Request-Disposition", b'd';
    Require => "Require";
    Route => "Route";
    SessionExpires => "Session-Expires", b'x';
    Subject => "Subject", b's';
    Supported => "Supported", b'k';
    To => "To", b't';
    Unsupported => "Unsupported";
    Via => "Via", b'v';
    WwwAuthenticate => "WWW-Authenticate";
}

impl HeaderName {
    /// Headers whose value is a comma-separated list (RFC 3261 7.3.1), so
    /// several values may share one line. Others (Date, the auth headers,
    /// extension headers) are never split.
    pub fn is_list(self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Accept
                | AcceptContact
                | AcceptEncoding
                | Allow
                | AllowEvents
                | Contact
                | ContentEncoding
                | ProxyRequire
                | RecordRoute
                | RejectContact
                | Require
                | Route
                | Supported
                | Unsupported
                | Via
        )
    }

    /// Headers that must appear at most once in a message.
    pub fn is_single(self) -> bool {
        use HeaderName::*;
        matches!(self, CallId | ContentLength | ContentType | CSeq | Expires | From | MaxForwards | To)
    }
}

/// One header line (or the lines it was folded onto).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub(crate) id: HeaderName,
    pub(crate) name: Bytes,
    pub(crate) value: Bytes,
}

impl Header {
    /// A header with a known name written in its canonical form.
    pub fn new(id: HeaderName, value: impl Into<Bytes>) -> Header {
        debug_assert!(id != HeaderName::Other);
        Header { id, name: Bytes::from_static(id.as_str().as_bytes()), value: value.into() }
    }

    /// A header with any name (recognised if it is a known one).
    pub fn with_name(name: impl Into<Bytes>, value: impl Into<Bytes>) -> Header {
        let name = name.into();
        Header { id: HeaderName::lookup(&name), name, value: value.into() }
    }

    pub fn id(&self) -> HeaderName {
        self.id
    }

    /// The name as received (`v`, `VIA`, `Via`...).
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The raw value, trimmed, folded lines kept.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The value as `&str` if it is UTF-8 (typed views need this).
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    /// Whether this header has the given name (compact forms and case
    /// folded; extension names compared case-insensitively).
    pub fn is(&self, name: &str) -> bool {
        let id = HeaderName::lookup(name.as_bytes());
        if id == HeaderName::Other {
            self.id == HeaderName::Other && self.name.eq_ignore_ascii_case(name.as_bytes())
        } else {
            self.id == id
        }
    }
}

/// The header fields of a message, in received order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    pub(crate) list: Vec<Header>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The first header with this canonical name.
    pub fn get(&self, id: HeaderName) -> Option<&Header> {
        self.list.iter().find(|h| h.id == id)
    }

    /// Every header line with this canonical name.
    pub fn get_all(&self, id: HeaderName) -> impl Iterator<Item = &Header> + '_ {
        self.list.iter().filter(move |h| h.id == id)
    }

    /// A header by any name (`"i"`, `"call-id"`, `"X-Custom"`).
    pub fn get_named(&self, name: &str) -> Option<&Header> {
        self.list.iter().find(|h| h.is(name))
    }

    /// How many header lines carry this name.
    pub fn count(&self, id: HeaderName) -> usize {
        self.get_all(id).count()
    }

    /// Every value of a header in order: list headers split at top-level
    /// commas across all their lines, others one value per line.
    pub fn values(&self, id: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.get_all(id).flat_map(move |h| {
            let v: &[u8] = &h.value;
            let (split, whole) = if id.is_list() { (Some(lex::split_commas(v)), None) } else { (None, Some(v)) };
            split.into_iter().flatten().chain(whole)
        })
    }

    /// Append a header.
    pub fn push(&mut self, h: Header) {
        self.list.push(h);
    }

    /// Insert a header at a position (e.g. a new top Via at 0).
    pub fn insert(&mut self, index: usize, h: Header) {
        let index = index.min(self.list.len());
        self.list.insert(index, h);
    }

    /// Remove every header with this name; returns how many were removed.
    pub fn remove(&mut self, id: HeaderName) -> usize {
        let before = self.list.len();
        self.list.retain(|h| h.id != id);
        before - self.list.len()
    }

    /// Replace all headers of this name with one value, keeping the
    /// position of the first (or appending).
    pub fn set(&mut self, id: HeaderName, value: impl Into<Bytes>) {
        let h = Header::new(id, value);
        match self.list.iter().position(|x| x.id == id) {
            Some(i) => {
                self.list[i] = h;
                let mut n = 0;
                self.list.retain(|x| {
                    if x.id == id {
                        n += 1;
                        n == 1
                    } else {
                        true
                    }
                });
            }
            None => self.list.push(h),
        }
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_names() {
        for (n, id) in [
            (&b"i"[..], HeaderName::CallId),
            (b"I", HeaderName::CallId),
            (b"m", HeaderName::Contact),
            (b"e", HeaderName::ContentEncoding),
            (b"L", HeaderName::ContentLength),
            (b"c", HeaderName::ContentType),
            (b"f", HeaderName::From),
            (b"s", HeaderName::Subject),
            (b"k", HeaderName::Supported),
            (b"t", HeaderName::To),
            (b"v", HeaderName::Via),
            (b"o", HeaderName::Event),
            (b"u", HeaderName::AllowEvents),
            (b"r", HeaderName::ReferTo),
            (b"b", HeaderName::ReferredBy),
            (b"vIa", HeaderName::Via),
            (b"call-id", HeaderName::CallId),
            (b"MaX-fOrWaRdS", HeaderName::MaxForwards),
            (b"C%6Fntact", HeaderName::Other),
            (b"q", HeaderName::Other),
        ] {
            assert_eq!(HeaderName::lookup(n), id, "{}", String::from_utf8_lossy(n));
        }
    }

    #[test]
    fn values_split_list_headers_only() {
        let mut h = Headers::new();
        h.push(Header::with_name("v", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b"));
        h.push(Header::with_name("Via", "SIP/2.0/TCP c"));
        h.push(Header::with_name("Date", "Sat, 13 Nov 2010 23:29:00 GMT"));
        assert_eq!(h.values(HeaderName::Via).count(), 3);
        assert_eq!(h.values(HeaderName::Date).count(), 1);
        assert!(h.get_named("via").is_some());
        assert!(h.get_named("DATE").is_some());
        h.set(HeaderName::Via, "SIP/2.0/UDP z");
        assert_eq!(h.count(HeaderName::Via), 1);
        assert_eq!(h.list[0].value(), b"SIP/2.0/UDP z");
    }
}
