//! `route-bench`: how fast client routes cross a fleet by gossip, and what
//! it costs (docs/fleet.md, "Figures").
//!
//! ```text
//!  route-bench (one process, a tokio runtime of 2 threads)
//!   ├─ N GossipRoutes (real chitchat nodes, sealed UDP on 127.0.0.1, seeded by the first three)
//!   ├─ load: R routes spread round-robin over the N appliances, 100 accounts
//!   ├─ churn: C changes/s fleet-wide for D s (60 % status flips, 20 % moves
//!   │         to another appliance, 20 % unregistrations/registrations);
//!   │         ~20 changes/s sampled: time until every appliance sees it
//!   ├─ a new appliance joins: time until it holds every route
//!   └─ kill one appliance: time until its routes are gone everywhere
//! ```
//!
//! Progress on stderr; last, one JSON line on stdout.

use controlplane::routes::gossip::{FeedTiming, GossipCounts};
use controlplane::routes::policy::{ApplianceId, ApplianceState, Region, Service};
use controlplane::routes::{
    Announcement, DeviceId, DeviceRoute, GossipRoutes, GossipSettings, PresenceStatus, RouteStore,
};
use controlplane::store::AccountSid;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

const USAGE: &str = "\
usage: route-bench [--appliances N] [--routes R] [--changes-per-s C] [--duration-s D]
                   [--gossip-ms G] [--phi P] [--compress 0|1]
                   [--batch-ms B] [--flush-ms F] [--fanout K] [--peers-per-round P] [--regions G]
  --appliances N     chitchat nodes in this process (default 50)
  --routes R         client routes spread over them (default 100000)
  --changes-per-s C  route changes per second, fleet-wide (default 1000)
  --duration-s D     length of the churn phase (default 20)
  --gossip-ms G      gossip interval (default 150, the appliance's default)
  --phi P            failure detector threshold (default 8, the appliance's default)
  --batch-ms B       an appliance's own route changes leave every B ms (default 300)
  --flush-ms F       relayed route changes wait at most F ms per hop (default 100)
  --fanout K         children per appliance in the route relay tree (default 4)
  --peers-per-round P  live peers a gossip round talks to (default 1; chitchat's own is 3)
  --regions G        appliances announce G regions round-robin (default 1); the relay tree
                     keeps each region's links inside it
  --compress 0|1     zstd on gossip messages (default 1, the appliance's default)";

const KEY: &str = "route-bench fleet key, not a secret";
const ACCOUNTS: usize = 100;

struct Options {
    appliances: usize,
    routes: usize,
    changes_per_s: f64,
    duration_s: f64,
    gossip_ms: u64,
    phi: f64,
    compress: bool,
    feed: FeedTiming,
    peers_per_round: usize,
    regions: usize,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        appliances: 50,
        routes: 100_000,
        changes_per_s: 1000.0,
        duration_s: 20.0,
        gossip_ms: 150,
        phi: 8.0,
        compress: true,
        feed: FeedTiming::default(),
        peers_per_round: 1,
        regions: 1,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let bad = || format!("{arg} {value}: not a number");
        match arg.as_str() {
            "--appliances" => o.appliances = value.parse().map_err(|_| bad())?,
            "--routes" => o.routes = value.parse().map_err(|_| bad())?,
            "--changes-per-s" => o.changes_per_s = value.parse().map_err(|_| bad())?,
            "--duration-s" => o.duration_s = value.parse().map_err(|_| bad())?,
            "--gossip-ms" => o.gossip_ms = value.parse().map_err(|_| bad())?,
            "--phi" => o.phi = value.parse().map_err(|_| bad())?,
            "--compress" => o.compress = value != "0",
            "--batch-ms" => o.feed.batch = Duration::from_millis(value.parse().map_err(|_| bad())?),
            "--flush-ms" => o.feed.flush = Duration::from_millis(value.parse().map_err(|_| bad())?),
            "--fanout" => o.feed.fanout = value.parse().map_err(|_| bad())?,
            "--peers-per-round" => o.peers_per_round = value.parse().map_err(|_| bad())?,
            "--regions" => o.regions = value.parse::<usize>().map_err(|_| bad())?.max(1),
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    if o.appliances < 2 {
        return Err("--appliances must be at least 2".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("route-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("route-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("route-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// xorshift64*: reproducible churn without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One client route as the bench placed it.
struct Client {
    account: AccountSid,
    identity: String,
    /// (appliance, device) while registered.
    at: Option<(usize, u64)>,
    status: PresenceStatus,
    /// Sampled and not yet seen everywhere: left alone meanwhile.
    in_flight: bool,
}

/// A sampled change and what every appliance must show once it arrived.
struct Sample {
    client: usize,
    started: Instant,
    expect: Expect,
}

enum Expect {
    Status(PresenceStatus),
    /// One device, on this appliance.
    HeldBy(String),
    Absent,
}

fn account(n: usize) -> AccountSid {
    // 34 characters: AC + 32 hex digits, a valid SID by construction.
    AccountSid::parse(&format!("AC{n:032x}")).unwrap_or_else(|_| unreachable!("AC + 32 hex digits is a SID"))
}

async fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<Duration, String> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return Err(format!("{what}: not within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(start.elapsed())
}

/// CPU seconds this process used (user + system), from /proc (USER_HZ is
/// 100 on Linux); 0 where /proc is not there.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The fleet's transport counters added up.
fn totals(nodes: &[GossipRoutes]) -> GossipCounts {
    let mut t = GossipCounts::default();
    for c in nodes.iter().map(GossipRoutes::counters) {
        t.datagrams_sent += c.datagrams_sent;
        t.bytes_sent += c.bytes_sent;
        for (sum, k) in [(&mut t.syn, c.syn), (&mut t.syn_ack, c.syn_ack), (&mut t.ack, c.ack), (&mut t.feed, c.feed)] {
            sum.datagrams += k.datagrams;
            sum.bytes += k.bytes;
        }
        t.digest_bytes += c.digest_bytes;
        t.feed_pulls += c.feed_pulls;
        t.feed_repairs += c.feed_repairs;
        t.feed_snapshots += c.feed_snapshots;
        t.delta_bytes += c.delta_bytes;
        t.plain_bytes += c.plain_bytes;
        t.packed_bytes += c.packed_bytes;
    }
    t
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One appliance's gossip settings as the options say, on loopback.
fn settings(o: &Options, name: &str, seeds: &[String]) -> GossipSettings {
    let mut s = GossipSettings::new(name, ([127, 0, 0, 1], 0).into(), KEY);
    s.seeds = seeds.to_vec();
    s.gossip_interval = Duration::from_millis(o.gossip_ms);
    s.phi_threshold = o.phi;
    s.compress = o.compress;
    s.feed = o.feed;
    s.peers_per_round = o.peers_per_round;
    s
}

async fn run(o: Options) -> Result<String, String> {
    let n = o.appliances;
    let name = |i: usize| format!("bh-{i:03}");
    let t = Instant::now();
    let mut nodes: Vec<GossipRoutes> = Vec::with_capacity(n);
    let mut seeds = Vec::new();
    for i in 0..n {
        let node = GossipRoutes::start(settings(&o, &name(i), &seeds)).await.map_err(|e| e.to_string())?;
        node.announce(Announcement {
            state: ApplianceState {
                id: ApplianceId::new(name(i)),
                region: Region::new(format!("r{}", i % o.regions)),
                draining: false,
                free_media_sessions: 10_000,
                load: 0.0,
                services: [Service::Relay].into(),
                alive: true,
            },
            sip: None,
            sip_tls: None,
            media_ip: None,
        });
        if i < 3 {
            seeds.push(node.local_addr().to_string());
        }
        nodes.push(node);
    }
    let formed =
        wait("fleet formed", Duration::from_secs(120), || nodes.iter().all(|r| r.live_peers() == n - 1)).await?;
    eprintln!("route-bench: {n} appliances formed a fleet in {:.2} s", (t.elapsed()).as_secs_f64());
    let _ = formed;

    // ---- load ----
    let t = Instant::now();
    let mut clients: Vec<Client> = (0..o.routes)
        .map(|i| Client {
            account: account(i % ACCOUNTS),
            identity: format!("client-{i:07}"),
            at: Some((i % n, i as u64)),
            status: PresenceStatus::Available,
            in_flight: false,
        })
        .collect();
    let registered_at = SystemTime::now();
    let register = |nodes: &[GossipRoutes], c: &Client, at: (usize, u64)| {
        let route = DeviceRoute {
            device: DeviceId(at.1),
            account: c.account.clone(),
            identity: c.identity.clone(),
            status: c.status,
            incoming: true,
            appliance: name(at.0),
            registered_at,
        };
        nodes[at.0].register(route).map_err(|e| e.to_string())
    };
    for (i, c) in clients.iter().enumerate() {
        register(&nodes, c, (i % n, i as u64))?;
        if i % 1000 == 999 {
            tokio::task::yield_now().await;
        }
    }
    let routes = o.routes;
    wait("routes loaded everywhere", Duration::from_secs(300), || nodes.iter().all(|r| r.counts().total() == routes))
        .await?;
    eprintln!("route-bench: {routes} routes on every appliance after {:.2} s", t.elapsed().as_secs_f64());

    // ---- churn ----
    let before = totals(&nodes);
    let before_each: Vec<u64> = nodes.iter().map(|r| r.counters().bytes_sent).collect();
    let cpu_before = cpu_s();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut next_device = o.routes as u64;
    let mut samples: Vec<Sample> = Vec::new();
    let mut propagation_ms: Vec<f64> = Vec::new();
    let (mut changes, mut missed) = (0u64, 0u64);
    let sample_every = (o.changes_per_s / 20.0).max(1.0) as u64;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(o.duration_s);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while Instant::now() < end {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * o.changes_per_s) as u64;
        while changes < due {
            changes += 1;
            let i = rng.below(clients.len());
            if clients[i].in_flight {
                continue;
            }
            let sampled = changes % sample_every == 0;
            let roll = rng.below(100);
            let c = &mut clients[i];
            let expect = match c.at {
                Some((a, d)) if roll < 60 => {
                    c.status = if c.status == PresenceStatus::Available {
                        if roll.is_multiple_of(2) {
                            PresenceStatus::Busy
                        } else {
                            PresenceStatus::Away
                        }
                    } else {
                        PresenceStatus::Available
                    };
                    nodes[a].set_status(DeviceId(d), c.status);
                    Expect::Status(c.status)
                }
                Some((a, d)) if roll < 80 => {
                    nodes[a].unregister(DeviceId(d));
                    let b = (a + 1 + rng.below(n - 1)) % n;
                    next_device += 1;
                    c.at = Some((b, next_device));
                    register(&nodes, c, (b, next_device))?;
                    Expect::HeldBy(name(b))
                }
                Some((a, d)) => {
                    nodes[a].unregister(DeviceId(d));
                    c.at = None;
                    Expect::Absent
                }
                None => {
                    let b = rng.below(n);
                    next_device += 1;
                    c.at = Some((b, next_device));
                    c.status = PresenceStatus::Available;
                    register(&nodes, c, (b, next_device))?;
                    Expect::HeldBy(name(b))
                }
            };
            if sampled {
                c.in_flight = true;
                samples.push(Sample { client: i, started: Instant::now(), expect });
            }
        }
        // Which sampled changes has every appliance seen?
        samples.retain(|s| {
            let c = &clients[s.client];
            let seen = nodes.iter().all(|r| match &s.expect {
                Expect::Status(status) => r.presence(&c.account, &c.identity).status == *status,
                Expect::HeldBy(appliance) => {
                    let d = r.devices(&c.account, &c.identity);
                    d.len() == 1 && d[0].appliance == *appliance
                }
                Expect::Absent => r.presence(&c.account, &c.identity).devices == 0,
            });
            if seen {
                propagation_ms.push(s.started.elapsed().as_secs_f64() * 1000.0);
            }
            !seen
        });
        for c in &mut clients {
            c.in_flight = false;
        }
        for s in &samples {
            clients[s.client].in_flight = true;
        }
    }
    let churn_s = start.elapsed().as_secs_f64();
    // Changes sampled late in the phase: give them up to 5 s more.
    let grace = Instant::now();
    while !samples.is_empty() && grace.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        samples.retain(|s| {
            let c = &clients[s.client];
            let seen = nodes.iter().all(|r| match &s.expect {
                Expect::Status(status) => r.presence(&c.account, &c.identity).status == *status,
                Expect::HeldBy(appliance) => {
                    r.devices(&c.account, &c.identity).iter().all(|d| d.appliance == *appliance)
                }
                Expect::Absent => r.presence(&c.account, &c.identity).devices == 0,
            });
            if seen {
                propagation_ms.push(s.started.elapsed().as_secs_f64() * 1000.0);
            }
            !seen
        });
    }
    missed += samples.len() as u64;
    let cpu = cpu_s() - cpu_before;
    let after = totals(&nodes);
    let bytes = after.bytes_sent - before.bytes_sent;
    let datagrams = after.datagrams_sent - before.datagrams_sent;
    let kbps_per_appliance = bytes as f64 * 8.0 / 1000.0 / churn_s / n as f64;
    // Where the bytes go: per kind as sealed on the wire, and the digest and
    // delta parts as chitchat serialized them (before our compression).
    let kbps = |b: u64| b as f64 * 8.0 / 1000.0 / churn_s / n as f64;
    let per_kind = |k: fn(&GossipCounts) -> controlplane::routes::gossip::KindCounts| {
        let (a, b) = (k(&after), k(&before));
        (kbps(a.bytes - b.bytes), (a.bytes - b.bytes) / (a.datagrams - b.datagrams).max(1))
    };
    let (syn, syn_ack, ack) = (per_kind(|c| c.syn), per_kind(|c| c.syn_ack), per_kind(|c| c.ack));
    let feed = per_kind(|c| c.feed);
    // The busiest appliance (relays near the tree's root send the most).
    let max_kbps = nodes
        .iter()
        .zip(&before_each)
        .map(|(r, b)| (r.counters().bytes_sent - b) as f64 * 8.0 / 1000.0 / churn_s)
        .fold(0.0, f64::max);
    let digest_kbps = kbps(after.digest_bytes - before.digest_bytes);
    let delta_kbps = kbps(after.delta_bytes - before.delta_bytes);
    let packed_ratio =
        (after.packed_bytes - before.packed_bytes) as f64 / (after.plain_bytes - before.plain_bytes).max(1) as f64;
    let cpu_per_node = cpu / churn_s / n as f64;
    eprintln!(
        "route-bench: kbit/s per appliance on the wire: route feed {:.1} ({} B each); membership: Syn {:.1} ({} B each), SynAck {:.1} ({} B), Ack {:.1} ({} B); digests serialized {digest_kbps:.1}, compressed to {:.0} %; busiest appliance {max_kbps:.1}",
        feed.0, feed.1, syn.0, syn.1, syn_ack.0, syn_ack.1, ack.0, ack.1, packed_ratio * 100.0
    );
    eprintln!(
        "route-bench: CPU {cpu:.1} s in {churn_s:.1} s ({:.0} % of one core per appliance; this machine has {} cores)",
        cpu_per_node * 100.0,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    propagation_ms.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&propagation_ms, 0.5), percentile(&propagation_ms, 0.99));
    eprintln!(
        "route-bench: churn {changes} changes in {churn_s:.1} s; {} sampled: p50 {p50:.0} ms, p99 {p99:.0} ms, max {:.0} ms, {missed} not seen within 5 s after the phase",
        propagation_ms.len(),
        propagation_ms.last().copied().unwrap_or(f64::NAN)
    );
    eprintln!(
        "route-bench: gossip sent {:.1} kbit/s per appliance, {:.1} datagrams/s per appliance, {:.0} bytes per datagram",
        kbps_per_appliance,
        datagrams as f64 / churn_s / n as f64,
        bytes as f64 / datagrams.max(1) as f64
    );

    // ---- kill one appliance ----
    let victim = n - 1;
    let present: usize = clients.iter().filter(|c| c.at.is_some()).count();
    let on_victim = clients.iter().filter(|c| c.at.is_some_and(|(a, _)| a == victim)).count();
    if let Err(e) =
        wait("churn settled", Duration::from_secs(30), || nodes.iter().all(|r| r.counts().total() == present)).await
    {
        eprintln!("route-bench: {e} (the fleet is behind; measuring the withdrawal anyway)");
    }

    // ---- a new appliance joins the loaded fleet: it pulls every feed ----
    let joiner = GossipRoutes::start(settings(&o, "bh-joiner", &seeds)).await.map_err(|e| e.to_string())?;
    let join_s = wait("the joiner holds every route", Duration::from_secs(60), || {
        joiner.live_peers() == n && joiner.counts().total() == present
    })
    .await?
    .as_secs_f64();
    eprintln!("route-bench: a new appliance joined and held all {present} routes after {join_s:.2} s");
    let killed = Instant::now();
    nodes[victim].shutdown().await;
    let others = &nodes[..victim];
    let victim_name = name(victim);
    let withdraw = wait("dead appliance's routes withdrawn", Duration::from_secs(60), || {
        others.iter().chain([&joiner]).all(|r| r.peer_routes(&victim_name) == 0)
    })
    .await?;
    let _ = killed;
    let withdraw_s = withdraw.as_secs_f64();
    eprintln!(
        "route-bench: killed {} holding {on_victim} routes: withdrawn everywhere in {withdraw_s:.2} s",
        name(victim)
    );
    let refused: u64 = nodes.iter().map(|r| r.counters().refused_unauthentic + r.counters().refused_stale).sum();
    for r in nodes.iter().chain([&joiner]) {
        r.shutdown().await;
    }
    Ok(serde_json::json!({
        "appliances": n,
        "routes": o.routes,
        "changes_per_s": o.changes_per_s,
        "gossip_ms": o.gossip_ms,
        "batch_ms": o.feed.batch.as_millis() as u64,
        "flush_ms": o.feed.flush.as_millis() as u64,
        "fanout": o.feed.fanout,
        "peers_per_round": o.peers_per_round,
        "regions": o.regions,
        "samples": propagation_ms.len(),
        "samples_missed": missed,
        "propagation_p50_ms": (p50 * 10.0).round() / 10.0,
        "propagation_p99_ms": (p99 * 10.0).round() / 10.0,
        "withdraw_s": (withdraw_s * 100.0).round() / 100.0,
        "join_s": (join_s * 100.0).round() / 100.0,
        "kbps_per_appliance": (kbps_per_appliance * 10.0).round() / 10.0,
        "bytes_per_datagram": bytes / datagrams.max(1),
        "refused_datagrams": refused,
        "cpu_core_share_per_appliance": (cpu_per_node * 1000.0).round() / 1000.0,
        "kbps_syn": (syn.0 * 10.0).round() / 10.0,
        "kbps_syn_ack": (syn_ack.0 * 10.0).round() / 10.0,
        "kbps_feed": (feed.0 * 10.0).round() / 10.0,
        "feed_pulls": after.feed_pulls - before.feed_pulls,
        "feed_repairs": after.feed_repairs - before.feed_repairs,
        "feed_snapshots": after.feed_snapshots - before.feed_snapshots,
        "kbps_busiest_appliance": (max_kbps * 10.0).round() / 10.0,
        "kbps_ack": (ack.0 * 10.0).round() / 10.0,
        "kbps_digest_serialized": (digest_kbps * 10.0).round() / 10.0,
        "kbps_delta_serialized": (delta_kbps * 10.0).round() / 10.0,
        "compressed_share": (packed_ratio * 1000.0).round() / 1000.0,
    })
    .to_string())
}
