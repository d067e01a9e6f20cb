//! Several `GossipRoutes` in one process on loopback UDP. No fixed sleeps:
//! each test polls for the state it waits for, with a generous bound.

use super::*;
use std::time::Instant;
use PresenceStatus::*;

const KEY: &str = "a fleet key for the tests";

fn ac(n: u8) -> AccountSid {
    AccountSid::parse(&format!("AC{:032x}", n)).unwrap()
}

fn route(appliance: &str, device: u64, identity: &str, status: PresenceStatus) -> DeviceRoute {
    DeviceRoute {
        device: DeviceId(device),
        account: ac(1),
        identity: identity.into(),
        status,
        incoming: true,
        appliance: appliance.into(),
        registered_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + device),
    }
}

async fn node(name: &str, key: &str, seeds: &[SocketAddr]) -> GossipRoutes {
    let mut s = GossipSettings::new(name, "127.0.0.1:0".parse().unwrap(), key);
    s.seeds = seeds.iter().map(|a| a.to_string()).collect();
    s.gossip_interval = Duration::from_millis(100);
    s.max_devices = 100;
    GossipRoutes::start(s).await.unwrap()
}

async fn fleet(n: usize) -> Vec<GossipRoutes> {
    let first = node("bh-0", KEY, &[]).await;
    let seed = first.local_addr();
    let mut all = vec![first];
    for i in 1..n {
        all.push(node(&format!("bh-{i}"), KEY, &[seed]).await);
    }
    wait_for("everyone live", Duration::from_secs(10), || all.iter().all(|r| r.live_peers() == n - 1)).await;
    all
}

/// Polls `cond` every 10 ms until it holds; panics after `limit`.
async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_spread_change_and_go() {
    let all = fleet(3).await;
    let (a, b, c) = (&all[0], &all[1], &all[2]);
    let mut on_b = b.subscribe();
    a.register(route("bh-0", 7, "alice", Available)).unwrap();
    let took = wait_for("seen on B and C", Duration::from_secs(5), || {
        b.presence(&ac(1), "alice").devices == 1 && c.presence(&ac(1), "alice").devices == 1
    })
    .await;
    println!("registration seen everywhere in {took:?}");
    let seen = &c.devices(&ac(1), "alice")[0];
    assert_eq!((seen.appliance.as_str(), seen.device, seen.status), ("bh-0", DeviceId(7), Available));
    assert_eq!(seen.registered_at, route("bh-0", 7, "alice", Available).registered_at);
    assert_eq!(c.ringable(&ac(1), "alice").len(), 1);
    assert_eq!(c.counts().total(), 1, "counts answer the fleet");

    // A device of the same identity on C: both appear on B.
    c.register(route("bh-2", 7, "alice", Away)).unwrap();
    wait_for("two devices on B", Duration::from_secs(5), || b.presence(&ac(1), "alice").devices == 2).await;
    let holders: BTreeSet<String> = b.devices(&ac(1), "alice").into_iter().map(|d| d.appliance).collect();
    assert_eq!(holders, ["bh-0".to_string(), "bh-2".to_string()].into(), "same DeviceId, two appliances");

    a.set_status(DeviceId(7), Busy);
    wait_for("busy on B", Duration::from_secs(5), || b.presence(&ac(1), "alice").status == Busy).await;
    assert!(b.ringable(&ac(1), "alice").is_empty(), "busy and away devices are not rung");

    // The subscriber on B saw A's changes, in order.
    let mut statuses = Vec::new();
    while let Ok(change) = on_b.try_recv() {
        statuses.push((change.presence.status, change.presence.devices));
    }
    assert_eq!(statuses, [(Available, 1), (Available, 2), (Busy, 2)]);

    // A device moving to another identity, then unregistering.
    a.register(route("bh-0", 7, "bob", Available)).unwrap();
    wait_for("moved on C", Duration::from_secs(5), || {
        c.presence(&ac(1), "bob").devices == 1 && c.presence(&ac(1), "alice").devices == 1
    })
    .await;
    assert_eq!(c.devices(&ac(1), "bob")[0].status, Busy, "a move keeps the status");
    a.unregister(DeviceId(7));
    c.unregister(DeviceId(7));
    wait_for("withdrawn on B", Duration::from_secs(5), || b.counts().total() == 0).await;
    assert!(b.list(&ac(1)).is_empty());
    for r in &all {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_appliance_is_withdrawn_everywhere() {
    let all = fleet(3).await;
    for (i, r) in all.iter().enumerate() {
        r.announce(Announcement {
            state: ApplianceState {
                id: ApplianceId::new("ignored"),
                region: Region::new(if i == 2 { "de1" } else { "us1" }),
                draining: i == 1,
                free_media_sessions: 1000,
                load: 0.25,
                services: [Service::Relay].into(),
                alive: true,
            },
            sip: Some("127.0.0.1:5060".parse().unwrap()),
            sip_tls: Some(("127.0.0.1:5061".parse().unwrap(), [i as u8; 32])),
            media_ip: Some("127.0.0.1".parse().unwrap()),
        });
    }
    for d in 0..20 {
        all[2].register(route("bh-2", d, &format!("user{d}"), Available)).unwrap();
    }
    wait_for("routes and announcements", Duration::from_secs(5), || {
        all[..2].iter().all(|r| r.counts().total() == 20 && r.appliances().len() == 3)
    })
    .await;
    let seen = all[0].appliances();
    assert_eq!(seen.iter().map(|a| a.state.id.0.as_str()).collect::<Vec<_>>(), ["bh-0", "bh-1", "bh-2"]);
    assert!(seen[1].state.draining && !seen[0].state.draining);
    assert_eq!(seen[2].state.region, Region::new("de1"));
    assert_eq!(seen[2].media_ip, Some("127.0.0.1".parse().unwrap()));
    assert!((seen[2].state.load - 0.25).abs() < 0.001);
    let latency = all[0].measured_latency();
    assert!(latency.iter().all(|(a, b, _)| a.0 == "us1" && b.0 == "de1"), "{latency:?}");

    let mut on_a = all[0].subscribe();
    all[2].shutdown().await;
    let took = wait_for("withdrawn from A and B", Duration::from_secs(10), || {
        all[..2].iter().all(|r| r.counts().total() == 0)
    })
    .await;
    println!("a dead appliance's 20 routes withdrawn everywhere in {took:?}");
    let offline = std::iter::from_fn(|| on_a.try_recv().ok()).filter(|c| c.presence.status == Offline).count();
    assert_eq!(offline, 20, "subscribers hear every identity go offline");
    let dead = all[0].appliances().into_iter().find(|a| a.state.id.0 == "bh-2").unwrap();
    assert!(!dead.state.alive, "listed dead until forgotten");
    for r in &all {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_never_joins_and_is_counted() {
    let a = node("bh-0", KEY, &[]).await;
    let stranger = node("bh-x", "some other fleet's key", &[a.local_addr()]).await;
    stranger.register(route("bh-x", 1, "mallory", Available)).unwrap();
    wait_for("refusals counted", Duration::from_secs(5), || a.counters().refused_unauthentic >= 3).await;
    assert_eq!(a.live_peers(), 0);
    assert_eq!(a.counts().total(), 0);
    assert_eq!(a.presence(&ac(1), "mallory").devices, 0);
    assert_eq!(stranger.live_peers(), 0, "nor does it learn anything");
    a.shutdown().await;
    stranger.shutdown().await;
}

#[tokio::test]
async fn local_rules_match_the_in_process_store() {
    let mut s = GossipSettings::new("bh-0", "127.0.0.1:0".parse().unwrap(), KEY);
    s.max_devices = 2;
    let r = GossipRoutes::start(s).await.unwrap();
    r.register(route("bh-0", 1, "alice", Offline)).unwrap();
    r.register(route("bh-0", 2, "bob", Available)).unwrap();
    assert_eq!(r.register(route("bh-0", 3, "carol", Available)), Err(RouteError::Full { limit: 2 }));
    r.register(route("bh-0", 1, "alice", Available)).unwrap();
    assert_eq!(r.presence(&ac(1), "alice"), Presence::aggregate("alice", [Available]));
    assert!(matches!(r.register(route("bh-9", 4, "x", Available)), Err(RouteError::ForeignAppliance { .. })));
    assert_eq!(r.register(route("bh-0", 4, "", Available)), Err(RouteError::EmptyIdentity));
    let long = "x".repeat(257);
    assert_eq!(
        r.register(route("bh-0", 4, &long, Available)),
        Err(RouteError::IdentityTooLong { len: 257, limit: 256 }),
        "a change must fit a datagram"
    );
    r.set_status(DeviceId(2), Offline);
    assert_eq!(r.counts().total(), 1);
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_cross_a_chain_of_relays_and_late_joiners_pull_them() {
    // Fanout 1: the tree is a chain bh-0 - bh-1 - bh-2 - bh-3, so a change
    // of bh-0 reaches bh-3 through two relays.
    let start = |name: &str, seeds: Vec<SocketAddr>| {
        let mut s = GossipSettings::new(name, "127.0.0.1:0".parse().unwrap(), KEY);
        s.seeds = seeds.iter().map(|a| a.to_string()).collect();
        s.gossip_interval = Duration::from_millis(100);
        s.feed.fanout = 1;
        GossipRoutes::start(s)
    };
    let a = start("bh-0", vec![]).await.unwrap();
    // Before anyone joins: these arrive by a pull of bh-0's whole feed.
    for d in 0..10 {
        a.register(route("bh-0", d, &format!("user{d}"), Available)).unwrap();
    }
    a.register(DeviceRoute { account: ac(2), ..route("bh-0", 10, "user0", Busy) }).unwrap();
    let mut all = vec![a];
    for i in 1..4 {
        all.push(start(&format!("bh-{i}"), vec![all[0].local_addr()]).await.unwrap());
    }
    wait_for("everyone live", Duration::from_secs(10), || all.iter().all(|r| r.live_peers() == 3)).await;
    let (a, d) = (&all[0], &all[3]);
    wait_for("all on the chain's end", Duration::from_secs(5), || d.counts().total() == 11).await;
    assert_eq!(d.presence(&ac(2), "user0").status, Busy, "same identity, another account");
    a.register(route("bh-0", 3, "user7", Available)).unwrap();
    a.unregister(DeviceId(5));
    a.set_status(DeviceId(9), Away);
    wait_for("moves at the end", Duration::from_secs(5), || {
        d.presence(&ac(1), "user7").devices == 2
            && d.presence(&ac(1), "user3").devices == 0
            && d.presence(&ac(1), "user5").devices == 0
            && d.presence(&ac(1), "user9").status == Away
    })
    .await;
    assert_eq!(d.counts().total(), 10);
    assert!(d.counters().feed.datagrams > 0, "relayed by the feed");
    // chitchat carries the announcement and the feed's head only.
    let cc = a.running.lock().unwrap().as_ref().unwrap().chitchat.chitchat();
    wait_for("head published", Duration::from_secs(5), || d.inner.fleet().feeds.values().any(|f| f.announced > 0))
        .await;
    let keys: Vec<String> = cc.lock().await.self_node_state().key_values().map(|(k, _)| k.to_string()).collect();
    assert_eq!(keys, ["f"], "no route keys in chitchat: {keys:?}");
    for r in &all {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_appliance_reaches_a_late_joiner_by_snapshot() {
    // More devices than its log keeps: the joiner's pull is answered with
    // a snapshot of ~900 datagrams, paced so that it is not lost.
    const DEVICES: u64 = 40_000;
    let mut s = GossipSettings::new("bh-0", "127.0.0.1:0".parse().unwrap(), KEY);
    s.gossip_interval = Duration::from_millis(100);
    let a = GossipRoutes::start(s).await.unwrap();
    for d in 0..DEVICES {
        a.register(route("bh-0", d, &format!("user-{d:06}"), Available)).unwrap();
    }
    a.set_status(DeviceId(7), Busy);
    let b = node("bh-1", KEY, &[a.local_addr()]).await;
    let took = wait_for("all on the joiner", Duration::from_secs(30), || b.counts().total() == DEVICES as usize).await;
    println!("{DEVICES} devices on the joiner in {took:?}");
    assert!(a.counters().feed_snapshots >= 1, "the log did not reach back: a snapshot");
    // Eventually (the snapshot may predate the status change, which then
    // follows in the feed). A CI run once saw it Offline right after the
    // count was complete (docs/status.md, known problems): waited for, and
    // still a failure if it never comes.
    let start = Instant::now();
    while b.presence(&ac(1), "user-000007").status != Busy {
        if start.elapsed() > Duration::from_secs(5) {
            let listed = b.list(&ac(1));
            let near: Vec<_> = listed.iter().filter(|p| p.identity.starts_with("user-00000")).collect();
            panic!(
                "user-000007 not busy on the joiner: {:?}; devices {:?}; counts {:?}; {} identities listed; \
                 user-00000x: {near:?}; feed counters {:?}",
                b.presence(&ac(1), "user-000007"),
                b.devices(&ac(1), "user-000007"),
                b.counts(),
                listed.len(),
                b.counters().feed,
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // And the feed goes on from the snapshot.
    a.unregister(DeviceId(9));
    wait_for("then changes", Duration::from_secs(5), || b.presence(&ac(1), "user-000009").devices == 0).await;
    for r in [&a, &b] {
        r.shutdown().await;
    }
}

#[test]
fn small_resource_moves_wait() {
    let a = Announcement {
        state: ApplianceState {
            id: ApplianceId::new("bh-0"),
            region: Region::new("us1"),
            draining: false,
            free_media_sessions: 10_000,
            load: 0.5,
            services: [Service::Relay, Service::Mix].into(),
            alive: true,
        },
        sip: None,
        sip_tls: Some(("192.0.2.1:5061".parse().unwrap(), [0xab; 32])),
        media_ip: None,
    };
    let decoded = decode_announcement("bh-0", &encode_announcement(&a)).unwrap();
    assert_eq!(decoded, a);
    let mut b = a.clone();
    b.state.free_media_sessions = 9_950;
    b.state.load = 0.52;
    assert!(!worth_publishing(Some(&a), &b));
    b.state.free_media_sessions = 9_800;
    assert!(worth_publishing(Some(&a), &b));
    let mut c = a.clone();
    c.state.draining = true;
    assert!(worth_publishing(Some(&a), &c));
}
