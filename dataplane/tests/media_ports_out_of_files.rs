//! Out of open files: binding a new media port fails, the session is
//! refused with the error, the workers close their idle media sockets, and
//! the next session binds; sessions already up keep relaying. A port range
//! wider than the limit allows is used only in part. Its own test binary,
//! because it lowers the process's open-file limit (one test at a time).

use dataplane::control::{ControlError, SessionRequest};
use dataplane::session::LegSettings;
use dataplane::{Dataplane, DataplaneConfig};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// The open-file limit that leaves exactly `free` descriptor numbers to open.
fn limit_leaving(free: usize) -> u64 {
    let open: std::collections::HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The listing's own descriptor was open while listing: it is free again.
    let listing = open.iter().copied().filter(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).is_err()).max();
    let mut left = free;
    (0u64..)
        .find(|fd| {
            if !open.contains(fd) || Some(*fd) == listing {
                left -= 1;
            }
            left == 0
        })
        .map_or(0, |fd| fd + 1)
}

/// The open-file limit is the process's: one test changes it at a time.
static LIMIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_range_wider_than_the_file_limit_is_used_in_part() {
    let _one = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 400, hard).unwrap();
    // 700 ports, 400 files: half of them kept for everything else, 200 ports used.
    let config = DataplaneConfig { ports: 46300..=46999, workers: 1, sessions: 1000, ..DataplaneConfig::default() };
    let dataplane = Dataplane::start(config).expect("dataplane starts");
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert_eq!(dataplane.handle().free_sessions(), 50, "200 ports make 100 legs, 50 sessions");
    dataplane.stop();
}

#[test]
fn out_of_files_closes_idle_sockets_and_refuses_one_session() {
    let _one = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let config = DataplaneConfig { ports: 46200..=46279, workers: 1, sessions: 64, ..DataplaneConfig::default() };
    let dataplane = Dataplane::start(config).expect("dataplane starts");
    let h = dataplane.handle();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    b.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let leg = |s: &UdpSocket| LegSettings { remote: Some(s.local_addr().unwrap()), ..LegSettings::default() };
    let request = SessionRequest { legs: [leg(&a), leg(&b)], rtcp_mux: false };

    // One session that stays up, and ten that leave 40 idle sockets behind.
    let kept = h.create_session(request).unwrap();
    let gone: Vec<_> = (0..10).map(|_| h.create_session(request).unwrap()).collect();
    for s in gone {
        h.delete_session(s.id).unwrap();
    }

    // Room for two more files: the next session needs four new sockets.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, limit_leaving(2), hard).unwrap();
    let refused = h.create_session(request).expect_err("no file left for the new ports");
    assert!(
        matches!(&refused, ControlError::BindSocket(_, e) if e.raw_os_error() == Some(nix::errno::Errno::EMFILE as i32)),
        "{refused}"
    );

    // The worker closes idle sockets; a later session binds.
    let deadline = Instant::now() + Duration::from_secs(5);
    let next = loop {
        match h.create_session(request) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("sessions never bind again: {e}"),
        }
    };
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert_ne!(next.legs[0].local, kept.legs[0].local);

    a.send_to(&[0x80, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 0xd5, 0xd5], kept.legs[0].local).unwrap();
    let mut buf = [0u8; 64];
    assert!(b.recv_from(&mut buf).is_ok(), "the session that was up still relays");
    dataplane.stop();
}
