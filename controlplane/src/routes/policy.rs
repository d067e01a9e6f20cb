//! The route policy: for one call, which appliances its signaling crosses
//! and which appliance's dataplane carries its media.
//!
//! A pure function, [`decide`]: plain data in (the call's endpoints and
//! needs, what every appliance announced, the inter-region latencies),
//! plain data out (a [`Decision`] or a [`Refusal`]), with the reasons. No
//! I/O, no clock, no randomness: the same input gives the same answer, in
//! whatever order the appliances are listed (ties are broken by load, then
//! by appliance id).
//!
//! ```text
//!   gossip announcements ──▶ [ApplianceState]  ┐
//!   configured + measured ──▶ Latency          ├──▶ decide() ──▶ Decision { signaling, media_anchor, why }
//!   routes (RouteStore),  ──▶ CallRequest      │           └──▶ Refusal  { CalleeAbsent | NoCapacity | ... }
//!   trunks, numbers, TwiML                     │
//!   operator tuning       ──▶ Tuning           ┘
//! ```
//!
//! **Signaling** goes from the appliance that received the call to the one
//! that holds the callee: one appliance when they are the same (or when the
//! callee is only a region), two otherwise, never more.
//!
//! **Media** is anchored on exactly one appliance (never both when one
//! suffices), chosen among the *candidates*: alive, not draining, with at
//! least `media_sessions_needed` free sessions and every needed service.
//! The cost of a candidate is the media path's latency,
//! `cost(caller, anchor) + cost(anchor, callee)`, where the cost of an
//! endpoint to an anchor is 0 ms when the endpoint is attached to that very
//! appliance, and otherwise the latency between their regions (the intra-
//! region value when the regions are the same, the unknown default when the
//! pair is not in the matrix). Then:
//!
//! 1. `best` = the lowest cost among the candidates;
//! 2. if a candidate on the signaling path costs at most
//!    `best + on_path_tolerance_ms`, the anchor is taken among those
//!    on-path candidates (a call that already crosses that box needs no
//!    third one), otherwise among the candidates costing exactly `best`;
//! 3. within that set: the lowest cost, then the lowest load, then the
//!    lowest appliance id.
//!
//! docs/routing.md explains it with the fleet of the routing issue.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// An appliance of the fleet, by its `[appliance] id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApplianceId(pub String);

impl ApplianceId {
    /// The id `id`.
    pub fn new(id: impl Into<String>) -> ApplianceId {
        ApplianceId(id.into())
    }
}

impl fmt::Display for ApplianceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A region, by its `[appliance] region` name (`us1`, `de1`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(pub String);

impl Region {
    /// The region `name`.
    pub fn new(name: impl Into<String>) -> Region {
        Region(name.into())
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A media service an appliance's dataplane may offer and a call's
/// instructions may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Service {
    /// RTP relay between two legs (every dataplane).
    Relay,
    /// Transcoding between codecs (G.711 mu/A-law, Opus).
    Transcode,
    /// Recording (`<Record>`, `record` on `<Dial>`).
    Record,
    /// Conference mixing (`<Conference>`).
    Mix,
}

impl Service {
    /// The lowercase name, for logs and announcements.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Relay => "relay",
            Service::Transcode => "transcode",
            Service::Record => "record",
            Service::Mix => "mix",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Loads closer than this (in the same step: 0.0-0.1, 0.1-0.2, ...) tie.
pub const LOAD_STEP: f32 = 0.1;

/// What an appliance announced about itself (by gossip; the local
/// appliance's own view for itself), as the policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplianceState {
    pub id: ApplianceId,
    pub region: Region,
    /// Set by the operator to empty the box: it takes no new media (it may
    /// still hold clients and carry signaling to them).
    pub draining: bool,
    /// Media sessions its dataplane can still install.
    pub free_media_sessions: u32,
    /// CPU load, 0.0 (idle) to 1.0 (saturated). Out of range is clamped,
    /// NaN counts as 1.0. Only breaks ties.
    pub load: f32,
    /// The services its dataplane offers.
    pub services: BTreeSet<Service>,
    /// The failure detector's verdict: a dead appliance is never chosen.
    pub alive: bool,
}

impl ApplianceState {
    /// The load as compared: clamped to 0.0..=1.0, NaN as 1.0.
    /// Compared in steps of [`LOAD_STEP`]: a CPU reading moves by a few
    /// percent from one second to the next, and two boxes that idle alike
    /// must not swap the anchor back and forth on that noise.
    fn load_key(&self) -> f32 {
        if self.load.is_nan() || self.load >= 1.0 {
            1.0
        } else if self.load <= 0.0 {
            0.0 // also turns -0.0 into 0.0, which `total_cmp` orders apart
        } else {
            (self.load / LOAD_STEP).floor() * LOAD_STEP
        }
    }
}

/// Where one end of a call is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A client device: the appliance of its gateway route (where its
    /// socket is, `DeviceRoute::appliance`).
    Client { appliance: ApplianceId },
    /// A carrier leg: the appliance its trunk arrives at or leaves from.
    Trunk { appliance: ApplianceId },
    /// A number's home region, when no appliance is fixed.
    Region(Region),
}

impl Endpoint {
    /// The appliance the endpoint is attached to, if one is.
    pub fn appliance(&self) -> Option<&ApplianceId> {
        match self {
            Endpoint::Client { appliance } | Endpoint::Trunk { appliance } => Some(appliance),
            Endpoint::Region(_) => None,
        }
    }
}

/// One call to route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    /// The appliance that received the call (and runs the policy); it keeps
    /// the call's B2BUA role.
    pub received_at: ApplianceId,
    pub caller: Endpoint,
    /// `None`: the callee is present nowhere.
    pub callee: Option<Endpoint>,
    /// The services the call's instructions need.
    pub needs: BTreeSet<Service>,
    /// How many dataplane sessions the anchor must have free.
    pub media_sessions_needed: u32,
}

/// Inter-region latency in milliseconds, symmetric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latency {
    /// Between two appliances of the same region.
    intra_region_ms: u32,
    /// Assumed for a pair of regions not in the matrix (and said so in the
    /// decision's reasons).
    unknown_ms: u32,
    /// Keyed by the pair in order (lower region first).
    pairs: BTreeMap<(Region, Region), u32>,
}

impl Default for Latency {
    /// 1 ms within a region (one data centre), 500 ms for an unknown pair
    /// (far enough that any measured or configured path wins over it).
    fn default() -> Latency {
        Latency::new(1, 500)
    }
}

/// A latency read from the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyLookup {
    pub ms: u32,
    /// False when `ms` is the unknown default.
    pub known: bool,
}

impl Latency {
    /// An empty matrix with these intra-region and unknown-pair values.
    pub fn new(intra_region_ms: u32, unknown_ms: u32) -> Latency {
        Latency { intra_region_ms, unknown_ms, pairs: BTreeMap::new() }
    }

    /// Sets the latency between `a` and `b` (both ways). Same region: sets
    /// nothing (the intra-region value applies).
    pub fn set(&mut self, a: &Region, b: &Region, ms: u32) {
        if a != b {
            self.pairs.insert(Self::key(a, b), ms);
        }
    }

    /// The latency between `a` and `b`.
    pub fn get(&self, a: &Region, b: &Region) -> LatencyLookup {
        if a == b {
            return LatencyLookup { ms: self.intra_region_ms, known: true };
        }
        match self.pairs.get(&Self::key(a, b)) {
            Some(&ms) => LatencyLookup { ms, known: true },
            None => LatencyLookup { ms: self.unknown_ms, known: false },
        }
    }

    fn key(a: &Region, b: &Region) -> (Region, Region) {
        if a <= b {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        }
    }
}

/// Operator tuning of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// How much longer (ms) a media path through an appliance already on the
    /// signaling path may be than the best one through a third appliance,
    /// and still be preferred.
    pub on_path_tolerance_ms: u32,
}

impl Default for Tuning {
    /// 10 ms: a third box on a call (one more dataplane to program, one
    /// more failure point) is worth more than a few milliseconds.
    fn default() -> Tuning {
        Tuning { on_path_tolerance_ms: 10 }
    }
}

/// The route of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The appliances the signaling crosses: `received_at` first, then the
    /// appliance holding the callee if it is another one (1 or 2 entries).
    pub signaling: Vec<ApplianceId>,
    /// The one appliance whose dataplane carries the call's media.
    pub media_anchor: ApplianceId,
    /// Why, in order: signaling, exclusions (by appliance id), assumed
    /// latencies, the anchor choice.
    pub why: Vec<Reason>,
}

/// Which end of the call a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The appliance that received the call.
    ReceivedAt,
    Caller,
    Callee,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::ReceivedAt => "receiving appliance",
            Side::Caller => "caller",
            Side::Callee => "callee",
        })
    }
}

/// Why a call cannot be routed: the call ends at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The callee is present nowhere.
    #[error("the callee is present nowhere")]
    CalleeAbsent,
    /// An endpoint (or `received_at`) names an appliance that announced
    /// nothing.
    #[error("the {side}'s appliance {appliance} is unknown")]
    UnknownAppliance { side: Side, appliance: ApplianceId },
    /// An endpoint names an appliance the failure detector declared dead
    /// (its routes are stale).
    #[error("the {side}'s appliance {appliance} is dead")]
    DeadAppliance { side: Side, appliance: ApplianceId },
    /// No appliance can anchor the media: none alive, not draining, with
    /// the free sessions and every service needed.
    #[error("no appliance has {sessions} free media sessions and the services {}", services_list(needs))]
    NoCapacity {
        needs: BTreeSet<Service>,
        sessions: u32,
        /// Why each appliance was not a candidate, by id.
        excluded: Vec<(ApplianceId, Exclusion)>,
    },
    /// Two announcements carry the same appliance id (a bug upstream).
    #[error("appliance {0} is listed twice")]
    DuplicateAppliance(ApplianceId),
}

/// Why an appliance cannot anchor the call's media (the first that applies,
/// in this order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    Dead,
    Draining,
    /// It lacks these needed services.
    Lacks(BTreeSet<Service>),
    /// Fewer free sessions than needed.
    Full {
        free: u32,
        needed: u32,
    },
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exclusion::Dead => f.write_str("dead"),
            Exclusion::Draining => f.write_str("draining"),
            Exclusion::Lacks(services) => write!(f, "lacks {}", services_list(services)),
            Exclusion::Full { free, needed } => write!(f, "{free} free media sessions, {needed} needed"),
        }
    }
}

/// How the anchor was picked among several equally good candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieBreak {
    /// The least loaded.
    Load,
    /// Equal load: the lowest id.
    Id,
}

/// One reason in a [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The callee is held by the appliance that received the call: the
    /// signaling crosses one appliance.
    CalleeHere,
    /// The callee is held by another appliance: one hop to it.
    CalleeOnPeer { appliance: ApplianceId },
    /// The callee is a region with no fixed appliance: the signaling stays
    /// on the appliance that received the call.
    CalleeInRegion { region: Region },
    /// This appliance cannot anchor the media.
    Excluded { appliance: ApplianceId, exclusion: Exclusion },
    /// The latency between these regions is not in the matrix; `assumed_ms`
    /// was used.
    UnknownLatency { a: Region, b: Region, assumed_ms: u32 },
    /// An appliance on the signaling path was preferred to a cheaper one
    /// off it, within the tolerance.
    PreferredOnPath { chosen_ms: u32, best: ApplianceId, best_ms: u32, tolerance_ms: u32 },
    /// Several candidates were equally good; `by` decided.
    TieBroken { by: TieBreak, among: Vec<ApplianceId> },
    /// The anchor and its media path latency.
    Anchor { appliance: ApplianceId, cost_ms: u32, on_path: bool },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::CalleeHere => f.write_str("callee held here: signaling stays on one appliance"),
            Reason::CalleeOnPeer { appliance } => write!(f, "callee held by {appliance}: one signaling hop"),
            Reason::CalleeInRegion { region } => {
                write!(f, "callee in region {region}, no appliance fixed: signaling stays here")
            }
            Reason::Excluded { appliance, exclusion } => write!(f, "{appliance} cannot anchor media: {exclusion}"),
            Reason::UnknownLatency { a, b, assumed_ms } => {
                write!(f, "latency {a}-{b} unknown, {assumed_ms} ms assumed")
            }
            Reason::PreferredOnPath { chosen_ms, best, best_ms, tolerance_ms } => write!(
                f,
                "on the signaling path at {chosen_ms} ms preferred to {best} at {best_ms} ms (tolerance {tolerance_ms} ms)"
            ),
            Reason::TieBroken { by, among } => {
                let among: Vec<&str> = among.iter().map(|a| a.0.as_str()).collect();
                let by = match by {
                    TieBreak::Load => "lowest load",
                    TieBreak::Id => "lowest id",
                };
                write!(f, "tie among {} broken by {by}", among.join(", "))
            }
            Reason::Anchor { appliance, cost_ms, on_path } => {
                let place = if *on_path { "on" } else { "off" };
                write!(f, "media anchored at {appliance} ({cost_ms} ms media path, {place} the signaling path)")
            }
        }
    }
}

fn services_list(services: &BTreeSet<Service>) -> String {
    if services.is_empty() {
        return "(none)".to_owned();
    }
    services.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// A candidate anchor with its media path cost.
struct Candidate<'a> {
    state: &'a ApplianceState,
    cost_ms: u32,
    on_path: bool,
}

/// Routes one call: its signaling path and, separately, its media anchor
/// (the rule is in the module docs and docs/routing.md).
pub fn decide(
    call: &CallRequest,
    fleet: &[ApplianceState],
    latency: &Latency,
    tuning: &Tuning,
) -> Result<Decision, Refusal> {
    let mut by_id: BTreeMap<&ApplianceId, &ApplianceState> = BTreeMap::new();
    for state in fleet {
        if by_id.insert(&state.id, state).is_some() {
            return Err(Refusal::DuplicateAppliance(state.id.clone()));
        }
    }
    let mut why = Vec::new();

    // The appliance running the policy: known (its region is needed), and
    // not checked for `alive` (it received the call, so it runs).
    let Some(received_at) = by_id.get(&call.received_at) else {
        return Err(Refusal::UnknownAppliance { side: Side::ReceivedAt, appliance: call.received_at.clone() });
    };
    let Some(callee) = &call.callee else {
        return Err(Refusal::CalleeAbsent);
    };
    let caller_at = attached(&by_id, &call.caller, Side::Caller)?;
    let callee_at = attached(&by_id, callee, Side::Callee)?;

    // Signaling: received_at, then the callee's appliance if it is another.
    let mut signaling = vec![received_at.id.clone()];
    match (callee, callee_at) {
        (_, Some(held)) if held.id == received_at.id => why.push(Reason::CalleeHere),
        (_, Some(held)) => {
            signaling.push(held.id.clone());
            why.push(Reason::CalleeOnPeer { appliance: held.id.clone() });
        }
        (Endpoint::Region(region), None) => why.push(Reason::CalleeInRegion { region: region.clone() }),
        // `attached` returns an appliance for every other endpoint.
        (_, None) => {}
    }

    // Media: the candidates, in id order, with their cost.
    let mut unknown: BTreeSet<(Region, Region)> = BTreeSet::new();
    let mut excluded = Vec::new();
    let mut candidates = Vec::new();
    for state in by_id.values() {
        if let Some(exclusion) = exclusion(state, call) {
            excluded.push((state.id.clone(), exclusion));
            continue;
        }
        let cost_ms = endpoint_cost(&call.caller, caller_at, state, latency, &mut unknown)
            .saturating_add(endpoint_cost(callee, callee_at, state, latency, &mut unknown));
        candidates.push(Candidate { state, cost_ms, on_path: signaling.contains(&state.id) });
    }
    why.extend(
        excluded.iter().map(|(appliance, exclusion)| Reason::Excluded {
            appliance: appliance.clone(),
            exclusion: exclusion.clone(),
        }),
    );
    // The best candidate overall, then the best on the signaling path
    // within the tolerance of it, if any.
    let Some(best) = candidates.iter().min_by(|a, b| rank(a, b)) else {
        return Err(Refusal::NoCapacity { needs: call.needs.clone(), sessions: call.media_sessions_needed, excluded });
    };
    why.extend(unknown.into_iter().map(|(a, b)| Reason::UnknownLatency { a, b, assumed_ms: latency.unknown_ms }));
    let limit = best.cost_ms.saturating_add(tuning.on_path_tolerance_ms);
    let chosen =
        candidates.iter().filter(|c| c.on_path && c.cost_ms <= limit).min_by(|a, b| rank(a, b)).unwrap_or(best);

    if chosen.cost_ms > best.cost_ms {
        why.push(Reason::PreferredOnPath {
            chosen_ms: chosen.cost_ms,
            best: best.state.id.clone(),
            best_ms: best.cost_ms,
            tolerance_ms: tuning.on_path_tolerance_ms,
        });
    }
    // The candidates the chosen one was picked among at equal cost (when it
    // is off the path, no candidate on the path was near enough).
    let tied: Vec<&Candidate> =
        candidates.iter().filter(|c| c.cost_ms == chosen.cost_ms && c.on_path == chosen.on_path).collect();
    if tied.len() > 1 {
        let same_load = tied.iter().filter(|c| c.state.load_key() == chosen.state.load_key()).count();
        why.push(Reason::TieBroken {
            by: if same_load > 1 { TieBreak::Id } else { TieBreak::Load },
            among: tied.iter().map(|c| c.state.id.clone()).collect(),
        });
    }
    why.push(Reason::Anchor { appliance: chosen.state.id.clone(), cost_ms: chosen.cost_ms, on_path: chosen.on_path });

    Ok(Decision { signaling, media_anchor: chosen.state.id.clone(), why })
}

/// The order within the pool: cost, then load, then id.
fn rank(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    a.cost_ms
        .cmp(&b.cost_ms)
        .then_with(|| a.state.load_key().total_cmp(&b.state.load_key()))
        .then_with(|| a.state.id.cmp(&b.state.id))
}

/// The appliance an endpoint is attached to: `None` for a region; refused
/// when it is unknown or dead.
fn attached<'a>(
    by_id: &BTreeMap<&ApplianceId, &'a ApplianceState>,
    endpoint: &Endpoint,
    side: Side,
) -> Result<Option<&'a ApplianceState>, Refusal> {
    let Some(id) = endpoint.appliance() else {
        return Ok(None);
    };
    match by_id.get(id) {
        None => Err(Refusal::UnknownAppliance { side, appliance: id.clone() }),
        Some(state) if !state.alive => Err(Refusal::DeadAppliance { side, appliance: id.clone() }),
        Some(state) => Ok(Some(*state)),
    }
}

/// Why `state` cannot anchor the call's media, if it cannot.
fn exclusion(state: &ApplianceState, call: &CallRequest) -> Option<Exclusion> {
    if !state.alive {
        return Some(Exclusion::Dead);
    }
    if state.draining {
        return Some(Exclusion::Draining);
    }
    let lacks: BTreeSet<Service> = call.needs.difference(&state.services).copied().collect();
    if !lacks.is_empty() {
        return Some(Exclusion::Lacks(lacks));
    }
    if state.free_media_sessions < call.media_sessions_needed {
        return Some(Exclusion::Full { free: state.free_media_sessions, needed: call.media_sessions_needed });
    }
    None
}

/// The latency between an endpoint and a candidate anchor: 0 when the
/// endpoint is attached to the anchor itself, else between their regions.
fn endpoint_cost(
    endpoint: &Endpoint,
    attached_to: Option<&ApplianceState>,
    anchor: &ApplianceState,
    latency: &Latency,
    unknown: &mut BTreeSet<(Region, Region)>,
) -> u32 {
    let region = match (endpoint, attached_to) {
        (_, Some(state)) if state.id == anchor.id => return 0,
        (_, Some(state)) => &state.region,
        (Endpoint::Region(region), None) => region,
        // Not reached: `attached` returns an appliance for every other
        // endpoint. Costed as unknown rather than panicking.
        (_, None) => return latency.unknown_ms,
    };
    let lookup = latency.get(region, &anchor.region);
    if !lookup.known {
        unknown.insert(Latency::key(region, &anchor.region));
    }
    lookup.ms
}

#[cfg(test)]
mod tests;
