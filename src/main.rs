//! The `notary-purge` binary: parse arguments, set up logging, run, exit.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use notary_purge::command::{self, Cli, Exit, GlobalArgs, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.global);
    let json = cli.global.log_format == LogFormat::Json;

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            let err = anyhow::Error::new(err).context("cannot start the runtime");
            return fail(&err, json);
        }
    };
    match runtime.block_on(command::execute(cli)) {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(err) => fail(&anyhow::Error::new(err), json),
    }
}

/// Prints the whole error chain once; a closed stdout (`| head`) is not an error.
fn fail(err: &anyhow::Error, json: bool) -> ExitCode {
    let is_broken_pipe = err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io_err| io_err.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if is_broken_pipe {
        return ExitCode::SUCCESS;
    }
    match json {
        true => tracing::error!(error = %chain(err), "command.failed"),
        false => eprintln!("error: {}", chain(err)),
    }
    ExitCode::from(Exit::Usage as u8)
}

/// The error and its causes on one line, leaving out a cause whose text its parent
/// already includes (database errors repeat their message one level down).
fn chain(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// Logs go to stderr; NOTARY_PURGE_LOG (an EnvFilter) wins over -v/-q.
fn init_tracing(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    // sqlx reports slow statements at `warn`; they are not an operator's concern.
    let default = || EnvFilter::new(format!("notary_purge={level},sqlx=error,warn"));
    let filter = match std::env::var("NOTARY_PURGE_LOG") {
        Err(_) => default(),
        Ok(directives) => EnvFilter::try_new(&directives).unwrap_or_else(|err| {
            eprintln!("warning: ignoring NOTARY_PURGE_LOG `{directives}`: {err}");
            default()
        }),
    };
    // No colour codes in files and cron mail.
    let is_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(is_terminal)
        .with_target(false);
    match global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
