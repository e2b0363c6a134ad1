use crate::harness::World;

#[track_caller]
fn assert_error(output: &crate::harness::Output, expected: &str) {
    assert_eq!(output.code, 2, "{output:?}");
    assert!(
        output.stderr.contains(expected),
        "{:?} lacks {expected:?}",
        output.stderr
    );
    assert_eq!(
        output.stderr.lines().count(),
        1,
        "one line: {:?}",
        output.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_in_a_missing_folder_is_refused() {
    let world = World::new(0).await;
    let db = world.db.with_file_name("missing").join("queue.db");

    let db_arg = db.to_str().unwrap();
    let id = "aa95bac7-33fd-4faa-9fa1-f4baeaca82cd";

    let created = world.run(&["--db", db_arg, "enqueue", id]).await;
    let status = world.run(&["--db", db_arg, "status"]).await;

    assert_error(
        &created,
        "does not exist; create it or choose another database path",
    );
    assert_error(
        &status,
        "no such file; check --db or `database` (`enqueue` creates it)",
    );
    assert!(!db.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn another_programs_database_is_left_alone() {
    let world = World::new(0).await;
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&world.db)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::query("create table invoices (id integer primary key)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let output = world
        .run(&["enqueue", "aa95bac7-33fd-4faa-9fa1-f4baeaca82cd"])
        .await;

    assert_error(&output, "holds another program's tables (`invoices`)");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let world = World::new(0).await;
    let garbage = b"this is not a database, just some text that happens to be here\n".repeat(100);
    std::fs::write(&world.db, &garbage).unwrap();

    let output = world.run(&["status"]).await;

    assert_error(&output, "not a SQLite database, or a corrupt one");
    assert_eq!(std::fs::read(&world.db).unwrap(), garbage);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_newer_than_the_binary_is_refused() {
    let world = World::new(0).await;
    world.create_database().await;
    let pool = world.pool().await;
    sqlx::query(
        "insert into _sqlx_migrations (version, description, success, checksum, execution_time)
values (29991231000000, 'from the future', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let output = world.run(&["status"]).await;

    assert_error(&output, "the schema is newer than this binary");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new(0).await;

    world.create_database().await;

    let mode = std::fs::metadata(&world.db).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_mistakes_are_named_with_file_and_line() {
    let world = World::new(0).await;
    let config = world.db.with_file_name("jobs.toml");
    let cases = [
        (
            "concurrency = 4\nchunck_size = 10\n",
            "jobs.toml:2`: unknown field `chunck_size`",
        ),
        (
            "concurrency = \"4\"\n",
            "jobs.toml:1`: invalid type: string",
        ),
        ("lease_secs = 0\n", "lease_secs must be at least 1"),
    ];

    for (text, expected) in cases {
        crate::harness::write_private(&config, text);
        let output = world
            .run(&["--config", config.to_str().unwrap(), "run"])
            .await;
        assert_error(&output, expected);
    }
    let output = world
        .run(&["--base-url", "notary.example.com/api", "run"])
        .await;
    assert_error(&output, "has no scheme");
    // Without the API's path every file would look already gone.
    let origin = format!("http://{}", world.sim.addr());
    let output = world.run(&["--base-url", &origin, "run"]).await;
    assert_error(&output, "does not end with the Notary API's path");
    assert!(world.sim.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new(1).await;
    world.enqueue(&crate::harness::generated(0..1)).await;
    let token_file = world.db.with_file_name("token");
    std::fs::write(&token_file, crate::harness::TOKEN).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = world.db.with_file_name("jobs.toml");
    crate::harness::write_private(&config, &format!("token_file = {:?}\n", token_file));

    let mut command = world.command(&["--config", config.to_str().unwrap(), "run"]);
    command.env_remove("NOTARY_TOKEN");
    let refused = crate::harness::collect(command).await;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut command = world.command(&["--config", config.to_str().unwrap(), "run"]);
    command.env_remove("NOTARY_TOKEN");
    let accepted = crate::harness::collect(command).await;

    assert_error(&refused, "its mode is 0644; run `chmod 600");
    assert_eq!(accepted.code, 0, "{accepted:?}");
    assert!(world.sim.requests().iter().any(|r| r.method == "DELETE"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_inserted_with_plain_sql_are_validated_before_sending() {
    let world = World::new(1).await;
    world.create_database().await;
    let pool = world.pool().await;
    sqlx::query(
        "insert into batches (label) values ('from erp');
insert into items (batch_id, file_id)
select (select max(id) from batches), column1 from (values
  ('00000000-0000-4000-8000-000000000000'),
  ('DROP TABLE certificates'),
  ('aa95bac7-33fd-4faa-9fa1-f4baeaca82c'));",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let output = world.run(&["run"]).await;

    assert_eq!(output.code, 1, "{output:?}");
    assert_eq!(
        world.item("DROP TABLE certificates").await,
        ("rejected".into(), Some("not a UUID".into()))
    );
    assert_eq!(
        world.ids_sent_for_deletion(),
        ["00000000-0000-4000-8000-000000000000"]
    );
    assert_eq!(world.certificates().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_database_is_refused_before_anything_happens() {
    let world = World::new(0).await;
    world.create_database().await;
    // Root may write any file whatever its mode (CI runs as root); the immutable
    // attribute stops root too. Elsewhere, the mode is enough.
    let made_immutable = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&world.db)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !made_immutable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&world.db, std::fs::Permissions::from_mode(0o400)).unwrap();
    }

    let output = world
        .run(&["enqueue", "aa95bac7-33fd-4faa-9fa1-f4baeaca82cd"])
        .await;
    if made_immutable {
        std::process::Command::new("chattr")
            .arg("-i")
            .arg(&world.db)
            .status()
            .unwrap();
    }

    assert_error(
        &output,
        "the file is read-only (check its mode, owner and attributes)",
    );
}
