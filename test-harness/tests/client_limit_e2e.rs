//! The client connection limit end to end: with `[clients] max_connections
//! = 3` the appliance holds three Voice SDK clients; a fourth WebSocket is
//! refused with 503, logged and counted, and the three stay registered and
//! served; once one leaves, a new client gets in. (`client-bench
//! --over-limit` does the same at scale.)
//!
//! Needs root (a network namespace); fails rather than skips without it.

use controlplane::store::{AccountSid, ApiKey, ApiKeySid, Timestamp};
use controlplane::token::VoiceGrant;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use test_harness::admin::{metric_sum, metric_sum_with};
use test_harness::appliance::{Appliance, ApplianceConfig};
use test_harness::netns::Netns;
use test_harness::settle;
use test_harness::voice_client::{ConnectOptions, VoiceClient};

const ACCOUNT: &str = "AC0000000000000000000000000000117e";
const KEY: &str = "SK0000000000000000000000000000117e";
const SECRET: &str = "client-limit-e2e-secret-012345678";
const LIMIT: usize = 3;
const HTTPS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443);
const SIGNAL: Duration = Duration::from_secs(10);
const REFUSED_LOG: &str = "client connection refused: at the connection limit";

fn token(identity: &str) -> String {
    let key = ApiKey {
        sid: ApiKeySid::parse(KEY).unwrap(),
        account_sid: AccountSid::parse(ACCOUNT).unwrap(),
        friendly_name: "e2e".into(),
        secret: SECRET.into(),
        date_created: Timestamp::now(),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let grant = VoiceGrant { incoming_allow: true, outgoing: None };
    controlplane::token::mint(&key, identity, &grant, now, 3600).unwrap()
}

struct Rig {
    ns: Netns,
    app: Appliance,
    options: ConnectOptions,
}

impl Rig {
    fn new() -> Rig {
        let ns = Netns::new("climit").expect("a network namespace (the end-to-end tests need root)");
        let mut config = ApplianceConfig::sockets(IpAddr::V4(Ipv4Addr::LOCALHOST));
        config.https = Some(HTTPS);
        config.extra = format!(
            "[clients]\nmax_connections = {LIMIT}\n\n[[accounts]]\nsid = \"{ACCOUNT}\"\nauth_token = \"e2e\"\n\
             [[accounts.api_keys]]\nsid = \"{KEY}\"\nsecret = \"{SECRET}\"\n"
        );
        let app = Appliance::start(config, Some(&ns)).expect("appliance");
        let options = ConnectOptions { ca_pem: Some(app.state_dir().join("tls/cert.pem")), ..Default::default() };
        Rig { ns, app, options }
    }

    fn connect(&self) -> anyhow::Result<VoiceClient> {
        let url = format!("wss://{HTTPS}/signal");
        self.ns.run_in(|| VoiceClient::connect_with(&url, &self.options)).unwrap()
    }

    fn registered(&self, identity: &str) -> VoiceClient {
        let mut c = self.connect().unwrap_or_else(|e| panic!("{identity}: {e:#}\n{}", self.app.stderr()));
        c.listen(&token(identity)).unwrap();
        c.expect("connected", SIGNAL).unwrap_or_else(|e| panic!("{identity}: {e:#}\n{}", self.app.stderr()));
        c.register().unwrap();
        c.expect("ready", SIGNAL).unwrap_or_else(|e| panic!("{identity}: {e:#}\n{}", self.app.stderr()));
        c
    }

    fn metric(&self, name: &str) -> Option<u64> {
        metric_sum(&self.app.admin.metrics().unwrap(), name)
    }
}

#[test]
fn connections_past_the_limit_are_refused_and_the_others_stay() {
    let rig = Rig::new();
    let mut clients: Vec<VoiceClient> = (0..LIMIT).map(|i| rig.registered(&format!("alice-{i}"))).collect();

    let refused = rig.connect().err().expect("a connection past the limit is refused");
    assert!(format!("{refused:#}").contains("503"), "refused with 503: {refused:#}");
    assert_eq!(rig.metric("bridgehead_client_connections_refused"), Some(1));
    assert_eq!(rig.metric("bridgehead_client_connections"), Some(LIMIT as u64));
    let metrics = rig.app.admin.metrics().unwrap();
    assert_eq!(metric_sum_with(&metrics, "bridgehead_client_devices", "status=\"available\""), Some(LIMIT as u64));
    let log = settle(SIGNAL, || Ok(rig.app.stderr()), |l| l.contains(REFUSED_LOG)).unwrap();
    assert_eq!(log.matches(REFUSED_LOG).count(), 1, "one log line per refusal:\n{log}");

    // The clients held are untouched: still registered, still answered.
    for c in &mut clients {
        c.register().unwrap();
        c.expect("ready", SIGNAL).unwrap_or_else(|e| panic!("{e:#}\n{}", rig.app.stderr()));
    }

    // One leaves; its place is free again.
    drop(clients.pop());
    let open = settle(SIGNAL, || Ok(rig.metric("bridgehead_client_connections")), |n| *n == Some(LIMIT as u64 - 1));
    assert_eq!(open.unwrap(), Some(LIMIT as u64 - 1));
    clients.push(rig.registered("bob"));
    assert_eq!(rig.metric("bridgehead_client_connections_refused"), Some(1));
    assert!(rig.connect().is_err(), "full again");
    assert_eq!(rig.metric("bridgehead_client_connections_refused"), Some(2));
}
