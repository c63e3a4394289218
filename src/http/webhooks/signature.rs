//! Standard Webhooks verification: `v1,<base64 HMAC-SHA256>` over
//! `{webhook-id}.{webhook-timestamp}.{raw body}`, any configured secret may match.

use axum::http::HeaderMap;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::config::WebhookKey;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the {0} header is not valid")]
    BadHeader(&'static str),
    #[error("webhook-timestamp is {0} seconds away from now, beyond the tolerance")]
    OutsideTolerance(i64),
    #[error("webhook-signature has no v1 signature")]
    NoSupportedSignature,
    #[error("no signature matches any configured secret")]
    NoMatch,
}

/// The signature headers, read and checked as far as they can be without the body.
#[derive(Debug)]
pub struct SignedHeaders<'h> {
    id: &'h str,
    timestamp: &'h str,
    candidates: Vec<Vec<u8>>,
}

/// Checks what the headers alone can tell: present, well formed, a timestamp within
/// `tolerance` and at least one `v1` signature. Run before the body is read, so that a
/// sender who cannot even get this right is refused before Foyer buffers its body.
pub fn check_headers<'h>(
    headers: &'h HeaderMap, tolerance: std::time::Duration, now: DateTime<Utc>,
) -> Result<SignedHeaders<'h>, SignatureError> {
    let header = |name: &'static str| -> Result<&'h str, SignatureError> {
        let value = headers.get(name).ok_or(SignatureError::MissingHeader(name))?;
        let text = value.to_str().map_err(|_| SignatureError::BadHeader(name))?.trim();
        if text.is_empty() {
            return Err(SignatureError::MissingHeader(name));
        }
        Ok(text)
    };
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    let signatures = header("webhook-signature")?;
    if id.len() > 256 || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(SignatureError::BadHeader("webhook-id"));
    }
    if timestamp.is_empty() || timestamp.len() > 12 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::BadHeader("webhook-timestamp"));
    }
    let seconds: i64 = timestamp.parse().map_err(|_| SignatureError::BadHeader("webhook-timestamp"))?;
    let skew = now.timestamp() - seconds;
    if skew.unsigned_abs() > tolerance.as_secs() {
        return Err(SignatureError::OutsideTolerance(skew));
    }

    let candidates: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::NoSupportedSignature);
    }
    Ok(SignedHeaders { id, timestamp, candidates })
}

/// Verifies the headers against the raw body; returns the `webhook-id`.
pub fn verify<'h>(
    headers: &'h HeaderMap, body: &[u8], keys: &[WebhookKey], tolerance: std::time::Duration, now: DateTime<Utc>,
) -> Result<&'h str, SignatureError> {
    check_headers(headers, tolerance, now)?.verify(body, keys)
}

impl<'h> SignedHeaders<'h> {
    /// Whether one of the signatures is the body's under one of `keys`; the `webhook-id`.
    pub fn verify(&self, body: &[u8], keys: &[WebhookKey]) -> Result<&'h str, SignatureError> {
        let SignedHeaders { id, timestamp, candidates } = self;
        for key in keys {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.bytes()).expect("HMAC takes keys of any length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            for candidate in candidates {
                // verify_slice compares in constant time.
                if mac.clone().verify_slice(candidate).is_ok() {
                    return Ok(*id);
                }
            }
        }
        Err(SignatureError::NoMatch)
    }
}

/// Signs like a Standard Webhooks sender; for tools and tests.
pub fn sign(key: &WebhookKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const TOLERANCE: std::time::Duration = std::time::Duration::from_secs(300);

    fn key(b: u8) -> WebhookKey {
        WebhookKey::new(vec![b; 24])
    }

    fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
        h.insert("webhook-timestamp", HeaderValue::from_str(&ts.to_string()).unwrap());
        h.insert("webhook-signature", HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn any_configured_secret_and_any_listed_signature_may_match() {
        let now = Utc::now();
        let body = br#"{"type":"x"}"#;
        let sig = sign(&key(2), "msg_1", now.timestamp(), body);
        let h = headers("msg_1", now.timestamp(), &format!("v1,bm9wZQ==  v2,abc {sig}"));
        assert_eq!(verify(&h, body, &[key(1), key(2)], TOLERANCE, now), Ok("msg_1"));
    }

    #[test]
    fn every_tampering_is_refused() {
        let now = Utc::now();
        let ts = now.timestamp();
        let body = br#"{"type":"x"}"#;
        let sig = sign(&key(1), "msg_1", ts, body);
        let keys = [key(1)];
        assert_eq!(
            verify(&headers("msg_1", ts, &sig), b"{\"type\":\"y\"}", &keys, TOLERANCE, now),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(verify(&headers("msg_2", ts, &sig), body, &keys, TOLERANCE, now), Err(SignatureError::NoMatch));
        assert_eq!(verify(&headers("msg_1", ts, &sig), body, &[key(9)], TOLERANCE, now), Err(SignatureError::NoMatch));
        assert_eq!(
            verify(&headers("msg_1", ts - 301, &sign(&key(1), "msg_1", ts - 301, body)), body, &keys, TOLERANCE, now),
            Err(SignatureError::OutsideTolerance(301))
        );
        let v2 = sig.replacen("v1,", "v2,", 1);
        assert_eq!(
            verify(&headers("msg_1", ts, &v2), body, &keys, TOLERANCE, now),
            Err(SignatureError::NoSupportedSignature)
        );
        let mut missing = headers("msg_1", ts, &sig);
        missing.remove("webhook-timestamp");
        assert_eq!(
            verify(&missing, body, &keys, TOLERANCE, now),
            Err(SignatureError::MissingHeader("webhook-timestamp"))
        );
    }
}
