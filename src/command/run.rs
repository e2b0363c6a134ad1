//! `run`: delete queued files and archive their certificates.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::client::{ClientOptions, NotaryClient};
use crate::command::{open_store, Exit, GlobalArgs};
use crate::config::{Layer, Settings};
use crate::error::{Error, Result};
use crate::runner::{self, RunOptions, RunSummary, Stop};
use crate::store::Store;

/// Delete queued files and archive their certificates (for cron)
///
/// Takes pending items (and items failed by earlier runs), reads each file's certificate,
/// sends the files in chunks to `DELETE /stored-files`, and records every outcome.
/// Safe to start from cron while another run is going: runs share the queue through
/// leases and never send the same ID at once. SIGINT/SIGTERM stops taking new chunks
/// and finishes the current ones; a second signal exits at once.
///
/// Credentials come from NOTARY_TOKEN, the config's token_file, or client_id with
/// NOTARY_CLIENT_SECRET or client_secret_file; never from a flag.
///
/// Example: NOTARY_TOKEN=... notary-purge --config /etc/notary-purge.toml run
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show what would be sent, and send nothing
    #[arg(long)]
    dry_run: bool,
    /// Send at most this many files for deletion, then stop
    #[arg(long, value_name = "N")]
    max_delete: Option<u64>,
    /// Go ahead even when more items wait than `confirm_above`
    #[arg(long)]
    yes: bool,
    /// File IDs per request [default: 100]
    #[arg(long, env = "NOTARY_PURGE_CHUNK_SIZE", value_name = "N")]
    chunk_size: Option<u32>,
    /// Requests in flight at once [default: 4]
    #[arg(long, env = "NOTARY_PURGE_CONCURRENCY", value_name = "N")]
    concurrency: Option<u32>,
    /// Requests per second, spread evenly [default: no limit]
    #[arg(
        long,
        env = "NOTARY_PURGE_MAX_REQUESTS_PER_SECOND",
        value_name = "RATE"
    )]
    max_requests_per_second: Option<f64>,
    /// Tries per request before its files are marked failed [default: 5]
    #[arg(long, env = "NOTARY_PURGE_MAX_ATTEMPTS", value_name = "N")]
    max_attempts: Option<u32>,
    /// Seconds a dead run's items stay held before another run takes them [default: 300]
    #[arg(long, env = "NOTARY_PURGE_LEASE_SECS", value_name = "SECS")]
    lease_secs: Option<u64>,
    /// Read certificates before deleting (true/false) [default: true]
    #[arg(long, env = "NOTARY_PURGE_CAPTURE_CERTIFICATES", value_name = "BOOL")]
    capture_certificates: Option<bool>,
    /// Ceiling of the first retry wait, in milliseconds [default: 500]
    #[arg(long, env = "NOTARY_PURGE_BACKOFF_BASE_MS", value_name = "MS")]
    backoff_base_ms: Option<u64>,
    /// Limit for one request, in seconds [default: 60]
    #[arg(long, env = "NOTARY_PURGE_REQUEST_TIMEOUT_SECS", value_name = "SECS")]
    request_timeout_secs: Option<u64>,
}

impl Args {
    fn layer(&self) -> Layer {
        Layer {
            chunk_size: self.chunk_size,
            concurrency: self.concurrency,
            max_requests_per_second: self.max_requests_per_second,
            max_attempts: self.max_attempts,
            lease_secs: self.lease_secs,
            capture_certificates: self.capture_certificates,
            backoff_base_ms: self.backoff_base_ms,
            request_timeout_secs: self.request_timeout_secs,
            ..Layer::default()
        }
    }
}

/// Runs `run`.
pub async fn run(global: &GlobalArgs, args: Args) -> Result<Exit> {
    let settings = global.settings(args.layer())?;
    let store = open_store(&settings).await?;

    let n_open = store.count_open().await?;
    if args.dry_run {
        print_dry_run(&store, &settings, n_open, args.max_delete).await?;
        return Ok(Exit::Success);
    }
    if n_open == 0 {
        match store.count_leased().await? {
            0 => outln!("nothing to do: no pending items"),
            n_leased => outln!(
                "nothing to do: {n_leased} items are held by another run (or by one that \
                 died; they come free when its lease ends, within lease_secs)"
            ),
        }
        return Ok(Exit::Success);
    }
    let n_to_send = args.max_delete.map_or(n_open, |max| max.min(n_open));
    if n_to_send > settings.confirm_above && !args.yes {
        return Err(Error::Config(format!(
            "{n_to_send} items would be sent, more than confirm_above ({}); \
             check with `run --dry-run`, then run again with --yes (or raise confirm_above)",
            settings.confirm_above
        )));
    }

    let client = NotaryClient::new(ClientOptions {
        base_url: settings.require_base_url()?.clone(),
        credentials: settings.credentials()?,
        ca_cert: settings.ca_cert.clone(),
        request_timeout: settings.request_timeout,
        connect_timeout: settings.connect_timeout,
        max_requests_per_second: settings.max_requests_per_second,
    })?;
    let progress = progress_bar(global.wants_progress(), n_to_send);
    // An unconfirmed run never sends more than confirm_above, even if more items are
    // enqueued while it runs.
    let max_delete = match args.yes {
        true => args.max_delete,
        false => Some(args.max_delete.map_or(settings.confirm_above, |max| {
            max.min(settings.confirm_above)
        })),
    };
    let summary = runner::run(
        &store,
        &client,
        &run_options(&settings, max_delete),
        interrupted(),
        progress.clone(),
    )
    .await?;
    progress.finish_and_clear();
    store.close().await;

    print_summary(&summary)?;
    Ok(exit_for(&summary))
}

/// The runner's options from the settings.
pub(crate) fn run_options(settings: &Settings, max_delete: Option<u64>) -> RunOptions {
    RunOptions {
        chunk_size: settings.chunk_size,
        concurrency: settings.concurrency,
        max_attempts: settings.max_attempts,
        backoff: settings.backoff,
        lease: settings.lease,
        capture_certificates: settings.capture_certificates,
        max_delete,
    }
}

async fn print_dry_run(
    store: &Store,
    settings: &Settings,
    n_open: u64,
    max: Option<u64>,
) -> Result<()> {
    let n_to_send = max.map_or(n_open, |max| max.min(n_open));
    let n_chunks = n_to_send.div_ceil(u64::from(settings.chunk_size));
    outln!(
        "dry run: would send {n_to_send} of {n_open} waiting IDs in {n_chunks} chunk(s) of up \
         to {} ({} at a time); nothing was sent",
        settings.chunk_size,
        settings.concurrency
    );
    if settings.capture_certificates {
        outln!("each file's certificate would be read first (GET /stored-files/{{id}})");
    }
    let first = store.preview_open(10.min(n_to_send) as u32).await?;
    for file_id in &first {
        outln!("  {file_id}");
    }
    if n_to_send > first.len() as u64 {
        outln!("  ... and {} more", n_to_send - first.len() as u64);
    }
    Ok(())
}

fn progress_bar(visible: bool, length: u64) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} IDs ({rate} IDs/s, eta {eta})",
    )
    .expect("the template is valid")
    .with_key(
        "rate",
        |state: &ProgressState, out: &mut dyn std::fmt::Write| {
            let _ = write!(out, "{:.0}", state.per_sec());
        },
    )
    .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Completes on the first SIGINT or SIGTERM; the second one ends the process at once.
pub(crate) async fn interrupted() {
    wait_for_signal().await;
    eprintln!("stopping: finishing the requests in flight (signal again to exit at once)");
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("exiting at once; items in flight are recovered by the next run");
        std::process::exit(Exit::Interrupted as i32);
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => (),
        _ = terminate.recv() => (),
    }
}

/// Prints the one-line summary on stdout.
pub(crate) fn print_summary(summary: &RunSummary) -> Result<()> {
    let mut line = format!(
        "deleted {}, already gone {}, rejected {}, failed {}",
        summary.deleted, summary.already_gone, summary.rejected, summary.failed
    );
    if summary.still_queued > 0 {
        line.push_str(&format!(", still queued {}", summary.still_queued));
    }
    line.push_str(&format!(
        " in {:.1}s ({:.0} IDs/s)",
        summary.elapsed.as_secs_f64(),
        summary.ids_per_second()
    ));
    outln!("{line}");
    match &summary.stop {
        Some(Stop::Unauthorized(message)) => eprintln!(
            "error: the service refused the credentials ({message}); the run stopped and \
             nothing was lost: check the token or client credentials and run again"
        ),
        Some(Stop::Quota(message)) => eprintln!(
            "error: the service reports a quota limit ({message}); the run stopped and \
             nothing was lost"
        ),
        Some(Stop::Unreachable(message)) => eprintln!(
            "error: the service cannot be reached ({message}); the run stopped and nothing \
             was lost: check the network and base_url, and run again"
        ),
        Some(Stop::Interrupted) => eprintln!("interrupted: unfinished items are pending again"),
        Some(Stop::MaxDelete(max)) => eprintln!(
            "stopped at the limit of {max} files for this run (--max-delete, or \
             confirm_above without --yes)"
        ),
        None => (),
    }
    if summary.failed > 0 {
        eprintln!("see `notary-purge status` for the failed items; the next run tries them again");
    }
    Ok(())
}

/// The exit code a run's summary calls for.
pub(crate) fn exit_for(summary: &RunSummary) -> Exit {
    match summary.stop {
        Some(Stop::Unauthorized(_) | Stop::Quota(_) | Stop::Unreachable(_)) => Exit::Stopped,
        Some(Stop::Interrupted) => Exit::Interrupted,
        _ if summary.failed > 0 || summary.rejected > 0 => Exit::ItemsFailed,
        _ => Exit::Success,
    }
}
