//! The fleet's [`RouteStore`]: membership and announcements by gossip
//! (chitchat), routes by the route feed, all sealed with the fleet key.
//!
//! ```text
//!   client sessions --register/set_status/unregister--> GossipRoutes --(index lock)--> View (local + live peers)
//!                                                            |  LocalFeed (numbered changes)  ^
//!                                                            v                                | applied in order
//!   peers <== SealedTransport (UDP, one socket) ==> relay task (feed.rs, relay.rs): batches, relays along the
//!               |  "BHG1": chitchat                           tree, pulls gaps, answers pulls
//!               v                                         reconciler task: joins, deaths, the tree,
//!             chitchat server <-- pump task (keys a, f)       feed heads, announcements
//! ```
//!
//! Each appliance is one chitchat node (`[appliance] id`, generation = start
//! time in ms, so a restarted box supersedes its old self) owning two keys:
//! `a`, the announcement (region, SIP and media addresses, the SIP/TLS
//! certificate's hash, free media sessions, load, services, draining), and
//! `f`, the number of its route feed's last change. Its devices go in the
//! route feed (`feed.rs`: what is carried; `relay.rs`: how).
//!
//! Reads (`devices`, `presence`, `list`, `counts`) answer from one index
//! of local and live peers' devices, so they cost what the in-process
//! store's do. A peer route's `appliance` is the peer's id and its
//! `device` is the peer's number: **a `DeviceId` is unique only within
//! its appliance**. A peer the failure detector holds dead leaves the
//! index at once (its identities' presence changes are broadcast); when it
//! comes back it is a new origin, pulled in full, so nothing stale stays.
//!
//! docs/fleet.md describes the fleet, its timings and its figures.

pub mod announcer;
mod feed;
pub mod metrics;
mod relay;
mod sealed;

pub use feed::fuzz_receive;
pub use relay::FeedTiming;
pub use sealed::{
    FleetKey, GossipCounters, GossipCounts, KeyError, KindCounts, SynBudget, FEED_OVERHEAD, MAX_AGE, OVERHEAD,
};

use self::feed::{origin_tag, LocalFeed, PeerFeed};
use self::relay::Relay;
use self::sealed::{RoundTrips, SealedTransport};
use super::policy::{ApplianceId, ApplianceState, Region, Service};
use super::view::{Holder, Home, Moved, Registered, View, LOCAL};
use super::{
    Announcement, DeviceId, DeviceRoute, Presence, PresenceChange, PresenceCounts, PresenceStatus, RouteError,
    RouteStore,
};
use crate::store::AccountSid;
use chitchat::{spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc};

/// The key of the announcement.
const ANNOUNCEMENT_KEY: &str = "a";
/// The key of the route feed's head (its last change's number), so a
/// receiver that lost the last changes of a burst notices.
const FEED_KEY: &str = "f";

/// How an appliance joins the fleet (from `[peers]` and `[appliance]`).
#[derive(Debug, Clone)]
pub struct GossipSettings {
    /// `[appliance] id`: the chitchat node id.
    pub appliance: String,
    /// Where to bind the gossip UDP socket (port 0: any free port).
    pub listen: SocketAddr,
    /// The address peers gossip to (`None`: the bound address; it must then
    /// be a concrete one).
    pub advertise: Option<SocketAddr>,
    /// Peers to contact first (`host:port` or `ip:port`).
    pub seeds: Vec<String>,
    /// The fleet's shared secret.
    pub fleet_key: String,
    /// Between two gossip rounds.
    pub gossip_interval: Duration,
    /// Live peers each round talks to once the fleet is larger than
    /// [`sealed::SMALL_FLEET`] (chitchat asks for 3; [`SynBudget`]).
    pub peers_per_round: usize,
    /// The phi accrual threshold: a peer is dead when the silence since its
    /// last heartbeat exceeds this many mean heartbeat intervals.
    pub phi_threshold: f64,
    /// A dead peer is forgotten (its announcement no longer listed) after this.
    pub dead_node_grace: Duration,
    /// chitchat's grace for deleted keys (the appliance deletes none; kept
    /// for chitchat's own use).
    pub tombstone_grace: Duration,
    /// Local devices at most ([`RouteError::Full`] beyond).
    pub max_devices: usize,
    /// How the route feed paces itself.
    pub feed: FeedTiming,
    /// Compress gossip and feed messages (zstd) when that makes them
    /// smaller. Off only to measure what it saves; receivers read both.
    pub compress: bool,
}

impl GossipSettings {
    /// Defaults for `appliance` listening on `listen` with `fleet_key`:
    /// 150 ms rounds (a change crosses a 50-box fleet in well under a
    /// second), phi 8 (a silent peer is dead after ~8 mean heartbeat
    /// intervals, about a second at this interval), dead peers forgotten
    /// after 10 minutes, tombstones after a minute.
    pub fn new(appliance: impl Into<String>, listen: SocketAddr, fleet_key: impl Into<String>) -> GossipSettings {
        GossipSettings {
            appliance: appliance.into(),
            listen,
            advertise: None,
            seeds: Vec::new(),
            fleet_key: fleet_key.into(),
            gossip_interval: Duration::from_millis(150),
            phi_threshold: 8.0,
            dead_node_grace: Duration::from_secs(600),
            tombstone_grace: Duration::from_secs(60),
            max_devices: usize::MAX,
            peers_per_round: 1,
            feed: FeedTiming::default(),
            compress: true,
        }
    }
}

/// Why gossip could not start.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("cannot bind the gossip socket on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("the gossip address {0} is not one peers can reach: set [peers] advertise")]
    Unadvertisable(SocketAddr),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("chitchat did not start: {0}")]
    Chitchat(String),
}

/// Work for the pump: a key to set.
enum Op {
    Set(String, String),
}

/// The index, the peers in it and the route feed, under one lock.
struct Fleet {
    view: View,
    /// Live peers in the view, newest generation of each appliance only.
    peers: HashMap<ChitchatId, Holder>,
    /// This appliance's route changes.
    local: LocalFeed,
    /// Each peer's route changes as applied here.
    feeds: HashMap<Holder, PeerFeed>,
    /// Origin tag -> peer.
    tags: HashMap<u32, Holder>,
    relay: Relay,
}

#[derive(Default)]
struct Mine {
    current: Option<Announcement>,
    published: Option<Announcement>,
}

struct Inner {
    appliance: String,
    me: ChitchatId,
    max_devices: usize,
    fleet: Mutex<Fleet>,
    changes: broadcast::Sender<PresenceChange>,
    ops: mpsc::UnboundedSender<Op>,
    /// Children per appliance in the relay tree.
    fanout: usize,
    syns: Arc<SynBudget>,
    /// Every appliance's last announcement as gossiped (not this one's).
    announced: Mutex<Vec<Announcement>>,
    /// This appliance's own announcement: as last given, as last published.
    mine: Mutex<Mine>,
    /// Peer gossip address -> region, for measured latency.
    regions: Mutex<HashMap<SocketAddr, Region>>,
    counters: Arc<GossipCounters>,
    round_trips: Arc<RoundTrips>,
}

/// The fleet's route store (see the module doc).
pub struct GossipRoutes {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    running: Mutex<Option<Running>>,
}

struct Running {
    chitchat: ChitchatHandle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl GossipRoutes {
    /// Binds the gossip socket and joins the fleet. Must run inside a
    /// tokio runtime (it spawns chitchat's server and two small tasks).
    pub async fn start(settings: GossipSettings) -> Result<GossipRoutes, GossipError> {
        let key = Arc::new(FleetKey::derive(&settings.fleet_key)?);
        let socket = Arc::new(
            tokio::net::UdpSocket::bind(settings.listen).await.map_err(|e| GossipError::Bind(settings.listen, e))?,
        );
        let local_addr = socket.local_addr().map_err(|e| GossipError::Bind(settings.listen, e))?;
        let advertise = settings.advertise.unwrap_or(local_addr);
        if advertise.ip().is_unspecified() || advertise.port() == 0 {
            return Err(GossipError::Unadvertisable(advertise));
        }
        // Start time in ms: a restarted appliance comes back with a higher
        // generation, and peers drop the old one's routes at once.
        let generation = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let me = ChitchatId::new(settings.appliance.clone(), generation, advertise);
        let counters = Arc::new(GossipCounters::default());
        let round_trips = Arc::new(RoundTrips::default());
        let config = ChitchatConfig {
            chitchat_id: me.clone(),
            cluster_id: key.cluster_id().to_string(),
            gossip_interval: settings.gossip_interval,
            listen_addr: local_addr,
            seed_nodes: settings.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: settings.phi_threshold,
                sampling_window_size: 1000,
                // A longer silence is the failure being detected, not a
                // sample of the normal interval.
                max_interval: Duration::from_secs(2),
                // The prior of the mean interval before samples arrive.
                initial_interval: settings.gossip_interval,
                dead_node_grace_period: settings.dead_node_grace,
            },
            marked_for_deletion_grace_period: settings.tombstone_grace,
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let (feed_tx, feed_rx) = mpsc::channel(relay::INBOUND_QUEUE);
        let syns = Arc::new(SynBudget::new(settings.peers_per_round, settings.gossip_interval));
        let transport = SealedTransport::new(
            key.clone(),
            counters.clone(),
            round_trips.clone(),
            socket.clone(),
            settings.compress,
            feed_tx,
            syns.clone(),
        );
        let chitchat =
            spawn_chitchat(config, Vec::new(), &transport).await.map_err(|e| GossipError::Chitchat(e.to_string()))?;
        let (changes, _) = broadcast::channel(super::PRESENCE_BACKLOG);
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            appliance: settings.appliance.clone(),
            me,
            max_devices: settings.max_devices,
            fleet: Mutex::new(Fleet {
                view: View::new(&settings.appliance),
                peers: HashMap::new(),
                local: LocalFeed::new(&settings.appliance, generation),
                feeds: HashMap::new(),
                tags: HashMap::new(),
                relay: Relay::new(),
            }),
            changes,
            ops,
            fanout: settings.feed.fanout,
            syns,
            announced: Mutex::new(Vec::new()),
            mine: Mutex::new(Mine::default()),
            regions: Mutex::new(HashMap::new()),
            counters,
            round_trips,
        });
        let cc = chitchat.chitchat();
        let tick = (settings.gossip_interval / 2).max(Duration::from_millis(20));
        let tasks = vec![
            tokio::spawn(pump(cc.clone(), ops_rx)),
            tokio::spawn(reconciler(Arc::downgrade(&inner), cc, tick)),
            tokio::spawn(relay::run(Arc::downgrade(&inner), socket, key, settings.compress, feed_rx, settings.feed)),
        ];
        tracing::info!(appliance = %settings.appliance, gossip = %local_addr, advertise = %advertise, seeds = ?settings.seeds, "fleet gossip started");
        Ok(GossipRoutes { inner, local_addr, running: Mutex::new(Some(Running { chitchat, tasks })) })
    }

    /// The address the gossip socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The transport's counters: datagrams and bytes, refusals by reason.
    pub fn counters(&self) -> GossipCounts {
        self.inner.counters.snapshot()
    }

    /// Live peers in the view.
    pub fn live_peers(&self) -> usize {
        self.inner.fleet().peers.len()
    }

    /// Routes of the peer `appliance` in the view (0 once it left).
    pub fn peer_routes(&self, appliance: &str) -> usize {
        let fleet = self.inner.fleet();
        let holders = fleet.peers.iter().filter(|(id, _)| &*id.node_id == appliance).map(|(_, h)| *h);
        holders.map(|h| fleet.view.devices_of(h).len()).sum()
    }

    /// Stops gossiping (peers then see this appliance die). Idempotent.
    pub async fn shutdown(&self) {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(running) = running {
            for task in &running.tasks {
                task.abort();
            }
            if let Err(e) = running.chitchat.shutdown().await {
                tracing::warn!(error = %e, "gossip stopped with an error");
            }
        }
    }
}

impl Drop for GossipRoutes {
    fn drop(&mut self) {
        if let Some(running) = self.running.lock().unwrap_or_else(PoisonError::into_inner).take() {
            for task in &running.tasks {
                task.abort();
            }
            running.chitchat.abort();
        }
    }
}

/// Applies this appliance's key changes to chitchat, in order, a batch per
/// lock: local operations never wait for chitchat's lock.
async fn pump(chitchat: Arc<tokio::sync::Mutex<Chitchat>>, mut ops: mpsc::UnboundedReceiver<Op>) {
    let mut batch = Vec::new();
    while ops.recv_many(&mut batch, 4096).await > 0 {
        let mut cc = chitchat.lock().await;
        let node = cc.self_node_state();
        for Op::Set(key, value) in batch.drain(..) {
            node.set(key, value);
        }
    }
}

/// Follows chitchat's membership: peers joining (their feed pulled in
/// full), dying or superseded (their routes out at once), the relay tree,
/// feed heads, and everyone's announcements.
async fn reconciler(inner: Weak<Inner>, chitchat: Arc<tokio::sync::Mutex<Chitchat>>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let cc = chitchat.lock().await;
        inner.reconcile(&cc);
    }
}

impl Inner {
    fn fleet(&self) -> MutexGuard<'_, Fleet> {
        // No operation panics while holding the lock, so a poisoned lock
        // still holds a consistent index.
        self.fleet.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells subscribers that `identity`'s presence moved, if it did. Called
    /// with the index locked, so changes go out in the order they happened.
    fn tell(&self, account: &AccountSid, identity: &str, (before, after): Moved) {
        if before == after || self.changes.receiver_count() == 0 {
            return;
        }
        let presence = Presence { identity: identity.to_string(), status: after.0, devices: after.1 };
        // Err only when every receiver went away meanwhile: nobody to tell.
        let _ = self.changes.send(PresenceChange { account: account.clone(), presence });
    }

    fn tell_all(&self, moves: Vec<(Home, Moved)>) {
        for (home, moved) in moves {
            self.tell(&home.account, &home.identity, moved);
        }
    }

    fn publish(&self, op: Op) {
        // Err only once the pump stopped (shutdown): nobody to tell.
        let _ = self.ops.send(op);
    }

    fn reconcile(&self, cc: &Chitchat) {
        // The newest live generation of each other appliance.
        let mut live: HashMap<&str, &ChitchatId> = HashMap::new();
        for id in cc.live_nodes() {
            if *id.node_id == *self.me.node_id {
                continue;
            }
            let newest = live.entry(&id.node_id).or_insert(id);
            if id.generation_id > newest.generation_id {
                *newest = id;
            }
        }
        let mut fleet = self.fleet();
        let gone: Vec<ChitchatId> =
            fleet.peers.keys().filter(|id| live.get(&*id.node_id) != Some(id)).cloned().collect();
        for id in gone {
            if let Some(holder) = fleet.peers.remove(&id) {
                fleet.feeds.remove(&holder);
                fleet.tags.retain(|_, h| *h != holder);
                let moves = fleet.view.remove_holder(holder);
                tracing::info!(peer = %id.node_id, routes = moves.len(), "peer left the view");
                self.tell_all(moves);
            }
        }
        for id in live.values() {
            let holder = match fleet.peers.get(*id) {
                Some(&h) => h,
                None => {
                    // Its routes arrive by a pull of its whole feed (the
                    // relay's next tick) and then as they change.
                    let h = fleet.view.add_holder(&id.node_id);
                    fleet.peers.insert((*id).clone(), h);
                    fleet.feeds.insert(h, PeerFeed::new(h, id.gossip_advertise_addr, id.generation_id));
                    fleet.tags.insert(origin_tag(&id.node_id, id.generation_id), h);
                    tracing::info!(peer = %id.node_id, "peer joined the view");
                    h
                }
            };
            let head = cc.node_state(id).and_then(|s| s.get(FEED_KEY)).and_then(|v| v.parse().ok());
            if let (Some(head), Some(feed)) = (head, fleet.feeds.get_mut(&holder)) {
                feed.announced = head;
            }
        }
        // Regions as last announced (a peer not announced yet sorts after
        // every region: never the hub); the tree keeps each region's links
        // inside it.
        let regions = self.regions.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let unknown = || Arc::from(feed::UNKNOWN_REGION);
        let region_of = |addr: &SocketAddr| regions.get(addr).map_or_else(unknown, |r| Arc::from(r.0.as_str()));
        let my_region = self
            .mine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current
            .as_ref()
            .map_or_else(unknown, |a| Arc::from(a.state.region.0.as_str()));
        let mut tree: Vec<feed::Member> = live
            .values()
            .map(|id| feed::Member {
                region: region_of(&id.gossip_advertise_addr),
                id: id.node_id.clone(),
                addr: id.gossip_advertise_addr,
            })
            .collect();
        tree.push(feed::Member { region: my_region, id: self.me.node_id.clone(), addr: self.me.gossip_advertise_addr });
        fleet.relay.retree(tree, &self.me.node_id, self.fanout);
        self.syns.set_live(live.values().map(|id| id.gossip_advertise_addr).collect());
        drop(fleet);

        // Announcements of every node chitchat still knows, dead ones too.
        let mut newest: HashMap<&str, (&ChitchatId, &chitchat::NodeState)> = HashMap::new();
        for (id, state) in cc.node_states() {
            if *id.node_id == *self.me.node_id {
                continue;
            }
            let entry = newest.entry(&id.node_id).or_insert((id, state));
            if id.generation_id > entry.0.generation_id {
                *entry = (id, state);
            }
        }
        let mut announced = Vec::new();
        let mut regions = HashMap::new();
        for (id, state) in newest.values() {
            let Some(mut a) = state.get(ANNOUNCEMENT_KEY).and_then(|v| decode_announcement(&id.node_id, v)) else {
                continue;
            };
            a.state.alive = live.get(&*id.node_id) == Some(id);
            regions.insert(id.gossip_advertise_addr, a.state.region.clone());
            announced.push(a);
        }
        *self.announced.lock().unwrap_or_else(PoisonError::into_inner) = announced;
        *self.regions.lock().unwrap_or_else(PoisonError::into_inner) = regions;
    }
}

/// `region|sip|media_ip|free|load permille|services|draining|sip_tls|cert sha256 hex`.
fn encode_announcement(a: &Announcement) -> String {
    let services: Vec<&str> = a.state.services.iter().map(|s| s.as_str()).collect();
    let load = if a.state.load.is_nan() { 1000 } else { (a.state.load.clamp(0.0, 1.0) * 1000.0).round() as u32 };
    let (sip_tls, cert) = match a.sip_tls {
        Some((addr, cert)) => (addr.to_string(), cert.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        None => (String::new(), String::new()),
    };
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}|{}",
        a.state.region,
        a.sip.map(|s| s.to_string()).unwrap_or_default(),
        a.media_ip.map(|s| s.to_string()).unwrap_or_default(),
        a.state.free_media_sessions,
        load,
        services.join(","),
        u8::from(a.state.draining),
        sip_tls,
        cert
    )
}

fn decode_announcement(id: &str, value: &str) -> Option<Announcement> {
    let mut f = value.split('|');
    let region = Region::new(f.next()?);
    let sip = f.next()?.parse().ok();
    let media_ip = f.next()?.parse::<IpAddr>().ok();
    let free_media_sessions = f.next()?.parse().ok()?;
    let load = f.next()?.parse::<u32>().ok()? as f32 / 1000.0;
    let services: BTreeSet<Service> = f
        .next()?
        .split(',')
        .filter_map(|s| {
            [Service::Relay, Service::Transcode, Service::Record, Service::Mix].into_iter().find(|x| x.as_str() == s)
        })
        .collect();
    let draining = f.next()? == "1";
    let sip_tls = f.next().and_then(|a| a.parse().ok()).zip(f.next().and_then(decode_sha256));
    Some(Announcement {
        state: ApplianceState {
            id: ApplianceId::new(id),
            region,
            draining,
            free_media_sessions,
            load,
            services,
            alive: true,
        },
        sip,
        sip_tls,
        media_ip,
    })
}

/// 64 hex digits.
fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Whether a new announcement is worth a gossip update: resources move all
/// the time, and each update crosses the whole fleet, so small moves of
/// free sessions (under 1 %) and load (under 0.05) wait for a bigger one.
fn worth_publishing(last: Option<&Announcement>, new: &Announcement) -> bool {
    let Some(last) = last else { return true };
    let (a, b) = (&last.state, &new.state);
    let free_moved = a.free_media_sessions.abs_diff(b.free_media_sessions) as u64 * 100
        >= u64::from(a.free_media_sessions.max(1))
        || (a.free_media_sessions == 0) != (b.free_media_sessions == 0);
    a.region != b.region
        || a.draining != b.draining
        || a.services != b.services
        || last.sip != new.sip
        || last.sip_tls != new.sip_tls
        || last.media_ip != new.media_ip
        || free_moved
        || (a.load - b.load).abs() >= 0.05
}

impl RouteStore for GossipRoutes {
    fn appliance(&self) -> &str {
        &self.inner.appliance
    }

    fn register(&self, route: DeviceRoute) -> Result<(), RouteError> {
        let inner = &*self.inner;
        if route.identity.is_empty() {
            return Err(RouteError::EmptyIdentity);
        }
        if route.identity.len() > feed::MAX_IDENTITY {
            return Err(RouteError::IdentityTooLong { len: route.identity.len(), limit: feed::MAX_IDENTITY });
        }
        if route.appliance != inner.appliance {
            return Err(RouteError::ForeignAppliance { appliance: route.appliance, this: inner.appliance.clone() });
        }
        let mut guard = inner.fleet();
        let fleet = &mut *guard;
        match fleet.view.register_local(&route, inner.max_devices)? {
            // A refresh: peers hear of it only if the grant changed.
            Registered::Refreshed(changed) => {
                if let Some(slot) = changed {
                    fleet.local.define(&route.account, &route.identity, &slot);
                }
            }
            Registered::Placed { slot, left, joined } => {
                if let Some((home, moved)) = left {
                    inner.tell(&home.account, &home.identity, moved);
                }
                inner.tell(&route.account, &route.identity, joined);
                fleet.local.define(&route.account, &route.identity, &slot);
            }
        }
        Ok(())
    }

    fn set_status(&self, device: DeviceId, status: PresenceStatus) {
        if status == PresenceStatus::Offline {
            return self.unregister(device);
        }
        let inner = &*self.inner;
        let mut guard = inner.fleet();
        let fleet = &mut *guard;
        let Some((home, moved)) = fleet.view.set_status(LOCAL, device, status) else { return };
        inner.tell(&home.account, &home.identity, moved);
        fleet.local.status(device, status);
    }

    fn unregister(&self, device: DeviceId) {
        let inner = &*self.inner;
        let mut guard = inner.fleet();
        let fleet = &mut *guard;
        if let Some((_, home, moved)) = fleet.view.remove(LOCAL, device) {
            inner.tell(&home.account, &home.identity, moved);
            fleet.local.remove(device);
        }
    }

    fn devices(&self, account: &AccountSid, identity: &str) -> Vec<DeviceRoute> {
        let fleet = self.inner.fleet();
        fleet.view.slots(account, identity).iter().map(|slot| fleet.view.route(account, identity, slot)).collect()
    }

    fn presence(&self, account: &AccountSid, identity: &str) -> Presence {
        let fleet = self.inner.fleet();
        Presence::aggregate(identity, fleet.view.slots(account, identity).iter().map(|s| s.status))
    }

    fn list(&self, account: &AccountSid) -> Vec<Presence> {
        self.inner.fleet().view.list(account)
    }

    fn subscribe(&self) -> broadcast::Receiver<PresenceChange> {
        self.inner.changes.subscribe()
    }

    fn counts(&self) -> PresenceCounts {
        self.inner.fleet().view.counts
    }

    fn appliances(&self) -> Vec<Announcement> {
        let mut all = self.inner.announced.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(mine) = &self.inner.mine.lock().unwrap_or_else(PoisonError::into_inner).current {
            all.push(mine.clone());
        }
        all.sort_by(|a, b| a.state.id.cmp(&b.state.id));
        all
    }

    fn announce(&self, mut me: Announcement) {
        me.state.id = ApplianceId::new(self.inner.appliance.clone());
        me.state.alive = true;
        let mut mine = self.inner.mine.lock().unwrap_or_else(PoisonError::into_inner);
        if worth_publishing(mine.published.as_ref(), &me) {
            self.inner.publish(Op::Set(ANNOUNCEMENT_KEY.to_string(), encode_announcement(&me)));
            mine.published = Some(me.clone());
        }
        // Listed locally as it is; peers get it with the next bigger move.
        mine.current = Some(me);
    }

    fn measured_latency(&self) -> Vec<(Region, Region, u32)> {
        let Some(my_region) = self
            .inner
            .mine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current
            .as_ref()
            .map(|a| a.state.region.clone())
        else {
            return Vec::new();
        };
        let regions = self.inner.regions.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut best: HashMap<Region, f64> = HashMap::new();
        for (addr, ms) in self.inner.round_trips.snapshot() {
            let Some(region) = regions.get(&addr) else { continue };
            if *region == my_region {
                continue;
            }
            let e = best.entry(region.clone()).or_insert(ms);
            *e = e.min(ms);
        }
        let mut out: Vec<_> =
            best.into_iter().map(|(r, ms)| (my_region.clone(), r, ms.ceil().max(1.0) as u32)).collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests;
