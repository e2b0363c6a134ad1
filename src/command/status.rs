//! `status`: counts per state and batch, and the items that need attention.

use crate::command::{open_store, Exit, GlobalArgs};
use crate::config::Layer;
use crate::error::Result;
use crate::input::{escape_controls, printable};
use crate::state::ItemState;

/// Show counts per state and batch, and the items that need attention
///
/// Counts per state over all batches and per batch, then the failed and rejected items
/// with their reasons, most recent first. Exit code 1 when some items are failed, so
/// scripts can alert on it.
///
/// Example: notary-purge status --json | jq .states
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON on stdout
    #[arg(long)]
    json: bool,
    /// How many failed and rejected items to list
    #[arg(long, default_value_t = 20, value_name = "N")]
    limit: u32,
}

/// Runs `status`.
pub async fn run(global: &GlobalArgs, args: Args) -> Result<Exit> {
    let settings = global.settings(Layer::default())?;
    let store = open_store(&settings).await?;
    let states = store.count_by_state().await?;
    let batches = store.count_by_batch().await?;
    let problems = store.problems(args.limit).await?;
    store.close().await;

    if args.json {
        let states: serde_json::Map<_, _> = states
            .iter()
            .map(|(state, n)| (state.as_str().to_string(), (*n).into()))
            .collect();
        let batches: Vec<_> = batches
            .iter()
            .map(|batch| {
                let counts: serde_json::Map<_, _> = batch
                    .counts
                    .iter()
                    .map(|(state, n)| (state.as_str().to_string(), (*n).into()))
                    .collect();
                serde_json::json!({
                    "batch_id": batch.batch_id,
                    "label": batch.label,
                    "source": batch.source,
                    "created_at": batch.created_at,
                    "states": counts,
                })
            })
            .collect();
        let value =
            serde_json::json!({ "states": states, "batches": batches, "problems": problems });
        outln!("{value}");
    } else {
        print_text(&states, &batches, &problems)?;
    }

    let n_failed = states
        .iter()
        .find(|(state, _)| *state == ItemState::Failed)
        .map_or(0, |(_, n)| *n);
    Ok(if n_failed > 0 {
        Exit::ItemsFailed
    } else {
        Exit::Success
    })
}

fn print_text(
    states: &[(ItemState, u64)],
    batches: &[crate::store::BatchCounts],
    problems: &[crate::store::Problem],
) -> Result<()> {
    let line = |counts: &[(ItemState, u64)]| {
        counts
            .iter()
            .map(|(state, n)| format!("{state} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    outln!("all batches: {}", line(states));
    for batch in batches {
        let label = printable(batch.label.as_deref().unwrap_or("-"));
        let source = printable(&batch.source);
        outln!(
            "batch {} ({label}, {source}, {}): {}",
            batch.batch_id,
            batch.created_at,
            line(&batch.counts)
        );
    }
    if !problems.is_empty() {
        outln!("needs attention (most recent first):");
    }
    for problem in problems {
        outln!(
            "  {} {} batch {} attempts {}: {}",
            problem.state,
            printable(&problem.file_id),
            problem.batch_id,
            problem.attempts,
            escape_controls(problem.last_error.as_deref().unwrap_or(""))
        );
    }
    Ok(())
}
