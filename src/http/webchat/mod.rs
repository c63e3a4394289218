//! The chat beside the player (docs/web-chat.md), over HTTP: getting in
//! ([`session`], `POST /chat/v1/session`) and reading ([`stream`], `GET /chat/v1/stream`,
//! served from each reservation's feed in [`hub`]).

pub mod hub;
pub mod session;
pub mod stream;
