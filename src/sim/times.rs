//! The request-times file: one line per answered request, `unix_secs method status n_ids`,
//! for benchmarks that check how fast and how evenly a client sends.
//!
//! Lines are buffered and written out when the simulator stops.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// An open request-times file.
pub(super) struct RequestTimes {
    out: Mutex<BufWriter<File>>,
}

impl RequestTimes {
    /// Creates (or truncates) the file at `path`.
    pub(super) fn create(path: &Path) -> io::Result<RequestTimes> {
        let file = File::create(path).map_err(|error| {
            let message = format!(
                "cannot create the request-times file `{}`: {error}",
                path.display()
            );
            io::Error::new(error.kind(), message)
        })?;
        Ok(RequestTimes {
            out: Mutex::new(BufWriter::with_capacity(64 * 1024, file)),
        })
    }

    /// Appends the line of a request that arrived at `arrived`.
    pub(super) fn record(&self, arrived: SystemTime, method: &str, status: u16, n_ids: usize) {
        let secs = arrived
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(error) = writeln!(out, "{secs:.6} {method} {status} {n_ids}") {
            tracing::warn!(%error, "sim.request_times_failed");
        }
    }

    /// Writes out every buffered line.
    pub(super) fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(error) = out.flush() {
            tracing::warn!(%error, "sim.request_times_failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn writes_one_line_per_request_on_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("times.txt");
        let times = RequestTimes::create(&path).unwrap();
        let arrived = UNIX_EPOCH + Duration::from_millis(1_500);

        times.record(arrived, "DELETE", 200, 100);
        times.record(arrived, "GET", 404, 1);
        times.flush();

        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "1.500000 DELETE 200 100\n1.500000 GET 404 1\n");
    }
}
