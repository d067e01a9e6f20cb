//! Routes: where a client identity can be reached, and its presence.
//!
//! A **route** ties a client identity of an account to the appliance and the
//! device (one WebSocket connection) that hold it: "`alice` of `AC…1` is
//! reachable on device 17 of `bh-us1-a`, available, may be rung". An
//! identity has one route per registered device; its **presence** is the
//! most reachable status among them and how many there are.
//!
//! ```text
//!   client session (client/)  --register/set_status/unregister-->  RouteStore
//!   call layer (call/)        --devices/ringable/presence------->  RouteStore
//!   REST Clients.json (api/)  --list/presence------------------->  RouteStore
//!   metrics (admin/)          --counts-------------------------->  RouteStore
//!   presence subscribers      <--subscribe (PresenceChange)-----  RouteStore
//! ```
//!
//! - [`RouteStore`] is the one interface. [`InProcessRoutes`] implements it
//!   for a single box: a mutex around two maps, nothing persisted.
//! - Presence changes every second (registrations, calls starting and
//!   ending, heartbeats stopping), so it never goes into the SQL store
//!   (DESIGN.md, "Persistence"): a restart forgets it, and clients register
//!   again when they reconnect.
//! - Expiry is not decided here: the client's signaling session owns the
//!   heartbeat and calls [`RouteStore::unregister`] when it stops, the
//!   socket closes or the client unregisters.
//! - Between appliances, routes will be announced by gossip (chitchat, the
//!   routing issue) behind this same trait: each appliance then owns the
//!   keys of its own devices, and `devices`/`presence`/`list` also answer
//!   routes held by peers (their `appliance` names the peer).
//!
//! docs/presence.md describes statuses, aggregation and limits.

pub mod gossip;
mod in_process;
pub mod policy;
mod presence;
mod view;

pub use gossip::{GossipRoutes, GossipSettings};
pub use in_process::InProcessRoutes;
pub use presence::{Presence, PresenceChange, PresenceCounts, PresenceStatus};

use crate::store::AccountSid;
use std::net::{IpAddr, SocketAddr};
use tokio::sync::broadcast;

/// One WebSocket connection of a client (appliance-local, unique for the
/// process's life).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u64);

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "device-{}", self.0)
    }
}

/// A registered device: where a call to its identity can ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRoute {
    /// The connection holding the identity.
    pub device: DeviceId,
    /// The account of the token the device registered with.
    pub account: AccountSid,
    /// The token's `grants.identity`.
    pub identity: String,
    /// Never `Offline` for a registered device: a route registered as
    /// `Offline` is stored as `Available` (a registered device is present).
    pub status: PresenceStatus,
    /// The token's incoming grant: only these devices are rung.
    pub incoming: bool,
    /// The `[appliance] id` of the box holding the device
    /// (`config.appliance.id`; [`RouteStore::appliance`] for local devices).
    pub appliance: String,
    /// When the device first registered (a refresh keeps the first time).
    pub registered_at: std::time::SystemTime,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The appliance holds as many registered devices as it is configured
    /// for: the new one is refused, the ones registered stay.
    #[error("the appliance holds its maximum of {limit} registered client devices")]
    Full { limit: usize },
    /// The route names another appliance: only devices connected to this
    /// appliance register here (peers' routes arrive by gossip).
    #[error("a route of appliance {appliance:?} cannot be registered on {this:?}")]
    ForeignAppliance { appliance: String, this: String },
    /// The route has no identity.
    #[error("a route needs a client identity")]
    EmptyIdentity,
    /// The identity is longer than a fleet carries (a route change must fit
    /// one datagram of the route feed).
    #[error("a client identity of {len} bytes is longer than the {limit} a fleet carries")]
    IdentityTooLong { len: usize, limit: usize },
}

/// How many presence changes a subscriber may fall behind before it sees
/// `RecvError::Lagged` (see [`RouteStore::subscribe`]).
pub const PRESENCE_BACKLOG: usize = 4096;

/// Presence of client devices and where they are held: the routing table of
/// client identities. Every method is quick (a lock held for a map lookup
/// or two) and never blocks on I/O, so it may be called from async code.
pub trait RouteStore: Send + Sync {
    /// The `[appliance] id` of this appliance: the `appliance` of the
    /// routes registered here.
    fn appliance(&self) -> &str;

    /// Registers (or refreshes) a device; a device registered again keeps
    /// its status unless it was Offline (an Offline device is no longer
    /// registered, so it comes back with the route's status). A refresh
    /// takes the route's `incoming` and identity, keeps `registered_at`, and
    /// is never refused as [`RouteError::Full`].
    fn register(&self, route: DeviceRoute) -> Result<(), RouteError>;

    /// Busy while in a call, Away when the client says so, Available again.
    /// `Offline` unregisters the device. Unknown device: no-op.
    fn set_status(&self, device: DeviceId, status: PresenceStatus);

    /// The device unregistered, its heartbeat stopped or its socket closed.
    /// Unknown device: no-op.
    fn unregister(&self, device: DeviceId);

    /// The registered devices of one identity of one account (never
    /// another account's), in the order they registered.
    fn devices(&self, account: &AccountSid, identity: &str) -> Vec<DeviceRoute>;

    /// The devices a call to `identity` rings: registered with the incoming
    /// grant and `Available` (a busy or away device is not rung).
    fn ringable(&self, account: &AccountSid, identity: &str) -> Vec<DeviceRoute> {
        let mut devices = self.devices(account, identity);
        devices.retain(|d| d.incoming && d.status == PresenceStatus::Available);
        devices
    }

    /// The identity's presence; `Offline` with 0 devices when none is
    /// registered.
    fn presence(&self, account: &AccountSid, identity: &str) -> Presence;

    /// Every identity of an account with at least one device, sorted by
    /// identity.
    fn list(&self, account: &AccountSid) -> Vec<Presence>;

    /// Changes of an identity's [`Presence`] (status or device count), for
    /// every account; subscribers filter by account (and must: one account
    /// never sees another's presence). A change is sent only when the
    /// presence really changed, in the order the changes happened. A
    /// subscriber more than [`PRESENCE_BACKLOG`] changes behind gets
    /// `RecvError::Lagged` and has lost changes: that is the subscriber's
    /// problem to handle, by reading [`RouteStore::presence`] again for the
    /// identities it follows. Sending never waits for a subscriber.
    fn subscribe(&self) -> broadcast::Receiver<PresenceChange>;

    /// Totals for metrics: registered devices by status.
    fn counts(&self) -> PresenceCounts;

    /// Every appliance of the fleet as last announced, this one included
    /// (once it has announced), sorted by id. A peer the failure detector
    /// holds dead is listed with `state.alive == false` until it is
    /// forgotten. A single box (the in-process store) knows no fleet: empty.
    fn appliances(&self) -> Vec<Announcement> {
        Vec::new()
    }

    /// Publishes this appliance's own announcement (its resources change
    /// all the time: called every second or so). `me.state.id` is
    /// [`RouteStore::appliance`]. The in-process store has nobody to tell.
    fn announce(&self, me: Announcement) {
        let _ = me;
    }

    /// Round-trip latency measured to the other regions (from gossip round
    /// trips), in ms, one entry per pair of regions with a measurement.
    fn measured_latency(&self) -> Vec<(policy::Region, policy::Region, u32)> {
        Vec::new()
    }
}

/// What an appliance announces about itself besides its client routes:
/// what the route policy weighs ([`policy::ApplianceState`]) and where
/// peers reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    /// Id, region, draining flag, free media sessions, load, services and
    /// the failure detector's verdict.
    pub state: policy::ApplianceState,
    /// Where peers send the SIP of calls for the clients it holds (TCP).
    pub sip: Option<SocketAddr>,
    /// The same over TLS, with the SHA-256 of the certificate it shows:
    /// peers trust that certificate for this appliance because the fleet's
    /// sealed gossip said so (`crate::tls::FleetCerts`).
    pub sip_tls: Option<(SocketAddr, [u8; 32])>,
    /// The address its dataplane puts in SDP (where media anchored on it
    /// goes).
    pub media_ip: Option<IpAddr>,
}
