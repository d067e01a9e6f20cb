//! `client-bench serve-app --listen ADDR`: the customer's app of the bench,
//! made so that it is never the bottleneck (its CPU is reported).
//!
//! Every voice request of a client's call is answered with
//! `<Dial><Client><Identity>{To}</Identity><Parameter name="t" value="{t}"/></Client></Dial>`:
//! `To` and `t` are the caller's custom parameters (the appliance posts them
//! as form parameters), so the callee's `invite` carries the time the
//! caller sent its own. HTTP/1.1 with keep-alive on a current-thread tokio
//! runtime, a task per connection; the signature is not checked.
//! `GET /stats` answers `{"requests": N}`.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const MAX_BODY: usize = 64 * 1024;

pub fn serve(args: &[String]) -> Result<()> {
    let listen: SocketAddr = match args {
        [flag, addr] if flag == "--listen" => addr.parse()?,
        _ => bail!("serve-app --listen ADDR"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let served = Arc::new(AtomicU64::new(0));
        loop {
            let (stream, _) = listener.accept().await?;
            let served = served.clone();
            tokio::spawn(async move {
                let _ = connection(stream, &served).await;
            });
        }
    })
}

async fn connection(stream: tokio::net::TcpStream, served: &AtomicU64) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut close = !line.contains("HTTP/1.1");
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "connection" => close = value.to_ascii_lowercase().contains("close"),
                    _ => {}
                }
            }
        }
        if length > MAX_BODY {
            return Ok(());
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await?;
        let (content_type, answer) = if path.starts_with("/stats") {
            ("application/json", format!("{{\"requests\":{}}}", served.load(Relaxed)))
        } else {
            served.fetch_add(1, Relaxed);
            ("text/xml", twiml(&String::from_utf8_lossy(&body), path.split_once('?').map_or("", |(_, q)| q)))
        };
        let connection = if close { "Connection: close\r\n" } else { "" };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{connection}\r\n{answer}",
            answer.len()
        );
        write.write_all(response.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

/// The TwiML for one voice request (form body, else query string).
pub fn twiml(form: &str, query: &str) -> String {
    let params = decode_form(form).into_iter().chain(decode_form(query)).collect::<Vec<_>>();
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let Some(to) = get("To") else {
        return "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>".into();
    };
    let sent = get(super::worker::SENT_PARAM).unwrap_or("0");
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Dial><Client><Identity>{}</Identity>\
         <Parameter name=\"t\" value=\"{}\"/></Client></Dial></Response>",
        xml_escape(to),
        xml_escape(sent)
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte.
fn decode_form(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dials_the_client_named_in_to_and_passes_the_send_time() {
        let body = "AccountSid=AC1&From=client%3Acaller-001&To=client-00042&t=1700000000000001&X=%zz";
        let t = twiml(body, "");
        assert!(t.contains("<Dial><Client><Identity>client-00042</Identity>"), "{t}");
        assert!(t.contains("<Parameter name=\"t\" value=\"1700000000000001\"/>"), "{t}");
        assert!(twiml("", "To=a%26b+c").contains("<Identity>a&amp;b c</Identity>"));
        assert!(twiml("", "").contains("<Hangup/>"));
        assert_eq!(decode_form("a=%41%4"), vec![("a".to_string(), "A%4".to_string())]);
    }
}
