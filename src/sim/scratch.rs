use std::time::{Duration, Instant};
use serde_json::json;
use tokio::net::TcpListener;
use crate::sim::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load() {
    let mut config = SimConfig::new("sim-token");
    config.generated_files = 1_000_000;
    config.record_requests = false;
    config.latency = Duration::from_millis(std::env::var("LAT").map(|v| v.parse().unwrap()).unwrap_or(0));
    let sim = start(config, TcpListener::bind("127.0.0.1:0").await.unwrap()).await.unwrap();
    let url = format!("{}/stored-files", sim.base_url());
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..32u64 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for batch in 0..300u64 {
                let start = (worker * 300 + batch) * 100;
                let ids: Vec<String> = (start..start + 100).map(generated_file_id).collect();
                let r = http.delete(&url).bearer_auth("sim-token").json(&json!({"file_ids": ids})).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let v: serde_json::Value = r.json().await.unwrap();
                assert_eq!(v["deleted"].as_array().unwrap().len(), 100);
            }
        }));
    }
    for t in tasks { t.await.unwrap(); }
    let el = t0.elapsed();
    println!("9600 requests in {el:?}: {:.0} req/s; ledger {}", 9600.0 / el.as_secs_f64(), sim.ledger().len());
    sim.shutdown().await;
}
