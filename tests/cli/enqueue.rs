use serde_json::Value;

use crate::harness::{case, World};

#[tokio::test(flavor = "multi_thread")]
async fn messy_spreadsheet_export_enqueues_exactly_the_expected_ids() {
    let world = World::new(0).await;
    let expected: Value =
        serde_json::from_slice(&std::fs::read(case("messy-ids.expected.json")).unwrap()).unwrap();
    let file = case("messy-ids.txt");

    let output = world
        .run(&["enqueue", "--json", "--file", file.to_str().unwrap()])
        .await;

    assert_eq!(
        output.code, 1,
        "a rejected line makes the exit code 1: {output:?}"
    );
    let report: Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(report["rejected"], expected["rejected"]);
    assert_eq!(report["duplicates"], expected["duplicates_ignored"]);
    assert!(
        output.stderr.contains("messy-ids.txt: line 9: not a UUID"),
        "{}",
        output.stderr
    );

    let pool = world.pool().await;
    let pending: Vec<String> =
        sqlx::query_scalar("select file_id from items where state = 'pending' order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected_ids: Vec<String> = expected["valid_unique"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect();
    assert_eq!(pending, expected_ids);
    let rejected: Vec<(String, String)> =
        sqlx::query_as("select file_id, last_error from items where state = 'rejected'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rejected,
        [(
            "1376fc15-a0aa-4120-9f27-112a0563b46".to_string(),
            "line 9: not a UUID".to_string()
        )]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_input_path_applies_the_same_rules() {
    let world = World::new(0).await;
    let id = "AA95BAC7-33FD-4FAA-9FA1-F4BAEACA82CD";

    let from_args = world.run(&["enqueue", id, "not-an-id"]).await;
    let from_stdin = world
        .run_with_stdin(&["enqueue", "-"], b"\xEF\xBB\xBFbad\r\n# c\r\n")
        .await;

    assert_eq!(from_args.code, 1, "{from_args:?}");
    assert!(from_args
        .stderr
        .contains("<args>: argument 2: not a UUID: `not-an-id`"));
    assert!(
        from_args.stdout.contains("1 enqueued"),
        "{}",
        from_args.stdout
    );
    assert_eq!(from_stdin.code, 1, "{from_stdin:?}");
    assert!(from_stdin
        .stderr
        .contains("<stdin>: line 1: not a UUID: `bad`"));
    let states = world.states().await;
    assert_eq!(states.get("pending"), Some(&1));
    assert_eq!(states.get("rejected"), Some(&2));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_already_queued_is_not_queued_twice() {
    let world = World::new(0).await;
    let guide = case("guide-example.txt");
    let guide = guide.to_str().unwrap();

    let first = world.run(&["enqueue", "--file", guide]).await;
    let second = world.run(&["enqueue", "--file", guide]).await;

    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        second.stdout.contains("the 2 IDs in") && second.stdout.contains("are all queued already"),
        "{second:?}"
    );
    let pool = world.pool().await;
    let n_batches: i64 = sqlx::query_scalar("select count(*) from batches")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n_batches, 1, "no empty batch for IDs already queued");
    assert_eq!(world.states().await.get("pending"), Some(&2));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_file_writes_nothing() {
    let world = World::new(0).await;

    let output = world
        .run(&["enqueue", "--file", "/nonexistent/ids.txt"])
        .await;

    assert_eq!(output.code, 2, "{output:?}");
    assert!(output
        .stderr
        .contains("cannot open `/nonexistent/ids.txt`; nothing was enqueued"));
    assert!(world.states().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn input_without_ids_creates_no_batch() {
    let world = World::new(0).await;

    let output = world
        .run_with_stdin(&["enqueue", "-"], b"# only a comment\n\n")
        .await;

    assert_eq!(output.code, 0, "{output:?}");
    assert!(output.stdout.contains("nothing to enqueue"));
    let pool = world.pool().await;
    let n_batches: i64 = sqlx::query_scalar("select count(*) from batches")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n_batches, 0);
}
