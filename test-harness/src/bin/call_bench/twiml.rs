//! `call-bench serve-twiml --listen ADDR --body TWIML`: the customer's app
//! of the benchmark, made so that it is never the bottleneck.
//!
//! HTTP/1.1 with keep-alive, a thread per connection (the appliance's
//! webhook client keeps a few connections open and reuses them), the same
//! prepared answer to every request: the TwiML given, as `text/xml`. The
//! request (its form parameters, its signature) is read and not looked at.
//! `GET /stats` answers `{"requests": N}`, the number of TwiML answers so far.

use anyhow::{bail, Context, Result};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A request head larger than this closes the connection.
const MAX_HEAD: usize = 64 * 1024;
/// A request body larger than this closes the connection.
const MAX_BODY: usize = 1024 * 1024;

pub fn serve(args: &[String]) -> Result<()> {
    let (mut listen, mut body) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => listen = it.next().map(|a| a.parse::<SocketAddr>()).transpose()?,
            "--body" => body = it.next().cloned(),
            other => bail!("unknown argument {other}"),
        }
    }
    let (listen, body) = (listen.context("--listen ADDR")?, body.context("--body TWIML")?);
    let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    // Prepared once: kept-alive and closing.
    let answers: Arc<[Vec<u8>; 2]> = Arc::new([response("text/xml", &body, false), response("text/xml", &body, true)]);
    let served = Arc::new(AtomicU64::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (answers, served) = (answers.clone(), served.clone());
        std::thread::spawn(move || {
            let _ = connection(stream, &answers, &served);
        });
    }
    Ok(())
}

fn response(content_type: &str, body: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{connection}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves the requests of one connection until the client closes it.
fn connection(stream: TcpStream, answers: &[Vec<u8>; 2], served: &AtomicU64) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader)? {
        if request.path.starts_with("/stats") {
            let stats = format!("{{\"requests\":{}}}", served.load(Ordering::Relaxed));
            writer.write_all(&response("application/json", &stats, request.close))?;
        } else {
            served.fetch_add(1, Ordering::Relaxed);
            writer.write_all(&answers[usize::from(request.close)])?;
        }
        if request.close {
            return Ok(());
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
struct Request {
    path: String,
    /// The client asked to close after this one (or speaks HTTP/1.0).
    close: bool,
}

/// Reads one request (head and body); `None` at a clean end of stream.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = String::new();
    // Empty lines before a request line are tolerated (RFC 9112 2.2).
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (_method, path, version) = (parts.next(), parts.next().unwrap_or("/").to_string(), parts.next());
    let mut close = version != Some("HTTP/1.1");
    let (mut length, mut chunked, mut head) = (0usize, false, line.len());
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("end of stream in the request head"));
        }
        head += line.len();
        if head > MAX_HEAD {
            return Err(bad("request head too large"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().map_err(|_| bad("bad Content-Length"))?,
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => {
                let v = value.to_ascii_lowercase();
                close = v.contains("close") || (close && !v.contains("keep-alive"));
            }
            _ => {}
        }
    }
    if chunked {
        skip_chunked(reader)?;
    } else {
        if length > MAX_BODY {
            return Err(bad("request body too large"));
        }
        io::copy(&mut reader.take(length as u64), &mut io::sink())?;
    }
    Ok(Some(Request { path, close }))
}

/// Reads and drops a chunked body with its trailers.
fn skip_chunked(reader: &mut impl BufRead) -> io::Result<()> {
    let mut line = String::new();
    let mut total = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        total += size;
        if total > MAX_BODY {
            return Err(bad("request body too large"));
        }
        if size == 0 {
            break;
        }
        io::copy(&mut reader.take(size as u64 + 2), &mut io::sink())?;
    }
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok(());
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_requests_one_after_the_other() {
        let raw = "POST /voice HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                   Content-Length: 7\r\n\r\nA=1&B=2\
                   POST /voice HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nA=1\r\n0\r\n\r\n\
                   GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut r = BufReader::new(raw.as_bytes());
        assert_eq!(read_request(&mut r).unwrap(), Some(Request { path: "/voice".into(), close: false }));
        assert_eq!(read_request(&mut r).unwrap(), Some(Request { path: "/voice".into(), close: false }));
        assert_eq!(read_request(&mut r).unwrap(), Some(Request { path: "/stats".into(), close: true }));
        assert_eq!(read_request(&mut r).unwrap(), None);
    }

    #[test]
    fn http_1_0_closes_unless_kept_alive() {
        let mut r = BufReader::new(&b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"[..]);
        assert!(read_request(&mut r).unwrap().unwrap().close);
        assert!(!read_request(&mut r).unwrap().unwrap().close);
    }

    #[test]
    fn answers_with_the_body_and_its_length() {
        let r = String::from_utf8(response("text/xml", "<Response/>", false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("Content-Length: 11\r\n"));
        assert!(r.ends_with("\r\n\r\n<Response/>"));
    }
}
