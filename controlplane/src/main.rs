//! `bridgehead`: the appliance process.
//!
//! `bridgehead --config FILE` runs the appliance; with no file it runs on
//! defaults that need no setup (socket dataplane on loopback, admin on
//! 127.0.0.1:9090). Exit codes: 0 after a clean stop, 2 for a configuration
//! error (every error printed, with file and key), 1 when start-up fails.

use clap::Parser;
use controlplane::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let config = match &cli.config {
        Some(path) => Config::load(path),
        None => Config::parse_str("")
            .map_err(|errors| controlplane::config::ConfigErrors { file: "(defaults)".into(), errors }),
    };
    let config = match config {
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
