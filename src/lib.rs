//! Foyer: a Matrix application service that gives every scheduled live stream its own
//! chat room. See `docs/architecture.md` for the map.

pub mod appservice;
pub mod cli;
pub mod config;
pub mod events;
pub mod http;
pub mod logging;
pub mod matrix;
pub mod registration;
pub mod secret;
pub mod startup;
