//! The appliance side: `bridgehead --config FILE` with one account whose
//! application's voice URL is the TwiML server (`call-bench serve-twiml`),
//! the dialled number routed to it, and a trunk that allows the caller and
//! sends `<Dial><Number>` calls to the callee.
//!
//! Its CPU time is the `bridgehead` process's (every thread: SIP, webhook
//! client, store, dataplane workers). The TwiML server's is reported beside
//! it, apart. The anchor's count of relayed packets is the sum of
//! `bridgehead_dataplane_tx_packets_total` on its admin `/metrics`.

use crate::cpu;
use crate::ladder::{CpuParts, System};
use crate::netplan::{self, ADMIN_PORT, BRIDGEHEAD, DIALLED, NUMBER, SIP_PORT, TWIML, TWIML_PORT, UAC, UAS};
use crate::process::Child;
use crate::rig::Rig;
use crate::sip_probe;
use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use test_harness::admin::{metric_sum, AdminClient};

const STARTUP: Duration = Duration::from_secs(20);
const ADMIN_TOKEN: &str = "call-bench-admin";
const ACCOUNT_SID: &str = "AC0000000000000000000000000ca11be0";
const APPLICATION_SID: &str = "AP0000000000000000000000000ca11be0";
/// Media ports: 5,000 calls' worth (a call takes two port pairs), as many
/// as rtpengine gets on the reference side. The socket backend opens a
/// socket per port in use, so the open-file limit (20,000 on the machine
/// of docs/benchmarks.md) caps it a little below that.
const MEDIA_PORTS: &str = "10000-29999";
/// Session table: the default `max_calls` is half of it, above what the
/// ports allow.
const SESSIONS: u32 = 16384;

/// The appliance binary: `--bridgehead`, else `$BRIDGEHEAD_BIN`, else
/// `bridgehead` beside this program (the same target directory).
pub fn binary(given: Option<&Path>) -> Result<PathBuf> {
    let path = match (given, std::env::var_os("BRIDGEHEAD_BIN")) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => std::env::current_exe()?.with_file_name("bridgehead"),
    };
    if !path.is_file() {
        bail!(
            "{} not found: cargo build --release -p controlplane --bin bridgehead (same CARGO_TARGET_DIR)",
            path.display()
        );
    }
    Ok(path)
}

/// What the app answers to every call.
pub fn twiml() -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Dial><Number>{DIALLED}</Number></Dial></Response>")
}

/// The configuration file (docs/configuration.md, docs/store.md).
fn config(state_dir: &Path) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default(); // a JSON string is a TOML basic string
    let sip = format!("{BRIDGEHEAD}:{SIP_PORT}");
    format!(
        "[appliance]\nid = \"call-bench\"\nregion = \"bench\"\nstate_dir = {state}\n\n\
         [listen]\nadmin = \"{BRIDGEHEAD}:{ADMIN_PORT}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
         https = \"{BRIDGEHEAD}:8443\"\nsip_udp = \"{sip}\"\nsip_tcp = \"{sip}\"\nsip_tls = \"{BRIDGEHEAD}:5061\"\n\n\
         [dataplane]\nbackend = \"sockets\"\nmedia_ip = \"{BRIDGEHEAD}\"\nports = \"{MEDIA_PORTS}\"\n\
         sessions = {SESSIONS}\nmedia_timeout_s = 30\n\n\
         [[accounts]]\nsid = \"{ACCOUNT_SID}\"\nauth_token = \"call-bench-auth-token\"\n\n\
         [[accounts.applications]]\nsid = \"{APPLICATION_SID}\"\n\
         voice_url = \"http://{TWIML}:{TWIML_PORT}/voice\"\nvoice_method = \"POST\"\n\n\
         [[accounts.numbers]]\nnumber = \"{NUMBER}\"\napplication = \"{APPLICATION_SID}\"\n\n\
         [[accounts.trunks]]\nname = \"bench\"\nallow = [\"{UAC}/32\", \"{UAS}/32\"]\noutbound = \"sip:{UAS}:{SIP_PORT}\"\n",
        state = q(&state_dir.to_string_lossy()),
    )
}

pub struct Appliance {
    // bridgehead first: stopped before the app it calls.
    bridgehead: Child,
    twiml: Child,
    admin: AdminClient,
    app: AdminClient,
}

impl Appliance {
    pub fn start(rig: &Rig, bin: &Path) -> Result<Appliance> {
        let twiml_addr = SocketAddr::from((TWIML, TWIML_PORT));
        let me = std::env::current_exe()?;
        let args = vec!["serve-twiml".into(), "--listen".into(), twiml_addr.to_string(), "--body".into(), twiml()];
        let mut twiml = rig.spawn("TwiML server", "bh-twiml", &me, args)?;
        let deadline = Instant::now() + STARTUP;
        while rig.inside(|| TcpStream::connect_timeout(&twiml_addr, Duration::from_millis(200)))?.is_err() {
            twiml.check_running()?;
            if Instant::now() > deadline {
                bail!("the TwiML server does not accept connections on {twiml_addr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }

        let dir = rig.dir().join("bridgehead");
        // A fresh store each run: the accounts are seeded from the file.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let config_path = dir.join("bridgehead.toml");
        std::fs::write(&config_path, config(&dir.join("state")))?;
        let args = vec!["--config".to_string(), config_path.to_string_lossy().into_owned()];
        let mut bridgehead = rig.spawn("bridgehead", "bh-bridgehead", bin, args)?;
        let admin = AdminClient::new(
            SocketAddr::from((BRIDGEHEAD, ADMIN_PORT)),
            Some(ADMIN_TOKEN.into()),
            Some(rig.netns().handle()),
        );
        loop {
            bridgehead.check_running()?;
            if admin.request("GET", "/ready", None, Duration::from_millis(500)).is_ok_and(|r| r.status == 200) {
                break;
            }
            if Instant::now() > deadline {
                bail!("bridgehead not ready within {STARTUP:?}; its log ends with:\n{}", bridgehead.log_tail(20));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        sip_probe::wait_answer(rig, netplan::sip(BRIDGEHEAD), Duration::from_secs(5))
            .with_context(|| format!("bridgehead; its log ends with:\n{}", bridgehead.log_tail(20)))?;
        let app = AdminClient::new(twiml_addr, None, Some(rig.netns().handle()));
        Ok(Appliance { bridgehead, twiml, admin, app })
    }
}

impl System for Appliance {
    fn label(&self) -> &'static str {
        "bridgehead"
    }

    fn tag(&self) -> &'static str {
        "bh"
    }

    fn sip_target(&self) -> SocketAddr {
        netplan::sip(BRIDGEHEAD)
    }

    /// By thread name: where the time goes inside the process.
    fn cpu(&self) -> Result<CpuParts> {
        cpu::by_thread_name(self.bridgehead.pid())
    }

    fn helper_cpu(&self) -> Result<CpuParts> {
        Ok(vec![("twiml".into(), cpu::tree_seconds(self.twiml.pid())?)])
    }

    fn relayed_packets(&self) -> Option<u64> {
        metric_sum(&self.admin.metrics().ok()?, "bridgehead_dataplane_tx_packets")
    }

    fn trouble(&self) -> Vec<(String, u64)> {
        let Ok(text) = self.admin.metrics() else { return Vec::new() };
        let mut out = by_label(&text, "bridgehead_dataplane_drops_total", "reason", "media dropped");
        out.extend(by_label(&text, "bridgehead_calls_refused_total", "reason", "calls refused"));
        out.extend(by_label(&text, "bridgehead_dataplane_session_refusals_total", "reason", "sessions refused"));
        out.extend(by_label(&text, "bridgehead_calls_ended_total", "status", "calls ended"));
        out
    }

    fn calls_up(&self) -> Option<u64> {
        metric_sum(&self.admin.metrics().ok()?, "bridgehead_dataplane_sessions")
    }

    fn webhooks(&self) -> Option<u64> {
        let r = self.app.get("/stats").ok()?;
        let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        v.get("requests")?.as_u64()
    }

    fn check_running(&mut self) -> Result<()> {
        self.twiml.check_running()?;
        self.bridgehead.check_running()
    }

    fn log_tail(&self) -> String {
        format!("[{}]\n{}", self.bridgehead.log().display(), self.bridgehead.log_tail(20))
    }
}

/// The samples of one counter family summed by one label, named
/// `<what> <label value>`: `bridgehead_dataplane_drops_total{worker="0",
/// reason="strict"} 3` becomes `media dropped strict`.
fn by_label(metrics: &str, family: &str, label: &str, what: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    let key = format!("{label}=");
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(family).and_then(|r| r.strip_prefix('{')) else { continue };
        let Some((labels, value)) = rest.split_once("} ") else { continue };
        let Some(v) = labels.split(',').find_map(|l| l.trim().strip_prefix(key.as_str())) else { continue };
        let (name, n) = (format!("{what} {}", v.trim_matches('"')), value.trim().parse::<f64>().unwrap_or(0.0) as u64);
        match out.iter_mut().find(|(r, _)| *r == name) {
            Some((_, total)) => *total += n,
            None => out.push((name, n)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_by_label() {
        let text = "# TYPE bridgehead_dataplane_drops counter\n\
                    bridgehead_dataplane_drops_total{worker=\"0\",reason=\"no_session\"} 3\n\
                    bridgehead_dataplane_drops_total{worker=\"1\",reason=\"no_session\"} 4\n\
                    bridgehead_dataplane_drops_total{worker=\"1\",reason=\"strict\"} 1\n\
                    bridgehead_dataplane_rx_packets_total{worker=\"0\"} 99\n";
        assert_eq!(
            by_label(text, "bridgehead_dataplane_drops_total", "reason", "media dropped"),
            vec![("media dropped no_session".to_string(), 7), ("media dropped strict".to_string(), 1)]
        );
    }

    #[test]
    fn config_is_accepted_by_the_appliance() {
        let text = config(Path::new("/tmp/call bench \"x\"/state"));
        let c = controlplane::config::Config::parse_str(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        assert_eq!(c.listen.sip_udp, netplan::sip(BRIDGEHEAD));
        assert_eq!(c.appliance.state_dir, Path::new("/tmp/call bench \"x\"/state"));
        assert_eq!(c.accounts.len(), 1);
    }
}
