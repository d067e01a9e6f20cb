//! The REST API end to end: the `bridgehead` process in a namespace of its
//! own with an account seeded from its configuration, driven over HTTPS by
//! Twilio's own Python helper library (`test-harness/apps/rest_client.py`),
//! which trusts the appliance's generated certificate.
//!
//! Needs root (the namespace) and `python3` with the `twilio` package
//! (`pip install twilio`; scripts/test.sh puts one in target/venv). Missing
//! either fails the test, it is never skipped.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use test_harness::appliance::{Appliance, ApplianceConfig};
use test_harness::netns::Netns;

const ACCOUNT: &str = "AC0000000000000000000000000000a001";
const TOKEN: &str = "rest-e2e-auth-token";
const KEY: &str = "SK0000000000000000000000000000a001";
const SECRET: &str = "rest-e2e-key-secret";

fn accounts() -> String {
    format!(
        r#"
[[accounts]]
sid = "{ACCOUNT}"
auth_token = "{TOKEN}"
[[accounts.api_keys]]
sid = "{KEY}"
secret = "{SECRET}"
"#
    )
}

/// Fails with the fix when python3 or Twilio's library is not there.
fn require_twilio_library() {
    let probe = Command::new("python3").args(["-c", "import twilio; print(twilio.__version__)"]).output();
    match probe {
        Ok(out) if out.status.success() => {
            eprintln!("twilio helper library {}", String::from_utf8_lossy(&out.stdout).trim());
        }
        Ok(out) => panic!(
            "python3 cannot import Twilio's helper library: run `pip install twilio` (or scripts/test.sh, which \
             installs it into target/venv and puts it on PATH)\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("python3 not found ({e}): install python3, then `pip install twilio`"),
    }
}

#[test]
fn twilio_helper_library_drives_the_rest_api() {
    require_twilio_library();
    let ns = Netns::new("rest").expect("namespace (the end-to-end tests need root)");
    let https: SocketAddr = "127.0.0.1:8443".parse().unwrap();
    let mut config = ApplianceConfig::sockets("127.0.0.1".parse().unwrap());
    config.https = Some(https);
    config.extra = accounts();
    let app = Appliance::start(config, Some(&ns)).expect("appliance");
    let cafile = app.state_dir().join("tls/cert.pem");
    assert!(cafile.is_file(), "generated certificate at {}", cafile.display());

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("apps/rest_client.py");
    let out = ns
        .command(Path::new("python3"))
        .arg(&script)
        .args(["--base", &format!("https://{https}"), "--account", ACCOUNT, "--token", TOKEN])
        .args(["--key-sid", KEY, "--key-secret", SECRET])
        .arg("--cafile")
        .arg(&cafile)
        .output()
        .expect("running rest_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or("");
    let r: Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("rest_client.py printed no JSON ({e}); status {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status)
    });
    assert!(
        out.status.success() && r.get("fatal").is_none(),
        "rest_client.py failed: {}\n{}\nstderr:\n{stderr}\nappliance log:\n{}",
        r["fatal"],
        r["traceback"].as_str().unwrap_or(""),
        app.stderr()
    );
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());

    assert_eq!(r["account"]["sid"], ACCOUNT);
    assert_eq!(r["account"]["status"], "active");
    assert_eq!(r["account"]["date_created_is_datetime"], true, "RFC 2822 dates parse");

    // Applications.
    let created = &r["app_created"];
    let app_sid = created["sid"].as_str().unwrap();
    assert!(app_sid.starts_with("AP") && app_sid.len() == 34);
    assert_eq!(created["friendly_name"], "rest-e2e");
    assert_eq!(created["voice_url"], "http://127.0.0.1:8080/voice");
    assert_eq!(created["voice_method"], "GET");
    assert_eq!(created["account_sid"], ACCOUNT);
    assert_eq!(created["api_version"], "2010-04-01");
    assert_eq!(created["date_created_is_datetime"], true);
    assert_eq!(r["app_list"]["sids"], r["app_expected"], "five applications, oldest first, over pages of 2");
    assert_eq!(r["app_list"]["requests"], 3, "the library followed next_page_uri twice");
    assert_eq!(r["app_list_limited"], 3);
    assert_eq!(r["app_page"]["count"], 2);
    assert!(r["app_page"]["next_page_url"].as_str().unwrap().starts_with("https://api.twilio.com/2010-04-01/"));
    assert_eq!(r["app_fetched"]["sid"], app_sid);
    assert_eq!(r["app_updated"]["voice_url"], "https://127.0.0.1:8443/next");
    assert_eq!(r["app_updated"]["voice_fallback_url"], "http://127.0.0.1:8080/fallback");
    assert_eq!(r["app_updated"]["voice_method"], "GET", "unchanged fields stay");

    // Numbers.
    let number_sid = r["number_created"]["sid"].as_str().unwrap();
    assert!(number_sid.starts_with("PN"));
    assert_eq!(r["number_created"]["phone_number"], "+15550100042");
    assert_eq!(r["number_created"]["voice_application_sid"], app_sid);
    assert_eq!(r["number_list"], serde_json::json!([number_sid]));
    assert_eq!((r["number_taken"]["status"].as_u64(), r["number_taken"]["code"].as_u64()), (Some(400), Some(21422)));
    assert_eq!(r["app_in_use"]["status"], 400, "an application a number points at cannot be deleted");

    // Keys.
    let key_sid = r["key_created"]["sid"].as_str().unwrap();
    assert!(key_sid.starts_with("SK"));
    assert_eq!(r["key_created"]["has_secret"], true);
    let listed: Vec<&str> = r["key_list"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(listed.contains(&key_sid) && listed.contains(&KEY), "{listed:?}");
    assert_eq!(r["key_fetched"], "rest-e2e-key");
    assert_eq!(r["key_auth_apps"], 5, "a new API key authenticates");
    assert_eq!(r["seeded_key_fetch"], app_sid, "the key from the configuration authenticates");
    assert_eq!(r["key_deleted"], true);
    assert_eq!(
        (r["key_after_delete"]["status"].as_u64(), r["key_after_delete"]["code"].as_u64()),
        (Some(401), Some(20003))
    );

    // Calls.
    assert_eq!(r["calls_to"], serde_json::json!([]));
    assert_eq!(r["calls_all"], 0);
    assert_eq!((r["call_missing"]["status"].as_u64(), r["call_missing"]["code"].as_u64()), (Some(404), Some(20404)));
    // This account has no trunk: a call to a number is refused with Twilio's code for an unreachable To
    // (placing calls is covered end to end in calls_e2e.rs).
    assert_eq!((r["call_create"]["status"].as_u64(), r["call_create"]["code"].as_u64()), (Some(400), Some(21211)));
    assert!(r["call_create"]["message"].as_str().unwrap().contains("no SIP trunk"), "{}", r["call_create"]);

    assert_eq!(
        (r["wrong_password"]["status"].as_u64(), r["wrong_password"]["code"].as_u64()),
        (Some(401), Some(20003))
    );
    assert!(r["wrong_password"]["message"].as_str().unwrap().ends_with("Authenticate"), "{}", r["wrong_password"]);
    assert_eq!(r["number_deleted"], true);
    assert_eq!(r["app_deleted"], true);
    assert_eq!((r["app_gone"]["status"].as_u64(), r["app_gone"]["code"].as_u64()), (Some(404), Some(20404)));
}
