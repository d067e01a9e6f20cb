//! The behaviour every [`Store`] must have, written once and run against
//! each implementation (`sqlite/tests.rs`, `postgres/tests.rs`) through
//! [`store_suite!`]: the same calls, the same answers (NotFound vs Conflict
//! vs Invalid, account isolation, paging, trunk matching, batched call
//! writes, seeding). Each function is given a fresh, empty store.

use super::*;
use crate::config::Config;
use crate::store::seed::seed;

pub(super) fn ac(n: u32) -> AccountSid {
    AccountSid::parse(&format!("AC{n:032x}")).unwrap()
}

fn ap(n: u32) -> ApplicationSid {
    ApplicationSid::parse(&format!("AP{n:032x}")).unwrap()
}

fn sk(n: u32) -> ApiKeySid {
    ApiKeySid::parse(&format!("SK{n:032x}")).unwrap()
}

pub(super) fn e164(s: &str) -> E164 {
    E164::parse(s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Accounts 1 and 2.
fn with_accounts(store: &dyn Store) {
    store.create_account(&Account::new(ac(1), "token-1".into())).unwrap();
    store.create_account(&Account::new(ac(2), "token-2".into())).unwrap();
}

fn app(account: AccountSid, n: u32) -> Application {
    Application {
        sid: ap(n),
        voice_url: Some(format!("http://127.0.0.1:8080/voice/{n}")),
        ..Application::new(account, format!("app {n}"))
    }
}

fn trunk(account: AccountSid, name: &str, allow: &[&str]) -> Trunk {
    Trunk {
        allow: allow.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
        ..Trunk::new(account, name.into(), "sip:127.0.0.1:5080".into())
    }
}

fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, kind: &str) {
    match r {
        Err(StoreError::NotFound { kind: k, .. }) if k == kind => {}
        other => panic!("expected {kind} not found, got {other:?}"),
    }
}

fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
}
// ---- accounts and keys ------------------------------------------------------

pub(super) fn accounts(store: &dyn Store) {
    let mut first = Account::new(ac(1), "token-1".into());
    first.friendly_name = "First".into();
    store.create_account(&first).unwrap();
    store.create_account(&Account::new(ac(2), "token-2".into())).unwrap();
    assert_eq!(store.account(&ac(1)).unwrap(), first);
    let all: Vec<_> = store.accounts().unwrap().into_iter().map(|a| a.sid).collect();
    assert_eq!(all, [ac(1), ac(2)]);
    assert_conflict(store.create_account(&Account::new(ac(1), "again".into())));
    assert_not_found(store.account(&ac(3)), "account");
    assert!(matches!(store.create_account(&Account::new(ac(3), String::new())), Err(StoreError::Invalid(_))));

    // Rotating the auth token; the SID and creation date cannot be edited.
    let rotated = store
        .update_account(&ac(1), &|a| {
            a.auth_token = "rotated".into();
            a.sid = ac(9);
            a.status = AccountStatus::Suspended;
        })
        .unwrap();
    assert_eq!(rotated.sid, ac(1));
    assert_eq!(rotated.date_created, first.date_created);
    assert!(rotated.date_updated >= first.date_updated);
    assert_eq!(store.account(&ac(1)).unwrap(), rotated);
    assert_eq!(rotated.auth_token, "rotated");
    assert_eq!(rotated.status, AccountStatus::Suspended);
    assert_not_found(store.account(&ac(9)), "account");
    assert_not_found(store.update_account(&ac(9), &|_| {}), "account");
    // An invalid edit changes nothing.
    assert!(store.update_account(&ac(1), &|a| a.auth_token.clear()).is_err());
    assert_eq!(store.account(&ac(1)).unwrap().auth_token, "rotated");
}

pub(super) fn api_keys(store: &dyn Store) {
    with_accounts(store);
    let key = ApiKey::generate(ac(1), "server".into());
    store.create_api_key(&key).unwrap();
    let second = ApiKey { sid: sk(2), ..ApiKey::generate(ac(1), "other".into()) };
    store.create_api_key(&second).unwrap();
    assert_eq!(store.api_key(&key.sid).unwrap(), key);
    assert_eq!(store.api_keys(&ac(1)).unwrap(), [key.clone(), second.clone()]);
    assert!(store.api_keys(&ac(2)).unwrap().is_empty());
    assert_conflict(store.create_api_key(&key));
    assert_not_found(store.create_api_key(&ApiKey::generate(ac(7), "x".into())), "account");
    // Renamed: the name changes, the secret does not; another account cannot.
    let renamed = store.rename_api_key(&ac(1), &key.sid, "renamed").unwrap();
    assert_eq!((renamed.friendly_name.as_str(), &renamed.secret), ("renamed", &key.secret));
    assert_eq!(store.api_key(&key.sid).unwrap().friendly_name, "renamed");
    assert_not_found(store.rename_api_key(&ac(2), &key.sid, "mine"), "API key");
    assert!(store.rename_api_key(&ac(1), &key.sid, &"x".repeat(65)).is_err(), "too long a name");
    // Another account cannot delete it.
    assert_not_found(store.delete_api_key(&ac(2), &key.sid), "API key");
    store.delete_api_key(&ac(1), &key.sid).unwrap();
    assert_not_found(store.api_key(&key.sid), "API key");
    assert_eq!(store.api_keys(&ac(1)).unwrap(), [second]);
    // Secrets stay out of debug output.
    assert!(!format!("{key:?}").contains(&key.secret));
}

// ---- applications -----------------------------------------------------------

pub(super) fn applications(store: &dyn Store) {
    with_accounts(store);
    let a = app(ac(1), 1);
    store.create_application(&a).unwrap();
    assert_eq!(store.application(&ac(1), &a.sid).unwrap(), a);
    assert_not_found(store.application(&ac(2), &a.sid), "application");
    assert_conflict(store.create_application(&a));
    assert_not_found(store.create_application(&app(ac(7), 2)), "account");
    let mut bad = app(ac(1), 3);
    bad.status_callback = Some("not a url".into());
    assert!(matches!(
        store.create_application(&bad),
        Err(StoreError::Invalid(m)) if m.contains("status_callback")
    ));

    let updated = store
        .update_application(&ac(1), &a.sid, &|app| {
            app.voice_url = Some("https://example.com/v2".into());
            app.voice_method = HttpMethod::Get;
            app.status_callback = Some("https://example.com/status".into());
            app.account_sid = ac(2);
        })
        .unwrap();
    assert_eq!(updated.account_sid, ac(1));
    assert_eq!(store.application(&ac(1), &a.sid).unwrap(), updated);
    assert_eq!(updated.voice_method, HttpMethod::Get);
    assert!(store.update_application(&ac(1), &a.sid, &|app| app.voice_url = Some("ftp://x".into())).is_err());
    assert_eq!(store.application(&ac(1), &a.sid).unwrap(), updated);
    assert_not_found(store.update_application(&ac(2), &a.sid, &|_| {}), "application");

    assert_not_found(store.delete_application(&ac(2), &a.sid), "application");
    store.delete_application(&ac(1), &a.sid).unwrap();
    assert_not_found(store.application(&ac(1), &a.sid), "application");
}

pub(super) fn application_paging(store: &dyn Store) {
    with_accounts(store);
    for n in 1..=5 {
        store.create_application(&app(ac(1), n)).unwrap();
    }
    store.create_application(&app(ac(2), 6)).unwrap();
    let sids = |p: &Page<Application>| p.items.iter().map(|a| a.sid.clone()).collect::<Vec<_>>();
    let p0 = store.applications(&ac(1), PageRequest::new(0, 2)).unwrap();
    let p1 = store.applications(&ac(1), PageRequest::new(1, 2)).unwrap();
    let p2 = store.applications(&ac(1), PageRequest::new(2, 2)).unwrap();
    let p3 = store.applications(&ac(1), PageRequest::new(3, 2)).unwrap();
    assert_eq!((sids(&p0), p0.has_more), (vec![ap(1), ap(2)], true));
    assert_eq!((sids(&p1), p1.has_more), (vec![ap(3), ap(4)], true));
    assert_eq!((sids(&p2), p2.has_more), (vec![ap(5)], false));
    assert_eq!((p3.items.len(), p3.has_more), (0, false));
    let all = store.applications(&ac(1), PageRequest::default()).unwrap();
    assert_eq!((all.items.len(), all.has_more, all.page_size), (5, false, 50));
    let exact = store.applications(&ac(1), PageRequest::new(0, 5)).unwrap();
    assert_eq!((exact.items.len(), exact.has_more), (5, false));
    for bad in [PageRequest::new(0, 0), PageRequest::new(0, 1001)] {
        assert!(matches!(store.applications(&ac(1), bad), Err(StoreError::Invalid(_))));
    }
    assert!(store.applications(&ac(1), PageRequest::new(u32::MAX, 1000)).unwrap().items.is_empty());
}

// ---- phone numbers ----------------------------------------------------------

pub(super) fn numbers_route_to_their_application(store: &dyn Store) {
    with_accounts(store);
    let a = app(ac(1), 1);
    store.create_application(&a).unwrap();
    store.create_application(&app(ac(2), 2)).unwrap();
    let n = PhoneNumber::new(ac(1), e164("+15550100001"), Some(a.sid.clone()));
    store.create_number(&n).unwrap();
    assert_eq!(store.number(&ac(1), &n.sid).unwrap(), n);
    assert_not_found(store.number(&ac(2), &n.sid), "phone number");

    let (found, found_app) = store.route_number(&e164("+15550100001")).unwrap().unwrap();
    assert_eq!(found, n);
    assert_eq!(found_app, Some(a.clone()));
    assert!(store.route_number(&e164("+15550100009")).unwrap().is_none());

    // A number is held by one account only.
    assert!(matches!(
        store.create_number(&PhoneNumber::new(ac(2), e164("+15550100001"), None)),
        Err(StoreError::Conflict(m)) if m.contains("+15550100001")
    ));
    // An application of another account cannot answer it.
    assert_not_found(store.create_number(&PhoneNumber::new(ac(1), e164("+15550100002"), Some(ap(2)))), "application");
    assert_not_found(store.update_number(&ac(1), &n.sid, &|n| n.application_sid = Some(ap(2))), "application");
    // The application cannot go while the number points at it.
    assert_conflict(store.delete_application(&ac(1), &a.sid));

    let cleared = store
        .update_number(&ac(1), &n.sid, &|n| {
            n.application_sid = None;
            n.friendly_name = "main line".into();
            n.phone_number = E164::parse("+15550100003").unwrap();
        })
        .unwrap();
    assert_eq!(cleared.phone_number, n.phone_number);
    assert_eq!(cleared.friendly_name, "main line");
    let (_, no_app) = store.route_number(&n.phone_number).unwrap().unwrap();
    assert_eq!(no_app, None);
    store.delete_application(&ac(1), &a.sid).unwrap();

    for i in 2..=4 {
        store.create_number(&PhoneNumber::new(ac(1), e164(&format!("+1555010000{i}")), None)).unwrap();
    }
    let page = store.numbers(&ac(1), PageRequest::new(1, 3)).unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(!page.has_more);
    assert_eq!(page.items[0].phone_number.as_str(), "+15550100004");

    assert_not_found(store.delete_number(&ac(2), &n.sid), "phone number");
    store.delete_number(&ac(1), &n.sid).unwrap();
    assert!(store.route_number(&n.phone_number).unwrap().is_none());
}

// ---- trunks -----------------------------------------------------------------

pub(super) fn trunks(store: &dyn Store) {
    with_accounts(store);
    let mut a = trunk(ac(1), "carrier-a", &["192.0.2.0/24", "2001:db8::/32"]);
    a.username = Some("bh".into());
    a.password = Some("secret".into());
    store.create_trunk(&a).unwrap();
    store.create_trunk(&trunk(ac(1), "carrier-b", &["198.51.100.7"])).unwrap();
    // The same name in another account is another trunk.
    store.create_trunk(&trunk(ac(2), "carrier-a", &["203.0.113.0/24"])).unwrap();
    assert_eq!(store.trunk(&ac(1), "carrier-a").unwrap(), a);
    let names: Vec<_> = store.trunks(&ac(1)).unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["carrier-a", "carrier-b"]);
    assert_conflict(store.create_trunk(&trunk(ac(1), "carrier-a", &[])));
    assert_not_found(store.trunk(&ac(1), "nope"), "trunk");
    assert_not_found(store.create_trunk(&trunk(ac(7), "x", &[])), "account");
    let mut half = trunk(ac(1), "half", &[]);
    half.password = Some("pw".into());
    assert!(matches!(store.create_trunk(&half), Err(StoreError::Invalid(_))));
    assert!(!format!("{a:?}").contains("secret"));

    let renamed = store
        .update_trunk(&ac(1), "carrier-b", &|t| {
            t.name = "carrier-c".into();
            t.allow = vec![Cidr::parse("198.51.100.0/24").unwrap()];
            t.outbound = "sips:carrier-c.example.com".into();
        })
        .unwrap();
    assert_eq!(store.trunk(&ac(1), "carrier-c").unwrap(), renamed);
    assert_not_found(store.trunk(&ac(1), "carrier-b"), "trunk");
    assert_conflict(store.update_trunk(&ac(1), "carrier-c", &|t| t.name = "carrier-a".into()));
    assert_eq!(store.trunk_for_source(ip("198.51.100.200")).unwrap().unwrap().name, "carrier-c");

    store.delete_trunk(&ac(1), "carrier-c").unwrap();
    assert_not_found(store.delete_trunk(&ac(1), "carrier-c"), "trunk");
    assert!(store.trunk_for_source(ip("198.51.100.200")).unwrap().is_none());
}

pub(super) fn trunk_for_source_picks_the_most_specific_network(store: &dyn Store) {
    with_accounts(store);
    store.create_trunk(&trunk(ac(1), "wide", &["10.0.0.0/8", "2001:db8::/32"])).unwrap();
    store.create_trunk(&trunk(ac(2), "narrow", &["10.1.2.0/24", "2001:db8:1::/48"])).unwrap();
    store.create_trunk(&trunk(ac(2), "host", &["10.1.2.3"])).unwrap();
    let name = |s: &str| store.trunk_for_source(ip(s)).unwrap().map(|t| t.name);
    assert_eq!(name("10.200.0.1").as_deref(), Some("wide"));
    assert_eq!(name("10.1.2.4").as_deref(), Some("narrow"));
    assert_eq!(name("10.1.2.3").as_deref(), Some("host"));
    assert_eq!(name("::ffff:10.1.2.3").as_deref(), Some("host"));
    assert_eq!(name("10.1.2.255").as_deref(), Some("narrow"));
    assert_eq!(name("10.1.3.0").as_deref(), Some("wide"));
    assert_eq!(name("2001:db8:1::5").as_deref(), Some("narrow"));
    assert_eq!(name("2001:db8:2::5").as_deref(), Some("wide"));
    assert_eq!(name("11.0.0.0"), None);
    assert_eq!(name("9.255.255.255"), None);
    assert_eq!(name("::1"), None);
    let t = store.trunk_for_source(ip("10.1.2.3")).unwrap().unwrap();
    assert_eq!(t.account_sid, ac(2));
    assert!(t.allows(ip("10.1.2.3")));
}

// ---- call records -----------------------------------------------------------

fn call(account: AccountSid, from: &str, to: &str, status: CallStatus, ms: i64) -> CallRecord {
    let mut c = CallRecord::new(account, from.into(), to.into(), Direction::Inbound, status);
    c.date_created = Timestamp::from_unix_ms(ms);
    c.date_updated = c.date_created;
    c.start_time = Some(c.date_created);
    c
}

pub(super) fn call_records_are_written_updated_and_read_back(store: &dyn Store) {
    with_accounts(store);
    let mut parent =
        CallRecord::new(ac(1), "+15550100009".into(), "+15550100001".into(), Direction::Inbound, CallStatus::Ringing);
    parent.application_sid = Some(ap(1));
    parent.trunk = Some("carrier-a".into());
    store.insert_call(&parent).unwrap();
    assert_eq!(store.call(&ac(1), &parent.sid).unwrap(), parent);
    assert_not_found(store.call(&ac(2), &parent.sid), "call");
    assert_conflict(store.insert_call(&parent));
    assert_not_found(
        store.insert_call(&CallRecord::new(ac(7), "a".into(), "b".into(), Direction::Inbound, CallStatus::Ringing)),
        "account",
    );

    let mut child = CallRecord::new(
        ac(1),
        "+15550100001".into(),
        "+15550100002".into(),
        Direction::OutboundDial,
        CallStatus::Queued,
    );
    child.parent_call_sid = Some(parent.sid.clone());
    assert_eq!(child.start_time, None);
    store.insert_call(&child).unwrap();

    let answered = store
        .update_call(
            &parent.sid,
            &CallUpdate {
                status: Some(CallStatus::InProgress),
                answered_by: Some("human".into()),
                ..CallUpdate::default()
            },
        )
        .unwrap();
    assert_eq!(answered.status, CallStatus::InProgress);
    assert_eq!(answered.start_time, parent.start_time);
    let end = Timestamp::from_unix_ms(parent.start_time.unwrap().unix_ms() + 61_500);
    let ended = store
        .update_call(
            &parent.sid,
            &CallUpdate {
                status: Some(CallStatus::Completed),
                end_time: Some(end),
                duration_s: Some(parent.start_time.unwrap().seconds_until(end)),
                ..CallUpdate::default()
            },
        )
        .unwrap();
    assert_eq!(ended.duration_s, Some(61));
    assert_eq!(ended.end_time, Some(end));
    // Fields the update left alone are kept.
    assert_eq!(ended.answered_by.as_deref(), Some("human"));
    assert_eq!(ended.trunk.as_deref(), Some("carrier-a"));
    assert_eq!(store.call(&ac(1), &parent.sid).unwrap(), ended);

    let failed = store
        .update_call(
            &child.sid,
            &CallUpdate {
                status: Some(CallStatus::Failed),
                error_code: Some(11200),
                error_message: Some("HTTP retrieval failure".into()),
                ..CallUpdate::default()
            },
        )
        .unwrap();
    assert_eq!(failed.error_code, Some(11200));
    assert_eq!(failed.parent_call_sid, Some(parent.sid.clone()));
    assert_not_found(store.update_call(&CallSid::generate(), &CallUpdate::default()), "call");
}

pub(super) fn call_lists_are_newest_first_filtered_and_paged(store: &dyn Store) {
    with_accounts(store);
    let t0 = 1_700_000_000_000;
    let a = call(ac(1), "+15550100009", "+15550100001", CallStatus::Completed, t0);
    let b = call(ac(1), "+15550100008", "+15550100001", CallStatus::Busy, t0 + 1000);
    let c = call(ac(1), "+15550100009", "+15550100002", CallStatus::Completed, t0 + 2000);
    // Same millisecond as c: the later insert is the newer.
    let mut d = call(ac(1), "client:alice", "+15550100001", CallStatus::NoAnswer, t0 + 2000);
    d.parent_call_sid = Some(a.sid.clone());
    let other = call(ac(2), "+15550100009", "+15550100001", CallStatus::Completed, t0 + 3000);
    for r in [&a, &b, &c, &d, &other] {
        store.insert_call(r).unwrap();
    }
    let list = |f: CallFilter, page: PageRequest| {
        let p = store.calls(&ac(1), &f, page).unwrap();
        (p.items.into_iter().map(|r| r.sid).collect::<Vec<_>>(), p.has_more)
    };
    let all = PageRequest::default();
    assert_eq!(
        list(CallFilter::default(), all),
        (vec![d.sid.clone(), c.sid.clone(), b.sid.clone(), a.sid.clone()], false)
    );
    assert_eq!(
        list(CallFilter::default(), PageRequest::new(0, 3)),
        (vec![d.sid.clone(), c.sid.clone(), b.sid.clone()], true)
    );
    assert_eq!(list(CallFilter::default(), PageRequest::new(1, 3)), (vec![a.sid.clone()], false));
    let to = CallFilter { to: Some("+15550100001".into()), ..CallFilter::default() };
    assert_eq!(list(to.clone(), all).0, [d.sid.clone(), b.sid.clone(), a.sid.clone()]);
    let from_and_status =
        CallFilter { from: Some("+15550100009".into()), status: Some(CallStatus::Completed), ..CallFilter::default() };
    assert_eq!(list(from_and_status, all).0, [c.sid.clone(), a.sid.clone()]);
    let to_and_status = CallFilter { status: Some(CallStatus::Busy), ..to };
    assert_eq!(list(to_and_status, all).0, vec![b.sid.clone()]);
    let children = CallFilter { parent_call_sid: Some(a.sid.clone()), ..CallFilter::default() };
    assert_eq!(list(children, all).0, vec![d.sid.clone()]);
    let window = CallFilter {
        started_at_or_after: Some(Timestamp::from_unix_ms(t0 + 1000)),
        started_before: Some(Timestamp::from_unix_ms(t0 + 2000)),
        ..CallFilter::default()
    };
    assert_eq!(list(window, all).0, vec![b.sid.clone()]);
    let nothing = CallFilter { status: Some(CallStatus::Canceled), ..CallFilter::default() };
    assert_eq!(list(nothing, all), (vec![], false));
    assert!(matches!(store.calls(&ac(1), &CallFilter::default(), PageRequest::new(0, 0)), Err(StoreError::Invalid(_))));
}

// ---- seeding ----------------------------------------------------------------

const SEED_CONFIG: &str = r#"
    [[accounts]]
    sid = "AC00000000000000000000000000000001"
    auth_token = "token-1"
    [[accounts.api_keys]]
    sid = "SK00000000000000000000000000000001"
    secret = "secret-1"
    [[accounts.applications]]
    sid = "AP00000000000000000000000000000001"
    voice_url = "http://127.0.0.1:8080/voice"
    voice_method = "POST"
    voice_fallback_url = "http://127.0.0.1:8080/fallback"
    status_callback = "http://127.0.0.1:8080/status"
    [[accounts.numbers]]
    number = "+15550100001"
    application = "AP00000000000000000000000000000001"
    [[accounts.trunks]]
    name = "carrier-a"
    allow = ["127.0.0.1/32"]
    outbound = "sip:127.0.0.1:5080"
"#;

pub(super) fn seeding_writes_the_config_accounts_once_and_the_database_wins(store: &dyn Store) {
    let config = Config::parse_str(SEED_CONFIG).unwrap();
    let report = seed(store, &config.accounts).unwrap();
    assert_eq!(report.created, [ac(1)]);
    assert!(report.kept.is_empty());

    assert_eq!(store.account(&ac(1)).unwrap().auth_token, "token-1");
    assert_eq!(store.api_key(&sk(1)).unwrap().secret, "secret-1");
    let (number, app) = store.route_number(&e164("+15550100001")).unwrap().unwrap();
    assert_eq!(number.account_sid, ac(1));
    let app = app.unwrap();
    assert_eq!(app.sid, ap(1));
    assert_eq!(app.voice_url.as_deref(), Some("http://127.0.0.1:8080/voice"));
    assert_eq!(app.voice_fallback_url.as_deref(), Some("http://127.0.0.1:8080/fallback"));
    assert_eq!(app.status_callback.as_deref(), Some("http://127.0.0.1:8080/status"));
    let trunk = store.trunk_for_source(ip("127.0.0.1")).unwrap().unwrap();
    assert_eq!(trunk.name, "carrier-a");
    assert_eq!(trunk.outbound, "sip:127.0.0.1:5080");

    // Changes made through the API survive a restart with the same file.
    store.update_account(&ac(1), &|a| a.auth_token = "rotated".into()).unwrap();
    store.delete_api_key(&ac(1), &sk(1)).unwrap();
    let again = seed(store, &config.accounts).unwrap();
    assert_eq!((again.created.len(), again.kept.clone()), (0, vec![ac(1)]));
    assert_eq!(store.account(&ac(1)).unwrap().auth_token, "rotated");
    assert_not_found(store.api_key(&sk(1)), "API key");
    assert_eq!(store.numbers(&ac(1), PageRequest::default()).unwrap().items.len(), 1);

    // An account added to the file later is written on the next start.
    let more = Config::parse_str(&format!(
        "{SEED_CONFIG}\n[[accounts]]\nsid = \"AC00000000000000000000000000000002\"\nauth_token = \"t2\"\n"
    ))
    .unwrap();
    let report = seed(store, &more.accounts).unwrap();
    assert_eq!((report.created, report.kept), (vec![ac(2)], vec![ac(1)]));
}

pub(super) fn a_seeded_account_is_written_whole_or_not_at_all(store: &dyn Store) {
    store.create_account(&Account::new(ac(5), "t".into())).unwrap();
    store.create_number(&PhoneNumber::new(ac(5), e164("+15550100001"), None)).unwrap();
    // The file gives the number to account 1, but the database has it for 5.
    let config = Config::parse_str(SEED_CONFIG).unwrap();
    assert_conflict(seed(store, &config.accounts));
    assert_not_found(store.account(&ac(1)), "account");
    assert_not_found(store.api_key(&sk(1)), "API key");
    assert!(store.trunk_for_source(ip("127.0.0.1")).unwrap().is_none());
}

pub(super) fn call_writes_are_applied_in_order_in_one_transaction(store: &dyn Store) {
    with_accounts(store);
    let record =
        CallRecord::new(ac(1), "+15550100009".into(), "+15550100001".into(), Direction::Inbound, CallStatus::Ringing);
    let sid = record.sid.clone();
    let done = CallUpdate { status: Some(CallStatus::Completed), duration_s: Some(7), ..CallUpdate::default() };
    let ghost = CallSid::generate();
    store
        .write_calls(&[
            CallWrite::Insert(Box::new(record.clone())),
            CallWrite::Update(sid.clone(), Box::new(done)),
            // An update of a call that is not there is skipped.
            CallWrite::Update(ghost.clone(), Box::default()),
        ])
        .unwrap();
    let stored = store.call(&ac(1), &sid).unwrap();
    assert_eq!((stored.status, stored.duration_s), (CallStatus::Completed, Some(7)));
    assert_not_found(store.call(&ac(1), &ghost), "call");

    // All or nothing: a batch with a duplicate insert writes none of it.
    let other = CallRecord::new(ac(1), "a".into(), "b".into(), Direction::Inbound, CallStatus::Ringing);
    let failed = store.write_calls(&[CallWrite::Insert(Box::new(other.clone())), CallWrite::Insert(Box::new(record))]);
    assert_conflict(failed);
    assert_not_found(store.call(&ac(1), &other.sid), "call");
}

/// Declares one `#[test]` per behaviour of this file, each on a fresh store
/// from `$open` (an expression giving `(guard, store)`: the guard keeps the
/// store's database until the test ends).
macro_rules! store_suite {
    ($open:expr) => {
        $crate::store::suite::store_suite!(@each $open; accounts, api_keys, applications, application_paging, numbers_route_to_their_application, trunks, trunk_for_source_picks_the_most_specific_network, call_records_are_written_updated_and_read_back, call_lists_are_newest_first_filtered_and_paged, seeding_writes_the_config_accounts_once_and_the_database_wins, a_seeded_account_is_written_whole_or_not_at_all, call_writes_are_applied_in_order_in_one_transaction);
    };
    (@each $open:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let (_guard, store) = $open;
                $crate::store::suite::$name(&store);
            }
        )*
    };
}
pub(crate) use store_suite;
