//! `enqueue`: add a batch of file IDs to the queue.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;

use crate::command::{Exit, GlobalArgs};
use crate::config::Layer;
use crate::error::{Error, Result};
use crate::input::{parse_line, Entries, Entry};
use crate::store::{EnqueueReport, Store};

/// Add a batch of file IDs to the queue
///
/// IDs come from arguments, a file (--file) or standard input (`-`), one per line.
/// Byte-order marks, CRLF, blank lines, white space, `#` comments, upper case and
/// duplicates are fine. Lines that are not UUIDs are reported with their line number and
/// stored as `rejected` (never sent); the valid IDs of the input are enqueued. The whole
/// batch is written in one transaction.
///
/// Example: notary-purge enqueue --label retention-2019 --file old-files.txt
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A name for the batch, shown by `status`
    #[arg(long)]
    label: Option<String>,
    /// Read IDs from this file (`-` for standard input)
    #[arg(long, short, value_name = "FILE", conflicts_with = "ids")]
    file: Option<PathBuf>,
    /// Print the report as JSON on stdout
    #[arg(long)]
    json: bool,
    /// File IDs, or `-` to read them from standard input
    #[arg(value_name = "IDS")]
    ids: Vec<String>,
}

/// Runs `enqueue`.
pub async fn run(global: &GlobalArgs, args: Args) -> Result<Exit> {
    let settings = global.settings(Layer::default())?;
    let store = Store::open(&settings.database).await?;
    let label = args.label.as_deref();

    if args.ids.len() > 1 && args.ids.iter().any(|id| id == "-") {
        return Err(Error::Config(
            "`-` (read standard input) cannot be mixed with IDs as arguments".to_string(),
        ));
    }
    let from_stdin = args.ids == ["-"] || args.file.as_deref() == Some("-".as_ref());
    let (source, report) = if from_stdin {
        let entries = Entries::new(io::stdin().lock());
        (
            "<stdin>".to_string(),
            store.enqueue(label, "<stdin>", entries).await?,
        )
    } else if let Some(path) = &args.file {
        let source = path.display().to_string();
        let file = File::open(path).map_err(|err| Error::Io {
            context: format!("cannot open `{source}`; nothing was enqueued"),
            source: err,
        })?;
        let entries = Entries::new(BufReader::new(file));
        let report = store.enqueue(label, &source, entries).await?;
        (source, report)
    } else if !args.ids.is_empty() {
        let report = store
            .enqueue(label, "<args>", argument_entries(&args.ids))
            .await?;
        ("<args>".to_string(), report)
    } else {
        return Err(Error::Config(
            "no IDs given: pass them as arguments, with --file FILE, or `-` for stdin".into(),
        ));
    };
    store.close().await;

    print_report(&source, &report, args.json)?;
    Ok(if report.n_rejected > 0 {
        Exit::ItemsFailed
    } else {
        Exit::Success
    })
}

fn argument_entries(ids: &[String]) -> impl Iterator<Item = io::Result<Entry>> + '_ {
    ids.iter().enumerate().filter_map(|(index, text)| {
        let id = parse_line(text)?;
        Some(Ok(Entry {
            line: index as u64 + 1,
            id,
        }))
    })
}

fn print_report(source: &str, report: &EnqueueReport, json: bool) -> Result<()> {
    let place = if source == "<args>" {
        "argument"
    } else {
        "line"
    };
    for (line, text) in &report.rejected {
        eprintln!(
            "error: {source}: {place} {line}: not a UUID: `{text}` \
             (stored as rejected, never sent)"
        );
    }
    if report.n_rejected > report.rejected.len() as u64 {
        let more = report.n_rejected - report.rejected.len() as u64;
        eprintln!("error: {source}: and {more} more lines that are not UUIDs");
    }

    if json {
        let rejected: Vec<_> = report
            .rejected
            .iter()
            .map(|(line, text)| serde_json::json!({ "line": line, "text": text }))
            .collect();
        let value = serde_json::json!({
            "batch_id": report.batch_id,
            "enqueued": report.enqueued,
            "duplicates": report.duplicates,
            "rejected": rejected,
            "n_rejected": report.n_rejected,
        });
        outln!("{value}");
        return Ok(());
    }
    match report.batch_id {
        None if report.duplicates > 0 => outln!(
            "nothing to enqueue: the {} IDs in {source} are all queued already",
            report.duplicates
        ),
        None => outln!("nothing to enqueue: `{source}` holds no IDs"),
        Some(batch_id) => outln!(
            "batch {batch_id}: {} enqueued, {} duplicates skipped, {} rejected (from {source})",
            report.enqueued,
            report.duplicates,
            report.n_rejected
        ),
    }
    Ok(())
}
