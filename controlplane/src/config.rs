//! The appliance's configuration: one TOML file, parsed in one place.
//!
//! Every key has a default that runs on one machine with no setup. Reading
//! goes on past the first problem, so that an operator sees every wrong key
//! of the file at once (file, key, reason), and `main` exits with code 2.

use crate::store::seed::{AccountSeed, ApiKeySeed, ApplicationSeed, NumberSeed, TrunkSeed};
use crate::store::{
    check_http_url, check_sip_uri, check_trunk_name, AccountSid, ApiKeySid, ApplicationSid, Cidr, HttpMethod,
    PostgresUrl, E164,
};
use dataplane::config::{AfXdpConfig, Backend, DataplaneConfig, DpdkConfig, XdpMode};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::{Table, Value};

#[derive(Debug, Clone)]
pub struct Config {
    pub appliance: ApplianceConfig,
    pub listen: ListenConfig,
    pub dataplane: DataplaneConfig,
    pub store: StoreConfig,
    /// Certificate and key files; `None`: a self-signed pair in `state_dir`.
    pub tls: Option<TlsFiles>,
    /// The `[[accounts]]` tables, written to the store on first start.
    pub accounts: Vec<AccountSeed>,
    pub calls: CallsConfig,
    pub clients: ClientsConfig,
    /// The fleet (`[peers]`); `None`: a single box (in-process routes).
    pub peers: Option<PeersConfig>,
    /// Where the configuration came from, for log lines and error messages.
    pub source: Option<PathBuf>,
}

/// How calls run (`[calls]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallsConfig {
    /// A webhook (voice URL, action, redirect) must answer within this
    /// (`webhook_timeout_s`, Twilio's 15 s), else the fallback URL is tried.
    pub webhook_timeout: Duration,
    /// Calls at once (`max_calls`); more INVITEs get 503. Default: half the
    /// dataplane's sessions (a bridged call holds one, plus headroom).
    pub max_calls: usize,
    /// Accept the customer app's self-signed certificate
    /// (`webhook_insecure_tls`): for labs only.
    pub webhook_insecure_tls: bool,
    /// Accept any certificate from the SIP peers we connect to over TLS
    /// (`sip_tls_insecure`): for labs only.
    pub sip_tls_insecure: bool,
}

/// Client signaling (`[clients]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientsConfig {
    /// WebSocket connections at once (`max_connections`); more are refused
    /// with 503 and counted. `None`: as many as the open-file limit leaves
    /// after the media sockets and a reserve (`appliance::client_hub`); a
    /// larger value is lowered to that.
    pub max_connections: Option<usize>,
}

/// The fleet this appliance gossips with (`[peers]`, docs/fleet.md).
#[derive(Debug, Clone, PartialEq)]
pub struct PeersConfig {
    /// Where the gossip UDP socket binds (`listen`, default 0.0.0.0:7946).
    pub listen: SocketAddr,
    /// The address peers gossip to (`advertise`); `None`: `listen` when it
    /// is a concrete address, else the media IP with the listen port.
    pub advertise: Option<SocketAddr>,
    /// Peers to contact first, `host:port` (`seeds`).
    pub seeds: Vec<String>,
    /// The fleet's shared secret (`fleet_key`, 16 characters at least):
    /// gossip is sealed with a key derived from it.
    pub fleet_key: String,
    /// Between gossip rounds (`gossip_interval_ms`, default 150).
    pub gossip_interval: Duration,
    /// The failure detector's threshold (`phi_threshold`, 2..=16, default 8).
    pub phi_threshold: f64,
    /// Configured round-trip latency between regions, ms (`latency_ms`,
    /// `{ "us1-de1" = 45 }`), for the route policy beside the measured one.
    pub latency_ms: Vec<(String, String, u32)>,
}

/// Where durable state lives (`[store] url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// One box: a database file (`sqlite://PATH`, the default).
    Sqlite(PathBuf),
    /// A fleet: a PostgreSQL server every appliance shares
    /// (`postgres://...`), with at most `pool` connections (`[store] pool`).
    Postgres { url: PostgresUrl, pool: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ApplianceConfig {
    pub id: String,
    pub region: String,
    pub state_dir: PathBuf,
    /// On SIGTERM, how long calls in progress may go on (new ones are
    /// refused meanwhile) before they are hung up (`drain_s`, default 30).
    pub drain: Duration,
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

/// What is wrong with a file that is not TOML. Some of toml's errors have
/// an empty message (a control character in a comment, found by the
/// `config` fuzz target): an error must still say something.
fn toml_reason(e: &toml::de::Error) -> String {
    match e.message().trim() {
        "" => match e.span() {
            Some(span) => format!("invalid syntax at byte {}", span.start),
            None => "invalid syntax".to_owned(),
        },
        message => message.to_owned(),
    }
}

/// Sections later releases read; accepted now so one file serves every version.
const RESERVED_SECTIONS: &[&str] = &[];

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            file: file.clone(),
            errors: vec![ConfigError { key: "-".into(), reason: format!("cannot read: {e}") }],
        })?;
        let table: Table = text.parse().map_err(|e: toml::de::Error| ConfigErrors {
            file: file.clone(),
            errors: vec![ConfigError { key: "-".into(), reason: format!("not valid TOML: {}", toml_reason(&e)) }],
        })?;
        Config::from_table(&table, Some(path)).map_err(|errors| ConfigErrors { file, errors })
    }

    pub fn parse_str(text: &str) -> Result<Config, Vec<ConfigError>> {
        let table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| vec![ConfigError { key: "-".into(), reason: toml_reason(&e) }])?;
        Config::from_table(&table, None)
    }

    fn from_table(root: &Table, source: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
        let mut r = Reader::default();
        for key in root.keys() {
            if !["appliance", "listen", "dataplane", "accounts", "store", "tls", "calls", "clients", "peers"]
                .contains(&key.as_str())
                && !RESERVED_SECTIONS.contains(&key.as_str())
            {
                r.error(key, "unknown section");
            }
        }
        let appliance = r.section(root, "appliance", &["id", "region", "state_dir", "drain_s"]);
        let appliance = ApplianceConfig {
            // Unique in the fleet; the host name is a fine default for one box.
            id: r.string(&appliance, "appliance.id").unwrap_or_else(|| "bh-local".into()),
            region: r.string(&appliance, "appliance.region").unwrap_or_else(|| "local".into()),
            state_dir: r
                .string(&appliance, "appliance.state_dir")
                .map_or_else(|| PathBuf::from("./state"), PathBuf::from),
            drain: Duration::from_secs(
                r.integer(&appliance, "appliance.drain_s", 0..=3600).map_or(30, |s| s.unsigned_abs()),
            ),
        };
        for (key, value) in [("appliance.id", &appliance.id), ("appliance.region", &appliance.region)] {
            if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                r.error(key, "must be non-empty letters, digits, '-', '_' or '.'");
            }
        }

        let listen = r.section(root, "listen", &["admin", "admin_token", "https", "sip_udp", "sip_tcp", "sip_tls"]);
        let listen = ListenConfig {
            // Loopback: the admin API can create sessions, so it is not exposed by default.
            admin: r.socket_addr(&listen, "listen.admin").unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9090))),
            admin_token: r.string(&listen, "listen.admin_token"),
            https: r.socket_addr(&listen, "listen.https").unwrap_or(SocketAddr::from(([0, 0, 0, 0], 8443))),
            sip_udp: r.socket_addr(&listen, "listen.sip_udp").unwrap_or(SocketAddr::from(([0, 0, 0, 0], 5060))),
            sip_tcp: r.socket_addr(&listen, "listen.sip_tcp").unwrap_or(SocketAddr::from(([0, 0, 0, 0], 5060))),
            sip_tls: r.socket_addr(&listen, "listen.sip_tls").unwrap_or(SocketAddr::from(([0, 0, 0, 0], 5061))),
        };
        if !listen.admin.ip().is_loopback() && listen.admin_token.as_deref().is_none_or(str::is_empty) {
            r.error("listen.admin_token", "required when listen.admin is not a loopback address");
        }

        let dataplane = r.dataplane(root);
        let store = r.store(root, &appliance.state_dir);
        let tls = r.tls(root);
        let accounts = r.accounts(root);
        let calls =
            r.section(root, "calls", &["webhook_timeout_s", "max_calls", "webhook_insecure_tls", "sip_tls_insecure"]);
        let calls = CallsConfig {
            webhook_timeout: r
                .integer(&calls, "calls.webhook_timeout_s", 1..=600)
                .map_or(Duration::from_secs(15), |v| Duration::from_secs(v as u64)),
            max_calls: r
                .integer(&calls, "calls.max_calls", 1..=10_000_000)
                .map_or((dataplane.sessions / 2).max(1), |v| v as usize),
            webhook_insecure_tls: r.boolean(&calls, "calls.webhook_insecure_tls").unwrap_or(false),
            sip_tls_insecure: r.boolean(&calls, "calls.sip_tls_insecure").unwrap_or(false),
        };
        let clients = r.section(root, "clients", &["max_connections"]);
        let clients = ClientsConfig {
            // Default: what the open-file limit allows, decided at start-up.
            max_connections: r.integer(&clients, "clients.max_connections", 1..=100_000_000).map(|v| v as usize),
        };
        let peers = r.peers(root);
        let errors = std::mem::take(&mut r.errors);
        if errors.is_empty() {
            Ok(Config {
                appliance,
                listen,
                dataplane,
                store,
                tls,
                accounts,
                calls,
                clients,
                peers,
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
    /// `[peers]`: absent, a single box; present, this appliance joins a fleet.
    fn peers(&mut self, root: &Table) -> Option<PeersConfig> {
        root.get("peers")?;
        let t = self.section(
            root,
            "peers",
            &["listen", "advertise", "seeds", "fleet_key", "gossip_interval_ms", "phi_threshold", "latency_ms"],
        );
        // The conventional gossip port (memberlist's, Serf's).
        let listen = self.socket_addr(&t, "peers.listen").unwrap_or(SocketAddr::from(([0, 0, 0, 0], 7946)));
        let advertise = self.socket_addr(&t, "peers.advertise");
        if advertise.is_some_and(|a| a.ip().is_unspecified() || a.port() == 0) {
            self.error("peers.advertise", "must be an address peers can reach, not 0.0.0.0, :: or port 0");
        }
        let seeds = self.strings(&t, "peers.seeds").unwrap_or_default();
        for seed in &seeds {
            let ok = seed.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                self.error("peers.seeds", format!("{seed:?} is not host:port"));
            }
        }
        let fleet_key = self.string(&t, "peers.fleet_key").unwrap_or_default();
        if fleet_key.is_empty() {
            self.error(
                "peers.fleet_key",
                "required with [peers]: gossip is sealed with it and peers without it are refused",
            );
        } else if fleet_key.chars().count() < 16 {
            self.error("peers.fleet_key", "must be 16 characters at least");
        }
        // 150 ms: a change crosses a 50-box fleet in well under a second.
        let gossip_interval = self
            .integer(&t, "peers.gossip_interval_ms", 20..=10_000)
            .map_or(Duration::from_millis(150), |v| Duration::from_millis(v as u64));
        // A peer is dead after about this many mean heartbeat intervals of
        // silence (docs/fleet.md, "Failure detection").
        let phi_threshold = self.integer(&t, "peers.phi_threshold", 2..=16).map_or(8.0, |v| v as f64);
        let mut latency_ms = Vec::new();
        match t.get("latency_ms") {
            None => {}
            Some(Value::Table(pairs)) => {
                for (pair, ms) in pairs {
                    let key = format!("peers.latency_ms.{pair}");
                    // "a:b", or "a-b" when neither region has a '-' of its own.
                    let split = pair.split_once(':').or_else(|| match pair.matches('-').count() {
                        1 => pair.split_once('-'),
                        _ => None,
                    });
                    let Some((a, b)) = split.filter(|(a, b)| !a.is_empty() && !b.is_empty()) else {
                        self.error(&key, "expected two regions, \"us1-de1\" (or \"us-1:de-1\")");
                        continue;
                    };
                    match ms {
                        Value::Integer(v) if (0..=60_000).contains(v) => {
                            latency_ms.push((a.to_string(), b.to_string(), *v as u32))
                        }
                        _ => self.error(&key, "must be an integer of milliseconds, 0..=60000"),
                    }
                }
            }
            Some(_) => self.error("peers.latency_ms", "must be a table like { \"us1-de1\" = 45 }"),
        }
        Some(PeersConfig { listen, advertise, seeds, fleet_key, gossip_interval, phi_threshold, latency_ms })
    }

    fn store(&mut self, root: &Table, state_dir: &Path) -> StoreConfig {
        let t = self.section(root, "store", &["url", "pool"]);
        // One box keeps its database beside its other state.
        let default = StoreConfig::Sqlite(state_dir.join("bridgehead.db"));
        // A few connections serve an appliance: its queries are index
        // lookups, and the REST API, the call records and the routing each
        // hold one at a time. More only loads the shared server.
        let pool = self.integer(&t, "store.pool", 1..=64).map(|n| n as usize);
        let Some(url) = self.string(&t, "store.url") else {
            if pool.is_some() {
                self.error("store.pool", "applies to a postgres:// store.url only");
            }
            return default;
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                self.error("store.url", "sqlite:// needs a file path, e.g. sqlite://./state/bridgehead.db");
            }
            if pool.is_some() {
                self.error("store.pool", "applies to a postgres:// store.url only (SQLite has one connection)");
            }
            return if path.is_empty() { default } else { StoreConfig::Sqlite(PathBuf::from(path)) };
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return match PostgresUrl::parse(&url) {
                Ok(url) => StoreConfig::Postgres { url, pool: pool.unwrap_or(crate::store::DEFAULT_POSTGRES_POOL) },
                Err(reason) => {
                    self.error("store.url", reason);
                    default
                }
            };
        }
        // Not echoed: an unknown scheme may still carry a password.
        let scheme = url.split_once("://").map_or("(none)", |(scheme, _)| scheme);
        self.error(
            "store.url",
            format!("scheme {scheme:?}: expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
        );
        default
    }

    fn tls(&mut self, root: &Table) -> Option<TlsFiles> {
        let t = self.section(root, "tls", &["cert", "key"]);
        let cert = self.string(&t, "tls.cert");
        let key = self.string(&t, "tls.key");
        match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.into(), key: key.into() }),
            (None, None) => None,
            (Some(_), None) => {
                self.error("tls.key", "required with tls.cert");
                None
            }
            (None, Some(_)) => {
                self.error("tls.cert", "required with tls.key");
                None
            }
        }
    }
}

impl Reader {
    fn error(&mut self, key: &str, reason: impl Into<String>) {
        // TOML allows an empty key (`"" = 1`); an error must still name
        // something (found by the `config` fuzz target).
        let key = if key.is_empty() { "\"\"" } else { key };
        self.errors.push(ConfigError { key: key.to_string(), reason: reason.into() });
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

    fn integer(&mut self, table: &Table, key: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        match self.leaf(table, key)? {
            Value::Integer(i) if range.contains(i) => Some(*i),
            Value::Integer(i) => {
                self.error(key, format!("{i} is out of range {}..={}", range.start(), range.end()));
                None
            }
            other => {
                self.error(key, format!("must be an integer, not {}", other.type_str()));
                None
            }
        }
    }

    fn boolean(&mut self, table: &Table, key: &str) -> Option<bool> {
        match self.leaf(table, key)? {
            Value::Boolean(b) => Some(*b),
            other => {
                self.error(key, format!("must be true or false, not {}", other.type_str()));
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
                        other => self.error(key, format!("items must be strings, not {}", other.type_str())),
                    }
                }
                Some(out)
            }
            other => {
                self.error(key, format!("must be an array of strings, not {}", other.type_str()));
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
                "af_xdp",
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
            Some("af_xdp") => Backend::AfXdp,
            Some(other) => {
                self.error("dataplane.backend", format!("{other:?}: expected \"sockets\", \"dpdk\" or \"af_xdp\""));
                Backend::Sockets
            }
        };
        let mut media_ips = Vec::new();
        match self.string(&t, "dataplane.media_ip") {
            Some(s) => media_ips.extend(self.ip(&s, "dataplane.media_ip")),
            None => media_ips.extend(d.media_ips.iter().copied()),
        }
        for s in self.strings(&t, "dataplane.extra_media_ips").unwrap_or_default() {
            media_ips.extend(self.ip(&s, "dataplane.extra_media_ips"));
        }
        if media_ips.iter().any(|ip| ip.is_unspecified()) {
            self.error("dataplane.media_ip", "must be a concrete address (it is put in SDP), not 0.0.0.0 or ::");
        }
        let ports = match self.string(&t, "dataplane.ports") {
            None => d.ports.clone(),
            Some(s) => match parse_range(&s) {
                Some((a, b)) if a <= b && b - a >= 3 => a..=b,
                Some(_) => {
                    self.error(
                        "dataplane.ports",
                        format!("{s:?}: the range must hold at least 4 ports (two legs of one session)"),
                    );
                    d.ports.clone()
                }
                None => {
                    self.error("dataplane.ports", format!("{s:?} is not a range like \"20000-29999\""));
                    d.ports.clone()
                }
            },
        };
        let workers = self.integer(&t, "dataplane.workers", 1..=64).map_or(d.workers, |v| v as usize);
        let sessions = self.integer(&t, "dataplane.sessions", 1..=(1 << 30)).map_or(d.sessions, |v| v as usize);
        let media_timeout = self
            .integer(&t, "dataplane.media_timeout_s", 1..=86_400)
            .map_or(d.media_timeout, |v| Duration::from_secs(v as u64));
        let port_pairs = media_ips.len().max(1) * (usize::from(*ports.end() - *ports.start()) + 1) / 2;
        if port_pairs / 2 < workers {
            self.error(
                "dataplane.ports",
                format!("too few ports for {workers} workers (each needs two port pairs at least)"),
            );
        }

        let dpdk_t = self.section(&t, "dataplane.dpdk", &["eal_args", "port", "tap", "prefix_len", "gateway"]);
        let dpdk = DpdkConfig {
            eal_args: self.strings(&dpdk_t, "dataplane.dpdk.eal_args").unwrap_or_default(),
            port: self.string(&dpdk_t, "dataplane.dpdk.port").unwrap_or_default(),
            tap: self.string(&dpdk_t, "dataplane.dpdk.tap"),
            prefix_len: self.integer(&dpdk_t, "dataplane.dpdk.prefix_len", 0..=128).map_or(24, |v| v as u8),
            gateway: self.string(&dpdk_t, "dataplane.dpdk.gateway").and_then(|s| self.ip(&s, "dataplane.dpdk.gateway")),
        };
        if backend == Backend::Dpdk {
            if dpdk.port.is_empty() {
                self.error(
                    "dataplane.dpdk.port",
                    "required with backend = \"dpdk\" (a device name like net_af_packet0 or a PCI address)",
                );
            }
            if workers != 1 {
                self.error("dataplane.workers", "the DPDK backend runs one worker in this release");
            }
        }
        let xdp_t = self.section(&t, "dataplane.af_xdp", &["interface", "mode"]);
        let af_xdp = AfXdpConfig {
            interface: self.string(&xdp_t, "dataplane.af_xdp.interface").unwrap_or_default(),
            mode: match self.string(&xdp_t, "dataplane.af_xdp.mode").as_deref() {
                None | Some("auto") => XdpMode::Auto,
                Some("driver") => XdpMode::Driver,
                Some("generic") => XdpMode::Generic,
                Some(other) => {
                    self.error(
                        "dataplane.af_xdp.mode",
                        format!("{other:?}: expected \"auto\", \"driver\" or \"generic\""),
                    );
                    XdpMode::Auto
                }
            },
        };
        if backend == Backend::AfXdp {
            if af_xdp.interface.is_empty() {
                self.error("dataplane.af_xdp.interface", "required with backend = \"af_xdp\" (e.g. \"eth0\")");
            }
            if workers != 1 {
                self.error("dataplane.workers", "the AF_XDP backend runs one worker in this release");
            }
        }
        DataplaneConfig { backend, media_ips, ports, workers, sessions, media_timeout, dpdk, af_xdp }
    }
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// The `[[accounts]]` tables (DESIGN.md "Configuration"), seeded into the
/// store on first start (see `store::seed`). Every problem is reported with
/// its full key, like `accounts[0].applications[1].voice_url`.
impl Reader {
    fn accounts(&mut self, root: &Table) -> Vec<AccountSeed> {
        // SIDs and numbers must be unique across the whole file: value -> first key.
        let mut seen = std::collections::HashMap::new();
        let mut out = Vec::new();
        for (at, t) in self.tables(root, "accounts") {
            self.known_keys(
                &t,
                &at,
                &["sid", "auth_token", "friendly_name", "api_keys", "applications", "numbers", "trunks"],
            );
            let key = format!("{at}.sid");
            let sid = self.required(&t, &key);
            let sid = self.parse_with(&key, sid, AccountSid::parse);
            if let Some(sid) = &sid {
                self.unique(&mut seen, "account", sid.as_str(), &key);
            }
            let key = format!("{at}.auth_token");
            let auth_token = self.required(&t, &key);
            if auth_token.as_deref() == Some("") {
                self.error(&key, "must not be empty");
            }
            let friendly_name = self.string(&t, &format!("{at}.friendly_name"));

            let mut api_keys = Some(Vec::new());
            for (at, k) in self.tables(&t, &format!("{at}.api_keys")) {
                self.known_keys(&k, &at, &["sid", "secret", "friendly_name"]);
                let key = format!("{at}.sid");
                let sid = self.required(&k, &key);
                let sid = self.parse_with(&key, sid, ApiKeySid::parse);
                if let Some(sid) = &sid {
                    self.unique(&mut seen, "API key", sid.as_str(), &key);
                }
                let key = format!("{at}.secret");
                let secret = self.required(&k, &key);
                if secret.as_deref() == Some("") {
                    self.error(&key, "must not be empty");
                }
                let friendly_name = self.string(&k, &format!("{at}.friendly_name"));
                match (sid, secret) {
                    (Some(sid), Some(secret)) => api_keys.iter_mut().for_each(|v| {
                        v.push(ApiKeySeed {
                            sid: sid.clone(),
                            secret: secret.clone(),
                            friendly_name: friendly_name.clone(),
                        })
                    }),
                    _ => api_keys = None,
                }
            }

            let mut applications = Some(Vec::new());
            // As written, so that a number naming a malformed SID is not
            // reported twice.
            let mut app_sids = Vec::new();
            for (at, a) in self.tables(&t, &format!("{at}.applications")) {
                self.known_keys(
                    &a,
                    &at,
                    &[
                        "sid",
                        "friendly_name",
                        "voice_url",
                        "voice_method",
                        "voice_fallback_url",
                        "voice_fallback_method",
                        "status_callback",
                        "status_callback_method",
                    ],
                );
                let key = format!("{at}.sid");
                let sid = self.required(&a, &key);
                app_sids.extend(sid.clone());
                let sid = self.parse_with(&key, sid, ApplicationSid::parse);
                if let Some(sid) = &sid {
                    self.unique(&mut seen, "application", sid.as_str(), &key);
                }
                let seed = ApplicationSeed {
                    friendly_name: self.string(&a, &format!("{at}.friendly_name")),
                    voice_url: self.http_url(&a, &format!("{at}.voice_url")),
                    voice_method: self.http_method(&a, &format!("{at}.voice_method")),
                    voice_fallback_url: self.http_url(&a, &format!("{at}.voice_fallback_url")),
                    voice_fallback_method: self.http_method(&a, &format!("{at}.voice_fallback_method")),
                    status_callback: self.http_url(&a, &format!("{at}.status_callback")),
                    status_callback_method: self.http_method(&a, &format!("{at}.status_callback_method")),
                    sid: match sid {
                        Some(sid) => sid,
                        None => {
                            applications = None;
                            continue;
                        }
                    },
                };
                applications.iter_mut().for_each(|v| v.push(seed.clone()));
            }

            let mut numbers = Some(Vec::new());
            for (at, n) in self.tables(&t, &format!("{at}.numbers")) {
                self.known_keys(&n, &at, &["number", "application", "friendly_name"]);
                let key = format!("{at}.number");
                let number = self.required(&n, &key);
                let number = self.parse_with(&key, number, E164::parse);
                if let Some(number) = &number {
                    self.unique(&mut seen, "phone number", number.as_str(), &key);
                }
                let key = format!("{at}.application");
                let application = self.string(&n, &key);
                if let Some(app) = &application {
                    if !app_sids.contains(app) {
                        self.error(&key, format!("{app:?} is not one of this account's applications"));
                    }
                }
                let application = self.parse_with(&key, application, ApplicationSid::parse);
                let friendly_name = self.string(&n, &format!("{at}.friendly_name"));
                match number {
                    Some(number) => numbers.iter_mut().for_each(|v| {
                        v.push(NumberSeed {
                            number: number.clone(),
                            application: application.clone(),
                            friendly_name: friendly_name.clone(),
                        })
                    }),
                    None => numbers = None,
                }
            }

            let mut trunks = Some(Vec::new());
            let mut trunk_names = std::collections::HashMap::new();
            for (at, tr) in self.tables(&t, &format!("{at}.trunks")) {
                self.known_keys(&tr, &at, &["name", "allow", "outbound", "username", "password"]);
                let key = format!("{at}.name");
                let name = self.required(&tr, &key);
                let name = self.parse_with(&key, name, |s| check_trunk_name(s).map(|()| s.to_string()));
                if let Some(name) = &name {
                    self.unique(&mut trunk_names, "trunk", name, &key);
                }
                let key = format!("{at}.allow");
                let mut allow = Vec::new();
                for (j, s) in self.strings(&tr, &key).unwrap_or_default().iter().enumerate() {
                    let key = format!("{key}[{j}]");
                    match Cidr::parse(s) {
                        Ok(c) if allow.contains(&c) => self.error(&key, format!("{c} is listed twice")),
                        Ok(c) => allow.push(c),
                        Err(e) => self.error(&key, e.to_string()),
                    }
                }
                let key = format!("{at}.outbound");
                let outbound = self.required(&tr, &key);
                let outbound = self.parse_with(&key, outbound, |s| check_sip_uri(s).map(|()| s.to_string()));
                let username = self.string(&tr, &format!("{at}.username"));
                let password = self.string(&tr, &format!("{at}.password"));
                if username.is_some() != password.is_some() {
                    self.error(
                        &format!("{at}.password"),
                        "username and password (digest credentials toward the carrier) go together",
                    );
                }
                match (name, outbound) {
                    (Some(name), Some(outbound)) => trunks.iter_mut().for_each(|v| {
                        v.push(TrunkSeed {
                            name: name.clone(),
                            allow: allow.clone(),
                            outbound: outbound.clone(),
                            username: username.clone(),
                            password: password.clone(),
                        })
                    }),
                    _ => trunks = None,
                }
            }

            if let (Some(sid), Some(auth_token), Some(api_keys), Some(applications), Some(numbers), Some(trunks)) =
                (sid, auth_token, api_keys, applications, numbers, trunks)
            {
                out.push(AccountSeed { sid, auth_token, friendly_name, api_keys, applications, numbers, trunks });
            }
        }
        out
    }

    /// An array of tables (`[[key]]`), each with its key (`key[0]`).
    fn tables(&mut self, parent: &Table, key: &str) -> Vec<(String, Table)> {
        match self.leaf(parent, key) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Table(t) => out.push((format!("{key}[{i}]"), t.clone())),
                        other => {
                            self.error(&format!("{key}[{i}]"), format!("must be a table, not {}", other.type_str()))
                        }
                    }
                }
                out
            }
            Some(other) => {
                self.error(key, format!("must be an array of tables, not {}", other.type_str()));
                Vec::new()
            }
        }
    }

    fn known_keys(&mut self, table: &Table, at: &str, known: &[&str]) {
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                self.error(&format!("{at}.{key}"), "unknown key");
            }
        }
    }

    fn required(&mut self, table: &Table, key: &str) -> Option<String> {
        if self.leaf(table, key).is_none() {
            self.error(key, "required");
            return None;
        }
        self.string(table, key)
    }

    fn parse_with<T, E: std::fmt::Display>(
        &mut self,
        key: &str,
        value: Option<String>,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        match parse(&value?) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(key, e.to_string());
                None
            }
        }
    }

    /// Reports `value` if an earlier key of the file already holds it.
    fn unique(&mut self, seen: &mut std::collections::HashMap<String, String>, what: &str, value: &str, key: &str) {
        match seen.entry(format!("{what} {value}")) {
            std::collections::hash_map::Entry::Occupied(first) => {
                self.error(key, format!("{what} {value} is also at {}", first.get()));
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(key.to_string());
            }
        }
    }

    fn http_url(&mut self, table: &Table, key: &str) -> Option<String> {
        let url = self.string(table, key);
        self.parse_with(key, url, |s| check_http_url(s).map(|()| s.to_string()))
    }

    /// `GET` or `POST`; POST when absent, as Twilio does.
    fn http_method(&mut self, table: &Table, key: &str) -> HttpMethod {
        let method = self.string(table, key);
        self.parse_with(key, method, |s| {
            HttpMethod::parse(s).ok_or_else(|| format!("{s:?}: expected \"GET\" or \"POST\""))
        })
        .unwrap_or(HttpMethod::Post)
    }
}

#[cfg(test)]
mod account_tests {
    use super::*;

    /// The `[[accounts]]` example of DESIGN.md, as written there.
    const DESIGN_EXAMPLE: &str = r#"
        [[accounts]]
        sid = "AC00000000000000000000000000000001"
        auth_token = "..."
        [[accounts.api_keys]]
        sid = "SK00000000000000000000000000000001"
        secret = "..."
        [[accounts.applications]]
        sid = "AP00000000000000000000000000000001"
        voice_url = "http://127.0.0.1:8080/voice"
        voice_method = "POST"
        voice_fallback_url = "http://127.0.0.1:8080/fallback"
        status_callback = "http://127.0.0.1:8080/status"
        [[accounts.numbers]]
        number = "+15550100001"
        application = "AP00000000000000000000000000000001"
        [[accounts.trunks]]
        name = "carrier-a"
        allow = ["127.0.0.1/32"]        # carrier addresses allowed to send INVITEs
        outbound = "sip:127.0.0.1:5080" # where <Dial><Number> goes
    "#;

    #[test]
    fn no_accounts_by_default() {
        assert!(Config::parse_str("").unwrap().accounts.is_empty());
    }

    #[test]
    fn reads_the_design_example() {
        let c = Config::parse_str(DESIGN_EXAMPLE).unwrap();
        assert_eq!(c.accounts.len(), 1);
        let a = &c.accounts[0];
        assert_eq!(a.sid.as_str(), "AC00000000000000000000000000000001");
        assert_eq!(a.auth_token, "...");
        assert_eq!(a.api_keys.len(), 1);
        assert_eq!(a.api_keys[0].sid.as_str(), "SK00000000000000000000000000000001");
        assert_eq!(a.api_keys[0].secret, "...");
        let app = &a.applications[0];
        assert_eq!(app.voice_url.as_deref(), Some("http://127.0.0.1:8080/voice"));
        assert_eq!(app.voice_method, HttpMethod::Post);
        assert_eq!(app.voice_fallback_url.as_deref(), Some("http://127.0.0.1:8080/fallback"));
        assert_eq!(app.status_callback.as_deref(), Some("http://127.0.0.1:8080/status"));
        assert_eq!(a.numbers[0].number.as_str(), "+15550100001");
        assert_eq!(a.numbers[0].application.as_ref(), Some(&app.sid));
        let trunk = &a.trunks[0];
        assert_eq!(trunk.name, "carrier-a");
        assert_eq!(trunk.allow, vec![Cidr::parse("127.0.0.1/32").unwrap()]);
        assert_eq!(trunk.outbound, "sip:127.0.0.1:5080");
        assert_eq!((trunk.username.as_ref(), trunk.password.as_ref()), (None, None));
        // Secrets stay out of debug output.
        let debug = format!("{c:?}");
        assert!(debug.contains("<redacted>") && !debug.contains("\"...\""), "{debug}");
    }

    #[test]
    fn reads_several_accounts_and_the_optional_keys() {
        let c = Config::parse_str(
            r#"
            [[accounts]]
            sid = "AC00000000000000000000000000000001"
            auth_token = "t1"
            friendly_name = "first"
            [[accounts.applications]]
            sid = "AP00000000000000000000000000000001"
            voice_method = "GET"
            [[accounts.trunks]]
            name = "carrier-a"
            allow = ["192.0.2.0/24", "2001:db8::/32"]
            outbound = "sips:carrier.example.com"
            username = "bh"
            password = "pw"
            [[accounts]]
            sid = "AC00000000000000000000000000000002"
            auth_token = "t2"
            [[accounts.numbers]]
            number = "+15550100002"
            "#,
        )
        .unwrap();
        assert_eq!(c.accounts.len(), 2);
        assert_eq!(c.accounts[0].friendly_name.as_deref(), Some("first"));
        assert_eq!(c.accounts[0].applications[0].voice_method, HttpMethod::Get);
        assert_eq!(c.accounts[0].applications[0].voice_url, None);
        assert_eq!(c.accounts[0].trunks[0].allow.len(), 2);
        assert_eq!(c.accounts[0].trunks[0].username.as_deref(), Some("bh"));
        assert_eq!(c.accounts[1].numbers[0].application, None);
    }

    #[test]
    fn af_xdp_settings_are_read_and_checked() {
        let c = Config::parse_str(
            "[dataplane]\nbackend = \"af_xdp\"\nmedia_ip = \"192.0.2.1\"\nworkers = 1\n\
             [dataplane.af_xdp]\ninterface = \"eth0\"\nmode = \"generic\"\n",
        )
        .unwrap();
        assert_eq!(c.dataplane.backend, Backend::AfXdp);
        assert_eq!((c.dataplane.af_xdp.interface.as_str(), c.dataplane.af_xdp.mode), ("eth0", XdpMode::Generic));
        let errors = Config::parse_str(
            "[dataplane]\nbackend = \"af_xdp\"\nworkers = 2\n\
             [dataplane.af_xdp]\nmode = \"fast\"\nqueues = 4\n",
        )
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        for key in
            ["dataplane.af_xdp.interface", "dataplane.af_xdp.mode", "dataplane.af_xdp.queues", "dataplane.workers"]
        {
            assert!(keys.contains(&key), "{key} missing from {errors:?}");
        }
    }

    #[test]
    fn reports_every_account_error_with_its_key() {
        let errors = Config::parse_str(
            r#"
            [[accounts]]
            sid = "AC00000000000000000000000000000001"
            colour = "red"
            [[accounts.api_keys]]
            sid = "SK1"
            secret = ""
            [[accounts.applications]]
            sid = "AP00000000000000000000000000000001"
            voice_url = "http://127.0.0.1:8080/voice"
            [[accounts.applications]]
            sid = "AP00000000000000000000000000000002"
            voice_url = "127.0.0.1:8080/voice"
            voice_method = "PUT"
            [[accounts.numbers]]
            number = "5550100001"
            [[accounts.numbers]]
            number = "+15550100002"
            application = "AP00000000000000000000000000000009"
            [[accounts.trunks]]
            name = "carrier a"
            allow = ["127.0.0.1/32", "10.0.0.1/8"]
            outbound = "http://carrier"
            password = "pw"

            [[accounts]]
            sid = "AC00000000000000000000000000000001"
            auth_token = "t"
            [[accounts.numbers]]
            number = "+15550100002"
            "#,
        )
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "accounts[0].auth_token",
            "accounts[0].colour",
            "accounts[0].api_keys[0].sid",
            "accounts[0].api_keys[0].secret",
            "accounts[0].applications[1].voice_url",
            "accounts[0].applications[1].voice_method",
            "accounts[0].numbers[0].number",
            "accounts[0].numbers[1].application",
            "accounts[0].trunks[0].name",
            "accounts[0].trunks[0].allow[1]",
            "accounts[0].trunks[0].outbound",
            "accounts[0].trunks[0].password",
            "accounts[1].sid",
            "accounts[1].numbers[0].number",
        ] {
            assert!(keys.contains(&key), "{key} missing from {errors:#?}");
        }
        assert!(!keys.contains(&"accounts[0].applications[0].voice_url"), "{errors:#?}");
        let dup = errors.iter().find(|e| e.key == "accounts[1].numbers[0].number").unwrap();
        assert!(dup.reason.contains("also at accounts[0].numbers[1].number"), "{dup:?}");
        let host_bits = errors.iter().find(|e| e.key == "accounts[0].trunks[0].allow[1]").unwrap();
        assert!(host_bits.reason.contains("10.0.0.0/8"), "{host_bits:?}");
    }

    /// Found by the `config` fuzz target: toml reports a NUL in a comment
    /// with an empty message, and the error said nothing.
    #[test]
    fn fuzz_nul_in_a_comment_has_a_reason() {
        let errors = Config::parse_str("# a\0b\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(!errors[0].reason.is_empty(), "{errors:?}");
    }

    /// Found by the `config` fuzz target: an empty key was reported with an
    /// empty name.
    #[test]
    fn fuzz_empty_key_is_named() {
        let errors = Config::parse_str("\"\"=\"\"\n").unwrap_err();
        assert_eq!((errors[0].key.as_str(), errors[0].reason.as_str()), ("\"\"", "unknown section"));
    }

    #[test]
    fn accounts_must_be_an_array_of_tables() {
        let errors = Config::parse_str("accounts = 3\n").unwrap_err();
        assert_eq!(errors[0].key, "accounts");
        let errors = Config::parse_str("[accounts]\nsid = \"x\"\n").unwrap_err();
        assert_eq!(errors[0].key, "accounts");
    }
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
    fn the_example_config_is_valid_with_and_without_its_accounts() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/bridgehead.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        Config::parse_str(&text).unwrap();
        // The commented [[accounts]] block, uncommented, is valid too.
        let at = text.find("# [[accounts]]").unwrap();
        let block: Vec<&str> = text[at..].lines().map(|l| l.strip_prefix("# ").unwrap_or(l)).collect();
        let c = Config::parse_str(&format!("{}{}\n", &text[..at], block.join("\n"))).unwrap();
        assert_eq!(c.accounts.len(), 1);
    }

    #[test]
    fn store_and_tls_sections() {
        let c = Config::parse_str("[appliance]\nstate_dir = \"/var/lib/bh\"\n").unwrap();
        assert_eq!(c.store, StoreConfig::Sqlite(PathBuf::from("/var/lib/bh/bridgehead.db")));
        assert_eq!(c.tls, None);
        let c = Config::parse_str("[store]\nurl = \"sqlite://./x.db\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n")
            .unwrap();
        assert_eq!(c.store, StoreConfig::Sqlite(PathBuf::from("./x.db")));
        assert_eq!(c.tls, Some(TlsFiles { cert: "c.pem".into(), key: "k.pem".into() }));
        let errors = Config::parse_str("[store]\nurl = \"mysql://u:pw@db/bh\"\n[tls]\ncert = \"c.pem\"\n").unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["store.url", "tls.key"]);
        assert!(!errors[0].reason.contains("pw"), "{:?}", errors[0]);
    }

    #[test]
    fn postgres_store() {
        let c = Config::parse_str("[store]\nurl = \"postgres://bh:secret@db.example:5433/fleet\"\n").unwrap();
        let StoreConfig::Postgres { url, pool } = &c.store else { panic!("{:?}", c.store) };
        assert_eq!((url.to_string().as_str(), *pool), ("postgres://bh@db.example:5433/fleet", 4));
        assert!(!format!("{c:?}").contains("secret"));
        let c = Config::parse_str("[store]\nurl = \"postgresql://bh@db/fleet\"\npool = 8\n").unwrap();
        assert!(matches!(c.store, StoreConfig::Postgres { pool: 8, .. }));
        // Every problem at once, with its key, and no password in the reasons.
        let errors =
            Config::parse_str("[store]\nurl = \"postgres://bh:secret@db/fleet?sslmode=require\"\npool = 0\nsize = 1\n")
                .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["store.size", "store.pool", "store.url"]);
        assert!(errors.iter().all(|e| !e.reason.contains("secret")), "{errors:?}");
        assert!(errors[2].reason.contains("sslmode=require"), "{errors:?}");
        let errors = Config::parse_str("[store]\nurl = \"postgres://bh@:x/fleet\"\n").unwrap_err();
        assert_eq!(errors[0].key, "store.url");
        let errors = Config::parse_str("[store]\nurl = \"sqlite://./x.db\"\npool = 2\n").unwrap_err();
        assert_eq!(errors[0].key, "store.pool");
    }

    #[test]
    fn clients_max_connections() {
        assert_eq!(Config::parse_str("").unwrap().clients.max_connections, None);
        let c = Config::parse_str("[clients]\nmax_connections = 20\n").unwrap();
        assert_eq!(c.clients.max_connections, Some(20));
        let errors = Config::parse_str("[clients]\nmax_connections = 0\nmax = 1\n").unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["clients.max", "clients.max_connections"]);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("bh-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[dataplane]\nworkers = 99\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("dataplane.workers: 99 is out of range"), "{err}");
        std::fs::write(&path, "[dataplane\n").unwrap();
        assert!(Config::load(&path).unwrap_err().to_string().contains("not valid TOML"));
    }
}

#[cfg(test)]
mod peers_tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        Config::parse_str(text).unwrap_err().into_iter().map(|e| format!("{}: {}", e.key, e.reason)).collect()
    }

    #[test]
    fn no_peers_section_is_a_single_box() {
        assert_eq!(Config::parse_str("").unwrap().peers, None);
    }

    #[test]
    fn reads_the_peers_section() {
        let c = Config::parse_str(
            r#"
            [peers]
            listen = "10.0.0.1:7946"
            seeds = ["10.0.0.2:7946", "bh-de1-a.fleet:7946"]
            fleet_key = "0123456789abcdef-long-enough"
            gossip_interval_ms = 200
            latency_ms = { "us1-de1" = 45, "us-1:au-1" = 90 }
            "#,
        )
        .unwrap();
        let p = c.peers.unwrap();
        assert_eq!(p.listen, "10.0.0.1:7946".parse().unwrap());
        assert_eq!(p.advertise, None);
        assert_eq!(p.seeds, ["10.0.0.2:7946", "bh-de1-a.fleet:7946"]);
        assert_eq!(p.gossip_interval, Duration::from_millis(200));
        let mut latency = p.latency_ms.clone();
        latency.sort();
        assert_eq!(latency, [("us-1".into(), "au-1".into(), 90), ("us1".into(), "de1".into(), 45)]);
        let d = Config::parse_str("[peers]\nfleet_key = \"sixteen chars ok\"").unwrap().peers.unwrap();
        assert_eq!((d.listen, d.gossip_interval), ("0.0.0.0:7946".parse().unwrap(), Duration::from_millis(150)));
    }

    #[test]
    fn every_peers_error_at_once() {
        let errs = errors(
            r#"
            [peers]
            listen = "nowhere"
            advertise = "0.0.0.0:7946"
            seeds = ["10.0.0.2", 5]
            gossip_interval_ms = 1
            latency_ms = { "a-b-c" = 4, "us1-de1" = "far" }
            colour = "blue"
            "#,
        );
        for expected in [
            "peers.colour: unknown key",
            "peers.listen: \"nowhere\" is not an address:port",
            "peers.advertise: must be an address peers can reach",
            "peers.seeds: items must be strings",
            "peers.seeds: \"10.0.0.2\" is not host:port",
            "peers.fleet_key: required with [peers]",
            "peers.gossip_interval_ms: 1 is out of range",
            "peers.latency_ms.a-b-c: expected two regions",
            "peers.latency_ms.us1-de1: must be an integer",
        ] {
            assert!(errs.iter().any(|e| e.starts_with(expected)), "{expected:?} not in {errs:#?}");
        }
        assert_eq!(errors("[peers]\nfleet_key = \"short\""), ["peers.fleet_key: must be 16 characters at least"]);
    }
}
