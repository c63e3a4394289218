//! Foyer's integration tests: one binary, one shared Synapse, tests in parallel.

mod appservice_api;
mod bench;
mod config_cli;
mod handshake;
mod harness;
mod hostile;
mod lifecycle;
mod membership;
mod migrate;
mod security;
mod store_contract;
mod stream;
mod webhooks;
