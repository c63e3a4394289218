//! Reliability under faults, in a binary of its own (cargo runs test binaries one after
//! the other): the seeded chaos test and the load test. Each stops and starts a Synapse
//! of its own, so they take [`HEAVY`] to run one at a time. They use the shared harness
//! in `tests/common/`.

mod chaos;
#[path = "../common/mod.rs"]
mod common;
mod load;

/// Held by each test of this binary: one at a time on a 2-core machine.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
