//! `sim`: serve the Notary API simulator in the foreground.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::command::Exit;
use crate::config::TOKEN_ENV;
use crate::error::{Error, Result};
use crate::sim::{self, SimConfig};

/// The token the simulator accepts when NOTARY_TOKEN is not set.
pub const SIM_TOKEN: &str = "sim-token";

/// Serve a Notary API simulator on loopback (for trials, tests and benchmarks)
///
/// It holds the API guide's two files plus --files generated ones (IDs
/// 00000000-0000-4000-8000-{n:012x}), accepts the token in NOTARY_TOKEN (or `sim-token`),
/// and prints its base URL on stdout. Stop it with Ctrl-C.
///
/// Example: notary-purge sim --port 8080 --files 100000 --latency-ms 50
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port to listen on (0 picks a free one)
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to listen on; only loopback addresses are accepted
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Generated files to hold besides the guide's two
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    files: u64,
    /// Delay added to every answer, in milliseconds
    #[arg(long, default_value_t = 0, value_name = "MS")]
    latency_ms: u64,
    /// Share of bulk deletes that get a random transient fault (0 to 1)
    #[arg(long, default_value_t = 0.0, value_name = "RATE")]
    fault_rate: f64,
    /// Lifetime of tokens from the token endpoint, in seconds
    #[arg(long, default_value_t = 7200, value_name = "SECS")]
    token_lifetime_secs: u64,
    /// Keep no request log (saves memory in long benchmarks)
    #[arg(long)]
    no_request_log: bool,
    /// Write one line per request (`unix_secs method status n_ids`) to this file,
    /// written out when the simulator stops
    #[arg(long, value_name = "FILE")]
    request_times: Option<PathBuf>,
}

/// Runs `sim`.
pub async fn run(args: Args) -> Result<Exit> {
    if !args.host.is_loopback() {
        return Err(Error::Config(format!(
            "--host {} is not a loopback address; the simulator only serves this machine",
            args.host
        )));
    }
    if 100_000_000 < args.files {
        return Err(Error::Config(
            "--files can be at most 100000000".to_string(),
        ));
    }
    if !(0.0..=1.0).contains(&args.fault_rate) {
        return Err(Error::Config(
            "--fault-rate must be between 0 and 1".to_string(),
        ));
    }
    let token = std::env::var(TOKEN_ENV).unwrap_or_else(|_| SIM_TOKEN.to_string());
    let mut config = SimConfig::new(&token);
    config.generated_files = args.files;
    config.latency = Duration::from_millis(args.latency_ms);
    config.fault_rate = args.fault_rate;
    config.token_lifetime = Duration::from_secs(args.token_lifetime_secs);
    config.record_requests = !args.no_request_log;
    config.request_times = args.request_times;

    let address = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| Error::Io {
            context: format!("cannot listen on {address}"),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Io {
        context: "cannot read the listening address".to_string(),
        source,
    })?;
    outln!("http://{bound}{}", sim::API_PREFIX);
    let stopped = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    sim::serve(config, listener, stopped)
        .await
        .map_err(|source| Error::Io {
            context: "the simulator stopped".to_string(),
            source,
        })?;
    Ok(Exit::Success)
}
