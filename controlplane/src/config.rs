//! The appliance's configuration: one TOML file, parsed in one place.
//!
//! Every key has a default that runs on one machine with no setup. Reading
//! goes on past the first problem, so that an operator sees every wrong key
//! of the file at once (file, key, reason), and `main` exits with code 2.

use dataplane::config::{Backend, DataplaneConfig, DpdkConfig};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::{Table, Value};

#[derive(Debug, Clone)]
pub struct Config {
    pub appliance: ApplianceConfig,
    pub listen: ListenConfig,
    pub dataplane: DataplaneConfig,
    /// Where the configuration came from, for log lines and error messages.
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ApplianceConfig {
    pub id: String,
    pub region: String,
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub admin: SocketAddr,
    /// Required for state-changing admin routes when `admin` is not loopback.
    pub admin_token: Option<String>,
    pub https: SocketAddr,
    pub sip_udp: SocketAddr,
    pub sip_tcp: SocketAddr,
    pub sip_tls: SocketAddr,
}

/// One problem in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

/// Every problem in the file, displayed one per line as `file: key: reason`.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}: {}", self.file, e.key, e.reason)?;
        }
        Ok(())
    }
}

/// Sections later releases read; accepted now so one file serves every version.
const RESERVED_SECTIONS: &[&str] = &["tls", "store", "peers", "accounts"];

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            file: file.clone(),
            errors: vec![ConfigError {
                key: "-".into(),
                reason: format!("cannot read: {e}"),
            }],
        })?;
        let table: Table = text.parse().map_err(|e: toml::de::Error| ConfigErrors {
            file: file.clone(),
            errors: vec![ConfigError {
                key: "-".into(),
                reason: format!("not valid TOML: {}", e.message().trim()),
            }],
        })?;
        Config::from_table(&table, Some(path)).map_err(|errors| ConfigErrors { file, errors })
    }

    pub fn parse_str(text: &str) -> Result<Config, Vec<ConfigError>> {
        let table: Table = text.parse().map_err(|e: toml::de::Error| {
            vec![ConfigError {
                key: "-".into(),
                reason: e.message().trim().to_string(),
            }]
        })?;
        Config::from_table(&table, None)
    }

    fn from_table(root: &Table, source: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
        let mut r = Reader::default();
        for key in root.keys() {
            if !["appliance", "listen", "dataplane"].contains(&key.as_str())
                && !RESERVED_SECTIONS.contains(&key.as_str())
            {
                r.error(key, "unknown section");
            }
        }
        let appliance = r.section(root, "appliance", &["id", "region", "state_dir"]);
        let appliance = ApplianceConfig {
            // Unique in the fleet; the host name is a fine default for one box.
            id: r
                .string(&appliance, "appliance.id")
                .unwrap_or_else(|| "bh-local".into()),
            region: r
                .string(&appliance, "appliance.region")
                .unwrap_or_else(|| "local".into()),
            state_dir: r
                .string(&appliance, "appliance.state_dir")
                .map_or_else(|| PathBuf::from("./state"), PathBuf::from),
        };
        for (key, value) in [
            ("appliance.id", &appliance.id),
            ("appliance.region", &appliance.region),
        ] {
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                r.error(key, "must be non-empty letters, digits, '-', '_' or '.'");
            }
        }

        let listen = r.section(
            root,
            "listen",
            &[
                "admin",
                "admin_token",
                "https",
                "sip_udp",
                "sip_tcp",
                "sip_tls",
            ],
        );
        let listen = ListenConfig {
            // Loopback: the admin API can create sessions, so it is not exposed by default.
            admin: r
                .socket_addr(&listen, "listen.admin")
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9090))),
            admin_token: r.string(&listen, "listen.admin_token"),
            https: r
                .socket_addr(&listen, "listen.https")
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 8443))),
            sip_udp: r
                .socket_addr(&listen, "listen.sip_udp")
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 5060))),
            sip_tcp: r
                .socket_addr(&listen, "listen.sip_tcp")
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 5060))),
            sip_tls: r
                .socket_addr(&listen, "listen.sip_tls")
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 5061))),
        };
        if !listen.admin.ip().is_loopback()
            && listen.admin_token.as_deref().is_none_or(str::is_empty)
        {
            r.error(
                "listen.admin_token",
                "required when listen.admin is not a loopback address",
            );
        }

        let dataplane = r.dataplane(root);
        let errors = std::mem::take(&mut r.errors);
        if errors.is_empty() {
            Ok(Config {
                appliance,
                listen,
                dataplane,
                source: source.map(Path::to_path_buf),
            })
        } else {
            Err(errors)
        }
    }
}

#[derive(Default)]
struct Reader {
    errors: Vec<ConfigError>,
}

impl Reader {
    fn error(&mut self, key: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.to_string(),
            reason: reason.into(),
        });
    }

    /// A sub-table, with unknown keys reported.
    fn section(&mut self, parent: &Table, name: &str, known: &[&str]) -> Table {
        let prefix = name.to_string();
        match parent.get(name.rsplit('.').next().unwrap_or(name)) {
            None => Table::new(),
            Some(Value::Table(t)) => {
                for key in t.keys() {
                    if !known.contains(&key.as_str()) {
                        self.error(&format!("{prefix}.{key}"), "unknown key");
                    }
                }
                t.clone()
            }
            Some(_) => {
                self.error(name, "must be a table");
                Table::new()
            }
        }
    }

    fn leaf<'t>(&self, table: &'t Table, key: &str) -> Option<&'t Value> {
        table.get(key.rsplit('.').next().unwrap_or(key))
    }

    fn string(&mut self, table: &Table, key: &str) -> Option<String> {
        match self.leaf(table, key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.error(key, format!("must be a string, not {}", other.type_str()));
                None
            }
        }
    }

    fn integer(
        &mut self,
        table: &Table,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        match self.leaf(table, key)? {
            Value::Integer(i) if range.contains(i) => Some(*i),
            Value::Integer(i) => {
                self.error(
                    key,
                    format!("{i} is out of range {}..={}", range.start(), range.end()),
                );
                None
            }
            other => {
                self.error(key, format!("must be an integer, not {}", other.type_str()));
                None
            }
        }
    }

    fn socket_addr(&mut self, table: &Table, key: &str) -> Option<SocketAddr> {
        let s = self.string(table, key)?;
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(key, format!("{s:?} is not an address:port"));
                None
            }
        }
    }

    fn ip(&mut self, value: &str, key: &str) -> Option<IpAddr> {
        match value.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(key, format!("{value:?} is not an IP address"));
                None
            }
        }
    }

    fn strings(&mut self, table: &Table, key: &str) -> Option<Vec<String>> {
        match self.leaf(table, key)? {
            Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => self.error(
                            key,
                            format!("items must be strings, not {}", other.type_str()),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.error(
                    key,
                    format!("must be an array of strings, not {}", other.type_str()),
                );
                None
            }
        }
    }

    fn dataplane(&mut self, root: &Table) -> DataplaneConfig {
        let d = DataplaneConfig::default();
        let t = self.section(
            root,
            "dataplane",
            &[
                "backend",
                "media_ip",
                "extra_media_ips",
                "ports",
                "workers",
                "sessions",
                "media_timeout_s",
                "dpdk",
            ],
        );
        let backend = match self.string(&t, "dataplane.backend").as_deref() {
            None | Some("sockets") => Backend::Sockets,
            Some("dpdk") => {
                if !cfg!(feature = "dpdk") {
                    self.error(
                        "dataplane.backend",
                        "\"dpdk\" needs a build with the `dpdk` feature (cargo build --features dpdk)",
                    );
                }
                Backend::Dpdk
            }
            Some(other) => {
                self.error(
                    "dataplane.backend",
                    format!("{other:?}: expected \"sockets\" or \"dpdk\""),
                );
                Backend::Sockets
            }
        };
        let mut media_ips = Vec::new();
        match self.string(&t, "dataplane.media_ip") {
            Some(s) => media_ips.extend(self.ip(&s, "dataplane.media_ip")),
            None => media_ips.extend(d.media_ips.iter().copied()),
        }
        for s in self
            .strings(&t, "dataplane.extra_media_ips")
            .unwrap_or_default()
        {
            media_ips.extend(self.ip(&s, "dataplane.extra_media_ips"));
        }
        if media_ips.iter().any(|ip| ip.is_unspecified()) {
            self.error(
                "dataplane.media_ip",
                "must be a concrete address (it is put in SDP), not 0.0.0.0 or ::",
            );
        }
        let ports = match self.string(&t, "dataplane.ports") {
            None => d.ports.clone(),
            Some(s) => {
                match parse_range(&s) {
                    Some((a, b)) if a <= b && b - a >= 3 => a..=b,
                    Some(_) => {
                        self.error(
                        "dataplane.ports",
                        format!("{s:?}: the range must hold at least 4 ports (two legs of one session)"),
                    );
                        d.ports.clone()
                    }
                    None => {
                        self.error(
                            "dataplane.ports",
                            format!("{s:?} is not a range like \"20000-29999\""),
                        );
                        d.ports.clone()
                    }
                }
            }
        };
        let workers = self
            .integer(&t, "dataplane.workers", 1..=64)
            .map_or(d.workers, |v| v as usize);
        let sessions = self
            .integer(&t, "dataplane.sessions", 1..=(1 << 30))
            .map_or(d.sessions, |v| v as usize);
        let media_timeout = self
            .integer(&t, "dataplane.media_timeout_s", 1..=86_400)
            .map_or(d.media_timeout, |v| Duration::from_secs(v as u64));
        let port_pairs =
            media_ips.len().max(1) * (usize::from(*ports.end() - *ports.start()) + 1) / 2;
        if port_pairs / 2 < workers {
            self.error(
                "dataplane.ports",
                format!("too few ports for {workers} workers (each needs two port pairs at least)"),
            );
        }

        let dpdk_t = self.section(
            &t,
            "dataplane.dpdk",
            &["eal_args", "port", "tap", "prefix_len", "gateway"],
        );
        let dpdk = DpdkConfig {
            eal_args: self
                .strings(&dpdk_t, "dataplane.dpdk.eal_args")
                .unwrap_or_default(),
            port: self
                .string(&dpdk_t, "dataplane.dpdk.port")
                .unwrap_or_default(),
            tap: self.string(&dpdk_t, "dataplane.dpdk.tap"),
            prefix_len: self
                .integer(&dpdk_t, "dataplane.dpdk.prefix_len", 0..=128)
                .map_or(24, |v| v as u8),
            gateway: self
                .string(&dpdk_t, "dataplane.dpdk.gateway")
                .and_then(|s| self.ip(&s, "dataplane.dpdk.gateway")),
        };
        if backend == Backend::Dpdk {
            if dpdk.port.is_empty() {
                self.error(
                    "dataplane.dpdk.port",
                    "required with backend = \"dpdk\" (a device name like net_af_packet0 or a PCI address)",
                );
            }
            if workers != 1 {
                self.error(
                    "dataplane.workers",
                    "the DPDK backend runs one worker in this release",
                );
            }
        }
        DataplaneConfig {
            backend,
            media_ips,
            ports,
            workers,
            sessions,
            media_timeout,
            dpdk,
        }
    }
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults_that_run_on_one_machine() {
        let c = Config::parse_str("").unwrap();
        assert_eq!(c.listen.admin, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.dataplane.backend, Backend::Sockets);
        assert_eq!(c.dataplane.sessions, 262_144);
        assert_eq!(c.dataplane.ports, 20000..=29999);
        assert_eq!(c.dataplane.media_timeout, Duration::from_secs(30));
    }

    #[test]
    fn reads_the_documented_keys() {
        let c = Config::parse_str(
            r#"
            [appliance]
            id = "bh-us1-a"
            region = "us1"
            state_dir = "/var/lib/bridgehead"
            [listen]
            admin = "127.0.0.1:9191"
            [dataplane]
            backend = "sockets"
            media_ip = "192.0.2.10"
            extra_media_ips = ["192.0.2.11"]
            ports = "30000-30999"
            workers = 1
            sessions = 1000
            media_timeout_s = 5
            [store]
            url = "sqlite://./state/bridgehead.db"
            "#,
        )
        .unwrap();
        assert_eq!(c.appliance.id, "bh-us1-a");
        assert_eq!(c.appliance.region, "us1");
        assert_eq!(c.dataplane.media_ips.len(), 2);
        assert_eq!(c.dataplane.ports, 30000..=30999);
        assert_eq!(c.dataplane.workers, 1);
        assert_eq!(c.dataplane.media_timeout, Duration::from_secs(5));
    }

    #[test]
    fn reports_every_error_at_once() {
        let errors = Config::parse_str(
            r#"
            bogus = 1
            [appliance]
            id = ""
            colour = "red"
            [listen]
            admin = "0.0.0.0:9090"
            [dataplane]
            backend = "netmap"
            ports = "3-2"
            workers = 0
            sessions = "many"
            media_ip = "not-an-ip"
            "#,
        )
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "bogus",
            "appliance.id",
            "appliance.colour",
            "listen.admin_token",
            "dataplane.backend",
            "dataplane.ports",
            "dataplane.workers",
            "dataplane.sessions",
            "dataplane.media_ip",
        ] {
            assert!(keys.contains(&key), "{key} missing from {errors:?}");
        }
    }

    #[test]
    fn errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("bh-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[dataplane]\nworkers = 99\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(
            err.contains("dataplane.workers: 99 is out of range"),
            "{err}"
        );
        std::fs::write(&path, "[dataplane\n").unwrap();
        assert!(Config::load(&path)
            .unwrap_err()
            .to_string()
            .contains("not valid TOML"));
    }
}
