//! Plain `http://` webhooks: HTTP/1.1 over kept-alive TCP connections,
//! written and read in the task that asks, without a connection task.
//!
//! Most apps behind a load balancer or on the same host as the appliance
//! are plain HTTP, and there every call's voice request went through
//! reqwest, hyper-util's pool and a hyper connection task: about 10 % of
//! the appliance's CPU time per call in `call-bench` (docs/benchmarks.md),
//! several times the system calls that carry the request. Here a request
//! is one `write` and, for a small answer, one `read`.
//!
//! What it speaks: a request with `Host`, the caller's headers and a
//! `Content-Length` body; an answer with a `Content-Length` body, a chunked
//! one, or one that ends with the connection; 1xx answers skipped. A
//! connection goes back to the pool once its answer was read whole and
//! neither side said `Connection: close`; a pooled connection that the
//! app has closed meanwhile is found out before use, or, if the request
//! then gets no byte of answer, the request is sent once more on a new
//! connection. `https://` URLs (and URLs with credentials) stay with
//! reqwest.

use super::FetchError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle connections kept per app (host and port).
const IDLE_PER_HOST: usize = 64;
/// An idle connection older than this is closed rather than used: apps
/// close theirs after a while (nginx: 75 s, Node: 5 s) and a request on a
/// connection the app is closing may be lost.
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Largest response head read.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<(TcpStream, Instant)>>>,
}

/// A request; `authority` is the URL's `host[:port]`, `target` its path
/// and query.
pub struct Request<'a> {
    pub method: &'a str,
    pub authority: &'a str,
    pub target: &'a str,
    pub host: url::Host<&'a str>,
    pub port: u16,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a [u8]>,
}

/// An answer whose head has been read; its body is read with [`Answer::body`]
/// (or not: then the connection is closed when the answer is dropped).
pub struct Answer<'p> {
    pub status: u16,
    pub location: Option<String>,
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    framing: Framing,
    keep_alive: bool,
    conn: Conn,
    pool: &'p Pool,
    key: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

impl Pool {
    /// Sends `request` and reads the answer's head.
    pub async fn send(&self, request: &Request<'_>) -> Result<Answer<'_>, FetchError> {
        let key = request.authority.to_ascii_lowercase();
        let mut head = Vec::with_capacity(512 + request.body.map_or(0, <[u8]>::len));
        write_head(&mut head, request);
        if let Some(body) = request.body {
            head.extend_from_slice(body);
        }
        // A pooled connection first; if the app closed it unseen, the
        // request gets no answer at all, and goes once more on a new one.
        if let Some(stream) = self.take_idle(&key) {
            match self.exchange(Conn::new(stream), &head, &key).await {
                Ok(answer) => return Ok(answer),
                Err(Failure::Write(_) | Failure::NoAnswer) => {}
                Err(Failure::Other(e)) => return Err(e),
            }
        }
        let stream = connect(request).await?;
        self.exchange(Conn::new(stream), &head, &key).await.map_err(Failure::into_fetch_error)
    }

    async fn exchange(&self, mut conn: Conn, request: &[u8], key: &str) -> Result<Answer<'_>, Failure> {
        let Some(stream) = conn.stream.as_mut() else { return Err(Failure::NoAnswer) };
        stream.write_all(request).await.map_err(Failure::Write)?;
        loop {
            let (status, head_len, parsed) = conn.read_head().await?;
            conn.consume(head_len);
            if (100..200).contains(&status) && status != 101 {
                continue; // 100 Continue, 103 Early Hints: the answer follows
            }
            let framing = match (status, parsed.chunked, parsed.content_length) {
                (204 | 304, _, _) => Framing::Length(0),
                (_, true, _) => Framing::Chunked,
                (_, false, Some(n)) => Framing::Length(n),
                (_, false, None) => Framing::UntilClose,
            };
            return Ok(Answer {
                status,
                location: parsed.location,
                content_type: parsed.content_type,
                content_length: parsed.content_length,
                keep_alive: parsed.keep_alive && framing != Framing::UntilClose,
                framing,
                conn,
                pool: self,
                key: key.to_owned(),
            });
        }
    }

    fn take_idle(&self, key: &str) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = idle.get_mut(key)?;
        while let Some((stream, since)) = list.pop() {
            if since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            // Readable while idle means closed (or garbage): not usable.
            // tokio answers from its readiness state, mostly without a call.
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(stream),
                _ => continue,
            }
        }
        None
    }

    fn put_idle(&self, key: String, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = idle.entry(key).or_default();
        if list.len() < IDLE_PER_HOST {
            list.push((stream, Instant::now()));
        }
    }
}

impl Answer<'_> {
    /// Reads the whole body, failing with `BodyTooLarge(limit)` past
    /// `limit` bytes; a connection whose answer was read whole goes back
    /// to the pool.
    pub async fn body(mut self, limit: usize) -> Result<Vec<u8>, FetchError> {
        let too_large = FetchError::BodyTooLarge(limit);
        let body = match self.framing {
            Framing::Length(n) => {
                if n > limit as u64 {
                    return Err(too_large);
                }
                self.conn.read_exact_body(n as usize).await?
            }
            Framing::Chunked => self.conn.read_chunked(limit).await?,
            Framing::UntilClose => self.conn.read_to_close(limit).await?,
        };
        if self.keep_alive && self.conn.buffered() == 0 {
            if let Some(stream) = self.conn.stream.take() {
                self.pool.put_idle(std::mem::take(&mut self.key), stream);
            }
        }
        Ok(body)
    }
}

fn write_head(out: &mut Vec<u8>, r: &Request<'_>) {
    use std::io::Write as _;
    let _ = write!(out, "{} {} HTTP/1.1\r\nHost: {}\r\n", r.method, r.target, r.authority);
    for (name, value) in r.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if let Some(body) = r.body {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    out.extend_from_slice(b"\r\n");
}

async fn connect(r: &Request<'_>) -> Result<TcpStream, FetchError> {
    let addrs: Vec<SocketAddr> = match r.host {
        url::Host::Ipv4(ip) => vec![SocketAddr::from((ip, r.port))],
        url::Host::Ipv6(ip) => vec![SocketAddr::from((ip, r.port))],
        url::Host::Domain(name) => match tokio::net::lookup_host((name, r.port)).await {
            Ok(found) => found.collect(),
            Err(_) => return Err(FetchError::BadHostName(name.to_owned())),
        },
    };
    let mut last = FetchError::BadHostName(r.authority.to_owned());
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => last = FetchError::ConnectionRefused,
            Err(e) => last = FetchError::Connection(format!("connect to {addr}: {e}")),
        }
    }
    Err(last)
}

/// Why an exchange failed, and whether a new connection may be tried.
enum Failure {
    Write(std::io::Error),
    /// The connection ended before the first byte of an answer.
    NoAnswer,
    Other(FetchError),
}

impl Failure {
    fn into_fetch_error(self) -> FetchError {
        match self {
            Failure::Write(e) => FetchError::Connection(format!("sending the request: {e}")),
            Failure::NoAnswer => FetchError::Connection("connection closed before an answer".into()),
            Failure::Other(e) => e,
        }
    }
}

impl From<FetchError> for Failure {
    fn from(e: FetchError) -> Self {
        Failure::Other(e)
    }
}

struct ParsedHead {
    content_length: Option<u64>,
    chunked: bool,
    keep_alive: bool,
    location: Option<String>,
    content_type: Option<String>,
}

/// A connection with what has been read from it and not consumed yet.
struct Conn {
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    start: usize,
}

fn broken(what: &str) -> FetchError {
    FetchError::Connection(format!("malformed HTTP answer: {what}"))
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn { stream: Some(stream), buf: Vec::with_capacity(4096), start: 0 }
    }

    fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more; Ok(0) at the end of the stream.
    async fn fill(&mut self) -> Result<usize, FetchError> {
        let Some(stream) = self.stream.as_mut() else { return Ok(0) };
        if self.start > 0 && self.buf.len() + 4096 > self.buf.capacity() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + 8192, 0);
        let n = stream.read(&mut self.buf[len..]).await;
        self.buf.truncate(len + *n.as_ref().unwrap_or(&0));
        n.map_err(|e| FetchError::Connection(format!("reading the answer: {e}")))
    }

    async fn read_head(&mut self) -> Result<(u16, usize, ParsedHead), Failure> {
        let mut first = true;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(self.data()) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = response.code.unwrap_or(0);
                    let version = response.version.unwrap_or(1);
                    return Ok((status, len, parse_head(version, response.headers)?));
                }
                Ok(httparse::Status::Partial) if self.buffered() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => return Err(broken("head too long").into()),
                Err(e) => return Err(broken(&e.to_string()).into()),
            }
            let n = match self.fill().await {
                Ok(n) => n,
                Err(_) if first && self.buffered() == 0 => return Err(Failure::NoAnswer),
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(if self.buffered() == 0 { Failure::NoAnswer } else { broken("cut short").into() });
            }
            first = false;
        }
    }

    async fn read_exact_body(&mut self, n: usize) -> Result<Vec<u8>, FetchError> {
        while self.buffered() < n {
            if self.fill().await? == 0 {
                return Err(broken("body cut short"));
            }
        }
        let body = self.data()[..n].to_vec();
        self.consume(n);
        Ok(body)
    }

    async fn read_line(&mut self) -> Result<Vec<u8>, FetchError> {
        loop {
            if let Some(i) = self.data().windows(2).position(|w| w == b"\r\n") {
                let line = self.data()[..i].to_vec();
                self.consume(i + 2);
                return Ok(line);
            }
            if self.buffered() > MAX_HEAD {
                return Err(broken("chunk line too long"));
            }
            if self.fill().await? == 0 {
                return Err(broken("chunked body cut short"));
            }
        }
    }

    async fn read_chunked(&mut self, limit: usize) -> Result<Vec<u8>, FetchError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
            let size = std::str::from_utf8(size)
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .ok_or_else(|| broken("chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > limit {
                return Err(FetchError::BodyTooLarge(limit));
            }
            body.extend_from_slice(&self.read_exact_body(size).await?);
            if !self.read_line().await?.is_empty() {
                return Err(broken("chunk not followed by CRLF"));
            }
        }
    }

    async fn read_to_close(&mut self, limit: usize) -> Result<Vec<u8>, FetchError> {
        loop {
            if self.buffered() > limit {
                return Err(FetchError::BodyTooLarge(limit));
            }
            if self.fill().await? == 0 {
                let body = self.data().to_vec();
                self.consume(body.len());
                return Ok(body);
            }
        }
    }
}

fn parse_head(version: u8, headers: &[httparse::Header<'_>]) -> Result<ParsedHead, FetchError> {
    let mut head = ParsedHead {
        content_length: None,
        chunked: false,
        keep_alive: version >= 1,
        location: None,
        content_type: None,
    };
    for h in headers {
        let value = || String::from_utf8_lossy(h.value).trim().to_owned();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value().parse::<u64>().map_err(|_| broken("Content-Length"))?;
            if head.content_length.is_some_and(|m| m != n) {
                return Err(broken("two different Content-Lengths"));
            }
            head.content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = value().to_ascii_lowercase();
            head.chunked = v.rsplit(',').next().is_some_and(|last| last.trim() == "chunked");
            if !head.chunked {
                return Err(broken("a transfer coding other than chunked"));
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value().to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                head.keep_alive = false;
            } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                head.keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("location") {
            head.location = Some(value());
        } else if h.name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(String::from_utf8_lossy(h.value).into_owned());
        }
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serves each connection the answers given, one per request head read.
    async fn app(answers: Vec<&'static [u8]>, close_after_each: bool) -> (SocketAddr, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = 0;
            let mut answers = answers.into_iter();
            'accept: while let Ok((mut s, _)) = listener.accept().await {
                connections += 1;
                let mut buf = Vec::new();
                loop {
                    // Read a head (and a body of Content-Length).
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        continue 'accept;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    buf.drain(..end + 4 + len);
                    let Some(answer) = answers.next() else { break 'accept };
                    s.write_all(answer).await.unwrap();
                    if answers.len() == 0 {
                        break 'accept;
                    }
                    if close_after_each {
                        continue 'accept;
                    }
                }
            }
            connections
        });
        (addr, task)
    }

    fn request(addr: &SocketAddr, authority: &str) -> Request<'static> {
        let authority: &'static str = Box::leak(authority.to_owned().into_boxed_str());
        Request {
            method: "POST",
            authority,
            target: "/voice?x=1",
            host: url::Host::Ipv4(match addr.ip() {
                std::net::IpAddr::V4(v4) => v4,
                std::net::IpAddr::V6(_) => unreachable!(),
            }),
            port: addr.port(),
            headers: &[("Accept", "*/*")],
            body: Some(b"From=%2B1555"),
        }
    }

    #[tokio::test]
    async fn keeps_the_connection_and_reads_length_and_chunked_bodies() {
        let answers: Vec<&'static [u8]> = vec![
            b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 11\r\n\r\n<Response/>",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\n<Res\r\n7\r\nponse/>\r\n0\r\nA: b\r\n\r\n",
            b"HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n",
        ];
        let (addr, app) = app(answers, false).await;
        let pool = Pool::default();
        let authority = addr.to_string();
        let r = request(&addr, &authority);
        let a = pool.send(&r).await.unwrap();
        assert_eq!((a.status, a.content_type.as_deref()), (200, Some("text/xml")));
        assert_eq!(a.body(64).await.unwrap(), b"<Response/>");
        let a = pool.send(&r).await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.body(64).await.unwrap(), b"<Response/>");
        let a = pool.send(&r).await.unwrap();
        assert_eq!((a.status, a.location.as_deref()), (302, Some("/next")));
        assert!(a.body(64).await.unwrap().is_empty());
        drop(pool);
        assert_eq!(app.await.unwrap(), 1, "one connection for the three requests");
    }

    #[tokio::test]
    async fn a_closed_pooled_connection_is_replaced_and_limits_hold() {
        let answers: Vec<&'static [u8]> = vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
        ];
        // The app closes after each answer, though it did not say so.
        let (addr, app) = app(answers, true).await;
        let pool = Pool::default();
        let authority = addr.to_string();
        let r = request(&addr, &authority);
        assert_eq!(pool.send(&r).await.unwrap().body(64).await.unwrap(), b"ok");
        assert_eq!(pool.send(&r).await.unwrap().body(64).await.unwrap(), b"ok");
        let big = pool.send(&r).await.unwrap();
        assert_eq!(big.content_length, Some(100));
        assert_eq!(big.body(64).await, Err(FetchError::BodyTooLarge(64)));
        assert_eq!(pool.send(&r).await.unwrap().body(64).await.unwrap(), b"until the end");
        drop(pool);
        assert_eq!(app.await.unwrap(), 4);
    }

    #[tokio::test]
    async fn refused_and_unanswered() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let pool = Pool::default();
        let authority = addr.to_string();
        assert_eq!(pool.send(&request(&addr, &authority)).await.err(), Some(FetchError::ConnectionRefused));

        let (addr, _app) = app(vec![], false).await;
        let authority = addr.to_string();
        assert!(matches!(pool.send(&request(&addr, &authority)).await, Err(FetchError::Connection(_))));
    }
}
