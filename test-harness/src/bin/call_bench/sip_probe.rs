//! Waits until a SIP server answers: an OPTIONS over UDP, repeated until
//! any response comes back (kamailio here answers 405, bridgehead 200).

use crate::rig::Rig;
use anyhow::{bail, Result};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Returns the status line of the first response.
pub fn wait_answer(rig: &Rig, server: SocketAddr, within: Duration) -> Result<String> {
    let socket = rig.inside(|| UdpSocket::bind("127.0.0.1:0"))??;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let local = socket.local_addr()?;
    let deadline = Instant::now() + within;
    let mut n = 0u32;
    while Instant::now() < deadline {
        n += 1;
        let request = format!(
            "OPTIONS sip:{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-callbench-probe-{n}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:probe@{local}>;tag=probe{n}\r\n\
             To: <sip:{server}>\r\n\
             Call-ID: callbench-probe-{n}@{local}\r\n\
             CSeq: {n} OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        socket.send_to(request.as_bytes(), server)?;
        let mut buf = [0u8; 4096];
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..len]);
            if text.starts_with("SIP/2.0 ") {
                return Ok(text.lines().next().unwrap_or_default().to_string());
            }
        }
    }
    bail!("{server} did not answer SIP OPTIONS within {within:?}")
}
