//! Part 4: rtpengine (the userspace relay, no kernel forwarding table) under
//! the same load as ours, for its CPU time per relayed packet.
//!
//! rtpengine runs in the foreground as a child pinned to the relay core, one
//! worker thread. Each call is set up over its ng control protocol (bencode
//! over UDP): `offer` with the generator's source as the caller's media
//! address, `answer` with a sink as the callee's. rtpengine's answer reply
//! carries the port it allocated for the caller (the one the caller sends
//! to); the generator sends there and rtpengine relays to the sink.

use crate::bencode::Value;
use crate::process::{self, Agent, Stop};
use crate::relay::{self, RelayFigures, Timing, RELAY_CORE};
use crate::sinks::Sinks;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// rtpengine's media ports: below Linux's ephemeral range (32768 up), where
/// the generator and the sinks bind.
const FIRST_PORT: u16 = 10000;
const STARTUP: Duration = Duration::from_secs(10);
const REPLY: Duration = Duration::from_secs(1);

/// `Ok(None)`: rtpengine is not installed.
pub fn run(sessions: usize, timing: Timing, sinks: &Sinks) -> Result<Option<RelayFigures>, String> {
    let Some(binary) = process::which("rtpengine") else {
        return Ok(None);
    };
    let (mut load, sources) = relay::start_load(timing.rate_pps)?;
    let ng_port = free_udp_port()?;
    // Each call takes an RTP/RTCP pair on both sides: 4 ports. The range may
    // reach into the one our dataplane used: that one has stopped by now.
    let last_port = (usize::from(FIRST_PORT) + 4 * sessions + 999).min(32767);
    let args = vec![
        "--config-file=none".to_string(),
        "--foreground".into(),
        "--log-stderr".into(),
        "--log-level=4".into(),
        "--interface=127.0.0.1".into(),
        format!("--listen-ng=127.0.0.1:{ng_port}"),
        format!("--port-min={FIRST_PORT}"),
        format!("--port-max={last_port}"),
        // No kernel forwarding: every packet goes through the userspace relay.
        "--table=-1".into(),
        "--num-threads=1".into(),
        "--delete-delay=0".into(),
        // No media timeout while measured.
        "--timeout=3600".into(),
    ];
    let cmd = process::command(Path::new(&binary), &args, Some(RELAY_CORE));
    let mut rtpengine = Agent::spawn("rtpengine", cmd, process::log_file("rtpengine"), Stop::Terminate)?;
    let mut ng = NgClient::new(SocketAddr::from((Ipv4Addr::LOCALHOST, ng_port)))?;
    ng.wait_ready(&mut rtpengine)?;

    let sink_addrs = sinks.addrs();
    let mut targets = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let call = format!("bench-{i}");
        let caller = sources[i % sources.len()];
        let callee = sink_addrs[i % sink_addrs.len()];
        let offer = Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str(&call)),
            ("from-tag", Value::str("caller")),
            ("sdp", Value::str(&sdp(i, caller))),
        ]);
        ng.request(&offer)?;
        let answer = Value::dict([
            ("command", Value::str("answer")),
            ("call-id", Value::str(&call)),
            ("from-tag", Value::str("caller")),
            ("to-tag", Value::str("callee")),
            ("sdp", Value::str(&sdp(i, callee))),
        ]);
        let reply = ng.request(&answer)?;
        let sdp =
            reply.get("sdp").and_then(Value::as_str).ok_or_else(|| format!("call {i}: answer reply without SDP"))?;
        targets.push(media_address(sdp).ok_or_else(|| format!("call {i}: no media address in {sdp:?}"))?);
    }
    let figures = relay::measure(&mut load, rtpengine.pid(), None, &targets, sinks, timing);
    load.stop();
    rtpengine.stop();
    figures.map(Some)
}

/// A port nobody holds right now (bound, read, released).
fn free_udp_port() -> Result<u16, String> {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// An audio-only PCMU offer or answer naming `media` as the party's address.
fn sdp(session: usize, media: SocketAddr) -> String {
    let ip = media.ip();
    format!(
        "v=0\r\no=- {session} 1 IN IP4 {ip}\r\ns=bench\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        media.port()
    )
}

/// The first audio stream's address: `m=audio <port>` and the `c=` line that
/// applies to it (media-level wins over session-level).
fn media_address(sdp: &str) -> Option<SocketAddr> {
    let mut session_ip = None;
    let mut media: Option<(u16, Option<IpAddr>)> = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(c) = line.strip_prefix("c=IN IP4 ").or_else(|| line.strip_prefix("c=IN IP6 ")) {
            let ip = c.split(['/', ' ']).next()?.parse().ok();
            match media.as_mut() {
                Some((_, m_ip)) => *m_ip = ip,
                None => session_ip = ip,
            }
        } else if let Some(m) = line.strip_prefix("m=") {
            if media.is_some() {
                break;
            }
            let mut fields = m.split(' ');
            if fields.next() == Some("audio") {
                media = Some((fields.next()?.parse().ok()?, None));
            }
        }
    }
    let (port, ip) = media?;
    Some(SocketAddr::new(ip.or(session_ip)?, port))
}

/// A client of rtpengine's ng protocol: `<cookie> <bencoded dict>` per UDP
/// datagram, the reply echoing the cookie. rtpengine caches replies by
/// cookie, so every request gets a fresh one.
struct NgClient {
    socket: UdpSocket,
    server: SocketAddr,
    next: u64,
}

impl NgClient {
    fn new(server: SocketAddr) -> Result<NgClient, String> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("ng socket: {e}"))?;
        socket.set_read_timeout(Some(REPLY)).map_err(|e| e.to_string())?;
        Ok(NgClient { socket, server, next: 0 })
    }

    /// Pings until rtpengine answers `pong`.
    fn wait_ready(&mut self, rtpengine: &mut Agent) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        let ping = Value::dict([("command", Value::str("ping"))]);
        while Instant::now() < deadline {
            if !rtpengine.alive() {
                return Err(format!("rtpengine exited at start; see {}", process::log_path("rtpengine").display()));
            }
            if let Ok(reply) = self.exchange(&ping) {
                if reply.get("result").and_then(Value::as_str) == Some("pong") {
                    return Ok(());
                }
            }
        }
        Err("rtpengine did not answer ng ping".into())
    }

    /// Sends one request (three tries); an `error` result is an error.
    fn request(&mut self, message: &Value) -> Result<Value, String> {
        let mut last = String::new();
        for _ in 0..3 {
            match self.exchange(message) {
                Ok(reply) => {
                    return match reply.get("result").and_then(Value::as_str) {
                        Some("ok") => Ok(reply),
                        _ => Err(format!(
                            "rtpengine refused: {}",
                            reply.get("error-reason").and_then(Value::as_str).unwrap_or("no reason given")
                        )),
                    };
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn exchange(&mut self, message: &Value) -> Result<Value, String> {
        self.next += 1;
        let cookie = format!("{}_{}", std::process::id(), self.next);
        let mut out = cookie.clone().into_bytes();
        out.push(b' ');
        message.encode(&mut out);
        self.socket.send_to(&out, self.server).map_err(|e| format!("ng send: {e}"))?;
        let mut buf = vec![0u8; 65_536];
        loop {
            let len = self.socket.recv(&mut buf).map_err(|e| format!("ng reply: {e}"))?;
            let reply = &buf[..len];
            let Some(space) = reply.iter().position(|&b| b == b' ') else {
                continue;
            };
            if reply[..space] != *cookie.as_bytes() {
                continue; // a late reply to an earlier try
            }
            let (value, _) = Value::decode(&reply[space + 1..]).map_err(|e| format!("ng reply: {e}"))?;
            return Ok(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_address_of_a_reply() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 10046 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtcp:10047\r\n";
        assert_eq!(media_address(sdp), Some("127.0.0.1:10046".parse().unwrap()));
        let media_level = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\n";
        assert_eq!(media_address(media_level), Some("10.0.0.2:4000".parse().unwrap()));
        assert_eq!(media_address("v=0\r\nm=audio 4000 RTP/AVP 0\r\n"), None);
    }

    #[test]
    fn sdp_names_the_party() {
        let s = sdp(7, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(media_address(&s), Some("127.0.0.1:40000".parse().unwrap()));
        assert!(s.contains("o=- 7 1 IN IP4 127.0.0.1\r\n"));
    }
}
