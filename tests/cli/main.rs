//! End-to-end tests: the real binary against the simulator on 127.0.0.1, port 0, with a
//! temporary database each. Assertions are on database rows and on the simulator's
//! ledger and request log, never on log text alone.

/// The harness: a world per test (temp folder, database, simulator, command runner).
mod harness;

/// Authentication: renewing tokens, redirects, secrets kept out of every output.
mod auth;
/// Answers that are wrong in shape or content.
mod bad_answers;
/// Configuration and database errors.
mod bad_setup;
/// Crash safety: SIGKILL at random moments, and overlapping runs.
mod crash;
/// Enqueueing: input shapes, validation, the shared cases.
mod enqueue;
/// Operator safety: dry runs, limits, retry and cancel, signals.
mod operator;
/// The main job: runs against a well-behaved and a faulty simulator.
mod run;
