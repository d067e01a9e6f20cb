//! The webhook client against a real customer app (`apps/customer_app.py`,
//! checking signatures with Twilio's own `RequestValidator`) on 127.0.0.1:
//! signing, redirects, limits, failures and their Twilio codes, TLS trust,
//! notifications; then the TwiML interpreter and the client together.
//!
//! Needs `python3` with the `twilio` package (scripts/test.sh provides it);
//! fails rather than skips without it. No root needed.

use std::time::{Duration, Instant};

use controlplane::instructions::http::{Outcome, WebhookClient, WebhookConfig};
use controlplane::instructions::params::{self, CallFacts, CallStatus, Direction, ProgressEvent};
use controlplane::instructions::{
    CallContext, Fetch, FetchError, FetchId, FetchPurpose, Input, Interpreter, Limits, Method, Output, Webhook,
};
use test_harness::customer_app::{CustomerApp, Route};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Dial>+15550100003</Dial></Response>"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn client(rt: &tokio::runtime::Runtime, config: WebhookConfig) -> WebhookClient {
    let _enter = rt.enter();
    WebhookClient::new(config).unwrap()
}

fn call() -> CallFacts {
    CallFacts {
        call_sid: "CA0123456789abcdef0123456789abcdef".into(),
        account_sid: "AC00000000000000000000000000000001".into(),
        from: "+15550100002".into(),
        to: "+15550100001".into(),
        direction: Direction::Inbound,
        forwarded_from: None,
        caller_name: Some("Zoë O'Brien & Co".into()),
        parent_call_sid: None,
        custom: Vec::new(),
    }
}

fn voice_fetch(url: &str, method: Method) -> Fetch {
    Fetch {
        id: FetchId(1),
        url: url.to_owned(),
        method,
        params: params::voice_request(&call(), CallStatus::Ringing),
        purpose: FetchPurpose::Instructions,
    }
}

fn only_request(app: &CustomerApp, path: &str) -> test_harness::customer_app::AppRequest {
    let mut found = app.requests(path).unwrap();
    assert_eq!(found.len(), 1, "requests on {path}: {found:?}");
    found.remove(0)
}

#[test]
fn signed_post_is_validated_by_twilio_and_returns_the_document() {
    let app = CustomerApp::start(TOKEN).unwrap();
    app.route("/voice", 200, TWIML, Duration::ZERO).unwrap();
    let rt = runtime();
    let client = client(&rt, WebhookConfig::default());

    let (url, body) = rt.block_on(client.fetch(&voice_fetch(&app.url("/voice"), Method::Post), TOKEN));
    assert_eq!(body.as_deref(), Ok(TWIML));
    assert_eq!(url, app.url("/voice"));

    let seen = only_request(&app, "/voice");
    assert!(seen.signature_valid, "{seen:?}");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.param("CallSid"), Some("CA0123456789abcdef0123456789abcdef"));
    assert_eq!(seen.param("CallerName"), Some("Zoë O'Brien & Co"));
    assert_eq!(seen.param("CallStatus"), Some("ringing"));
    assert!(seen.query.is_empty());
    assert_eq!(seen.header("User-Agent"), Some("TwilioProxy/1.1"));
    assert_eq!(seen.header("X-Bridgehead-Agent"), Some(concat!("Bridgehead/", env!("CARGO_PKG_VERSION"))));
    assert_eq!(seen.header("Accept"), Some("*/*"));
    assert_eq!(seen.header("Content-Type"), Some("application/x-www-form-urlencoded"));

    let stats = client.stats().snapshot();
    assert_eq!(stats.requests("instructions", Outcome::Ok), 1);
    assert_eq!(stats.latency_count, 1);
}

#[test]
fn signed_get_is_validated_and_reports_the_url_without_parameters() {
    let app = CustomerApp::start(TOKEN).unwrap();
    app.route("/voice", 200, TWIML, Duration::ZERO).unwrap();
    let rt = runtime();
    let client = client(&rt, WebhookConfig::default());

    let requested = app.url("/voice?tenant=7");
    let (url, body) = rt.block_on(client.fetch(&voice_fetch(&requested, Method::Get), TOKEN));
    assert_eq!(body.as_deref(), Ok(TWIML));
    assert_eq!(url, requested);

    let seen = only_request(&app, "/voice");
    assert!(seen.signature_valid, "{seen:?}");
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.param("tenant"), Some("7"));
    assert_eq!(seen.param("From"), Some("+15550100002"));
    assert!(seen.form.is_empty());
    assert_eq!(seen.header("Content-Type"), None);
}

#[test]
fn wrong_token_is_refused_by_the_app() {
    let app = CustomerApp::start(TOKEN).unwrap();
    app.route("/voice", 200, TWIML, Duration::ZERO).unwrap();
    let rt = runtime();
    let client = client(&rt, WebhookConfig::default());
    let (_, body) = rt.block_on(client.fetch(&voice_fetch(&app.url("/voice"), Method::Post), "another token"));
    assert_eq!(body, Err(FetchError::Status(403)));
    assert!(!only_request(&app, "/voice").signature_valid);
}

#[test]
fn error_statuses_and_bad_answers_map_to_twilio_codes() {
    let app = CustomerApp::start(TOKEN).unwrap();
    app.route("/broken", 500, "<html>Internal Server Error</html>", Duration::ZERO).unwrap();
    app.set_route(&Route::twiml("/json", r#"{"say": "hi"}"#).content_type("application/json")).unwrap();
    app.set_route(&Route::twiml("/big", &format!("<Response>{}</Response>", " ".repeat(70 * 1024)))).unwrap();
    let exactly = format!("<Response>{}</Response>", " ".repeat(64 * 1024 - 21));
    assert_eq!(exactly.len(), 64 * 1024);
    app.set_route(&Route::twiml("/exactly-64k", &exactly).content_type("text/html; charset=utf-8")).unwrap();
    let rt = runtime();
    let client = client(&rt, WebhookConfig::default());
    let get = |path: &str| rt.block_on(client.fetch(&voice_fetch(&app.url(path), Method::Post), TOKEN)).1;

    let broken = get("/broken");
    assert_eq!(broken, Err(FetchError::Status(500)));
    assert_eq!(broken.unwrap_err().code().0, 11200);
    assert_eq!(get("/no-route"), Err(FetchError::Status(404)));

    let json = get("/json");
    assert_eq!(json, Err(FetchError::ContentType("application/json".into())));
    assert_eq!(json.unwrap_err().code().0, 12300);

    let big = get("/big");
    assert_eq!(big, Err(FetchError::BodyTooLarge(64 * 1024)));
    assert_eq!(big.unwrap_err().code().0, 11750);
    assert_eq!(get("/exactly-64k").map(|b| b.len()), Ok(64 * 1024));

    let stats = client.stats().snapshot();
    assert_eq!(stats.requests("instructions", Outcome::HttpStatus), 2);
    assert_eq!(stats.requests("instructions", Outcome::ContentType), 1);
    assert_eq!(stats.requests("instructions", Outcome::BodyTooLarge), 1);
    assert_eq!(stats.requests("instructions", Outcome::Ok), 1);
}

#[test]
fn a_slow_app_times_out_in_bounded_time() {
    let app = CustomerApp::start(TOKEN).unwrap();
    app.route("/slow", 200, TWIML, Duration::from_secs(5)).unwrap();
    let rt = runtime();
    let client = client(&rt, WebhookConfig { timeout: Duration::from_millis(500), ..WebhookConfig::default() });

    let started = Instant::now();
    let (url, body) = rt.block_on(client.fetch(&voice_fetch(&app.url("/slow"), Method::Post), TOKEN));
    let took = started.elapsed();
    assert_eq!(body, Err(FetchError::Timeout(500)));
    assert_eq!(body.unwrap_err().code().0, 11205);
    assert_eq!(url, app.url("/slow"));
    assert!(took >= Duration::from_millis(500) && took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(client.stats().snapshot().requests("instructions", Outcome::Timeout), 1);
}

#[test]
fn redirects_are_followed_and_re_signed() {
    let app = CustomerApp::start(TOKEN).unwrap();
    app.set_route(&Route::redirect("/old", 302, "/new?moved=1")).unwrap();
    app.set_route(&Route::redirect("/keep", 307, &app.url("/new"))).unwrap();
    app.set_route(&Route::redirect("/loop", 301, "/loop")).unwrap();
    app.route("/new", 200, TWIML, Duration::ZERO).unwrap();
    let rt = runtime();
    let client = client(&rt, WebhookConfig { max_redirects: 3, ..WebhookConfig::default() });

    // 302 after a POST: a GET of the new location, signed for it.
    let (url, body) = rt.block_on(client.fetch(&voice_fetch(&app.url("/old"), Method::Post), TOKEN));
    assert_eq!(body.as_deref(), Ok(TWIML));
    assert_eq!(url, app.url("/new?moved=1"));
    assert!(only_request(&app, "/old").signature_valid);
    let new = only_request(&app, "/new");
    assert_eq!((new.method.as_str(), new.signature_valid), ("GET", true), "{new:?}");
    assert_eq!(new.param("moved"), Some("1"));
    assert_eq!(new.param("CallSid"), None);

    // 307 repeats the POST with its parameters, signed for the new URL.
    app.clear().unwrap();
    let (url, body) = rt.block_on(client.fetch(&voice_fetch(&app.url("/keep"), Method::Post), TOKEN));
    assert_eq!((url.as_str(), body.as_deref()), (app.url("/new").as_str(), Ok(TWIML)));
    let new = only_request(&app, "/new");
    assert_eq!((new.method.as_str(), new.signature_valid), ("POST", true), "{new:?}");
    assert_eq!(new.param("CallSid"), Some("CA0123456789abcdef0123456789abcdef"));

    // A loop ends after max_redirects.
    app.clear().unwrap();
    let (_, body) = rt.block_on(client.fetch(&voice_fetch(&app.url("/loop"), Method::Post), TOKEN));
    assert_eq!(body, Err(FetchError::TooManyRedirects));
    assert_eq!(body.unwrap_err().code().0, 11215);
    assert_eq!(app.requests("/loop").unwrap().len(), 4);
}

#[test]
fn unreachable_apps_and_bad_urls() {
    let rt = runtime();
    let client = client(&rt, WebhookConfig { timeout: Duration::from_secs(3), ..WebhookConfig::default() });
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let (_, body) =
        rt.block_on(client.fetch(&voice_fetch(&format!("http://127.0.0.1:{port}/voice"), Method::Post), TOKEN));
    assert_eq!(body, Err(FetchError::ConnectionRefused));
    assert_eq!(body.unwrap_err().code().0, 11202);
    assert!(started.elapsed() < Duration::from_secs(1));

    // `.invalid` never resolves (RFC 6761).
    let (_, body) = rt.block_on(client.fetch(&voice_fetch("http://no-such-app.invalid/voice", Method::Post), TOKEN));
    assert_eq!(body, Err(FetchError::BadHostName("no-such-app.invalid".into())));
    assert_eq!(body.unwrap_err().code().0, 11210);

    let (_, body) = rt.block_on(client.fetch(&voice_fetch("ftp://127.0.0.1/voice", Method::Post), TOKEN));
    assert_eq!(body, Err(FetchError::InvalidUrl("ftp://127.0.0.1/voice".into())));
    assert_eq!(body.unwrap_err().code().0, 11100);
}

/// A self-signed certificate for 127.0.0.1, made by the appliance's own TLS
/// identity code, in a fresh directory.
fn self_signed(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("bh-webhooks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    controlplane::tls::load_or_generate(None, &dir, &["127.0.0.1".to_string()]).unwrap();
    (dir.join("tls/cert.pem"), dir.join("tls/key.pem"))
}

#[test]
fn tls_trusts_public_roots_a_configured_ca_or_anything_when_told() {
    let (cert, key) = self_signed("tls");
    let app = CustomerApp::start_with(None, [127, 0, 0, 1].into(), TOKEN, Some((&cert, &key))).unwrap();
    app.route("/voice", 200, TWIML, Duration::ZERO).unwrap();
    let url = app.url("/voice");
    assert!(url.starts_with("https://"), "{url}");
    let rt = runtime();

    let strict = client(&rt, WebhookConfig::default());
    let (_, body) = rt.block_on(strict.fetch(&voice_fetch(&url, Method::Post), TOKEN));
    let Err(e @ FetchError::Tls(_)) = body else { panic!("a self-signed certificate was accepted: {body:?}") };
    assert_eq!(e.code().0, 11220);

    let extra_ca = WebhookConfig { extra_ca_pem: Some(std::fs::read(&cert).unwrap()), ..WebhookConfig::default() };
    let with_ca = client(&rt, extra_ca);
    let (_, body) = rt.block_on(with_ca.fetch(&voice_fetch(&url, Method::Post), TOKEN));
    assert_eq!(body.as_deref(), Ok(TWIML));

    let lab = client(&rt, WebhookConfig { accept_invalid_certs: true, ..WebhookConfig::default() });
    let (_, body) = rt.block_on(lab.fetch(&voice_fetch(&url, Method::Get), TOKEN));
    assert_eq!(body.as_deref(), Ok(TWIML));

    let seen = app.requests("/voice").unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|r| r.signature_valid && r.url.starts_with("https://")), "{seen:?}");
    let _ = std::fs::remove_dir_all(cert.parent().unwrap().parent().unwrap());
}

fn status_callback(url: &str, sequence_number: u32) -> Fetch {
    let event = ProgressEvent {
        status: CallStatus::Ringing,
        duration_s: None,
        at: std::time::SystemTime::now(),
        sequence_number,
    };
    Fetch {
        id: FetchId(100 + u64::from(sequence_number)),
        url: url.to_owned(),
        method: Method::Post,
        params: params::status_callback(&call(), &event),
        purpose: FetchPurpose::Notification,
    }
}

#[test]
fn notifications_arrive_signed() {
    let app = CustomerApp::start(TOKEN).unwrap();
    app.route("/status", 204, "", Duration::ZERO).unwrap();
    let rt = runtime();
    let client = client(&rt, WebhookConfig::default());

    for n in 0..3 {
        assert!(client.notify(status_callback(&app.url("/status"), n), TOKEN));
    }
    let seen = app.wait_requests("/status", 3, Duration::from_secs(10)).unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|r| r.signature_valid), "{seen:?}");
    let mut numbers: Vec<&str> = seen.iter().filter_map(|r| r.param("SequenceNumber")).collect();
    numbers.sort();
    assert_eq!(numbers, ["0", "1", "2"]);
    let stats = test_harness::settle(
        Duration::from_secs(5),
        || Ok(client.stats().snapshot()),
        |s| s.requests("notification", Outcome::Ok) == 3,
    )
    .unwrap();
    assert_eq!(stats.requests("notification", Outcome::Ok), 3);
    assert_eq!(stats.notifications_dropped, 0);
}

#[test]
fn a_full_notification_queue_drops_without_blocking() {
    let app = CustomerApp::start(TOKEN).unwrap();
    app.route("/slow-status", 200, "", Duration::from_secs(2)).unwrap();
    let rt = runtime();
    let client = client(&rt, WebhookConfig { notify_queue: 2, notify_concurrency: 1, ..WebhookConfig::default() });

    let started = Instant::now();
    let accepted = (0..50).filter(|&n| client.notify(status_callback(&app.url("/slow-status"), n), TOKEN)).count();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(100), "notify blocked for {took:?}");
    // Two wait in the queue, at most one more was already taken by the worker.
    assert!((2..=3).contains(&accepted), "accepted {accepted}");
    assert_eq!(client.stats().notifications_dropped(), (50 - accepted) as u64);
    // The accepted ones are still delivered.
    let seen = app.wait_requests("/slow-status", accepted, Duration::from_secs(15)).unwrap();
    assert_eq!(seen.len(), accepted);
}

/// Drives an interpreter with the real client until it is done; returns the
/// outputs other than fetches.
fn run_call(rt: &tokio::runtime::Runtime, client: &WebhookClient, ctx: CallContext) -> Vec<Output> {
    let mut it = Interpreter::new(ctx);
    let mut outputs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !it.is_done() {
        assert!(Instant::now() < deadline, "the call did not end: {outputs:?}");
        let Some(output) = it.poll_output() else { panic!("waiting for nothing: {outputs:?}") };
        match output {
            Output::Fetch(fetch) if fetch.purpose == FetchPurpose::Instructions => {
                let input = rt.block_on(client.document(&fetch, TOKEN));
                it.handle_input(Instant::now(), input);
            }
            Output::Fetch(fetch) => {
                client.notify(fetch, TOKEN);
            }
            Output::StartDial(_) => panic!("no dialling in this test"),
            other => outputs.push(other),
        }
    }
    outputs.extend(std::iter::from_fn(|| it.poll_output()));
    outputs
}

fn context(app: &CustomerApp) -> CallContext {
    CallContext {
        call: call(),
        voice: Webhook { url: app.url("/voice"), method: Method::Post },
        fallback: Some(Webhook { url: app.url("/fallback"), method: Method::Post }),
        answered: false,
        limits: Limits::default(),
    }
}

#[test]
fn interpreter_uses_the_fallback_then_follows_a_redirect() {
    let app = CustomerApp::start(TOKEN).unwrap();
    app.route("/voice", 500, "oops", Duration::ZERO).unwrap();
    app.route(
        "/fallback",
        200,
        r#"<Response><Redirect method="GET">next?step=2</Redirect></Response>"#,
        Duration::ZERO,
    )
    .unwrap();
    app.route("/next", 200, "<Response><Pause length=\"0\"/><Hangup/></Response>", Duration::ZERO).unwrap();
    let rt = runtime();
    let client = client(&rt, WebhookConfig::default());

    let outputs = run_call(&rt, &client, context(&app));
    let [Output::Error(error), Output::Answer, Output::Hangup, Output::Done] = outputs.as_slice() else {
        panic!("{outputs:?}")
    };
    assert_eq!(error.code.0, 11200);
    assert_eq!(error.url.as_deref(), Some(app.url("/voice").as_str()));

    let voice = only_request(&app, "/voice");
    assert!(voice.signature_valid);
    let fallback = only_request(&app, "/fallback");
    assert!(fallback.signature_valid, "{fallback:?}");
    assert_eq!(fallback.param("ErrorCode"), Some("11200"));
    assert_eq!(fallback.param("ErrorUrl"), Some(app.url("/voice").as_str()));
    assert_eq!(fallback.param("CallSid"), voice.param("CallSid"));
    let next = only_request(&app, "/next");
    assert_eq!((next.method.as_str(), next.signature_valid), ("GET", true), "{next:?}");
    assert_eq!(next.param("step"), Some("2"));
    assert_eq!(next.param("CallStatus"), Some("ringing"));
}

#[test]
fn interpreter_ends_the_call_when_voice_and_fallback_fail() {
    let app = CustomerApp::start(TOKEN).unwrap();
    app.route("/voice", 200, TWIML, Duration::from_secs(5)).unwrap();
    app.set_route(&Route::twiml("/fallback", "<Response><Hangup/>")).unwrap();
    let rt = runtime();
    let client = client(&rt, WebhookConfig { timeout: Duration::from_millis(400), ..WebhookConfig::default() });

    let started = Instant::now();
    let outputs = run_call(&rt, &client, context(&app));
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let codes: Vec<u32> =
        outputs.iter().filter_map(|o| if let Output::Error(e) = o { Some(e.code.0) } else { None }).collect();
    assert_eq!(codes, [11205, 12100], "{outputs:?}");
    assert_eq!(outputs[outputs.len() - 2..], [Output::Hangup, Output::Done]);
    assert_eq!(only_request(&app, "/fallback").param("ErrorCode"), Some("11205"));
}

#[test]
fn input_document_carries_the_fetch_id() {
    let app = CustomerApp::start(TOKEN).unwrap();
    app.route("/voice", 200, TWIML, Duration::ZERO).unwrap();
    let rt = runtime();
    let client = client(&rt, WebhookConfig::default());
    let mut fetch = voice_fetch(&app.url("/voice"), Method::Post);
    fetch.id = FetchId(42);
    let input = rt.block_on(client.document(&fetch, TOKEN));
    assert_eq!(input, Input::Document { fetch: FetchId(42), url: app.url("/voice"), body: Ok(TWIML.to_owned()) });
}
