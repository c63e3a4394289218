//! Standard Webhooks verification on fuzzed headers and body.
//!
//! Input layout: `[flags] [skew] id \n timestamp \n signature \n body...`
//! - flags bit 0: sign the body properly with the fuzz key (the success path);
//! - flags bit 1: with bit 0, keep the fuzzed signature entries before the real one;
//! - flags bit 2: move `now` away from the timestamp by `skew * 3` seconds (±384 s,
//!   across the 300 s tolerance); otherwise `now` is the timestamp itself, so the
//!   HMAC comparison is reached whenever the timestamp parses.
//!
//! `verify` must never panic, and must accept a properly signed request whose
//! headers it can read.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use chrono::{DateTime, Utc};
use foyer::config::WebhookKey;
use foyer::http::webhooks::signature::{sign, verify};
use libfuzzer_sys::fuzz_target;

const TOLERANCE: std::time::Duration = std::time::Duration::from_secs(300);

fuzz_target!(|data: &[u8]| {
    let [flags, skew, rest @ ..] = data else {
        return;
    };
    let mut parts = rest.splitn(4, |&b| b == b'\n');
    let id = parts.next().unwrap_or_default();
    let timestamp = parts.next().unwrap_or_default();
    let fuzzed_signature = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();

    let key = WebhookKey::new(vec![7u8; 24]);
    let id_text = std::str::from_utf8(id).ok().map(str::trim);
    let ts_text = std::str::from_utf8(timestamp).ok().map(str::trim);
    let seconds = ts_text.and_then(|t| t.parse::<i64>().ok());
    let skew = if flags & 4 != 0 { i64::from(*skew as i8) * 3 } else { 0 };
    let now = seconds
        .and_then(|s| s.checked_add(skew))
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .unwrap_or_else(Utc::now);

    let signed = flags & 1 != 0;
    let signature_value: Vec<u8> = match (signed, id_text, seconds) {
        (true, Some(id_text), Some(seconds)) => {
            let real = sign(&key, id_text, seconds, body);
            if flags & 2 != 0 { [fuzzed_signature, b" ", real.as_bytes()].concat() } else { real.into_bytes() }
        }
        _ => fuzzed_signature.to_vec(),
    };

    let mut headers = HeaderMap::new();
    for (name, value) in
        [("webhook-id", id), ("webhook-timestamp", timestamp), ("webhook-signature", &signature_value[..])]
    {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(name, value);
        }
    }

    let result = verify(&headers, body, std::slice::from_ref(&key), TOLERANCE, now);

    // The oracle: a request signed like a Standard Webhooks sender, with readable
    // headers, a well-formed id and timestamp, and within tolerance, is accepted.
    let readable = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .all(|name| headers.get(*name).is_some_and(|v| v.to_str().is_ok()));
    if let (true, true, Some(id_text), Some(ts_text), Some(seconds)) = (signed, readable, id_text, ts_text, seconds) {
        let well_formed_id =
            !id_text.is_empty() && id_text.len() <= 256 && id_text.chars().all(|c| c.is_ascii_graphic());
        let canonical_ts = ts_text.len() <= 12 && ts_text == seconds.to_string() && seconds >= 0;
        if well_formed_id && canonical_ts && skew.unsigned_abs() <= TOLERANCE.as_secs() {
            assert_eq!(result, Ok(id_text), "a properly signed request was refused");
        }
    }
});
