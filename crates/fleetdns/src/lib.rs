//! `fleetdns`: one DNS namespace for a fleet of Kubernetes clusters.
//!
//! The whole program is this library; `src/main.rs` only calls [`main`]. The library target
//! exists so the fuzz targets can reach the config parser (`fuzzing`, feature `fuzzing`);
//! every other module stays private.

mod backend;
mod commands;
mod config;
mod debug_api;
mod debug_client;
mod file_watch;
mod files;
mod mesh_zones;
mod ops;
mod publish;
mod resolv_conf;
mod runtime;
mod status_page;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands::{agent, check_config, istio, query, serve, status, stub_domains, sync};

#[derive(Debug, Parser)]
#[command(
    name = "fleetdns",
    version,
    about = "One DNS namespace for a fleet of Kubernetes clusters"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Plain, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve DNS for the fleet described by the config.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Overrides `[dns] listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run the config's sources (the cluster this agent runs in) and publish them to the
    /// registry (etcd: shared with every DNS server); write back into Kubernetes; no DNS.
    Agent {
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config and its sources, and print what would be served.
    CheckConfig { config: PathBuf },
    /// Ask a server (its ops listener) how it answers a name and why: zone, rules, the
    /// clusters kept and dropped, the policy's choice, what is missing and since when.
    /// With --config, answer from the config alone.
    Query(query::Args),
    /// The fleet as a server sees it: clusters and their health, conflicts, forward zones.
    Status(status::Args),
    /// Print what a cluster's DNS needs to delegate the fleet's zones to fleetdns, or patch
    /// it into a Corefile.
    StubDomains(stub_domains::Args),
    /// Publish to external DNS once, as ExternalDNS would: every `[[sync]]` block of the
    /// config, from its sources. Exits 0 when every change was applied, 1 otherwise.
    Sync {
        #[arg(long)]
        config: PathBuf,
        /// Print the plan (creates, updates, deletes, and what another owner holds); change
        /// nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Istio: the ServiceEntries a consuming cluster needs for the fleet's services.
    #[command(subcommand)]
    Istio(istio::IstioCommand),
}

fn init_logs(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("FLEETDNS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The `fleetdns` command line: parses the arguments, runs the subcommand, and returns the
/// process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    if !matches!(cli.command, Command::Serve { .. } | Command::Agent { .. }) {
        runtime::signals::exit_quietly_on_closed_stdout();
    }
    let result = match cli.command {
        Command::Serve { config, listen } => serve::serve(&config, listen),
        Command::Agent { config } => agent::agent(&config),
        Command::CheckConfig { config } => check_config::check_config(&config),
        Command::StubDomains(args) => stub_domains::run(&args),
        Command::Sync { config, dry_run } => sync::sync_command(&config, dry_run),
        Command::Query(args) => query::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Istio(cmd) => istio::run(&cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fleetdns: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
