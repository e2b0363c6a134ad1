use std::time::Duration;

use notary_purge::sim::{self, Fault};
use sqlx::Row;

use crate::harness::{generated, World};

#[tokio::test(flavor = "multi_thread")]
async fn a_garbled_success_answer_is_retried_and_loses_no_certificate() {
    for fault in [Fault::TruncatedJson, Fault::EmptyBody] {
        let world = World::new(4).await;
        world.enqueue(&generated(0..4)).await;
        world.sim.push_fault(fault.clone());

        let output = world.run(&["run"]).await;

        assert_eq!(output.code, 0, "{fault:?}: {output:?}");
        assert_eq!(world.certificates().await, world.ledger(), "{fault:?}");
        assert_eq!(world.certificates().await.len(), 4, "{fault:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_for_an_id_not_requested_is_ignored() {
    let world = World::new(2).await;
    world.enqueue(&generated(0..2)).await;
    world.sim.push_fault(Fault::UnrequestedEntry);

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        output.stderr.contains("answer.unrequested_entry"),
        "{}",
        output.stderr
    );
    let archive = world.certificates().await;
    assert_eq!(archive.keys().cloned().collect::<Vec<_>>(), generated(0..2));
}

#[tokio::test(flavor = "multi_thread")]
async fn upper_case_ids_in_the_answer_are_matched() {
    let world = World::new(2).await;
    world.enqueue(&generated(0..2)).await;
    world.sim.push_fault(Fault::UpperCaseIds);

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(world.certificates().await, world.ledger());
    assert_eq!(
        world.count_requests("DELETE", "/stored-files"),
        1,
        "no single deletes needed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_certificate_is_kept_as_returned_and_flagged() {
    let world = World::new(2).await;
    world.enqueue(&generated(0..2)).await;
    world.sim.push_fault(Fault::BadCert);

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    let pool = world.pool().await;
    let rows = sqlx::query("select cert, anomaly from certificates where anomaly is not null")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<String, _>("cert"), "not-a-cert");
    let anomaly: String = rows[0].get("anomaly");
    assert!(
        anomaly.contains("not 64 hex digits") || anomaly.contains("differs"),
        "{anomaly}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_that_never_ends_times_out_and_is_retried() {
    let world = World::new(2).await;
    world.enqueue(&generated(0..2)).await;
    world.sim.push_fault(Fault::Hang);

    let output = world.run(&["run", "--request-timeout-secs", "1"]).await;

    assert_eq!(output.code, 0, "{output:?}");
    assert!(output.stderr.contains("timed out"), "{}", output.stderr);
    assert_eq!(world.certificates().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deletion_recovered_after_a_lost_answer_keeps_the_captured_certificate() {
    let world = World::new(3).await;
    world.enqueue(&generated(0..3)).await;
    world.sim.push_fault(Fault::CloseAfterDelete);
    world.sim.push_fault(Fault::CloseAfterDelete);

    let output = world.run(&["run", "--max-attempts", "2"]).await;

    // Both attempts lost their answer; the files were deleted by the first one.
    assert_eq!(output.code, 1, "{output:?}");
    let second = world.run(&["run"]).await;
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(world.certificates().await.len(), 3);
    assert_eq!(world.certificates().await, world.ledger());
    assert_eq!(
        world.certificates().await[&sim::generated_file_id(0)],
        sim::generated_cert(0)
    );
    let _ = Duration::ZERO;
}
