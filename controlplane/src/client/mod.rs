//! Client signaling: Voice SDK clients over WSS at `/signal`.
//!
//! ```text
//!   browser / app ──WSS /signal──▶ ws.rs (one task per socket)
//!                                    │  protocol.rs: frames <-> ClientMessage / ServerMessage
//!                                    │  session.rs:  token, presence, heartbeat (sans-IO)
//!                                    ├──▶ routes::RouteStore (register, status, unregister)
//!                                    └──▶ call shell: ClientEvent (invite, answer, hangup, ...)
//!   call shell ──ClientHub::send(device, frame)──▶ that socket's task
//! ```
//!
//! The [`ClientHub`] knows every open connection (a [`DeviceId`]) and the
//! channel to its task; the call shell reaches devices through it, the
//! presence fan-out and key revocations too. docs/client-protocol.md is
//! the protocol; docs/clients.md how calls to and from clients work.

pub mod metrics;
pub mod protocol;
pub mod session;
pub mod sip_ws;
pub mod ws;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::routes::{DeviceId, PresenceChange, RouteStore};
use crate::store::{AccountSid, ApiKey, ApiKeySid, Store, StoreError};
use crate::token::OutgoingGrant;
use protocol::{ClientMessage, ServerMessage};

/// Who a client is, as its token says: what the call shell needs to know
/// about the sender of a call message.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientInfo {
    pub account: AccountSid,
    pub identity: String,
    pub incoming: bool,
    pub outgoing: Option<OutgoingGrant>,
}

/// From client connections to the call shell.
#[derive(Debug)]
pub enum ClientEvent {
    Message {
        device: DeviceId,
        client: Arc<ClientInfo>,
        message: ClientMessage,
    },
    /// The connection closed (or was closed): its ringing calls stop ringing
    /// there, its answered calls wait for a reconnect.
    Gone {
        device: DeviceId,
    },
    /// A SIP-over-WebSocket connection closed: its registration ends.
    SipClosed {
        connection: u64,
    },
}

/// To one connection's task.
#[derive(Debug)]
pub enum ToDevice {
    /// Boxed: the channel's first block holds 32 of these for every
    /// connection, idle ones too (a bare `ServerMessage` made that block
    /// about 5 KiB of each client's memory; docs/benchmarks.md).
    Frame(Box<ServerMessage>),
    /// An API key was deleted: the session checks whether it is its own.
    Revoked(ApiKeySid),
}

/// Message types counted in metrics, both directions.
pub const MESSAGE_KINDS: [&str; 22] = [
    "heartbeat",
    "listen",
    "register",
    "invite",
    "answer",
    "reject",
    "hangup",
    "dtmf",
    "reinvite",
    "message",
    "presence-subscribe",
    "presence-unsubscribe",
    "presence-set",
    "connected",
    "ready",
    "offline",
    "ringing",
    "cancel",
    "ack",
    "error",
    "presence",
    "malformed",
];

/// Token refusals counted by reason (`TokenError` variants).
pub const TOKEN_REFUSALS: [&str; 10] = [
    "malformed",
    "unsupported_algorithm",
    "unsupported_header",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "lifetime_too_long",
    "unknown_key",
    "wrong_account",
    "lookup",
];

/// Counters of client signaling, read at scrape time.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Open WebSocket connections.
    pub connections: AtomicU64,
    /// Connections refused at the limit (`[clients] max_connections`).
    pub refused: AtomicU64,
    /// Open SIP-over-WebSocket connections.
    pub sip_connections: AtomicU64,
    /// Connections cut off because they did not read their frames.
    pub overflowed: AtomicU64,
    /// Messages received by type ([`MESSAGE_KINDS`] order).
    pub received: [AtomicU64; 22],
    pub sent: [AtomicU64; 22],
    /// Tokens refused by reason ([`TOKEN_REFUSALS`] order).
    pub token_refusals: [AtomicU64; 10],
}

impl ClientStats {
    pub fn count_received(&self, kind: &str) {
        if let Some(i) = MESSAGE_KINDS.iter().position(|k| *k == kind) {
            self.received[i].fetch_add(1, Relaxed);
        }
    }

    pub fn count_sent(&self, kind: &str) {
        if let Some(i) = MESSAGE_KINDS.iter().position(|k| *k == kind) {
            self.sent[i].fetch_add(1, Relaxed);
        }
    }

    pub fn count_refusal(&self, error: &crate::token::TokenError) {
        use crate::token::TokenError as E;
        let i = match error {
            E::Malformed(_) => 0,
            E::UnsupportedAlgorithm(_) => 1,
            E::UnsupportedHeader(_) => 2,
            E::BadSignature => 3,
            E::Expired { .. } => 4,
            E::NotYetValid { .. } => 5,
            E::LifetimeTooLong { .. } => 6,
            E::UnknownKey(_) => 7,
            E::WrongAccount { .. } => 8,
            E::Lookup(_) => 9,
        };
        self.token_refusals[i].fetch_add(1, Relaxed);
    }
}

/// Frames waiting for one connection at most. A client that reads
/// nothing while this many pile up (a stalled socket, a watcher of a busy
/// identity that never reads) is cut off: its queue is closed, its task
/// sends what is queued and then closes the connection.
pub const DEVICE_QUEUE: usize = 256;

struct Device {
    tx: mpsc::Sender<ToDevice>,
    key: Option<ApiKeySid>,
}

impl Device {
    /// Queues `to`; on a full queue the device is cut off (counted).
    fn offer(&mut self, device: DeviceId, to: ToDevice, stats: &ClientStats) -> bool {
        match self.tx.try_send(to) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    device = device.0,
                    queue = DEVICE_QUEUE,
                    "client too slow: its queue is full; closing it"
                );
                stats.overflowed.fetch_add(1, Relaxed);
                // A sender whose receiver is gone: this one's task sees its
                // channel end (its own sender is dropped here) and closes.
                let (closed, _) = mpsc::channel(1);
                self.tx = closed;
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[derive(Default)]
struct HubState {
    devices: HashMap<DeviceId, Device>,
    /// Presence subscriptions: (account, identity) -> subscribed devices.
    watchers: HashMap<(AccountSid, String), HashSet<DeviceId>>,
}

/// Every open client connection, the way to each, and presence watchers.
pub struct ClientHub {
    next: AtomicU64,
    state: Mutex<HubState>,
    pub stats: ClientStats,
    pub routes: Arc<dyn RouteStore>,
    /// To the call shell.
    pub calls: mpsc::UnboundedSender<ClientEvent>,
    keys: KeyCache,
    /// Connections at once; more are refused (the process's open-file limit
    /// is shared with media sockets: docs/clients.md "Sizing").
    pub max_connections: usize,
    /// This appliance's name, in the routes of its devices.
    pub appliance: String,
    /// The SIP stack, for SIP-over-WebSocket connections (set by the call
    /// shell when it starts).
    sip: std::sync::OnceLock<crate::sip::transport::SipHandle>,
}

impl ClientHub {
    pub fn new(
        store: Arc<dyn Store>,
        routes: Arc<dyn RouteStore>,
        calls: mpsc::UnboundedSender<ClientEvent>,
        max_connections: usize,
        appliance: String,
    ) -> Arc<ClientHub> {
        Arc::new(ClientHub {
            next: AtomicU64::new(1),
            state: Mutex::new(HubState::default()),
            stats: ClientStats::default(),
            routes,
            calls,
            keys: KeyCache::new(store),
            max_connections,
            appliance,
            sip: std::sync::OnceLock::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection, or `None` at the limit.
    pub fn attach(&self) -> Option<(DeviceId, mpsc::Receiver<ToDevice>)> {
        let mut state = self.state();
        if state.devices.len() + self.sip_connections() >= self.max_connections {
            self.stats.refused.fetch_add(1, Relaxed);
            return None;
        }
        let device = DeviceId(self.next.fetch_add(1, Relaxed));
        let (tx, rx) = mpsc::channel(DEVICE_QUEUE);
        state.devices.insert(device, Device { tx, key: None });
        self.stats.connections.fetch_add(1, Relaxed);
        Some((device, rx))
    }

    /// A device id for a client that is not a Voice SDK socket (a SIP
    /// registration): unique among all devices.
    pub fn new_device_id(&self) -> DeviceId {
        DeviceId(self.next.fetch_add(1, Relaxed))
    }

    pub fn set_sip(&self, sip: crate::sip::transport::SipHandle) {
        let _ = self.sip.set(sip);
    }

    pub fn sip(&self) -> Option<&crate::sip::transport::SipHandle> {
        self.sip.get()
    }

    /// Counts a connection that is not a Voice SDK socket (SIP over
    /// WebSocket) against the limit; false at the limit.
    pub fn reserve(&self) -> bool {
        let state = self.state();
        if state.devices.len() + self.sip_connections() >= self.max_connections {
            self.stats.refused.fetch_add(1, Relaxed);
            return false;
        }
        self.stats.sip_connections.fetch_add(1, Relaxed);
        true
    }

    pub fn release(&self) {
        self.stats.sip_connections.fetch_sub(1, Relaxed);
    }

    fn sip_connections(&self) -> usize {
        usize::try_from(self.stats.sip_connections.load(Relaxed)).unwrap_or(usize::MAX)
    }

    /// The connection is gone: forget it, its registration and watches.
    pub fn detach(&self, device: DeviceId) {
        let mut state = self.state();
        if state.devices.remove(&device).is_some() {
            self.stats.connections.fetch_sub(1, Relaxed);
        }
        state.watchers.retain(|_, set| {
            set.remove(&device);
            !set.is_empty()
        });
        drop(state);
        self.routes.unregister(device);
        let _ = self.calls.send(ClientEvent::Gone { device });
    }

    pub fn set_key(&self, device: DeviceId, key: ApiKeySid) {
        if let Some(d) = self.state().devices.get_mut(&device) {
            d.key = Some(key);
        }
    }

    /// Sends a frame to a device's connection; false if it is gone.
    pub fn send(&self, device: DeviceId, frame: ServerMessage) -> bool {
        match self.state().devices.get_mut(&device) {
            Some(d) => d.offer(device, ToDevice::Frame(Box::new(frame)), &self.stats),
            None => false,
        }
    }

    pub fn connected(&self, device: DeviceId) -> bool {
        self.state().devices.contains_key(&device)
    }

    pub fn watch(&self, device: DeviceId, account: &AccountSid, identities: &[String]) {
        let mut state = self.state();
        for identity in identities {
            state.watchers.entry((account.clone(), identity.clone())).or_default().insert(device);
        }
    }

    pub fn unwatch(&self, device: DeviceId, account: &AccountSid, identities: &[String]) {
        let mut state = self.state();
        for identity in identities {
            let key = (account.clone(), identity.clone());
            if let Some(set) = state.watchers.get_mut(&key) {
                set.remove(&device);
                if set.is_empty() {
                    state.watchers.remove(&key);
                }
            }
        }
    }

    /// Sends a presence change to the devices that watch it.
    fn fan_out(&self, change: &PresenceChange) {
        let mut state = self.state();
        let state = &mut *state;
        let key = (change.account.clone(), change.presence.identity.clone());
        let Some(watchers) = state.watchers.get(&key) else { return };
        for device in watchers {
            if let Some(d) = state.devices.get_mut(device) {
                let frame = ServerMessage::Presence {
                    identity: change.presence.identity.clone(),
                    status: status_name(change.presence.status),
                    devices: change.presence.devices,
                };
                d.offer(*device, ToDevice::Frame(Box::new(frame)), &self.stats);
            }
        }
    }

    fn revoke(&self, key: &ApiKeySid) {
        self.keys.forget(key);
        for (device, d) in self.state().devices.iter_mut() {
            if d.key.as_ref() == Some(key) {
                d.offer(*device, ToDevice::Revoked(key.clone()), &self.stats);
            }
        }
    }

    /// Looks up an API key for token verification (cached while the
    /// store's configuration does not change).
    pub fn api_key(&self, sid: &ApiKeySid) -> Result<Option<ApiKey>, StoreError> {
        self.keys.get(sid)
    }

    /// Runs the presence fan-out and the revocation watcher until both
    /// channels close.
    pub fn spawn_watchers(self: &Arc<Self>, mut revocations: tokio::sync::broadcast::Receiver<crate::api::KeyRevoked>) {
        let hub = self.clone();
        let mut changes = self.routes.subscribe();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match changes.recv().await {
                    Ok(change) => hub.fan_out(&change),
                    Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "presence fan-out fell behind"),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        let hub = self.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match revocations.recv().await {
                    Ok(revoked) => hub.revoke(&revoked.key_sid),
                    Err(RecvError::Lagged(_)) => hub.keys.clear(),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        // A key deleted through another appliance of the fleet (a shared
        // store) is announced by no local REST call: when the store's
        // configuration changes, the keys of connected clients are looked
        // up again and the clients of the ones gone are disconnected.
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut seen = None;
            loop {
                tokio::time::sleep(KEY_RECHECK).await;
                let Some(hub) = hub.upgrade() else { return };
                let version = hub.keys.store.config_version();
                if version.is_none() || version == seen {
                    continue;
                }
                seen = version;
                let keys: std::collections::HashSet<ApiKeySid> =
                    hub.state().devices.values().filter_map(|d| d.key.clone()).collect();
                let store = hub.keys.store.clone();
                let gone = tokio::task::spawn_blocking(move || {
                    keys.into_iter()
                        .filter(|k| matches!(store.api_key(k), Err(StoreError::NotFound { .. })))
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                for key in gone {
                    tracing::info!(%key, "API key deleted elsewhere in the fleet: its clients are disconnected");
                    hub.revoke(&key);
                }
            }
        });
    }
}

/// How often the store's configuration version is compared, to notice keys
/// deleted through other appliances.
const KEY_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

pub fn status_name(status: crate::routes::PresenceStatus) -> &'static str {
    use crate::routes::PresenceStatus as S;
    match status {
        S::Available => "available",
        S::Busy => "busy",
        S::Away => "away",
        S::Offline => "offline",
    }
}

/// API keys by SID, valid while the store's configuration version is the
/// one they were read at: every `listen` needs its key, and thousands of
/// clients share a handful of keys.
struct KeyCache {
    store: Arc<dyn Store>,
    cached: Mutex<(Option<u64>, HashMap<ApiKeySid, ApiKey>)>,
}

impl KeyCache {
    fn new(store: Arc<dyn Store>) -> KeyCache {
        KeyCache { store, cached: Mutex::new((None, HashMap::new())) }
    }

    fn get(&self, sid: &ApiKeySid) -> Result<Option<ApiKey>, StoreError> {
        let version = self.store.config_version();
        {
            let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
            if cached.0 != version || version.is_none() {
                *cached = (version, HashMap::new());
            }
            if let Some(key) = cached.1.get(sid) {
                return Ok(Some(key.clone()));
            }
        }
        let found = crate::token::lookup_in(&*self.store)(sid)?;
        if let (Some(key), Some(_)) = (&found, version) {
            let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
            if cached.0 == version {
                cached.1.insert(sid.clone(), key.clone());
            }
        }
        Ok(found)
    }

    fn forget(&self, sid: &ApiKeySid) {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner).1.remove(sid);
    }

    fn clear(&self) {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner).1.clear();
    }
}
