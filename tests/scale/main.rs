//! The scale-out test, in a binary of its own: cargo runs test binaries one after the
//! other, so its load (three instances, 2000 holders) never slows the timing-sensitive
//! tests in `tests/it`. It uses the shared harness in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;
mod scale_out;
