//! Access tokens minted by Twilio's own helper library (Python `twilio`,
//! `AccessToken` + `VoiceGrant`) verify unchanged; tokens printed by
//! `bridgehead token` verify here and decode with PyJWT (the library
//! `twilio` itself depends on).
//!
//! Needs `python3` with the `twilio` package (scripts/test.sh puts
//! target/venv first on PATH); fails, rather than skips, without it, so CI
//! cannot pass by not testing.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use controlplane::store::{Account, AccountSid, ApiKey, ApiKeySid, SqliteStore, Store, StoreError, Timestamp};
use controlplane::token::{self, TokenError};
use serde_json::{json, Value};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const OTHER_ACCOUNT: &str = "ACfedcba9876543210fedcba9876543210";
const KEY: &str = "SK0123456789abcdef0123456789abcdef";
const SECRET: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const APP: &str = "AP0123456789abcdef0123456789abcdef";

/// Mints one token per case with Twilio's `AccessToken`, as a customer's
/// server does; `algorithm` is the attribute `Jwt.to_jwt` signs with.
const MINT: &str = r#"
import json, sys
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

out = []
for case in json.load(sys.stdin):
    t = AccessToken(case["account"], case["key"], case["secret"], identity=case["identity"], ttl=case["ttl"])
    if case.get("algorithm"):
        t.algorithm = case["algorithm"]
    t.add_grant(VoiceGrant(
        incoming_allow=case.get("incoming"),
        outgoing_application_sid=case.get("app"),
        outgoing_application_params=case.get("params"),
    ))
    out.append({"name": case["name"], "token": t.to_jwt()})
print(json.dumps(out))
"#;

/// Decodes a token with PyJWT, checking signature and times.
const DECODE: &str = r#"
import json, sys
import jwt
case = json.load(sys.stdin)
header = jwt.get_unverified_header(case["token"])
claims = jwt.decode(case["token"], case["secret"], algorithms=["HS256"], options={"require": ["exp", "iss", "sub"]})
print(json.dumps({"header": header, "claims": claims}))
"#;

fn python(script: &str, input: &Value) -> Value {
    let probe = Command::new("python3").args(["-c", "import twilio.jwt.access_token, jwt"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 cannot import the twilio package ({}); run scripts/test.sh or `pip install twilio`",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 is not available ({e}); install it and run `pip install twilio`"),
    }
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().expect("python3 output");
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("python3 printed JSON")
}

fn base64_url(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn key() -> ApiKey {
    ApiKey {
        sid: ApiKeySid::parse(KEY).unwrap(),
        account_sid: AccountSid::parse(ACCOUNT).unwrap(),
        friendly_name: "twilio test".into(),
        secret: SECRET.into(),
        date_created: Timestamp::now(),
    }
}

fn found(_: &ApiKeySid) -> Result<Option<ApiKey>, StoreError> {
    Ok(Some(key()))
}

fn twilio_tokens(cases: Value) -> Vec<(String, String)> {
    python(MINT, &cases)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c["token"].as_str().unwrap().to_owned()))
        .collect()
}

fn case(name: &str, extra: Value) -> Value {
    let mut c =
        json!({ "name": name, "account": ACCOUNT, "key": KEY, "secret": SECRET, "identity": "alice", "ttl": 3600 });
    c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    c
}

#[test]
fn tokens_minted_by_twilio_library_verify_unchanged() {
    let tokens = twilio_tokens(json!([
        case("HS256 incoming", json!({ "incoming": true })),
        case(
            "HS256 outgoing with params",
            json!({ "incoming": true, "app": APP, "params": { "agent": "007", "queue": 3 } })
        ),
        case("HS384", json!({ "algorithm": "HS384", "incoming": true })),
        case("HS512", json!({ "algorithm": "HS512", "app": APP })),
        case("24 h", json!({ "ttl": 86400, "incoming": true })),
    ]));
    assert_eq!(tokens.len(), 5);
    let now = now();
    for (name, t) in &tokens {
        let v = token::verify(t, now, found).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(v.account_sid.as_str(), ACCOUNT, "{name}");
        assert_eq!(v.key_sid.as_str(), KEY, "{name}");
        assert_eq!(v.identity, "alice", "{name}");
        assert!(v.expires_at > now, "{name}");
    }
    // The library really signed with the algorithm asked for.
    for (i, alg) in [(0, "HS256"), (2, "HS384"), (3, "HS512")] {
        let header = tokens[i].1.split('.').next().unwrap();
        let header: Value = serde_json::from_slice(&base64_url(header)).unwrap();
        assert_eq!(header["alg"], alg);
        assert_eq!(header["cty"], "twilio-fpa;v=1");
    }
    let v = token::verify(&tokens[1].1, now, found).unwrap();
    assert!(v.incoming_allow);
    let out = v.outgoing.unwrap();
    assert_eq!(out.application_sid.as_str(), APP);
    assert_eq!(out.params["agent"], "007");
    assert_eq!(out.params["queue"], 3);
    let v = token::verify(&tokens[3].1, now, found).unwrap();
    assert!(!v.incoming_allow);
    assert!(v.outgoing.unwrap().params.is_empty());
    // Two tokens minted in one second share their jti: both verify, twice.
    for _ in 0..2 {
        assert!(token::verify(&tokens[0].1, now, found).is_ok());
    }
}

#[test]
fn twilio_tokens_refused_for_the_right_reasons() {
    let tokens = twilio_tokens(json!([
        case("wrong secret", json!({ "secret": "not-the-secret" })),
        case("other account", json!({ "account": OTHER_ACCOUNT })),
        case("short", json!({ "ttl": 60 })),
    ]));
    let now = now();
    let e = token::verify(&tokens[0].1, now, found).unwrap_err();
    assert!(matches!(e, TokenError::BadSignature), "{e:?}");
    let e = token::verify(&tokens[1].1, now, found).unwrap_err();
    assert!(matches!(e, TokenError::WrongAccount { .. }), "{e:?}");
    assert_eq!(e.sdk_code(), 20151);
    let e = token::verify(&tokens[2].1, now + 61, found).unwrap_err();
    assert!(matches!(e, TokenError::Expired { .. }), "{e:?}");
    assert_eq!(e.sdk_code(), 20104);
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("bh-tokens-{tag}-{}-{}", std::process::id(), now()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn revoked_key_refused_through_the_store() {
    let dir = TempDir::new("revoked");
    let store = SqliteStore::open(&dir.0.join("bh.db")).unwrap();
    store.create_account(&Account::new(AccountSid::parse(ACCOUNT).unwrap(), "auth".into())).unwrap();
    store.create_api_key(&key()).unwrap();
    let tokens = twilio_tokens(json!([case("incoming", json!({ "incoming": true }))]));
    let now = now();
    assert!(token::verify(&tokens[0].1, now, token::lookup_in(&store)).is_ok());
    store.delete_api_key(&key().account_sid, &key().sid).unwrap();
    let e = token::verify(&tokens[0].1, now, token::lookup_in(&store)).unwrap_err();
    assert!(matches!(e, TokenError::UnknownKey(_)), "{e:?}");
    assert_eq!((e.wire_code(), e.sdk_code()), (31201, 20151));
}

#[test]
fn bridgehead_token_command_prints_a_token_pyjwt_accepts() {
    let dir = TempDir::new("cli");
    let config = dir.0.join("bridgehead.toml");
    std::fs::write(
        &config,
        format!(
            "[appliance]\nstate_dir = {:?}\n\n[[accounts]]\nsid = \"{ACCOUNT}\"\nauth_token = \"auth\"\n\
             [[accounts.api_keys]]\nsid = \"{KEY}\"\nsecret = \"{SECRET}\"\n\
             [[accounts.applications]]\nsid = \"{APP}\"\nvoice_url = \"http://127.0.0.1:8080/voice\"\n",
            dir.0.display().to_string()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_bridgehead"))
            .arg("token")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("run bridgehead token")
    };
    let out = run(&[
        "--account",
        ACCOUNT,
        "--key",
        KEY,
        "--identity",
        "alice",
        "--incoming",
        "--outgoing-app",
        APP,
        "--ttl",
        "600",
    ]);
    assert!(out.status.success(), "bridgehead token: {}", String::from_utf8_lossy(&out.stderr));
    let t = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!t.contains(SECRET));

    let v = token::verify(&t, now(), found).unwrap();
    assert_eq!(v.identity, "alice");
    assert!(v.incoming_allow);
    assert_eq!(v.outgoing.unwrap().application_sid.as_str(), APP);
    assert!(v.expires_at <= now() + 600);

    let decoded = python(DECODE, &json!({ "token": t, "secret": SECRET }));
    assert_eq!(decoded["header"], json!({ "alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1" }));
    let claims = &decoded["claims"];
    assert_eq!(claims["iss"], KEY);
    assert_eq!(claims["sub"], ACCOUNT);
    assert_eq!(claims["grants"]["identity"], "alice");
    assert_eq!(claims["grants"]["voice"]["incoming"]["allow"], true);
    assert_eq!(claims["grants"]["voice"]["outgoing"]["application_sid"], APP);
    assert!(claims["jti"].as_str().unwrap().starts_with(&format!("{KEY}-")));

    // A key of another account, an unknown key, a bad ttl: refused.
    let out = run(&["--account", OTHER_ACCOUNT, "--key", KEY, "--identity", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["--account", ACCOUNT, "--key", "SKffffffffffffffffffffffffffffffff", "--identity", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["--account", ACCOUNT, "--key", KEY, "--identity", "alice", "--ttl", "86401"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ttl"));
}
