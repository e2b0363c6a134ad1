//! `Store`: the SQLite database and every SQL statement the tool runs.
//!
//! Times come from the database's clock (`strftime(..., 'now')`), so that leases taken by
//! several runs, possibly on several machines later, are compared on one clock.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::MigrateError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};

use crate::error::{Error, Result, SqlContext};
use crate::input::Entry;
use crate::state::ItemState;

/// The database clock as stored text, e.g. `2026-12-04T15:14:48.123Z`.
macro_rules! now {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}

/// Rows per multi-row `INSERT` when enqueueing.
const INSERT_ROWS: usize = 400;

/// Rejected input lines kept for the report; the rest are only counted.
const REJECTED_KEPT: usize = 1000;

/// The queue and the archive in one SQLite database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

/// What `enqueue` did.
#[derive(Debug, Default)]
pub struct EnqueueReport {
    /// The new batch, if anything was written.
    pub batch_id: Option<i64>,
    /// IDs queued for deletion.
    pub enqueued: u64,
    /// Valid IDs skipped because they were repeated in the input or are queued already.
    pub duplicates: u64,
    /// Lines that are not IDs (stored as `rejected` items, never sent).
    pub n_rejected: u64,
    /// The first rejected lines, with their line numbers.
    pub rejected: Vec<(u64, String)>,
}

/// An item a run has leased.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// `items.id`.
    pub item_id: i64,
    /// `items.batch_id`.
    pub batch_id: i64,
    /// `items.file_id` as enqueued (not yet validated).
    pub file_id: String,
    /// The certificate read before an earlier attempt, if any.
    pub captured_cert: Option<String>,
    /// The service's JSON for `captured_cert`.
    pub captured_raw: Option<String>,
    /// An earlier attempt's outcome is unknown: look the file up before sending it.
    pub needs_lookup: bool,
}

/// The new state of a leased item.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `items.id`.
    pub item_id: i64,
    /// The state to record.
    pub state: ItemState,
    /// Why, for `failed` and `rejected` (and notes on the others).
    pub error: Option<String>,
    /// Requests that carried this item.
    pub attempts: u32,
    /// Whether the next attempt must look the file up first.
    pub needs_lookup: bool,
}

/// One write of a run; see `Store::write_batch`.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Lease up to `limit` open items.
    Claim {
        /// How many at most.
        limit: u32,
    },
    /// Store certificates read before deletion: (item ID, certificate, raw JSON).
    Captures(Vec<(i64, String, String)>),
    /// Archive certificates and record item outcomes.
    Outcomes {
        /// New item states.
        outcomes: Vec<Outcome>,
        /// Certificates to archive.
        certificates: Vec<Archived>,
    },
}

/// What a `WriteOp` did.
#[derive(Debug)]
pub enum Written {
    /// The items leased.
    Claimed(Vec<Claimed>),
    /// Captures stored.
    Captured,
    /// Outcomes recorded, but `n_fenced` of them belonged to a lease another run took.
    Recorded {
        /// Outcomes not recorded.
        n_fenced: u64,
    },
}

/// A certificate to add to the archive.
#[derive(Debug, Clone)]
pub struct Archived {
    /// Canonical file ID.
    pub file_id: String,
    /// The certificate ID as the service gave it.
    pub cert: String,
    /// The batch that asked for the deletion.
    pub batch_id: i64,
    /// The service's JSON entry for the file.
    pub raw: String,
    /// What looked wrong, if anything.
    pub anomaly: Option<String>,
}

/// A certificate read back from the archive.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Certificate {
    /// Canonical file ID.
    pub file_id: String,
    /// The certificate ID.
    pub cert: String,
    /// When the deletion was recorded (database clock, UTC).
    pub deleted_at: String,
    /// The batch that asked for the deletion.
    pub batch_id: Option<i64>,
    /// What looked wrong, if anything.
    pub anomaly: Option<String>,
    /// The service's JSON entry for the file.
    #[serde(skip)]
    pub raw: String,
}

/// Item counts of one batch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchCounts {
    /// `batches.id`.
    pub batch_id: i64,
    /// `batches.label`.
    pub label: Option<String>,
    /// `batches.source`.
    pub source: String,
    /// `batches.created_at`.
    pub created_at: String,
    /// Count per state, in `ItemState::ALL` order.
    pub counts: Vec<(ItemState, u64)>,
}

/// An item that needs a person's attention.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    /// `items.file_id`.
    pub file_id: String,
    /// `items.batch_id`.
    pub batch_id: i64,
    /// `failed` or `rejected`.
    pub state: ItemState,
    /// Requests that carried it so far.
    pub attempts: i64,
    /// Why.
    pub last_error: Option<String>,
    /// When it was last changed.
    pub updated_at: String,
}

impl Store {
    /// Opens and migrates the database at `path`, which must exist: commands that only
    /// read or manage a queue should not create an empty one on a mistyped path.
    pub async fn open_existing(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(Error::Database {
                path: path.display().to_string(),
                message: "no such file; check --db or `database` (`enqueue` creates it)"
                    .to_string(),
            });
        }
        Store::open(path).await
    }

    /// Opens (creating it with mode 0600 if needed) and migrates the database at `path`.
    pub async fn open(path: &Path) -> Result<Store> {
        let fail = |message: String| Error::Database {
            path: path.display().to_string(),
            message,
        };
        let text = path.to_string_lossy();
        if text == ":memory:" || text.starts_with("file:") || text.starts_with("sqlite:") {
            return Err(fail("give the path of a database file".to_string()));
        }
        create_if_missing(path).map_err(fail)?;

        let options = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives power loss, not only a killed process. A deletion is
            // only sent after the certificate capture that protects it is durable.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(60))
            // Checkpoint every 64 MiB of log instead of every 4 MiB: a page that many
            // chunks rewrite (a leaf of a random index) is copied into the database once
            // per checkpoint, not once per few commits. About a fifth faster on T1.
            .pragma("wal_autocheckpoint", "16384")
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|err| fail(describe_open_error(&err)))?;

        let store = Store {
            pool,
            path: path.to_path_buf(),
        };
        store.refuse_foreign_database().await?;
        store.migrate().await?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses a database that another program made: adding our tables to it would mix
    /// two programs' data in one file.
    async fn refuse_foreign_database(&self) -> Result<()> {
        let tables: Vec<String> = sqlx::query_scalar(
            "select name from sqlite_master where type = 'table' and name not like 'sqlite_%'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|err| Error::Database {
            path: self.path.display().to_string(),
            message: describe_open_error(&err),
        })?;
        let is_ours = tables.is_empty() || tables.iter().any(|name| name == "_sqlx_migrations");
        if is_ours {
            return Ok(());
        }
        Err(Error::Database {
            path: self.path.display().to_string(),
            message: format!(
                "holds another program's tables (`{}`); give notary-purge a database of its own",
                tables.join("`, `")
            ),
        })
    }

    async fn migrate(&self) -> Result<()> {
        let migrator = sqlx::migrate!("./migrations");
        match migrator.run(&self.pool).await {
            Ok(()) => Ok(()),
            Err(MigrateError::VersionMissing(version)) => Err(Error::Database {
                path: self.path.display().to_string(),
                message: format!(
                    "the schema is newer than this binary (migration {version} is unknown \
                     to it); upgrade notary-purge, it will not migrate down"
                ),
            }),
            Err(err) => Err(Error::Database {
                path: self.path.display().to_string(),
                message: format!("cannot apply the schema: {}", describe_migrate_error(&err)),
            }),
        }
    }

    /// Writes one batch from `entries` in one transaction: all of it or nothing.
    ///
    /// Invalid lines are stored as `rejected` items so the batch tells what it was given.
    /// An input without a single line (only blanks and comments) writes nothing.
    pub async fn enqueue<I>(
        &self,
        label: Option<&str>,
        source: &str,
        entries: I,
    ) -> Result<EnqueueReport>
    where
        I: Iterator<Item = io::Result<Entry>>,
    {
        let mut entries = entries.peekable();
        let mut report = EnqueueReport::default();
        let first = match entries.peek() {
            None => return Ok(report),
            Some(Err(_)) => Err(entries.next().expect("peeked").unwrap_err()),
            Some(Ok(_)) => Ok(()),
        };
        first.map_err(|source_err| read_error(source, source_err))?;

        let mut tx = self.begin_write().await?;
        let batch_id: i64 =
            sqlx::query_scalar("insert into batches (label, source) values (?, ?) returning id")
                .bind(label)
                .bind(source)
                .fetch_one(&mut *tx)
                .await
                .context("failed to create a batch")?;
        report.batch_id = Some(batch_id);

        let mut rows: Vec<Entry> = Vec::with_capacity(INSERT_ROWS);
        for entry in entries {
            rows.push(entry.map_err(|err| read_error(source, err))?);
            if rows.len() == INSERT_ROWS {
                insert_rows(&mut tx, batch_id, &rows, &mut report).await?;
                rows.clear();
            }
        }
        insert_rows(&mut tx, batch_id, &rows, &mut report).await?;
        if report.enqueued == 0 && report.n_rejected == 0 {
            // Only IDs already queued: an empty batch would tell nobody anything.
            report.batch_id = None;
            return Ok(report);
        }
        tx.commit().await.context("failed to commit the batch")?;
        Ok(report)
    }

    /// Runs `ops` in one transaction, in order: one commit (one fsync) for the work of
    /// many workers. The runner batches whatever its workers asked for meanwhile.
    pub async fn write_batch(
        &self,
        run_id: &str,
        lease: Duration,
        ops: &[WriteOp],
    ) -> Result<Vec<Written>> {
        let mut tx = self.begin_write().await?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let written = match op {
                WriteOp::Claim { limit } => {
                    Written::Claimed(claim(&mut tx, run_id, *limit, lease).await?)
                }
                WriteOp::Captures(captures) => {
                    record_captures(&mut tx, run_id, captures).await?;
                    Written::Captured
                }
                WriteOp::Outcomes {
                    outcomes,
                    certificates,
                } => {
                    let n_fenced = record_outcomes(&mut tx, run_id, outcomes, certificates).await?;
                    Written::Recorded { n_fenced }
                }
            };
            results.push(written);
        }
        tx.commit().await.context("failed to commit")?;
        Ok(results)
    }

    /// Leases up to `limit` open items to `run_id` for `lease` and returns them.
    ///
    /// Open means `pending`, `failed` by an earlier run, or `in_flight` under a lease that
    /// ran out (its run died). Taking such an item over marks it for a look-up.
    pub async fn claim(&self, run_id: &str, limit: u32, lease: Duration) -> Result<Vec<Claimed>> {
        match self
            .write_one(run_id, lease, WriteOp::Claim { limit })
            .await?
        {
            Written::Claimed(claimed) => Ok(claimed),
            _ => unreachable!("a claim answers with claimed items"),
        }
    }

    /// Archives `certificates` and records `outcomes`, in one transaction.
    ///
    /// Certificates are always archived: what the service said it deleted is a fact,
    /// whoever holds the lease. Item states are fenced: a run whose lease was taken over
    /// changes nothing. Returns how many outcomes were fenced off.
    pub async fn record_outcomes(
        &self,
        run_id: &str,
        outcomes: &[Outcome],
        certificates: &[Archived],
    ) -> Result<u64> {
        let op = WriteOp::Outcomes {
            outcomes: outcomes.to_vec(),
            certificates: certificates.to_vec(),
        };
        match self.write_one(run_id, Duration::ZERO, op).await? {
            Written::Recorded { n_fenced } => Ok(n_fenced),
            _ => unreachable!("outcomes answer with a fenced count"),
        }
    }

    async fn write_one(&self, run_id: &str, lease: Duration, op: WriteOp) -> Result<Written> {
        let mut written = self.write_batch(run_id, lease, &[op]).await?;
        Ok(written.pop().expect("one result per op"))
    }

    /// Pushes back the end of every lease `run_id` holds.
    pub async fn extend_leases(&self, run_id: &str, lease: Duration) -> Result<u64> {
        let result = sqlx::query(
            "update items set lease_until = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2)
where state = 'in_flight' and lease_owner = ?1",
        )
        .bind(run_id)
        .bind(format!("+{} seconds", lease.as_secs().max(1)))
        .execute(&self.pool)
        .await
        .context("failed to extend leases")?;
        Ok(result.rows_affected())
    }

    /// Puts every item `run_id` still holds back to `pending` (graceful shutdown).
    pub async fn release(&self, run_id: &str) -> Result<u64> {
        let result = sqlx::query(concat!(
            "update items set state = 'pending', lease_owner = null, lease_until = null,
    updated_at = ",
            now!(),
            "
where lease_owner = ? and state = 'in_flight'"
        ))
        .bind(run_id)
        .execute(&self.pool)
        .await
        .context("failed to release leased items")?;
        Ok(result.rows_affected())
    }

    /// How many items a run would take now.
    ///
    /// Counted as open minus leased: the first count reads only the partial index
    /// `items_open`, the second only the few rows in flight, so a queue of millions is
    /// counted without reading its rows.
    pub async fn count_open(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(concat!(
            "select
    (select count(*) from items where state in ('pending', 'in_flight', 'failed'))
  - (select count(*) from items where state = 'in_flight' and lease_until >= ",
            now!(),
            ")"
        ))
        .fetch_one(&self.pool)
        .await
        .context("failed to count open items")?;
        Ok(count as u64)
    }

    /// Items held under a lease that has not run out (by a live run, or a dead one whose
    /// lease has yet to end).
    pub async fn count_leased(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(concat!(
            "select count(*) from items where state = 'in_flight' and lease_until >= ",
            now!()
        ))
        .fetch_one(&self.pool)
        .await
        .context("failed to count leased items")?;
        Ok(count as u64)
    }

    /// The first `limit` file IDs a run would take, without leasing them.
    pub async fn preview_open(&self, limit: u32) -> Result<Vec<String>> {
        sqlx::query_scalar(concat!(
            "select file_id from items
where state in ('pending', 'in_flight', 'failed')
  and (state != 'in_flight' or lease_until < ",
            now!(),
            ")
order by id limit ?"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("failed to list open items")
    }

    /// Item counts per state, over all batches.
    pub async fn count_by_state(&self) -> Result<Vec<(ItemState, u64)>> {
        let rows = sqlx::query("select state, count(*) as n from items group by state")
            .fetch_all(&self.pool)
            .await
            .context("failed to count items")?;
        Ok(fill_counts(
            rows.iter().map(|row| (row.get("state"), row.get("n"))),
        ))
    }

    /// Item counts per state for every batch, oldest batch first.
    pub async fn count_by_batch(&self) -> Result<Vec<BatchCounts>> {
        let rows = sqlx::query(
            "select b.id, b.label, b.source, b.created_at, i.state, count(i.id) as n
from batches b left join items i on i.batch_id = b.id
group by b.id, i.state
order by b.id",
        )
        .fetch_all(&self.pool)
        .await
        .context("failed to count items per batch")?;

        let mut batches: Vec<BatchCounts> = Vec::new();
        for row in &rows {
            let batch_id: i64 = row.get("id");
            if batches.last().map(|batch| batch.batch_id) != Some(batch_id) {
                batches.push(BatchCounts {
                    batch_id,
                    label: row.get("label"),
                    source: row.get("source"),
                    created_at: row.get("created_at"),
                    counts: Vec::new(),
                });
            }
            let batch = batches.last_mut().expect("pushed above");
            if let Some(state) = row.get::<Option<String>, _>("state") {
                batch
                    .counts
                    .push((state.parse().unwrap_or(ItemState::Failed), 0));
                batch.counts.last_mut().expect("pushed").1 = row.get::<i64, _>("n") as u64;
            }
        }
        for batch in &mut batches {
            let counts = batch
                .counts
                .iter()
                .map(|(state, n)| (state.as_str().to_string(), *n as i64));
            batch.counts = fill_counts(counts);
        }
        Ok(batches)
    }

    /// Failed and rejected items, most recent first.
    pub async fn problems(&self, limit: u32) -> Result<Vec<Problem>> {
        let rows = sqlx::query(
            "select file_id, batch_id, state, attempts, last_error, updated_at
from items where state in ('failed', 'rejected')
order by updated_at desc, id desc limit ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("failed to list failed items")?;
        Ok(rows
            .iter()
            .map(|row| Problem {
                file_id: row.get("file_id"),
                batch_id: row.get("batch_id"),
                state: row
                    .get::<String, _>("state")
                    .parse()
                    .unwrap_or(ItemState::Failed),
                attempts: row.get("attempts"),
                last_error: row.get("last_error"),
                updated_at: row.get("updated_at"),
            })
            .collect())
    }

    /// The archived certificate of `file_id` (canonical form), if any.
    pub async fn certificate(&self, file_id: &str) -> Result<Option<Certificate>> {
        let row = sqlx::query(
            "select file_id, cert, deleted_at, batch_id, anomaly, raw
from certificates where file_id = ?",
        )
        .bind(file_id)
        .fetch_optional(&self.pool)
        .await
        .context("failed to look up a certificate")?;
        Ok(row.as_ref().map(certificate_from_row))
    }

    /// One page of the archive after `after_rowid`, oldest first, deleted at or after `since`.
    pub async fn certificates_page(
        &self,
        after_rowid: i64,
        since: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(i64, Certificate)>> {
        let rows = sqlx::query(
            "select rowid, file_id, cert, deleted_at, batch_id, anomaly, raw
from certificates
where rowid > ?1 and (?2 is null or deleted_at >= ?2)
order by rowid limit ?3",
        )
        .bind(after_rowid)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("failed to read the archive")?;
        Ok(rows
            .iter()
            .map(|row| (row.get("rowid"), certificate_from_row(row)))
            .collect())
    }

    /// Puts `failed` items (of one batch, or all) back to `pending` with fresh attempts.
    pub async fn retry_failed(&self, batch_id: Option<i64>) -> Result<u64> {
        let result = sqlx::query(concat!(
            "update items set state = 'pending', attempts = 0, last_error = null,
    lease_owner = null, lease_until = null, updated_at = ",
            now!(),
            "
where state = 'failed' and (?1 is null or batch_id = ?1)"
        ))
        .bind(batch_id)
        .execute(&self.pool)
        .await
        .context("failed to reset failed items")?;
        Ok(result.rows_affected())
    }

    /// Removes the `pending` items of a batch. Leased, finished and archived rows stay.
    pub async fn cancel_pending(&self, batch_id: i64) -> Result<u64> {
        let result = sqlx::query("delete from items where state = 'pending' and batch_id = ?")
            .bind(batch_id)
            .execute(&self.pool)
            .await
            .context("failed to cancel pending items")?;
        Ok(result.rows_affected())
    }

    /// Whether batch `batch_id` exists.
    pub async fn has_batch(&self, batch_id: i64) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("select id from batches where id = ?")
            .bind(batch_id)
            .fetch_optional(&self.pool)
            .await
            .context("failed to look up a batch")?;
        Ok(found.is_some())
    }

    /// Closes the pool, checkpointing the write-ahead log.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a transaction that takes the write lock at once.
    ///
    /// A deferred transaction that reads before it writes can fail with "database is
    /// locked" without waiting when another connection writes first; `BEGIN IMMEDIATE`
    /// waits for the lock (up to the busy timeout) instead.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'_, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .context("failed to start a write transaction")
    }
}

/// Leases up to `limit` open items to `run_id` for `lease` and returns them.
///
/// Open means `pending`, `failed` by an earlier run, or `in_flight` under a lease that
/// ran out (its run died). Taking such an item over marks it for a look-up.
async fn claim(
    conn: &mut SqliteConnection,
    run_id: &str,
    limit: u32,
    lease: Duration,
) -> Result<Vec<Claimed>> {
    let rows = sqlx::query(concat!(
        "update items
set state = 'in_flight',
lease_owner = ?1,
lease_until = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2),
needs_lookup = needs_lookup or state = 'in_flight',
updated_at = ",
        now!(),
        "
where id in (
select id from items
-- This first term is the partial index's own condition, so the index is used.
where state in ('pending', 'in_flight', 'failed')
  and (state = 'pending'
       or (state = 'failed' and lease_owner is not ?1)
       or (state = 'in_flight' and lease_until < ",
        now!(),
        "))
order by id
limit ?3
)
returning id, batch_id, file_id, captured_cert, captured_raw, needs_lookup"
    ))
    .bind(run_id)
    .bind(format!("+{} seconds", lease.as_secs().max(1)))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("failed to claim items")?;

    let mut claimed: Vec<Claimed> = rows
        .into_iter()
        .map(|row| Claimed {
            item_id: row.get("id"),
            batch_id: row.get("batch_id"),
            file_id: row.get("file_id"),
            captured_cert: row.get("captured_cert"),
            captured_raw: row.get("captured_raw"),
            needs_lookup: row.get("needs_lookup"),
        })
        .collect();
    claimed.sort_by_key(|item| item.item_id);
    Ok(claimed)
}

/// Records certificates read before deletion, durably, before anything is sent.
async fn record_captures(
    conn: &mut SqliteConnection,
    run_id: &str,
    captures: &[(i64, String, String)],
) -> Result<()> {
    if captures.is_empty() {
        return Ok(());
    }
    let mut update: QueryBuilder<Sqlite> = QueryBuilder::new(
        "update items set captured_cert = captured.column2, captured_raw = captured.column3,
needs_lookup = 0, updated_at = ",
    );
    update.push(now!()).push(" from (");
    update.push_values(captures, |mut values, (item_id, cert, raw)| {
        values.push_bind(item_id).push_bind(cert).push_bind(raw);
    });
    update
        .push(") as captured where items.id = captured.column1 and items.lease_owner = ")
        .push_bind(run_id);
    update
        .build()
        .execute(&mut *conn)
        .await
        .context("failed to record captured certificates")?;
    Ok(())
}

/// Archives `certificates` and records `outcomes`.
///
/// Certificates are always archived: what the service said it deleted is a fact,
/// whoever holds the lease. Item states are fenced: a run whose lease was taken over
/// changes nothing. Returns how many outcomes were fenced off.
async fn record_outcomes(
    conn: &mut SqliteConnection,
    run_id: &str,
    outcomes: &[Outcome],
    certificates: &[Archived],
) -> Result<u64> {
    if !certificates.is_empty() {
        let mut insert: QueryBuilder<Sqlite> =
            QueryBuilder::new("insert into certificates (file_id, cert, batch_id, raw, anomaly) ");
        insert.push_values(certificates, |mut values, certificate| {
            values
                .push_bind(&certificate.file_id)
                .push_bind(&certificate.cert)
                .push_bind(certificate.batch_id)
                .push_bind(&certificate.raw)
                .push_bind(&certificate.anomaly);
        });
        insert.push(" on conflict (file_id) do nothing");
        insert
            .build()
            .execute(&mut *conn)
            .await
            .context("failed to archive certificates")?;
    }

    // Outcomes mostly share their values (a whole chunk `deleted` after one request),
    // so each group of equal values is one statement.
    let mut groups: Vec<(&Outcome, Vec<i64>)> = Vec::new();
    for outcome in outcomes {
        match groups
            .iter_mut()
            .find(|(first, _)| same_values(first, outcome))
        {
            Some((_, item_ids)) => item_ids.push(outcome.item_id),
            None => groups.push((outcome, vec![outcome.item_id])),
        }
    }
    let mut n_fenced = 0;
    for (values, item_ids) in &groups {
        let mut update: QueryBuilder<Sqlite> = QueryBuilder::new("update items set state = ");
        update
            .push_bind(values.state.as_str())
            .push(", last_error = ")
            .push_bind(&values.error)
            .push(", attempts = attempts + ")
            .push_bind(values.attempts)
            .push(", needs_lookup = ")
            .push_bind(values.needs_lookup)
            .push(", lease_until = null, updated_at = ")
            .push(now!());
        if values.state == ItemState::Pending {
            update.push(", lease_owner = null");
        }
        if values.state.is_final() {
            update.push(", finished_at = ").push(now!());
        }
        update
            .push(" where state = 'in_flight' and lease_owner = ")
            .push_bind(run_id)
            .push(" and id in (");
        let mut ids = update.separated(", ");
        for item_id in item_ids {
            ids.push_bind(item_id);
        }
        update.push(")");
        let result = update
            .build()
            .execute(&mut *conn)
            .await
            .context("failed to record outcomes")?;
        n_fenced += item_ids.len() as u64 - result.rows_affected();
    }
    Ok(n_fenced)
}

fn same_values(left: &Outcome, right: &Outcome) -> bool {
    left.state == right.state
        && left.error == right.error
        && left.attempts == right.attempts
        && left.needs_lookup == right.needs_lookup
}

async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    batch_id: i64,
    rows: &[Entry],
    report: &mut EnqueueReport,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut builder: QueryBuilder<Sqlite> =
        QueryBuilder::new("insert into items (batch_id, file_id, state, last_error, finished_at) ");
    builder.push_values(rows, |mut values, entry| {
        let (file_id, state, error) = match &entry.id {
            Ok(id) => (id.to_canonical(), ItemState::Pending, None),
            Err(text) => (
                text.clone(),
                ItemState::Rejected,
                Some(format!("line {}: not a UUID", entry.line)),
            ),
        };
        let finished = state.is_final();
        values
            .push_bind(batch_id)
            .push_bind(file_id)
            .push_bind(state.as_str())
            .push_bind(error)
            .push(if finished { now!() } else { "null" });
    });
    builder.push(" on conflict do nothing returning state");
    let states: Vec<String> = builder
        .build_query_scalar()
        .fetch_all(&mut **tx)
        .await
        .context("failed to insert items")?;

    let n_inserted_valid = states.iter().filter(|state| *state == "pending").count() as u64;
    let n_valid = rows.iter().filter(|entry| entry.id.is_ok()).count() as u64;
    report.enqueued += n_inserted_valid;
    report.duplicates += n_valid - n_inserted_valid;
    for entry in rows {
        if let Err(text) = &entry.id {
            report.n_rejected += 1;
            if report.rejected.len() < REJECTED_KEPT {
                report.rejected.push((entry.line, text.clone()));
            }
        }
    }
    Ok(())
}

fn read_error(source: &str, err: io::Error) -> Error {
    Error::Io {
        context: format!("failed to read `{source}`; nothing was enqueued"),
        source: err,
    }
}

fn certificate_from_row(row: &sqlx::sqlite::SqliteRow) -> Certificate {
    Certificate {
        file_id: row.get("file_id"),
        cert: row.get("cert"),
        deleted_at: row.get("deleted_at"),
        batch_id: row.get("batch_id"),
        anomaly: row.get("anomaly"),
        raw: row.get("raw"),
    }
}

/// Counts for every state, zero where `counts` has none.
fn fill_counts(counts: impl Iterator<Item = (String, i64)>) -> Vec<(ItemState, u64)> {
    let mut filled: Vec<(ItemState, u64)> =
        ItemState::ALL.iter().map(|state| (*state, 0)).collect();
    for (state, n) in counts {
        if let Ok(state) = ItemState::from_str(&state) {
            let slot = filled
                .iter_mut()
                .find(|(known, _)| *known == state)
                .expect("all states");
            slot.1 += n as u64;
        }
    }
    filled
}

/// Creates the database file with mode 0600, after checking its folder exists.
fn create_if_missing(path: &Path) -> Result<(), String> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(format!(
            "folder `{}` does not exist; create it or choose another database path",
            folder.display()
        ));
    }
    let created = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        // SQLite would silently open a file it cannot write read-only, and fail later at
        // the first write; say so now.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            match fs::OpenOptions::new().write(true).open(path) {
                Ok(_) => Ok(()),
                Err(err) if err.kind() == io::ErrorKind::PermissionDenied => Err(
                    "the file is read-only (check its mode, owner and attributes); \
                     notary-purge writes the queue and the archive to it"
                        .to_string(),
                ),
                Err(err) => Err(format!("cannot open the file for writing: {err}")),
            }
        }
        Err(err) => Err(format!("cannot create the file: {err}")),
    }
}

fn describe_open_error(err: &sqlx::Error) -> String {
    let code = err
        .as_database_error()
        .and_then(|db_err| db_err.code())
        .map(|code| code.to_string());
    let code = code.as_deref().and_then(|code| code.parse::<i32>().ok());
    // SQLite's primary result code is the low byte of the extended one.
    match code.map(|code| code & 0xff) {
        Some(26) => "not a SQLite database, or a corrupt one; move it aside or choose \
                     another database path"
            .to_string(),
        Some(8) => "the file or its folder is read-only; notary-purge needs to write \
                    to both (the write-ahead log lives beside the file)"
            .to_string(),
        Some(14) => format!("cannot open the file: {err}"),
        _ => format!("cannot open: {err}"),
    }
}

fn describe_migrate_error(err: &MigrateError) -> String {
    match err {
        MigrateError::Execute(sqlx_err) => describe_open_error(sqlx_err),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with(ids: &[&str]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("test.db")).await.unwrap();
        let entries = ids.iter().enumerate().map(|(index, id)| {
            Ok(Entry {
                line: index as u64 + 1,
                id: Ok(id.parse().unwrap()),
            })
        });
        store.enqueue(None, "test", entries).await.unwrap();
        (dir, store)
    }

    /// Moves every lease into the past, as if its run had died long ago.
    async fn expire_leases(store: &Store) {
        sqlx::query("update items set lease_until = '2000-01-01T00:00:00.000Z'")
            .execute(&store.pool)
            .await
            .unwrap();
    }

    const ID: &str = "aa95bac7-33fd-4faa-9fa1-f4baeaca82cd";
    const LEASE: Duration = Duration::from_secs(300);

    #[tokio::test]
    async fn the_migrations_apply_to_an_empty_database_and_again() {
        let (dir, store) = store_with(&[]).await;
        store.close().await;
        Store::open(&dir.path().join("test.db")).await.unwrap();
    }

    #[tokio::test]
    async fn a_live_lease_keeps_other_runs_away() {
        let (_dir, store) = store_with(&[ID]).await;

        let first = store.claim("run-a", 10, LEASE).await.unwrap();
        let second = store.claim("run-b", 10, LEASE).await.unwrap();

        assert_eq!(first.len(), 1);
        assert!(second.is_empty());
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_with_a_lookup() {
        let (_dir, store) = store_with(&[ID]).await;
        store.claim("run-a", 10, LEASE).await.unwrap();
        expire_leases(&store).await;

        let taken = store.claim("run-b", 10, LEASE).await.unwrap();

        assert_eq!(taken.len(), 1);
        assert!(taken[0].needs_lookup, "the dead run's outcome is unknown");
    }

    #[tokio::test]
    async fn a_late_holder_is_fenced_off_but_its_certificates_are_kept() {
        let (_dir, store) = store_with(&[ID]).await;
        let claimed = store.claim("run-a", 10, LEASE).await.unwrap();
        expire_leases(&store).await;
        store.claim("run-b", 10, LEASE).await.unwrap();
        let outcome = Outcome {
            item_id: claimed[0].item_id,
            state: ItemState::Deleted,
            error: None,
            attempts: 1,
            needs_lookup: false,
        };
        let certificate = Archived {
            file_id: ID.to_string(),
            cert: "66".repeat(32),
            batch_id: claimed[0].batch_id,
            raw: "{}".to_string(),
            anomaly: None,
        };

        let n_fenced = store
            .record_outcomes("run-a", &[outcome], &[certificate])
            .await
            .unwrap();

        assert_eq!(n_fenced, 1);
        let counts = store.count_by_state().await.unwrap();
        assert!(counts.contains(&(ItemState::InFlight, 1)), "{counts:?}");
        assert!(store.certificate(ID).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_run_does_not_take_back_what_it_failed_itself() {
        let (_dir, store) = store_with(&[ID]).await;
        let claimed = store.claim("run-a", 10, LEASE).await.unwrap();
        let failed = Outcome {
            item_id: claimed[0].item_id,
            state: ItemState::Failed,
            error: Some("503".to_string()),
            attempts: 5,
            needs_lookup: false,
        };
        store
            .record_outcomes("run-a", &[failed], &[])
            .await
            .unwrap();

        let same_run = store.claim("run-a", 10, LEASE).await.unwrap();
        let next_run = store.claim("run-b", 10, LEASE).await.unwrap();

        assert!(same_run.is_empty());
        assert_eq!(next_run.len(), 1);
    }
}
