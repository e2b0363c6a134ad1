//! notary-purge: bulk-delete stored files from the Acronis Notary service and archive
//! the certificate ID of every file it deletes.
//!
//! Reading order: `input` and `file_id` (what goes into the queue), `store` (the queue and
//! the archive in SQLite), `client` and `auth` (the Notary API), `runner` (draining the
//! queue), `command` (the CLI), `sim` (the simulator the demo, tests and benchmarks use).
//!
//! ```
//! use notary_purge::file_id::FileId;
//!
//! let id: FileId = " AA95BAC7-33FD-4FAA-9FA1-F4BAEACA82CD".trim().parse().unwrap();
//! assert_eq!(id.to_string(), "aa95bac7-33fd-4faa-9fa1-f4baeaca82cd");
//! assert!("aa95bac7-33fd-4faa".parse::<FileId>().is_err());
//! ```

pub mod auth;
pub mod backoff;
pub mod client;
pub mod command;
pub mod config;
pub mod error;
pub mod file_id;
pub mod input;
pub mod runner;
pub mod sim;
pub mod state;
pub mod store;
