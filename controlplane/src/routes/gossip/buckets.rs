//! Route keys by bucket: an appliance's devices are gossiped as a few
//! thousand keys at most, not one key per device.
//!
//! ```text
//!   c<n>  = <account SID>                  this appliance's number n for an account (written once)
//!   r<b>  = <entry>*                        the devices whose (account, identity) hash to bucket b ("" once empty)
//!   entry = <n>,<device>,<status><incoming>,<registered_at>,<identity length>:<identity>
//!           (device and registered_at in base 36; the identity may hold any character)
//! ```
//!
//! Why: chitchat 0.11 copies every key of every live node into its
//! live-nodes watch on each round where any version moved, walks every key
//! of a stale node to build each delta, and every key of every node to
//! collect tombstones: its CPU is per key held, fleet-wide. A bucket holds a
//! few devices, so a change rewrites a few entries (about what the per-device
//! key with its account SID cost), and withdrawn devices leave no tombstone
//! (the bucket is rewritten without them). The receiver keeps what each
//! peer's buckets last listed, so a device that left a bucket is removed
//! unless a newer bucket (a move to another identity) already holds it.

use super::super::{DeviceId, PresenceStatus};
use crate::store::AccountSid;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Prefix of bucket keys.
pub(super) const BUCKET_PREFIX: &str = "r";
/// Prefix of account keys.
pub(super) const ACCOUNT_PREFIX: &str = "c";

/// One device as a bucket lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry<'a> {
    pub account: u32,
    pub device: DeviceId,
    pub status: PresenceStatus,
    pub incoming: bool,
    pub registered_at: SystemTime,
    pub identity: &'a str,
}

/// The bucket of (`account`, `identity`) among `buckets`: FNV-1a, stable
/// for the life of the appliance (only the writer computes it).
pub(super) fn bucket_of(account: &AccountSid, identity: &str, buckets: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in account.as_str().bytes().chain([0xff]).chain(identity.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(buckets.max(1))) as u32
}

pub(super) fn bucket_key(bucket: u32) -> String {
    format!("{BUCKET_PREFIX}{bucket}")
}

pub(super) fn account_key(n: u32) -> String {
    format!("{ACCOUNT_PREFIX}{n}")
}

/// The number in a bucket or account key without its prefix.
pub(super) fn key_number(rest: &str) -> Option<u32> {
    rest.parse().ok()
}

fn base36(mut n: u64, out: &mut String) {
    let mut digits = [0u8; 13];
    let mut i = digits.len();
    loop {
        i -= 1;
        let d = (n % 36) as u8;
        digits[i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&b| char::from(b)));
}

fn status_code(status: PresenceStatus) -> char {
    match status {
        PresenceStatus::Available => 'a',
        PresenceStatus::Busy => 'b',
        PresenceStatus::Away => 'w',
        PresenceStatus::Offline => 'o',
    }
}

/// Appends one entry to a bucket's value.
pub(super) fn encode_entry(e: &Entry<'_>, out: &mut String) {
    use std::fmt::Write;
    let secs = e.registered_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let _ = write!(out, "{},", e.account);
    base36(e.device.0, out);
    out.push(',');
    out.push(status_code(e.status));
    out.push(if e.incoming { '1' } else { '0' });
    out.push(',');
    base36(secs, out);
    let _ = write!(out, ",{}:{}", e.identity.len(), e.identity);
}

/// The entries of a bucket's value; `None` if any is malformed (a bucket is
/// written whole, so a bad one is skipped whole).
pub(super) fn decode_bucket(value: &str) -> Option<Vec<Entry<'_>>> {
    let mut out = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let mut fields = rest.splitn(5, ',');
        let account = fields.next()?.parse().ok()?;
        let device = DeviceId(u64::from_str_radix(fields.next()?, 36).ok()?);
        let mut flags = fields.next()?.chars();
        let status = match flags.next()? {
            'a' => PresenceStatus::Available,
            'b' => PresenceStatus::Busy,
            'w' => PresenceStatus::Away,
            _ => return None,
        };
        let incoming = match flags.next()? {
            '1' => true,
            '0' => false,
            _ => return None,
        };
        let secs = u64::from_str_radix(fields.next()?, 36).ok()?;
        let tail = fields.next()?;
        let (len, tail) = tail.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let identity = tail.get(..len)?;
        if identity.is_empty() {
            return None;
        }
        rest = &tail[len..];
        out.push(Entry {
            account,
            device,
            status,
            incoming,
            registered_at: UNIX_EPOCH + Duration::from_secs(secs),
            identity,
        });
    }
    Some(out)
}

/// This appliance's side: account numbers, which of its devices each bucket
/// holds, and the buckets changed since the pump last wrote them.
#[derive(Debug, Default)]
pub(super) struct LocalBuckets {
    pub count: u32,
    pub accounts: HashMap<AccountSid, u32>,
    pub devices: HashMap<u32, BTreeSet<DeviceId>>,
    pub dirty: BTreeSet<u32>,
}

impl LocalBuckets {
    pub fn new(count: u32) -> LocalBuckets {
        LocalBuckets { count: count.max(1), ..LocalBuckets::default() }
    }

    /// The number of `account`, and its key to publish when it is new.
    pub fn account(&mut self, account: &AccountSid) -> (u32, Option<(String, String)>) {
        if let Some(&n) = self.accounts.get(account) {
            return (n, None);
        }
        let n = self.accounts.len() as u32;
        self.accounts.insert(account.clone(), n);
        (n, Some((account_key(n), account.as_str().to_string())))
    }

    pub fn add(&mut self, account: &AccountSid, identity: &str, device: DeviceId) {
        let b = bucket_of(account, identity, self.count);
        self.devices.entry(b).or_default().insert(device);
        self.dirty.insert(b);
    }

    pub fn remove(&mut self, account: &AccountSid, identity: &str, device: DeviceId) {
        let b = bucket_of(account, identity, self.count);
        if let Some(set) = self.devices.get_mut(&b) {
            set.remove(&device);
        }
        self.dirty.insert(b);
    }

    pub fn touch(&mut self, account: &AccountSid, identity: &str) {
        self.dirty.insert(bucket_of(account, identity, self.count));
    }
}

/// What a peer's keys said: its account numbers, and which devices each of
/// its buckets listed last (and which bucket last listed each device).
#[derive(Debug, Default)]
pub(super) struct PeerBuckets {
    pub accounts: HashMap<u32, AccountSid>,
    pub listed: HashMap<u32, Vec<DeviceId>>,
    pub bucket_of: HashMap<DeviceId, u32>,
}

impl PeerBuckets {
    /// Records bucket `b`'s new list; returns the devices that left it
    /// and are in no newer bucket (to be removed from the view).
    pub fn relist(&mut self, b: u32, devices: Vec<DeviceId>) -> Vec<DeviceId> {
        for d in &devices {
            self.bucket_of.insert(*d, b);
        }
        let old = self.listed.insert(b, devices).unwrap_or_default();
        let new = &self.listed[&b];
        let mut gone = Vec::new();
        for d in old {
            if !new.contains(&d) && self.bucket_of.get(&d) == Some(&b) {
                self.bucket_of.remove(&d);
                gone.push(d);
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ac(n: u8) -> AccountSid {
        AccountSid::parse(&format!("AC{n:032x}")).unwrap()
    }

    #[test]
    fn entries_round_trip() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let entries = [
            Entry {
                account: 0,
                device: DeviceId(123_456),
                status: PresenceStatus::Away,
                incoming: false,
                registered_at: at,
                identity: "a,b:c",
            },
            Entry {
                account: 12,
                device: DeviceId(u64::MAX),
                status: PresenceStatus::Available,
                incoming: true,
                registered_at: at,
                identity: "ünï,1:x",
            },
        ];
        let mut value = String::new();
        for e in &entries {
            encode_entry(e, &mut value);
        }
        assert_eq!(decode_bucket(&value).unwrap(), entries);
        assert_eq!(decode_bucket("").unwrap(), []);
        for bad in ["0,1,a1,2,5:abc", "0,1,x1,2,1:a", "0,1,a1,2,0:", "zz"] {
            assert!(decode_bucket(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_device_that_moved_to_another_bucket_stays() {
        let mut p = PeerBuckets::default();
        assert!(p.relist(1, vec![DeviceId(7), DeviceId(8)]).is_empty());
        // 7 moved to bucket 2, whose update came first: bucket 1 losing it removes nothing.
        assert!(p.relist(2, vec![DeviceId(7)]).is_empty());
        assert_eq!(p.relist(1, vec![]), [DeviceId(8)]);
        assert_eq!(p.relist(2, vec![]), [DeviceId(7)]);
    }

    #[test]
    fn buckets_spread_and_accounts_are_numbered_once() {
        let mut l = LocalBuckets::new(64);
        let (n, key) = l.account(&ac(1));
        assert_eq!((n, key), (0, Some(("c0".to_string(), ac(1).as_str().to_string()))));
        assert_eq!(l.account(&ac(1)), (0, None));
        assert_eq!(l.account(&ac(2)).0, 1);
        let used: BTreeSet<u32> = (0..1000).map(|i| bucket_of(&ac(1), &format!("user{i}"), 64)).collect();
        assert_eq!(used.len(), 64);
    }
}
