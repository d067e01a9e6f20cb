//! The route feed: each appliance's route changes as a numbered log,
//! relayed along a tree of the live fleet and repaired from the origin.
//!
//! ```text
//!   message  = kind u8 (| 0x80: the rest is one zstd frame) , body
//!   relay    = group*                   (kind 1: forwarded along the tree)
//!   repair   = group*                   (kind 2: an origin's answer to a pull; not forwarded)
//!   pull     = tag u32, asker u32, from varint   (kind 3: "send me, asker, your changes from `from` on")
//!   snapshot = tag u32, seq varint, device varint, part varint, parts varint, change*   (kind 4)
//!   group    = tag u32, first varint, count varint, length varint, change*
//!   change   = varint(slot << 3 | op) [payload]
//!     op 0/1/2  the slot's status is available / busy / away
//!     op 3      the slot's device went
//!     op 4/6    define, the device taking incoming calls / not: device zigzag varint (from the
//!               origin's previous define), account << 2 | status varint, registered_at zigzag
//!               varint (seconds from the origin's start), identity length varint, identity
//!     op 5      account: (slot = its number) SID length varint, SID
//! ```
//!
//! Why not chitchat keys: chitchat 0.11 costs CPU per key held fleet-wide
//! every round, and bytes per change that are ~100 (key, version, value);
//! a change here is 2 bytes (a status) to ~25 (a new device), sent once
//! over each tree edge (docs/fleet.md, "The route feed").
//!
//! - An origin is an appliance generation, named on the wire by `tag`, a
//!   32-bit hash of (id, generation); a restarted appliance is a new origin.
//! - Each change has the next sequence number of its origin. A receiver
//!   applies a group only in order: a group that starts past what it holds
//!   is a gap, answered by a pull to the origin, which sends the missing
//!   changes from its log or, when the log no longer reaches back, a
//!   snapshot of its routes. Duplicates (a tree that changed under a
//!   message) are recognised by number and dropped.
//! - Devices are named by slots, small numbers the origin reuses, so a
//!   status change is two bytes; the define of a slot carries the device,
//!   account number, identity and registration time.

use super::super::view::{Holder, Home, Moved, Slot, View, LOCAL};
use super::super::{DeviceId, PresenceStatus};
use crate::store::AccountSid;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The most bytes of message a datagram carries (one Ethernet MTU with room
/// for IP, UDP and the seal): the feed never relies on IP fragmentation.
pub(super) const MAX_MESSAGE: usize = 1_200;
/// A group holds at most this many bytes of changes (so it fits a message).
const MAX_GROUP: usize = 1_100;
/// Changes an origin keeps to answer pulls; older pulls get a snapshot.
const LOG_CAPACITY: usize = 32_768;
/// The longest client identity a fleet carries (bytes): a define must fit
/// one group, a group one datagram.
pub(super) const MAX_IDENTITY: usize = 256;
/// The region of an appliance not announced yet: sorts after every name.
pub(super) const UNKNOWN_REGION: &str = "\u{10ffff}";
/// Parts of one snapshot at most (~20 MB: ~1 million devices).
const MAX_SNAPSHOT_PARTS: usize = 16_384;

pub(super) const KIND_RELAY: u8 = 1;
pub(super) const KIND_REPAIR: u8 = 2;
pub(super) const KIND_PULL: u8 = 3;
pub(super) const KIND_SNAPSHOT: u8 = 4;
/// Set on the kind byte when the rest is a zstd frame.
pub(super) const COMPRESSED: u8 = 0x80;

const OP_AVAILABLE: u64 = 0;
const OP_BUSY: u64 = 1;
const OP_AWAY: u64 = 2;
const OP_REMOVE: u64 = 3;
const OP_DEFINE: u64 = 4;
const OP_ACCOUNT: u64 = 5;
const OP_DEFINE_NO_INCOMING: u64 = 6;

/// What encoding and decoding an origin's changes carry from one change to
/// the next: its start (times are sent from it) and the device of its last
/// define (devices are sent as the difference: a box numbers its devices
/// in order, so a new one is a byte or two). A receiver that applies an
/// origin's changes in order holds the same context as the origin did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Context {
    pub base: i64,
    pub device: u64,
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// The wire name of an origin: FNV-1a of (id, generation).
pub(super) fn origin_tag(appliance: &str, generation: u64) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in appliance.bytes().chain([0xff]).chain(generation.to_le_bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

pub(super) fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn get_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0u32;
    loop {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        if shift > 63 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

pub(super) fn get_u32(buf: &mut &[u8]) -> Option<u32> {
    let (head, rest) = buf.split_first_chunk::<4>()?;
    *buf = rest;
    Some(u32::from_le_bytes(*head))
}

fn get_bytes<'a>(buf: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if buf.len() < len {
        return None;
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Some(head)
}

/// One route change as the feed carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change<'a> {
    Status {
        slot: u32,
        status: PresenceStatus,
    },
    Remove {
        slot: u32,
    },
    Define {
        slot: u32,
        device: DeviceId,
        account: u32,
        status: PresenceStatus,
        incoming: bool,
        registered_at: SystemTime,
        identity: &'a str,
    },
    Account {
        number: u32,
        sid: &'a str,
    },
}

fn status_op(status: PresenceStatus) -> u64 {
    match status {
        PresenceStatus::Available | PresenceStatus::Offline => OP_AVAILABLE,
        PresenceStatus::Busy => OP_BUSY,
        PresenceStatus::Away => OP_AWAY,
    }
}

fn op_status(op: u64) -> Option<PresenceStatus> {
    match op {
        OP_AVAILABLE => Some(PresenceStatus::Available),
        OP_BUSY => Some(PresenceStatus::Busy),
        OP_AWAY => Some(PresenceStatus::Away),
        _ => None,
    }
}

fn secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

impl Change<'_> {
    /// Appends the change in `cx` (moved past it).
    pub fn encode(&self, cx: &mut Context, out: &mut Vec<u8>) {
        match *self {
            Change::Status { slot, status } => put_varint(u64::from(slot) << 3 | status_op(status), out),
            Change::Remove { slot } => put_varint(u64::from(slot) << 3 | OP_REMOVE, out),
            Change::Define { slot, device, account, status, incoming, registered_at, identity } => {
                let op = if incoming { OP_DEFINE } else { OP_DEFINE_NO_INCOMING };
                put_varint(u64::from(slot) << 3 | op, out);
                put_varint(zigzag(device.0.wrapping_sub(cx.device) as i64), out);
                cx.device = device.0;
                put_varint(u64::from(account) << 2 | status_op(status), out);
                put_varint(zigzag(secs(registered_at) - cx.base), out);
                put_varint(identity.len() as u64, out);
                out.extend_from_slice(identity.as_bytes());
            }
            Change::Account { number, sid } => {
                put_varint(u64::from(number) << 3 | OP_ACCOUNT, out);
                put_varint(sid.len() as u64, out);
                out.extend_from_slice(sid.as_bytes());
            }
        }
    }

    /// The next change of `buf` in `cx` (moved past it); `None` if it is
    /// malformed.
    pub fn decode<'a>(buf: &mut &'a [u8], cx: &mut Context) -> Option<Change<'a>> {
        let head = get_varint(buf)?;
        let slot = u32::try_from(head >> 3).ok()?;
        Some(match head & 7 {
            OP_REMOVE => Change::Remove { slot },
            op @ (OP_DEFINE | OP_DEFINE_NO_INCOMING) => {
                let device = DeviceId(cx.device.wrapping_add(unzigzag(get_varint(buf)?) as u64));
                let account = get_varint(buf)?;
                let status = op_status(account & 3)?;
                let account = u32::try_from(account >> 2).ok()?;
                let at = cx.base.checked_add(unzigzag(get_varint(buf)?))?;
                let registered_at = if at >= 0 {
                    UNIX_EPOCH.checked_add(Duration::from_secs(at as u64))?
                } else {
                    UNIX_EPOCH.checked_sub(Duration::from_secs(at.unsigned_abs()))?
                };
                let len = usize::try_from(get_varint(buf)?).ok()?;
                let identity = std::str::from_utf8(get_bytes(buf, len)?).ok()?;
                if identity.is_empty() {
                    return None;
                }
                cx.device = device.0;
                Change::Define { slot, device, account, status, incoming: op == OP_DEFINE, registered_at, identity }
            }
            OP_ACCOUNT => {
                let len = usize::try_from(get_varint(buf)?).ok()?;
                let sid = std::str::from_utf8(get_bytes(buf, len)?).ok()?;
                Change::Account { number: slot, sid }
            }
            op => Change::Status { slot, status: op_status(op)? },
        })
    }
}

/// Consecutive changes of one origin, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Group {
    pub tag: u32,
    pub first: u64,
    pub count: u64,
    pub changes: Arc<[u8]>,
}

impl Group {
    pub fn encoded_len(&self) -> usize {
        4 + 10 + 5 + 5 + self.changes.len()
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tag.to_le_bytes());
        put_varint(self.first, out);
        put_varint(self.count, out);
        put_varint(self.changes.len() as u64, out);
        out.extend_from_slice(&self.changes);
    }

    /// The groups of a relay or repair body; `None` if it is malformed.
    pub fn decode_all(mut body: &[u8]) -> Option<Vec<Group>> {
        let mut out = Vec::new();
        while !body.is_empty() {
            let tag = get_u32(&mut body)?;
            let first = get_varint(&mut body)?;
            let count = get_varint(&mut body)?;
            let len = usize::try_from(get_varint(&mut body)?).ok()?;
            let changes = get_bytes(&mut body, len)?;
            // Every change takes a byte at least; the last number must exist.
            if count == 0 || first == 0 || count > len as u64 || first.checked_add(count).is_none() {
                return None;
            }
            out.push(Group { tag, first, count, changes: Arc::from(changes) });
        }
        Some(out)
    }
}

/// Packs groups into messages of `kind` no larger than [`MAX_MESSAGE`].
pub(super) fn pack<'a>(kind: u8, groups: impl IntoIterator<Item = &'a Group>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut message = vec![kind];
    for g in groups {
        if message.len() > 1 && message.len() + g.encoded_len() > MAX_MESSAGE {
            out.push(std::mem::replace(&mut message, vec![kind]));
        }
        g.encode(&mut message);
    }
    if message.len() > 1 {
        out.push(message);
    }
    out
}

/// This appliance's side: its log of changes and the numbers it gave.
#[derive(Debug)]
pub(super) struct LocalFeed {
    pub tag: u32,
    /// The context after the last change.
    cx: Context,
    /// The number of the last change.
    pub seq: u64,
    log: VecDeque<(u64, Vec<u8>)>,
    /// The first change not yet handed to the relay.
    unsent: u64,
    slots: HashMap<DeviceId, u32>,
    free: Vec<u32>,
    next_slot: u32,
    accounts: HashMap<AccountSid, u32>,
}

impl LocalFeed {
    pub fn new(appliance: &str, generation_ms: u64) -> LocalFeed {
        LocalFeed {
            tag: origin_tag(appliance, generation_ms),
            cx: Context { base: (generation_ms / 1000) as i64, device: 0 },
            seq: 0,
            log: VecDeque::new(),
            unsent: 1,
            slots: HashMap::new(),
            free: Vec::new(),
            next_slot: 0,
            accounts: HashMap::new(),
        }
    }

    fn push(&mut self, change: &Change<'_>) {
        self.seq += 1;
        let mut bytes = Vec::with_capacity(8);
        change.encode(&mut self.cx, &mut bytes);
        self.log.push_back((self.seq, bytes));
        if self.log.len() > LOG_CAPACITY {
            self.log.pop_front();
        }
    }

    fn account(&mut self, account: &AccountSid) -> u32 {
        if let Some(&n) = self.accounts.get(account) {
            return n;
        }
        let n = self.accounts.len() as u32;
        self.accounts.insert(account.clone(), n);
        self.push(&Change::Account { number: n, sid: account.as_str() });
        n
    }

    /// A device registered, or changed its identity or grant.
    pub fn define(&mut self, account: &AccountSid, identity: &str, slot: &Slot) {
        let number = self.account(account);
        let next = &mut self.next_slot;
        let free = &mut self.free;
        let s = *self.slots.entry(slot.device).or_insert_with(|| {
            free.pop().unwrap_or_else(|| {
                *next += 1;
                *next - 1
            })
        });
        self.push(&Change::Define {
            slot: s,
            device: slot.device,
            account: number,
            status: slot.status,
            incoming: slot.incoming,
            registered_at: slot.registered_at,
            identity,
        });
    }

    pub fn status(&mut self, device: DeviceId, status: PresenceStatus) {
        if let Some(&slot) = self.slots.get(&device) {
            self.push(&Change::Status { slot, status });
        }
    }

    pub fn remove(&mut self, device: DeviceId) {
        if let Some(slot) = self.slots.remove(&device) {
            self.free.push(slot);
            self.push(&Change::Remove { slot });
        }
    }

    /// The logged changes `from..until`, as groups.
    fn groups(&self, from: u64, until: u64) -> Vec<Group> {
        let Some(&(oldest, _)) = self.log.front() else { return Vec::new() };
        let skip = from.saturating_sub(oldest) as usize;
        let mut out = Vec::new();
        let mut changes = Vec::new();
        let mut first = from;
        for (seq, bytes) in self.log.iter().skip(skip).take_while(|(seq, _)| *seq < until) {
            if !changes.is_empty() && changes.len() + bytes.len() > MAX_GROUP {
                out.push(Group { tag: self.tag, first, count: seq - first, changes: Arc::from(changes.as_slice()) });
                changes.clear();
                first = *seq;
            }
            changes.extend_from_slice(bytes);
        }
        if !changes.is_empty() {
            out.push(Group {
                tag: self.tag,
                first,
                count: until.min(self.seq + 1) - first,
                changes: Arc::from(changes),
            });
        }
        out
    }

    /// The changes not yet relayed, as groups.
    pub fn take_unsent(&mut self) -> Vec<Group> {
        if self.unsent > self.seq {
            return Vec::new();
        }
        let oldest = self.log.front().map_or(self.unsent, |(s, _)| *s);
        let groups = self.groups(self.unsent.max(oldest), self.seq + 1);
        self.unsent = self.seq + 1;
        groups
    }

    /// The changes relayed already from `from` on, if the log still holds
    /// them all. Not the ones waiting for the next batch: the repair ends
    /// where that batch starts, so the batch follows it without overlap.
    pub fn since(&self, from: u64) -> Option<Vec<Group>> {
        let oldest = self.log.front().map_or(self.seq + 1, |(s, _)| *s);
        (from >= oldest && from <= self.seq + 1).then(|| self.groups(from, self.unsent))
    }

    /// Every account and device now, as snapshot messages (state at `seq`).
    pub fn snapshot(&self, view: &View) -> Vec<Vec<u8>> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut current = Vec::new();
        // Each part is decoded on its own, from device 0.
        let fresh = Context { base: self.cx.base, device: 0 };
        let mut cx = fresh;
        let mut add = |change: Change<'_>, current: &mut Vec<u8>| {
            let mut bytes = Vec::new();
            let mut next = cx;
            change.encode(&mut next, &mut bytes);
            if !current.is_empty() && current.len() + bytes.len() > MAX_GROUP {
                chunks.push(std::mem::take(current));
                next = fresh;
                bytes.clear();
                change.encode(&mut next, &mut bytes);
            }
            cx = next;
            current.extend_from_slice(&bytes);
        };
        for (sid, &number) in &self.accounts {
            add(Change::Account { number, sid: sid.as_str() }, &mut current);
        }
        for (&device, &s) in &self.slots {
            let Some(home) = view.home(LOCAL, device) else { continue };
            let slots = view.slots(&home.account, &home.identity);
            let Some(slot) = slots.iter().find(|x| x.holder == LOCAL && x.device == device) else { continue };
            let Some(&account) = self.accounts.get(&*home.account) else { continue };
            add(
                Change::Define {
                    slot: s,
                    device,
                    account,
                    status: slot.status,
                    incoming: slot.incoming,
                    registered_at: slot.registered_at,
                    identity: &home.identity,
                },
                &mut current,
            );
        }
        chunks.push(current);
        let parts = chunks.len() as u64;
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, changes)| {
                let mut m = vec![KIND_SNAPSHOT];
                m.extend_from_slice(&self.tag.to_le_bytes());
                put_varint(self.seq, &mut m);
                put_varint(self.cx.device, &mut m);
                put_varint(i as u64, &mut m);
                put_varint(parts, &mut m);
                m.extend_from_slice(&changes);
                m
            })
            .collect()
    }
}

/// What became of a group at a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Applied (at least in part): relay it on.
    Applied,
    /// Held already.
    Duplicate,
    /// Starts past what is held: pull from the origin.
    Gap,
    /// A change did not decode: what came before it is applied; pull.
    Malformed,
}

/// One peer origin as this appliance holds it.
#[derive(Debug)]
pub(super) struct PeerFeed {
    pub holder: Holder,
    /// Where the origin answers pulls (its gossip address).
    pub addr: SocketAddr,
    /// The context after the last change applied.
    cx: Context,
    /// The number of the last change applied.
    pub applied: u64,
    /// The last number the origin announced (chitchat key `f`).
    pub announced: u64,
    slots: HashMap<u32, DeviceId>,
    accounts: HashMap<u32, AccountSid>,
    /// A snapshot being put together: its seq and parts.
    snapshot: Option<(u64, Vec<Option<Vec<u8>>>)>,
    /// When a pull was last sent (one at a time, repeated if unanswered).
    pub pulled_at: Option<std::time::Instant>,
    /// When `applied` last moved.
    pub moved_at: std::time::Instant,
}

impl PeerFeed {
    pub fn new(holder: Holder, addr: SocketAddr, generation_ms: u64) -> PeerFeed {
        PeerFeed {
            holder,
            addr,
            cx: Context { base: (generation_ms / 1000) as i64, device: 0 },
            applied: 0,
            announced: 0,
            slots: HashMap::new(),
            accounts: HashMap::new(),
            snapshot: None,
            pulled_at: None,
            moved_at: std::time::Instant::now(),
        }
    }

    /// Whether a snapshot of this origin is arriving (collecting, and a
    /// part or a change came within the last second).
    pub fn receiving_snapshot(&self) -> bool {
        self.snapshot.is_some() && self.moved_at.elapsed() < Duration::from_secs(1)
    }

    /// Applies a group of this origin, in order only.
    pub fn apply(&mut self, view: &mut View, group: &Group, moves: &mut Vec<(Home, Moved)>) -> Outcome {
        let last = group.first + group.count - 1;
        if last <= self.applied {
            return Outcome::Duplicate;
        }
        // Only a group that starts right after what is held decodes (its
        // first change is read in the context of the change before it);
        // one starting further on, or overlapping, is a gap: the origin's
        // log answers from exactly the next change.
        if group.first != self.applied + 1 {
            return Outcome::Gap;
        }
        let mut buf: &[u8] = &group.changes;
        for seq in group.first..=last {
            let Some(change) = Change::decode(&mut buf, &mut self.cx) else {
                return Outcome::Malformed;
            };
            self.change(view, change, moves);
            self.applied = seq;
        }
        self.moved_at = std::time::Instant::now();
        Outcome::Applied
    }

    fn change(&mut self, view: &mut View, change: Change<'_>, moves: &mut Vec<(Home, Moved)>) {
        let holder = self.holder;
        match change {
            Change::Account { number, sid } => {
                if let Ok(account) = AccountSid::parse(sid) {
                    self.accounts.insert(number, account);
                }
            }
            Change::Define { slot, device, account, status, incoming, registered_at, identity } => {
                let Some(account) = self.accounts.get(&account) else { return };
                if let Some(old) = self.slots.insert(slot, device) {
                    if old != device {
                        moves.extend(view.remove(holder, old).map(|(_, h, m)| (h, m)));
                    }
                }
                moves.extend(view.upsert(account, identity, Slot { holder, device, registered_at, status, incoming }));
            }
            Change::Status { slot, status } => {
                if let Some(&device) = self.slots.get(&slot) {
                    moves.extend(view.set_status(holder, device, status));
                }
            }
            Change::Remove { slot } => {
                if let Some(device) = self.slots.remove(&slot) {
                    moves.extend(view.remove(holder, device).map(|(_, h, m)| (h, m)));
                }
            }
        }
    }

    /// Takes one part of a snapshot; once every part of it arrived, the
    /// origin's routes are replaced by it. Returns whether it completed.
    pub fn snapshot_part(
        &mut self,
        view: &mut View,
        (seq, device): (u64, u64),
        part: usize,
        parts: usize,
        changes: &[u8],
        moves: &mut Vec<(Home, Moved)>,
    ) -> bool {
        if seq < self.applied || parts == 0 || part >= parts || parts > MAX_SNAPSHOT_PARTS {
            return false;
        }
        match &self.snapshot {
            // An older snapshot's part (a late or replayed datagram).
            Some((s, _)) if seq < *s => return false,
            Some((s, p)) if *s == seq && p.len() == parts => {}
            _ => self.snapshot = Some((seq, vec![None; parts])),
        }
        // Parts arriving are progress: no pull for this origin meanwhile
        // (a pull would make it start another snapshot).
        self.moved_at = std::time::Instant::now();
        let Some((_, collected)) = self.snapshot.as_mut() else { return false };
        collected[part] = Some(changes.to_vec());
        if collected.iter().any(Option::is_none) {
            return false;
        }
        let Some((_, collected)) = self.snapshot.take() else { return false };
        self.slots.clear();
        self.accounts.clear();
        let mut present = HashSet::new();
        for chunk in collected.into_iter().flatten() {
            let mut buf: &[u8] = &chunk;
            let mut cx = Context { base: self.cx.base, device: 0 };
            while !buf.is_empty() {
                let Some(change) = Change::decode(&mut buf, &mut cx) else { break };
                if let Change::Define { device, .. } = change {
                    present.insert(device);
                }
                self.change(view, change, moves);
            }
        }
        for device in view.devices_of(self.holder) {
            if !present.contains(&device) {
                moves.extend(view.remove(self.holder, device).map(|(_, h, m)| (h, m)));
            }
        }
        self.applied = seq;
        self.cx.device = device;
        self.moved_at = std::time::Instant::now();
        true
    }
}

/// A heap over `sorted`: each node the parent of the next `fanout`, so a
/// change crosses at most two depths of it. Returns `me`'s neighbours.
pub(super) fn neighbours<T: Clone>(sorted: &[T], me: usize, fanout: usize) -> Vec<T> {
    let fanout = fanout.max(1);
    let mut out = Vec::new();
    if me > 0 {
        out.push(sorted[(me - 1) / fanout].clone());
    }
    for child in fanout * me + 1..=fanout * me + fanout {
        if let Some(n) = sorted.get(child) {
            out.push(n.clone());
        }
    }
    out
}

/// One live appliance as the tree sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Member {
    pub region: Arc<str>,
    pub id: Arc<str>,
    pub addr: SocketAddr,
}

/// The tree the feed is relayed on, built the same on every appliance from
/// the live fleet: within each region a heap of its appliances sorted by id
/// (`neighbours`), and the regions' first appliances joined to the first
/// region's, so **a change crosses between regions only as many times as
/// there are other regions** (each inter-region link at most twice: out
/// of the origin's region, into each other one), not at every hop of a
/// tree drawn across the world. Returns `me`'s neighbours.
pub(super) fn region_tree(mut fleet: Vec<Member>, me: &str, fanout: usize) -> Vec<SocketAddr> {
    fleet.sort();
    let Some(mine) = fleet.iter().find(|m| &*m.id == me).map(|m| m.region.clone()) else { return Vec::new() };
    let region: Vec<&Member> = fleet.iter().filter(|m| m.region == mine).collect();
    let Some(i) = region.iter().position(|m| &*m.id == me) else { return Vec::new() };
    let mut out: Vec<SocketAddr> = neighbours(&region, i, fanout).into_iter().map(|m| m.addr).collect();
    if i == 0 {
        // A region's root: the hub (the first region's root) links them.
        let mut roots: Vec<&Member> = Vec::new();
        for m in &fleet {
            if roots.last().is_none_or(|r| r.region != m.region) {
                roots.push(m);
            }
        }
        if roots.first().is_some_and(|hub| hub.region == mine) {
            out.extend(roots.iter().skip(1).map(|r| r.addr));
        } else if let Some(hub) = roots.first() {
            out.push(hub.addr);
        }
    }
    out
}

/// For the fuzz target `route_feed`: applies `body` as a relay or repair
/// body (groups), then as snapshot parts, to a receiver holding nothing,
/// and checks the index agrees with itself. Returns the devices held.
#[doc(hidden)]
pub fn fuzz_receive(body: &[u8]) -> usize {
    let mut view = View::new("bh-fuzz");
    let holder = view.add_holder("bh-origin");
    let mut peer = PeerFeed::new(holder, SocketAddr::from(([127, 0, 0, 1], 1)), 1_800_000_000_000);
    let mut moves = Vec::new();
    for group in Group::decode_all(body).unwrap_or_default() {
        // Groups apply in order only; force the order so that decoding runs.
        peer.applied = group.first - 1;
        peer.apply(&mut view, &group, &mut moves);
    }
    let mut b = body;
    while let (Some(seq), Some(device), Some(part), Some(parts)) =
        (get_varint(&mut b), get_varint(&mut b), get_varint(&mut b), get_varint(&mut b))
    {
        let Some(len) = get_varint(&mut b).and_then(|l| usize::try_from(l).ok()) else { break };
        let Some(changes) = get_bytes(&mut b, len) else { break };
        let (part, parts) = (usize::try_from(part).unwrap_or(usize::MAX), usize::try_from(parts).unwrap_or(0));
        peer.snapshot_part(&mut view, (seq, device), part, parts, changes, &mut moves);
    }
    let held = view.devices_of(holder).len();
    assert_eq!(view.counts.total(), held, "the counts and the index agree");
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ac(n: u8) -> AccountSid {
        AccountSid::parse(&format!("AC{n:032x}")).unwrap()
    }

    fn slot(device: u64, status: PresenceStatus) -> Slot {
        Slot {
            holder: LOCAL,
            device: DeviceId(device),
            registered_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + device),
            status,
            incoming: true,
        }
    }

    #[test]
    fn changes_round_trip_and_are_small() {
        let base = Context { base: 1_800_000_000, device: 100_000 };
        let changes = [
            Change::Status { slot: 5, status: PresenceStatus::Busy },
            Change::Remove { slot: 70_000 },
            Change::Define {
                slot: 1,
                device: DeviceId(123_456),
                account: 3,
                status: PresenceStatus::Away,
                incoming: false,
                registered_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                identity: "ünï,1:x",
            },
            Change::Account { number: 2, sid: "AC00" },
        ];
        let mut bytes = Vec::new();
        let mut cx = base;
        for c in &changes {
            c.encode(&mut cx, &mut bytes);
        }
        assert_eq!(cx.device, 123_456);
        let mut buf: &[u8] = &bytes;
        let mut cx = base;
        for c in &changes {
            assert_eq!(Change::decode(&mut buf, &mut cx).as_ref(), Some(c));
        }
        assert!(buf.is_empty());
        let mut one = Vec::new();
        Change::Status { slot: 200, status: PresenceStatus::Away }.encode(&mut cx, &mut one);
        assert_eq!(one.len(), 2, "a status change of one of 2,048 slots is two bytes");
        let mut next = Vec::new();
        let define = Change::Define {
            slot: 1,
            device: DeviceId(123_457),
            account: 3,
            status: PresenceStatus::Available,
            incoming: true,
            registered_at: UNIX_EPOCH + Duration::from_secs(1_800_000_060),
            identity: "bob",
        };
        define.encode(&mut cx, &mut next);
        assert_eq!(next.len(), 1 + 1 + 1 + 1 + 1 + 3, "the next device in order costs a byte");
        for bad in [&[0x07u8][..], &[0x04, 0x01], &[0x80], &[0x0c, 1, 3, 0, 0]] {
            let mut b = bad;
            assert!(Change::decode(&mut b, &mut base.clone()).is_none(), "{bad:?}");
        }
    }

    /// Replays what `from` logged onto a receiver.
    fn deliver(from: &mut LocalFeed, to: &mut PeerFeed, view: &mut View) -> Vec<Outcome> {
        let mut moves = Vec::new();
        let groups = from.take_unsent();
        let groups = Group::decode_all(&pack(KIND_RELAY, &groups)[0][1..]).unwrap();
        groups.iter().map(|g| to.apply(view, g, &mut moves)).collect()
    }

    #[test]
    fn a_receiver_follows_an_origin_in_order_and_spots_gaps() {
        let mut origin_view = View::new("bh-0");
        let mut origin = LocalFeed::new("bh-0", 1_800_000_000_000);
        let mut view = View::new("bh-1");
        let holder = view.add_holder("bh-0");
        let mut peer = PeerFeed::new(holder, "127.0.0.1:1".parse().unwrap(), 1_800_000_000_000);

        let s = slot(7, PresenceStatus::Available);
        origin_view.insert(&ac(1), "alice", s);
        origin.define(&ac(1), "alice", &s);
        assert_eq!(deliver(&mut origin, &mut peer, &mut view), [Outcome::Applied]);
        assert_eq!(view.slots(&ac(1), "alice")[0].device, DeviceId(7));
        assert_eq!(view.slots(&ac(1), "alice")[0].registered_at, s.registered_at);

        // A lost group: the next one is a gap, answered from the log.
        origin.status(DeviceId(7), PresenceStatus::Busy);
        let lost = origin.take_unsent();
        origin.status(DeviceId(7), PresenceStatus::Away);
        assert_eq!(deliver(&mut origin, &mut peer, &mut view), [Outcome::Gap]);
        let repair = origin.since(peer.applied + 1).unwrap();
        assert_eq!(repair[0].first, lost[0].first);
        let mut moves = Vec::new();
        assert_eq!(peer.apply(&mut view, &repair[0], &mut moves), Outcome::Applied);
        assert_eq!(view.slots(&ac(1), "alice")[0].status, PresenceStatus::Away);
        assert_eq!(peer.apply(&mut view, &lost[0], &mut moves), Outcome::Duplicate);

        // A move to another identity reuses the slot; a removal frees it.
        origin.define(&ac(1), "bob", &slot(7, PresenceStatus::Available));
        origin.remove(DeviceId(7));
        deliver(&mut origin, &mut peer, &mut view);
        assert!(view.slots(&ac(1), "alice").is_empty() && view.slots(&ac(1), "bob").is_empty());
        assert_eq!(peer.applied, origin.seq);
    }

    #[test]
    fn a_snapshot_replaces_what_a_receiver_held() {
        let mut origin_view = View::new("bh-0");
        let mut origin = LocalFeed::new("bh-0", 1_800_000_000_000);
        for d in 0..300 {
            let s = slot(d, PresenceStatus::Available);
            origin_view.insert(&ac((d % 3) as u8), &format!("user-{d}"), s);
            origin.define(&ac((d % 3) as u8), &format!("user-{d}"), &s);
        }
        let mut view = View::new("bh-1");
        let holder = view.add_holder("bh-0");
        let mut peer = PeerFeed::new(holder, "127.0.0.1:1".parse().unwrap(), 1_800_000_000_000);
        // Something stale the snapshot must drop.
        view.insert(&ac(9), "stale", Slot { holder, ..slot(999, PresenceStatus::Busy) });

        // Relayed long ago and lost to this receiver: a snapshot brings it all.
        origin.take_unsent();
        let parts = origin.snapshot(&origin_view);
        assert!(parts.len() > 1 && parts.iter().all(|p| p.len() <= MAX_MESSAGE));
        let mut moves = Vec::new();
        for (i, p) in parts.iter().enumerate().rev() {
            let mut body: &[u8] = &p[1..];
            assert_eq!(get_u32(&mut body), Some(origin.tag));
            let seq = get_varint(&mut body).unwrap();
            let device = get_varint(&mut body).unwrap();
            let part = get_varint(&mut body).unwrap() as usize;
            let count = get_varint(&mut body).unwrap() as usize;
            assert_eq!(part, i);
            let done = peer.snapshot_part(&mut view, (seq, device), part, count, body, &mut moves);
            assert_eq!(done, i == 0);
        }
        assert_eq!(view.devices_of(holder).len(), 300);
        assert!(view.slots(&ac(9), "stale").is_empty());
        assert_eq!(peer.applied, origin.seq);
        // Its context is the origin's: the next define decodes.
        let s = slot(300, PresenceStatus::Busy);
        origin_view.insert(&ac(1), "late", s);
        origin.define(&ac(1), "late", &s);
        assert_eq!(deliver(&mut origin, &mut peer, &mut view), [Outcome::Applied]);
        assert_eq!(view.slots(&ac(1), "late")[0].device, DeviceId(300));
    }

    #[test]
    fn the_tree_crosses_between_regions_only_at_their_roots() {
        let regions = ["us1", "us1", "us1", "de1", "de1", "au1", "us1", "de1", "us1", "us1", "us1", "us1"];
        let fleet: Vec<Member> = regions
            .iter()
            .enumerate()
            .map(|(i, r)| Member {
                region: Arc::from(*r),
                id: Arc::from(format!("bh-{i:02}")),
                addr: SocketAddr::from(([10, 0, 0, i as u8], 7946)),
            })
            .collect();
        let of = |addr: SocketAddr| fleet.iter().find(|m| m.addr == addr).unwrap();
        let mut edges = 0;
        for m in &fleet {
            for n in region_tree(fleet.clone(), &m.id, 2) {
                let n = of(n);
                edges += 1;
                assert!(region_tree(fleet.clone(), &n.id, 2).contains(&m.addr), "{} - {} both ways", m.id, n.id);
                if n.region != m.region {
                    // Only the roots (first id of a region) link regions,
                    // through the first region's (au1).
                    let root = |x: &Member| fleet.iter().filter(|y| y.region == x.region).min().unwrap().id.clone();
                    assert!(m.id == root(m) && n.id == root(n), "{} - {}", m.id, n.id);
                    assert!(&*m.region == "au1" || &*n.region == "au1");
                }
            }
        }
        assert_eq!(edges / 2, fleet.len() - 1, "a tree: n - 1 edges");
        // Connected: everyone reached from the first.
        let mut seen = vec![fleet[0].addr];
        let mut next = vec![fleet[0].clone()];
        while let Some(m) = next.pop() {
            for n in region_tree(fleet.clone(), &m.id, 2) {
                if !seen.contains(&n) {
                    seen.push(n);
                    next.push(of(n).clone());
                }
            }
        }
        assert_eq!(seen.len(), fleet.len());
    }

    #[test]
    fn the_fuzz_entry_applies_real_groups_and_survives_junk() {
        let mut origin = LocalFeed::new("bh-origin", 1_800_000_000_000);
        for d in 0..5 {
            origin.define(&ac(1), &format!("u{d}"), &slot(d, PresenceStatus::Available));
        }
        origin.remove(DeviceId(2));
        let body = &pack(KIND_RELAY, &origin.take_unsent())[0][1..];
        assert_eq!(fuzz_receive(body), 4);
        for junk in [&[][..], &[0xff; 40], &[1, 0, 0, 0, 1, 200, 3, 0, 0, 0]] {
            fuzz_receive(junk);
        }
    }

    #[test]
    fn impossible_groups_and_stale_snapshot_parts_are_refused() {
        let group = |first: u64, count: u64, changes: &[u8]| {
            let mut m = Vec::new();
            Group { tag: 1, first, count, changes: Arc::from(changes) }.encode(&mut m);
            Group::decode_all(&m)
        };
        assert!(group(1, 2, &[0, 8]).is_some());
        assert!(group(u64::MAX, 2, &[0, 8]).is_none(), "the last number overflows");
        assert!(group(1, 3, &[0, 8]).is_none(), "more changes than bytes");
        assert!(group(0, 1, &[0]).is_none() && group(1, 0, &[]).is_none());

        let mut view = View::new("bh-1");
        let holder = view.add_holder("bh-0");
        let mut peer = PeerFeed::new(holder, "127.0.0.1:1".parse().unwrap(), 1_800_000_000_000);
        let mut moves = Vec::new();
        assert!(!peer.snapshot_part(&mut view, (10, 0), 0, 2, &[], &mut moves));
        // A part of an older snapshot does not restart the one collected.
        assert!(!peer.snapshot_part(&mut view, (9, 0), 0, 1, &[], &mut moves));
        assert!(peer.snapshot_part(&mut view, (10, 0), 1, 2, &[], &mut moves), "10 completes");
        assert!(!peer.snapshot_part(&mut view, (11, 0), 0, MAX_SNAPSHOT_PARTS + 1, &[], &mut moves));
    }

    #[test]
    fn the_tree_is_a_heap_of_the_sorted_fleet() {
        let ids: Vec<usize> = (0..10).collect();
        assert_eq!(neighbours(&ids, 0, 4), [1, 2, 3, 4]);
        assert_eq!(neighbours(&ids, 1, 4), [0, 5, 6, 7, 8]);
        assert_eq!(neighbours(&ids, 2, 4), [0, 9]);
        assert_eq!(neighbours(&ids, 9, 4), [2]);
        // Every edge is seen from both ends.
        for a in 0..10 {
            for b in neighbours(&ids, a, 4) {
                assert!(neighbours(&ids, b, 4).contains(&a));
            }
        }
    }
}
