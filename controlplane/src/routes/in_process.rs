//! The single-box [`RouteStore`]: one mutex around the routes [`View`]
//! (shared with the fleet's gossip store), holding this appliance's
//! devices only.
//!
//! ```text
//!   accounts: AccountSid -> identity (sorted) -> [Slot; devices]
//!   homes:    (holder, DeviceId) -> (AccountSid, identity)     shared Arcs, no copies
//! ```
//!
//! Every operation is a hash lookup, two B-tree lookups and a scan of one
//! identity's few devices. Account SIDs and identities are held once
//! (`Arc`) however many devices share them; a device's own state is a
//! 32-byte `Slot`. Measured with a counting global allocator before the
//! table became the shared view (device homes were then a hash map keyed by
//! device; a B-tree is no larger per entry): 15,000 devices of distinct
//! identities in one account 226 bytes each; 100,000 over 10 accounts 187
//! bytes (164 with two devices per identity); 1,000,000 over 100 accounts
//! 212 bytes. The route of a device is rebuilt when it is read
//! (`devices`), so the appliance name is not stored per device.

use super::view::{summary, Moved, Registered, View, LOCAL};
use super::{DeviceId, DeviceRoute, Presence, PresenceChange, PresenceCounts, PresenceStatus, RouteError, RouteStore};
use crate::store::AccountSid;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::broadcast;

/// Presence and routes of the devices connected to this appliance, held in
/// memory (lost on restart; clients register again when they reconnect):
/// the fleet's [`View`] with this appliance's devices only.
pub struct InProcessRoutes {
    appliance: String,
    max_devices: usize,
    table: Mutex<View>,
    changes: broadcast::Sender<PresenceChange>,
}

impl InProcessRoutes {
    /// A store for the appliance named `appliance` (`config.appliance.id`)
    /// that holds at most `max_devices` registered devices; registrations
    /// beyond are refused with [`RouteError::Full`] (0 refuses every one).
    pub fn new(appliance: impl Into<String>, max_devices: usize) -> InProcessRoutes {
        let appliance = appliance.into();
        let (changes, _) = broadcast::channel(super::PRESENCE_BACKLOG);
        InProcessRoutes { table: Mutex::new(View::new(&appliance)), appliance, max_devices, changes }
    }

    /// The configured maximum of registered devices.
    pub fn max_devices(&self) -> usize {
        self.max_devices
    }

    /// The table. No operation panics while holding the lock, so a poisoned
    /// lock (a panic elsewhere in the thread) still holds a consistent table.
    fn table(&self) -> MutexGuard<'_, View> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Announces `identity`'s presence if it changed. Called with the lock
    /// held, so subscribers see changes in the order they happened; sending
    /// never waits.
    fn announce(&self, account: &AccountSid, identity: &str, (before, after): Moved) {
        if before == after || self.changes.receiver_count() == 0 {
            return;
        }
        let presence = Presence { identity: identity.to_string(), status: after.0, devices: after.1 };
        // Err only when every receiver went away meanwhile: nobody to tell.
        let _ = self.changes.send(PresenceChange { account: account.clone(), presence });
    }
}

impl RouteStore for InProcessRoutes {
    fn appliance(&self) -> &str {
        &self.appliance
    }

    fn register(&self, route: DeviceRoute) -> Result<(), RouteError> {
        if route.identity.is_empty() {
            return Err(RouteError::EmptyIdentity);
        }
        if route.appliance != self.appliance {
            return Err(RouteError::ForeignAppliance { appliance: route.appliance, this: self.appliance.clone() });
        }
        let mut table = self.table();
        // A refresh (the SDK registers again every 30 s) changes no presence.
        if let Registered::Placed { left, joined, .. } = table.register_local(&route, self.max_devices)? {
            if let Some((home, moved)) = left {
                self.announce(&home.account, &home.identity, moved);
            }
            self.announce(&route.account, &route.identity, joined);
        }
        Ok(())
    }

    fn set_status(&self, device: DeviceId, status: PresenceStatus) {
        if status == PresenceStatus::Offline {
            return self.unregister(device);
        }
        let mut table = self.table();
        if let Some((home, moved)) = table.set_status(LOCAL, device, status) {
            self.announce(&home.account, &home.identity, moved);
        }
    }

    fn unregister(&self, device: DeviceId) {
        let mut table = self.table();
        if let Some((_, home, moved)) = table.remove(LOCAL, device) {
            self.announce(&home.account, &home.identity, moved);
        }
    }

    fn devices(&self, account: &AccountSid, identity: &str) -> Vec<DeviceRoute> {
        let table = self.table();
        table.slots(account, identity).iter().map(|slot| table.route(account, identity, slot)).collect()
    }

    fn presence(&self, account: &AccountSid, identity: &str) -> Presence {
        let (status, devices) = summary(self.table().slots(account, identity));
        Presence { identity: identity.to_string(), status, devices }
    }

    fn list(&self, account: &AccountSid) -> Vec<Presence> {
        self.table().list(account)
    }

    fn subscribe(&self) -> broadcast::Receiver<PresenceChange> {
        self.changes.subscribe()
    }

    fn counts(&self) -> PresenceCounts {
        self.table().counts
    }
}

#[cfg(test)]
mod tests {
    use super::super::view::{Home, Slot};
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};
    use PresenceStatus::*;

    const BOX: &str = "bh-test";

    fn ac(n: u8) -> AccountSid {
        AccountSid::parse(&format!("AC{:032x}", n)).unwrap()
    }

    fn route(device: u64, account: &AccountSid, identity: &str, status: PresenceStatus) -> DeviceRoute {
        DeviceRoute {
            device: DeviceId(device),
            account: account.clone(),
            identity: identity.into(),
            status,
            incoming: true,
            appliance: BOX.into(),
            registered_at: SystemTime::UNIX_EPOCH + Duration::from_secs(device),
        }
    }

    fn presence(identity: &str, status: PresenceStatus, devices: usize) -> Presence {
        Presence { identity: identity.into(), status, devices }
    }

    fn drain(rx: &mut broadcast::Receiver<PresenceChange>) -> Vec<(String, String, PresenceStatus, usize)> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|c| (c.account.as_str()[32..].to_string(), c.presence.identity, c.presence.status, c.presence.devices))
            .collect()
    }

    #[test]
    fn aggregates_the_most_reachable_device() {
        let r = InProcessRoutes::new(BOX, 10);
        let a = ac(1);
        assert_eq!(r.presence(&a, "alice"), presence("alice", Offline, 0));
        r.register(route(1, &a, "alice", Away)).unwrap();
        assert_eq!(r.presence(&a, "alice"), presence("alice", Away, 1));
        r.register(route(2, &a, "alice", Busy)).unwrap();
        assert_eq!(r.presence(&a, "alice"), presence("alice", Busy, 2));
        r.register(route(3, &a, "alice", Available)).unwrap();
        assert_eq!(r.presence(&a, "alice"), presence("alice", Available, 3));
        r.set_status(DeviceId(3), Away);
        assert_eq!(r.presence(&a, "alice"), presence("alice", Busy, 3));
        r.set_status(DeviceId(2), Away);
        assert_eq!(r.presence(&a, "alice"), presence("alice", Away, 3));
        r.unregister(DeviceId(1));
        r.unregister(DeviceId(2));
        r.unregister(DeviceId(3));
        assert_eq!(r.presence(&a, "alice"), presence("alice", Offline, 0));
        assert!(r.list(&a).is_empty());
        assert_eq!(r.counts(), PresenceCounts::default());
    }

    #[test]
    fn several_devices_per_identity() {
        let r = InProcessRoutes::new(BOX, 10);
        let a = ac(1);
        r.register(route(7, &a, "alice", Available)).unwrap();
        r.register(route(3, &a, "alice", Busy)).unwrap();
        let mut no_incoming = route(5, &a, "alice", Available);
        no_incoming.incoming = false;
        r.register(no_incoming).unwrap();
        r.register(route(4, &a, "bob", Away)).unwrap();
        let devices = r.devices(&a, "alice");
        assert_eq!(devices.iter().map(|d| d.device.0).collect::<Vec<_>>(), [7, 3, 5], "in registration order");
        assert_eq!(devices[0], route(7, &a, "alice", Available), "the route as registered");
        assert_eq!(r.ringable(&a, "alice").iter().map(|d| d.device.0).collect::<Vec<_>>(), [7]);
        assert_eq!(r.list(&a), [presence("alice", Available, 3), presence("bob", Away, 1)]);
        assert_eq!(r.counts(), PresenceCounts { available: 2, busy: 1, away: 1 });
        r.unregister(DeviceId(7));
        assert_eq!(r.presence(&a, "alice"), presence("alice", Available, 2));
        assert!(r.ringable(&a, "alice").is_empty(), "the available one has no incoming grant");
        assert_eq!(r.counts().total(), 3);
    }

    #[test]
    fn list_is_sorted_by_identity() {
        let r = InProcessRoutes::new(BOX, 10);
        let a = ac(1);
        for (d, id) in [(1, "carol"), (2, "Bob"), (3, "alice"), (4, "bob")] {
            r.register(route(d, &a, id, Available)).unwrap();
        }
        let ids: Vec<String> = r.list(&a).into_iter().map(|p| p.identity).collect();
        assert_eq!(ids, ["Bob", "alice", "bob", "carol"], "byte order, identities are case-sensitive");
    }

    #[test]
    fn accounts_never_see_each_other() {
        let r = InProcessRoutes::new(BOX, 10);
        let (a, b) = (ac(1), ac(2));
        r.register(route(1, &a, "alice", Available)).unwrap();
        r.register(route(2, &b, "alice", Busy)).unwrap();
        r.register(route(3, &b, "alice", Busy)).unwrap();
        assert_eq!(r.devices(&a, "alice").iter().map(|d| d.device.0).collect::<Vec<_>>(), [1]);
        assert_eq!(r.devices(&b, "alice").iter().map(|d| d.device.0).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(r.presence(&a, "alice"), presence("alice", Available, 1));
        assert_eq!(r.presence(&b, "alice"), presence("alice", Busy, 2));
        assert_eq!(r.list(&a), [presence("alice", Available, 1)]);
        assert_eq!(r.list(&b), [presence("alice", Busy, 2)]);
        assert!(r.list(&ac(3)).is_empty());
        r.unregister(DeviceId(1));
        assert_eq!(r.presence(&b, "alice"), presence("alice", Busy, 2), "the other account's identity stays");
    }

    #[test]
    fn unknown_devices_are_no_ops() {
        let r = InProcessRoutes::new(BOX, 10);
        let mut rx = r.subscribe();
        r.register(route(1, &ac(1), "alice", Available)).unwrap();
        drain(&mut rx);
        r.unregister(DeviceId(99));
        r.set_status(DeviceId(99), Busy);
        r.set_status(DeviceId(99), Offline);
        assert!(drain(&mut rx).is_empty());
        assert_eq!(r.counts(), PresenceCounts { available: 1, busy: 0, away: 0 });
        r.unregister(DeviceId(1));
        r.unregister(DeviceId(1));
        assert_eq!(drain(&mut rx).len(), 1, "one change for the first unregister only");
        assert_eq!(r.counts().total(), 0);
    }

    #[test]
    fn full_refuses_new_devices_and_keeps_the_registered() {
        let r = InProcessRoutes::new(BOX, 2);
        let a = ac(1);
        r.register(route(1, &a, "alice", Available)).unwrap();
        r.register(route(2, &a, "bob", Available)).unwrap();
        assert_eq!(r.register(route(3, &a, "carol", Available)), Err(RouteError::Full { limit: 2 }));
        assert_eq!(r.register(route(3, &a, "alice", Available)), Err(RouteError::Full { limit: 2 }));
        assert_eq!(r.list(&a), [presence("alice", Available, 1), presence("bob", Available, 1)]);
        assert_eq!(r.presence(&a, "carol"), presence("carol", Offline, 0));
        // A refresh of a registered device is not a new registration.
        r.register(route(1, &a, "alice", Available)).unwrap();
        r.unregister(DeviceId(2));
        r.register(route(3, &a, "carol", Available)).unwrap();
        assert_eq!(r.counts().total(), 2);
        let none = InProcessRoutes::new(BOX, 0);
        assert_eq!(none.register(route(1, &a, "alice", Available)), Err(RouteError::Full { limit: 0 }));
    }

    #[test]
    fn changes_are_broadcast_only_when_presence_changes() {
        let r = InProcessRoutes::new(BOX, 10);
        let (a, b) = (ac(1), ac(2));
        let mut rx = r.subscribe();
        r.register(route(1, &a, "alice", Available)).unwrap();
        assert_eq!(drain(&mut rx), [("01".into(), "alice".into(), Available, 1)]);
        r.set_status(DeviceId(1), Available);
        r.register(route(1, &a, "alice", Available)).unwrap();
        assert!(drain(&mut rx).is_empty(), "same status, a refresh: nothing changed");
        r.register(route(2, &a, "alice", Busy)).unwrap();
        assert_eq!(drain(&mut rx), [("01".into(), "alice".into(), Available, 2)], "the count changed");
        r.set_status(DeviceId(2), Away);
        assert!(drain(&mut rx).is_empty(), "still available with 2 devices");
        r.set_status(DeviceId(1), Busy);
        assert_eq!(drain(&mut rx), [("01".into(), "alice".into(), Busy, 2)]);
        r.register(route(3, &b, "alice", Away)).unwrap();
        assert_eq!(drain(&mut rx), [("02".into(), "alice".into(), Away, 1)], "each change names its account");
        r.set_status(DeviceId(1), Offline);
        assert_eq!(drain(&mut rx), [("01".into(), "alice".into(), Away, 1)], "Offline unregisters");
        r.unregister(DeviceId(2));
        assert_eq!(drain(&mut rx), [("01".into(), "alice".into(), Offline, 0)]);
        // A device moving to another identity: both identities change.
        r.register(route(3, &b, "bob", Available)).unwrap();
        assert_eq!(
            drain(&mut rx),
            [("02".into(), "alice".into(), Offline, 0), ("02".into(), "bob".into(), Away, 1)],
            "the device keeps its status when it moves"
        );
        assert_eq!(r.counts(), PresenceCounts { available: 0, busy: 0, away: 1 });
    }

    #[test]
    fn a_lagging_subscriber_is_told_it_lagged() {
        let r = InProcessRoutes::new(BOX, usize::MAX);
        let mut rx = r.subscribe();
        let a = ac(1);
        for d in 0..super::super::PRESENCE_BACKLOG as u64 + 10 {
            r.register(route(d, &a, &format!("id{d}"), Available)).unwrap();
        }
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Lagged(10))));
        assert!(rx.try_recv().is_ok(), "then it goes on with what is left");
    }

    #[test]
    fn reregistering_keeps_busy_and_the_first_time() {
        let r = InProcessRoutes::new(BOX, 10);
        let a = ac(1);
        r.register(route(1, &a, "alice", Available)).unwrap();
        r.set_status(DeviceId(1), Busy);
        let mut again = route(1, &a, "alice", Available);
        again.incoming = false;
        again.registered_at += Duration::from_secs(30);
        r.register(again).unwrap();
        let d = &r.devices(&a, "alice")[0];
        assert_eq!((d.status, d.incoming), (Busy, false), "status kept, grant refreshed");
        assert_eq!(d.registered_at, route(1, &a, "alice", Available).registered_at);
        assert_eq!(r.counts(), PresenceCounts { available: 0, busy: 1, away: 0 });
        // Once offline it is gone: registering again takes the route's status.
        r.set_status(DeviceId(1), Offline);
        assert_eq!(r.presence(&a, "alice"), presence("alice", Offline, 0));
        r.register(route(1, &a, "alice", Available)).unwrap();
        assert_eq!(r.presence(&a, "alice"), presence("alice", Available, 1));
        // A route registered as Offline is present all the same.
        r.register(route(2, &a, "bob", Offline)).unwrap();
        assert_eq!(r.presence(&a, "bob"), presence("bob", Available, 1));
    }

    #[test]
    fn refuses_foreign_and_anonymous_routes() {
        let r = InProcessRoutes::new(BOX, 10);
        let mut foreign = route(1, &ac(1), "alice", Available);
        foreign.appliance = "bh-eu1-a".into();
        assert_eq!(
            r.register(foreign),
            Err(RouteError::ForeignAppliance { appliance: "bh-eu1-a".into(), this: BOX.into() })
        );
        assert_eq!(r.register(route(1, &ac(1), "", Available)), Err(RouteError::EmptyIdentity));
        assert_eq!(r.counts().total(), 0);
        assert_eq!(r.appliance(), BOX);
    }

    #[test]
    fn per_device_state_stays_small() {
        // The measured 160-230 bytes per device (module doc) rest on these.
        assert!(std::mem::size_of::<Slot>() <= 32, "{}", std::mem::size_of::<Slot>());
        assert!(std::mem::size_of::<Home>() <= 24, "{}", std::mem::size_of::<Home>());
        // Shared keys: many devices, one copy of the account and identity.
        let r = InProcessRoutes::new(BOX, 10);
        let a = ac(1);
        r.register(route(1, &a, "alice", Available)).unwrap();
        r.register(route(2, &a, "alice", Available)).unwrap();
        let table = r.table();
        let (h1, h2) = (table.home(LOCAL, DeviceId(1)).unwrap(), table.home(LOCAL, DeviceId(2)).unwrap());
        assert!(Arc::ptr_eq(&h1.account, &h2.account) && Arc::ptr_eq(&h1.identity, &h2.identity));
    }
}
