//! Reliability under faults and floods, in a binary of its own (cargo runs test binaries
//! one after the other): the seeded chaos test, the load test and the flood test. Each
//! starts a Synapse of its own and loads the machine, so they take [`HEAVY`] to run one
//! at a time (the flood test's bounds are timings). They use the shared harness in
//! `tests/common/`.

mod chaos;
#[path = "../common/mod.rs"]
mod common;
mod flood;
mod load;

/// Held by each test of this binary: one at a time on a 2-core machine.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
