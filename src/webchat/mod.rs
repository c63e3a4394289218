//! The chat beside the player (contract §10), its pure pieces: the platform's viewer
//! token ([`token`]). No store, no
//! routes, no Matrix: those build on these. Imports only `model`, `config` and `secret`.

pub mod token;

pub use self::token::{TokenError, Viewer, ViewerToken};
