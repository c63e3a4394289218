//! The scale-out test, in a binary of its own: cargo runs test binaries one after the
//! other, so its load (three instances, 2000 holders) never slows the timing-sensitive
//! tests in `tests/it`. It shares their harness.

#[allow(dead_code)]
#[path = "../it/harness.rs"]
mod harness;
mod scale_out;
