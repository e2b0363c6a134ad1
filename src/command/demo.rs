//! `demo`: the whole job against an in-process simulator.

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{Credentials, Secret};
use crate::client::{ClientOptions, NotaryClient};
use crate::command::certs::page_url;
use crate::command::run::{exit_for, print_summary, run_options};
use crate::command::sim::SIM_TOKEN;
use crate::command::{Exit, GlobalArgs};
use crate::config::Layer;
use crate::error::{Error, Result};
use crate::input::Entry;
use crate::runner;
use crate::sim::{self, SimConfig, GUIDE_FILES};
use crate::store::Store;

/// Run the whole job against a built-in simulator and show the result
///
/// Starts the simulator on a free loopback port, enqueues the API guide's two file IDs
/// plus --files generated ones into a new database (in a temporary folder, or at --db,
/// which must not exist yet), runs, and prints the summary and the guide's two
/// certificates.
///
/// Example: notary-purge demo --db /tmp/demo.db && notary-purge --db /tmp/demo.db status
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Generated files to delete besides the guide's two
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    files: u64,
}

/// Runs `demo`.
pub async fn run(global: &GlobalArgs, args: Args) -> Result<Exit> {
    if let Some(path) = &global.db {
        let is_empty = std::fs::metadata(path).map_or(true, |metadata| metadata.len() == 0);
        if !is_empty {
            return Err(Error::Config(format!(
                "`{}` already exists; the demo only writes to a new database, so that it \
                 never sends a real queue to the simulator",
                path.display()
            )));
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| Error::Io {
            context: "cannot listen on 127.0.0.1".to_string(),
            source,
        })?;
    let mut sim_config = SimConfig::new(SIM_TOKEN);
    sim_config.generated_files = args.files;
    sim_config.record_requests = false;
    let simulator = sim::start(sim_config, listener)
        .await
        .map_err(|source| Error::Io {
            context: "cannot start the simulator".to_string(),
            source,
        })?;

    let temp_dir = tempfile::tempdir().map_err(|source| Error::Io {
        context: "cannot create a temporary folder".to_string(),
        source,
    })?;
    let database = global
        .db
        .clone()
        .unwrap_or_else(|| temp_dir.path().join("demo.db"));
    let flags = Layer {
        base_url: Some(simulator.base_url()),
        database: Some(database.clone()),
        ..Layer::default()
    };
    let settings = global.settings(flags)?;
    let base_url = settings.require_base_url()?.clone();
    outln!("simulator: {base_url}");
    outln!(
        "database:  {}",
        display_database(&database, global.db.is_some())
    );

    let store = Store::open(&settings.database).await?;
    let ids = GUIDE_FILES
        .iter()
        .map(|(file_id, _)| file_id.to_string())
        .chain((0..args.files).map(sim::generated_file_id));
    let entries = ids.enumerate().map(|(index, text)| {
        Ok(Entry {
            line: index as u64 + 1,
            id: Ok(text.parse().expect("the simulator's IDs are UUIDs")),
        })
    });
    let report = store.enqueue(Some("demo"), "demo", entries).await?;
    outln!(
        "enqueued {} IDs in batch {}",
        report.enqueued,
        report.batch_id.unwrap_or_default()
    );

    let client = NotaryClient::new(ClientOptions {
        base_url: base_url.clone(),
        credentials: Credentials::Static(Secret::new(SIM_TOKEN.to_string())),
        ca_cert: None,
        request_timeout: settings.request_timeout,
        connect_timeout: Duration::from_secs(5),
        max_requests_per_second: settings.max_requests_per_second,
    })?;
    let options = run_options(&settings, None);
    let summary = runner::run(
        &store,
        &client,
        &options,
        crate::command::run::interrupted(),
        indicatif::ProgressBar::hidden(),
    )
    .await?;
    print_summary(&summary)?;

    for (file_id, _) in GUIDE_FILES {
        match store.certificate(file_id).await? {
            Some(certificate) => outln!(
                "{file_id} {} {}",
                certificate.cert,
                page_url(Some(&base_url), &certificate.cert)
            ),
            None => outln!("{file_id}: no certificate in the archive"),
        }
    }
    store.close().await;
    simulator.shutdown().await;
    Ok(exit_for(&summary))
}

fn display_database(database: &std::path::Path, kept: bool) -> String {
    let shown = PathBuf::from(database).display().to_string();
    if kept {
        shown
    } else {
        format!("{shown} (temporary; pass --db to keep it)")
    }
}
