//! The chat beside the player (docs/web-chat.md), its pure pieces: the platform's viewer
//! token ([`token`]), the names a web fan may not take ([`names`]) and the room's events
//! as the log the stream serves ([`log`]), and whose address a request is ([`address`]). No store, no
//! routes, no Matrix: those build on these. Imports only `model`, `config` and `secret`.

pub mod address;
pub mod log;
pub mod names;
pub mod token;

pub use self::{
    names::{Protected, imitates},
    token::{TokenError, Viewer, ViewerToken},
};
