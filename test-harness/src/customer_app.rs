//! The customer's web application, as a real HTTP server in its own process
//! (`apps/customer_app.py`): it checks every webhook's `X-Twilio-Signature`
//! with Twilio's own `RequestValidator` (PyPI `twilio`), answers each path
//! with what the test configured, and records every request it received.
//!
//! ```text
//!   test ── route / requests (control endpoints) ──▶ customer_app.py ◀── webhooks ── appliance
//! ```
//!
//! Needs `python3` on `PATH` with `twilio` importable (scripts/test.sh puts a
//! virtualenv with it first on `PATH`). The process is stopped on drop.

use crate::admin::AdminClient;
use crate::netns::Netns;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Time the app has to start and print its port.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Time for one control request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// The script, in place in the source tree.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("apps/customer_app.py")
}

/// What the app answers on one path.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub path: String,
    pub status: u16,
    pub body: String,
    pub delay_ms: u64,
    pub content_type: String,
    /// Extra response headers (`Location` for a redirect).
    pub headers: BTreeMap<String, String>,
}

impl Route {
    /// `200 text/xml` with `body`, at once.
    pub fn twiml(path: &str, body: &str) -> Route {
        Route {
            path: path.to_owned(),
            status: 200,
            body: body.to_owned(),
            delay_ms: 0,
            content_type: "text/xml".to_owned(),
            headers: BTreeMap::new(),
        }
    }

    /// An HTTP redirect (`status` 301/302/303/307/308) to `location`.
    pub fn redirect(path: &str, status: u16, location: &str) -> Route {
        let mut route = Route::twiml(path, "");
        route.status = status;
        route.headers.insert("Location".to_owned(), location.to_owned());
        route
    }

    pub fn status(mut self, status: u16) -> Route {
        self.status = status;
        self
    }

    pub fn delay(mut self, delay: Duration) -> Route {
        self.delay_ms = delay.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    pub fn content_type(mut self, content_type: &str) -> Route {
        self.content_type = content_type.to_owned();
        self
    }
}

/// One request the app received, as it saw it.
#[derive(Debug, Clone, Deserialize)]
pub struct AppRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The form body of a POST, decoded.
    pub form: Vec<(String, String)>,
    pub headers: BTreeMap<String, String>,
    /// The URL as the app reconstructed it (`http://` + Host + path), which
    /// is what it validated the signature against.
    pub url: String,
    /// Twilio's `RequestValidator` accepted `X-Twilio-Signature`.
    pub signature_valid: bool,
    /// Seconds since the epoch, when the request had been read.
    pub received_at: f64,
}

impl AppRequest {
    /// A parameter from the form body, or else from the query string.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form.iter().chain(&self.query).find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A request header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A running customer app; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct CustomerApp {
    child: Child,
    /// Held so the app's stdout stays open for its lifetime.
    _stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
    scheme: &'static str,
    control: AdminClient,
}

impl CustomerApp {
    /// Starts the app on 127.0.0.1, on a free port, checking signatures with
    /// `auth_token`.
    pub fn start(auth_token: &str) -> Result<CustomerApp> {
        CustomerApp::start_in(None, IpAddr::V4(Ipv4Addr::LOCALHOST), auth_token)
    }

    /// Starts the app inside `netns` (when given) on `bind`, a free port.
    /// [`url`](Self::url) names `bind`, so give an address clients reach.
    pub fn start_in(netns: Option<&Netns>, bind: IpAddr, auth_token: &str) -> Result<CustomerApp> {
        CustomerApp::start_with(netns, bind, auth_token, None)
    }

    /// Starts the app serving HTTPS with the PEM certificate chain and key
    /// in `tls` (files); control requests then go to a second, plain port.
    pub fn start_with(
        netns: Option<&Netns>,
        bind: IpAddr,
        auth_token: &str,
        tls: Option<(&Path, &Path)>,
    ) -> Result<CustomerApp> {
        let python = Path::new("python3");
        let mut cmd = match netns {
            Some(ns) => ns.command(python),
            None => Command::new(python),
        };
        cmd.arg(script())
            .args(["--auth-token", auth_token, "--bind", &bind.to_string(), "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((cert, key)) = tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let mut child = cmd.spawn().context("starting python3 for the customer app (is python3 on PATH?)")?;
        let stdout = child.stdout.take().context("customer app stdout")?;
        let lines = if tls.is_some() { 2 } else { 1 };
        let (stdout, ports) = match read_ports(stdout, lines) {
            Ok(found) => found,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.context("the customer app did not start (is the `twilio` Python package installed?)"));
            }
        };
        let addr = SocketAddr::new(bind, ports[0]);
        let control_addr = SocketAddr::new(bind, *ports.last().unwrap_or(&ports[0]));
        let control = AdminClient::new(control_addr, None, netns.map(Netns::handle));
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(CustomerApp { child, _stdout: stdout, addr, scheme, control })
    }

    /// Where the app listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>` (`https` when serving TLS)
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// Answers `path` with `status` and `body` (as `text/xml`) after `delay`.
    pub fn route(&self, path: &str, status: u16, body: &str, delay: Duration) -> Result<()> {
        self.set_route(&Route::twiml(path, body).status(status).delay(delay))
    }

    pub fn set_route(&self, route: &Route) -> Result<()> {
        let body = serde_json::to_string(route)?;
        let r = self.control.request("POST", "/_control/route", Some(&body), CONTROL_TIMEOUT)?;
        if r.status != 200 {
            bail!("setting the route {}: status {}: {}", route.path, r.status, r.body);
        }
        Ok(())
    }

    /// The requests received on `path`, oldest first.
    pub fn requests(&self, path: &str) -> Result<Vec<AppRequest>> {
        #[derive(Deserialize)]
        struct List {
            requests: Vec<AppRequest>,
        }
        let query = url_encode(path);
        let r = self.control.request("GET", &format!("/_control/requests?path={query}"), None, CONTROL_TIMEOUT)?;
        if r.status != 200 {
            bail!("listing requests: status {}: {}", r.status, r.body);
        }
        Ok(r.json::<List>()?.requests)
    }

    /// Every request received so far, on any path, oldest first.
    pub fn all_requests(&self) -> Result<Vec<AppRequest>> {
        #[derive(Deserialize)]
        struct List {
            requests: Vec<AppRequest>,
        }
        let r = self.control.request("GET", "/_control/requests", None, CONTROL_TIMEOUT)?;
        if r.status != 200 {
            bail!("listing requests: status {}: {}", r.status, r.body);
        }
        Ok(r.json::<List>()?.requests)
    }

    /// Waits up to `within` until `path` has received at least `count`
    /// requests; returns them all (fewer if time ran out).
    pub fn wait_requests(&self, path: &str, count: usize, within: Duration) -> Result<Vec<AppRequest>> {
        crate::settle(within, || self.requests(path), |found| found.len() >= count)
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) -> Result<()> {
        let r = self.control.request("POST", "/_control/clear", Some("{}"), CONTROL_TIMEOUT)?;
        if r.status != 200 {
            bail!("clearing requests: status {}: {}", r.status, r.body);
        }
        Ok(())
    }

    /// A plain HTTP client to the app (inside its namespace, if any), for
    /// requests the typed helpers do not cover.
    pub fn control_client(&self) -> &AdminClient {
        &self.control
    }
}

impl Drop for CustomerApp {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the first `count` stdout lines (ports) within [`START_TIMEOUT`].
fn read_ports(stdout: ChildStdout, count: usize) -> Result<(BufReader<ChildStdout>, Vec<u16>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        for _ in 0..count {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => break, // it exited; its stderr says why
                Ok(_) => lines.push(line),
                Err(_) => break,
            }
        }
        let _ = tx.send((reader, lines));
    });
    let (reader, lines) = rx.recv_timeout(START_TIMEOUT).context("waiting for the customer app's port")?;
    if lines.len() < count {
        bail!("the customer app exited before printing its port");
    }
    let ports = lines
        .iter()
        .map(|line| {
            line.trim().parse::<u16>().with_context(|| format!("the customer app printed {line:?}, not a port"))
        })
        .collect::<Result<Vec<u16>>>()?;
    Ok((reader, ports))
}

/// Percent-encodes a query value (paths here are plain ASCII; this keeps
/// `/` and unreserved characters as they are).
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
