//! The viewer token (docs/web-chat.md): a JWT (RFC 7519) the platform mints for one fan and
//! one reservation's watch page, HS256 with one of `webchat.token_secrets`.
//!
//! The signature is checked by `jsonwebtoken` with the algorithm pinned to HS256; the
//! header's `alg` is read first so that `none`, HS384, RS256 and the like are refused by
//! name before any key is tried. The claims are checked here, against an injected `now`
//! (no clock inside), so that each refusal names its reason:
//!
//! - `aud` is `"foyer"` (or a list holding it);
//! - `iat` and `exp` are whole seconds, `exp` after `iat` and at most [`MAX_LIFETIME`]
//!   after it, `exp` not passed and `iat` (and `nbf`, if given) not in the future, each
//!   give or take [`LEEWAY`] for the two clocks;
//! - `rid` is the page's reservation;
//! - exactly one of `tid` (a ticket) and `sub` (the platform's viewer id, free shows);
//! - `name` is 1 to [`MAX_NAME_CHARS`] characters once trimmed, without control or
//!   text-direction characters.
//!
//! Neither the token nor a secret is ever put in an error.

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use crate::{
    model::{DisplayName, ReservationId, TicketId},
    secret::Secret,
};

/// How far the platform's clock and Foyer's may disagree: a token is taken up to this
/// long after its `exp`, and with an `iat` or `nbf` up to this far in the future.
pub const LEEWAY: TimeDelta = TimeDelta::seconds(30);

/// The longest a viewer token may live, from `iat` to `exp`.
pub const MAX_LIFETIME: TimeDelta = TimeDelta::hours(24);

/// The longest display name a token may carry, in Unicode characters.
pub const MAX_NAME_CHARS: usize = 64;

/// The longest `sub` (the platform's viewer id), in Unicode characters.
pub const MAX_SUB_CHARS: usize = 255;

/// Longer than any honest token; refused before it is decoded.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// The audience a viewer token must name.
pub const AUDIENCE: &str = "foyer";

/// A verified viewer token: who may read and write the chat of which reservation, under
/// which name, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerToken {
    pub reservation: ReservationId,
    pub who: Viewer,
    pub name: DisplayName,
    /// The token's `exp`: the session it opens ends then.
    pub expires_at: DateTime<Utc>,
}

/// Whom the platform vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// A ticket holder (`tid`).
    Ticket(TicketId),
    /// A viewer of a free show, by the platform's own id (`sub`).
    Platform(String),
}

/// Why a viewer token is refused. Each says what is wrong in a sentence a platform's
/// developer can act on; none holds the token or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the viewer token is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    #[error("the viewer token is signed with {alg}; only HS256 is accepted")]
    WrongAlgorithm { alg: &'static str },
    #[error("the viewer token's signature does not match any of webchat.token_secrets")]
    BadSignature,
    #[error("the viewer token has no {0} claim")]
    MissingClaim(&'static str),
    #[error("the viewer token's {claim} claim must be {expected}")]
    InvalidClaim { claim: &'static str, expected: &'static str },
    #[error("the viewer token's audience (aud) is not \"foyer\": it was minted for another service")]
    WrongAudience,
    #[error("the viewer token expired at {expired_at}")]
    Expired { expired_at: DateTime<Utc> },
    #[error("the viewer token's {claim} is in the future ({at}); check the platform's clock")]
    NotYetValid { claim: &'static str, at: DateTime<Utc> },
    #[error(
        "the viewer token lives {} h {} min from iat to exp; at most 24 h are allowed",
        .lifetime.num_hours(),
        .lifetime.num_minutes() % 60
    )]
    LifetimeTooLong { lifetime: TimeDelta },
    #[error("the viewer token is for another reservation than this page's")]
    WrongReservation,
    #[error("the viewer token carries both tid and sub; a ticket token carries tid, a free show's sub")]
    BothViewers,
    #[error("the viewer token carries neither tid (the ticket) nor sub (the platform's viewer id)")]
    NoViewer,
    #[error("the viewer token's name {0}")]
    BadName(&'static str),
}

impl TokenError {
    /// The `errcode` of the refusal's JSON body.
    pub fn errcode(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "FOYER_TOKEN_MALFORMED",
            Self::WrongAlgorithm { .. } => "FOYER_TOKEN_ALGORITHM",
            Self::BadSignature => "FOYER_TOKEN_SIGNATURE",
            Self::MissingClaim(_) => "FOYER_TOKEN_CLAIM_MISSING",
            Self::InvalidClaim { .. } => "FOYER_TOKEN_CLAIM_INVALID",
            Self::WrongAudience => "FOYER_TOKEN_AUDIENCE",
            Self::Expired { .. } => "FOYER_TOKEN_EXPIRED",
            Self::NotYetValid { .. } => "FOYER_TOKEN_NOT_YET_VALID",
            Self::LifetimeTooLong { .. } => "FOYER_TOKEN_LIFETIME",
            Self::WrongReservation => "FOYER_TOKEN_RESERVATION",
            Self::BothViewers | Self::NoViewer => "FOYER_TOKEN_VIEWER",
            Self::BadName(_) => "FOYER_TOKEN_NAME",
        }
    }

    /// 401 when the token does not authenticate anyone; 403 when it does, but for
    /// another reservation than the page's.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::WrongReservation => http::StatusCode::FORBIDDEN,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }
}

/// Verifies a viewer token for the chat of `page`, at `now`, against each of `secrets`
/// in turn (rotation: the platform may sign with a new secret once Foyer lists it).
pub fn verify(
    token: &str, secrets: &[Secret], page: &ReservationId, now: DateTime<Utc>,
) -> Result<ViewerToken, TokenError> {
    let claims = verified_claims(token, secrets)?;
    let audience_ok = match claims.get("aud") {
        None | Some(Value::Null) => return Err(TokenError::MissingClaim("aud")),
        Some(Value::String(aud)) => aud == AUDIENCE,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(AUDIENCE)),
        Some(_) => return Err(TokenError::InvalidClaim { claim: "aud", expected: "a string or a list of strings" }),
    };
    if !audience_ok {
        return Err(TokenError::WrongAudience);
    }
    let issued_at = numeric_date(&claims, "iat")?.ok_or(TokenError::MissingClaim("iat"))?;
    let expires_at = numeric_date(&claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    if expires_at <= issued_at {
        return Err(TokenError::InvalidClaim { claim: "exp", expected: "later than iat" });
    }
    let lifetime = expires_at - issued_at;
    if lifetime > MAX_LIFETIME {
        return Err(TokenError::LifetimeTooLong { lifetime });
    }
    if now > expires_at + LEEWAY {
        return Err(TokenError::Expired { expired_at: expires_at });
    }
    if issued_at > now + LEEWAY {
        return Err(TokenError::NotYetValid { claim: "iat", at: issued_at });
    }
    if let Some(not_before) = numeric_date(&claims, "nbf")?
        && not_before > now + LEEWAY
    {
        return Err(TokenError::NotYetValid { claim: "nbf", at: not_before });
    }
    match claims.get("rid") {
        None | Some(Value::Null) => return Err(TokenError::MissingClaim("rid")),
        Some(Value::String(rid)) if rid == page.as_str() => {}
        Some(Value::String(_)) => return Err(TokenError::WrongReservation),
        Some(_) => return Err(TokenError::InvalidClaim { claim: "rid", expected: "a string" }),
    }
    let who = viewer(&claims)?;
    let name = match claims.get("name") {
        None | Some(Value::Null) => return Err(TokenError::MissingClaim("name")),
        Some(Value::String(name)) => display_name(name)?,
        Some(_) => return Err(TokenError::InvalidClaim { claim: "name", expected: "a string" }),
    };
    Ok(ViewerToken { reservation: page.clone(), who, name, expires_at })
}

/// The claims of a token whose header says HS256 and whose signature one of `secrets`
/// makes. No claim is checked yet.
fn verified_claims(token: &str, secrets: &[Secret]) -> Result<Map<String, Value>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("it is longer than 8192 bytes"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed("it must be three base64url parts separated by dots"));
    };
    check_header(header)?;
    let mut validation = Validation::new(Algorithm::HS256);
    // The claims are checked by `verify`, against its `now`, each with its own reason.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    for secret in secrets {
        let Ok(key) = DecodingKey::from_secret(secret.expose().as_bytes()) else { continue };
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
            Err(e) => {
                return Err(match e.kind() {
                    ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm { alg: "another algorithm" },
                    ErrorKind::Json(_) => TokenError::Malformed("its claims are not a JSON object"),
                    ErrorKind::Utf8(_) => TokenError::Malformed("a part is not UTF-8"),
                    ErrorKind::Base64(_) => TokenError::Malformed("a part is not base64url"),
                    _ => TokenError::Malformed("it cannot be decoded"),
                });
            }
        }
    }
    Err(TokenError::BadSignature)
}

/// Names the header's algorithm unless it is HS256. Only well-known names are repeated
/// in the error: the header is the sender's text.
fn check_header(encoded: &str) -> Result<(), TokenError> {
    const KNOWN: &[&str] = &[
        "none", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
        "EdDSA",
    ];
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| TokenError::Malformed("its header is not base64url"))?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed("its header is not a JSON object"))?;
    match header.get("alg").and_then(Value::as_str) {
        Some("HS256") => {}
        Some(alg) => {
            let alg = KNOWN.iter().find(|k| k.eq_ignore_ascii_case(alg)).copied().unwrap_or("an unknown algorithm");
            return Err(TokenError::WrongAlgorithm { alg });
        }
        None => return Err(TokenError::Malformed("its header names no algorithm (alg)")),
    }
    if header.contains_key("crit") {
        // RFC 7515 §4.1.11: extensions the receiver does not understand must be refused.
        return Err(TokenError::Malformed("its header lists critical extensions (crit), which Foyer does not know"));
    }
    Ok(())
}

/// A NumericDate claim (whole seconds since 1970), `None` when absent.
fn numeric_date(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<DateTime<Utc>>, TokenError> {
    let invalid = TokenError::InvalidClaim { claim, expected: "a whole number of seconds since 1970" };
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            let secs = value.as_i64().ok_or(invalid.clone())?;
            DateTime::from_timestamp(secs, 0).map(Some).ok_or(invalid)
        }
    }
}

/// Exactly one of `tid` and `sub`.
fn viewer(claims: &Map<String, Value>) -> Result<Viewer, TokenError> {
    let given = |claim: &str| claims.get(claim).filter(|v| !v.is_null());
    match (given("tid"), given("sub")) {
        (Some(_), Some(_)) => Err(TokenError::BothViewers),
        (None, None) => Err(TokenError::NoViewer),
        (Some(tid), None) => {
            let tid = tid.as_str().and_then(|t| TicketId::parse(t).ok()).ok_or(TokenError::InvalidClaim {
                claim: "tid",
                expected: "a ticket id: 1 to 128 characters without control characters",
            })?;
            Ok(Viewer::Ticket(tid))
        }
        (None, Some(sub)) => match sub.as_str() {
            Some(sub) if (1..=MAX_SUB_CHARS).contains(&sub.chars().count()) && !sub.chars().any(char::is_control) => {
                Ok(Viewer::Platform(sub.to_owned()))
            }
            _ => Err(TokenError::InvalidClaim {
                claim: "sub",
                expected: "the platform's viewer id: 1 to 255 characters without control characters",
            }),
        },
    }
}

/// The name a fan is shown by: trimmed, 1 to 64 characters, no control characters and
/// no text-direction marks or overrides (which could turn a name around on screen).
fn display_name(raw: &str) -> Result<DisplayName, TokenError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(TokenError::BadName("is empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(TokenError::BadName("is longer than 64 characters"));
    }
    if name.chars().any(|c| c.is_control() || is_direction_mark(c)) {
        return Err(TokenError::BadName("holds control or text-direction characters"));
    }
    DisplayName::parse(name).map_err(|_| TokenError::BadName("is not a display name"))
}

fn is_direction_mark(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const OLD: &str = "old-secret-0123456789abcdef0123456789";
    const NEW: &str = "new-secret-0123456789abcdef0123456789";
    const STRANGER: &str = "not-ours-0123456789abcdef0123456789ab";
    const T0: i64 = 1_800_000_000;

    fn secrets() -> Vec<Secret> {
        vec![Secret::new(NEW), Secret::new(OLD)]
    }

    fn page() -> ReservationId {
        ReservationId::parse("show-42").unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn claims() -> Value {
        json!({"aud": "foyer", "iat": T0, "exp": T0 + 3600, "rid": "show-42", "tid": "t-1", "name": "  Dana  "})
    }

    fn with(changes: Value) -> Value {
        let mut claims = claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    fn mint_with(alg: Algorithm, secret: &str, claims: &Value) -> String {
        encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes()).unwrap()).unwrap()
    }

    fn mint(claims: &Value) -> String {
        mint_with(Algorithm::HS256, NEW, claims)
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn check(token: &str, now: i64) -> Result<ViewerToken, TokenError> {
        let result = verify(token, &secrets(), &page(), at(now));
        if let Err(e) = &result {
            let said = e.to_string();
            for secret in [OLD, NEW, STRANGER] {
                assert!(!said.contains(secret), "a secret in {said:?}");
            }
            assert!(token.len() < 8 || !said.contains(token), "the token in {said:?}");
            for part in token.split('.').filter(|p| p.len() >= 8) {
                assert!(!said.contains(part), "part of the token in {said:?}");
            }
        }
        result
    }

    fn refused(claims: Value, now: i64) -> TokenError {
        check(&mint(&claims), now).expect_err("the token was taken")
    }

    #[test]
    fn a_ticket_token_gives_the_ticket_the_trimmed_name_and_the_expiry() {
        let token = check(&mint(&claims()), T0 + 60).unwrap();
        assert_eq!(token.reservation, page());
        assert_eq!(token.who, Viewer::Ticket(TicketId::parse("t-1").unwrap()));
        assert_eq!(token.name.as_str(), "Dana");
        assert_eq!(token.expires_at, at(T0 + 3600));
        assert!(!format!("{token:?}").contains("Dana"), "names stay out of Debug");
    }

    #[test]
    fn a_free_shows_token_gives_the_platforms_viewer_id() {
        let token = check(&mint(&with(json!({"tid": null, "sub": "viewer-981"}))), T0).unwrap();
        assert_eq!(token.who, Viewer::Platform("viewer-981".into()));
    }

    #[test]
    fn every_listed_secret_is_tried_and_no_other() {
        assert!(check(&mint_with(Algorithm::HS256, OLD, &claims()), T0).is_ok(), "the old secret still works");
        let e = check(&mint_with(Algorithm::HS256, STRANGER, &claims()), T0).unwrap_err();
        assert_eq!(e, TokenError::BadSignature);
        assert_eq!((e.errcode(), e.status()), ("FOYER_TOKEN_SIGNATURE", http::StatusCode::UNAUTHORIZED));
        assert!(e.to_string().contains("signature"), "{e}");
        assert_eq!(verify(&mint(&claims()), &[], &page(), at(T0)), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_changed_payload_breaks_the_signature() {
        let token = mint(&claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(with(json!({"tid": "someone-else"})).to_string().as_bytes());
        parts[1] = &forged;
        assert_eq!(check(&parts.join("."), T0), Err(TokenError::BadSignature));
    }

    #[test]
    fn only_hs256_is_accepted_whatever_the_header_says() {
        // alg none, built by hand: no signature at all.
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64(claims().to_string().as_bytes());
        let none = format!("{header}.{payload}.");
        let e = check(&none, T0).unwrap_err();
        assert_eq!(e, TokenError::WrongAlgorithm { alg: "none" });
        assert_eq!(e.errcode(), "FOYER_TOKEN_ALGORITHM");
        assert!(e.to_string().contains("none") && e.to_string().contains("HS256"), "{e}");
        // "None" and "NONE" are the same refusal.
        let upper = format!("{}.{payload}.", b64(br#"{"alg":"NONE"}"#));
        assert_eq!(check(&upper, T0), Err(TokenError::WrongAlgorithm { alg: "none" }));
        // HS384 and HS512 with a listed secret: the right key, the wrong algorithm.
        for (alg, name) in [(Algorithm::HS384, "HS384"), (Algorithm::HS512, "HS512")] {
            assert_eq!(check(&mint_with(alg, NEW, &claims()), T0), Err(TokenError::WrongAlgorithm { alg: name }));
        }
        // RS256 in the header over an HMAC made with a listed secret (the key-confusion attack).
        let token = mint(&claims());
        let (_, rest) = token.split_once('.').unwrap();
        let rs = format!("{}.{rest}", b64(br#"{"alg":"RS256","typ":"JWT"}"#));
        assert_eq!(check(&rs, T0), Err(TokenError::WrongAlgorithm { alg: "RS256" }));
        // A made-up name is not repeated.
        let odd = format!("{}.{rest}", b64(br#"{"alg":"<script>"}"#));
        assert_eq!(check(&odd, T0), Err(TokenError::WrongAlgorithm { alg: "an unknown algorithm" }));
        let no_alg = format!("{}.{rest}", b64(br#"{"typ":"JWT"}"#));
        assert!(matches!(check(&no_alg, T0), Err(TokenError::Malformed(m)) if m.contains("alg")));
        let crit = format!("{}.{rest}", b64(br#"{"alg":"HS256","crit":["exp"]}"#));
        assert!(matches!(check(&crit, T0), Err(TokenError::Malformed(m)) if m.contains("crit")));
    }

    #[test]
    fn what_is_not_a_jwt_is_malformed() {
        let token = mint(&claims());
        let malformed = |t: &str| match check(t, T0) {
            Err(e @ TokenError::Malformed(_)) => {
                assert_eq!((e.errcode(), e.status()), ("FOYER_TOKEN_MALFORMED", http::StatusCode::UNAUTHORIZED));
                e.to_string()
            }
            other => panic!("{t:?} gave {other:?}"),
        };
        assert!(malformed("").contains("three"));
        assert!(malformed("abc").contains("three"));
        assert!(malformed("a.b").contains("three"));
        assert!(malformed(&format!("{token}.more")).contains("three"));
        assert!(malformed("!!!.e30.sig").contains("header is not base64url"));
        assert!(malformed(&format!("{}.e30.sig", b64(b"[1,2]"))).contains("header is not a JSON object"));
        assert!(malformed(&mint(&json!([1, 2]))).contains("claims are not a JSON object"), "signed, but a list");
        let (head, _) = token.split_once('.').unwrap();
        assert!(malformed(&format!("{head}.e30.***")).contains("base64url"));
        assert!(malformed(&"a".repeat(MAX_TOKEN_BYTES + 1)).contains("8192"));
    }

    #[test]
    fn the_audience_must_be_foyer() {
        assert_eq!(refused(with(json!({"aud": "some-other-app"})), T0), TokenError::WrongAudience);
        assert_eq!(refused(with(json!({"aud": ["a", "b"]})), T0), TokenError::WrongAudience);
        assert!(check(&mint(&with(json!({"aud": ["player", "foyer"]}))), T0).is_ok(), "a list holding foyer");
        assert_eq!(refused(with(json!({"aud": null})), T0), TokenError::MissingClaim("aud"));
        assert!(matches!(refused(with(json!({"aud": 7})), T0), TokenError::InvalidClaim { claim: "aud", .. }));
        let e = TokenError::WrongAudience;
        assert_eq!(e.errcode(), "FOYER_TOKEN_AUDIENCE");
        assert!(e.to_string().contains("audience"), "{e}");
    }

    #[test]
    fn iat_and_exp_are_required_whole_seconds() {
        for claim in ["iat", "exp"] {
            let e = refused(with(json!({claim: null})), T0);
            assert_eq!(e, TokenError::MissingClaim(claim));
            assert_eq!(e.errcode(), "FOYER_TOKEN_CLAIM_MISSING");
            assert!(e.to_string().contains(&format!("no {claim} claim")), "{e}");
            for bad in [json!("1800000000"), json!(1.8e9 + 0.5), json!(i64::MAX)] {
                let e = refused(with(json!({claim: bad})), T0);
                assert!(matches!(e, TokenError::InvalidClaim { claim: c, .. } if c == claim), "{claim} {bad}: {e:?}");
                assert!(e.to_string().contains("whole number of seconds"), "{e}");
            }
        }
        let e = refused(with(json!({"exp": T0})), T0);
        assert_eq!(e, TokenError::InvalidClaim { claim: "exp", expected: "later than iat" });
    }

    #[test]
    fn a_token_lives_at_most_24_hours() {
        let day = MAX_LIFETIME.num_seconds();
        assert!(check(&mint(&with(json!({"exp": T0 + day}))), T0).is_ok());
        let e = refused(with(json!({"exp": T0 + day + 90})), T0);
        assert_eq!(e, TokenError::LifetimeTooLong { lifetime: TimeDelta::seconds(day + 90) });
        assert_eq!(e.errcode(), "FOYER_TOKEN_LIFETIME");
        assert!(e.to_string().contains("24 h 1 min"), "{e}");
    }

    #[test]
    fn expiry_and_issue_time_are_checked_with_30_seconds_of_leeway() {
        let exp = T0 + 3600;
        assert!(check(&mint(&claims()), exp + 30).is_ok(), "within the leeway");
        let e = refused(claims(), exp + 31);
        assert_eq!(e, TokenError::Expired { expired_at: at(exp) });
        assert_eq!((e.errcode(), e.status()), ("FOYER_TOKEN_EXPIRED", http::StatusCode::UNAUTHORIZED));
        assert!(e.to_string().contains("expired"), "{e}");

        assert!(check(&mint(&claims()), T0 - 30).is_ok(), "a platform clock 30 s ahead");
        let e = refused(claims(), T0 - 31);
        assert_eq!(e, TokenError::NotYetValid { claim: "iat", at: at(T0) });
        assert_eq!(e.errcode(), "FOYER_TOKEN_NOT_YET_VALID");
        assert!(e.to_string().contains("future"), "{e}");

        let e = refused(with(json!({"nbf": T0 + 600})), T0);
        assert_eq!(e, TokenError::NotYetValid { claim: "nbf", at: at(T0 + 600) });
        assert!(check(&mint(&with(json!({"nbf": T0}))), T0).is_ok());
    }

    #[test]
    fn the_reservation_must_be_the_pages() {
        let e = refused(with(json!({"rid": "show-43"})), T0);
        assert_eq!(e, TokenError::WrongReservation);
        assert_eq!((e.errcode(), e.status()), ("FOYER_TOKEN_RESERVATION", http::StatusCode::FORBIDDEN));
        assert!(e.to_string().contains("another reservation"), "{e}");
        assert_eq!(refused(with(json!({"rid": null})), T0), TokenError::MissingClaim("rid"));
        assert!(matches!(refused(with(json!({"rid": 42})), T0), TokenError::InvalidClaim { claim: "rid", .. }));
    }

    #[test]
    fn exactly_one_of_tid_and_sub() {
        let e = refused(with(json!({"sub": "viewer-1"})), T0);
        assert_eq!(e, TokenError::BothViewers);
        assert_eq!(e.errcode(), "FOYER_TOKEN_VIEWER");
        assert!(e.to_string().contains("both tid and sub"), "{e}");
        let e = refused(with(json!({"tid": null})), T0);
        assert_eq!(e, TokenError::NoViewer);
        assert!(e.to_string().contains("neither tid"), "{e}");
        for bad in [json!(""), json!(17), json!("a".repeat(129)), json!("t\u{7}1")] {
            let e = refused(with(json!({"tid": bad})), T0);
            assert!(matches!(e, TokenError::InvalidClaim { claim: "tid", .. }), "{bad}: {e:?}");
        }
        for bad in [json!(""), json!(17), json!("v".repeat(256)), json!("v\n1")] {
            let e = refused(with(json!({"tid": null, "sub": bad})), T0);
            assert!(matches!(e, TokenError::InvalidClaim { claim: "sub", .. }), "{bad}: {e:?}");
        }
        let long_sub = "é".repeat(255);
        assert!(check(&mint(&with(json!({"tid": null, "sub": long_sub}))), T0).is_ok(), "255 characters");
    }

    #[test]
    fn the_name_is_1_to_64_characters_of_text() {
        let name_of = |name: Value| check(&mint(&with(json!({"name": name}))), T0);
        assert_eq!(name_of(json!("ß".repeat(64))).unwrap().name.as_str(), "ß".repeat(64), "64 characters, 128 bytes");
        let refusal = |name: Value| {
            let e = name_of(name.clone()).expect_err(&format!("{name} was taken"));
            assert_eq!(e.errcode(), "FOYER_TOKEN_NAME", "{name}: {e:?}");
            assert!(e.to_string().starts_with("the viewer token's name "), "{e}");
            e.to_string()
        };
        assert!(refusal(json!("ß".repeat(65))).contains("longer than 64"));
        assert!(refusal(json!("   ")).contains("empty"));
        assert!(refusal(json!("Da\u{0}na")).contains("control"));
        assert!(refusal(json!("Dana\u{202E}tsoh")).contains("text-direction"), "a right-to-left override");
        assert!(refusal(json!("\u{2067}Dana")).contains("text-direction"));
        assert_eq!(name_of(json!(null)).unwrap_err(), TokenError::MissingClaim("name"));
        assert!(matches!(name_of(json!(["Dana"])).unwrap_err(), TokenError::InvalidClaim { claim: "name", .. }));
    }

    #[test]
    fn each_reason_has_its_own_errcode() {
        let all = [
            TokenError::Malformed("x"),
            TokenError::WrongAlgorithm { alg: "none" },
            TokenError::BadSignature,
            TokenError::MissingClaim("exp"),
            TokenError::InvalidClaim { claim: "exp", expected: "x" },
            TokenError::WrongAudience,
            TokenError::Expired { expired_at: at(T0) },
            TokenError::NotYetValid { claim: "iat", at: at(T0) },
            TokenError::LifetimeTooLong { lifetime: TimeDelta::hours(25) },
            TokenError::WrongReservation,
            TokenError::BothViewers,
            TokenError::BadName("x"),
        ];
        let mut codes: Vec<_> = all.iter().map(TokenError::errcode).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(codes.iter().all(|c| c.starts_with("FOYER_TOKEN_")));
        assert_eq!(TokenError::NoViewer.errcode(), TokenError::BothViewers.errcode());
    }
}
