//! Arbitrary bytes as a webhook body: `parse` may refuse them, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = foyer::http::webhooks::payload::parse(data, chrono::Utc::now());
});
