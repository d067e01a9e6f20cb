//! The reference: kamailio as a stateful proxy (test-harness/bench/kamailio.cfg)
//! with rtpengine anchoring the media in userspace. No webhook, no call
//! record: the least a system must do to carry these calls.
//!
//! rtpengine runs with `--table=-1` (no kernel forwarding table: every
//! packet goes through its userspace relay, as ours does), its ng control
//! socket on loopback; kamailio asks it over ng for `offer` (INVITE),
//! `answer` (the 200) and `delete` (BYE). Its `statistics` command gives
//! the packets it relayed (counted when a call is deleted).

use crate::bencode::Value;
use crate::cpu;
use crate::ladder::{CpuParts, System};
use crate::netplan::{self, DIALLED, KAMAILIO, RTPENGINE, RTPENGINE_NG_PORT, SIP_PORT, UAS};
use crate::process::Child;
use crate::rig::{which, Rig};
use crate::sip_probe;
use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// rtpengine's media ports: 5,000 calls' worth (4 ports a call), below the
/// ephemeral range.
const RTPENGINE_PORTS: (u16, u16) = (10000, 29999);
/// kamailio's UDP worker processes (kamailio.cfg explains why more than cores).
const KAMAILIO_WORKERS: u32 = 4;
/// kamailio's shared memory (transactions), MB; private memory per process, MB.
const KAMAILIO_SHM_MB: u32 = 512;
const KAMAILIO_PKG_MB: u32 = 16;
const STARTUP: Duration = Duration::from_secs(10);

pub struct Reference {
    // kamailio first: stopped before the media anchor it talks to.
    kamailio: Child,
    rtpengine: Child,
    ng: NgClient,
}

impl Reference {
    pub fn start(rig: &Rig) -> Result<Reference> {
        let rtpengine_bin = which("rtpengine", "rtpengine-daemon")?;
        let kamailio_bin = which("kamailio", "kamailio")?;
        let ng_addr = SocketAddr::from((RTPENGINE, RTPENGINE_NG_PORT));
        let args = vec![
            "--config-file=none".to_string(),
            "--foreground".into(),
            "--log-stderr".into(),
            "--log-level=4".into(),
            format!("--interface={RTPENGINE}"),
            format!("--listen-ng={ng_addr}"),
            format!("--port-min={}", RTPENGINE_PORTS.0),
            format!("--port-max={}", RTPENGINE_PORTS.1),
            // No kernel forwarding: every packet through the userspace relay.
            "--table=-1".into(),
            // Its default: one thread per core.
            format!("--num-threads={}", std::thread::available_parallelism().map_or(2, |n| n.get())),
            // Ports of a deleted call are free at once (default: 30 s later).
            "--delete-delay=0".into(),
            "--timeout=60".into(),
        ];
        let mut rtpengine = rig.spawn("rtpengine", "ref-rtpengine", &rtpengine_bin, args)?;
        let ng = NgClient::new(rig, ng_addr)?;
        ng.wait_ready(&mut rtpengine)?;

        // kamailio.cfg takes its addresses as preprocessor defines.
        let args = vec![
            "-DD".to_string(), // stay in the foreground, fork the workers
            "-E".into(),       // log to stderr
            "-f".into(),
            rig.kamailio_cfg.to_string_lossy().into_owned(),
            "-m".into(),
            KAMAILIO_SHM_MB.to_string(),
            "-M".into(),
            KAMAILIO_PKG_MB.to_string(),
            "-A".into(),
            format!("SIP_LISTEN=udp:{KAMAILIO}:{SIP_PORT}"),
            "-A".into(),
            format!("RTPENGINE_NG=\"udp:{ng_addr}\""),
            "-A".into(),
            format!("CALLEE=\"{UAS}:{SIP_PORT}\""),
            "-A".into(),
            format!("DIALLED=\"{DIALLED}\""),
            "-A".into(),
            format!("WORKERS={KAMAILIO_WORKERS}"),
        ];
        let mut kamailio = rig.spawn("kamailio", "ref-kamailio", &kamailio_bin, args)?;
        if let Err(e) = sip_probe::wait_answer(rig, netplan::sip(KAMAILIO), STARTUP) {
            kamailio.check_running()?;
            return Err(e.context(format!("kamailio; its log ends with:\n{}", kamailio.log_tail(20))));
        }
        Ok(Reference { kamailio, rtpengine, ng })
    }
}

impl Reference {
    /// A figure of rtpengine's `statistics`: `totalstatistics` (calls
    /// already deleted) or `currentstatistics`.
    fn statistic(&self, group: &str, key: &str) -> Option<u64> {
        let reply = self.ng.request(&Value::dict([("command", Value::str("statistics"))])).ok()?;
        let n = reply.get("statistics")?.get(group)?.get(key)?.as_int()?;
        u64::try_from(n).ok()
    }
}

impl System for Reference {
    fn label(&self) -> &'static str {
        "reference"
    }

    fn tag(&self) -> &'static str {
        "ref"
    }

    fn sip_target(&self) -> SocketAddr {
        netplan::sip(KAMAILIO)
    }

    fn cpu(&self) -> Result<CpuParts> {
        Ok(vec![
            ("kamailio".into(), cpu::tree_seconds(self.kamailio.pid())?),
            ("rtpengine".into(), cpu::tree_seconds(self.rtpengine.pid())?),
        ])
    }

    fn relayed_packets(&self) -> Option<u64> {
        self.statistic("totalstatistics", "relayedpackets")
    }

    fn trouble(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (key, name) in [
            ("relayedpacketerrors", "rtpengine relay errors"),
            ("timeoutsessions", "rtpengine calls timed out"),
            ("rejectedsessions", "rtpengine calls rejected"),
        ] {
            if let Some(n) = self.statistic("totalstatistics", key) {
                out.push((name.to_string(), n));
            }
        }
        out
    }

    fn calls_up(&self) -> Option<u64> {
        self.statistic("currentstatistics", "sessionstotal")
    }

    fn check_running(&mut self) -> Result<()> {
        self.rtpengine.check_running()?;
        self.kamailio.check_running()
    }

    fn log_tail(&self) -> String {
        format!(
            "[{}]\n{}\n[{}]\n{}",
            self.kamailio.log().display(),
            self.kamailio.log_tail(10),
            self.rtpengine.log().display(),
            self.rtpengine.log_tail(10)
        )
    }
}

/// A client of rtpengine's ng protocol: `<cookie> <bencoded dict>` per UDP
/// datagram; the reply starts with the same cookie.
struct NgClient {
    socket: UdpSocket,
    next_cookie: std::cell::Cell<u64>,
}

impl NgClient {
    fn new(rig: &Rig, server: SocketAddr) -> Result<NgClient> {
        let socket = rig.inside(|| UdpSocket::bind("127.0.0.1:0"))??;
        socket.connect(server)?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        Ok(NgClient { socket, next_cookie: std::cell::Cell::new(1) })
    }

    fn wait_ready(&self, rtpengine: &mut Child) -> Result<()> {
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            rtpengine.check_running()?;
            let ping = Value::dict([("command", Value::str("ping"))]);
            if let Ok(reply) = self.request(&ping) {
                if reply.get("result").and_then(Value::as_str) == Some("pong") {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("rtpengine did not answer an ng ping within {STARTUP:?}; its log ends with:\n{}", rtpengine.log_tail(20))
    }

    fn request(&self, command: &Value) -> Result<Value> {
        let cookie = format!("cb{}", self.next_cookie.get());
        self.next_cookie.set(self.next_cookie.get() + 1);
        let mut datagram = format!("{cookie} ").into_bytes();
        command.encode(&mut datagram);
        self.socket.send(&datagram)?;
        let mut buf = vec![0u8; 65536];
        loop {
            let len = self.socket.recv(&mut buf).context("no ng reply")?;
            // A late reply to an earlier request has another cookie.
            let Some(body) = buf[..len].strip_prefix(format!("{cookie} ").as_bytes()) else { continue };
            let reply = Value::decode(body).map_err(|e| anyhow::anyhow!("ng reply: {e}"))?;
            if reply.get("result").and_then(Value::as_str) == Some("error") {
                let reason = reply.get("error-reason").and_then(Value::as_str).unwrap_or("?");
                bail!("rtpengine refused: {reason}");
            }
            return Ok(reply);
        }
    }
}
