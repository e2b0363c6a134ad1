//! notary-purge: bulk-delete stored files from the Acronis Notary service and archive
//! the certificate ID of every file it deletes.

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
