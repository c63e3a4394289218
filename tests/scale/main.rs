//! The scale-out tests, several Foyer instances on one PostgreSQL, in a binary of their
//! own: cargo runs test binaries one after the other, so their load (three instances,
//! 2000 holders) never slows the timing-sensitive tests in `tests/it`. They use the
//! shared harness in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;
mod scale_out;
mod timeouts;
mod web_chat;
