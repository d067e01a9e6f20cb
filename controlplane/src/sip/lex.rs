//! Byte-level lexing shared by the message parser, the typed headers and
//! URIs: character classes of RFC 3261 section 25, linear white space
//! (folded lines count as white space: a header value keeps its `CRLF SP`
//! continuations and every scanner here skips them), quoted strings,
//! comma splitting that respects quotes and angle brackets, and `;`
//! parameter lists. Nothing here allocates or panics.

/// `token` characters (RFC 3261 25.1).
pub(crate) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
}

/// `word` characters (Call-ID): token plus `( ) < > : \ " / [ ] ? { }`.
pub(crate) fn is_word(b: u8) -> bool {
    is_token(b)
        || matches!(b, b'(' | b')' | b'<' | b'>' | b':' | b'\\' | b'"' | b'/' | b'[' | b']' | b'?' | b'{' | b'}')
}

/// Linear white space inside a header value: SP, HTAB and the CR LF of a
/// folded line (the message parser guarantees CR LF only occurs there).
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// Trim LWS on both sides.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_lws(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

/// A cursor over a header value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor<'a> {
    pub(crate) s: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        Cursor { s, pos: 0 }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    #[cfg(test)]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.s.get(self.pos..).unwrap_or(&[])
    }

    /// Skip LWS; returns whether any was skipped.
    pub(crate) fn skip_lws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_lws) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Skip LWS, then consume `c` (and LWS after it). The SWS-sep-SWS
    /// pattern of RFC 3261 (`SLASH`, `SEMI`, `EQUAL`, `COLON`, `COMMA`).
    pub(crate) fn sep(&mut self, c: u8) -> bool {
        let save = self.pos;
        self.skip_lws();
        if self.peek() == Some(c) {
            self.pos += 1;
            self.skip_lws();
            true
        } else {
            self.pos = save;
            false
        }
    }

    pub(crate) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consume bytes while `f` holds; returns the (possibly empty) run.
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    pub(crate) fn token(&mut self) -> Option<&'a [u8]> {
        let t = self.take_while(is_token);
        (!t.is_empty()).then_some(t)
    }

    /// A quoted string starting at the cursor; returns its content between
    /// the quotes, escapes (`\x`) left in place.
    pub(crate) fn quoted(&mut self) -> Option<&'a [u8]> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let end = quoted_end(self.s, self.pos)?;
        let content = &self.s[self.pos + 1..end - 1];
        self.pos = end;
        Some(content)
    }
}

/// Given `s[start] == b'"'`, the index just past the closing quote.
pub(crate) fn quoted_end(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Remove the `\` of quoted-pairs.
pub(crate) fn unescape_quoted(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\\') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Split a list header value at top-level commas (outside quoted strings
/// and angle brackets). Yields trimmed elements, empty ones included so
/// that a caller can reject `a,,b`. An unbalanced quote or bracket makes
/// the rest one element, which its parser then rejects.
pub(crate) fn split_commas(s: &[u8]) -> CommaSplit<'_> {
    CommaSplit { s, pos: 0, done: false }
}

pub(crate) struct CommaSplit<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let mut i = start;
        let mut angle = false;
        while i < self.s.len() {
            match self.s[i] {
                b'"' => match quoted_end(self.s, i) {
                    Some(e) => {
                        i = e;
                        continue;
                    }
                    None => i = self.s.len(),
                },
                b'<' => angle = true,
                b'>' => angle = false,
                b',' if !angle => {
                    self.pos = i + 1;
                    return Some(trim(&self.s[start..i]));
                }
                _ => {}
            }
            i += 1;
        }
        self.done = true;
        Some(trim(&self.s[start..]))
    }
}

/// A `;name[=value]` parameter list, kept as the raw text after the first
/// `;` and searched on demand (no allocation). Its syntax was checked by
/// [`parse_params`] when the owning header was parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a str,
}

impl<'a> Params<'a> {
    /// The parameter `name` (case-insensitive): `None` if absent,
    /// `Some(None)` if present without value, `Some(Some(v))` with value
    /// (a quoted value is returned with its quotes).
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// Whether the parameter is present (with or without value).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        let mut c = Cursor::new(self.raw.as_bytes());
        let raw = self.raw;
        std::iter::from_fn(move || {
            let (n, v) = next_param(&mut c)?;
            let n = std::str::from_utf8(n).ok()?;
            let v = v.map(|v| {
                let off = v.as_ptr() as usize - raw.as_ptr() as usize;
                &raw[off..off + v.len()]
            });
            Some((n, v))
        })
    }

    /// The raw text (without the leading `;`).
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// One `name [= value]` at the cursor (which sits at a name or at `;`).
fn next_param<'a>(c: &mut Cursor<'a>) -> Option<(&'a [u8], Option<&'a [u8]>)> {
    c.sep(b';');
    c.skip_lws();
    let name = c.token()?;
    if c.sep(b'=') {
        let v = if c.peek() == Some(b'"') {
            let start = c.pos;
            c.quoted()?;
            &c.s[start..c.pos]
        } else {
            // token / host (IPv6 reference included)
            c.take_while(|b| is_token(b) || matches!(b, b'[' | b']' | b':'))
        };
        if v.is_empty() {
            return None;
        }
        Some((name, Some(v)))
    } else {
        Some((name, None))
    }
}

/// Parse a parameter list starting at the cursor: zero or more
/// `SEMI name [EQUAL value]`. Stops (successfully) at the first byte that
/// cannot continue the list; returns `None` on an empty or malformed
/// parameter (`;;`, `;=x`, `;a=`). The cursor is left after the list.
pub(crate) fn parse_params<'a>(c: &mut Cursor<'a>) -> Option<Params<'a>> {
    let save = c.pos;
    c.skip_lws();
    if c.peek() != Some(b';') {
        c.pos = save;
        return Some(Params::default());
    }
    c.pos += 1;
    let start = c.pos;
    loop {
        c.skip_lws();
        next_param(c)?;
        let before = c.pos;
        c.skip_lws();
        if c.peek() == Some(b';') {
            c.pos += 1;
            continue;
        }
        c.pos = before;
        break;
    }
    let raw = std::str::from_utf8(&c.s[start..c.pos]).ok()?;
    Some(Params { raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_split_respects_quotes_and_brackets() {
        let v = br#""a, b" <sip:x;p=1,2>;q=1 , <sip:y>,sip:z"#;
        let parts: Vec<_> = split_commas(v).collect();
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert_eq!(parts[1], b"<sip:y>");
        assert_eq!(parts[2], b"sip:z");
    }

    #[test]
    fn params_with_lws_and_quotes() {
        let mut c = Cursor::new(b" ;  branch  =\r\n z9hG4bK1 ; rport;x=\"a;b\" rest");
        let p = parse_params(&mut c).unwrap();
        assert_eq!(p.get("BRANCH"), Some(Some("z9hG4bK1")));
        assert_eq!(p.get("rport"), Some(None));
        assert_eq!(p.get("x"), Some(Some("\"a;b\"")));
        assert_eq!(p.get("nope"), None);
        assert_eq!(c.rest(), b" rest");
    }

    #[test]
    fn params_reject_empty() {
        assert!(parse_params(&mut Cursor::new(b";;")).is_none());
        assert!(parse_params(&mut Cursor::new(b";a=")).is_none());
        assert!(parse_params(&mut Cursor::new(b";=b")).is_none());
    }

    #[test]
    fn quoted_with_escapes() {
        let mut c = Cursor::new(br#""J \"x\" \\" rest"#);
        assert_eq!(c.quoted().unwrap(), br#"J \"x\" \\"#);
        assert_eq!(unescape_quoted(r#"J \"x\" \\"#), r#"J "x" \"#);
        assert!(Cursor::new(b"\"open").quoted().is_none());
    }
}
