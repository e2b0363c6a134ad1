//! The library's error type.

use std::io;

/// What can go wrong outside a single item's outcome. Every variant is fatal for the
/// command; items are never left half-written because of one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags, configuration or environment; the message says what to change.
    #[error("{0}")]
    Config(String),
    /// The database cannot be used as it is; the message says why and what to do.
    #[error("database `{path}`: {message}")]
    Database {
        /// The database file.
        path: String,
        /// What is wrong and what to do about it.
        message: String,
    },
    /// A query failed.
    #[error("{context}")]
    Sql {
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The run's database writer stopped; the error that stopped it is reported instead.
    #[error("the database writer stopped")]
    WriterStopped,
    /// A file or stream could not be read or written.
    #[error("{context}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being done to a failed query.
pub(crate) trait SqlContext<T> {
    fn context(self, context: &'static str) -> Result<T>;
}

impl<T> SqlContext<T> for Result<T, sqlx::Error> {
    fn context(self, context: &'static str) -> Result<T> {
        self.map_err(|source| Error::Sql { context, source })
    }
}
