//! Shared simulator state: stored files, the deletion ledger, scripted faults, issued tokens,
//! the request log and the request-times file.
//!
//! Every lock here is a std `Mutex` held only for a few non-async statements.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::sim::catalog::{Catalog, FileRef};
use crate::sim::times::RequestTimes;
use crate::sim::{Deletion, Fault, RequestRecord, SimConfig};

/// The state every request handler shares.
pub(super) struct SimState {
    pub(super) config: SimConfig,
    pub(super) catalog: Catalog,
    storage: Mutex<Storage>,
    faults: Mutex<VecDeque<Fault>>,
    tokens: Mutex<HashMap<String, Instant>>,
    requests: Mutex<Vec<RequestRecord>>,
    request_times: Option<RequestTimes>,
    delete_requests: AtomicUsize,
    tokens_issued: AtomicUsize,
    stopping: watch::Sender<bool>,
}

/// Which files are still stored, and what was deleted in which order.
struct Storage {
    guide_deleted: [bool; 2],
    /// One bit per generated file, set once it is deleted.
    generated_deleted: Vec<u64>,
    ledger: Vec<LedgerEntry>,
}

/// A compact ledger line; [`Deletion`] strings are only built when a test asks.
#[derive(Clone, Copy)]
struct LedgerEntry {
    file: FileRef,
    via_bulk: bool,
}

impl SimState {
    /// Builds the state for a fresh simulator with every file stored, creating the
    /// request-times file if one is configured.
    pub(super) fn new(config: SimConfig) -> io::Result<SimState> {
        let catalog = Catalog {
            generated_files: config.generated_files,
            foreign_files: config.foreign_files,
        };
        let n_words = usize::try_from(config.generated_files.div_ceil(64))
            .expect("the deleted-file bitset of generated_files fits in memory");
        let storage = Storage {
            guide_deleted: [false; 2],
            generated_deleted: vec![0; n_words],
            ledger: Vec::new(),
        };
        let request_times = match &config.request_times {
            Some(path) => Some(RequestTimes::create(path)?),
            None => None,
        };
        Ok(SimState {
            config,
            catalog,
            storage: Mutex::new(storage),
            faults: Mutex::new(VecDeque::new()),
            tokens: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            request_times,
            delete_requests: AtomicUsize::new(0),
            tokens_issued: AtomicUsize::new(0),
            stopping: watch::channel(false).0,
        })
    }

    /// Whether the file with this id (any case) is stored, by this account or another.
    pub(super) fn is_stored(&self, file_id: &str) -> bool {
        let file = self.catalog.resolve_file(&file_id.to_ascii_lowercase());
        file.is_some_and(|file| lock(&self.storage).is_stored(file))
    }

    /// Deletes the stored ones among `files` in order, keeping the last `n_keep` of those
    /// stored, and returns what was deleted.
    pub(super) fn delete_files(&self, files: &[FileRef], n_keep: usize) -> Vec<FileRef> {
        let mut storage = lock(&self.storage);
        let mut deleted: Vec<FileRef> = files
            .iter()
            .copied()
            .filter(|file| storage.remove(*file))
            .collect();

        let n_deleted = deleted.len() - n_keep.min(deleted.len());
        for file in deleted.drain(n_deleted..) {
            storage.restore(file);
        }
        let entries = deleted.iter().map(|file| LedgerEntry {
            file: *file,
            via_bulk: true,
        });
        storage.ledger.extend(entries);
        deleted
    }

    /// Deletes one file through the single-file route; false when it was not stored.
    pub(super) fn delete_file(&self, file: FileRef) -> bool {
        let mut storage = lock(&self.storage);
        let was_stored = storage.remove(file);
        if was_stored {
            storage.ledger.push(LedgerEntry {
                file,
                via_bulk: false,
            });
        }
        was_stored
    }

    /// Whether this file is stored.
    pub(super) fn is_file_stored(&self, file: FileRef) -> bool {
        lock(&self.storage).is_stored(file)
    }

    /// Every deletion so far, in order.
    pub(super) fn ledger(&self) -> Vec<Deletion> {
        let entries: Vec<LedgerEntry> = lock(&self.storage).ledger.clone();
        entries
            .into_iter()
            .map(|entry| Deletion {
                file_id: entry.file.id(),
                cert: entry.file.cert(),
                via_bulk: entry.via_bulk,
            })
            .collect()
    }

    /// Queues a fault for a later bulk delete.
    pub(super) fn push_fault(&self, fault: Fault) {
        lock(&self.faults).push_back(fault);
    }

    /// The fault for the bulk delete being answered: the oldest scripted one, else a random
    /// one with probability `fault_rate`.
    pub(super) fn next_fault(&self) -> Option<Fault> {
        if let Some(fault) = lock(&self.faults).pop_front() {
            return Some(fault);
        }
        random_fault(self.config.fault_rate)
    }

    /// Issues a fresh token valid for the configured lifetime.
    pub(super) fn issue_token(&self) -> String {
        let token = format!("sim-at-{}", uuid::Uuid::new_v4().simple());
        let now = Instant::now();
        let expiry = now + self.config.token_lifetime;

        let mut tokens = lock(&self.tokens);
        tokens.retain(|_, known_expiry| now < *known_expiry);
        tokens.insert(token.clone(), expiry);
        drop(tokens);

        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
        token
    }

    /// Whether `token` is the static token or an issued token that has not expired.
    pub(super) fn is_valid_token(&self, token: &str) -> bool {
        if !self.config.token.is_empty() && token == self.config.token {
            return true;
        }
        let expiry = lock(&self.tokens).get(token).copied();
        expiry.is_some_and(|expiry| Instant::now() < expiry)
    }

    /// How many tokens the token endpoint issued.
    pub(super) fn tokens_issued(&self) -> usize {
        self.tokens_issued.load(Ordering::Relaxed)
    }

    /// Counts one DELETE request.
    pub(super) fn count_delete_request(&self) {
        self.delete_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// How many DELETE requests arrived.
    pub(super) fn delete_requests(&self) -> usize {
        self.delete_requests.load(Ordering::Relaxed)
    }

    /// Appends to the request log.
    pub(super) fn record_request(&self, record: RequestRecord) {
        lock(&self.requests).push(record);
    }

    /// A copy of the request log.
    pub(super) fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.requests).clone()
    }

    /// Appends a request's line to the request-times file, if there is one.
    pub(super) fn record_time(&self, arrived: SystemTime, method: &str, status: u16, n_ids: usize) {
        if let Some(times) = &self.request_times {
            times.record(arrived, method, status, n_ids);
        }
    }

    /// Writes out the request-times file, if there is one.
    pub(super) fn flush_request_times(&self) {
        if let Some(times) = &self.request_times {
            times.flush();
        }
    }

    /// Tells hanging and sleeping handlers to give up.
    pub(super) fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Sleeps for `duration`; false if shutdown began first.
    pub(super) async fn sleep_unless_stopping(&self, duration: Duration) -> bool {
        if duration.is_zero() {
            return !*self.stopping.borrow();
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.wait_for_shutdown() => false,
        }
    }

    async fn wait_for_shutdown(&self) {
        let mut stopping = self.stopping.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = stopping.wait_for(|is_stopping| *is_stopping).await;
    }
}

impl Storage {
    fn is_stored(&self, file: FileRef) -> bool {
        match file {
            FileRef::Guide(guide_idx) => !self.guide_deleted[guide_idx],
            FileRef::Generated(n) => self.generated_deleted[word_idx(n)] & bit(n) == 0,
            FileRef::Foreign(_) => true,
        }
    }

    /// Marks a file deleted; false when it was not stored or cannot be deleted.
    fn remove(&mut self, file: FileRef) -> bool {
        if !self.is_stored(file) {
            return false;
        }
        match file {
            FileRef::Guide(guide_idx) => self.guide_deleted[guide_idx] = true,
            FileRef::Generated(n) => self.generated_deleted[word_idx(n)] |= bit(n),
            FileRef::Foreign(_) => return false,
        }
        true
    }

    fn restore(&mut self, file: FileRef) {
        match file {
            FileRef::Guide(guide_idx) => self.guide_deleted[guide_idx] = false,
            FileRef::Generated(n) => self.generated_deleted[word_idx(n)] &= !bit(n),
            FileRef::Foreign(_) => (),
        }
    }
}

/// Locks a mutex; poisoning is ignored because no code panics while holding these locks.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn word_idx(n: u64) -> usize {
    usize::try_from(n / 64).expect("generated file numbers index an allocated bitset")
}

fn bit(n: u64) -> u64 {
    1 << (n % 64)
}

/// One of the transient faults a flaky service or proxy produces, with probability `rate`.
fn random_fault(rate: f64) -> Option<Fault> {
    if rate.is_nan() || rate <= 0.0 {
        return None;
    }
    let mut rng = rand::thread_rng();
    if !rng.gen_bool(rate.min(1.0)) {
        return None;
    }
    let fault = match rng.gen_range(0..5) {
        0 => Fault::Status(500),
        1 => Fault::Status(503),
        2 => Fault::TooManyRequests {
            retry_after: "1".to_owned(),
        },
        3 => Fault::CloseAfterDelete,
        _ => Fault::ProxyHtml502,
    };
    Some(fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(generated_files: u64) -> SimState {
        let mut config = SimConfig::new("sim-token");
        config.generated_files = generated_files;
        config.foreign_files = 1;
        SimState::new(config).unwrap()
    }

    #[test]
    fn scripted_faults_come_out_in_order_then_none() {
        let sim = state(0);

        sim.push_fault(Fault::Status(500));
        sim.push_fault(Fault::Partial { omit: 2 });

        assert!(matches!(sim.next_fault(), Some(Fault::Status(500))));
        assert!(matches!(sim.next_fault(), Some(Fault::Partial { omit: 2 })));
        assert!(sim.next_fault().is_none());
    }

    #[test]
    fn certain_fault_rate_always_injects_and_nan_never_does() {
        assert!(random_fault(1.0).is_some());
        assert!(random_fault(f64::NAN).is_none());
        assert!(random_fault(0.0).is_none());
    }

    #[test]
    fn deleting_keeps_the_last_n_keep_files_stored() {
        let sim = state(130);
        let files = [
            FileRef::Generated(1),
            FileRef::Generated(129),
            FileRef::Guide(0),
        ];

        let deleted = sim.delete_files(&files, 1);

        assert_eq!(deleted, [FileRef::Generated(1), FileRef::Generated(129)]);
        assert!(!sim.is_file_stored(FileRef::Generated(129)));
        assert!(sim.is_file_stored(FileRef::Guide(0)));
        assert_eq!(sim.ledger().len(), 2);
    }

    #[test]
    fn duplicates_and_foreign_files_are_never_deleted_twice_or_at_all() {
        let sim = state(10);
        let files = [
            FileRef::Generated(3),
            FileRef::Generated(3),
            FileRef::Foreign(0),
        ];

        let deleted = sim.delete_files(&files, 0);

        assert_eq!(deleted, [FileRef::Generated(3)]);
        assert!(!sim.delete_file(FileRef::Generated(3)));
        assert!(sim.is_stored("00000000-0000-4000-9000-000000000000"));
    }

    #[test]
    fn static_token_never_expires_and_issued_tokens_do() {
        let mut config = SimConfig::new("sim-token");
        config.token_lifetime = Duration::ZERO;
        let sim = SimState::new(config).unwrap();

        let issued = sim.issue_token();

        assert!(sim.is_valid_token("sim-token"));
        assert!(!sim.is_valid_token(&issued));
        assert!(!sim.is_valid_token("made-up"));
        assert_eq!(sim.tokens_issued(), 1);
    }
}
