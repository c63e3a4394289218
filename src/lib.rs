//! Foyer: a Matrix application service that gives every scheduled live stream its own
//! chat room. See `docs/architecture.md` for the map.

pub mod admin;
pub mod build_info;
pub mod cli;
pub mod config;
pub mod events;
pub mod failpoint;
pub mod followers;
pub mod html;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod matrix;
pub mod memory;
pub mod metrics_help;
pub mod model;
pub mod moderation;
pub mod online;
pub mod outbox;
pub mod query;
pub mod registration;
pub mod schedule;
pub mod secret;
pub mod startup;
pub mod store;
#[cfg(test)]
mod test_support;
pub mod webchat;
pub mod words;
