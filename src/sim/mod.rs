//! A local simulator of the Acronis Notary API v2 stored-file endpoints and of the platform
//! token endpoint, with scripted and random faults, for tests, demos and benchmarks.
//!
//! Submodules in reading order: `routes` (router and shared layers), `bulk` (bulk delete and
//! faults), `token` (token endpoint), `state` (shared state), `catalog` (synthetic files and
//! certificates), `conn` (connections a handler can break) and `times` (the request-times
//! file of benchmarks).

mod bulk;
mod catalog;
mod conn;
mod routes;
mod state;
mod times;
mod token;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::sim::catalog::{FileRef, FOREIGN_PREFIX, GENERATED_PREFIX};
use crate::sim::conn::{Connection, SimListener};
use crate::sim::state::SimState;

/// Path prefix of every Notary route.
pub const API_PREFIX: &str = "/api/notary/v2";

/// The two files of the guide's bulk-delete example, as `(file id, certificate id)`.
pub const GUIDE_FILES: [(&str, &str); 2] = [
    (
        "aa95bac7-33fd-4faa-9fa1-f4baeaca82cd",
        "66692ad42b5e1c8baed89b225321182537164c46be6cb232f09b0121af8313b7",
    ),
    (
        "ba635289-d3a1-45a2-a0ff-a8518607f656",
        "6cb238637164c46bebaed89b225321182572f09b0121af8313b6692ad42b5e1c",
    ),
];

/// Simulator settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// A bearer token that is always accepted and never expires; empty disables it.
    pub token: String,
    /// How many generated files are stored besides the two guide files.
    pub generated_files: u64,
    /// How many files of another account exist; naming one in a delete is a 403.
    pub foreign_files: u64,
    /// Delay added to every request before it is answered.
    pub latency: Duration,
    /// Bulk deletes naming more ids than this are refused with 400.
    pub max_ids_per_request: usize,
    /// Chance, from 0.0 to 1.0, that a bulk delete without a scripted fault gets a random one.
    pub fault_rate: f64,
    /// Lifetime of tokens issued by the token endpoint.
    pub token_lifetime: Duration,
    /// Whether to keep a log of every request; benchmarks turn it off to save memory.
    pub record_requests: bool,
    /// A file to write one line per request to (`unix_secs method status n_ids`), written
    /// out when the simulator stops; benchmarks read request rates from it.
    pub request_times: Option<PathBuf>,
    /// Client id accepted by the `client_credentials` grant.
    pub client_id: String,
    /// Client secret accepted by the `client_credentials` grant.
    pub client_secret: String,
}

/// A fault to inject into a bulk DELETE.
///
/// Scripted faults are used in FIFO order, one per bulk DELETE that passes authentication
/// and request validation (415 and 400 answers use none). Faults that answer with an error
/// delete nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with the service's JSON error body.
    Status(u16),
    /// Answer 502 with the HTML page of an nginx proxy.
    ProxyHtml502,
    /// Answer 429 with this `Retry-After` header.
    TooManyRequests {
        /// The header value, sent as given (left out if it is not a valid header value).
        retry_after: String,
    },
    /// Delete, then break the connection before any byte of the answer is sent.
    CloseAfterDelete,
    /// Delete everything, but leave the last `omit` entries out of `deleted`.
    Partial {
        /// How many entries to leave out.
        omit: usize,
    },
    /// Keep the last `skip` deletable files stored and leave them out of `deleted`.
    SkipDelete {
        /// How many files to keep.
        skip: usize,
    },
    /// Delete, then answer 200 with the first half of the JSON body.
    TruncatedJson,
    /// Delete, then answer 200 with an empty body.
    EmptyBody,
    /// Never answer, and delete nothing; the connection breaks at shutdown.
    Hang,
    /// Answer normally plus a `deleted` entry for a made-up id that nobody requested.
    UnrequestedEntry,
    /// Answer normally but with upper-case ids in `deleted`.
    UpperCaseIds,
    /// Answer normally but with `"not-a-cert"` as the first entry's `cert`.
    BadCert,
    /// Answer 401 with an empty body.
    Unauthorized,
}

/// A file the simulator deleted, for tests to compare with the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    /// The lower-case file id.
    pub file_id: String,
    /// The file's certificate id.
    pub cert: String,
    /// Whether the bulk route deleted it, rather than the single-file route.
    pub via_bulk: bool,
}

/// One request the simulator saw.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// The HTTP method.
    pub method: String,
    /// The path, without query.
    pub path: String,
    /// The lower-cased ids the request named; empty when it was refused before they were read.
    pub file_ids: Vec<String>,
    /// The status answered, or 0 when the connection was broken instead.
    pub status: u16,
}

/// A running simulator; dropping it stops the server too, without waiting.
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<SimState>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl SimConfig {
    /// Settings with the given static token and no files, latency or faults.
    pub fn new(token: &str) -> SimConfig {
        SimConfig {
            token: token.to_owned(),
            generated_files: 0,
            foreign_files: 0,
            latency: Duration::ZERO,
            max_ids_per_request: 1000,
            fault_rate: 0.0,
            token_lifetime: Duration::from_secs(2 * 60 * 60),
            record_requests: true,
            request_times: None,
            client_id: "sim-client".to_owned(),
            client_secret: "sim-secret".to_owned(),
        }
    }
}

impl SimHandle {
    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Notary base URL, `http://<addr>/api/notary/v2`.
    pub fn base_url(&self) -> String {
        format!("http://{}{API_PREFIX}", self.addr)
    }

    /// The data-center URL, under which the token endpoint lives at `/api/2/idp/token`.
    pub fn datacenter_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Scripts a fault for a later bulk DELETE; see [`Fault`] for when it is used.
    pub fn push_fault(&self, fault: Fault) {
        self.state.push_fault(fault);
    }

    /// Every deletion so far, in order.
    pub fn ledger(&self) -> Vec<Deletion> {
        self.state.ledger()
    }

    /// Every request so far, in the order answered (empty unless `record_requests`).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.requests()
    }

    /// How many DELETE requests (bulk and single, answered or not) arrived.
    pub fn delete_requests(&self) -> usize {
        self.state.delete_requests()
    }

    /// How many tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> usize {
        self.state.tokens_issued()
    }

    /// Whether a file with this id (any case) is stored, by this account or another.
    pub fn is_stored(&self, file_id: &str) -> bool {
        self.state.is_stored(file_id)
    }

    /// Stops accepting, breaks hanging requests, and waits for open connections to finish.
    pub async fn shutdown(self) {
        // The server may already be gone, in which case there is nobody to tell.
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => (),
            Ok(Err(error)) => tracing::warn!(%error, "sim.serve_failed"),
            Err(error) => tracing::warn!(%error, "sim.task_failed"),
        }
    }
}

/// The id of generated file number `n` (0-based), a lower-case v4-shaped UUID.
///
/// Only numbers below 2^48 fit the last 12 digits; larger ones are never stored.
pub fn generated_file_id(n: u64) -> String {
    format!("{GENERATED_PREFIX}{n:012x}")
}

/// The 64-hex certificate id of generated file number `n`.
pub fn generated_cert(n: u64) -> String {
    FileRef::Generated(n).cert()
}

/// The id of foreign file number `n` (0-based), owned by another account.
pub fn foreign_file_id(n: u64) -> String {
    format!("{FOREIGN_PREFIX}{n:012x}")
}

/// Starts the simulator on an already-bound listener, serving in a spawned task.
pub async fn start(config: SimConfig, listener: TcpListener) -> io::Result<SimHandle> {
    let addr = listener.local_addr()?;
    let state = Arc::new(SimState::new(config)?);
    let (stop, stopped) = oneshot::channel::<()>();

    let shutdown = async move {
        // A dropped handle stops the server just like an explicit shutdown.
        let _ = stopped.await;
    };
    let task = tokio::spawn(run(state.clone(), listener, shutdown));
    Ok(SimHandle {
        addr,
        state,
        stop,
        task,
    })
}

/// Serves until `shutdown` completes, then stops gracefully.
pub async fn serve(
    config: SimConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    run(Arc::new(SimState::new(config)?), listener, shutdown).await
}

async fn run(
    state: Arc<SimState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        generated_files = state.config.generated_files,
        foreign_files = state.config.foreign_files,
        "sim.started"
    );

    let app = routes::router(state.clone()).into_make_service_with_connect_info::<Connection>();
    let signal_state = state.clone();
    let signal = async move {
        shutdown.await;
        signal_state.begin_shutdown();
    };
    let result = axum::serve(SimListener::new(listener), app)
        .with_graceful_shutdown(signal)
        .await;

    state.flush_request_times();
    tracing::info!(%addr, "sim.stopped");
    result
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn generated_ids_follow_the_documented_format() {
        assert_eq!(generated_file_id(0), "00000000-0000-4000-8000-000000000000");
        assert_eq!(
            generated_file_id(0xabc),
            "00000000-0000-4000-8000-000000000abc"
        );
        assert_eq!(foreign_file_id(1), "00000000-0000-4000-9000-000000000001");
    }

    #[test]
    fn generated_certs_are_distinct_lowercase_hex() {
        let certs: Vec<String> = (0..1000).map(generated_cert).collect();
        let distinct: std::collections::HashSet<&String> = certs.iter().collect();

        assert_eq!(distinct.len(), certs.len());
        for cert in &certs {
            assert_eq!(cert.len(), 64);
            assert!(cert
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')));
        }
    }

    struct Harness {
        sim: SimHandle,
        http: reqwest::Client,
    }

    impl Harness {
        async fn start(config: SimConfig) -> Harness {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let sim = start(config, listener).await.unwrap();
            Harness {
                sim,
                http: reqwest::Client::new(),
            }
        }

        async fn bulk_delete(&self, token: Option<&str>, file_ids: &[&str]) -> reqwest::Response {
            let url = format!("{}/stored-files", self.sim.base_url());
            let mut request = self.http.delete(url).json(&json!({ "file_ids": file_ids }));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.unwrap()
        }

        async fn delete_one(&self, file_id: &str) -> reqwest::Response {
            let url = format!("{}/stored-files/{file_id}", self.sim.base_url());
            self.http
                .delete(url)
                .bearer_auth("sim-token")
                .send()
                .await
                .unwrap()
        }
    }

    fn deleted_pairs(body: &Value) -> Vec<(String, String)> {
        let entries = body["deleted"].as_array().unwrap();
        let pair = |entry: &Value| {
            (
                entry["id"].as_str().unwrap().to_owned(),
                entry["cert"].as_str().unwrap().to_owned(),
            )
        };
        entries.iter().map(pair).collect()
    }

    #[tokio::test]
    async fn serves_the_guide_example_and_its_edge_cases() {
        let mut config = SimConfig::new("sim-token");
        config.generated_files = 3;
        let harness = Harness::start(config).await;
        let guide_ids = [GUIDE_FILES[0].0, GUIDE_FILES[1].0];

        let without_token = harness.bulk_delete(None, &guide_ids).await;
        assert_eq!(without_token.status(), 401);
        assert_eq!(without_token.text().await.unwrap(), "");

        let guide = harness.bulk_delete(Some("sim-token"), &guide_ids).await;
        assert_eq!(guide.status(), 200);
        let expected: Vec<(String, String)> = GUIDE_FILES
            .iter()
            .map(|(id, cert)| (id.to_string(), cert.to_string()))
            .collect();
        assert_eq!(deleted_pairs(&guide.json().await.unwrap()), expected);

        let again = harness.delete_one(GUIDE_FILES[0].0).await;
        assert_eq!(again.status(), 404);
        assert_eq!(again.text().await.unwrap(), "{}");

        harness.sim.push_fault(Fault::Partial { omit: 1 });
        let generated = [generated_file_id(0), generated_file_id(1)];
        let partial = harness
            .bulk_delete(Some("sim-token"), &[&generated[0], &generated[1]])
            .await;
        let partial: Value = partial.json().await.unwrap();
        assert_eq!(
            deleted_pairs(&partial),
            [(generated[0].clone(), generated_cert(0))]
        );
        assert!(!harness.sim.is_stored(&generated[1]));

        assert_eq!(harness.sim.ledger().len(), 4);
        assert_eq!(harness.sim.delete_requests(), 4);
        let statuses: Vec<u16> = harness.sim.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [401, 200, 404, 200]);
        harness.sim.shutdown().await;
    }

    #[tokio::test]
    async fn close_after_delete_breaks_a_reused_connection_but_deletes() {
        let harness = Harness::start(SimConfig::new("sim-token")).await;
        let warm_up = harness
            .bulk_delete(Some("sim-token"), &[GUIDE_FILES[1].0])
            .await;
        assert_eq!(warm_up.status(), 200);
        warm_up.bytes().await.unwrap();
        harness.sim.push_fault(Fault::CloseAfterDelete);

        let url = format!("{}/stored-files", harness.sim.base_url());
        let body = json!({ "file_ids": [GUIDE_FILES[0].0] });
        let sent = harness
            .http
            .delete(url)
            .bearer_auth("sim-token")
            .json(&body)
            .send()
            .await;

        assert!(sent.is_err());
        assert!(!harness.sim.is_stored(GUIDE_FILES[0].0));
        assert_eq!(harness.sim.delete_requests(), 2);
        assert_eq!(harness.sim.requests()[1].status, 0);
        harness.sim.shutdown().await;
    }

    #[tokio::test]
    async fn hanging_request_does_not_block_shutdown() {
        let harness = Harness::start(SimConfig::new("sim-token")).await;
        harness.sim.push_fault(Fault::Hang);

        let url = format!("{}/stored-files", harness.sim.base_url());
        let body = json!({ "file_ids": [GUIDE_FILES[0].0] });
        let request = harness
            .http
            .delete(url)
            .bearer_auth("sim-token")
            .json(&body);
        let pending = tokio::spawn(request.send());
        while harness.sim.delete_requests() == 0 {
            tokio::task::yield_now().await;
        }
        let stop = tokio::time::timeout(Duration::from_secs(10), harness.sim.shutdown()).await;

        assert!(stop.is_ok(), "shutdown waited for the hanging request");
        assert!(pending.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn issued_tokens_open_the_notary_routes() {
        let harness = Harness::start(SimConfig::new("")).await;
        let token_url = format!("{}/api/2/idp/token", harness.sim.datacenter_url());

        let denied = harness
            .http
            .post(&token_url)
            .basic_auth("sim-client", Some("nope"));
        let denied = denied
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        let granted = harness
            .http
            .post(&token_url)
            .basic_auth("sim-client", Some("sim-secret"));
        let granted = granted
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();

        assert_eq!(denied.status(), 401);
        let granted: Value = granted.json().await.unwrap();
        assert_eq!(granted["expires_in"], 7200);
        let token = granted["access_token"].as_str().unwrap();
        let cert_url = format!(
            "{}/certificates/{}",
            harness.sim.base_url(),
            GUIDE_FILES[1].1
        );
        let cert = harness
            .http
            .get(cert_url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(cert.status(), 200);
        assert_eq!(harness.sim.tokens_issued(), 1);
        harness.sim.shutdown().await;
    }
}
