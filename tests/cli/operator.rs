use std::time::Duration;

use notary_purge::sim::SimConfig;

use crate::harness::{generated, World, TOKEN};

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_sends_nothing_and_changes_nothing() {
    let world = World::new(250).await;
    world.enqueue(&generated(0..250)).await;

    let output = world.run(&["run", "--dry-run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        output
            .stdout
            .contains("would send 250 of 250 waiting IDs in 3 chunk(s)"),
        "{}",
        output.stdout
    );
    assert!(output.stdout.contains(&generated(0..1)[0]));
    assert!(world.sim.requests().is_empty());
    assert_eq!(world.states().await.get("pending"), Some(&250));
}

#[tokio::test(flavor = "multi_thread")]
async fn max_delete_sends_no_more_than_asked() {
    let world = World::new(400).await;
    world.enqueue(&generated(0..400)).await;

    let output = world.run(&["run", "--max-delete", "150"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(world.ids_sent_for_deletion().len(), 150);
    assert_eq!(world.ledger().len(), 150);
    let states = world.states().await;
    assert_eq!(
        (states.get("deleted"), states.get("pending")),
        (Some(&150), Some(&250))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_delete_does_not_hide_a_refused_token() {
    let world = World::new(10).await;
    world.enqueue(&generated(0..10)).await;

    let mut command = world.command(&["run", "--max-delete", "1"]);
    command.env("NOTARY_TOKEN", "expired-token");
    let output = crate::harness::collect(command).await;

    assert_eq!(output.code, 3, "{output:?}");
    assert!(!output.stderr.contains("--max-delete"), "{}", output.stderr);
    assert_eq!(world.states().await.get("pending"), Some(&10));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unconfirmed_run_sends_no_more_than_confirm_above() {
    let mut config = SimConfig::new(TOKEN);
    config.generated_files = 30;
    config.latency = Duration::from_millis(20);
    let world = World::with_config(config).await;
    world.enqueue(&generated(0..5)).await;
    let config = world.db.with_file_name("jobs.toml");
    crate::harness::write_private(&config, "confirm_above = 10\n");
    let mut command = world.command(&["--config", config.to_str().unwrap(), "run"]);
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().unwrap();

    // Once the run has started on its 5 items (5 look-ups of 20 ms each to go), more are
    // enqueued: they must not slip past the limit the run was started under.
    world
        .wait_for_simulator(|sim| !sim.requests().is_empty())
        .await;
    world.enqueue(&generated(5..25)).await;
    let output = child.wait_with_output().await.unwrap();

    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(world.ids_sent_for_deletion().len(), 10);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("confirm_above"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_run_needs_confirmation() {
    let world = World::new(20).await;
    world.enqueue(&generated(0..20)).await;
    let config = world.db.with_file_name("jobs.toml");
    crate::harness::write_private(&config, "confirm_above = 10\n");
    let config = config.to_str().unwrap();

    let refused = world.run(&["--config", config, "run"]).await;
    let confirmed = world.run(&["--config", config, "run", "--yes"]).await;

    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused
        .stderr
        .contains("20 items would be sent, more than confirm_above (10)"));
    assert_eq!(confirmed.code, 0, "{confirmed:?}");
    assert_eq!(world.ledger().len(), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_and_cancel_change_the_queue_but_not_the_archive() {
    let mut config = SimConfig::new(TOKEN);
    config.generated_files = 2;
    config.foreign_files = 1;
    let world = World::with_config(config).await;
    world
        .enqueue(&[generated(0..2), vec![notary_purge::sim::foreign_file_id(0)]].concat())
        .await;
    world.run(&["run"]).await;
    world.enqueue(&generated(2..5)).await;
    let archive = world.certificates().await;

    let retried = world.run(&["retry", "--batch", "1"]).await;
    let cancelled = world.run(&["cancel", "--batch", "2"]).await;
    let unknown = world.run(&["cancel", "--batch", "9"]).await;

    assert_eq!(retried.stdout.trim(), "1 failed items are pending again");
    assert_eq!(
        cancelled.stdout.trim(),
        "3 pending items of batch 2 removed"
    );
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("no batch 9"));
    let states = world.states().await;
    assert_eq!(
        (states.get("deleted"), states.get("pending")),
        (Some(&2), Some(&1))
    );
    assert_eq!(world.certificates().await, archive);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_chunks_in_flight_and_leaves_the_rest_pending() {
    let mut config = SimConfig::new(TOKEN);
    config.generated_files = 2_000;
    config.latency = Duration::from_millis(20);
    let world = World::with_config(config).await;
    world.enqueue(&generated(0..2_000)).await;
    let mut command = world.command(&["run", "--capture-certificates", "false"]);
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().unwrap();

    // Wait until the run has deleted something, then ask it to stop.
    world
        .wait_for_simulator(|sim| !sim.ledger().is_empty())
        .await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().await.unwrap();

    assert_eq!(output.status.code(), Some(130));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("still queued"), "{stdout}");
    let states = world.states().await;
    assert!(!states.contains_key("in_flight"), "{states:?}");
    assert!(states.get("pending").is_some_and(|n| *n > 0), "{states:?}");
    assert_eq!(world.certificates().await, world.ledger());
}

#[tokio::test(flavor = "multi_thread")]
async fn status_counts_states_and_lists_failures() {
    let mut config = SimConfig::new(TOKEN);
    config.generated_files = 3;
    config.foreign_files = 1;
    let world = World::with_config(config).await;
    world
        .enqueue(&[generated(0..3), vec![notary_purge::sim::foreign_file_id(0)]].concat())
        .await;
    world.run(&["run"]).await;

    let text = world.run(&["status"]).await;
    let json = world.run(&["status", "--json"]).await;

    assert_eq!(text.code, 1, "failed items make the exit code 1");
    assert!(text.stdout.contains("deleted 3"), "{}", text.stdout);
    assert!(text.stdout.contains("403 Forbidden"), "{}", text.stdout);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["states"]["deleted"], 3);
    assert_eq!(json["states"]["failed"], 1);
    assert_eq!(
        json["problems"][0]["file_id"],
        notary_purge::sim::foreign_file_id(0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_archive_exports_as_csv_and_jsonl() {
    let world = World::new(1_500).await;
    world.enqueue(&generated(0..1_500)).await;
    world.run(&["run", "--capture-certificates", "false"]).await;

    let csv = world.run(&["certs", "--export", "csv"]).await;
    let jsonl = world
        .run(&["certs", "--export", "jsonl", "--since", "2000-01-01"])
        .await;
    let future = world
        .run(&["certs", "--export", "jsonl", "--since", "2999-01-01"])
        .await;

    let mut lines = csv.stdout.lines();
    assert_eq!(
        lines.next(),
        Some("file_id,cert,deleted_at,batch_id,anomaly")
    );
    assert_eq!(lines.count(), 1_500);
    assert_eq!(jsonl.stdout.lines().count(), 1_500);
    let first: serde_json::Value =
        serde_json::from_str(jsonl.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["cert"], first["raw"]["cert"]);
    assert!(future.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_never_appears_in_any_output() {
    let world = World::new(5).await;
    world.enqueue(&generated(0..5)).await;
    world.sim.push_fault(notary_purge::sim::Fault::Status(500));

    let text = world.run(&["-vvv", "run"]).await;
    world.enqueue(&generated(0..0)).await;
    let json = world.run(&["-vvv", "--log-format", "json", "status"]).await;

    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stderr.contains("request.retry"),
        "trace logging was on"
    );
    for output in [&text, &json] {
        assert!(!output.stdout.contains(TOKEN) && !output.stderr.contains(TOKEN));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once_and_the_next_run_recovers() {
    let mut config = SimConfig::new(TOKEN);
    config.generated_files = 600;
    config.latency = Duration::from_millis(20);
    let world = World::with_config(config).await;
    world.enqueue(&generated(0..600)).await;
    let mut child = world
        .command(&["run", "--lease-secs", "1"])
        .spawn()
        .unwrap();
    world
        .wait_for_simulator(|sim| !sim.requests().is_empty())
        .await;

    let pid = child.id().unwrap().to_string();
    for _ in 0..2 {
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
    }
    let status = child.wait().await.unwrap();
    // The items the killed run held come free after its one-second lease.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let next = world.run(&["run"]).await;

    assert_eq!(status.code(), Some(130));
    assert_eq!(next.code, 0, "{next:?}");
    assert_eq!(world.states().await.get("deleted"), Some(&600));
    assert_eq!(world.certificates().await, world.ledger());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_runs_end_to_end_and_never_touches_an_existing_queue() {
    let world = World::new(0).await;
    world.enqueue(&generated(0..1)).await;
    let fresh = world.db.with_file_name("demo.db");

    let demo = world
        .run(&["--db", fresh.to_str().unwrap(), "demo", "--files", "20"])
        .await;
    let refused = world.run(&["demo", "--files", "20"]).await;

    assert_eq!(demo.code, 0, "{demo:?}");
    assert!(demo
        .stdout
        .contains("deleted 22, already gone 0, rejected 0, failed 0"));
    assert!(demo.stdout.contains(notary_purge::sim::GUIDE_FILES[1].1));
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused
        .stderr
        .contains("already exists; the demo only writes to a new database"));
    assert_eq!(world.states().await.get("pending"), Some(&1));
}
