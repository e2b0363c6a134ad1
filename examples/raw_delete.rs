//! The raw HTTP ceiling of the benchmarks (see BENCHMARKS.md): the same bulk
//! `DELETE /stored-files` requests that `notary-purge run` sends, for the simulator's
//! generated files, from `concurrency` tasks, with no database, no capture and no retries.
//!
//! Usage: NOTARY_TOKEN=sim-token raw_delete BASE_URL N_IDS CHUNK_SIZE CONCURRENCY
//! Prints one line: `raw: deleted N of M IDs in X.XXs (N IDs/s, N requests/s)`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use notary_purge::sim::generated_file_id;
use serde::Deserialize;

/// What the command line asks for.
struct Options {
    url: String,
    n_ids: u64,
    chunk_size: u64,
    concurrency: u64,
}

/// What every task shares.
struct Shared {
    http: reqwest::Client,
    token: String,
    options: Options,
    next_chunk: AtomicU64,
}

/// The part of a bulk answer the ceiling reads.
#[derive(Deserialize)]
struct Answer {
    deleted: Vec<Deleted>,
}

#[derive(Deserialize)]
struct Deleted {
    cert: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_args(std::env::args().skip(1).collect())?;
    let n_ids = options.n_ids;
    let n_requests = n_ids.div_ceil(options.chunk_size);
    let shared = Arc::new(Shared {
        http: reqwest::Client::new(),
        token: std::env::var("NOTARY_TOKEN").unwrap_or_else(|_| "sim-token".to_string()),
        next_chunk: AtomicU64::new(0),
        options,
    });

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..shared.options.concurrency {
        tasks.spawn(delete_chunks(shared.clone()));
    }
    let mut n_deleted = 0;
    while let Some(joined) = tasks.join_next().await {
        n_deleted += joined.context("a task panicked")??;
    }

    let secs = started.elapsed().as_secs_f64();
    println!(
        "raw: deleted {n_deleted} of {n_ids} IDs in {secs:.2}s ({:.0} IDs/s, {:.0} requests/s)",
        n_deleted as f64 / secs,
        n_requests as f64 / secs
    );
    Ok(())
}

fn parse_args(args: Vec<String>) -> anyhow::Result<Options> {
    let [url, n_ids, chunk_size, concurrency] = <[String; 4]>::try_from(args)
        .map_err(|_| anyhow::anyhow!("usage: raw_delete BASE_URL N_IDS CHUNK_SIZE CONCURRENCY"))?;
    let number = |text: &str, what: &str| -> anyhow::Result<u64> {
        let value: u64 = text.parse().with_context(|| format!("{what}: `{text}`"))?;
        anyhow::ensure!(value > 0, "{what} must be at least 1");
        Ok(value)
    };
    Ok(Options {
        url: format!("{}/stored-files", url.trim_end_matches('/')),
        n_ids: number(&n_ids, "N_IDS")?,
        chunk_size: number(&chunk_size, "CHUNK_SIZE")?,
        concurrency: number(&concurrency, "CONCURRENCY")?,
    })
}

/// Takes the next chunk of IDs until none is left; returns how many the service deleted.
async fn delete_chunks(shared: Arc<Shared>) -> anyhow::Result<u64> {
    let options = &shared.options;
    let mut n_deleted = 0;
    loop {
        let first = shared.next_chunk.fetch_add(1, Ordering::Relaxed) * options.chunk_size;
        if options.n_ids <= first {
            return Ok(n_deleted);
        }
        let last = (first + options.chunk_size).min(options.n_ids);
        let file_ids: Vec<String> = (first..last).map(generated_file_id).collect();

        let response = shared
            .http
            .delete(&options.url)
            .bearer_auth(&shared.token)
            .json(&serde_json::json!({ "file_ids": file_ids }))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("bulk delete failed")?;
        let answer: Answer = response.json().await.context("unreadable answer")?;
        n_deleted += answer
            .deleted
            .iter()
            .filter(|entry| entry.cert.len() == 64)
            .count() as u64;
    }
}
