use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use notary_purge::sim::SimConfig;
use rand::{Rng, SeedableRng};

use crate::harness::{generated, World, TOKEN};

/// Short, so that runs started after a kill take the dead run's items over quickly.
const LEASE_SECS: &str = "1";

#[tokio::test(flavor = "multi_thread")]
async fn killing_runs_at_random_moments_loses_no_certificate() {
    let n_files = 6_000;
    let mut config = SimConfig::new(TOKEN);
    config.generated_files = n_files;
    config.latency = Duration::from_millis(2);
    // Now and then a transient fault, including a connection closed after the delete.
    config.fault_rate = 0.05;
    let world = World::with_config(config).await;
    let enqueued = generated(0..n_files);
    world.enqueue(&enqueued).await;
    let seed: u64 = rand::thread_rng().gen();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let args = [
        "run",
        "--lease-secs",
        LEASE_SECS,
        "--chunk-size",
        "50",
        "--max-attempts",
        "10",
    ];

    // Act: at least 20 runs, each killed with SIGKILL at a random moment.
    let started = Instant::now();
    let mut n_kills = 0;
    while n_kills < 20 && started.elapsed() < Duration::from_secs(50) {
        let mut child = world.command(&args).spawn().unwrap();
        let lifetime = Duration::from_millis(rng.gen_range(50..400));
        tokio::select! {
            _ = child.wait() => (),
            () = tokio::time::sleep(lifetime) => {
                child.kill().await.unwrap();
                n_kills += 1;
            }
        }
    }
    finish_queue(&world, &args).await;

    // Assert.
    assert!(n_kills >= 20, "only {n_kills} kills (seed {seed})");
    let ledger = world.ledger();
    let archive = world.certificates().await;
    let lost: Vec<_> = ledger
        .keys()
        .filter(|id| !archive.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} certificates lost, e.g. {:?} (seed {seed})",
        lost.len(),
        lost.first()
    );
    assert_eq!(archive, ledger, "archive and ledger differ (seed {seed})");
    let enqueued: BTreeSet<String> = enqueued.into_iter().collect();
    let strays: Vec<_> = world
        .ids_sent_for_deletion()
        .into_iter()
        .filter(|id| !enqueued.contains(id))
        .collect();
    assert!(strays.is_empty(), "sent IDs never enqueued: {strays:?}");
    let states = world.states().await;
    assert_eq!(
        states.keys().collect::<Vec<_>>(),
        ["deleted"],
        "{states:?} (seed {seed})"
    );
    assert_eq!(ledger.len() as u64, n_files);
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_runs_share_the_queue_without_sending_an_id_twice() {
    let n_files = 3_000;
    let mut config = SimConfig::new(TOKEN);
    config.generated_files = n_files;
    config.latency = Duration::from_millis(1);
    let world = World::with_config(config).await;
    world.enqueue(&generated(0..n_files)).await;

    let args = ["run", "--concurrency", "4"];
    let (first, second) = tokio::join!(world.run(&args), world.run(&args));

    for output in [&first, &second] {
        assert_eq!(output.code, 0, "{output:?}");
        assert!(!output.stderr.contains("locked"), "{}", output.stderr);
    }
    let (by_first, by_second) = (deleted_by(&first), deleted_by(&second));
    assert_eq!(by_first + by_second, n_files);
    assert!(
        by_first > 0 && by_second > 0,
        "the runs did not overlap: {by_first}/{by_second}"
    );
    let mut times_sent: BTreeMap<String, u32> = BTreeMap::new();
    for id in world.ids_sent_for_deletion() {
        *times_sent.entry(id).or_default() += 1;
    }
    assert_eq!(times_sent.len() as u64, n_files);
    assert!(times_sent.values().all(|n| *n == 1), "an ID was sent twice");
    assert_eq!(world.certificates().await, world.ledger());
}

/// The `deleted N` count of a run's summary line.
fn deleted_by(output: &crate::harness::Output) -> u64 {
    let after = output
        .stdout
        .split("deleted ")
        .nth(1)
        .expect("a summary line");
    after.split(',').next().unwrap().parse().unwrap()
}

/// Runs until no item is open. Items held by killed runs come free only when their lease
/// ends, so between runs this waits out one lease: a wait the design requires, not a
/// guess at when something happened.
async fn finish_queue(world: &World, args: &[&str]) {
    for _ in 0..20 {
        let output = world.run(args).await;
        assert!(output.code == 0 || output.code == 1, "{output:?}");
        let states = world.states().await;
        let open = ["pending", "in_flight", "failed"];
        if open.iter().all(|state| !states.contains_key(*state)) {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("the queue did not drain: {:?}", world.states().await);
}
