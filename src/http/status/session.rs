//! The status page's login: the token checked, a session stored and its cookie (session
//! id, issue time, MAC) set; the cookie verified on each visit; and the logout, taken
//! only from Foyer's own page.

use axum::{
    Form,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use url::Url;

use crate::{
    config::Config,
    http::AppState,
    model::SessionId,
    secret::Secret,
    store::StoreError,
    words::pages::{self, LoginProblem},
};

/// The cookie's name over http (a local install).
const COOKIE: &str = "foyer_status";
/// Its name over https: the browser then keeps it for this host only, sends it over
/// https only, and lets no other subdomain set or shadow it.
const HOST_COOKIE: &str = "__Host-foyer_status";
/// How long a login lasts: the cookie's `Max-Age`, and the age past which the server
/// refuses it whatever the browser kept.
const SESSION_TTL: TimeDelta = TimeDelta::hours(12);
/// A cookie issued this far ahead of this instance's clock is still taken: the clocks
/// of instances sharing a database differ a little.
const CLOCK_SKEW: TimeDelta = TimeDelta::seconds(60);

/// The MAC of a cookie's `<session id>.<issue time>`, as hex, under a key derived from
/// the API token (a key of its own, so the MAC says nothing about the token).
fn cookie_mac(token: &Secret, signed: &str) -> String {
    let mut key = Hmac::<Sha256>::new_from_slice(token.expose().as_bytes()).expect("HMAC takes keys of any length");
    key.update(b"foyer status page cookie key v2");
    let key = key.finalize().into_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(signed.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A cookie's value: `<session id>.<issue time in Unix seconds>.<MAC of both>`.
pub fn cookie_value(token: &Secret, id: &SessionId, issued_at: DateTime<Utc>) -> String {
    let signed = format!("{}.{}", id.as_str(), issued_at.timestamp());
    let mac = cookie_mac(token, &signed);
    format!("{signed}.{mac}")
}

/// Why a cookie is not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum Refused {
    #[error("it is not a cookie Foyer makes")]
    Malformed,
    #[error("its MAC does not match (forged, or made under another api.token)")]
    BadMac,
    #[error("it is older than the session lifetime")]
    Expired,
    #[error("it was issued in the future")]
    FromTheFuture,
}

/// The session a cookie's value names, if its MAC holds and it is not expired at `now`.
/// (Whether the session was ended is for the store to say.)
fn verify(token: &Secret, value: &str, now: DateTime<Utc>) -> Result<SessionId, Refused> {
    let (signed, mac) = value.rsplit_once('.').ok_or(Refused::Malformed)?;
    let (id, issued) = signed.split_once('.').ok_or(Refused::Malformed)?;
    let id = SessionId::parse(id).ok_or(Refused::Malformed)?;
    // Digits only, so that one issue time has one spelling.
    if issued.is_empty() || issued.len() > 12 || !issued.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refused::Malformed);
    }
    if !Secret::new(cookie_mac(token, signed)).matches(mac.as_bytes()) {
        return Err(Refused::BadMac);
    }
    let issued_at = issued.parse().ok().and_then(|secs| DateTime::from_timestamp(secs, 0)).ok_or(Refused::Malformed)?;
    if issued_at > now + CLOCK_SKEW {
        return Err(Refused::FromTheFuture);
    }
    if now - issued_at >= SESSION_TTL {
        return Err(Refused::Expired);
    }
    Ok(id)
}

/// Whether admins reach Foyer over https: the scheme of `appservice.public_url`, where
/// browsers reach it (default `appservice.url`). `appservice.url` is how the homeserver
/// reaches Foyer, often plain http on the host behind an https proxy.
fn served_over_https(config: &Config) -> bool {
    config.public_url().scheme() == "https"
}

/// The `Set-Cookie` value for a session cookie (`max_age` 0 removes it). The `__Host-`
/// prefix requires `Secure` and `Path=/`; the cookie is only read by `/status`.
fn set_cookie(https: bool, value: &str, max_age: TimeDelta) -> String {
    let (name, secure) = if https { (HOST_COOKIE, "; Secure") } else { (COOKIE, "") };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}; Max-Age={}", max_age.num_seconds())
}

/// The sessions named by the request's cookies (under this deployment's cookie name)
/// whose MAC and age hold. Several: a browser may hold an outdated cookie too.
fn sessions(headers: &HeaderMap, config: &Config, now: DateTime<Utc>) -> Vec<SessionId> {
    let name = if served_over_https(config) { HOST_COOKIE } else { COOKIE };
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .filter_map(|(_, value)| match verify(&config.api.token, value, now) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::debug!(reason = %e, "status page: a session cookie refused");
                None
            }
        })
        .collect()
}

/// Whether the request carries the cookie of a live session.
pub(super) async fn has_session(state: &AppState, headers: &HeaderMap, now: DateTime<Utc>) -> Result<bool, StoreError> {
    for id in sessions(headers, &state.config, now) {
        if state.store.status_session_live(&id, now).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn header_text<K: header::AsHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether a request comes from Foyer's own page. Browsers say where a request comes
/// from in `Sec-Fetch-Site`: `same-origin`, or `none` when the user made it (a
/// bookmark). Older ones send only `Origin`, which must then be this host (the request's
/// `Host`, `appservice.public_url` or `appservice.url`). With neither, the request is not
/// from a browser's form, and only a browser has a cookie to end: refused.
fn same_origin(headers: &HeaderMap, config: &Config) -> bool {
    if let Some(site) = header_text(headers, "sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = header_text(headers, header::ORIGIN).and_then(|o| Url::parse(o).ok()) else {
        return false;
    };
    if served_over_https(config) && origin.scheme() != "https" {
        return false;
    }
    let Some(host) = origin.host_str() else { return false };
    let authority = match origin.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    origin.origin() == config.public_url().origin()
        || origin.origin() == config.appservice.url.origin()
        || header_text(headers, header::HOST) == Some(&authority)
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

pub(crate) async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let token = &state.config.api.token;
    if !token.matches(form.token.trim().as_bytes()) {
        tracing::warn!("status page: a login with a wrong token");
        return login_page(StatusCode::UNAUTHORIZED, Some(LoginProblem::WrongToken));
    }
    let (id, now) = (SessionId::random(), Utc::now());
    if let Err(e) = state.store.start_status_session(&id, now, now + SESSION_TTL).await {
        tracing::error!(error = %e, "status page: cannot store a new session");
        return login_page(StatusCode::SERVICE_UNAVAILABLE, Some(LoginProblem::CannotWrite));
    }
    tracing::info!("status page: logged in");
    let cookie = set_cookie(served_over_https(&state.config), &cookie_value(token, &id, now), SESSION_TTL);
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/status".to_owned()), (header::SET_COOKIE, cookie)]).into_response()
}

pub(crate) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !same_origin(&headers, &state.config) {
        tracing::warn!("status page: a logout that did not come from the page refused");
        return (StatusCode::FORBIDDEN, Html(pages::logout_refused())).into_response();
    }
    let now = Utc::now();
    for id in sessions(&headers, &state.config, now) {
        if let Err(e) = state.store.end_status_session(&id).await {
            tracing::error!(error = %e, "status page: cannot end a session");
            return (StatusCode::SERVICE_UNAVAILABLE, Html(pages::logout_failed())).into_response();
        }
        tracing::info!("status page: logged out");
    }
    let cookie = set_cookie(served_over_https(&state.config), "", TimeDelta::zero());
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/status".to_owned()), (header::SET_COOKIE, cookie)]).into_response()
}

pub(super) fn login_page(status: StatusCode, problem: Option<LoginProblem>) -> Response {
    (status, Html(pages::login(problem))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Secret {
        Secret::new("a".repeat(40))
    }

    fn config(url: &str) -> Config {
        let yaml =
            include_str!("../../../config.example.yaml").replace("url: http://127.0.0.1:29330", &format!("url: {url}"));
        let (dir, env) = (std::path::Path::new("."), |_: &str| None);
        crate::config::from_yaml_str(&yaml, "example", dir, &env, crate::config::Placeholders::Allow).expect("valid")
    }

    /// A config where browsers reach Foyer at `public` and the homeserver at `url`.
    fn config_public(url: &str, public: &str) -> Config {
        let yaml = include_str!("../../../config.example.yaml")
            .replace("url: http://127.0.0.1:29330", &format!("url: {url}"))
            .replace("# public_url: https://foyer.example.org", &format!("public_url: {public}"));
        let (dir, env) = (std::path::Path::new("."), |_: &str| None);
        crate::config::from_yaml_str(&yaml, "example", dir, &env, crate::config::Placeholders::Allow).expect("valid")
    }

    fn cookie_header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_cookie_holds_a_session_and_its_time_never_the_token() {
        let (id, now) = (SessionId::random(), Utc::now());
        let value = cookie_value(&token(), &id, now);
        let parts: Vec<&str> = value.split('.').collect();
        assert_eq!(parts.len(), 3, "{value}");
        assert_eq!((parts[0], parts[1]), (id.as_str(), now.timestamp().to_string().as_str()));
        assert_eq!(parts[2].len(), 64);
        assert!(!value.contains(&"a".repeat(8)), "{value}");
        assert_ne!(SessionId::random(), id, "random");
        assert_eq!(verify(&token(), &value, now), Ok(id.clone()));
        assert_eq!(verify(&Secret::new("b".repeat(40)), &value, now), Err(Refused::BadMac), "another api.token");
    }

    #[test]
    fn a_cookie_expires_after_the_session_lifetime() {
        let (id, issued) = (SessionId::random(), Utc::now());
        let value = cookie_value(&token(), &id, issued);
        let just_before = issued + SESSION_TTL - TimeDelta::seconds(1);
        assert_eq!(verify(&token(), &value, just_before), Ok(id));
        assert_eq!(verify(&token(), &value, issued + SESSION_TTL), Err(Refused::Expired));
        assert_eq!(verify(&token(), &value, issued + TimeDelta::days(7)), Err(Refused::Expired));
        // Nor is a cookie issued well ahead of this clock taken.
        assert_eq!(verify(&token(), &value, issued - CLOCK_SKEW - TimeDelta::seconds(1)), Err(Refused::FromTheFuture));
    }

    #[test]
    fn a_changed_cookie_is_refused() {
        let (id, issued) = (SessionId::random(), Utc::now());
        let value = cookie_value(&token(), &id, issued);
        let (signed, mac) = value.rsplit_once('.').unwrap();
        let later = format!("{}.{}.{mac}", id.as_str(), issued.timestamp() + 3600);
        assert_eq!(verify(&token(), &later, issued), Err(Refused::BadMac), "a later issue time");
        let other = format!("{}.{}.{mac}", SessionId::random().as_str(), issued.timestamp());
        assert_eq!(verify(&token(), &other, issued), Err(Refused::BadMac), "another session");
        let padded = format!("{}.0{}.{mac}", id.as_str(), issued.timestamp());
        assert_eq!(verify(&token(), &padded, issued), Err(Refused::BadMac), "one time, one spelling");
        let upper = format!("{signed}.{}", mac.to_uppercase());
        assert_eq!(verify(&token(), &upper, issued), Err(Refused::BadMac));
        // What the cookie held before sessions: a MAC of the token alone.
        for bad in [
            "",
            "x",
            &"ab".repeat(32),
            "..",
            &format!("{signed}."),
            &format!("{signed}.{mac}.x"),
            &format!("x.1.{mac}"),
        ] {
            assert!(verify(&token(), bad, issued).is_err(), "{bad:?}");
        }
        let plus = format!("{}.+{}.{mac}", id.as_str(), issued.timestamp());
        assert_eq!(verify(&token(), &plus, issued), Err(Refused::Malformed));
    }

    #[test]
    fn the_cookie_is_secure_and_host_only_over_https() {
        assert_eq!(
            set_cookie(true, "v", SESSION_TTL),
            "__Host-foyer_status=v; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=43200"
        );
        assert_eq!(
            set_cookie(false, "v", SESSION_TTL),
            "foyer_status=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200"
        );
        assert!(served_over_https(&config("https://foyer.example.org")));
        assert!(!served_over_https(&config("http://127.0.0.1:29330")));
        // Browsers come through an https proxy, the homeserver over http on the host:
        // the browsers' scheme decides.
        assert!(served_over_https(&config_public("http://127.0.0.1:29330", "https://foyer.example.org")));
        assert!(!served_over_https(&config_public("https://foyer.internal", "http://foyer.example.org")));

        // Each deployment reads its own name only: over https a plain cookie (which any
        // http page of the domain could have set) is not taken.
        let now = Utc::now();
        let value = cookie_value(&config("https://foyer.example.org").api.token, &SessionId::random(), now);
        for (url, name, taken) in [
            ("https://foyer.example.org", HOST_COOKIE, true),
            ("https://foyer.example.org", COOKIE, false),
            ("http://127.0.0.1:29330", COOKIE, true),
            ("http://127.0.0.1:29330", HOST_COOKIE, false),
        ] {
            let headers = cookie_header(&format!("other=1; {name}={value}"));
            assert_eq!(sessions(&headers, &config(url), now).len(), usize::from(taken), "{name} on {url}");
        }
        // A browser may hold an outdated cookie beside the current one.
        let headers = cookie_header(&format!("{COOKIE}={}; {COOKIE}={value}", "f".repeat(64)));
        assert_eq!(sessions(&headers, &config("http://127.0.0.1:29330"), now).len(), 1);
    }

    #[test]
    fn only_the_page_itself_may_log_out() {
        let http = config("http://127.0.0.1:29330");
        let https = config("https://foyer.example.org");
        let public = config_public("http://127.0.0.1:29330", "https://foyer.example.org");
        let request = |pairs: &[(&'static str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, value.parse().unwrap());
            }
            headers
        };
        let host = ("host", "127.0.0.1:29330");
        for (headers, config, allowed) in [
            (request(&[("sec-fetch-site", "same-origin")]), &http, true),
            (request(&[("sec-fetch-site", "none")]), &http, true),
            (request(&[("sec-fetch-site", "cross-site")]), &http, false),
            (request(&[("sec-fetch-site", "same-site")]), &http, false),
            // Sec-Fetch-Site, when sent, decides.
            (request(&[("sec-fetch-site", "cross-site"), ("origin", "http://127.0.0.1:29330"), host]), &http, false),
            (request(&[("origin", "http://127.0.0.1:29330"), host]), &http, true),
            (request(&[("origin", "http://localhost:8080"), ("host", "localhost:8080")]), &http, true),
            (request(&[("origin", "https://evil.example"), host]), &http, false),
            (request(&[("origin", "http://127.0.0.1:29331"), host]), &http, false),
            (request(&[("origin", "null"), host]), &http, false),
            (request(&[host]), &http, false),
            (request(&[]), &http, false),
            // Behind a proxy that rewrites Host, appservice.url names the origin.
            (request(&[("origin", "https://foyer.example.org"), ("host", "10.0.0.5:29330")]), &https, true),
            (request(&[("origin", "http://foyer.example.org"), ("host", "foyer.example.org")]), &https, false),
            // With a public URL apart, it names the origin too.
            (request(&[("origin", "https://foyer.example.org"), ("host", "127.0.0.1:29330")]), &public, true),
            (request(&[("origin", "http://foyer.example.org"), ("host", "foyer.example.org")]), &public, false),
        ] {
            assert_eq!(same_origin(&headers, config), allowed, "{headers:?}");
        }
    }
}
