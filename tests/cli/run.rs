use std::time::Instant;

use notary_purge::sim::{self, Fault, SimConfig, GUIDE_FILES};

use crate::harness::{case, generated, World, TOKEN};

#[tokio::test(flavor = "multi_thread")]
async fn guide_example_archives_both_certificates() {
    let world = World::new(0).await;
    let guide = case("guide-example.txt");
    world
        .run(&["enqueue", "--file", guide.to_str().unwrap()])
        .await;

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert!(output
        .stdout
        .contains("deleted 2, already gone 0, rejected 0, failed 0"));
    let expected = GUIDE_FILES.map(|(id, cert)| (id.to_string(), cert.to_string()));
    assert_eq!(world.certificates().await, expected.into_iter().collect());
    assert_eq!(world.ledger(), world.certificates().await);

    let certs = world.run(&["certs", GUIDE_FILES[0].0]).await;
    assert_eq!(certs.code, 0, "{certs:?}");
    let page = format!(
        "http://{}/notary/certificate/{}",
        world.sim.addr(),
        GUIDE_FILES[0].1
    );
    assert_eq!(
        certs.stdout.trim(),
        format!("{} {} {page}", GUIDE_FILES[0].0, GUIDE_FILES[0].1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_ids_are_deleted_and_archived() {
    let world = World::new(10_000).await;
    world.enqueue(&generated(0..10_000)).await;

    let output = world.run(&["run", "--concurrency", "8"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    let certificates = world.certificates().await;
    assert_eq!(certificates.len(), 10_000);
    assert_eq!(certificates, world.ledger());
    assert_eq!(
        certificates[&sim::generated_file_id(1234)],
        sim::generated_cert(1234)
    );
    assert_eq!(world.states().await.get("deleted"), Some(&10_000));
    assert_eq!(world.count_requests("DELETE", "/stored-files"), 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_sends_no_request() {
    let world = World::new(10).await;
    world.enqueue(&generated(0..10)).await;
    world.run(&["run"]).await;
    let n_requests = world.sim.requests().len();

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert!(output.stdout.contains("nothing to do"));
    assert_eq!(world.sim.requests().len(), n_requests);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_queue_sends_nothing() {
    let world = World::new(0).await;
    world.create_database().await;

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert!(world.sim.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_missing_from_a_partial_answer_are_resolved_singly() {
    let world = World::new(10).await;
    world.enqueue(&generated(0..10)).await;
    // First chunk: all deleted but two left out of the answer; the second chunk (the
    // requests are sequential with concurrency 1) keeps two files stored.
    world.sim.push_fault(Fault::Partial { omit: 2 });
    world.sim.push_fault(Fault::SkipDelete { skip: 2 });

    let output = world
        .run(&["run", "--concurrency", "1", "--chunk-size", "5"])
        .await;

    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(world.states().await.get("deleted"), Some(&10));
    assert_eq!(world.certificates().await, world.ledger());
    assert_eq!(world.count_requests("DELETE", "/stored-files"), 2);
    let singles = world
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count()
        - 2;
    assert_eq!(
        singles, 4,
        "one single delete per ID missing from the answer"
    );
    let deleted_singly = world.sim.ledger().iter().filter(|d| !d.via_bulk).count();
    assert_eq!(deleted_singly, 2, "the two files the service kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn files_kept_by_the_service_are_deleted_singly_with_their_certificates() {
    let world = World::new(4).await;
    world.enqueue(&generated(0..4)).await;
    world.sim.push_fault(Fault::SkipDelete { skip: 2 });

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(world.certificates().await.len(), 4);
    assert_eq!(world.certificates().await, world.ledger());
    let via_single = world.sim.ledger().iter().filter(|d| !d.via_bulk).count();
    assert_eq!(via_single, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_requests_waits_for_retry_after() {
    let world = World::new(3).await;
    world.enqueue(&generated(0..3)).await;
    world.sim.push_fault(Fault::TooManyRequests {
        retry_after: "1".to_string(),
    });
    let started = Instant::now();

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        started.elapsed().as_secs_f64() >= 1.0,
        "Retry-After: 1 was not honoured"
    );
    let statuses: Vec<u16> = bulk_statuses(&world);
    assert_eq!(statuses, [429, 200]);
    assert_eq!(world.certificates().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_is_retried_until_it_succeeds() {
    let world = World::new(3).await;
    world.enqueue(&generated(0..3)).await;
    world.sim.push_fault(Fault::Status(500));
    world.sim.push_fault(Fault::Status(503));

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(bulk_statuses(&world), [500, 503, 200]);
    assert_eq!(world.certificates().await, world.ledger());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_page_is_retried_and_logged_in_one_line() {
    let world = World::new(3).await;
    world.enqueue(&generated(0..3)).await;
    world.sim.push_fault(Fault::ProxyHtml502);

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(bulk_statuses(&world), [502, 200]);
    let retry_lines: Vec<&str> = output
        .stderr
        .lines()
        .filter(|l| l.contains("502"))
        .collect();
    assert_eq!(retry_lines.len(), 1, "{}", output.stderr);
    assert!(retry_lines[0].contains("502 Bad Gateway"));
    assert!(!output.stderr.contains("<html>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_closed_after_the_delete_loses_no_certificate() {
    let world = World::new(5).await;
    world.enqueue(&generated(0..5)).await;
    world.sim.push_fault(Fault::CloseAfterDelete);

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(world.ledger().len(), 5);
    assert_eq!(world.certificates().await, world.ledger());
    assert_eq!(world.states().await.get("deleted"), Some(&5));
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_give_up_after_max_attempts_and_a_later_run_finishes() {
    let world = World::new(2).await;
    world.enqueue(&generated(0..2)).await;
    for _ in 0..3 {
        world.sim.push_fault(Fault::Status(503));
    }

    let first = world.run(&["run", "--max-attempts", "3"]).await;
    let (state, error) = world.item(&sim::generated_file_id(0)).await;
    let second = world.run(&["run"]).await;

    assert_eq!(first.code, 1, "{first:?}");
    assert_eq!(state, "failed");
    assert!(error.unwrap().contains("503 Service Unavailable"));
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(world.states().await.get("deleted"), Some(&2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_chunk_is_narrowed_to_the_file_that_causes_it() {
    let mut config = SimConfig::new(TOKEN);
    config.generated_files = 9;
    config.foreign_files = 1;
    let world = World::with_config(config).await;
    let mut ids = generated(0..9);
    ids.insert(4, sim::foreign_file_id(0));
    world.enqueue(&ids).await;

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 1, "{output:?}");
    assert_eq!(world.states().await.get("deleted"), Some(&9));
    let (state, error) = world.item(&sim::foreign_file_id(0)).await;
    assert_eq!(state, "failed");
    assert!(error.unwrap().starts_with("403 Forbidden"));
    assert!(!world.ledger().contains_key(&sim::foreign_file_id(0)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunk_level_bad_request_does_not_block_the_others() {
    let world = World::new(8).await;
    world.enqueue(&generated(0..8)).await;
    world.sim.push_fault(Fault::Status(400));

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(bulk_statuses(&world), [400, 200, 200]);
    assert_eq!(world.states().await.get("deleted"), Some(&8));
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthorized_stops_the_run_and_loses_nothing() {
    let world = World::new(4).await;
    world.enqueue(&generated(0..4)).await;
    world.sim.push_fault(Fault::Unauthorized);

    let output = world.run(&["run", "--concurrency", "1"]).await;

    assert_eq!(output.code, 3, "{output:?}");
    assert!(output
        .stderr
        .contains("the service refused the credentials"));
    assert!(world.ledger().is_empty());
    assert_eq!(world.states().await.get("pending"), Some(&4));
    assert_eq!(world.run(&["run"]).await.code, 0);
    assert_eq!(world.certificates().await.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_stops_before_anything_is_deleted() {
    let world = World::new(2).await;
    world.enqueue(&generated(0..2)).await;

    let mut command = world.command(&["run"]);
    command.env("NOTARY_TOKEN", "wrong-token");
    let output = crate::harness::collect(command).await;

    assert_eq!(output.code, 3, "{output:?}");
    assert!(world.ledger().is_empty());
    assert!(!output.stderr.contains("wrong-token") && !output.stdout.contains("wrong-token"));
}

#[tokio::test(flavor = "multi_thread")]
async fn files_already_gone_are_not_sent() {
    let world = World::new(2).await;
    let unknown = "0d6f3cbe-7a44-4b0a-9c1e-5f2a9f0e4d11".to_string();
    world
        .enqueue(&[generated(0..2), vec![unknown.clone()]].concat())
        .await;

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(world.item(&unknown).await.0, "already_gone");
    assert!(!world.ids_sent_for_deletion().contains(&unknown));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_capture_the_bulk_answer_alone_gives_the_certificates() {
    let world = World::new(300).await;
    world.enqueue(&generated(0..300)).await;

    let output = world.run(&["run", "--capture-certificates", "false"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(world.count_requests("GET", ""), 0);
    assert_eq!(world.certificates().await, world.ledger());
    assert_eq!(world.certificates().await.len(), 300);
}

fn bulk_statuses(world: &World) -> Vec<u16> {
    world
        .sim
        .requests()
        .iter()
        .filter(|request| request.method == "DELETE" && request.path.ends_with("/stored-files"))
        .map(|request| request.status)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_service_stops_the_run_and_fails_nothing() {
    let world = World::new(0).await;
    world.enqueue(&generated(0..250)).await;
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let base_url = format!("http://127.0.0.1:{closed_port}/api/notary/v2");

    let output = world
        .run(&["--base-url", &base_url, "run", "--max-attempts", "2"])
        .await;

    assert_eq!(output.code, 3, "{output:?}");
    assert!(
        output.stderr.contains("the service cannot be reached"),
        "{}",
        output.stderr
    );
    assert_eq!(world.states().await.get("pending"), Some(&250));
}
