//! The fleet's [`RouteStore`]: routes and announcements shared between
//! appliances by gossip (chitchat), sealed with the fleet key.
//!
//! ```text
//!   client sessions --register/set_status/unregister--> GossipRoutes --(view lock)--> View (local + live peers)
//!                                                            |  ops channel                 ^   ^
//!                                                            v                              |   | key listener: peers' route keys
//!                                             pump task --> chitchat self node state        |   | as deltas arrive
//!                                                            |                              |   |
//!   peers <== SealedTransport (UDP, ChaCha20-Poly1305) <== chitchat server          reconciler task: joins,
//!                                                                                    deaths, announcements
//! ```
//!
//! Each appliance is one chitchat node (`[appliance] id`, generation = start
//! time in ms, so a restarted box supersedes its old self) owning only its
//! own keys:
//!
//! - `r<bucket>`: the local devices whose (account, identity) hash to that
//!   bucket, each with its status, incoming grant and registration time;
//!   `c<n>`: the account SID this appliance numbers `n` in its buckets
//!   (`buckets.rs`). A change marks its bucket; the pump writes the marked
//!   buckets a few ms later, so a burst of changes costs one write per
//!   bucket. A device that goes is left out of its bucket's next value: no
//!   tombstones.
//! - `a`: the announcement (region, SIP and media addresses, free media
//!   sessions, load, services, draining).
//!
//! Reads (`devices`, `presence`, `list`, `counts`) answer from one index
//! of local and live peers' devices, so they cost what the in-process
//! store's do. A peer route's `appliance` is the peer's id and its
//! `device` is the peer's number: **a `DeviceId` is unique only within
//! its appliance**. A peer the failure detector holds dead leaves the
//! index at once (its identities' presence changes are broadcast); when it
//! comes back, or after chitchat had to reset our copy of a node (a long
//! partition), the peer's keys are read again in full, so nothing stale
//! stays.
//!
//! docs/fleet.md describes the fleet, its timings and its figures.

pub mod announcer;
mod buckets;
pub mod metrics;
mod sealed;

pub use sealed::{FleetKey, GossipCounters, GossipCounts, KeyError, KindCounts, MAX_AGE, OVERHEAD};

use self::buckets::{
    bucket_key, decode_bucket, encode_entry, key_number, Entry, LocalBuckets, PeerBuckets, ACCOUNT_PREFIX,
    BUCKET_PREFIX,
};
use self::sealed::{RoundTrips, SealedTransport};
use super::policy::{ApplianceId, ApplianceState, Region, Service};
use super::view::{Holder, Home, Moved, Slot, View, LOCAL};
use super::{
    Announcement, DeviceId, DeviceRoute, Presence, PresenceChange, PresenceCounts, PresenceStatus, RouteError,
    RouteStore,
};
use crate::store::AccountSid;
use chitchat::{spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc};

/// The key of the announcement.
const ANNOUNCEMENT_KEY: &str = "a";
/// How long the pump lets changes gather before writing their buckets: a
/// burst (a box's clients re-registering) then costs one write per bucket.
const COALESCE: Duration = Duration::from_millis(20);

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
    /// Between two gossip rounds (each round talks to 3 peers).
    pub gossip_interval: Duration,
    /// The phi accrual threshold: a peer is dead when the silence since its
    /// last heartbeat exceeds this many mean heartbeat intervals.
    pub phi_threshold: f64,
    /// A dead peer is forgotten (its announcement no longer listed) after this.
    pub dead_node_grace: Duration,
    /// chitchat's grace for deleted keys (routes leave none: a device
    /// that goes is left out of its bucket; kept for chitchat's own use).
    pub tombstone_grace: Duration,
    /// Local devices at most ([`RouteError::Full`] beyond).
    pub max_devices: usize,
    /// Buckets this appliance's routes are gossiped in (keys it holds at
    /// most, besides its accounts). Fewer buckets: less CPU on every box
    /// (chitchat's work is per key), more bytes per change (a change
    /// rewrites its bucket). Measured (docs/fleet.md, "Figures"): about 4
    /// devices per bucket cost 1.75x the bytes of 1 per bucket for a
    /// quarter of the keys.
    pub route_buckets: u32,
    /// Compress gossip messages (zstd) when that makes them smaller. Off
    /// only to measure what it saves; receivers read both.
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
            route_buckets: 1024,
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

/// Work for the pump: a key to set, or marked buckets to write.
enum Op {
    Set(String, String),
    Flush,
}

/// The index and the peers in it, under one lock.
struct Fleet {
    view: View,
    /// Live peers in the view, newest generation of each appliance only.
    peers: HashMap<ChitchatId, Holder>,
    /// This appliance's buckets.
    local: LocalBuckets,
    /// What each peer in the view last gossiped in its buckets.
    buckets: HashMap<Holder, PeerBuckets>,
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
    /// Set by chitchat when it had to reset a node's state: keys may have
    /// vanished without a listener call, so every peer is read again.
    reset: Arc<AtomicBool>,
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
        let socket =
            tokio::net::UdpSocket::bind(settings.listen).await.map_err(|e| GossipError::Bind(settings.listen, e))?;
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
        let reset = Arc::new(AtomicBool::new(false));
        let reset_flag = reset.clone();
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
            catchup_callback: Some(Box::new(move || reset_flag.store(true, Ordering::Relaxed))),
            extra_liveness_predicate: None,
        };
        let transport = SealedTransport::new(key, counters.clone(), round_trips.clone(), socket, settings.compress);
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
                local: LocalBuckets::new(settings.route_buckets),
                buckets: HashMap::new(),
            }),
            changes,
            ops,
            reset,
            announced: Mutex::new(Vec::new()),
            mine: Mutex::new(Mine::default()),
            regions: Mutex::new(HashMap::new()),
            counters,
            round_trips,
        });
        let cc = chitchat.chitchat();
        for prefix in [BUCKET_PREFIX, ACCOUNT_PREFIX] {
            let weak: Weak<Inner> = Arc::downgrade(&inner);
            cc.lock()
                .await
                .subscribe_event(prefix, move |event| {
                    if let Some(inner) = weak.upgrade() {
                        inner.peer_key(event.node, prefix, event.key, event.value);
                    }
                })
                .forever();
        }
        let tick = (settings.gossip_interval / 2).max(Duration::from_millis(20));
        let tasks = vec![
            tokio::spawn(pump(cc.clone(), ops_rx, Arc::downgrade(&inner))),
            tokio::spawn(reconciler(Arc::downgrade(&inner), cc, tick)),
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
/// lock: local operations never wait for chitchat's lock. Marked buckets
/// are encoded after a short wait ([`COALESCE`]) under the index lock, with
/// the keys published before them (a new account's key goes before the
/// first bucket naming it: chitchat delivers one node's keys in the order
/// they were set).
async fn pump(chitchat: Arc<tokio::sync::Mutex<Chitchat>>, mut ops: mpsc::UnboundedReceiver<Op>, inner: Weak<Inner>) {
    let mut batch = Vec::new();
    while ops.recv_many(&mut batch, 4096).await > 0 {
        if batch.iter().any(|op| matches!(op, Op::Flush)) {
            tokio::time::sleep(COALESCE).await;
        }
        let Some(strong) = inner.upgrade() else { return };
        let buckets = {
            let mut fleet = strong.fleet();
            while let Ok(op) = ops.try_recv() {
                batch.push(op);
            }
            let dirty = std::mem::take(&mut fleet.local.dirty);
            dirty.into_iter().map(|b| (bucket_key(b), encode_local_bucket(&fleet, b))).collect::<Vec<_>>()
        };
        drop(strong);
        let mut cc = chitchat.lock().await;
        let node = cc.self_node_state();
        for op in batch.drain(..) {
            if let Op::Set(key, value) = op {
                node.set(key, value);
            }
        }
        for (key, value) in buckets {
            node.set(key, value);
        }
    }
}

/// The value of local bucket `b`: its devices as the index holds them.
fn encode_local_bucket(fleet: &Fleet, b: u32) -> String {
    let mut value = String::new();
    let Some(devices) = fleet.local.devices.get(&b) else { return value };
    for &device in devices {
        let Some(home) = fleet.view.home(LOCAL, device) else { continue };
        let Some(&account) = fleet.local.accounts.get(&*home.account) else { continue };
        let slots = fleet.view.slots(&home.account, &home.identity);
        let Some(slot) = slots.iter().find(|s| s.holder == LOCAL && s.device == device) else { continue };
        let entry = Entry {
            account,
            device,
            status: slot.status,
            incoming: slot.incoming,
            registered_at: slot.registered_at,
            identity: &home.identity,
        };
        encode_entry(&entry, &mut value);
    }
    value
}

/// Follows chitchat's membership: peers joining (read in full), dying or
/// superseded (their routes out at once), resets (every peer read again),
/// and everyone's announcements.
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

    /// A local device joined (`account`, `identity`): its bucket is marked,
    /// and a new account's key published first.
    fn add_local(&self, fleet: &mut Fleet, account: &AccountSid, identity: &str, device: DeviceId) {
        let (_, key) = fleet.local.account(account);
        if let Some((key, value)) = key {
            self.publish(Op::Set(key, value));
        }
        fleet.local.add(account, identity, device);
        self.publish(Op::Flush);
    }

    fn publish(&self, op: Op) {
        // Err only once the pump stopped (shutdown): nobody to tell.
        let _ = self.ops.send(op);
    }

    /// A peer's bucket or account key changed (chitchat's listener, chitchat
    /// locked; `key` is without its `prefix`).
    fn peer_key(&self, node: &ChitchatId, prefix: &str, key: &str, value: &str) {
        if *node == self.me {
            return;
        }
        let mut fleet = self.fleet();
        // Not (yet) live in the view: the full read when it joins takes it.
        let Some(&holder) = fleet.peers.get(node) else { return };
        let Some(n) = key_number(key) else { return };
        if prefix == ACCOUNT_PREFIX {
            if let Ok(account) = AccountSid::parse(value) {
                fleet.buckets.entry(holder).or_default().accounts.insert(n, account);
            }
            return;
        }
        let moves = apply_peer_bucket(&mut fleet, holder, n, value);
        self.tell_all(moves);
    }

    fn reconcile(&self, cc: &Chitchat) {
        let reset = self.reset.swap(false, Ordering::Relaxed);
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
                fleet.buckets.remove(&holder);
                let moves = fleet.view.remove_holder(holder);
                tracing::info!(peer = %id.node_id, routes = moves.len(), "peer left the view");
                self.tell_all(moves);
            }
        }
        for id in live.values() {
            let known = fleet.peers.get(*id).copied();
            if known.is_some() && !reset {
                continue;
            }
            let Some(state) = cc.node_state(id) else { continue };
            let holder = match known {
                Some(h) => h,
                None => {
                    let h = fleet.view.add_holder(&id.node_id);
                    fleet.peers.insert((*id).clone(), h);
                    h
                }
            };
            // Read its keys in full: accounts first, then every bucket;
            // drop what it no longer has.
            let mut peer = PeerBuckets::default();
            for (key, vv) in state.iter_prefix(ACCOUNT_PREFIX) {
                let n = key_number(&key[ACCOUNT_PREFIX.len()..]);
                if let (Some(n), Ok(account)) = (n, AccountSid::parse(&vv.value)) {
                    peer.accounts.insert(n, account);
                }
            }
            fleet.buckets.insert(holder, peer);
            let mut moves = Vec::new();
            for (key, vv) in state.iter_prefix(BUCKET_PREFIX) {
                let Some(b) = key_number(&key[BUCKET_PREFIX.len()..]) else { continue };
                moves.extend(apply_peer_bucket(&mut fleet, holder, b, &vv.value));
            }
            let present: std::collections::HashSet<DeviceId> =
                fleet.buckets.get(&holder).map(|p| p.bucket_of.keys().copied().collect()).unwrap_or_default();
            for device in fleet.view.devices_of(holder) {
                if !present.contains(&device) {
                    moves.extend(fleet.view.remove(holder, device).map(|(_, h, m)| (h, m)));
                }
            }
            if known.is_none() {
                tracing::info!(peer = %id.node_id, routes = present.len(), "peer joined the view");
            }
            self.tell_all(moves);
        }
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

/// Applies a peer's bucket `b` as gossiped: its devices added or updated,
/// those it no longer lists (and no newer bucket holds) removed. Returns the
/// identities whose presence moved. A malformed bucket changes nothing.
fn apply_peer_bucket(fleet: &mut Fleet, holder: Holder, b: u32, value: &str) -> Vec<(Home, Moved)> {
    let Some(entries) = decode_bucket(value) else { return Vec::new() };
    let peer = fleet.buckets.entry(holder).or_default();
    let mut moves = Vec::new();
    let mut listed = Vec::with_capacity(entries.len());
    for e in &entries {
        // An account number its key has not told (never, chitchat
        // delivers the account key first): the device waits for the next write.
        let Some(account) = peer.accounts.get(&e.account) else { continue };
        listed.push(e.device);
        let slot =
            Slot { holder, device: e.device, registered_at: e.registered_at, status: e.status, incoming: e.incoming };
        moves.extend(fleet.view.upsert(account, e.identity, slot));
    }
    for device in peer.relist(b, listed) {
        moves.extend(fleet.view.remove(holder, device).map(|(_, h, m)| (h, m)));
    }
    moves
}

/// `region|sip|media_ip|free|load permille|services|draining`.
fn encode_announcement(a: &Announcement) -> String {
    let services: Vec<&str> = a.state.services.iter().map(|s| s.as_str()).collect();
    let load = if a.state.load.is_nan() { 1000 } else { (a.state.load.clamp(0.0, 1.0) * 1000.0).round() as u32 };
    format!(
        "{}|{}|{}|{}|{}|{}|{}",
        a.state.region,
        a.sip.map(|s| s.to_string()).unwrap_or_default(),
        a.media_ip.map(|s| s.to_string()).unwrap_or_default(),
        a.state.free_media_sessions,
        load,
        services.join(","),
        u8::from(a.state.draining)
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
        media_ip,
    })
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
        if route.appliance != inner.appliance {
            return Err(RouteError::ForeignAppliance { appliance: route.appliance, this: inner.appliance.clone() });
        }
        let mut guard = inner.fleet();
        let fleet = &mut *guard;
        if let Some(home) = fleet.view.home(LOCAL, route.device).cloned() {
            if *home.account == route.account && *home.identity == *route.identity {
                // A refresh: the grant may have changed; status and time stay.
                if let Some(slot) = fleet.view.slot_mut(LOCAL, route.device) {
                    if slot.incoming != route.incoming {
                        slot.incoming = route.incoming;
                        fleet.local.touch(&route.account, &route.identity);
                        inner.publish(Op::Flush);
                    }
                }
                return Ok(());
            }
            // The device now registers another identity: it moves, with
            // its status and time.
            if let Some((slot, home, moved)) = fleet.view.remove(LOCAL, route.device) {
                inner.tell(&home.account, &home.identity, moved);
                fleet.local.remove(&home.account, &home.identity, route.device);
                let slot = Slot { incoming: route.incoming, ..slot };
                let moved = fleet.view.insert(&route.account, &route.identity, slot);
                inner.tell(&route.account, &route.identity, moved);
                inner.add_local(fleet, &route.account, &route.identity, route.device);
            }
            return Ok(());
        }
        if fleet.view.local >= inner.max_devices {
            return Err(RouteError::Full { limit: inner.max_devices });
        }
        let status = match route.status {
            PresenceStatus::Offline => PresenceStatus::Available,
            status => status,
        };
        let slot = Slot {
            holder: LOCAL,
            device: route.device,
            registered_at: route.registered_at,
            status,
            incoming: route.incoming,
        };
        let moved = fleet.view.insert(&route.account, &route.identity, slot);
        inner.tell(&route.account, &route.identity, moved);
        inner.add_local(fleet, &route.account, &route.identity, route.device);
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
        fleet.local.touch(&home.account, &home.identity);
        inner.publish(Op::Flush);
    }

    fn unregister(&self, device: DeviceId) {
        let inner = &*self.inner;
        let mut guard = inner.fleet();
        let fleet = &mut *guard;
        if let Some((_, home, moved)) = fleet.view.remove(LOCAL, device) {
            inner.tell(&home.account, &home.identity, moved);
            fleet.local.remove(&home.account, &home.identity, device);
            inner.publish(Op::Flush);
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
