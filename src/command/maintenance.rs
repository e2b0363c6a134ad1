//! `retry` and `cancel`: put failed items back, take pending ones out.

use crate::command::{open_store, Exit, GlobalArgs};
use crate::config::Layer;
use crate::error::{Error, Result};

/// Put failed items back in the queue
///
/// Failed items go back to pending with fresh attempt counts and no error. Runs retry
/// failed items anyway; use this to start them afresh, e.g. after fixing a permission.
/// The archive is not touched.
///
/// Example: notary-purge retry --batch 3
#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// Only this batch
    #[arg(long, value_name = "ID")]
    batch: Option<i64>,
}

/// Remove the pending items of a batch from the queue
///
/// Items already held by a run, finished, or failed stay as they are, and the archive is
/// not touched.
///
/// Example: notary-purge cancel --batch 3
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The batch to cancel
    #[arg(long, value_name = "ID")]
    batch: i64,
}

/// Runs `retry`.
pub async fn retry(global: &GlobalArgs, args: RetryArgs) -> Result<Exit> {
    let settings = global.settings(Layer::default())?;
    let store = open_store(&settings).await?;
    if let Some(batch_id) = args.batch {
        require_batch(&store, batch_id).await?;
    }
    let n_reset = store.retry_failed(args.batch).await?;
    store.close().await;
    outln!("{n_reset} failed items are pending again");
    Ok(Exit::Success)
}

/// Runs `cancel`.
pub async fn cancel(global: &GlobalArgs, args: CancelArgs) -> Result<Exit> {
    let settings = global.settings(Layer::default())?;
    let store = open_store(&settings).await?;
    require_batch(&store, args.batch).await?;
    let n_removed = store.cancel_pending(args.batch).await?;
    store.close().await;
    outln!("{n_removed} pending items of batch {} removed", args.batch);
    Ok(Exit::Success)
}

async fn require_batch(store: &crate::store::Store, batch_id: i64) -> Result<()> {
    if store.has_batch(batch_id).await? {
        return Ok(());
    }
    Err(Error::Config(format!(
        "no batch {batch_id}; `notary-purge status` lists the batches"
    )))
}
