use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notary_purge::sim::{Fault, SimConfig};

use crate::harness::{collect, generated, write_private, Output, World};

const CLIENT_ID: &str = "test-client";
const CLIENT_SECRET: &str = "test-client-secret-7f3a";

/// A simulator that accepts only tokens from its token endpoint, living `lifetime`.
async fn oauth_world(files: u64, lifetime: Duration, latency: Duration) -> World {
    let mut config = SimConfig::new("");
    config.generated_files = files;
    config.token_lifetime = lifetime;
    config.latency = latency;
    config.client_id = CLIENT_ID.to_string();
    config.client_secret = CLIENT_SECRET.to_string();
    let world = World::with_config(config).await;
    world.enqueue(&generated(0..files)).await;
    world
}

/// Runs `notary-purge ... run` with client credentials from a config file and the
/// secret from the environment.
async fn run_with_client_credentials(world: &World, secret: &str, extra: &[&str]) -> Output {
    let config = world.db.with_file_name("jobs.toml");
    write_private(&config, &format!("client_id = {CLIENT_ID:?}\n"));
    let mut args = vec!["--config", config.to_str().unwrap(), "run"];
    args.extend_from_slice(extra);
    let mut command = world.command(&args);
    command
        .env_remove("NOTARY_TOKEN")
        .env("NOTARY_CLIENT_SECRET", secret);
    collect(command).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_outlasting_several_tokens_renews_them_and_finishes() {
    let world = oauth_world(3_000, Duration::from_secs(2), Duration::from_millis(4)).await;

    let output = run_with_client_credentials(&world, CLIENT_SECRET, &[]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(world.states().await.get("deleted"), Some(&3_000));
    assert_eq!(world.certificates().await, world.ledger());
    let n_tokens = world.sim.tokens_issued();
    assert!(
        n_tokens >= 3,
        "only {n_tokens} tokens for a run of {output:?}"
    );
    let refused = world
        .sim
        .requests()
        .iter()
        .filter(|r| r.status == 401)
        .count();
    assert_eq!(refused, 0, "tokens are renewed before they expire");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_workers_share_one_token_request() {
    let world = oauth_world(500, Duration::from_secs(3600), Duration::ZERO).await;

    let output = run_with_client_credentials(&world, CLIENT_SECRET, &["--concurrency", "16"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(world.sim.tokens_issued(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unexpected_401_renews_the_token_once_and_resends() {
    let world = oauth_world(5, Duration::from_secs(3600), Duration::ZERO).await;
    world.sim.push_fault(Fault::Unauthorized);

    let output = run_with_client_credentials(&world, CLIENT_SECRET, &[]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(world.sim.tokens_issued(), 2);
    assert_eq!(world.certificates().await.len(), 5);
    assert_eq!(world.certificates().await, world.ledger());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_client_secret_stops_the_run_cleanly() {
    let world = oauth_world(5, Duration::from_secs(3600), Duration::ZERO).await;

    let output = run_with_client_credentials(&world, "not-the-secret", &[]).await;

    assert_eq!(output.code, 3, "{output:?}");
    assert!(output
        .stderr
        .contains("the token endpoint refused the client credentials"));
    assert!(world.ledger().is_empty());
    assert_eq!(world.states().await.get("pending"), Some(&5));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_appears_in_any_output_even_at_trace_level() {
    let world = oauth_world(300, Duration::from_secs(2), Duration::from_millis(2)).await;
    world.sim.push_fault(Fault::Unauthorized);
    world.sim.push_fault(Fault::Status(500));

    let text = run_with_client_credentials(&world, CLIENT_SECRET, &["-vvv"]).await;
    world.enqueue(&generated(0..1)).await;
    let json =
        run_with_client_credentials(&world, CLIENT_SECRET, &["-vvv", "--log-format", "json"]).await;
    let status = world.run(&["status", "--json"]).await;

    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stderr.contains("auth.token_renewed"),
        "trace logging was on"
    );
    let pool = world.pool().await;
    let dump: Vec<String> = sqlx::query_scalar(
        "select coalesce(last_error, '') || coalesce(captured_raw, '') from items
union all select raw from certificates",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let everything = [text, json, status]
        .iter()
        .map(|output| format!("{}{}", output.stdout, output.stderr))
        .chain(dump)
        .collect::<String>();
    assert!(
        !everything.contains(CLIENT_SECRET),
        "the client secret leaked"
    );
    // Tokens issued by the simulator start with this.
    assert!(!everything.contains("sim-at-"), "an access token leaked");
}

#[tokio::test(flavor = "multi_thread")]
async fn quota_exhausted_stops_the_run_with_a_clear_message() {
    let world = World::new(3).await;
    world.enqueue(&generated(0..3)).await;
    world.sim.push_fault(Fault::Status(402));

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 3, "{output:?}");
    assert!(output.stderr.contains("quota"), "{}", output.stderr);
    assert_eq!(world.states().await.get("pending"), Some(&3));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_others_can_read_is_refused() {
    let world = World::new(0).await;
    let config = world.db.with_file_name("jobs.toml");
    std::fs::write(&config, "concurrency = 2\n").unwrap();

    let output = world
        .run(&["--config", config.to_str().unwrap(), "status"])
        .await;

    assert_eq!(output.code, 2, "{output:?}");
    assert!(output
        .stderr
        .contains("must be private (mode 0600 or 0640), but its mode is 0644"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_is_not_followed_so_the_token_stays_home() {
    let world = World::new(2).await;
    world.enqueue(&generated(0..2)).await;
    let elsewhere_hits = Arc::new(AtomicUsize::new(0));
    let elsewhere = spawn_server({
        let hits = elsewhere_hits.clone();
        axum::Router::new().fallback(move || {
            hits.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        })
    })
    .await;
    let location = format!("http://{elsewhere}/api/notary/v2/stored-files");
    let redirecting = spawn_server(axum::Router::new().fallback(move || {
        let location = location.clone();
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [("location", location)],
            )
        }
    }))
    .await;
    let base_url = format!("http://{redirecting}/api/notary/v2");

    let output = world
        .run(&[
            "--base-url",
            &base_url,
            "run",
            "--capture-certificates",
            "false",
        ])
        .await;

    assert_eq!(output.code, 1, "{output:?}");
    assert_eq!(elsewhere_hits.load(Ordering::SeqCst), 0);
    let (state, error) = world.item(&generated(0..1)[0]).await;
    assert_eq!(state, "failed");
    assert!(error.unwrap().starts_with("307 Temporary Redirect"));
}

async fn spawn_server(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standard_proxy_variables_are_honoured() {
    let world = World::new(2).await;
    world.enqueue(&generated(0..2)).await;
    let proxy_hits = Arc::new(AtomicUsize::new(0));
    let proxy = spawn_server({
        let hits = proxy_hits.clone();
        axum::Router::new().fallback(move || {
            hits.fetch_add(1, Ordering::SeqCst);
            async { axum::http::StatusCode::BAD_GATEWAY }
        })
    })
    .await;

    let mut command = world.command(&["run", "--max-attempts", "1"]);
    command
        .env("HTTP_PROXY", format!("http://{proxy}"))
        .env_remove("NO_PROXY");
    let output = collect(command).await;

    assert_eq!(output.code, 1, "{output:?}");
    assert!(proxy_hits.load(Ordering::SeqCst) > 0);
    assert!(
        world.sim.requests().is_empty(),
        "requests went around the proxy"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_certificate_file_that_is_not_pem_is_named() {
    let world = World::new(1).await;
    world.enqueue(&generated(0..1)).await;
    let ca = world.db.with_file_name("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();

    let output = world.run(&["--ca-cert", ca.to_str().unwrap(), "run"]).await;

    assert_eq!(output.code, 2, "{output:?}");
    assert!(
        output.stderr.contains("ca.pem` holds no PEM certificate"),
        "{}",
        output.stderr
    );
    assert!(world.sim.requests().is_empty());
}
