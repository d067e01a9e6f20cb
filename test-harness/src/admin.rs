//! A client for the appliance's admin listener: a small blocking HTTP/1.1
//! client over `TcpStream` (one connection per request), typed helpers for
//! the dataplane JSON API, and readers for `/metrics`.
//!
//! The connection is opened inside the appliance's namespace when it runs in
//! one, so the admin listener can stay on loopback there.

use crate::netns::NetnsHandle;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Time allowed for one plain request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    pub fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("unexpected body (status {}): {}", self.status, self.body))
    }

    /// The `error` code of an error body, if any.
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&self.body).ok()?.get("error")?.as_str().map(str::to_string)
    }
}

/// One leg of a create or update request; `None` fields are left out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LegRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssrc_rewrite: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pt_map: Option<Vec<(u8, u8)>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_rate: Option<u32>,
}

impl LegRequest {
    /// A leg whose peer is signalled at `remote`.
    pub fn to(remote: SocketAddr) -> LegRequest {
        LegRequest { remote: Some(remote), ..Default::default() }
    }
    pub fn strict(mut self) -> Self {
        self.strict = Some(true);
        self
    }
    pub fn ssrc_rewrite(mut self) -> Self {
        self.ssrc_rewrite = Some(true);
        self
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionRequest {
    pub rtcp_mux: bool,
    pub legs: [LegRequest; 2],
}

impl SessionRequest {
    /// Two legs, RTCP on its own port (the default of the API).
    pub fn new(leg0: LegRequest, leg1: LegRequest) -> SessionRequest {
        SessionRequest { rtcp_mux: false, legs: [leg0, leg1] }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct LegCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub dropped: u64,
    pub lost: i64,
    pub jitter: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LegInfo {
    pub local: SocketAddr,
    pub remote: Option<SocketAddr>,
    pub latched: bool,
    pub rtcp_remote: Option<SocketAddr>,
    pub strict: bool,
    pub ssrc_rewrite: bool,
    pub pt_map: Vec<(u8, u8)>,
    pub clock_rate: u32,
    pub counters: LegCounters,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SessionInfo {
    pub id: u64,
    pub worker: usize,
    pub timed_out: bool,
    pub legs: [LegInfo; 2],
}

#[derive(Debug, Clone, Deserialize)]
pub struct SessionList {
    pub count: usize,
    pub capacity: usize,
    pub sessions: Vec<SessionInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// (reason, count), e.g. ("wrong_source", 3).
    pub drops: Vec<(String, u64)>,
    pub sessions_active: u64,
}

/// Totals over every worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: std::collections::BTreeMap<String, u64>,
}

impl WorkerTotals {
    pub fn drops(&self, reason: &str) -> u64 {
        self.drops.get(reason).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    MediaTimeout {
        session: u64,
    },
    Latched {
        session: u64,
        side: u8,
        rtcp: bool,
        remote: SocketAddr,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoggedEvent {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventBatch {
    pub last: u64,
    pub events: Vec<LoggedEvent>,
}

/// The admin API of one appliance.
#[derive(Debug, Clone)]
pub struct AdminClient {
    addr: SocketAddr,
    token: Option<String>,
    netns: Option<NetnsHandle>,
}

impl AdminClient {
    pub fn new(addr: SocketAddr, token: Option<String>, netns: Option<NetnsHandle>) -> AdminClient {
        AdminClient { addr, token, netns }
    }

    fn connect(&self, timeout: Duration) -> Result<TcpStream> {
        let addr = self.addr;
        let stream = match &self.netns {
            Some(ns) => ns.run_in(move || TcpStream::connect_timeout(&addr, timeout))?,
            None => TcpStream::connect_timeout(&addr, timeout),
        };
        stream.with_context(|| format!("connecting to the admin listener {addr}"))
    }

    /// One request; `timeout` bounds connecting, writing and reading each.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>, timeout: Duration) -> Result<HttpResponse> {
        let what = || format!("{method} {path}");
        let mut stream = self.connect(timeout).with_context(what)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: */*\r\n", self.addr);
        if let Some(token) = self.token.as_deref().filter(|_| method != "GET") {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() || matches!(method, "POST" | "PATCH" | "PUT") {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body);
        stream.write_all(head.as_bytes()).with_context(what)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).with_context(what)?;
        parse_response(&raw).with_context(what)
    }

    pub fn get(&self, path: &str) -> Result<HttpResponse> {
        self.request("GET", path, None, REQUEST_TIMEOUT)
    }

    /// Fails unless the status is `expected`.
    fn expect(&self, method: &str, path: &str, body: Option<&str>, expected: u16) -> Result<HttpResponse> {
        let r = self.request(method, path, body, REQUEST_TIMEOUT)?;
        if r.status != expected {
            bail!("{method} {path}: status {} (expected {expected}): {}", r.status, r.body);
        }
        Ok(r)
    }

    /// POST /v1/dataplane/sessions, whatever the answer.
    pub fn create_session_raw(&self, request: &SessionRequest) -> Result<HttpResponse> {
        self.request("POST", "/v1/dataplane/sessions", Some(&serde_json::to_string(request)?), REQUEST_TIMEOUT)
    }

    /// Creates a session; anything but 201 is an error.
    pub fn create_session(&self, request: &SessionRequest) -> Result<SessionInfo> {
        self.expect("POST", "/v1/dataplane/sessions", Some(&serde_json::to_string(request)?), 201)?.json()
    }

    pub fn session(&self, id: u64) -> Result<SessionInfo> {
        self.expect("GET", &format!("/v1/dataplane/sessions/{id}"), None, 200)?.json()
    }

    pub fn sessions(&self) -> Result<SessionList> {
        self.expect("GET", "/v1/dataplane/sessions", None, 200)?.json()
    }

    /// PATCH one leg: `leg` is 0 or 1, `settings` the fields to change.
    pub fn update_session(&self, id: u64, leg: usize, settings: &LegRequest) -> Result<SessionInfo> {
        let mut body = serde_json::to_value(settings)?;
        body["leg"] = leg.into();
        self.expect("PATCH", &format!("/v1/dataplane/sessions/{id}"), Some(&body.to_string()), 200)?.json()
    }

    /// Plays DTMF `digits` as RFC 4733 events (payload type 101) toward
    /// leg `leg`'s peer.
    pub fn digits(&self, id: u64, leg: usize, digits: &str) -> Result<()> {
        let body = serde_json::json!({"leg": leg, "digits": digits}).to_string();
        self.expect("POST", &format!("/v1/dataplane/sessions/{id}/digits"), Some(&body), 202).map(|_| ())
    }

    pub fn delete_session(&self, id: u64) -> Result<SessionInfo> {
        self.expect("DELETE", &format!("/v1/dataplane/sessions/{id}"), None, 200)?.json()
    }

    pub fn workers(&self) -> Result<Vec<WorkerStats>> {
        #[derive(Deserialize)]
        struct Workers {
            workers: Vec<WorkerStats>,
        }
        Ok(self.expect("GET", "/v1/dataplane/workers", None, 200)?.json::<Workers>()?.workers)
    }

    pub fn worker_totals(&self) -> Result<WorkerTotals> {
        let mut t = WorkerTotals::default();
        for w in self.workers()? {
            t.rx_packets += w.rx_packets;
            t.rx_bytes += w.rx_bytes;
            t.tx_packets += w.tx_packets;
            t.tx_bytes += w.tx_bytes;
            for (reason, n) in w.drops {
                *t.drops.entry(reason).or_default() += n;
            }
        }
        Ok(t)
    }

    /// GET /v1/dataplane/events?after=..&wait_ms=..
    pub fn events(&self, after: u64, wait: Duration) -> Result<EventBatch> {
        let path = format!("/v1/dataplane/events?after={after}&wait_ms={}", wait.as_millis());
        let r = self.request("GET", &path, None, wait + REQUEST_TIMEOUT)?;
        if r.status != 200 {
            bail!("GET {path}: status {}: {}", r.status, r.body);
        }
        r.json()
    }

    /// Waits up to `within` for an event after `after` that `matches`;
    /// returns it with every event seen on the way.
    pub fn wait_event(
        &self,
        after: u64,
        within: Duration,
        matches: impl Fn(&Event) -> bool,
    ) -> Result<(LoggedEvent, Vec<LoggedEvent>)> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        let mut after = after;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let batch = self.events(after, left.min(Duration::from_secs(1)))?;
            for e in batch.events {
                after = after.max(e.seq);
                let hit = matches(&e.event);
                seen.push(e.clone());
                if hit {
                    return Ok((e, seen));
                }
            }
            if Instant::now() >= deadline {
                bail!("no matching event within {within:?}; events seen: {seen:?}");
            }
        }
    }

    /// Every event after `after` until `until`.
    pub fn events_until(&self, after: u64, until: Instant) -> Result<Vec<LoggedEvent>> {
        let mut seen = Vec::new();
        let mut after = after;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let batch = self.events(after, left.min(Duration::from_secs(1)))?;
            for e in batch.events {
                after = after.max(e.seq);
                seen.push(e);
            }
            if Instant::now() >= until {
                return Ok(seen);
            }
        }
    }

    /// The sequence number of the newest event so far.
    pub fn last_event_seq(&self) -> Result<u64> {
        Ok(self.events(u64::MAX - 1, Duration::ZERO)?.last)
    }

    pub fn metrics(&self) -> Result<String> {
        Ok(self.expect("GET", "/metrics", None, 200)?.body)
    }
}

/// Sum of every sample of the metric family `name` (any labels), accepting
/// the OpenMetrics `_total` suffix of counters.
pub fn metric_sum(text: &str, name: &str) -> Option<u64> {
    metric_sum_where(text, name, |_| true)
}

/// Like [`metric_sum`], counting only samples whose label set contains `label` (e.g. `reason="truncated"`).
pub fn metric_sum_with(text: &str, name: &str, label: &str) -> Option<u64> {
    metric_sum_where(text, name, |labels| labels.contains(label))
}

fn metric_sum_where(text: &str, name: &str, keep: impl Fn(&str) -> bool) -> Option<u64> {
    let total = format!("{name}_total");
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (metric, labels) = match series.split_once('{') {
            Some((m, l)) => (m, l),
            None => (series, ""),
        };
        if (metric == name || metric == total) && keep(labels) {
            let v: f64 = value.parse().ok()?;
            *sum.get_or_insert(0) += v as u64;
        }
    }
    sum
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of headers in the response")?;
    let head = std::str::from_utf8(&raw[..split]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = v.parse::<usize>().ok();
        }
    }
    let rest = &raw[split + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        match length {
            Some(n) if n <= rest.len() => rest[..n].to_vec(),
            Some(n) => bail!("body cut short: {} of {n} bytes", rest.len()),
            None => rest.to_vec(),
        }
    };
    Ok(HttpResponse { status, body: String::from_utf8(body).context("response body is not UTF-8")? })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").context("chunk size line not ended")?;
        let size_text = std::str::from_utf8(&data[..eol])?.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        anyhow::ensure!(data.len() >= size + 2, "chunk cut short");
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r = parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (201, "{}"));
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "abcde"));
    }

    #[test]
    fn sums_metric_samples() {
        let text = "# TYPE x counter\nbh_x_total{worker=\"0\"} 3\nbh_x_total{worker=\"1\"} 4\nbh_y 1\n# EOF\n";
        assert_eq!(metric_sum(text, "bh_x"), Some(7));
        assert_eq!(metric_sum_with(text, "bh_x", "worker=\"1\""), Some(4));
        assert_eq!(metric_sum(text, "bh_z"), None);
    }

    #[test]
    fn reads_events() {
        let b: EventBatch = serde_json::from_str(
            r#"{"last":2,"events":[{"seq":1,"type":"latched","session":5,"side":0,"rtcp":false,"remote":"192.0.2.12:4000"},
               {"seq":2,"type":"media_timeout","session":5},{"seq":3,"type":"future_kind","session":1}]}"#,
        )
        .unwrap();
        assert_eq!(b.events[1].event, Event::MediaTimeout { session: 5 });
        assert!(matches!(b.events[0].event, Event::Latched { side: 0, rtcp: false, .. }));
        assert_eq!(b.events[2].event, Event::Other);
    }
}
