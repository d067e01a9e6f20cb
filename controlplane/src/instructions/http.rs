//! The HTTP shell of the instructions: carries out the interpreter's
//! [`Output::Fetch`](super::Output::Fetch) requests against the customer's
//! web application and hands back what came of them.
//!
//! ```text
//!   Output::Fetch ──▶ WebhookClient::fetch ──▶ (final URL, Result<document, FetchError>) ──▶ Input::Document
//!                         │ sign (X-Twilio-Signature), follow redirects (re-signed),
//!                         │ one deadline for the whole exchange, body capped at 64 KiB
//!   Notification ───▶ WebhookClient::notify ──▶ bounded queue ──▶ worker (N in flight), answer ignored
//!                         └ queue full: dropped and counted, the caller never waits
//!   WebhookStats: outcomes by purpose and kind, latency histogram ──▶ WebhookCollector (Prometheus)
//! ```
//!
//! `http://` URLs go through [`plain`]: HTTP/1.1 on kept-alive
//! connections, read and written by the task that asks. `https://` (and
//! URLs carrying credentials) go through a [`reqwest`] client on rustls
//! with the *ring* provider (see docs/decisions.md), trusting the Mozilla
//! roots of `webpki-roots`, plus an extra CA when configured. Accepting any
//! certificate is possible for lab apps on self-signed certificates, and
//! off unless configured.
//!
//! Requests look like Twilio's: `User-Agent: TwilioProxy/1.1` (some apps
//! check it), `Accept: */*`, form-encoded POST bodies or GET query strings,
//! each signed for the exact URL requested. `X-Bridgehead-Agent` names the
//! firmware and its version.

use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::sync::{mpsc, Semaphore};

use super::fetch::{resolve_url, Fetch, FetchError, FetchPurpose};
use super::interpreter::Input;
use super::method::Method;
use super::signature;

mod plain;

/// What Twilio sends as `User-Agent`; apps sometimes check for it.
pub const USER_AGENT: &str = "TwilioProxy/1.1";
/// The header that names the firmware that sent a request.
pub const AGENT_HEADER: &str = "X-Bridgehead-Agent";
const AGENT: &str = concat!("Bridgehead/", env!("CARGO_PKG_VERSION"));
const FORM: &str = "application/x-www-form-urlencoded";

/// How webhooks are requested. Every default is Twilio's behaviour unless
/// said otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The whole exchange, connecting and redirects included, must end
    /// within this (Twilio: 15 s, then error 11205).
    pub timeout: Duration,
    /// HTTP redirects followed per request; one more is error 11215.
    /// Twilio does not publish its limit; 10 is what browsers and curl
    /// allow in practice, far more than any sane app needs.
    pub max_redirects: u32,
    /// Largest document accepted (Twilio: 64 KiB, then error 11750).
    pub max_body: usize,
    /// PEM certificates trusted beyond the public roots (a lab CA).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Accept any server certificate. Only for test and lab apps on
    /// self-signed certificates: it gives away the app's authenticity.
    pub accept_invalid_certs: bool,
    /// Notifications waiting to be sent; more are dropped and counted, so a
    /// slow or dead status-callback server can never hold calls up. 10,000
    /// is several seconds of callbacks at the appliance's call rate.
    pub notify_queue: usize,
    /// Notifications in flight at once.
    pub notify_concurrency: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            max_redirects: 10,
            max_body: 64 * 1024,
            extra_ca_pem: None,
            accept_invalid_certs: false,
            notify_queue: 10_000,
            notify_concurrency: 64,
        }
    }
}

/// Why a [`WebhookClient`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WebhookClientError {
    #[error("the webhook client needs a Tokio runtime (for its notification worker)")]
    NoRuntime,
    #[error("extra CA certificates: {0}")]
    ExtraCa(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Sends webhook requests. Cheap to clone; clones share connections, the
/// notification queue and the statistics.
#[derive(Clone)]
pub struct WebhookClient {
    core: Arc<Core>,
    notifications: mpsc::Sender<Notification>,
}

/// What the notification worker shares with the clients. It holds no
/// sender, so the worker ends once the last client is gone and the queue
/// is drained.
struct Core {
    http: reqwest::Client,
    plain: plain::Pool,
    config: WebhookConfig,
    stats: Arc<WebhookStats>,
}

struct Notification {
    fetch: Fetch,
    auth_token: String,
}

impl WebhookClient {
    /// Builds the client and starts its notification worker on the current
    /// Tokio runtime.
    pub fn new(config: WebhookConfig) -> Result<WebhookClient, WebhookClientError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| WebhookClientError::NoRuntime)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(&config)?)
            // Redirects are followed here, to re-sign each hop.
            .redirect(reqwest::redirect::Policy::none())
            // Webhooks go straight to the app, whatever the environment says.
            .no_proxy()
            .tcp_nodelay(true)
            .build()?;
        let (tx, rx) = mpsc::channel(config.notify_queue.max(1));
        let concurrency = config.notify_concurrency.max(1);
        let core = Arc::new(Core { http, plain: plain::Pool::default(), config, stats: Arc::default() });
        runtime.spawn(notification_worker(core.clone(), rx, concurrency));
        Ok(WebhookClient { core, notifications: tx })
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.core.config
    }

    pub fn stats(&self) -> &Arc<WebhookStats> {
        &self.core.stats
    }

    /// A Prometheus collector over this client's statistics.
    pub fn collector(&self) -> WebhookCollector {
        WebhookCollector { stats: self.core.stats.clone() }
    }

    /// Requests `fetch` signed with the account's `auth_token`; returns the
    /// URL the answer finally came from (after redirects, before GET
    /// parameters were added: the base for relative URLs in the document)
    /// and the document or why there is none. Never takes longer than the
    /// configured timeout.
    pub async fn fetch(&self, fetch: &Fetch, auth_token: &str) -> (String, Result<String, FetchError>) {
        self.core.fetch(fetch, auth_token).await
    }

    /// [`fetch`](Self::fetch), answered as the interpreter's input.
    pub async fn document(&self, fetch: &Fetch, auth_token: &str) -> Input {
        let (url, body) = self.fetch(fetch, auth_token).await;
        Input::Document { fetch: fetch.id, url, body }
    }

    /// Queues a request whose answer nobody waits for (status callbacks,
    /// `action` notifications) and returns at once. Not retried, as Twilio
    /// does not retry them. Returns false when the queue was full and the
    /// request was dropped (counted in [`WebhookStats`]).
    pub fn notify(&self, fetch: Fetch, auth_token: &str) -> bool {
        let job = Notification { fetch, auth_token: auth_token.to_owned() };
        match self.notifications.try_send(job) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(job)) | Err(mpsc::error::TrySendError::Closed(job)) => {
                let dropped = self.core.stats.notifications_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Once per power of two, so a flood cannot flood the log.
                if dropped.is_power_of_two() {
                    tracing::warn!(url = %job.fetch.url, dropped, "notification queue full: webhook dropped");
                }
                false
            }
        }
    }
}

async fn notification_worker(core: Arc<Core>, mut rx: mpsc::Receiver<Notification>, concurrency: usize) {
    let slots = Arc::new(Semaphore::new(concurrency));
    loop {
        // Take a slot before a job, so waiting jobs stay in the bounded queue.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(job) = rx.recv().await else {
            return;
        };
        let core = core.clone();
        tokio::spawn(async move {
            let (url, result) = core.fetch(&job.fetch, &job.auth_token).await;
            if let Err(e) = result {
                tracing::info!(%url, error = %e, code = e.code().0, "notification webhook failed");
            }
            drop(slot);
        });
    }
}

impl Core {
    async fn fetch(&self, fetch: &Fetch, auth_token: &str) -> (String, Result<String, FetchError>) {
        let started = Instant::now();
        let mut final_url = fetch.url.clone();
        let timeout = self.config.timeout;
        let result = match tokio::time::timeout(timeout, self.exchange(fetch, auth_token, &mut final_url)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(timeout.as_millis().try_into().unwrap_or(u64::MAX))),
        };
        self.stats.record(fetch.purpose, &result, started.elapsed());
        (final_url, result)
    }

    /// Requests, follows redirects and reads the document; `final_url` is
    /// kept up to date so a timeout still reports the URL it happened on.
    async fn exchange(&self, fetch: &Fetch, auth_token: &str, final_url: &mut String) -> Result<String, FetchError> {
        let mut method = fetch.method;
        let mut params: &[(String, String)] = &fetch.params;
        let mut redirects = 0;
        loop {
            let url = final_url.clone();
            let host = check_url(&url)?;
            let signed = signature::sign_request(auth_token, method, &url, params);
            let response = self.send(method, &signed, &host).await?;
            let status = response.status();

            if (300..400).contains(&status) {
                if let Some(location) = response.location() {
                    if redirects >= self.config.max_redirects {
                        return Err(FetchError::TooManyRedirects);
                    }
                    redirects += 1;
                    let location = location.ok_or_else(|| FetchError::InvalidUrl(url.clone()))?;
                    *final_url = resolve_url(&url, &location).map_err(|e| FetchError::InvalidUrl(e.reference))?;
                    // 307/308 repeat the request; the others turn it into a
                    // plain GET of the new location, as browsers do.
                    if !matches!(status, 307 | 308) {
                        method = Method::Get;
                        params = &[];
                    }
                    continue;
                }
            }
            if !(200..300).contains(&status) {
                return Err(FetchError::Status(status));
            }
            let limit = self.config.max_body;
            if fetch.purpose == FetchPurpose::Notification {
                // Nobody reads the answer. A small one is read all the same
                // so that a kept-alive connection can carry the next request;
                // otherwise dropping it closes the connection, which is fine.
                if let Answer::Plain(answer) = response {
                    if answer.content_length.is_some_and(|n| n <= limit as u64) {
                        let _ = answer.body(limit).await;
                    }
                }
                return Ok(String::new());
            }
            if let Some(content_type) = response.content_type() {
                if !is_document_type(&content_type) {
                    return Err(FetchError::ContentType(content_type));
                }
            }
            if response.content_length().is_some_and(|n| n > limit as u64) {
                return Err(FetchError::BodyTooLarge(limit));
            }
            let body = response.body(limit, &host, self.config.timeout).await?;
            // Not UTF-8 (a Latin-1 app): the odd characters become U+FFFD
            // and the XML parser decides whether the document still stands.
            return Ok(match String::from_utf8(body) {
                Ok(text) => text,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            });
        }
    }
}

impl Core {
    /// Sends one request: plain HTTP through [`plain`], the rest through reqwest.
    async fn send(
        &self,
        method: Method,
        signed: &signature::SignedRequest,
        host: &str,
    ) -> Result<Answer<'_>, FetchError> {
        let headers = [
            ("User-Agent", USER_AGENT),
            (AGENT_HEADER, AGENT),
            ("Accept", "*/*"),
            (signature::HEADER, signed.signature.as_str()),
            ("Content-Type", FORM),
        ];
        let parsed = url::Url::parse(&signed.url).map_err(|_| FetchError::InvalidUrl(signed.url.clone()))?;
        if parsed.scheme() == "http" && parsed.username().is_empty() && parsed.password().is_none() {
            if let (Some(target_host), Some(port)) = (parsed.host(), parsed.port_or_known_default()) {
                let request = plain::Request {
                    method: method.as_str(),
                    authority: &parsed[url::Position::BeforeHost..url::Position::AfterPort],
                    target: &parsed[url::Position::BeforePath..url::Position::AfterQuery],
                    host: target_host,
                    port,
                    // Content-Type only with a body (POST).
                    headers: if signed.body.is_some() { &headers } else { &headers[..4] },
                    body: signed.body.as_deref().map(str::as_bytes),
                };
                return self.plain.send(&request).await.map(Answer::Plain);
            }
        }
        let mut request = self
            .http
            .request(reqwest_method(method), &signed.url)
            .header(reqwest::header::USER_AGENT, USER_AGENT)
            .header(AGENT_HEADER, AGENT)
            .header(reqwest::header::ACCEPT, "*/*")
            .header(signature::HEADER, &signed.signature);
        if let Some(body) = &signed.body {
            request = request.header(reqwest::header::CONTENT_TYPE, FORM).body(body.clone());
        }
        let response = request.send().await.map_err(|e| classify(&e, host, self.config.timeout))?;
        Ok(Answer::Reqwest(response))
    }
}

/// An answer whose head has arrived, from either client.
enum Answer<'p> {
    Plain(plain::Answer<'p>),
    Reqwest(reqwest::Response),
}

impl Answer<'_> {
    fn status(&self) -> u16 {
        match self {
            Answer::Plain(a) => a.status,
            Answer::Reqwest(r) => r.status().as_u16(),
        }
    }

    /// `Location`, if any: `Some(None)` when it is not text.
    fn location(&self) -> Option<Option<String>> {
        match self {
            Answer::Plain(a) => a.location.clone().map(Some),
            Answer::Reqwest(r) => {
                r.headers().get(reqwest::header::LOCATION).map(|l| l.to_str().ok().map(str::to_owned))
            }
        }
    }

    fn content_type(&self) -> Option<String> {
        match self {
            Answer::Plain(a) => a.content_type.clone(),
            Answer::Reqwest(r) => r
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .map(|c| String::from_utf8_lossy(c.as_bytes()).into_owned()),
        }
    }

    fn content_length(&self) -> Option<u64> {
        match self {
            Answer::Plain(a) => a.content_length,
            Answer::Reqwest(r) => r.content_length(),
        }
    }

    async fn body(self, limit: usize, host: &str, timeout: Duration) -> Result<Vec<u8>, FetchError> {
        match self {
            Answer::Plain(a) => a.body(limit).await,
            Answer::Reqwest(mut response) => {
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e, host, timeout))? {
                    if body.len() + chunk.len() > limit {
                        return Err(FetchError::BodyTooLarge(limit));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(body)
            }
        }
    }
}

/// The host of an http(s) URL, or why it cannot be requested.
fn check_url(url: &str) -> Result<String, FetchError> {
    let parsed = url::Url::parse(url).map_err(|_| FetchError::InvalidUrl(url.to_owned()))?;
    match (parsed.scheme(), parsed.host_str()) {
        ("http" | "https", Some(host)) => Ok(host.to_owned()),
        _ => Err(FetchError::InvalidUrl(url.to_owned())),
    }
}

fn reqwest_method(method: Method) -> reqwest::Method {
    match method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
    }
}

/// Content types Twilio reads TwiML from: XML of any kind, and the
/// `text/html` and `text/plain` that many frameworks send by default.
fn is_document_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(essence.as_str(), "text/xml" | "application/xml" | "text/html" | "text/plain" | "")
        || essence.ends_with("+xml")
}

/// Names what went wrong with a request, looking through the error's causes.
fn classify(error: &reqwest::Error, host: &str, timeout: Duration) -> FetchError {
    if error.is_timeout() {
        return FetchError::Timeout(timeout.as_millis().try_into().unwrap_or(u64::MAX));
    }
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return FetchError::Tls(tls.to_string());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return FetchError::ConnectionRefused;
            }
            // An io::Error's `source()` skips the error it wraps, and the
            // TLS layers wrap rustls errors in io::Errors (twice): step in.
            if let Some(inner) = io.get_ref() {
                cause = Some(inner);
                continue;
            }
        }
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    // hyper-util's resolver says "dns error"; there is no type to match.
    if text.contains("dns error") {
        return FetchError::BadHostName(host.to_owned());
    }
    FetchError::Connection(text)
}

/// rustls with the ring provider, the public roots and the configured extras.
/// The TLS client configuration of `config` (also used for the SIP TLS
/// connections we open, with the same trust).
pub(crate) fn tls_config(config: &WebhookConfig) -> Result<rustls::ClientConfig, WebhookClientError> {
    client_config(verifier(config)?)
}

/// The client configuration of SIP over TLS: certificates as for webhooks,
/// and the fleet's appliances' own by their announced SHA-256 (they are
/// self-signed or from a private CA; the sealed gossip vouches for them).
pub(crate) fn sip_tls_config(
    config: &WebhookConfig,
    fleet: crate::tls::FleetCerts,
) -> Result<rustls::ClientConfig, WebhookClientError> {
    let mut tls = client_config(Arc::new(crate::tls::FleetVerifier::new(fleet, verifier(config)?)))?;
    // A resumed session skips the verifier: an appliance that left the
    // fleet (its certificate no longer announced) must not be reached on
    // an old ticket. Every connection checks the certificate afresh.
    tls.resumption = rustls::client::Resumption::disabled();
    Ok(tls)
}

fn client_config(verifier: Arc<dyn ServerCertVerifier>) -> Result<rustls::ClientConfig, WebhookClientError> {
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
        .with_safe_default_protocol_versions()?;
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

/// How server certificates are checked: against the web's roots (and
/// `extra_ca_pem`), or not at all with `accept_invalid_certs`.
fn verifier(config: &WebhookConfig) -> Result<Arc<dyn ServerCertVerifier>, WebhookClientError> {
    let provider = crate::tls::crypto_provider();
    if config.accept_invalid_certs {
        tracing::warn!("TLS certificates are not checked (accept_invalid_certs): for test and lab peers only");
        return Ok(Arc::new(AnyCertificate { algorithms: provider.signature_verification_algorithms }));
    }
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(pem) = &config.extra_ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| WebhookClientError::ExtraCa(e.to_string()))?;
            roots.add(cert).map_err(|e| WebhookClientError::ExtraCa(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(WebhookClientError::ExtraCa("no certificate in the PEM".into()));
        }
    }
    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map(|v| v as Arc<dyn ServerCertVerifier>)
        .map_err(|e| WebhookClientError::ExtraCa(e.to_string()))
}

/// Accepts any certificate chain; handshake signatures are still checked,
/// so the peer at least holds the key of the certificate it showed.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How a request ended, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    Timeout,
    ConnectionRefused,
    Connection,
    BadHostName,
    Tls,
    TooManyRedirects,
    HttpStatus,
    BodyTooLarge,
    ContentType,
    InvalidUrl,
}

impl Outcome {
    pub const ALL: [Outcome; 11] = [
        Outcome::Ok,
        Outcome::Timeout,
        Outcome::ConnectionRefused,
        Outcome::Connection,
        Outcome::BadHostName,
        Outcome::Tls,
        Outcome::TooManyRedirects,
        Outcome::HttpStatus,
        Outcome::BodyTooLarge,
        Outcome::ContentType,
        Outcome::InvalidUrl,
    ];

    pub fn of<T>(result: &Result<T, FetchError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(FetchError::Timeout(_)) => Outcome::Timeout,
            Err(FetchError::ConnectionRefused) => Outcome::ConnectionRefused,
            Err(FetchError::Connection(_)) => Outcome::Connection,
            Err(FetchError::BadHostName(_)) => Outcome::BadHostName,
            Err(FetchError::Tls(_)) => Outcome::Tls,
            Err(FetchError::TooManyRedirects) => Outcome::TooManyRedirects,
            Err(FetchError::Status(_)) => Outcome::HttpStatus,
            Err(FetchError::BodyTooLarge(_)) => Outcome::BodyTooLarge,
            Err(FetchError::ContentType(_)) => Outcome::ContentType,
            Err(FetchError::InvalidUrl(_)) => Outcome::InvalidUrl,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::ConnectionRefused => "connection_refused",
            Outcome::Connection => "connection",
            Outcome::BadHostName => "bad_host_name",
            Outcome::Tls => "tls",
            Outcome::TooManyRedirects => "too_many_redirects",
            Outcome::HttpStatus => "http_status",
            Outcome::BodyTooLarge => "body_too_large",
            Outcome::ContentType => "content_type",
            Outcome::InvalidUrl => "invalid_url",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

fn purpose_index(purpose: FetchPurpose) -> usize {
    match purpose {
        FetchPurpose::Instructions => 0,
        FetchPurpose::Notification => 1,
    }
}

fn purpose_str(index: usize) -> &'static str {
    ["instructions", "notification"][index]
}

/// Upper bounds of the latency histogram, in seconds: from a fast local
/// app (a few ms) to Twilio's 15 s timeout.
pub const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0];

/// Webhook counters, updated with relaxed atomics by every request and read
/// at scrape time.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// [purpose][outcome]
    outcomes: [[AtomicU64; Outcome::ALL.len()]; 2],
    /// Non-cumulative counts per bucket of [`LATENCY_BUCKETS`], then +Inf;
    /// instructions fetches only (what a caller waits for).
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    notifications_dropped: AtomicU64,
}

/// A copy of [`WebhookStats`] at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookStatsSnapshot {
    /// (purpose, outcome, count), every combination, zeros included.
    pub requests: Vec<(&'static str, Outcome, u64)>,
    /// Cumulative (upper bound in seconds, count), ending with +Inf.
    pub latency_buckets: Vec<(f64, u64)>,
    pub latency_count: u64,
    pub latency_sum_s: f64,
    pub notifications_dropped: u64,
}

impl WebhookStatsSnapshot {
    /// Requests of `purpose` ("instructions", "notification") that ended in `outcome`.
    pub fn requests(&self, purpose: &str, outcome: Outcome) -> u64 {
        self.requests.iter().find(|(p, o, _)| *p == purpose && *o == outcome).map_or(0, |(_, _, n)| *n)
    }
}

impl WebhookStats {
    fn record<T>(&self, purpose: FetchPurpose, result: &Result<T, FetchError>, elapsed: Duration) {
        self.outcomes[purpose_index(purpose)][Outcome::of(result).index()].fetch_add(1, Ordering::Relaxed);
        if purpose == FetchPurpose::Instructions {
            let seconds = elapsed.as_secs_f64();
            let bucket = LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(LATENCY_BUCKETS.len());
            self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
            let micros = elapsed.as_micros().try_into().unwrap_or(u64::MAX);
            self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
        }
    }

    pub fn notifications_dropped(&self) -> u64 {
        self.notifications_dropped.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> WebhookStatsSnapshot {
        let mut requests = Vec::new();
        for (p, row) in self.outcomes.iter().enumerate() {
            for outcome in Outcome::ALL {
                requests.push((purpose_str(p), outcome, row[outcome.index()].load(Ordering::Relaxed)));
            }
        }
        let mut latency_buckets = Vec::new();
        let mut cumulative = 0;
        for (i, count) in self.latency_buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            latency_buckets.push((LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), cumulative));
        }
        WebhookStatsSnapshot {
            requests,
            latency_buckets,
            latency_count: cumulative,
            latency_sum_s: self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            notifications_dropped: self.notifications_dropped(),
        }
    }
}

/// Exposes [`WebhookStats`] to Prometheus (register it with
/// `Registry::register_collector`):
/// `webhook_requests_total{purpose, outcome}`, `webhook_duration_seconds`
/// (instructions fetches) and `webhook_notifications_dropped_total`.
#[derive(Debug)]
pub struct WebhookCollector {
    stats: Arc<WebhookStats>,
}

impl Collector for WebhookCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.stats.snapshot();
        {
            let mut family = encoder.encode_descriptor(
                "webhook_requests",
                "Webhook requests to customer apps, by purpose and outcome",
                None,
                MetricType::Counter,
            )?;
            for (purpose, outcome, count) in &snapshot.requests {
                let labels = [("purpose", *purpose), ("outcome", outcome.as_str())];
                ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "webhook_duration_seconds",
                "Time to get an instructions document (or fail to), redirects included",
                None,
                MetricType::Histogram,
            )?;
            // The encoder wants per-bucket counts and accumulates them itself.
            let mut previous = 0;
            let buckets: Vec<(f64, u64)> = snapshot
                .latency_buckets
                .iter()
                .map(|&(bound, cumulative)| {
                    let count = cumulative - previous;
                    previous = cumulative;
                    (bound, count)
                })
                .collect();
            metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                snapshot.latency_sum_s,
                snapshot.latency_count,
                &buckets,
                None,
            )?;
        }
        let dropped = encoder.encode_descriptor(
            "webhook_notifications_dropped",
            "Notification webhooks dropped because their queue was full",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(snapshot.notifications_dropped).encode(dropped)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_content_types() {
        for ok in ["text/xml", "application/xml; charset=utf-8", "TEXT/HTML", "text/plain", "application/rss+xml"] {
            assert!(is_document_type(ok), "{ok}");
        }
        for bad in ["application/json", "audio/mpeg", "image/png"] {
            assert!(!is_document_type(bad), "{bad}");
        }
    }

    #[test]
    fn urls_to_request() {
        assert_eq!(check_url("https://app.example.com/voice").as_deref(), Ok("app.example.com"));
        assert!(matches!(check_url("ftp://x/y"), Err(FetchError::InvalidUrl(_))));
        assert!(matches!(check_url("/relative"), Err(FetchError::InvalidUrl(_))));
    }

    #[test]
    fn stats_and_collector() {
        let stats = Arc::new(WebhookStats::default());
        stats.record::<()>(FetchPurpose::Instructions, &Ok(()), Duration::from_millis(3));
        stats.record::<()>(FetchPurpose::Instructions, &Err(FetchError::Status(500)), Duration::from_millis(70));
        stats.record::<()>(FetchPurpose::Notification, &Err(FetchError::ConnectionRefused), Duration::from_secs(20));
        let s = stats.snapshot();
        assert_eq!(s.requests("instructions", Outcome::Ok), 1);
        assert_eq!(s.requests("instructions", Outcome::HttpStatus), 1);
        assert_eq!(s.requests("notification", Outcome::ConnectionRefused), 1);
        assert_eq!(s.latency_count, 2);
        assert_eq!(s.latency_buckets[0], (0.005, 1));
        assert_eq!(s.latency_buckets[4], (0.1, 2));
        assert_eq!(s.latency_buckets.last(), Some(&(f64::INFINITY, 2)));

        let mut registry = prometheus_client::registry::Registry::with_prefix("bridgehead");
        registry.register_collector(Box::new(WebhookCollector { stats }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"bridgehead_webhook_requests_total{purpose="instructions",outcome="http_status"} 1"#));
        assert!(text.contains(r#"bridgehead_webhook_duration_seconds_bucket{le="0.1"} 2"#), "{text}");
        assert!(text.contains("bridgehead_webhook_duration_seconds_count 2"));
        assert!(text.contains("bridgehead_webhook_notifications_dropped_total 0"));
    }
}
