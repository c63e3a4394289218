//! Foyer's integration tests: one binary, one shared Synapse, tests in parallel.

mod appservice_api;
mod bench;
mod bench_intake;
mod bench_memory;
mod bench_scheduler;
mod bench_wave;
mod browser;
mod config_cli;
mod door;
mod handshake;
mod hardening;
mod harness;
mod hostile;
mod lifecycle;
mod membership;
mod migrate;
mod operations;
mod security;
mod standin;
mod store_contract;
mod stream;
mod upgrade;
mod webhooks;
