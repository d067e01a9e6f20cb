//! The packet path allocates nothing: a counting global allocator watches a
//! burst go through the engine, and through the socket backend's
//! `rx_burst` -> relay -> `tx_burst` on real loopback sockets.

use dataplane::control::{Command, Shared};
use dataplane::engine::checksum_delta::ChecksumDelta;
use dataplane::engine::{Datagram, Engine, Now, Verdict};
use dataplane::io::sockets::{bind_media_socket, SocketIo};
use dataplane::io::PacketIo;
use dataplane::session::table::SessionTable;
use dataplane::session::{LegSettings, LocalEndpoint, SessionId};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the
// counters are thread-local cells with const initialisers, which never allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if WATCHING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if WATCHING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(0));
    WATCHING.with(|w| w.set(true));
    f();
    WATCHING.with(|w| w.set(false));
    ALLOCATIONS.with(Cell::get)
}

struct Plain {
    local: LocalEndpoint,
    source: SocketAddr,
    payload: [u8; 172],
}

impl Datagram for Plain {
    fn local(&self) -> LocalEndpoint {
        self.local
    }
    fn source(&self) -> SocketAddr {
        self.source
    }
    fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.payload
    }
    fn readdress(&mut self, _: u32, from: LocalEndpoint, _: SocketAddr, _: ChecksumDelta) {
        self.local = from;
    }
}

fn rtp(seq: u16) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    p
}

fn settings(remote: SocketAddr, rewrite: bool) -> LegSettings {
    LegSettings { remote: Some(remote), ssrc_rewrite: rewrite, ..Default::default() }
}

#[test]
fn engine_relay_allocates_nothing() {
    let shared = Arc::new(Shared::new(1, 1024, Duration::from_secs(30)));
    let mut engine = Engine::new(0, SessionTable::new(0, 1, 1024, 1, 20000..=29999), shared);
    let a: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let b: SocketAddr = "192.0.2.2:4000".parse().unwrap();
    for slot in 0..512u32 {
        let locals = [
            LocalEndpoint { addr: 0, port: 20000 + slot as u16 * 4 },
            LocalEndpoint { addr: 0, port: 20002 + slot as u16 * 4 },
        ];
        let command =
            Command::Install { id: SessionId::new(slot, 1), locals, settings: [settings(a, true), settings(b, true)] };
        engine.apply(Now::default(), command).unwrap();
    }
    let mut burst: Vec<Plain> = (0..512u16)
        .map(|i| Plain { local: LocalEndpoint { addr: 0, port: 20000 + i * 4 }, source: a, payload: rtp(i) })
        .collect();
    let n = allocations_during(|| {
        for round in 0..4 {
            for (i, dg) in burst.iter_mut().enumerate() {
                dg.local = LocalEndpoint { addr: 0, port: 20000 + i as u16 * 4 };
                dg.payload = rtp(round);
                assert_eq!(engine.relay(Now { us: u64::from(round) * 20_000 }, dg), Verdict::Forward);
            }
            engine.scan_timeouts(Now { us: u64::from(round) * 20_000 }, 4096);
        }
    });
    assert_eq!(n, 0, "allocations on the engine's packet path");
}

#[test]
fn socket_backend_burst_allocates_nothing() {
    let waker = Arc::new(nix::sys::eventfd::EventFd::new().unwrap());
    let mut io = SocketIo::new(waker, 16, 1, 1..=65535).unwrap();
    let shared = Arc::new(Shared::new(1, 8, Duration::from_secs(30)));
    let mut engine = Engine::new(0, SessionTable::new(0, 1, 8, 1, 1..=65535), shared.clone());

    let peer_a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_b = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer_b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // Two even ports the kernel gives us: bind, and retry on odd ones.
    let mut legs = Vec::new();
    while legs.len() < 2 {
        let s = bind_media_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        if s.local_addr().unwrap().port().is_multiple_of(2) {
            legs.push(s);
        }
    }
    let locals =
        legs.iter().map(|s| LocalEndpoint { addr: 0, port: s.local_addr().unwrap().port() }).collect::<Vec<_>>();
    let id = SessionId::new(0, 1);
    let command = Command::Install {
        id,
        locals: [locals[0], locals[1]],
        settings: [settings(peer_a.local_addr().unwrap(), false), settings(peer_b.local_addr().unwrap(), true)],
    };
    engine.apply(Now::default(), command).unwrap();
    let target = legs[0].local_addr().unwrap();
    for (leg, (local, socket)) in legs.into_iter().enumerate().map(|(i, s)| (i, (locals[i], s))) {
        io.attach(leg as u32, vec![(local, Some(socket))]);
    }

    let mut relayed = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut allocations = 0;
    for round in 0..20u16 {
        for i in 0..16 {
            peer_a.send_to(&rtp(round * 16 + i), target).unwrap();
        }
        let mut got = 0;
        while got < 16 && Instant::now() < deadline {
            allocations += allocations_during(|| {
                let batch = io.rx_burst(Some(Duration::from_millis(10)));
                got += batch.len();
                for dg in batch.iter_mut() {
                    engine.relay(Now::default(), dg);
                }
                io.tx_burst(&shared.workers[0]);
            });
        }
        relayed += got;
        // Read them as we go: the receiver's socket buffer holds a few dozen.
        let mut buf = [0u8; 2048];
        for _ in 0..got {
            let (n, from) = peer_b.recv_from(&mut buf).expect("relayed datagram arrives");
            assert_eq!((n, from.port()), (172, locals[1].port));
        }
    }
    assert_eq!(relayed, 320, "every datagram received");
    assert_eq!(allocations, 0, "allocations in rx_burst/relay/tx_burst");
}
