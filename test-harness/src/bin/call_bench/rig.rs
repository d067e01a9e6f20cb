//! What both sides share: the network namespace every process runs in, the
//! run's folder (logs, sipp statistics, configuration written for the run)
//! and the files of `test-harness/bench`.

use crate::netplan::RTP_PACKETS_PER_CALL;
use crate::process::{Child, Spawn};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use test_harness::netns::Netns;

pub struct Rig {
    netns: Netns,
    netns_path: PathBuf,
    dir: PathBuf,
    pub kamailio_cfg: PathBuf,
    pub uac_xml: PathBuf,
    pub uas_xml: PathBuf,
}

impl Rig {
    /// Creates the namespace (loopback up) and the run's folder,
    /// `$TMPDIR/call-bench-<pid>`, which is kept for reading afterwards.
    pub fn new(bench_dir: &Path) -> Result<Rig> {
        let file = |name: &str| -> Result<PathBuf> {
            let p = bench_dir.join(name);
            if !p.is_file() {
                bail!("{} is missing (--bench-dir points at test-harness/bench)", p.display());
            }
            Ok(p)
        };
        let (kamailio_cfg, uac_xml, uas_xml) = (file("kamailio.cfg")?, file("uac.xml")?, file("uas.xml")?);
        let dir = std::env::temp_dir().join(format!("call-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // The callee's RTP (uas.xml plays `rtp.ulaw` from its working
        // directory): mu-law silence, 160 bytes per 20 ms packet.
        let packets = usize::try_from(RTP_PACKETS_PER_CALL)?;
        std::fs::write(dir.join("rtp.ulaw"), vec![0xffu8; 160 * packets])?;
        let netns = Netns::new("callbench").context("creating the run's network namespace (needs root)")?;
        let netns_path = PathBuf::from(format!("/run/netns/{}", netns.name()));
        Ok(Rig { netns, netns_path, dir, kamailio_cfg, uac_xml, uas_xml })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// Starts `program` inside the namespace, working directory the run's
    /// folder, output to `<folder>/<log>.log`.
    pub fn spawn(&self, name: &str, log: &str, program: &Path, args: Vec<String>) -> Result<Child> {
        Spawn { name, program, args, netns: &self.netns_path, cwd: &self.dir, log: self.dir.join(format!("{log}.log")) }
            .start()
    }

    /// Runs `f` on a thread inside the namespace (sockets it opens stay there).
    pub fn inside<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        self.netns.run_in(f)
    }
}

/// `program` from `PATH`, or an error naming the Debian package.
pub fn which(program: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} not found: apt-get install {package} (scripts/call-bench.sh does)"))
}
