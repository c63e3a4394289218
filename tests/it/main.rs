//! Foyer's integration tests: one binary, one shared Synapse, tests in parallel.

mod appservice_api;
mod browser;
mod check_online;
mod claims;
#[path = "../common/mod.rs"]
mod common;
mod config_cli;
mod demo;
mod direct_chats;
mod door;
mod federation;
mod handshake;
mod hardening;
mod hostile;
mod ingest;
mod ingest_owncast;
mod lifecycle;
mod membership;
mod migrate;
mod moderation_record;
mod moves;
mod notices;
mod operations;
mod outbox;
mod prometheus;
mod security;
mod standin;
mod store_contract;
mod stream;
mod transcripts;
mod upgrade;
mod web_chat;
mod web_claims;
mod web_readers;
mod web_users;
mod webhooks;
