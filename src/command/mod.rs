//! The command line: one file per subcommand, each a clap struct and a `run` function.

/// Prints a line of results on stdout, returning an error (never panicking) when stdout
/// is closed or full; `main` ends quietly on a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::command::write_line(format_args!($($arg)*))?
    };
}

pub(crate) mod certs;
mod demo;
mod enqueue;
mod maintenance;
pub(crate) mod run;
pub(crate) mod sim;
mod status;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Layer, Settings};
use crate::error::Result;
use crate::store::Store;

/// Bulk-delete stored files from the Acronis Notary service and keep every certificate.
///
/// Put file IDs in the queue with `enqueue` (or plain SQL), delete them with `run` (from
/// cron), and look certificates up later with `certs`. Try it all with `demo`.
#[derive(Debug, Parser)]
#[command(name = "notary-purge", version, max_term_width = 100)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Config file (TOML, see jobs.example.toml)
    #[arg(long, global = true, env = "NOTARY_PURGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// SQLite database holding the queue and the archive [default: notary-purge.db]
    #[arg(
        long,
        global = true,
        env = "NOTARY_PURGE_DATABASE",
        value_name = "PATH"
    )]
    pub db: Option<PathBuf>,
    /// Notary API root, e.g. https://eu2-cloud.acronis.com/api/notary/v2
    #[arg(long, global = true, env = "NOTARY_PURGE_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// Extra trusted root certificates (PEM), for a private CA; SSL_CERT_FILE also works
    #[arg(long, global = true, env = "NOTARY_PURGE_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug, -vvv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr, and no progress bar
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event
    Text,
    /// One JSON object per event
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[expect(
    missing_docs,
    reason = "clap takes each subcommand's help from its Args struct"
)]
pub enum Command {
    Enqueue(enqueue::Args),
    Run(run::Args),
    Status(status::Args),
    Certs(certs::Args),
    Retry(maintenance::RetryArgs),
    Cancel(maintenance::CancelArgs),
    Sim(sim::Args),
    Demo(demo::Args),
}

/// How a command ended, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Success = 0,
    /// Some items failed or were rejected; see `status`.
    ItemsFailed = 1,
    /// Bad usage, configuration or database (also used by `main` for errors).
    Usage = 2,
    /// The service refused to go on (401 or 402); nothing was lost.
    Stopped = 3,
    /// Interrupted by SIGINT or SIGTERM; unfinished items are pending again.
    Interrupted = 130,
}

/// Runs the parsed command.
pub async fn execute(cli: Cli) -> Result<Exit> {
    let global = &cli.global;
    match cli.command {
        Command::Enqueue(args) => enqueue::run(global, args).await,
        Command::Run(args) => run::run(global, args).await,
        Command::Status(args) => status::run(global, args).await,
        Command::Certs(args) => certs::run(global, args).await,
        Command::Retry(args) => maintenance::retry(global, args).await,
        Command::Cancel(args) => maintenance::cancel(global, args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Demo(args) => demo::run(global, args).await,
    }
}

impl GlobalArgs {
    /// Settings from the config file, then the environment and global flags over it.
    pub fn settings(&self, flags: Layer) -> Result<Settings> {
        let file = match &self.config {
            Some(path) => Layer::from_file(path)?,
            None => Layer::default(),
        };
        let global = Layer {
            database: self.db.clone(),
            base_url: self.base_url.clone(),
            ca_cert: self.ca_cert.clone(),
            client_id: std::env::var("NOTARY_PURGE_CLIENT_ID").ok(),
            ..Layer::default()
        };
        flags.over(global).over(file).resolve()
    }

    /// Whether a progress bar may be drawn.
    pub fn wants_progress(&self) -> bool {
        use std::io::IsTerminal;
        !self.quiet && std::io::stderr().is_terminal()
    }
}

/// Writes one line to stdout; see `outln!`.
pub(crate) fn write_line(line: std::fmt::Arguments<'_>) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").map_err(|source| crate::error::Error::Io {
        context: "cannot write to stdout".to_string(),
        source,
    })
}

/// Opens the configured database, which must exist.
async fn open_store(settings: &Settings) -> Result<Store> {
    Store::open_existing(&settings.database).await
}
