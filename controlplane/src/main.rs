//! `bridgehead`: the appliance process.
//!
//! `bridgehead --config FILE` runs the appliance; with no file it runs on
//! defaults that need no setup (socket dataplane on loopback, admin on
//! 127.0.0.1:9090). Exit codes: 0 after a clean stop, 2 for a configuration
//! error (every error printed, with file and key), 1 when start-up fails.
//!
//! `bridgehead token --config FILE --account AC... --key SK... --identity
//! alice [--incoming] [--outgoing-app AP...] [--ttl 3600]` prints an access
//! token signed with the key's secret, read from the store (never from the
//! command line); see `docs/tokens.md`. Exit codes: 0, 2 for a configuration
//! or argument error, 1 when the store or the key fails.

use clap::{Parser, Subcommand};
use controlplane::config::{Config, StoreConfig};
use controlplane::store::{AccountSid, ApiKeySid, ApplicationSid, PostgresStore, SqliteStore, Store, StoreError};
use controlplane::token::{self, OutgoingGrant, VoiceGrant};
use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc: the call path allocates and frees many small objects (SIP
/// messages, SDP, maps per call); against glibc's malloc it took 11 % less
/// CPU per call in paired call-bench runs (docs/benchmarks.md). mimalloc
/// was tried before and cost more (it returns pages to the kernel eagerly).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(name = "bridgehead", version, about = "Bridgehead media gateway appliance")]
struct Cli {
    /// The configuration file (TOML). Without it every key takes its default.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration, print the errors or "ok", and exit.
    #[arg(long)]
    check: bool,
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print an access token (Twilio's shape, HS256) for a client identity.
    Token {
        /// The appliance's configuration file: where the store is.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// The account SID (`AC...`), the token's `sub`.
        #[arg(long, value_name = "AC...")]
        account: String,
        /// The API key SID (`SK...`) whose secret signs the token.
        #[arg(long, value_name = "SK...")]
        key: String,
        /// The client identity (`grants.identity`).
        #[arg(long)]
        identity: String,
        /// Allow the client to receive calls.
        #[arg(long)]
        incoming: bool,
        /// Allow the client to place calls through this application.
        #[arg(long, value_name = "AP...")]
        outgoing_app: Option<String>,
        /// Validity in seconds (at most 86400).
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    if let Some(Command::Token { config, account, key, identity, incoming, outgoing_app, ttl }) = cli.command {
        let request = TokenRequest { account, key, identity, incoming, outgoing_app, ttl };
        return token_command(config.as_deref(), &request);
    }
    let config = match load_config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!("ok");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("bh-control")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the control-plane runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(controlplane::appliance::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            eprintln!("bridgehead: {e}");
            ExitCode::from(1)
        }
    }
}

fn load_config(path: Option<&std::path::Path>) -> Result<Config, controlplane::config::ConfigErrors> {
    match path {
        Some(path) => Config::load(path),
        None => Config::parse_str("")
            .map_err(|errors| controlplane::config::ConfigErrors { file: "(defaults)".into(), errors }),
    }
}

struct TokenRequest {
    account: String,
    key: String,
    identity: String,
    incoming: bool,
    outgoing_app: Option<String>,
    ttl: i64,
}

/// `bridgehead token`: opens the store (seeding the configuration's
/// accounts, as the appliance does on start), checks that the key belongs
/// to the account, and prints a token signed with the key's secret.
fn token_command(config: Option<&std::path::Path>, req: &TokenRequest) -> ExitCode {
    let config = match load_config(config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let (account, key_sid) = match (AccountSid::parse(&req.account), ApiKeySid::parse(&req.key)) {
        (Ok(a), Ok(k)) => (a, k),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("bridgehead token: {e}");
            return ExitCode::from(2);
        }
    };
    let outgoing = match req.outgoing_app.as_deref().map(ApplicationSid::parse).transpose() {
        Ok(sid) => sid.map(|application_sid| OutgoingGrant { application_sid, params: Default::default() }),
        Err(e) => {
            eprintln!("bridgehead token: {e}");
            return ExitCode::from(2);
        }
    };
    let place = match &config.store {
        StoreConfig::Sqlite(path) => path.display().to_string(),
        StoreConfig::Postgres { url, .. } => url.to_string(),
    };
    let lookup = || -> Result<controlplane::store::ApiKey, StoreError> {
        let store: Box<dyn Store> = match &config.store {
            StoreConfig::Sqlite(path) => Box::new(SqliteStore::open(path)?),
            // One connection: this command makes one lookup.
            StoreConfig::Postgres { url, .. } => Box::new(PostgresStore::open(url, 1)?),
        };
        controlplane::store::seed(store.as_ref(), &config.accounts)?;
        store.api_key(&key_sid)
    };
    let key = match lookup() {
        Ok(key) if key.account_sid == account => key,
        Ok(_) | Err(StoreError::NotFound { .. }) => {
            eprintln!("bridgehead token: account {account} has no API key {key_sid}");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("bridgehead token: store {place}: {e}");
            return ExitCode::from(1);
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let voice = VoiceGrant { incoming_allow: req.incoming, outgoing };
    match token::mint(&key, &req.identity, &voice, now, req.ttl) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bridgehead token: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BRIDGEHEAD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
