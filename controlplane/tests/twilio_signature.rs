//! Our `X-Twilio-Signature` checked by Twilio's own `RequestValidator`
//! (Python helper library), the way a customer's app checks it: the form
//! body decoded as the web framework decodes it, the URL as requested.
//!
//! Needs `python3` with the `twilio` package (`pip install twilio`); fails,
//! rather than skips, without them, so CI cannot pass by not testing.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use controlplane::instructions::params::{self, CallFacts, CallStatus, Direction, ProgressEvent};
use controlplane::instructions::signature::{self, SignedRequest};
use controlplane::instructions::Method;

/// Reads each request as a Flask/Django app would and validates it.
const VALIDATE: &str = r#"
import json, sys
from urllib.parse import parse_qsl
from twilio.request_validator import RequestValidator

class MultiDict:
    """The shape of Flask's request.form: repeated names keep every value."""
    def __init__(self, pairs): self.pairs = pairs
    def __iter__(self): return iter([k for k, _ in self.pairs])
    def __bool__(self): return bool(self.pairs)
    def getall(self, k): return [v for kk, v in self.pairs if kk == k]

for case in json.load(sys.stdin):
    params = {}
    if case["body"] is not None:
        params = MultiDict(parse_qsl(case["body"], keep_blank_values=True))
    good = RequestValidator(case["token"]).validate(case["seen_url"], params, case["signature"])
    bad = RequestValidator(case["token"] + "x").validate(case["seen_url"], params, case["signature"])
    print(json.dumps({"name": case["name"], "valid": good, "valid_with_wrong_token": bad}))
"#;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

struct Case {
    name: &'static str,
    token: &'static str,
    request: SignedRequest,
    /// The URL as the app sees it (a proxy may add or drop the port).
    seen_url: Option<String>,
}

fn cases() -> Vec<Case> {
    let call = CallFacts {
        call_sid: "CA0123456789abcdef0123456789abcdef".into(),
        account_sid: "AC00000000000000000000000000000001".into(),
        from: "+15550100002".into(),
        to: "+15550100001".into(),
        direction: Direction::Inbound,
        forwarded_from: Some("+15550100009".into()),
        caller_name: Some("Zoë O'Brien & Co".into()),
        parent_call_sid: None,
        custom: Vec::new(),
    };
    let voice = params::voice_request(&call, CallStatus::Ringing);
    let status = params::status_callback(
        &call,
        &ProgressEvent {
            status: CallStatus::Completed,
            duration_s: Some(61),
            at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            sequence_number: 3,
        },
    );
    let token = "0123456789abcdef0123456789abcdef";
    let sign = |method, url: &str, params: &[(String, String)]| signature::sign_request(token, method, url, params);
    vec![
        Case {
            name: "voice POST",
            token,
            request: sign(Method::Post, "https://app.example.com/voice", &voice),
            seen_url: None,
        },
        Case {
            name: "voice POST, app sees the default port",
            token,
            request: sign(Method::Post, "https://app.example.com/voice", &voice),
            seen_url: Some("https://app.example.com:443/voice".into()),
        },
        Case {
            name: "voice POST to a port and a query",
            token,
            request: sign(Method::Post, "http://127.0.0.1:8080/voice?tenant=a&x=%20y", &voice),
            seen_url: None,
        },
        Case {
            name: "voice GET",
            token,
            request: sign(Method::Get, "http://127.0.0.1:8080/voice", &voice),
            seen_url: None,
        },
        Case {
            name: "GET onto an existing query",
            token,
            request: sign(Method::Get, "https://app.example.com/v?step=2", &voice),
            seen_url: None,
        },
        Case {
            name: "status callback POST",
            token,
            request: sign(Method::Post, "https://app.example.com/status", &status),
            seen_url: None,
        },
        Case {
            name: "POST without parameters",
            token,
            request: sign(Method::Post, "https://app.example.com/empty", &[]),
            seen_url: None,
        },
        Case {
            name: "repeated names, unicode, empty values",
            token: "another token",
            request: signature::sign_request(
                "another token",
                Method::Post,
                "https://app.example.com/dup",
                &pairs(&[("b", "2"), ("a", "z"), ("a", "y"), ("Ä", "ü"), ("A", "")]),
            ),
            seen_url: None,
        },
    ]
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[test]
fn twilio_request_validator_accepts_our_signatures() {
    let probe = Command::new("python3").args(["-c", "import twilio.request_validator"]).output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python3 cannot import the twilio package ({}); run `pip install twilio`",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("python3 is not available ({e}); install it and run `pip install twilio`"),
    }

    let cases = cases();
    let input = format!(
        "[{}]",
        cases
            .iter()
            .map(|c| format!(
                r#"{{"name":{},"token":{},"seen_url":{},"body":{},"signature":{}}}"#,
                json_string(c.name),
                json_string(c.token),
                json_string(c.seen_url.as_deref().unwrap_or(&c.request.url)),
                c.request.body.as_deref().map_or("null".to_owned(), json_string),
                json_string(&c.request.signature),
            ))
            .collect::<Vec<_>>()
            .join(",")
    );

    let mut child = Command::new("python3")
        .args(["-c", VALIDATE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write cases");
    let out = child.wait_with_output().expect("python3 output");
    assert!(out.status.success(), "validator script failed: {}", String::from_utf8_lossy(&out.stderr));

    let results: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    assert_eq!(results.len(), cases.len(), "one result per case: {results:?}");
    for r in &results {
        assert_eq!(r["valid"], true, "RequestValidator refused: {r}");
        assert_eq!(r["valid_with_wrong_token"], false, "accepted with a wrong token: {r}");
    }
}
