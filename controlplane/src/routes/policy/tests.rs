//! The route policy on the fleet of the routing issue (two appliances in
//! us1, one in de1, one in au1), and its properties on random fleets.

use super::*;

fn id(s: &str) -> ApplianceId {
    ApplianceId::new(s)
}

fn region(s: &str) -> Region {
    Region::new(s)
}

fn services(list: &[Service]) -> BTreeSet<Service> {
    list.iter().copied().collect()
}

fn appliance(name: &str, in_region: &str, load: f32, offers: &[Service]) -> ApplianceState {
    ApplianceState {
        id: id(name),
        region: region(in_region),
        draining: false,
        free_media_sessions: 1000,
        load,
        services: services(offers),
        alive: true,
    }
}

const BASIC: [Service; 3] = [Service::Relay, Service::Transcode, Service::Record];
const ALL: [Service; 4] = [Service::Relay, Service::Transcode, Service::Record, Service::Mix];

/// us1-a and us1-b in us1, de1 in de1, au1 in au1 (the only one mixing).
/// Loads: us1-a 0.5, us1-b 0.3, de1 0.2, au1 0.1.
fn fleet() -> Vec<ApplianceState> {
    vec![
        appliance("us1-a", "us1", 0.5, &BASIC),
        appliance("us1-b", "us1", 0.3, &BASIC),
        appliance("de1", "de1", 0.2, &BASIC),
        appliance("au1", "au1", 0.1, &ALL),
    ]
}

/// us1-de1 45 ms, us1-au1 90 ms, de1-au1 150 ms, 1 ms within a region.
fn latency() -> Latency {
    let mut latency = Latency::new(1, 500);
    latency.set(&region("us1"), &region("de1"), 45);
    latency.set(&region("us1"), &region("au1"), 90);
    latency.set(&region("de1"), &region("au1"), 150);
    latency
}

/// A carrier call arriving at us1-a (its trunk lands there) for alice,
/// whose client is on de1; the instructions need a relay only.
fn carrier_to_alice_on_de1() -> CallRequest {
    CallRequest {
        received_at: id("us1-a"),
        caller: Endpoint::Trunk { appliance: id("us1-a") },
        callee: Some(Endpoint::Client { appliance: id("de1") }),
        needs: services(&[Service::Relay]),
        media_sessions_needed: 1,
    }
}

fn with(mut fleet: Vec<ApplianceState>, name: &str, change: impl FnOnce(&mut ApplianceState)) -> Vec<ApplianceState> {
    if let Some(state) = fleet.iter_mut().find(|s| s.id.0 == name) {
        change(state);
    }
    fleet
}

fn decided(call: &CallRequest, fleet: &[ApplianceState]) -> Decision {
    match decide(call, fleet, &latency(), &Tuning::default()) {
        Ok(decision) => decision,
        Err(refusal) => panic!("refused: {refusal}"),
    }
}

fn anchor_reason(decision: &Decision) -> Option<&Reason> {
    decision.why.iter().find(|r| matches!(r, Reason::Anchor { .. }))
}

/// Media path us1-a (carrier) -> anchor -> de1 (alice): through us1-a it is
/// 0 + 45 ms, through de1 45 + 0 ms, through us1-b 1 + 45 ms, through au1
/// 90 + 150 ms. us1-a and de1 tie at 45 ms, both on the signaling path: the
/// less loaded one anchors, de1 (0.2 against 0.5).
#[test]
fn carrier_call_at_us1_for_alice_on_de1_anchors_at_the_less_loaded_end() {
    let decision = decided(&carrier_to_alice_on_de1(), &fleet());
    assert_eq!(decision.signaling, vec![id("us1-a"), id("de1")]);
    assert_eq!(decision.media_anchor, id("de1"));
    assert!(decision.why.contains(&Reason::CalleeOnPeer { appliance: id("de1") }));
    assert!(decision.why.contains(&Reason::TieBroken { by: TieBreak::Load, among: vec![id("de1"), id("us1-a")] }));
    assert_eq!(anchor_reason(&decision), Some(&Reason::Anchor { appliance: id("de1"), cost_ms: 45, on_path: true }));
}

/// The same call with us1-a the less loaded end: media stays at us1-a.
#[test]
fn same_call_anchors_at_us1_a_when_it_is_less_loaded() {
    let fleet = with(fleet(), "us1-a", |s| s.load = 0.1);
    let decision = decided(&carrier_to_alice_on_de1(), &fleet);
    assert_eq!(decision.signaling, vec![id("us1-a"), id("de1")]);
    assert_eq!(decision.media_anchor, id("us1-a"));
}

/// Equal cost and equal load: the lowest id ("de1" < "us1-a").
#[test]
fn equal_cost_and_load_is_broken_by_id() {
    let fleet = with(fleet(), "us1-a", |s| s.load = 0.2);
    let decision = decided(&carrier_to_alice_on_de1(), &fleet);
    assert_eq!(decision.media_anchor, id("de1"));
    assert!(decision.why.contains(&Reason::TieBroken { by: TieBreak::Id, among: vec![id("de1"), id("us1-a")] }));
}

/// Loads in the same 10 % step tie (idle boxes read 2 % one second and
/// 4 % the next): the id decides, so the anchor does not flap on noise.
#[test]
fn loads_in_one_step_tie() {
    let noisy = with(with(fleet(), "us1-a", |s| s.load = 0.02), "de1", |s| s.load = 0.07);
    let decision = decided(&carrier_to_alice_on_de1(), &noisy);
    assert_eq!(decision.media_anchor, id("de1"));
    assert!(decision.why.contains(&Reason::TieBroken { by: TieBreak::Id, among: vec![id("de1"), id("us1-a")] }));
    let apart = with(with(fleet(), "us1-a", |s| s.load = 0.02), "de1", |s| s.load = 0.11);
    assert_eq!(decided(&carrier_to_alice_on_de1(), &apart).media_anchor, id("us1-a"), "the next step is less loaded");
}

/// de1 draining: it still holds alice (signaling goes there), but takes no
/// new media: the nearest capable is us1-a (45 ms, on the path; us1-b is
/// 46 ms and off it).
#[test]
fn de1_draining_moves_the_anchor_to_us1() {
    let fleet = with(fleet(), "de1", |s| s.draining = true);
    let decision = decided(&carrier_to_alice_on_de1(), &fleet);
    assert_eq!(decision.signaling, vec![id("us1-a"), id("de1")]);
    assert_eq!(decision.media_anchor, id("us1-a"));
    assert!(decision.why.contains(&Reason::Excluded { appliance: id("de1"), exclusion: Exclusion::Draining }));
}

#[test]
fn de1_full_moves_the_anchor_to_us1() {
    let fleet = with(fleet(), "de1", |s| s.free_media_sessions = 0);
    let decision = decided(&carrier_to_alice_on_de1(), &fleet);
    assert_eq!(decision.signaling, vec![id("us1-a"), id("de1")]);
    assert_eq!(decision.media_anchor, id("us1-a"));
    assert!(decision
        .why
        .contains(&Reason::Excluded { appliance: id("de1"), exclusion: Exclusion::Full { free: 0, needed: 1 } }));
}

/// Both ends unable to anchor: a third appliance carries the media (us1-b,
/// 46 ms), off the signaling path.
#[test]
fn both_ends_unavailable_anchors_on_a_third_appliance() {
    let fleet = with(with(fleet(), "de1", |s| s.draining = true), "us1-a", |s| s.free_media_sessions = 0);
    let decision = decided(&carrier_to_alice_on_de1(), &fleet);
    assert_eq!(decision.signaling, vec![id("us1-a"), id("de1")]);
    assert_eq!(decision.media_anchor, id("us1-b"));
    assert_eq!(anchor_reason(&decision), Some(&Reason::Anchor { appliance: id("us1-b"), cost_ms: 46, on_path: false }));
}

/// Only au1 mixes: the call's media goes there although it costs 240 ms.
#[test]
fn a_service_only_au1_has_anchors_there_though_it_is_far() {
    let mut call = carrier_to_alice_on_de1();
    call.needs = services(&[Service::Relay, Service::Mix]);
    let decision = decided(&call, &fleet());
    assert_eq!(decision.signaling, vec![id("us1-a"), id("de1")]);
    assert_eq!(decision.media_anchor, id("au1"));
    assert!(decision
        .why
        .contains(&Reason::Excluded { appliance: id("de1"), exclusion: Exclusion::Lacks(services(&[Service::Mix])) }));
    assert_eq!(anchor_reason(&decision), Some(&Reason::Anchor { appliance: id("au1"), cost_ms: 240, on_path: false }));
}

#[test]
fn callee_present_nowhere_is_refused() {
    let mut call = carrier_to_alice_on_de1();
    call.callee = None;
    assert_eq!(decide(&call, &fleet(), &latency(), &Tuning::default()), Err(Refusal::CalleeAbsent));
}

/// A client of us1-a calls another client of us1-a: one appliance for
/// signaling and media.
#[test]
fn caller_and_callee_on_the_same_appliance_stay_there() {
    let call = CallRequest {
        received_at: id("us1-a"),
        caller: Endpoint::Client { appliance: id("us1-a") },
        callee: Some(Endpoint::Client { appliance: id("us1-a") }),
        needs: services(&[Service::Relay]),
        media_sessions_needed: 1,
    };
    let decision = decided(&call, &fleet());
    assert_eq!(decision.signaling, vec![id("us1-a")]);
    assert_eq!(decision.media_anchor, id("us1-a"));
    assert!(decision.why.contains(&Reason::CalleeHere));
    assert_eq!(anchor_reason(&decision), Some(&Reason::Anchor { appliance: id("us1-a"), cost_ms: 0, on_path: true }));
}

/// Two appliances of one region: 1 ms either way, the less loaded us1-b.
#[test]
fn same_region_peers_tie_and_the_less_loaded_anchors() {
    let mut call = carrier_to_alice_on_de1();
    call.callee = Some(Endpoint::Client { appliance: id("us1-b") });
    let decision = decided(&call, &fleet());
    assert_eq!(decision.signaling, vec![id("us1-a"), id("us1-b")]);
    assert_eq!(decision.media_anchor, id("us1-b"));
}

/// A number homed in de1 with no appliance fixed: signaling stays at us1-a;
/// media through us1-a costs 0 + 45 ms, through de1 45 + 1 ms: us1-a.
#[test]
fn callee_by_region_keeps_signaling_here() {
    let mut call = carrier_to_alice_on_de1();
    call.callee = Some(Endpoint::Region(region("de1")));
    let decision = decided(&call, &fleet());
    assert_eq!(decision.signaling, vec![id("us1-a")]);
    assert_eq!(decision.media_anchor, id("us1-a"));
    assert!(decision.why.contains(&Reason::CalleeInRegion { region: region("de1") }));
}

#[test]
fn callee_on_a_dead_appliance_is_refused() {
    let fleet = with(fleet(), "de1", |s| s.alive = false);
    assert_eq!(
        decide(&carrier_to_alice_on_de1(), &fleet, &latency(), &Tuning::default()),
        Err(Refusal::DeadAppliance { side: Side::Callee, appliance: id("de1") })
    );
}

#[test]
fn unknown_appliances_are_refused() {
    let mut call = carrier_to_alice_on_de1();
    call.callee = Some(Endpoint::Client { appliance: id("jp1") });
    assert_eq!(
        decide(&call, &fleet(), &latency(), &Tuning::default()),
        Err(Refusal::UnknownAppliance { side: Side::Callee, appliance: id("jp1") })
    );
    let mut call = carrier_to_alice_on_de1();
    call.received_at = id("jp1");
    assert_eq!(
        decide(&call, &fleet(), &latency(), &Tuning::default()),
        Err(Refusal::UnknownAppliance { side: Side::ReceivedAt, appliance: id("jp1") })
    );
}

/// A dead appliance is never the anchor, even when it would be the best.
#[test]
fn a_dead_appliance_never_anchors() {
    // A number homed in au1 calling a number homed in au1: au1 would carry
    // the media at 1 + 1 ms.
    let mut call = carrier_to_alice_on_de1();
    call.caller = Endpoint::Region(region("au1"));
    call.callee = Some(Endpoint::Region(region("au1")));
    assert_eq!(decided(&call, &fleet()).media_anchor, id("au1"));
    let fleet = with(fleet(), "au1", |s| s.alive = false);
    let decision = decided(&call, &fleet);
    assert_eq!(decision.media_anchor, id("us1-a"));
    assert!(decision.why.contains(&Reason::Excluded { appliance: id("au1"), exclusion: Exclusion::Dead }));
}

#[test]
fn nobody_capable_is_no_capacity() {
    let mut call = carrier_to_alice_on_de1();
    call.needs = services(&[Service::Mix]);
    let fleet = with(fleet(), "au1", |s| s.free_media_sessions = 0);
    match decide(&call, &fleet, &latency(), &Tuning::default()) {
        Err(Refusal::NoCapacity { needs, sessions, excluded }) => {
            assert_eq!(needs, services(&[Service::Mix]));
            assert_eq!(sessions, 1);
            let ids: Vec<&str> = excluded.iter().map(|(a, _)| a.0.as_str()).collect();
            assert_eq!(ids, ["au1", "de1", "us1-a", "us1-b"]);
            assert_eq!(excluded[0].1, Exclusion::Full { free: 0, needed: 1 });
        }
        other => panic!("expected NoCapacity, got {other:?}"),
    }
}

#[test]
fn a_duplicate_announcement_is_refused() {
    let mut fleet = fleet();
    fleet.push(appliance("de1", "de1", 0.0, &ALL));
    assert_eq!(
        decide(&carrier_to_alice_on_de1(), &fleet, &latency(), &Tuning::default()),
        Err(Refusal::DuplicateAppliance(id("de1")))
    );
}

/// A fourth region "mid" 20 ms from both us1 and de1: media through it costs
/// 40 ms, 5 ms less than through either end. Within the 10 ms tolerance the
/// end on the path wins (no third box); with no tolerance "mid" does.
#[test]
fn an_appliance_on_the_path_is_preferred_within_the_tolerance() {
    let mut fleet = fleet();
    fleet.push(appliance("mid", "mid", 0.0, &BASIC));
    let mut latency = latency();
    latency.set(&region("us1"), &region("mid"), 20);
    latency.set(&region("mid"), &region("de1"), 20);
    latency.set(&region("mid"), &region("au1"), 100);

    let decision = decide(&carrier_to_alice_on_de1(), &fleet, &latency, &Tuning::default());
    let Ok(decision) = decision else { panic!("refused: {decision:?}") };
    assert_eq!(decision.media_anchor, id("de1"));
    assert!(decision.why.contains(&Reason::PreferredOnPath {
        chosen_ms: 45,
        best: id("mid"),
        best_ms: 40,
        tolerance_ms: 10
    }));

    let strict = Tuning { on_path_tolerance_ms: 0 };
    let decision = decide(&carrier_to_alice_on_de1(), &fleet, &latency, &strict);
    let Ok(decision) = decision else { panic!("refused: {decision:?}") };
    assert_eq!(decision.media_anchor, id("mid"));
    assert_eq!(decision.signaling, vec![id("us1-a"), id("de1")]);
}

/// A latency missing from the matrix is assumed (500 ms here) and said so.
#[test]
fn unknown_latency_is_assumed_and_reported() {
    let mut fleet = fleet();
    fleet.push(appliance("sa1", "sa1", 0.0, &ALL));
    let mut call = carrier_to_alice_on_de1();
    call.needs = services(&[Service::Mix]);
    let fleet = with(fleet, "au1", |s| s.draining = true);
    let decision = decided(&call, &fleet);
    assert_eq!(decision.media_anchor, id("sa1"));
    assert!(decision.why.contains(&Reason::UnknownLatency { a: region("de1"), b: region("sa1"), assumed_ms: 500 }));
    assert!(decision.why.contains(&Reason::UnknownLatency { a: region("sa1"), b: region("us1"), assumed_ms: 500 }));
    assert_eq!(anchor_reason(&decision), Some(&Reason::Anchor { appliance: id("sa1"), cost_ms: 1000, on_path: false }));
}

#[test]
fn latency_is_symmetric_and_intra_region_is_configured() {
    let latency = latency();
    assert_eq!(latency.get(&region("de1"), &region("us1")), LatencyLookup { ms: 45, known: true });
    assert_eq!(latency.get(&region("us1"), &region("de1")), LatencyLookup { ms: 45, known: true });
    assert_eq!(latency.get(&region("au1"), &region("au1")), LatencyLookup { ms: 1, known: true });
    assert_eq!(latency.get(&region("au1"), &region("xx")), LatencyLookup { ms: 500, known: false });
}

#[test]
fn nan_and_out_of_range_loads_compare_sanely() {
    let mut call = carrier_to_alice_on_de1();
    call.callee = Some(Endpoint::Client { appliance: id("us1-b") });
    // us1-a and us1-b tie at 1 ms; NaN counts as saturated.
    let fleet = with(with(fleet(), "us1-b", |s| s.load = f32::NAN), "us1-a", |s| s.load = -3.0);
    assert_eq!(decided(&call, &fleet).media_anchor, id("us1-a"));
}

#[test]
fn reasons_read_as_sentences() {
    let decision = decided(&carrier_to_alice_on_de1(), &fleet());
    let text: Vec<String> = decision.why.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        text,
        [
            "callee held by de1: one signaling hop",
            "tie among de1, us1-a broken by lowest load",
            "media anchored at de1 (45 ms media path, on the signaling path)",
        ]
    );
}

mod properties {
    use super::super::*;
    use proptest::prelude::*;

    const REGIONS: [&str; 4] = ["r0", "r1", "r2", "r3"];
    const SERVICES: [Service; 4] = [Service::Relay, Service::Transcode, Service::Record, Service::Mix];
    /// Endpoint indices at or beyond the fleet's size name unknown
    /// appliances.
    const MAX_FLEET: usize = 6;

    fn service_set(bits: u8) -> BTreeSet<Service> {
        SERVICES.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, s)| *s).collect()
    }

    fn name(i: usize) -> ApplianceId {
        ApplianceId(format!("a{i}"))
    }

    prop_compose! {
        fn state(i: usize)(
            region in 0..REGIONS.len(),
            draining in proptest::bool::weighted(0.2),
            free in 0u32..4,
            load in 0.0f32..=1.0,
            services in 0u8..16,
            alive in proptest::bool::weighted(0.85),
        ) -> ApplianceState {
            ApplianceState {
                id: name(i),
                region: Region::new(REGIONS[region]),
                draining,
                free_media_sessions: free,
                load,
                services: service_set(services | 1),
                alive,
            }
        }
    }

    fn fleet() -> impl Strategy<Value = Vec<ApplianceState>> {
        (1..=MAX_FLEET).prop_flat_map(|n| (0..n).map(state).collect::<Vec<_>>())
    }

    fn endpoint() -> impl Strategy<Value = Endpoint> {
        prop_oneof![
            (0..MAX_FLEET + 1).prop_map(|i| Endpoint::Client { appliance: name(i) }),
            (0..MAX_FLEET + 1).prop_map(|i| Endpoint::Trunk { appliance: name(i) }),
            (0..REGIONS.len()).prop_map(|r| Endpoint::Region(Region::new(REGIONS[r]))),
        ]
    }

    prop_compose! {
        fn call()(
            received_at in 0..=MAX_FLEET,
            caller in endpoint(),
            callee in proptest::option::weighted(0.9, endpoint()),
            needs in 0u8..16,
            sessions in 0u32..3,
        ) -> CallRequest {
            CallRequest {
                received_at: name(received_at),
                caller,
                callee,
                needs: service_set(needs),
                media_sessions_needed: sessions,
            }
        }
    }

    prop_compose! {
        /// Every pair of regions, some unknown.
        fn latency()(
            intra in 0u32..3,
            pairs in proptest::collection::vec(proptest::option::weighted(0.8, 5u32..200), 6),
        ) -> Latency {
            let mut latency = Latency::new(intra, 500);
            let mut pairs = pairs.into_iter();
            for (i, a) in REGIONS.iter().enumerate() {
                for b in &REGIONS[i + 1..] {
                    if let Some(Some(ms)) = pairs.next() {
                        latency.set(&Region::new(*a), &Region::new(*b), ms);
                    }
                }
            }
            latency
        }
    }

    /// Points the call's appliances `a{i}` into a fleet of `n` (`a{i % n}`),
    /// except `a{MAX_FLEET}`, which stays unknown.
    fn within(mut call: CallRequest, n: usize) -> CallRequest {
        let fold = |id: &mut ApplianceId| {
            if let Some(i) = id.0.strip_prefix('a').and_then(|i| i.parse::<usize>().ok()) {
                if i < MAX_FLEET {
                    *id = name(i % n);
                }
            }
        };
        fold(&mut call.received_at);
        for end in [Some(&mut call.caller), call.callee.as_mut()].into_iter().flatten() {
            if let Endpoint::Client { appliance } | Endpoint::Trunk { appliance } = end {
                fold(appliance);
            }
        }
        call
    }

    fn capable(state: &ApplianceState, call: &CallRequest) -> bool {
        state.alive
            && !state.draining
            && state.free_media_sessions >= call.media_sessions_needed
            && call.needs.is_subset(&state.services)
    }

    /// The media path cost, written again independently of `decide`.
    fn cost(call: &CallRequest, fleet: &[ApplianceState], latency: &Latency, anchor: &ApplianceState) -> u32 {
        let one = |endpoint: &Endpoint| match endpoint {
            Endpoint::Region(r) => latency.get(r, &anchor.region).ms,
            Endpoint::Client { appliance } | Endpoint::Trunk { appliance } if *appliance == anchor.id => 0,
            Endpoint::Client { appliance } | Endpoint::Trunk { appliance } => {
                let region = &fleet.iter().find(|s| s.id == *appliance).map(|s| s.region.clone());
                region.as_ref().map_or(u32::MAX, |r| latency.get(r, &anchor.region).ms)
            }
        };
        let callee = call.callee.as_ref().map_or(0, one);
        one(&call.caller).saturating_add(callee)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn policy_properties(
            fleet in fleet(),
            call in call(),
            latency in latency(),
            tolerance in 0u32..20,
            order in proptest::collection::vec(any::<u64>(), MAX_FLEET),
        ) {
            let call = within(call, fleet.len());
            let tuning = Tuning { on_path_tolerance_ms: tolerance };
            let answer = decide(&call, &fleet, &latency, &tuning);

            // Deterministic.
            prop_assert_eq!(&answer, &decide(&call, &fleet, &latency, &tuning));

            // Order-independent.
            let mut permuted: Vec<(u64, ApplianceState)> =
                fleet.iter().cloned().enumerate().map(|(i, s)| (order[i], s)).collect();
            permuted.sort_by_key(|(key, s)| (*key, s.id.clone()));
            let permuted: Vec<ApplianceState> = permuted.into_iter().map(|(_, s)| s).collect();
            prop_assert_eq!(&answer, &decide(&call, &permuted, &latency, &tuning));

            let find = |id: &ApplianceId| fleet.iter().find(|s| s.id == *id);
            match &answer {
                Ok(decision) => {
                    // Signaling: starts where the call arrived, at most one hop,
                    // the hop to the callee's live appliance.
                    prop_assert!(!decision.signaling.is_empty() && decision.signaling.len() <= 2);
                    prop_assert_eq!(&decision.signaling[0], &call.received_at);
                    let callee_at = call.callee.as_ref().and_then(|c| c.appliance());
                    match callee_at {
                        Some(at) if *at != call.received_at => {
                            prop_assert_eq!(decision.signaling.get(1), Some(at));
                        }
                        _ => prop_assert_eq!(decision.signaling.len(), 1),
                    }
                    for hop in &decision.signaling[1..] {
                        prop_assert!(find(hop).is_some_and(|s| s.alive));
                    }

                    // The anchor: one capable appliance, optimal within the
                    // tolerance, and exactly optimal when off the path.
                    let anchor = find(&decision.media_anchor);
                    prop_assert!(anchor.is_some_and(|a| capable(a, &call)));
                    let Some(anchor) = anchor else { return Ok(()) };
                    let anchor_cost = cost(&call, &fleet, &latency, anchor);
                    let best = fleet
                        .iter()
                        .filter(|s| capable(s, &call))
                        .map(|s| cost(&call, &fleet, &latency, s))
                        .min()
                        .unwrap_or(u32::MAX);
                    prop_assert!(anchor_cost <= best.saturating_add(tolerance));
                    if !decision.signaling.contains(&anchor.id) {
                        prop_assert_eq!(anchor_cost, best);
                        let on_path_near = fleet.iter().any(|s| {
                            capable(s, &call)
                                && decision.signaling.contains(&s.id)
                                && cost(&call, &fleet, &latency, s) <= best.saturating_add(tolerance)
                        });
                        prop_assert!(!on_path_near);
                    }
                    let reason = Reason::Anchor {
                        appliance: anchor.id.clone(),
                        cost_ms: anchor_cost,
                        on_path: decision.signaling.contains(&anchor.id),
                    };
                    prop_assert_eq!(decision.why.last(), Some(&reason));
                    // Both ends known and alive.
                    for end in [Some(&call.caller), call.callee.as_ref()].into_iter().flatten() {
                        if let Some(at) = end.appliance() {
                            prop_assert!(find(at).is_some_and(|s| s.alive));
                        }
                    }
                }
                Err(Refusal::CalleeAbsent) => prop_assert!(call.callee.is_none()),
                Err(Refusal::NoCapacity { excluded, .. }) => {
                    prop_assert!(!fleet.iter().any(|s| capable(s, &call)));
                    prop_assert_eq!(excluded.len(), fleet.len());
                }
                Err(Refusal::UnknownAppliance { appliance, .. }) => prop_assert!(find(appliance).is_none()),
                Err(Refusal::DeadAppliance { appliance, .. }) => {
                    prop_assert!(find(appliance).is_some_and(|s| !s.alive));
                }
                Err(Refusal::DuplicateAppliance(_)) => prop_assert!(false, "ids are unique here"),
            }
            if call.callee.is_none() && find(&call.received_at).is_some() {
                prop_assert_eq!(&answer, &Err(Refusal::CalleeAbsent));
            }
        }
    }
}
