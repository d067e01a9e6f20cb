//! `kernel_relay`: a plain kernel UDP relay, the reference `dataplane-bench`
//! measures the socket backend against.
//!
//! It does what a straightforward relay written with the kernel's socket API
//! does, and nothing clever: one thread, one nonblocking UDP socket per leg,
//! a level-triggered `epoll` over all of them, and for each ready socket one
//! `recvfrom` and one `sendto` per datagram until the socket runs dry
//! (`EAGAIN`). A datagram that reaches leg 0 of a session leaves from its leg
//! 1 towards leg 1's peer, and the other way round. No batching
//! (`recvmmsg`/`sendmmsg`), no RTP parsing, no rewrite. Socket buffers keep
//! the system defaults.
//!
//! ```text
//! kernel_relay --sessions N --sources A,B,.. --sinks X,Y,..
//! ```
//! Session `i`: leg 0's peer is source `i % sources`, leg 1's peer is sink
//! `i % sinks`; every leg binds an ephemeral port on 127.0.0.1. It speaks the
//! relay protocol of `dataplane-bench` on stdin/stdout:
//! - prints `{"targets": ["127.0.0.1:p", ...]}`: each session's leg-0 address;
//! - on each `stats` line prints `{"rx_packets", "tx_packets", "dropped"}`;
//! - exits at end of input.
//!
//! `epoll` comes through `nix` (std has none), already a dependency of this
//! crate; it is the only thing taken from outside std.

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::io::{BufRead, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 256;

#[derive(Default)]
struct Counters {
    rx: AtomicU64,
    tx: AtomicU64,
    dropped: AtomicU64,
}

fn arg<'a>(args: &'a [String], name: &str) -> Result<&'a str, String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .ok_or_else(|| format!("missing {name}"))
}

fn addr_list(list: &str) -> Result<Vec<SocketAddr>, String> {
    list.split(',').map(|a| a.parse().map_err(|e| format!("{a}: {e}"))).collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kernel_relay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let sessions: usize = arg(args, "--sessions")?.parse().map_err(|e| format!("--sessions: {e}"))?;
    let sources = addr_list(arg(args, "--sources")?)?;
    let sinks = addr_list(arg(args, "--sinks")?)?;
    if sessions == 0 || sources.is_empty() || sinks.is_empty() {
        return Err("need sessions, sources and sinks".into());
    }

    // Socket 2i is session i's leg 0, 2i + 1 its leg 1; `peer[j]` is where a
    // datagram leaving from socket j goes.
    let mut sockets = Vec::with_capacity(2 * sessions);
    let mut peer = Vec::with_capacity(2 * sessions);
    for i in 0..sessions {
        for remote in [sources[i % sources.len()], sinks[i % sinks.len()]] {
            let s =
                UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind leg {}: {e}", sockets.len()))?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            sockets.push(s);
            peer.push(remote);
        }
    }
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| e.to_string())?;
    for (j, s) in sockets.iter().enumerate() {
        epoll.add(s.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, j as u64)).map_err(|e| format!("epoll add: {e}"))?;
    }
    let targets: Vec<String> = (0..sessions)
        .map(|i| sockets[2 * i].local_addr().map(|a| a.to_string()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    println!("{}", serde_json::json!({ "targets": targets }));

    let counters = Arc::new(Counters::default());
    {
        let counters = counters.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if line.trim() == "stats" {
                    println!(
                        "{}",
                        serde_json::json!({
                            "rx_packets": counters.rx.load(Relaxed),
                            "tx_packets": counters.tx.load(Relaxed),
                            "dropped": counters.dropped.load(Relaxed),
                        })
                    );
                }
            }
            std::process::exit(0);
        });
    }

    let mut events = [EpollEvent::empty(); EVENTS];
    let mut buf = [0u8; 2048];
    let (mut rx, mut tx, mut dropped) = (0u64, 0u64, 0u64);
    loop {
        let ready = match epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("epoll_wait: {e}")),
        };
        for event in &events[..ready] {
            let j = event.data() as usize;
            loop {
                match sockets[j].recv_from(&mut buf) {
                    Ok((len, _)) => {
                        rx += 1;
                        match sockets[j ^ 1].send_to(&buf[..len], peer[j ^ 1]) {
                            Ok(_) => tx += 1,
                            Err(_) => dropped += 1,
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // A queued socket error: reported once; epoll says when to read again.
                    Err(_) => break,
                }
            }
        }
        // Single writer: plain stores, read by the stats thread.
        counters.rx.store(rx, Relaxed);
        counters.tx.store(tx, Relaxed);
        counters.dropped.store(dropped, Relaxed);
    }
}
