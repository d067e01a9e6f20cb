//! `dataplane-bench load`: the load generator, a child process on its own core.
//!
//! It sends G.711 RTP (12-byte header + 160 bytes of mu-law) round-robin to
//! every session's leg-0 address, as fast as `sendmmsg` lets it, from a few
//! sockets: session `i` is always sent from source `i % sockets`, the address
//! the relays were told is that session's caller. With `--rate PPS` it keeps
//! to that many datagrams per second (in rounds of 64 per socket); without,
//! it sends as fast as the core allows.
//!
//! Protocol (one JSON object per line):
//! - prints `{"sources": ["127.0.0.1:p", ...]}` once its sockets are bound;
//! - reads `{"targets": ["127.0.0.1:p", ...]}` (one per session) and starts;
//! - on each `stats` line prints `{"sent": n, "send_errors": e}`;
//! - stops at `stop` or end of input, printing the totals once more.

use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use std::io::{BufRead, IoSlice};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// RTP header + one 20 ms G.711 frame.
pub const RTP_LEN: usize = 12 + 160;
const PCMU: u8 = 0;
/// Most datagrams per `sendmmsg`.
const BATCH: usize = 64;

/// A G.711 (PCMU) RTP packet of session `i`: its own SSRC, silence payload.
pub fn rtp_packet(session: u32, seq: u16, timestamp: u32) -> [u8; RTP_LEN] {
    let mut p = [0xffu8; RTP_LEN]; // mu-law silence
    p[0] = 0x80; // version 2, no padding, no extension, no CSRC
    p[1] = PCMU;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&timestamp.to_be_bytes());
    p[8..12].copy_from_slice(&(0x5eed_0000 ^ session).to_be_bytes());
    p
}

/// Next packet of the same stream: sequence + 1, timestamp + 160.
fn advance(p: &mut [u8; RTP_LEN]) {
    let seq = u16::from_be_bytes([p[2], p[3]]).wrapping_add(1);
    let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]).wrapping_add(160);
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
}

/// The sessions one source socket sends to, each with its packet (kept
/// current: sequence and timestamp advance with every send) and address.
/// Batches are windows of the list; the last of a round may be shorter.
struct Lane {
    socket: UdpSocket,
    packets: Vec<[u8; RTP_LEN]>,
    addrs: Vec<Option<SockaddrStorage>>,
    cursor: usize,
}

impl Lane {
    fn new(socket: UdpSocket, sessions: &[(u32, SocketAddr)]) -> Lane {
        Lane {
            socket,
            packets: sessions.iter().map(|&(i, _)| rtp_packet(i, 1, 0)).collect(),
            addrs: sessions.iter().map(|&(_, to)| Some(SockaddrStorage::from(to))).collect(),
            cursor: 0,
        }
    }

    /// Sends the next batch; returns (sent, not sent).
    fn send(&mut self, headers: &mut MultiHeaders<SockaddrStorage>) -> (u64, u64) {
        let len = self.packets.len();
        let window = self.cursor..(self.cursor + BATCH).min(len);
        for p in &mut self.packets[window.clone()] {
            advance(p);
        }
        let iovs: [[IoSlice<'_>; 1]; BATCH] = {
            let mut parts = self.packets[window.clone()].iter();
            std::array::from_fn(|_| [IoSlice::new(parts.next().map_or(&[][..], |p| &p[..]))])
        };
        let batch = window.len();
        let sent = match sendmmsg(
            self.socket.as_raw_fd(),
            headers,
            &iovs[..batch],
            &self.addrs[window.clone()],
            [],
            MsgFlags::empty(),
        ) {
            Ok(results) => results.count(),
            Err(_) => 0,
        };
        self.cursor = window.end % len;
        (sent as u64, (batch - sent) as u64)
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dataplane-bench load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let count: usize = arg(args, "--sockets").map_or(Ok(4), |s| s.parse()).map_err(|e| format!("--sockets: {e}"))?;
    // Datagrams per second; 0: as fast as the core allows.
    let rate: u64 = arg(args, "--rate").map_or(Ok(0), |s| s.parse()).map_err(|e| format!("--rate: {e}"))?;
    let sockets = (0..count.max(1))
        .map(|_| UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bind: {e}"))?;
    let sources: Vec<String> = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.to_string()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    println!("{}", serde_json::json!({ "sources": sources }));

    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin.read_line(&mut line).map_err(|e| e.to_string())?;
    let request: serde_json::Value = serde_json::from_str(&line).map_err(|e| format!("targets: {e}"))?;
    let targets: Vec<SocketAddr> = request["targets"]
        .as_array()
        .ok_or("targets: not a list")?
        .iter()
        .map(|t| t.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad target {t}")))
        .collect::<Result<_, _>>()?;
    if targets.len() < sockets.len() {
        return Err(format!("{} targets for {} sockets", targets.len(), sockets.len()));
    }
    let n = sockets.len();
    let mut lanes: Vec<Lane> = sockets
        .into_iter()
        .enumerate()
        .map(|(s, socket)| {
            let sessions: Vec<(u32, SocketAddr)> =
                targets.iter().enumerate().filter(|(i, _)| i % n == s).map(|(i, &to)| (i as u32, to)).collect();
            Lane::new(socket, &sessions)
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let report = {
        let (sent, failed) = (sent.clone(), failed.clone());
        move || {
            println!("{}", serde_json::json!({"sent": sent.load(Relaxed), "send_errors": failed.load(Relaxed)}));
        }
    };
    let sender = {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        std::thread::spawn(move || {
            let mut headers = MultiHeaders::preallocate(BATCH, None);
            let (mut ok, mut bad) = (0u64, 0u64);
            let start = std::time::Instant::now();
            while !stop.load(Relaxed) {
                if rate > 0 {
                    // Ahead of the schedule: wait until it catches up.
                    let due = start.elapsed().as_secs_f64() * rate as f64;
                    let ahead = (ok + bad) as f64 - due;
                    if ahead > 0.0 {
                        std::thread::sleep(std::time::Duration::from_secs_f64(ahead / rate as f64));
                        continue;
                    }
                }
                for lane in &mut lanes {
                    let (s, f) = lane.send(&mut headers);
                    ok += s;
                    bad += f;
                }
                sent.store(ok, Relaxed);
                failed.store(bad, Relaxed);
            }
        })
    };
    for line in stdin.lines() {
        match line.as_deref().map(str::trim) {
            Ok("stats") => report(),
            Ok("stop") | Err(_) => break,
            Ok(_) => {}
        }
    }
    stop.store(true, Relaxed);
    let _ = sender.join();
    report();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_layout() {
        let mut p = rtp_packet(3, 0xffff, 320);
        assert_eq!(&p[..12], &[0x80, 0, 0xff, 0xff, 0, 0, 1, 0x40, 0x5e, 0xed, 0, 3]);
        advance(&mut p);
        assert_eq!(&p[2..8], &[0, 0, 0, 0, 1, 0xe0]);
        assert!(p[12..].iter().all(|&b| b == 0xff));
    }

    #[test]
    fn lanes_send_every_session_in_turn() {
        let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
        let to = rx.local_addr().unwrap();
        let sessions: Vec<(u32, SocketAddr)> = (0..5).map(|i| (i, to)).collect();
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut lane = Lane::new(tx, &sessions);
        let mut headers = MultiHeaders::preallocate(BATCH, None);
        assert_eq!(lane.send(&mut headers), (5, 0));
        assert_eq!(lane.send(&mut headers), (5, 0));
        assert_eq!(lane.cursor, 0);
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        for _ in 0..10 {
            let (len, _) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(len, RTP_LEN);
            seen.push((buf[11], u16::from_be_bytes([buf[2], buf[3]])));
        }
        seen.sort();
        let want: Vec<(u8, u16)> = (0..5).flat_map(|i| [(i, 2), (i, 3)]).collect();
        assert_eq!(seen, want);
    }
}
