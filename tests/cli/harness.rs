use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use notary_purge::sim::{self, SimConfig, SimHandle};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Row, SqlitePool};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

pub const TOKEN: &str = "test-token";

/// The shared input cases, byte for byte.
pub fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A temp folder with a database path, and a simulator on 127.0.0.1 port 0.
pub struct World {
    /// Kept so the folder lives as long as the world.
    _dir: TempDir,
    pub db: PathBuf,
    pub sim: SimHandle,
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl World {
    /// A world whose simulator holds the guide's files and `generated` others.
    pub async fn new(generated: u64) -> World {
        let mut config = SimConfig::new(TOKEN);
        config.generated_files = generated;
        World::with_config(config).await
    }

    pub async fn with_config(config: SimConfig) -> World {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = sim::start(config, listener).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("queue.db");
        World { _dir: dir, db, sim }
    }

    /// The binary, set up for this world: database, base URL, token, fast retries.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_notary-purge"));
        for (key, _) in std::env::vars() {
            if key.starts_with("NOTARY_") {
                command.env_remove(key);
            }
        }
        if !args.contains(&"--db") {
            command.arg("--db").arg(&self.db);
        }
        if !args.contains(&"--base-url") {
            command.arg("--base-url").arg(self.sim.base_url());
        }
        command
            .args(args)
            .env("NOTARY_TOKEN", TOKEN)
            .env("NOTARY_PURGE_BACKOFF_BASE_MS", "5")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs the binary to completion.
    pub async fn run(&self, args: &[&str]) -> Output {
        collect(self.command(args)).await
    }

    /// Runs the binary with `input` on stdin.
    pub async fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut command = self.command(args);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).await.unwrap();
        drop(stdin);
        output(child.wait_with_output().await.unwrap())
    }

    /// Enqueues `ids` as arguments and checks it worked.
    pub async fn enqueue(&self, ids: &[String]) {
        let mut input = ids.join("\n");
        input.push('\n');
        let output = self
            .run_with_stdin(&["enqueue", "-"], input.as_bytes())
            .await;
        assert_eq!(output.code, 0, "{output:?}");
    }

    /// Creates the (empty) database, as the first `enqueue` would.
    pub async fn create_database(&self) {
        let output = self.run_with_stdin(&["enqueue", "-"], b"").await;
        assert_eq!(output.code, 0, "{output:?}");
    }

    pub async fn pool(&self) -> SqlitePool {
        let options = SqliteConnectOptions::new().filename(&self.db);
        SqlitePool::connect_with(options).await.unwrap()
    }

    /// Item counts per state (states with no items left out).
    pub async fn states(&self) -> BTreeMap<String, i64> {
        let pool = self.pool().await;
        let rows = sqlx::query("select state, count(*) as n from items group by state")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.iter()
            .map(|row| (row.get("state"), row.get("n")))
            .collect()
    }

    /// The state and last error of one file's item.
    pub async fn item(&self, file_id: &str) -> (String, Option<String>) {
        let pool = self.pool().await;
        let row = sqlx::query("select state, last_error from items where file_id = ?")
            .bind(file_id)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        (row.get("state"), row.get("last_error"))
    }

    /// The archive: file ID to certificate.
    pub async fn certificates(&self) -> BTreeMap<String, String> {
        let pool = self.pool().await;
        let rows = sqlx::query("select file_id, cert from certificates")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.iter()
            .map(|row| (row.get("file_id"), row.get("cert")))
            .collect()
    }

    /// What the simulator says it deleted: file ID to certificate.
    pub fn ledger(&self) -> BTreeMap<String, String> {
        self.sim
            .ledger()
            .into_iter()
            .map(|deletion| (deletion.file_id, deletion.cert))
            .collect()
    }

    /// Waits (up to five seconds) until `seen` holds for the simulator: the moment to
    /// act on a run in progress.
    pub async fn wait_for_simulator(&self, seen: impl Fn(&SimHandle) -> bool) {
        for _ in 0..1_000 {
            if seen(&self.sim) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the simulator never saw what the test waits for");
    }

    /// Every file ID the simulator was asked to delete, in bulk or singly.
    pub fn ids_sent_for_deletion(&self) -> Vec<String> {
        let mut sent = Vec::new();
        for request in self.sim.requests() {
            if request.method == "DELETE" {
                sent.extend(request.file_ids);
            }
        }
        sent
    }

    /// How many requests of `method` went to paths ending in `suffix`.
    pub fn count_requests(&self, method: &str, suffix: &str) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|request| request.method == method && request.path.ends_with(suffix))
            .count()
    }
}

/// Writes a file only its owner can read (config and secret files must be private).
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// IDs of generated simulator files `range`.
pub fn generated(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(sim::generated_file_id).collect()
}

pub async fn collect(mut command: tokio::process::Command) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    output(command.output().await.unwrap())
}

fn output(output: std::process::Output) -> Output {
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
