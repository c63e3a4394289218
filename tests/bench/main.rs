//! Benchmarks against a real Synapse (or the stand-in homeserver), in a binary of their
//! own. They print figures and write them to `BENCHMARKS.md`; they assert nothing about
//! speed. Every one is `#[ignore]`d, so `cargo test` passes over them: run them with
//! `scripts/bench [name]` (a release build, one at a time, on quiet cores).

mod bench_doors;
mod bench_intake;
mod bench_memory;
// Named so that `scripts/bench bench_intake` (a substring filter) runs only the SQLite one.
#[path = "bench_intake_postgres.rs"]
mod bench_postgres_intake;
mod bench_read_api;
mod bench_revoke_to_kick;
mod bench_scheduler;
mod bench_transcript;
mod bench_wave;
mod bench_webchat;
#[path = "../common/mod.rs"]
mod common;
mod load;
mod measure;
