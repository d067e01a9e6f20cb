//! The routes as this appliance sees them: its own devices and (in a
//! fleet) the live peers', in one index so that an identity's presence is
//! the aggregate over every appliance holding it. The in-process store
//! uses it with this appliance's devices only; the gossip store with all.
//!
//! ```text
//!   accounts: AccountSid -> identity (sorted) -> [Slot; devices]   slot.holder names the appliance
//!   homes:    (holder, DeviceId) -> (AccountSid, identity)          ordered: a holder's devices are one range
//! ```
//!
//! Holder 0 is this appliance; each live peer (a chitchat id: appliance id
//! and generation) gets a number when it joins the view and loses its
//! devices at once when it leaves (dead, superseded, or partitioned away).
//! A `DeviceId` is unique only within its holder.

use super::presence::aggregate;
use super::{DeviceId, DeviceRoute, Presence, PresenceCounts, PresenceStatus, RouteError};
use crate::store::AccountSid;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

/// Who holds a device: 0 is this appliance, others are peers in the view.
pub(super) type Holder = u32;
pub(super) const LOCAL: Holder = 0;

#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub holder: Holder,
    pub device: DeviceId,
    pub registered_at: SystemTime,
    pub status: PresenceStatus,
    pub incoming: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Home {
    pub account: Arc<AccountSid>,
    pub identity: Arc<str>,
}

/// An identity's (status, device count) before and after an operation.
pub(super) type Moved = ((PresenceStatus, usize), (PresenceStatus, usize));

/// What [`View::register_local`] did.
pub(super) enum Registered {
    /// The device was there already; the slot if its grant changed.
    Refreshed(Option<Slot>),
    /// The device is in, new or moved from another identity (`left`: that
    /// identity's home and move); `joined`: its identity's move.
    Placed { slot: Slot, left: Option<(Home, Moved)>, joined: Moved },
}

#[derive(Debug, Default)]
pub(super) struct View {
    accounts: HashMap<Arc<AccountSid>, BTreeMap<Arc<str>, Vec<Slot>>>,
    homes: BTreeMap<(Holder, DeviceId), Home>,
    /// Every device in the view, by status.
    pub counts: PresenceCounts,
    /// Devices of this appliance (the `Full` rule counts these only).
    pub local: usize,
    /// Appliance id of each holder.
    names: HashMap<Holder, Arc<str>>,
    next_holder: Holder,
}

pub(super) fn summary(slots: &[Slot]) -> (PresenceStatus, usize) {
    aggregate(slots.iter().map(|s| s.status))
}

impl View {
    pub fn new(me: &str) -> View {
        let mut v = View { next_holder: LOCAL + 1, ..View::default() };
        v.names.insert(LOCAL, Arc::from(me));
        v
    }

    /// A number for a peer joining the view.
    pub fn add_holder(&mut self, appliance: &str) -> Holder {
        let h = self.next_holder;
        self.next_holder = self.next_holder.wrapping_add(1).max(LOCAL + 1);
        self.names.insert(h, Arc::from(appliance));
        h
    }

    /// Forgets a peer and takes its devices out, with each identity's move.
    pub fn remove_holder(&mut self, holder: Holder) -> Vec<(Home, Moved)> {
        let devices: Vec<DeviceId> = self.devices_of(holder);
        let moved = devices.into_iter().filter_map(|d| self.remove(holder, d).map(|(_, h, m)| (h, m))).collect();
        self.names.remove(&holder);
        moved
    }

    /// The devices a holder has in the view.
    pub fn devices_of(&self, holder: Holder) -> Vec<DeviceId> {
        self.homes.range((holder, DeviceId(0))..=(holder, DeviceId(u64::MAX))).map(|((_, d), _)| *d).collect()
    }

    pub fn home(&self, holder: Holder, device: DeviceId) -> Option<&Home> {
        self.homes.get(&(holder, device))
    }

    pub fn slots(&self, account: &AccountSid, identity: &str) -> &[Slot] {
        self.accounts.get(account).and_then(|ids| ids.get(identity)).map_or(&[], Vec::as_slice)
    }

    pub fn slot_mut(&mut self, holder: Holder, device: DeviceId) -> Option<&mut Slot> {
        let home = self.homes.get(&(holder, device))?;
        let slots = self.accounts.get_mut(&*home.account)?.get_mut(&*home.identity)?;
        slots.iter_mut().find(|s| s.holder == holder && s.device == device)
    }

    pub fn route(&self, account: &AccountSid, identity: &str, slot: &Slot) -> DeviceRoute {
        DeviceRoute {
            device: slot.device,
            account: account.clone(),
            identity: identity.to_string(),
            status: slot.status,
            incoming: slot.incoming,
            appliance: self.names.get(&slot.holder).map_or_else(String::new, |n| n.to_string()),
            registered_at: slot.registered_at,
        }
    }

    pub fn list(&self, account: &AccountSid) -> Vec<Presence> {
        let Some(identities) = self.accounts.get(account) else { return Vec::new() };
        identities
            .iter()
            .map(|(identity, slots)| {
                let (status, devices) = summary(slots);
                Presence { identity: identity.to_string(), status, devices }
            })
            .collect()
    }

    /// Adds `slot` under (`account`, `identity`); the device must not be
    /// in the view.
    pub fn insert(&mut self, account: &AccountSid, identity: &str, slot: Slot) -> Moved {
        let account_key =
            self.accounts.get_key_value(account).map_or_else(|| Arc::new(account.clone()), |(k, _)| k.clone());
        let identities = self.accounts.entry(account_key.clone()).or_default();
        let identity_key = identities.get_key_value(identity).map_or_else(|| Arc::from(identity), |(k, _)| k.clone());
        let slots = identities.entry(identity_key.clone()).or_insert_with(|| Vec::with_capacity(1));
        let before = summary(slots);
        slots.push(slot);
        let after = summary(slots);
        if let Some(n) = self.counts.slot(slot.status) {
            *n += 1;
        }
        if slot.holder == LOCAL {
            self.local += 1;
        }
        self.homes.insert((slot.holder, slot.device), Home { account: account_key, identity: identity_key });
        (before, after)
    }

    /// Takes a device out, with its slot, its home and its identity's move.
    pub fn remove(&mut self, holder: Holder, device: DeviceId) -> Option<(Slot, Home, Moved)> {
        let home = self.homes.remove(&(holder, device))?;
        let identities = self.accounts.get_mut(&*home.account)?;
        let slots = identities.get_mut(&*home.identity)?;
        let before = summary(slots);
        let slot = slots.remove(slots.iter().position(|s| s.holder == holder && s.device == device)?);
        let after = summary(slots);
        if slots.is_empty() {
            identities.remove(&*home.identity);
            if identities.is_empty() {
                self.accounts.remove(&*home.account);
            }
        }
        if let Some(n) = self.counts.slot(slot.status) {
            *n -= 1;
        }
        if holder == LOCAL {
            self.local -= 1;
        }
        Some((slot, home, (before, after)))
    }

    /// Sets a device's status; returns its identity's home and move.
    pub fn set_status(&mut self, holder: Holder, device: DeviceId, status: PresenceStatus) -> Option<(Home, Moved)> {
        let home = self.homes.get(&(holder, device))?.clone();
        let slots = self.accounts.get_mut(&*home.account)?.get_mut(&*home.identity)?;
        let before = summary(slots);
        let slot = slots.iter_mut().find(|s| s.holder == holder && s.device == device)?;
        if let Some(n) = self.counts.slot(slot.status) {
            *n -= 1;
        }
        if let Some(n) = self.counts.slot(status) {
            *n += 1;
        }
        slot.status = status;
        let after = summary(slots);
        Some((home, (before, after)))
    }

    /// Registers one of this appliance's devices (both stores' rule): a
    /// refresh keeps status and time and takes the grant; a device that
    /// now registers another identity moves with its status and time; a
    /// new one comes in available (offline means available here) unless
    /// `max_devices` are held already.
    pub fn register_local(&mut self, route: &DeviceRoute, max_devices: usize) -> Result<Registered, RouteError> {
        if let Some(home) = self.home(LOCAL, route.device).cloned() {
            if *home.account == route.account && *home.identity == *route.identity {
                let slot = self.slot_mut(LOCAL, route.device);
                let changed = slot.filter(|s| s.incoming != route.incoming).map(|s| {
                    s.incoming = route.incoming;
                    *s
                });
                return Ok(Registered::Refreshed(changed));
            }
            if let Some((slot, home, left)) = self.remove(LOCAL, route.device) {
                let slot = Slot { incoming: route.incoming, ..slot };
                let joined = self.insert(&route.account, &route.identity, slot);
                return Ok(Registered::Placed { slot, left: Some((home, left)), joined });
            }
        }
        if self.local >= max_devices {
            return Err(RouteError::Full { limit: max_devices });
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
        let joined = self.insert(&route.account, &route.identity, slot);
        Ok(Registered::Placed { slot, left: None, joined })
    }

    /// Applies a peer's route as announced: added, updated, or moved from
    /// another identity. Returns every identity whose presence moved.
    pub fn upsert(&mut self, account: &AccountSid, identity: &str, slot: Slot) -> Vec<(Home, Moved)> {
        let mut out = Vec::new();
        if let Some(home) = self.home(slot.holder, slot.device) {
            if *home.account == *account && *home.identity == *identity {
                let status = slot.status;
                if let Some(s) = self.slot_mut(slot.holder, slot.device) {
                    s.incoming = slot.incoming;
                    s.registered_at = slot.registered_at;
                }
                out.extend(self.set_status(slot.holder, slot.device, status));
                return out;
            }
            if let Some((_, home, moved)) = self.remove(slot.holder, slot.device) {
                out.push((home, moved));
            }
        }
        let moved = self.insert(account, identity, slot);
        if let Some(home) = self.home(slot.holder, slot.device) {
            out.push((home.clone(), moved));
        }
        out
    }
}
