//! Presence values: a device's status, an identity's aggregated presence,
//! the change announced when it moves, and the totals metrics read.

use crate::store::AccountSid;

/// The status of a device, and (aggregated) of an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    /// Registered and free: calls ring it.
    Available,
    /// Registered and in a call.
    Busy,
    /// Registered; the client said its user is away.
    Away,
    /// Not registered (an identity with no device).
    Offline,
}

impl PresenceStatus {
    /// Every status, most reachable first.
    pub const ALL: [PresenceStatus; 4] =
        [PresenceStatus::Available, PresenceStatus::Busy, PresenceStatus::Away, PresenceStatus::Offline];

    /// The lowercase name used in JSON, query strings and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceStatus::Available => "available",
            PresenceStatus::Busy => "busy",
            PresenceStatus::Away => "away",
            PresenceStatus::Offline => "offline",
        }
    }

    /// The status named `s` (lowercase, as [`PresenceStatus::as_str`]).
    pub fn parse(s: &str) -> Option<PresenceStatus> {
        PresenceStatus::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// How reachable the status is: the higher, the more. An identity's
    /// status is the most reachable of its devices'.
    pub(crate) fn reachability(self) -> u8 {
        match self {
            PresenceStatus::Available => 3,
            PresenceStatus::Busy => 2,
            PresenceStatus::Away => 1,
            PresenceStatus::Offline => 0,
        }
    }
}

impl std::fmt::Display for PresenceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An identity's presence: the most reachable status of its devices
/// (available > busy > away > offline) and how many devices are registered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Presence {
    /// The client identity.
    pub identity: String,
    /// The most reachable status of its devices; `Offline` with no device.
    pub status: PresenceStatus,
    /// How many devices are registered.
    pub devices: usize,
}

impl Presence {
    /// The presence of an identity no device holds.
    pub fn offline(identity: &str) -> Presence {
        Presence { identity: identity.to_string(), status: PresenceStatus::Offline, devices: 0 }
    }

    /// The presence of `identity` with devices of `statuses`.
    pub fn aggregate(identity: &str, statuses: impl IntoIterator<Item = PresenceStatus>) -> Presence {
        let (status, devices) = aggregate(statuses);
        Presence { identity: identity.to_string(), status, devices }
    }
}

/// The most reachable of `statuses` and how many there are.
pub(crate) fn aggregate(statuses: impl IntoIterator<Item = PresenceStatus>) -> (PresenceStatus, usize) {
    statuses.into_iter().fold((PresenceStatus::Offline, 0), |(best, n), s| {
        (if s.reachability() > best.reachability() { s } else { best }, n + 1)
    })
}

/// An identity's presence changed (status or device count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    /// The account of the identity: subscribers pass on only their own
    /// account's changes.
    pub account: AccountSid,
    /// The presence after the change.
    pub presence: Presence,
}

/// Registered devices by status (a registered device is never offline).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresenceCounts {
    /// Devices available.
    pub available: usize,
    /// Devices in a call.
    pub busy: usize,
    /// Devices whose user is away.
    pub away: usize,
}

impl PresenceCounts {
    /// Every registered device.
    pub fn total(&self) -> usize {
        self.available + self.busy + self.away
    }

    /// The devices of `status` (0 for `Offline`).
    pub fn of(&self, status: PresenceStatus) -> usize {
        match status {
            PresenceStatus::Available => self.available,
            PresenceStatus::Busy => self.busy,
            PresenceStatus::Away => self.away,
            PresenceStatus::Offline => 0,
        }
    }

    pub(crate) fn slot(&mut self, status: PresenceStatus) -> Option<&mut usize> {
        match status {
            PresenceStatus::Available => Some(&mut self.available),
            PresenceStatus::Busy => Some(&mut self.busy),
            PresenceStatus::Away => Some(&mut self.away),
            PresenceStatus::Offline => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PresenceStatus::*;

    #[test]
    fn aggregation_order() {
        assert_eq!(aggregate([]), (Offline, 0));
        assert_eq!(aggregate([Away]), (Away, 1));
        assert_eq!(aggregate([Away, Busy]), (Busy, 2));
        assert_eq!(aggregate([Busy, Away, Available]), (Available, 3));
        assert_eq!(aggregate([Available, Busy]), (Available, 2));
        assert_eq!(aggregate([Busy, Busy]), (Busy, 2));
    }

    #[test]
    fn names() {
        for s in PresenceStatus::ALL {
            assert_eq!(PresenceStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(PresenceStatus::parse("Available"), None);
        let p = Presence::aggregate("alice", [Busy]);
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"identity": "alice", "status": "busy", "devices": 1})
        );
    }
}
