//! A longer kill-and-restart soak than the test suite's: for `--minutes`, start `run`
//! against an in-process simulator with random faults, SIGKILL it at random moments,
//! start it again; then drain the queue and check the invariants.
//!
//! `cargo build --release && cargo run --release --example soak -- --minutes 5`
//! (add `--binary PATH` to soak another build). Exits 1 if an invariant is broken.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use notary_purge::sim::{self, SimConfig};
use rand::{Rng, SeedableRng};
use sqlx::Row;

const TOKEN: &str = "soak-token";

struct Options {
    minutes: f64,
    files: u64,
    binary: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    let mut config = SimConfig::new(TOKEN);
    config.generated_files = options.files;
    config.latency = Duration::from_millis(2);
    config.fault_rate = 0.05;
    config.record_requests = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let simulator = sim::start(config, listener).await?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("soak.db");
    let soak = Soak {
        options: &options,
        db: &db,
        base_url: simulator.base_url(),
    };

    let ids: Vec<String> = (0..options.files).map(sim::generated_file_id).collect();
    soak.enqueue(&ids).await?;
    let seed: u64 = rand::thread_rng().gen();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let deadline = Duration::from_secs_f64(options.minutes * 60.0);
    let (mut n_kills, mut n_runs) = (0, 0);
    while started.elapsed() < deadline {
        let mut child = soak.run_command().spawn()?;
        n_runs += 1;
        let lifetime = Duration::from_millis(rng.gen_range(50..1_500));
        tokio::select! {
            status = child.wait() => {
                // The queue drained before the deadline: nothing left to kill.
                status?;
                break;
            }
            () = tokio::time::sleep(lifetime) => {
                child.kill().await?;
                n_kills += 1;
            }
        }
    }
    let n_drain_runs = soak.drain().await?;

    let ledger = simulator.ledger();
    let archive = soak.archive().await?;
    let enqueued: BTreeSet<&String> = ids.iter().collect();
    let lost = ledger
        .iter()
        .filter(|d| archive.get(&d.file_id) != Some(&d.cert))
        .count();
    let strays = simulator
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .flat_map(|r| r.file_ids.clone())
        .filter(|id| !enqueued.contains(id))
        .count();
    let states = soak.states().await?;
    println!(
        "soak: {:.1} min, seed {seed}, {n_runs} runs, {n_kills} SIGKILLs, \
         {n_drain_runs} drain runs",
        started.elapsed().as_secs_f64() / 60.0
    );
    println!(
        "soak: {} files deleted per the simulator, {} certificates archived, {lost} lost, \
         {strays} IDs sent that were never enqueued, final states {states:?}",
        ledger.len(),
        archive.len()
    );
    let all_deleted = states.len() == 1 && states[0].0 == "deleted";
    if lost > 0 || strays > 0 || !all_deleted || ledger.len() as u64 != options.files {
        println!("soak: FAILED");
        std::process::exit(1);
    }
    println!("soak: ok");
    Ok(())
}

struct Soak<'a> {
    options: &'a Options,
    db: &'a PathBuf,
    base_url: String,
}

impl Soak<'_> {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.options.binary);
        command
            .arg("--db")
            .arg(self.db)
            .arg("--base-url")
            .arg(&self.base_url)
            .args(args)
            .env("NOTARY_TOKEN", TOKEN)
            .env("NOTARY_PURGE_BACKOFF_BASE_MS", "5")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        command
    }

    fn run_command(&self) -> tokio::process::Command {
        let args = [
            "run",
            "--yes",
            "--lease-secs",
            "1",
            "--chunk-size",
            "50",
            "--max-attempts",
            "10",
        ];
        self.command(&args)
    }

    async fn enqueue(&self, ids: &[String]) -> anyhow::Result<()> {
        let path = self.db.with_file_name("ids.txt");
        std::fs::write(&path, ids.join("\n"))?;
        let status = self
            .command(&["enqueue", "--file", path.to_str().unwrap()])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "enqueue failed: {status}");
        Ok(())
    }

    /// Runs until nothing is open, waiting out one lease between runs.
    async fn drain(&self) -> anyhow::Result<u32> {
        for n_runs in 1..=60 {
            self.run_command().status().await?;
            let open = self.states().await?;
            if open
                .iter()
                .all(|(state, _)| state == "deleted" || state == "already_gone")
            {
                return Ok(n_runs);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        anyhow::bail!("the queue did not drain: {:?}", self.states().await?)
    }

    async fn pool(&self) -> anyhow::Result<sqlx::SqlitePool> {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(self.db);
        Ok(sqlx::SqlitePool::connect_with(options).await?)
    }

    async fn states(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let pool = self.pool().await?;
        let rows = sqlx::query("select state, count(*) as n from items group by state")
            .fetch_all(&pool)
            .await?;
        pool.close().await;
        Ok(rows
            .iter()
            .map(|row| (row.get("state"), row.get("n")))
            .collect())
    }

    async fn archive(&self) -> anyhow::Result<std::collections::HashMap<String, String>> {
        let pool = self.pool().await?;
        let rows = sqlx::query("select file_id, cert from certificates")
            .fetch_all(&pool)
            .await?;
        pool.close().await;
        Ok(rows
            .iter()
            .map(|row| (row.get("file_id"), row.get("cert")))
            .collect())
    }
}

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        minutes: 3.0,
        files: 200_000,
        binary: PathBuf::from("target/release/notary-purge"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--minutes" => options.minutes = value.parse()?,
            "--files" => options.files = value.parse()?,
            "--binary" => options.binary = PathBuf::from(value),
            other => anyhow::bail!("unknown option `{other}`; use --minutes, --files, --binary"),
        }
    }
    Ok(options)
}
