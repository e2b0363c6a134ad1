//! The run: lease chunks of items, capture their certificates, delete them, and record
//! every outcome. All concurrency of the tool lives here.
//!
//! Each of `concurrency` workers loops: claim a chunk, process it with one request at a
//! time, commit its outcome. So there are at most `concurrency` requests in flight and
//! `concurrency` chunks in memory, however long the queue.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::backoff::Backoff;
use crate::client::{CallError, DeletedEntry, NotaryClient, SingleDelete, StoredFile};
use crate::error::{Error, Result};
use crate::file_id::FileId;
use crate::state::ItemState;
use crate::store::{Archived, Claimed, Outcome, Store, WriteOp, Written};

/// Writes of different workers committed together, at most.
const MAX_WRITE_BATCH: usize = 64;

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// File IDs per bulk request.
    pub chunk_size: u32,
    /// Workers, hence requests in flight at once.
    pub concurrency: u32,
    /// Tries per request.
    pub max_attempts: u32,
    /// Retry timing.
    pub backoff: Backoff,
    /// How long the run's hold on an item lasts without renewal.
    pub lease: Duration,
    /// Read and store each file's certificate before sending it.
    pub capture_certificates: bool,
    /// Send at most this many files for deletion.
    pub max_delete: Option<u64>,
}

/// Why a run ended before the queue was empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The service answered 401.
    Unauthorized(String),
    /// The service answered 402.
    Quota(String),
    /// The service could not be reached, even after retries.
    Unreachable(String),
    /// SIGINT or SIGTERM.
    Interrupted,
    /// `--max-delete` was reached.
    MaxDelete(u64),
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunSummary {
    /// Files deleted (their certificates are archived).
    pub deleted: u64,
    /// Files the service no longer had.
    pub already_gone: u64,
    /// Items that are not valid IDs or that the service refused for good.
    pub rejected: u64,
    /// Items given up on in this run (a later run tries again).
    pub failed: u64,
    /// Items put back to `pending` because the run stopped early.
    pub left_pending: u64,
    /// Outcomes not recorded because another run had taken the items over.
    pub fenced: u64,
    /// Open items left in the queue after the run (for any run to take).
    pub still_queued: u64,
    /// Wall-clock time of the run.
    #[serde(serialize_with = "as_seconds")]
    pub elapsed: Duration,
    /// Why the run stopped early, if it did.
    #[serde(skip)]
    pub stop: Option<Stop>,
}

impl RunSummary {
    /// Items brought to an outcome per second.
    pub fn ids_per_second(&self) -> f64 {
        let done = self.deleted + self.already_gone + self.rejected + self.failed;
        done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn as_seconds<S: serde::Serializer>(elapsed: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(elapsed.as_secs_f64())
}

/// Runs until no open item is left, the run is stopped, or a database error occurs.
///
/// `shutdown` completing asks the run to stop taking new chunks; chunks in flight are
/// finished or put back to `pending`, and committed.
pub async fn run(
    store: &Store,
    client: &NotaryClient,
    options: &RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    progress: ProgressBar,
) -> Result<RunSummary> {
    let started = Instant::now();
    let (stop_sender, _) = watch::channel(false);
    let run_id = uuid::Uuid::new_v4().to_string();
    let (writes, write_requests) = mpsc::channel(MAX_WRITE_BATCH);
    let writer = tokio::spawn(write_in_batches(
        store.clone(),
        run_id.clone(),
        options.lease,
        write_requests,
    ));
    let ctx = Arc::new(Ctx {
        writes,
        store: store.clone(),
        client: client.clone(),
        options: options.clone(),
        run_id,
        stopping: stop_sender,
        stop: Mutex::new(None),
        budget: options.max_delete.map(AtomicU64::new),
        budget_spent: AtomicBool::new(false),
        summary: Mutex::new(RunSummary::default()),
        progress,
    });
    tracing::info!(run_id = %ctx.run_id, "run.started");

    let watcher = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            shutdown.await;
            ctx.request_stop(Stop::Interrupted);
        })
    };
    let heartbeat = tokio::spawn(renew_leases(ctx.clone()));
    let mut workers = JoinSet::new();
    for _ in 0..options.concurrency {
        workers.spawn(work(ctx.clone()));
    }
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        let result = joined.expect("workers do not panic");
        if let Err(err) = result {
            ctx.request_stop(Stop::Interrupted);
            first_error.get_or_insert(err);
        }
    }
    watcher.abort();
    heartbeat.abort();
    // Every worker has had its writes answered, so the writer is idle (or failed).
    writer.abort();
    if let Ok(Err(err)) = writer.await {
        return Err(err);
    }

    // Nothing should be left leased; this catches a worker that ended on an error.
    let released = store.release(&ctx.run_id).await?;
    if let Some(err) = first_error {
        return Err(err);
    }
    let mut summary = ctx.summary.lock().expect("summary lock").clone();
    summary.left_pending += released;
    summary.still_queued = store.count_open().await?;
    summary.elapsed = started.elapsed();
    summary.stop = ctx.stop.lock().expect("stop lock").clone();
    let budget_spent = ctx.budget_spent.load(Ordering::SeqCst);
    if summary.stop.is_none() && budget_spent && summary.still_queued > 0 {
        summary.stop = Some(Stop::MaxDelete(options.max_delete.unwrap_or(0)));
    }
    tracing::info!(
        deleted = summary.deleted,
        already_gone = summary.already_gone,
        rejected = summary.rejected,
        failed = summary.failed,
        left_pending = summary.left_pending,
        still_queued = summary.still_queued,
        elapsed_secs = summary.elapsed.as_secs_f64(),
        "run.finished"
    );
    Ok(summary)
}

/// What every worker shares.
struct Ctx {
    writes: mpsc::Sender<WriteRequest>,
    store: Store,
    client: NotaryClient,
    options: RunOptions,
    run_id: String,
    stopping: watch::Sender<bool>,
    stop: Mutex<Option<Stop>>,
    budget: Option<AtomicU64>,
    budget_spent: AtomicBool,
    summary: Mutex<RunSummary>,
    progress: ProgressBar,
}

/// Writes a worker waits for, committed together with other workers' writes.
struct WriteRequest {
    ops: Vec<WriteOp>,
    reply: oneshot::Sender<Vec<Written>>,
}

/// Commits the workers' writes, batching those that queue up while a commit is under way:
/// with many workers, one fsync covers many chunks.
async fn write_in_batches(
    store: Store,
    run_id: String,
    lease: Duration,
    mut requests: mpsc::Receiver<WriteRequest>,
) -> Result<()> {
    let mut batch = Vec::with_capacity(MAX_WRITE_BATCH);
    while requests.recv_many(&mut batch, MAX_WRITE_BATCH).await > 0 {
        let mut ops = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        for request in batch.drain(..) {
            replies.push((request.reply, request.ops.len()));
            ops.extend(request.ops);
        }
        let started = Instant::now();
        let mut written = store.write_batch(&run_id, lease, &ops).await?.into_iter();
        tracing::trace!(
            ops = ops.len(),
            micros = started.elapsed().as_micros() as u64,
            "db.batch_committed"
        );
        for (reply, n_ops) in replies {
            // A worker that stopped waiting has nothing left to do with the answer.
            let _ = reply.send(written.by_ref().take(n_ops).collect());
        }
    }
    Ok(())
}

impl Ctx {
    /// Commits `ops` (with whatever other workers asked for meanwhile) and returns their
    /// results, in order.
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<Written>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest { ops, reply };
        self.writes
            .send(request)
            .await
            .map_err(|_| Error::WriterStopped)?;
        answer.await.map_err(|_| Error::WriterStopped)
    }

    fn request_stop(&self, reason: Stop) {
        self.stop.lock().expect("stop lock").get_or_insert(reason);
        self.stopping.send_replace(true);
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Takes up to `wanted` from the `--max-delete` budget.
    fn take_budget(&self, wanted: u32) -> u32 {
        let Some(budget) = &self.budget else {
            return wanted;
        };
        let mut taken = 0;
        let _ = budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            taken = left.min(u64::from(wanted));
            Some(left - taken)
        });
        taken as u32
    }

    fn return_budget(&self, unused: u32) {
        if let Some(budget) = &self.budget {
            budget.fetch_add(u64::from(unused), Ordering::SeqCst);
        }
    }
}

async fn renew_leases(ctx: Arc<Ctx>) {
    let period = (ctx.options.lease / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(period).await;
        if let Err(err) = ctx
            .store
            .extend_leases(&ctx.run_id, ctx.options.lease)
            .await
        {
            tracing::warn!(error = %err, "lease.renew_failed");
        }
    }
}

async fn work(ctx: Arc<Ctx>) -> Result<()> {
    let mut claimed = commit_and_claim(&ctx, None).await?;
    while !claimed.is_empty() {
        let finished = process_chunk(&ctx, claimed).await?;
        claimed = commit_and_claim(&ctx, Some(finished)).await?;
    }
    Ok(())
}

/// Commits a finished chunk and, in the same transaction, claims the next one (unless the
/// run is stopping or `--max-delete` is reached): one trip to the writer per chunk.
///
/// FIXME: the worker sends nothing while it waits for this commit, so the writer's time
/// sits on the path of every request (T2 in BENCHMARKS.md: waves every 150 to 200 ms at
/// 50 ms latency); claiming the next chunk while the current request is in flight would
/// take it off that path.
async fn commit_and_claim(ctx: &Ctx, finished: Option<Finished>) -> Result<Vec<Claimed>> {
    let limit = match ctx.is_stopping() {
        true => 0,
        false => ctx.take_budget(ctx.options.chunk_size),
    };
    if limit == 0 && !ctx.is_stopping() {
        // Not a stop request: the chunks other workers hold still go out.
        ctx.budget_spent.store(true, Ordering::SeqCst);
    }

    let mut ops = Vec::with_capacity(2);
    let mut recorded = None;
    if let Some(finished) = finished {
        recorded = Some((finished.counts, finished.outcomes.len()));
        ops.push(WriteOp::Outcomes {
            outcomes: finished.outcomes,
            certificates: finished.certificates,
        });
    }
    if limit > 0 {
        ops.push(WriteOp::Claim { limit });
    }
    let mut written = ctx.write(ops).await?.into_iter();

    if let Some((counts, n_items)) = recorded {
        let Some(Written::Recorded { n_fenced }) = written.next() else {
            unreachable!("outcomes answer with a fenced count");
        };
        // Items put back were not sent: they do not count against --max-delete.
        ctx.return_budget(counts.left_pending as u32);
        tally(ctx, &counts, n_items, n_fenced);
    }
    let claimed = match written.next() {
        Some(Written::Claimed(claimed)) => claimed,
        _ => Vec::new(),
    };
    ctx.return_budget(limit - claimed.len() as u32);
    Ok(claimed)
}

/// One claimed item on its way to an outcome.
struct Work {
    claimed: Claimed,
    file_id: Option<FileId>,
    /// Another item of the chunk with the same file ID, whose outcome this one shares.
    same_as: Option<usize>,
    attempts: u32,
    needs_lookup: bool,
    captured: Option<(String, String)>,
    outcome: Option<(ItemState, Option<String>)>,
    archive: Option<Archived>,
}

impl Work {
    fn new(claimed: Claimed) -> Work {
        let captured = match (&claimed.captured_cert, &claimed.captured_raw) {
            (Some(cert), Some(raw)) => Some((cert.clone(), raw.clone())),
            _ => None,
        };
        Work {
            file_id: claimed.file_id.trim().parse().ok(),
            same_as: None,
            attempts: 0,
            needs_lookup: claimed.needs_lookup,
            captured,
            outcome: None,
            archive: None,
            claimed,
        }
    }

    fn is_open(&self) -> bool {
        self.outcome.is_none() && self.file_id.is_some() && self.same_as.is_none()
    }

    fn decide(&mut self, state: ItemState, note: Option<String>) {
        self.outcome = Some((state, note));
    }

    /// Records the deletion with the certificate the service gave, or the captured one.
    fn deleted(&mut self, cert: Option<String>, raw: Option<String>, note: Option<&str>) {
        let file_id = self
            .file_id
            .expect("only valid items are sent")
            .to_canonical();
        let (cert, raw, mut anomaly) = match (cert, raw, &self.captured) {
            (Some(cert), Some(raw), captured) => {
                let differs = captured.as_ref().filter(|(seen, _)| *seen != cert);
                let anomaly = differs.map(|(seen, _)| {
                    format!("differs from the certificate `{seen}` read before deletion")
                });
                (cert, raw, anomaly)
            }
            (_, _, Some((cert, raw))) => (cert.clone(), raw.clone(), note.map(str::to_string)),
            (_, _, None) => {
                self.decide(
                    ItemState::Deleted,
                    Some("the service deleted it without giving its certificate".to_string()),
                );
                return;
            }
        };
        if !is_certificate_id(&cert) {
            anomaly = Some("the certificate is not 64 hex digits".to_string());
        }
        self.archive = Some(Archived {
            file_id,
            cert,
            batch_id: self.claimed.batch_id,
            raw,
            anomaly,
        });
        self.decide(ItemState::Deleted, None);
    }

    /// The service has no such file: deleted (if its certificate is known) or gone.
    fn gone(&mut self, why: &str) {
        if self.captured.is_some() {
            self.deleted(None, None, Some(why));
            return;
        }
        let note = self.needs_lookup.then(|| {
            "gone after an attempt whose outcome was lost; its certificate was not captured"
                .to_string()
        });
        self.decide(ItemState::AlreadyGone, note);
    }
}

fn is_certificate_id(cert: &str) -> bool {
    cert.len() == 64 && cert.bytes().all(|byte| byte.is_ascii_hexdigit())
}

async fn process_chunk(ctx: &Ctx, claimed: Vec<Claimed>) -> Result<Finished> {
    let mut works: Vec<Work> = claimed.into_iter().map(Work::new).collect();
    mark_invalid_and_repeated(&mut works);

    look_up(ctx, &mut works).await?;
    let missing = send_bulk(ctx, &mut works).await;
    for index in missing {
        resolve_single(ctx, &mut works[index]).await?;
    }
    Ok(Finished::new(works))
}

fn mark_invalid_and_repeated(works: &mut [Work]) {
    let mut first_seen: HashMap<FileId, usize> = HashMap::new();
    for (index, work) in works.iter_mut().enumerate() {
        match work.file_id {
            None => work.decide(ItemState::Rejected, Some("not a UUID".to_string())),
            Some(file_id) => match first_seen.get(&file_id) {
                Some(first) => work.same_as = Some(*first),
                None => {
                    first_seen.insert(file_id, index);
                }
            },
        }
    }
}

/// Reads certificates before anything is sent, and stores them durably.
async fn look_up(ctx: &Ctx, works: &mut [Work]) -> Result<()> {
    let mut captures = Vec::new();
    for work in works.iter_mut() {
        let wanted = ctx.options.capture_certificates || work.needs_lookup;
        if !work.is_open() || work.captured.is_some() || !wanted || ctx.is_stopping() {
            continue;
        }
        let file_id = work.file_id.expect("open items are valid");
        let result = retrying(ctx, || ctx.client.get_file(&file_id)).await;
        work.attempts += result.attempts;
        match result.value {
            Ok(Some(file)) => {
                let raw = file.raw.to_string();
                captures.push((work.claimed.item_id, file.cert.clone(), raw.clone()));
                work.captured = Some((file.cert, raw));
                work.needs_lookup = false;
            }
            Ok(None) => work.gone("gone when looked up"),
            Err(failure) => fail_one(ctx, work, failure),
        }
    }
    if !captures.is_empty() {
        ctx.write(vec![WriteOp::Captures(captures)]).await?;
    }
    Ok(())
}

/// Sends the open items in bulk, narrowing refused requests down to the IDs that cause
/// them. Returns the items the service did not list as deleted, to be resolved singly.
async fn send_bulk(ctx: &Ctx, works: &mut [Work]) -> Vec<usize> {
    let open: Vec<usize> = (0..works.len()).filter(|&i| works[i].is_open()).collect();
    let mut missing = Vec::new();
    let mut groups = if open.is_empty() { vec![] } else { vec![open] };
    while let Some(group) = groups.pop() {
        if ctx.is_stopping() {
            continue;
        }
        let ids: Vec<FileId> = group
            .iter()
            .map(|&i| works[i].file_id.expect("open"))
            .collect();
        let result = retrying(ctx, || ctx.client.delete_many(&ids)).await;
        for &index in &group {
            works[index].attempts += result.attempts;
        }
        match result.value {
            Ok(entries) => missing.extend(apply_deleted(works, &group, entries)),
            Err(Failure::Call(CallError::Refused { status, message })) if group.len() > 1 => {
                tracing::debug!(status, error = %message, size = group.len(), "chunk.narrowing");
                let (left, right) = group.split_at(group.len() / 2);
                groups.push(right.to_vec());
                groups.push(left.to_vec());
            }
            Err(Failure::Call(CallError::Refused { .. })) => missing.extend(group),
            Err(failure) => {
                if let Failure::Call(call_error) = &failure {
                    tracing::error!(items = group.len(), error = %call_error, "chunk.failed");
                }
                for &index in &group {
                    fail(ctx, &mut works[index], failure.clone());
                }
            }
        }
    }
    missing
}

/// Records the entries of a bulk answer; returns the requested items it did not list.
fn apply_deleted(works: &mut [Work], group: &[usize], entries: Vec<DeletedEntry>) -> Vec<usize> {
    let by_id: HashMap<FileId, usize> = group
        .iter()
        .map(|&i| (works[i].file_id.expect("open"), i))
        .collect();
    let mut listed = HashSet::new();
    for entry in entries {
        match by_id.get(&entry.file_id) {
            Some(&index) if listed.insert(index) => {
                works[index].deleted(entry.cert, Some(entry.raw), None);
            }
            Some(_) => (),
            None => tracing::warn!(file_id = %entry.file_id, "answer.unrequested_entry"),
        }
    }
    group
        .iter()
        .copied()
        .filter(|index| !listed.contains(index))
        .collect()
}

/// Finds out what happened to one file the bulk answer did not list, with the
/// single-file calls: 204 deleted, 404 gone.
async fn resolve_single(ctx: &Ctx, work: &mut Work) -> Result<()> {
    if ctx.is_stopping() {
        return Ok(());
    }
    let file_id = work.file_id.expect("open items are valid");
    if work.captured.is_none() {
        // Read the certificate first, so that a 204 still leaves one in the archive.
        let result = retrying(ctx, || ctx.client.get_file(&file_id)).await;
        work.attempts += result.attempts;
        match result.value {
            Ok(Some(StoredFile { cert, raw })) => {
                let raw = raw.to_string();
                let capture = vec![(work.claimed.item_id, cert.clone(), raw.clone())];
                ctx.write(vec![WriteOp::Captures(capture)]).await?;
                work.captured = Some((cert, raw));
            }
            Ok(None) => {
                work.gone("gone when looked up");
                return Ok(());
            }
            Err(failure) => {
                fail_one(ctx, work, failure);
                return Ok(());
            }
        }
    }
    let result = retrying(ctx, || ctx.client.delete_one(&file_id)).await;
    work.attempts += result.attempts;
    match result.value {
        Ok(SingleDelete::Deleted) => work.deleted(None, None, None),
        Ok(SingleDelete::NotFound) => {
            work.gone("missing from the bulk answer; gone when deleted singly");
        }
        Err(failure) => fail_one(ctx, work, failure),
    }
    Ok(())
}

/// `fail`, with one log line for the item.
fn fail_one(ctx: &Ctx, work: &mut Work, failure: Failure) {
    fail(ctx, work, failure);
    // Only items that end failed or rejected; a stop puts them back to pending.
    if let Some((state, Some(error))) = &work.outcome {
        tracing::error!(file_id = %work.claimed.file_id, %state, %error, "item.failed");
    }
}

/// Records a failed call on an item: rejected, failed, or left for later.
fn fail(ctx: &Ctx, work: &mut Work, failure: Failure) {
    let call_error = match failure {
        Failure::Interrupted { maybe_applied } => {
            work.needs_lookup |= maybe_applied;
            return;
        }
        Failure::Call(call_error) => call_error,
    };
    work.needs_lookup |= call_error.maybe_applied();
    let message = call_error.to_string();
    match &call_error {
        CallError::Unauthorized(_) => ctx.request_stop(Stop::Unauthorized(message)),
        CallError::Quota(_) => ctx.request_stop(Stop::Quota(message)),
        CallError::Unreachable(_) => ctx.request_stop(Stop::Unreachable(message)),
        CallError::Refused { status: 400, .. } => work.decide(ItemState::Rejected, Some(message)),
        _ => work.decide(ItemState::Failed, Some(message)),
    }
}

/// A processed chunk: what to record, and what to count once it is recorded.
struct Finished {
    outcomes: Vec<Outcome>,
    certificates: Vec<Archived>,
    counts: RunSummary,
}

impl Finished {
    fn new(mut works: Vec<Work>) -> Finished {
        for index in 0..works.len() {
            if let Some(first) = works[index].same_as {
                let (state, _) = works[first]
                    .outcome
                    .clone()
                    .unwrap_or((ItemState::Pending, None));
                let note = format!("same file as item {}", works[first].claimed.item_id);
                works[index].decide(state, Some(note));
            }
        }

        let mut certificates = Vec::new();
        let mut outcomes = Vec::with_capacity(works.len());
        let mut counts = RunSummary::default();
        for work in works {
            let (state, error) = work.outcome.unwrap_or((ItemState::Pending, None));
            match state {
                ItemState::Deleted => counts.deleted += 1,
                ItemState::AlreadyGone => counts.already_gone += 1,
                ItemState::Rejected => counts.rejected += 1,
                ItemState::Failed => counts.failed += 1,
                ItemState::Pending | ItemState::InFlight => counts.left_pending += 1,
            }
            certificates.extend(work.archive);
            outcomes.push(Outcome {
                item_id: work.claimed.item_id,
                state,
                error,
                attempts: work.attempts,
                needs_lookup: work.needs_lookup,
            });
        }
        Finished {
            outcomes,
            certificates,
            counts,
        }
    }
}

/// Adds a recorded chunk to the run's summary and progress.
fn tally(ctx: &Ctx, counts: &RunSummary, n_items: usize, n_fenced: u64) {
    if n_fenced > 0 {
        tracing::warn!(fenced = n_fenced, "chunk.lease_lost");
    }
    tracing::debug!(
        items = n_items,
        deleted = counts.deleted,
        already_gone = counts.already_gone,
        failed = counts.failed,
        "chunk.done"
    );
    ctx.progress.inc(n_items as u64 - counts.left_pending);
    let mut summary = ctx.summary.lock().expect("summary lock");
    summary.deleted += counts.deleted;
    summary.already_gone += counts.already_gone;
    summary.rejected += counts.rejected;
    summary.failed += counts.failed;
    summary.left_pending += counts.left_pending;
    summary.fenced += n_fenced;
}

/// Why a call gave up.
#[derive(Debug, Clone)]
enum Failure {
    /// The last error, after retries (or at once for one that is not retryable).
    Call(CallError),
    /// The run was stopped while waiting to retry.
    Interrupted {
        /// Whether an attempt may have reached the service.
        maybe_applied: bool,
    },
}

struct Retried<T> {
    value: Result<T, Failure>,
    attempts: u32,
}

/// Calls `call` until it succeeds, fails for good, runs out of attempts, or the run stops.
async fn retrying<T, F, Fut>(ctx: &Ctx, mut call: F) -> Retried<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut maybe_applied = false;
    let mut stopping = ctx.stopping.subscribe();
    for attempt in 1..=ctx.options.max_attempts {
        let err = match call().await {
            Ok(value) => return retried(Ok(value), attempt),
            Err(err) if err.is_retryable() && attempt < ctx.options.max_attempts => err,
            Err(err) => return retried(Err(Failure::Call(err)), attempt),
        };
        maybe_applied |= err.maybe_applied();
        let retry_after = match &err {
            CallError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        };
        let delay = ctx.options.backoff.delay(attempt, retry_after);
        tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, error = %err, "request.retry");
        tokio::select! {
            () = tokio::time::sleep(delay) => (),
            _ = stopping.wait_for(|stop| *stop) => {
                return retried(Err(Failure::Interrupted { maybe_applied }), attempt);
            }
        }
    }
    unreachable!("the last attempt returns")
}

fn retried<T>(value: Result<T, Failure>, attempts: u32) -> Retried<T> {
    Retried { value, attempts }
}
