//! The router driven request by request (`tower::ServiceExt::oneshot`) on a
//! real SQLite store in a scratch directory.

use super::*;
use crate::store::{
    Account, AccountStatus, ApiKey, CallRecord, CallSid, CallStatus, Direction, SqliteStore, Store, Timestamp,
};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const AC1: &str = "AC00000000000000000000000000000001";
const AC2: &str = "AC00000000000000000000000000000002";
const TOKEN1: &str = "token-one";
const TOKEN2: &str = "token-two";
const SK1: &str = "SK00000000000000000000000000000001";
const SECRET1: &str = "key-secret-one";

struct Fixture {
    state: Arc<ApiState>,
    store: Arc<dyn Store>,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(name: &str) -> Fixture {
    fixture_with(name, None)
}

fn fixture_with(name: &str, calls: Option<Arc<dyn CallControl>>) -> Fixture {
    let dir = std::env::temp_dir().join(format!("bh-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("db.sqlite")).unwrap());
    let ac1 = AccountSid::parse(AC1).unwrap();
    store.create_account(&Account::new(ac1.clone(), TOKEN1.into())).unwrap();
    store.create_account(&Account::new(AccountSid::parse(AC2).unwrap(), TOKEN2.into())).unwrap();
    let mut key = ApiKey::generate(ac1, "seeded".into());
    key.sid = ApiKeySid::parse(SK1).unwrap();
    key.secret = SECRET1.into();
    store.create_api_key(&key).unwrap();
    Fixture { state: ApiState::new(store.clone(), calls), store, dir }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    json: Value,
}

impl Fixture {
    async fn call(&self, method: &str, path: &str, auth: Option<(&str, &str)>, form: Option<&str>) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some((user, password)) = auth {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request = request.header(header::AUTHORIZATION, format!("Basic {encoded}"));
        }
        let body = match form {
            Some(form) => {
                request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(form.to_string())
            }
            None => Body::empty(),
        };
        let response = router(self.state.clone()).oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        Answer { status, headers, json }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, Some((AC1, TOKEN1)), None).await
    }

    async fn post(&self, path: &str, form: &str) -> Answer {
        self.call("POST", path, Some((AC1, TOKEN1)), Some(form)).await
    }
}

fn path(rest: &str) -> String {
    format!("/2010-04-01/Accounts/{AC1}{rest}")
}

fn assert_error(a: &Answer, status: u16, code: u32) {
    assert_eq!(a.status.as_u16(), status, "{}", a.json);
    assert_eq!(a.json["code"], code, "{}", a.json);
    assert_eq!(a.json["status"], status);
    assert_eq!(a.json["more_info"], format!("https://www.twilio.com/docs/errors/{code}"));
    assert!(a.json["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn authentication() {
    let f = fixture("auth");
    let apps = path("/Applications.json");
    let expected = serde_json::json!({
        "code": 20003, "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401
    });
    for auth in [
        None,
        Some((AC1, "wrong")),
        Some((AC1, "")),
        Some(("nobody", TOKEN1)),
        Some((SK1, TOKEN1)),
        Some((AC2, TOKEN2)),
    ] {
        let a = f.call("GET", &apps, auth, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(a.json, expected, "{auth:?}");
        assert!(a.headers.contains_key(header::WWW_AUTHENTICATE));
    }
    // A header that is not Basic.
    let request = Request::get(&apps).header(header::AUTHORIZATION, "Bearer x").body(Body::empty()).unwrap();
    assert_eq!(router(f.state.clone()).oneshot(request).await.unwrap().status(), StatusCode::UNAUTHORIZED);

    assert_eq!(f.call("GET", &apps, Some((AC1, TOKEN1)), None).await.status, StatusCode::OK);
    assert_eq!(f.call("GET", &apps, Some((SK1, SECRET1)), None).await.status, StatusCode::OK, "API key");
    // The key of account 1 on account 2's path; account 2's own token works there.
    let other = format!("/2010-04-01/Accounts/{AC2}/Applications.json");
    assert_eq!(f.call("GET", &other, Some((SK1, SECRET1)), None).await.json, expected);
    assert_eq!(f.call("GET", &other, Some((AC1, TOKEN1)), None).await.json, expected);
    assert_eq!(f.call("GET", &other, Some((AC2, TOKEN2)), None).await.status, StatusCode::OK);

    // A suspended account cannot authenticate.
    f.store.update_account(&AccountSid::parse(AC2).unwrap(), &|a| a.status = AccountStatus::Suspended).unwrap();
    assert_eq!(f.call("GET", &other, Some((AC2, TOKEN2)), None).await.json, expected);
}

#[tokio::test]
async fn account_fetch() {
    let f = fixture("account");
    let a = f.get(&path(".json")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json["sid"], AC1);
    assert_eq!(a.json["status"], "active");
    assert_eq!(a.json["auth_token"], TOKEN1);
    assert_eq!(a.json["uri"], path(".json"));
    assert!(a.json["date_created"].as_str().unwrap().ends_with(" +0000"));
    let a = f.call("GET", &path(".json"), Some((SK1, SECRET1)), None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.json["auth_token"].is_null(), "a key holder does not see the auth token");
    assert_error(&f.get(&path("")).await, 404, 20404);
}

#[tokio::test]
async fn applications_crud() {
    let f = fixture("apps");
    let a = f
        .post(
            &path("/Applications.json"),
            "FriendlyName=Front+desk&VoiceUrl=https%3A%2F%2Fapp.example%2Fvoice&VoiceMethod=GET\
             &StatusCallback=https%3A%2F%2Fapp.example%2Fstatus&SmsUrl=https%3A%2F%2Fignored.example",
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
    let sid = a.json["sid"].as_str().unwrap().to_string();
    assert!(sid.starts_with("AP"));
    assert_eq!(a.json["account_sid"], AC1);
    assert_eq!(a.json["friendly_name"], "Front desk");
    assert_eq!(a.json["voice_url"], "https://app.example/voice");
    assert_eq!(a.json["voice_method"], "GET");
    assert_eq!(a.json["voice_fallback_url"], Value::Null);
    assert_eq!(a.json["voice_fallback_method"], "POST");
    assert_eq!(a.json["status_callback"], "https://app.example/status");
    assert_eq!(a.json["api_version"], "2010-04-01");
    assert_eq!(a.json["uri"], path(&format!("/Applications/{sid}.json")));

    let one = path(&format!("/Applications/{sid}.json"));
    assert_eq!(f.get(&one).await.json, a.json);
    let u = f.post(&one, "VoiceFallbackUrl=http%3A%2F%2Ffb.example%2Fv&StatusCallback=").await;
    assert_eq!(u.status, StatusCode::OK);
    assert_eq!(u.json["voice_fallback_url"], "http://fb.example/v");
    assert_eq!(u.json["status_callback"], Value::Null, "an empty URL clears it");
    assert_eq!(u.json["voice_url"], "https://app.example/voice", "what is not given stays");

    let unnamed = f.post(&path("/Applications.json"), "").await;
    assert_eq!(unnamed.json["friendly_name"], unnamed.json["sid"]);

    let d = f.call("DELETE", &one, Some((AC1, TOKEN1)), None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert_error(&f.get(&one).await, 404, 20404);
    assert_error(&f.call("DELETE", &one, Some((AC1, TOKEN1)), None).await, 404, 20404);
}

#[tokio::test]
async fn errors_are_twilio_shaped() {
    let f = fixture("errors");
    let missing = path("/Applications/AP0123456789abcdef0123456789abcdef.json");
    let a = f.get(&missing).await;
    assert_error(&a, 404, 20404);
    assert_eq!(a.json["message"], format!("The requested resource {missing} was not found"));
    assert_error(&f.get(&path("/Applications/not-a-sid.json")).await, 404, 20404);
    assert_error(&f.get(&path("/Applications/AP0123456789abcdef0123456789abcdef")).await, 404, 20404);
    assert_error(&f.get(&path("/Recordings.json")).await, 404, 20404);
    assert_error(&f.call("PUT", &path("/Applications.json"), Some((AC1, TOKEN1)), None).await, 405, 20004);
    assert_error(&f.post(&path("/Applications.json"), "VoiceUrl=not+a+url").await, 400, 21205);
    assert_error(&f.post(&path("/Applications.json"), "VoiceMethod=PUT").await, 400, 20001);
    let long = format!("FriendlyName={}", "x".repeat(65));
    assert_error(&f.post(&path("/Applications.json"), &long).await, 400, 20002);
    assert_error(&f.get(&path("/Applications.json?PageSize=0")).await, 400, 20001);

    // A JSON body is refused: Twilio takes forms.
    let request = Request::post(path("/Applications.json"))
        .header(header::AUTHORIZATION, {
            use base64::Engine as _;
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{AC1}:{TOKEN1}")))
        })
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"FriendlyName\":\"x\"}"))
        .unwrap();
    assert_eq!(router(f.state.clone()).oneshot(request).await.unwrap().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn paging_walks_the_list() {
    let f = fixture("paging");
    for i in 0..5 {
        assert_eq!(
            f.post(&path("/Applications.json"), &format!("FriendlyName=app{i}")).await.status,
            StatusCode::CREATED
        );
    }
    let mut names = Vec::new();
    let mut next = Some(path("/Applications.json?PageSize=2"));
    let mut pages = 0;
    while let Some(uri) = next {
        let a = f.get(&uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.json);
        assert_eq!(a.json["page"], pages);
        assert_eq!(a.json["page_size"], 2);
        assert_eq!(a.json["start"], pages * 2);
        let items = a.json["applications"].as_array().unwrap();
        assert_eq!(a.json["end"], pages * 2 + items.len() as u64 - 1);
        assert_eq!(a.json["first_page_uri"], path("/Applications.json?PageSize=2&Page=0"));
        assert_eq!(a.json["previous_page_uri"].is_null(), pages == 0);
        names.extend(items.iter().map(|i| i["friendly_name"].as_str().unwrap().to_string()));
        next = a.json["next_page_uri"].as_str().map(str::to_string);
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["app0", "app1", "app2", "app3", "app4"], "oldest first, each once");

    let a = f.get(&path("/Applications.json?FriendlyName=app3")).await;
    assert_eq!(a.json["applications"].as_array().unwrap().len(), 1);
    assert_eq!(a.json["uri"], path("/Applications.json?FriendlyName=app3&PageSize=50&Page=0"));
    let a = f.get(&path("/Applications.json?Page=7")).await;
    assert_eq!(a.json["applications"], serde_json::json!([]));
    assert!(a.json["next_page_uri"].is_null());
}

#[tokio::test]
async fn incoming_phone_numbers() {
    let f = fixture("numbers");
    let app = f.post(&path("/Applications.json"), "VoiceUrl=http%3A%2F%2F127.0.0.1%2Fv").await.json["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let n = f
        .post(&path("/IncomingPhoneNumbers.json"), &format!("PhoneNumber=%2B15550100001&VoiceApplicationSid={app}"))
        .await;
    assert_eq!(n.status, StatusCode::CREATED, "{}", n.json);
    let sid = n.json["sid"].as_str().unwrap().to_string();
    assert!(sid.starts_with("PN"));
    assert_eq!(n.json["phone_number"], "+15550100001");
    assert_eq!(n.json["voice_application_sid"], app.as_str());
    assert_eq!(n.json["friendly_name"], "+15550100001");
    f.post(&path("/IncomingPhoneNumbers.json"), "PhoneNumber=%2B15550100002&FriendlyName=second").await;

    assert_error(&f.post(&path("/IncomingPhoneNumbers.json"), "PhoneNumber=%2B15550100001").await, 400, 21422);
    assert_error(&f.post(&path("/IncomingPhoneNumbers.json"), "PhoneNumber=555-0100").await, 400, 21421);
    assert_error(&f.post(&path("/IncomingPhoneNumbers.json"), "").await, 400, 21421);
    let missing_app = "VoiceApplicationSid=AP0123456789abcdef0123456789abcdef&PhoneNumber=%2B15550100003";
    assert_error(&f.post(&path("/IncomingPhoneNumbers.json"), missing_app).await, 400, 21218);
    let url = "PhoneNumber=%2B15550100003&VoiceUrl=http%3A%2F%2Fx%2Fv";
    assert_error(&f.post(&path("/IncomingPhoneNumbers.json"), url).await, 400, 21205);
    // Another account cannot claim the number either.
    let theirs = f
        .call(
            "POST",
            &format!("/2010-04-01/Accounts/{AC2}/IncomingPhoneNumbers.json"),
            Some((AC2, TOKEN2)),
            Some("PhoneNumber=%2B15550100001"),
        )
        .await;
    assert_error(&theirs, 400, 21422);

    let list = f.get(&path("/IncomingPhoneNumbers.json?PhoneNumber=%2B15550100001")).await;
    let items = list.json["incoming_phone_numbers"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["sid"], sid.as_str());
    let all = f.get(&path("/IncomingPhoneNumbers.json?PhoneNumber=5550100")).await;
    assert_eq!(all.json["incoming_phone_numbers"].as_array().unwrap().len(), 2);

    // The application is in use: it cannot go.
    let in_use = f.call("DELETE", &path(&format!("/Applications/{app}.json")), Some((AC1, TOKEN1)), None).await;
    assert_error(&in_use, 400, 20001);
    let one = path(&format!("/IncomingPhoneNumbers/{sid}.json"));
    let u = f.post(&one, "VoiceApplicationSid=&FriendlyName=desk").await;
    assert_eq!(u.status, StatusCode::OK);
    assert_eq!(u.json["voice_application_sid"], Value::Null);
    assert_eq!(u.json["friendly_name"], "desk");
    assert_error(&f.post(&one, "VoiceApplicationSid=AP0123456789abcdef0123456789abcdef").await, 400, 21218);
    assert_eq!(f.call("DELETE", &one, Some((AC1, TOKEN1)), None).await.status, StatusCode::NO_CONTENT);
    assert_error(&f.get(&one).await, 404, 20404);
}

#[tokio::test]
async fn keys_and_revocation() {
    let f = fixture("keys");
    let mut revoked = f.state.subscribe_revocations();
    let k = f.post(&path("/Keys.json"), "FriendlyName=ci").await;
    assert_eq!(k.status, StatusCode::CREATED);
    let (sid, secret) = (k.json["sid"].as_str().unwrap().to_string(), k.json["secret"].as_str().unwrap().to_string());
    assert!(sid.starts_with("SK") && secret.len() >= 32);
    assert_eq!(k.json["friendly_name"], "ci");

    let list = f.get(&path("/Keys.json")).await;
    let keys = list.json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.get("secret").is_none()), "the secret is shown once");
    let one = path(&format!("/Keys/{sid}.json"));
    assert_eq!(f.get(&one).await.json["friendly_name"], "ci");
    assert_eq!(f.post(&one, "FriendlyName=ci").await.status, StatusCode::OK);
    let renamed = f.post(&one, "FriendlyName=renamed").await;
    assert_eq!((renamed.status, renamed.json["friendly_name"].as_str()), (StatusCode::OK, Some("renamed")));
    assert!(renamed.json.get("secret").is_none(), "a rename does not show the secret");
    assert_eq!(f.get(&one).await.json["friendly_name"], "renamed");

    // The new key authenticates, but cannot manage keys.
    let apps = path("/Applications.json");
    assert_eq!(f.call("GET", &apps, Some((&sid, &secret)), None).await.status, StatusCode::OK);
    assert_error(&f.call("GET", &path("/Keys.json"), Some((&sid, &secret)), None).await, 401, 20003);
    assert_error(&f.call("DELETE", &path(&format!("/Keys/{SK1}.json")), Some((&sid, &secret)), None).await, 401, 20003);

    // Another account's key is not found through this account.
    let other =
        f.call("POST", &format!("/2010-04-01/Accounts/{AC2}/Keys.json"), Some((AC2, TOKEN2)), Some("")).await.json
            ["sid"]
            .as_str()
            .unwrap()
            .to_string();
    assert_error(&f.get(&path(&format!("/Keys/{other}.json"))).await, 404, 20404);
    assert_error(&f.call("DELETE", &path(&format!("/Keys/{other}.json")), Some((AC1, TOKEN1)), None).await, 404, 20404);

    assert_eq!(f.call("DELETE", &one, Some((AC1, TOKEN1)), None).await.status, StatusCode::NO_CONTENT);
    let event = revoked.try_recv().expect("revocation announced");
    assert_eq!(event.key_sid.as_str(), sid);
    assert_eq!(event.account_sid.as_str(), AC1);
    assert!(revoked.try_recv().is_err(), "one event per deleted key");
    assert_error(&f.call("GET", &apps, Some((&sid, &secret)), None).await, 401, 20003);
}

fn record(from: &str, to: &str, status: CallStatus, at_ms: i64) -> CallRecord {
    let mut c = CallRecord::new(AccountSid::parse(AC1).unwrap(), from.into(), to.into(), Direction::Inbound, status);
    c.date_created = Timestamp::from_unix_ms(at_ms);
    c.date_updated = c.date_created;
    c.start_time = Some(c.date_created);
    if status.is_final() {
        c.end_time = Some(Timestamp::from_unix_ms(at_ms + 61_500));
        c.duration_s = Some(61);
    }
    c
}

#[tokio::test]
async fn calls_list_and_fetch() {
    let f = fixture("calls");
    let day = 1_282_089_600_000; // 2010-08-18 00:00 UTC
    let calls = [
        record("+15550100009", "+15550100001", CallStatus::Completed, day + 1_000),
        record("+15550100009", "+15550100002", CallStatus::Busy, day + 2_000),
        record("+15550100008", "+15550100001", CallStatus::Completed, day + 86_400_000 + 3_000),
    ];
    for c in &calls {
        f.store.insert_call(c).unwrap();
    }
    let list = f.get(&path("/Calls.json")).await;
    let sids: Vec<&str> = list.json["calls"].as_array().unwrap().iter().map(|c| c["sid"].as_str().unwrap()).collect();
    assert_eq!(sids, [calls[2].sid.as_str(), calls[1].sid.as_str(), calls[0].sid.as_str()], "newest first");

    let to = f.get(&path("/Calls.json?To=%2B15550100001&PageSize=1")).await;
    assert_eq!(to.json["calls"][0]["sid"], calls[2].sid.as_str());
    assert_eq!(to.json["next_page_uri"], path("/Calls.json?To=%2B15550100001&PageSize=1&Page=1&PageToken=PT1"));
    let next = f.get(to.json["next_page_uri"].as_str().unwrap()).await;
    assert_eq!(next.json["calls"][0]["sid"], calls[0].sid.as_str());
    assert!(next.json["next_page_uri"].is_null());

    let busy = f.get(&path("/Calls.json?Status=busy")).await;
    assert_eq!(busy.json["calls"].as_array().unwrap().len(), 1);
    let from = f.get(&path("/Calls.json?From=%2B15550100008")).await;
    assert_eq!(from.json["calls"].as_array().unwrap().len(), 1);
    let on_day = f.get(&path("/Calls.json?StartTime=2010-08-18")).await;
    assert_eq!(on_day.json["calls"].as_array().unwrap().len(), 2);
    let after = f.get(&path("/Calls.json?StartTime%3E=2010-08-19")).await;
    assert_eq!(after.json["calls"].as_array().unwrap().len(), 1);
    assert_error(&f.get(&path("/Calls.json?Status=sideways")).await, 400, 20001);

    let one = f.get(&path(&format!("/Calls/{}.json", calls[0].sid))).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json["from"], "+15550100009");
    assert_eq!(one.json["status"], "completed");
    assert_eq!(one.json["direction"], "inbound");
    assert_eq!(one.json["duration"], "61");
    assert_eq!(one.json["start_time"], "Wed, 18 Aug 2010 00:00:01 +0000");
    assert_eq!(one.json["end_time"], "Wed, 18 Aug 2010 00:01:02 +0000");
    assert_eq!(one.json["parent_call_sid"], Value::Null);

    let missing = path("/Calls/CA0123456789abcdef0123456789abcdef.json");
    assert_error(&f.get(&missing).await, 404, 20404);
    // Account 2 sees none of account 1's calls.
    let theirs = f
        .call("GET", &format!("/2010-04-01/Accounts/{AC2}/Calls/{}.json", calls[0].sid), Some((AC2, TOKEN2)), None)
        .await;
    assert_error(&theirs, 404, 20404);
}

#[tokio::test]
async fn creating_calls_without_call_machinery_answers_503() {
    let f = fixture("nocalls");
    let form = "To=%2B15550100001&From=%2B15550100009&Url=http%3A%2F%2F127.0.0.1%2Fv";
    let a = f.post(&path("/Calls.json"), form).await;
    assert_error(&a, 503, 20503);
    assert_eq!(a.json["message"], "outbound calls are not available on this appliance yet");
    // The request is still checked first.
    assert_error(&f.post(&path("/Calls.json"), "From=%2B15550100009&Url=http%3A%2F%2Fx%2Fv").await, 400, 21201);
    // Updating: a missing call is 404, an existing one 503.
    let missing = path("/Calls/CA0123456789abcdef0123456789abcdef.json");
    assert_error(&f.post(&missing, "Status=completed").await, 404, 20404);
    let c = record("+1555", "+1666", CallStatus::InProgress, 1_000);
    f.store.insert_call(&c).unwrap();
    assert_error(&f.post(&path(&format!("/Calls/{}.json", c.sid)), "Status=completed").await, 503, 20503);
}

/// A stand-in for the call layer, to check the plumbing only.
struct Recorder(std::sync::Mutex<Vec<String>>);

impl CallControl for Recorder {
    fn create_call<'a>(&'a self, account: &'a Account, params: CreateCall) -> CallFuture<'a> {
        Box::pin(async move {
            self.0.lock().unwrap().push(format!("create {} {}", params.to, params.timeout_s));
            Ok(CallRecord::new(account.sid.clone(), params.from, params.to, Direction::OutboundApi, CallStatus::Queued))
        })
    }

    fn update_call<'a>(&'a self, account: &'a Account, sid: &'a CallSid, params: UpdateCall) -> CallFuture<'a> {
        Box::pin(async move {
            self.0.lock().unwrap().push(format!("update {sid} {:?}", params.status));
            let mut c =
                CallRecord::new(account.sid.clone(), "a".into(), "b".into(), Direction::Inbound, CallStatus::Completed);
            c.sid = sid.clone();
            Ok(c)
        })
    }
}

#[tokio::test]
async fn call_control_is_reached_with_checked_parameters() {
    let recorder = Arc::new(Recorder(Default::default()));
    let f = fixture_with("withcalls", Some(recorder.clone()));
    let a = f.post(&path("/Calls.json"), "To=client%3Aalice&From=%2B15550100009&Twiml=%3CResponse%2F%3E").await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
    assert_eq!(a.json["direction"], "outbound-api");
    assert_eq!(a.json["status"], "queued");
    let c = record("+1555", "+1666", CallStatus::InProgress, 1_000);
    f.store.insert_call(&c).unwrap();
    let u = f.post(&path(&format!("/Calls/{}.json", c.sid)), "Status=completed").await;
    assert_eq!(u.status, StatusCode::OK);
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec!["create client:alice 60".to_string(), format!("update {} Some(Completed)", c.sid)]
    );
}

/// A fixture whose API reads presence from `routes`.
fn fixture_with_routes(name: &str, routes: Arc<dyn crate::routes::RouteStore>) -> Fixture {
    let mut f = fixture(name);
    f.state = ApiState::with_routes(f.store.clone(), None, routes);
    f
}

fn present(routes: &dyn crate::routes::RouteStore, device: u64, account: &str, identity: &str, status: &str) {
    use crate::routes::{DeviceId, DeviceRoute, PresenceStatus};
    let route = DeviceRoute {
        device: DeviceId(device),
        account: AccountSid::parse(account).unwrap(),
        identity: identity.into(),
        status: PresenceStatus::parse(status).unwrap(),
        incoming: true,
        appliance: routes.appliance().into(),
        registered_at: std::time::SystemTime::UNIX_EPOCH,
    };
    routes.register(route).unwrap();
}

fn identities(a: &Answer) -> Vec<String> {
    a.json["clients"].as_array().unwrap().iter().map(|c| c["identity"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn clients_presence() {
    let routes = Arc::new(crate::routes::InProcessRoutes::new("bh-test", 100));
    let f = fixture_with_routes("clients", routes.clone());
    present(&*routes, 1, AC1, "alice", "busy");
    present(&*routes, 2, AC1, "alice", "available");
    present(&*routes, 3, AC1, "carol", "busy");
    present(&*routes, 4, AC1, "bob", "away");
    present(&*routes, 5, AC1, "dan smith", "available");
    present(&*routes, 6, AC2, "alice", "busy");
    present(&*routes, 7, AC2, "eve", "available");

    let list = f.get(&path("/Clients.json")).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.json);
    assert_eq!(list.json["clients"][0], serde_json::json!({"identity": "alice", "status": "available", "devices": 2}));
    assert_eq!(identities(&list), ["alice", "bob", "carol", "dan smith"], "sorted, account 2's eve not among them");
    assert_eq!(list.json.as_object().unwrap().len(), 9, "the paging envelope and one list key");

    let one = f.get(&path("/Clients/alice.json")).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json, serde_json::json!({"identity": "alice", "status": "available", "devices": 2}));
    let spaced = f.get(&path("/Clients/dan%20smith.json")).await;
    assert_eq!((spaced.json["identity"].as_str(), spaced.json["devices"].as_u64()), (Some("dan smith"), Some(1)));
    let absent = f.get(&path("/Clients/zed.json")).await;
    assert_eq!(absent.status, StatusCode::OK, "absence is an answer");
    assert_eq!(absent.json, serde_json::json!({"identity": "zed", "status": "offline", "devices": 0}));
    assert_error(&f.get(&path("/Clients/alice")).await, 404, 20404);
    assert_error(&f.get(&path("/Clients/.json")).await, 404, 20404);
    assert_error(&f.post(&path("/Clients.json"), "Identity=x").await, 405, 20004);

    // Filters.
    assert_eq!(identities(&f.get(&path("/Clients.json?Identity=carol")).await), ["carol"]);
    assert!(identities(&f.get(&path("/Clients.json?Identity=eve")).await).is_empty(), "account 2's identity");
    assert!(identities(&f.get(&path("/Clients.json?Identity=Alice")).await).is_empty(), "exact");
    let busy = f.get(&path("/Clients.json?Status=busy")).await;
    assert_eq!(identities(&busy), ["carol"], "alice is available through her other device");
    assert_eq!(busy.json["uri"], path("/Clients.json?Status=busy&PageSize=50&Page=0"));
    assert!(identities(&f.get(&path("/Clients.json?Status=offline")).await).is_empty());
    assert_eq!(identities(&f.get(&path("/Clients.json?Identity=alice&Status=available")).await), ["alice"]);
    assert_error(&f.get(&path("/Clients.json?Status=sideways")).await, 400, 20001);
    assert_error(&f.get(&path("/Clients.json?PageSize=0")).await, 400, 20001);

    // Paging walks the list once, filters kept in the page URIs.
    let mut seen = Vec::new();
    let mut next = Some(path("/Clients.json?PageSize=3"));
    while let Some(uri) = next {
        let page = f.get(&uri).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}: {}", page.json);
        seen.extend(identities(&page));
        next = page.json["next_page_uri"].as_str().map(str::to_string);
    }
    assert_eq!(seen, ["alice", "bob", "carol", "dan smith"]);
    let filtered = f.get(&path("/Clients.json?Status=available&PageSize=1")).await;
    assert_eq!(identities(&filtered), ["alice"]);
    assert_eq!(filtered.json["next_page_uri"], path("/Clients.json?Status=available&PageSize=1&Page=1&PageToken=PT1"));
    let second = f.get(filtered.json["next_page_uri"].as_str().unwrap()).await;
    assert_eq!(identities(&second), ["dan smith"]);
    assert!(second.json["next_page_uri"].is_null());

    // A device going away shows at once.
    routes.unregister(crate::routes::DeviceId(2));
    let alice = f.get(&path("/Clients/alice.json")).await;
    assert_eq!((alice.json["status"].as_str(), alice.json["devices"].as_u64()), (Some("busy"), Some(1)));
}

#[tokio::test]
async fn clients_of_another_account_are_invisible() {
    let routes = Arc::new(crate::routes::InProcessRoutes::new("bh-test", 100));
    let f = fixture_with_routes("clients-auth", routes.clone());
    present(&*routes, 1, AC1, "alice", "available");
    present(&*routes, 2, AC2, "alice", "busy");
    present(&*routes, 3, AC2, "eve", "away");
    let list = path("/Clients.json");
    let one = path("/Clients/alice.json");
    for uri in [&list, &one] {
        for auth in [None, Some((AC1, "wrong")), Some((AC2, TOKEN2))] {
            assert_error(&f.call("GET", uri, auth, None).await, 401, 20003);
        }
    }
    // An API key of the account reads its presence.
    let by_key = f.call("GET", &list, Some((SK1, SECRET1)), None).await;
    assert_eq!(identities(&by_key), ["alice"]);
    // Account 2 sees its own alice, never account 1's.
    let theirs = format!("/2010-04-01/Accounts/{AC2}");
    let a2 = f.call("GET", &format!("{theirs}/Clients.json"), Some((AC2, TOKEN2)), None).await;
    assert_eq!(
        a2.json["clients"],
        serde_json::json!([
            {"identity": "alice", "status": "busy", "devices": 1},
            {"identity": "eve", "status": "away", "devices": 1},
        ])
    );
    let a2_alice = f.call("GET", &format!("{theirs}/Clients/alice.json"), Some((AC2, TOKEN2)), None).await;
    assert_eq!(a2_alice.json["status"], "busy");
    let mine = f.get(&one).await;
    assert_eq!((mine.json["status"].as_str(), mine.json["devices"].as_u64()), (Some("available"), Some(1)));
    assert!(identities(&f.get(&path("/Clients.json?Identity=eve")).await).is_empty());
    assert_eq!(f.get(&path("/Clients/eve.json")).await.json["status"], "offline");
}

#[tokio::test]
async fn clients_without_a_route_store_list_nobody() {
    let f = fixture("clients-none");
    let list = f.get(&path("/Clients.json")).await;
    assert_eq!((list.status, list.json["clients"].clone()), (StatusCode::OK, serde_json::json!([])));
    assert_eq!(f.get(&path("/Clients/alice.json")).await.json["status"], "offline");
}
