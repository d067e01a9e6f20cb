//! Runs the safe layer against DPDK's virtual devices: no hugepages, no NIC.
//!
//! The EAL initialises once per process, so everything is one `#[test]`,
//! in steps that each say what they check.
// One unsafe block: the into_raw/from_raw round trip the burst APIs rely on.
#![allow(unsafe_code)]

use dpdk_sys::{Burst, Eal, Error, Mempool, Port, PortConfig, PortId, QueueId, TxChecksum, BURST_SIZE};

const POOL_MBUFS: u32 = 8191;

fn eal_args() -> Vec<String> {
    [
        "dpdk-sys-test".to_owned(),
        "--no-huge".to_owned(),
        "--no-pci".to_owned(),
        "-m".to_owned(),
        "512".to_owned(),
        "--vdev=net_null0".to_owned(),
        "--vdev=net_null1".to_owned(),
        "--vdev=net_ring0".to_owned(),
        format!("--file-prefix=bh-test-{}", std::process::id()),
        // No runtime files under /var/run/dpdk (nor shared config): this
        // process is the only one using this EAL.
        "--no-shconf".to_owned(),
        "--log-level=error".to_owned(),
    ]
    .to_vec()
}

fn data_room() -> u16 {
    dpdk_sys::ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16
}

#[test]
fn eal_mempool_ports_and_bursts() {
    let eal = Eal::init(&eal_args()).expect("EAL init with virtual devices");
    assert!(Eal::version().starts_with("DPDK 22.11"), "{}", Eal::version());
    assert!(eal.tsc_hz() > 0);
    let t0 = Eal::rdtsc();
    assert!(Eal::rdtsc() >= t0);

    second_init_is_refused();
    let pool = Mempool::new_pktmbuf(&eal, "bh_test_pool", POOL_MBUFS, 0, data_room()).expect("mempool");
    assert_eq!(pool.capacity(), POOL_MBUFS);
    assert_eq!(pool.available(), POOL_MBUFS);
    mempool_errors(&eal);
    port_lookup_errors(&eal);
    mbuf_editing(&pool);
    burst_ownership(&pool);
    rx_from_null(&eal, &pool);
    tx_into_null(&eal, &pool);
    loop_through_ring(&eal, &pool);

    // Every mbuf went back: those we dropped, those the drivers freed.
    assert_eq!(pool.in_use(), 0);
    assert_eq!(pool.available(), POOL_MBUFS);

    // The last handles go: the pool is freed, then rte_eal_cleanup runs.
    drop(pool);
    drop(eal);
    remove_runtime_dir();
}

/// EAL leaves a runtime directory named after the file prefix even with
/// `--no-shconf` (root: /var/run/dpdk, others: the XDG runtime dir or /tmp);
/// ours carries this process's id, so nobody else uses it.
fn remove_runtime_dir() {
    let prefix = format!("bh-test-{}", std::process::id());
    let bases = [Some("/var/run".to_owned()), std::env::var("XDG_RUNTIME_DIR").ok(), Some("/tmp".to_owned())];
    for base in bases.into_iter().flatten() {
        let _ = std::fs::remove_dir_all(format!("{base}/dpdk/{prefix}"));
    }
}

fn second_init_is_refused() {
    assert!(matches!(Eal::init(&eal_args()), Err(Error::EalAlreadyInitialised)));
}

fn mempool_errors(eal: &Eal) {
    let err = Mempool::new_pktmbuf(eal, "bh_test_pool", 63, 0, data_room()).unwrap_err();
    assert!(
        matches!(&err, Error::MempoolCreate(name, errno) if name == "bh_test_pool" && errno.0 == libc::EEXIST),
        "{err}"
    );
    let long = "x".repeat(dpdk_sys::MEMPOOL_NAME_MAX + 1);
    let err = Mempool::new_pktmbuf(eal, &long, 63, 0, data_room()).unwrap_err();
    assert!(matches!(&err, Error::MempoolCreate(_, errno) if errno.0 == libc::ENAMETOOLONG), "{err}");
    assert!(err.to_string().contains("too long"), "{err}");
}

fn port_lookup_errors(eal: &Eal) {
    let err = Port::by_name(eal, "net_bogus7").unwrap_err();
    assert!(matches!(&err, Error::PortNotFound(name) if name == "net_bogus7"), "{err}");
    let held = Port::by_name(eal, "net_null1").expect("net_null1");
    assert!(matches!(Port::by_name(eal, "net_null1"), Err(Error::PortInUse(_))));
    drop(held);
    // Released on drop.
    drop(Port::by_name(eal, "net_null1").expect("net_null1 again"));
}

fn mbuf_editing(pool: &Mempool) {
    let mut m = pool.alloc().expect("an mbuf");
    assert_eq!(pool.in_use(), 1);
    assert!(m.is_empty());
    assert_eq!(m.headroom(), dpdk_sys::ffi::RTE_PKTMBUF_HEADROOM as usize);
    let room = m.tailroom();
    assert_eq!(room, usize::from(data_room()) - m.headroom());

    m.append(4).unwrap().copy_from_slice(b"body");
    m.prepend(3).unwrap().copy_from_slice(b"hdr");
    assert_eq!(m.data(), b"hdrbody");
    assert_eq!((m.len(), m.pkt_len(), m.segments()), (7, 7, 1));
    m.adj(3).unwrap();
    assert_eq!(m.data(), b"body");
    m.trim(2).unwrap();
    assert_eq!(m.data(), b"bo");
    m.data_mut()[1] = b'!';
    assert_eq!(m.data(), b"b!");

    assert!(m.append(u16::MAX).is_err(), "no room for 64 KiB");
    assert!(m.adj(3).is_err() && m.trim(3).is_err(), "only 2 bytes to remove");
    assert!(m.prepend(m.headroom() as u16 + 1).is_err());
    assert_eq!(m.data(), b"b!", "failed edits leave the mbuf alone");

    m.set_tx_checksum_offload(14, 20, TxChecksum { ipv4: true, udp: true });
    let f = m.ol_flags();
    assert_ne!(f & dpdk_sys::ffi::RTE_MBUF_F_TX_IPV4, 0);
    assert_ne!(f & dpdk_sys::ffi::RTE_MBUF_F_TX_IP_CKSUM, 0);
    assert_eq!(f & dpdk_sys::ffi::RTE_MBUF_F_TX_L4_MASK, dpdk_sys::ffi::RTE_MBUF_F_TX_UDP_CKSUM);
    m.reset();
    assert!(m.is_empty());

    // into_raw / from_raw round trip keeps ownership with exactly one owner.
    let raw = m.into_raw();
    assert_eq!(pool.in_use(), 1);
    // SAFETY: raw came from into_raw just above and nothing else holds it.
    let m = unsafe { dpdk_sys::Mbuf::from_raw(raw) };
    drop(m);
    assert_eq!(pool.in_use(), 0, "dropping an Mbuf frees it to its pool");
}

fn burst_ownership(pool: &Mempool) {
    let mut burst = Burst::new();
    assert!(pool.alloc_bulk(&mut burst, 20));
    assert_eq!(burst.len(), 20);
    assert!(!pool.alloc_bulk(&mut burst, BURST_SIZE), "all or none");
    assert_eq!(burst.len(), 20);
    while burst.push(pool.alloc().unwrap()).is_ok() {}
    assert!(burst.is_full());
    assert_eq!(pool.in_use(), BURST_SIZE as u32);

    for (i, m) in burst.as_mut_slice().iter_mut().enumerate() {
        m.append(1).unwrap()[0] = i as u8;
    }
    burst.retain(|m| m.data()[0] % 2 == 0);
    assert_eq!(burst.len(), BURST_SIZE / 2);
    assert_eq!(pool.in_use(), (BURST_SIZE / 2) as u32);
    assert!(burst.as_slice().iter().enumerate().all(|(k, m)| usize::from(m.data()[0]) == 2 * k));

    let first_two: Vec<_> = burst.drain().take(2).collect();
    assert!(burst.is_empty());
    assert_eq!(pool.in_use(), 2, "the drain freed what it did not yield");
    drop(first_two);

    assert!(pool.alloc_bulk(&mut burst, 5));
    drop(burst);
    assert_eq!(pool.in_use(), 0, "dropping a burst frees its mbufs");
}

fn started_port(eal: &Eal, name: &str, pool: &Mempool) -> Port {
    let mut port = Port::by_name(eal, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let config = PortConfig {
        rx_desc: 256,
        tx_desc: 256,
        tx_checksum: TxChecksum { ipv4: true, udp: true },
        ..PortConfig::default()
    };
    port.configure(&config, pool).unwrap_or_else(|e| panic!("{name}: {e}"));
    // Offloads are enabled only as far as the device offers them.
    let (capa, on) = (port.tx_checksum_capa(), port.tx_checksum());
    assert!(!on.ipv4 || capa.ipv4);
    assert!(!on.udp || capa.udp);
    port.start().unwrap_or_else(|e| panic!("{name}: {e}"));
    port.promiscuous(true).unwrap_or_else(|e| panic!("{name}: {e}"));
    port
}

fn rx_from_null(eal: &Eal, pool: &Mempool) {
    let mut port = started_port(eal, "net_null0", pool);
    assert_eq!(port.driver(), "net_null");
    assert!(port.link_up().unwrap());
    let _mac = port.mac_addr().unwrap();
    let _socket = port.socket_id();

    let mut burst = Burst::new();
    assert_eq!(port.rx_burst(QueueId(1), &mut burst), 0, "queue 1 is not configured");
    let n = port.rx_burst(QueueId(0), &mut burst);
    assert_eq!(n, BURST_SIZE, "net_null fills every slot");
    assert_eq!(port.rx_burst(QueueId(0), &mut burst), 0, "a full burst receives nothing");
    assert_eq!(pool.in_use(), BURST_SIZE as u32);
    for m in burst.as_slice() {
        assert_eq!(m.port(), port.id());
        assert_eq!(m.len(), 64, "net_null's default packet size");
    }
    burst.clear();
    assert_eq!(pool.in_use(), 0);

    let stats = port.stats().unwrap();
    assert_eq!(stats.ipackets, BURST_SIZE as u64);
    // net_null (like net_ring) counts packets only; ibytes/obytes stay 0.
    port.reset_stats().unwrap();
    assert_eq!(port.stats().unwrap().ipackets, 0);

    port.stop().unwrap();
    assert_eq!(port.rx_burst(QueueId(0), &mut burst), 0, "a stopped port moves nothing");
}

fn tx_into_null(eal: &Eal, pool: &Mempool) {
    let mut port = started_port(eal, "net_null1", pool);
    let mut burst = Burst::new();
    assert_eq!(port.tx_burst(QueueId(0), &mut burst), 0, "nothing to send");
    assert!(pool.alloc_bulk(&mut burst, BURST_SIZE));
    for m in burst.as_mut_slice() {
        m.append(100).unwrap().fill(0xab);
    }
    assert_eq!(port.tx_prepare(QueueId(0), &mut burst), Ok(BURST_SIZE));
    assert_eq!(port.tx_burst(QueueId(0), &mut burst), BURST_SIZE);
    assert!(burst.is_empty());
    assert_eq!(pool.in_use(), 0, "net_null frees what it sends");
    let stats = port.stats().unwrap();
    assert_eq!((stats.opackets, stats.oerrors), (BURST_SIZE as u64, 0));
}

fn loop_through_ring(eal: &Eal, pool: &Mempool) {
    // A net_ring vdev created from the command line has one ring per queue
    // pair, shared by tx and rx: what it sends, it receives.
    let mut port = started_port(eal, "net_ring0", pool);
    assert_eq!(port.id(), PortId(2));
    let mut burst = Burst::new();
    for seq in 0..8u8 {
        let mut m = pool.alloc().unwrap();
        let frame = m.append(60).unwrap();
        frame[..12].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1]);
        frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // local experimental ethertype
        frame[14..].fill(seq);
        burst.push(m).unwrap();
    }
    assert_eq!(port.tx_burst(QueueId(0), &mut burst), 8);
    assert_eq!(pool.in_use(), 8, "the ring holds them");

    let n = port.rx_burst(QueueId(0), &mut burst);
    assert_eq!(n, 8);
    for (seq, m) in burst.drain().enumerate() {
        assert_eq!(m.len(), 60);
        assert_eq!(&m.data()[12..14], &[0x88, 0xb5]);
        assert!(m.data()[14..].iter().all(|&b| usize::from(b) == seq), "order and payload kept");
    }
    let stats = port.stats().unwrap();
    assert_eq!((stats.ipackets, stats.opackets), (8, 8));
}
