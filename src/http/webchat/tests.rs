//! The page's answers and headers, and what its files may and may not hold.

use std::collections::BTreeSet;

use axum::{body::to_bytes, http::StatusCode, response::Response};

use super::*;
use crate::{config::Origin, secret::Secret};

fn config(origins: &[&str]) -> WebchatConfig {
    WebchatConfig {
        token_secrets: vec![Secret::new("0123456789abcdef0123456789abcdef")],
        allowed_origins: origins.iter().map(|o| Origin::parse(o).unwrap()).collect(),
        puppet_prefix: "_foyer_web_".to_owned(),
        trusted_proxies: Vec::new(),
    }
}

async fn body(response: Response) -> String {
    String::from_utf8(to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap()
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The CSP's directives by name.
fn directives(policy: &str) -> Vec<(String, Vec<String>)> {
    policy
        .split(';')
        .map(|d| {
            let mut words = d.split_whitespace().map(str::to_owned);
            (words.next().unwrap(), words.collect())
        })
        .collect()
}

#[tokio::test]
async fn the_page_is_framed_by_exactly_the_allowed_origins_and_never_stored() {
    let webchat = config(&["https://platform.example.org", "http://localhost:8080"]);
    let response = page_answer(Some(&webchat), "show-42");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    assert_eq!(header(&response, "referrer-policy"), Some("no-referrer"));
    assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
    assert_eq!(
        header(&response, "x-frame-options"),
        None,
        "frame-ancestors rules; X-Frame-Options cannot list origins"
    );
    let policy = header(&response, "content-security-policy").unwrap().to_owned();
    let found = directives(&policy);
    let get = |name: &str| found.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let ancestors: BTreeSet<String> = get("frame-ancestors").into_iter().collect();
    let expected: BTreeSet<String> =
        ["https://platform.example.org", "http://localhost:8080"].map(str::to_owned).into_iter().collect();
    assert_eq!(ancestors, expected, "{policy}");
    for (name, value) in [
        ("default-src", "'none'"),
        ("script-src", "'self'"),
        ("style-src", "'self'"),
        ("connect-src", "'self'"),
        ("img-src", "'none'"),
        ("base-uri", "'none'"),
        ("form-action", "'none'"),
    ] {
        assert_eq!(get(name), vec![value.to_owned()], "{name} in {policy}");
    }
    assert_eq!(found.len(), 8, "no other directive: {policy}");
    let page = body(response).await;
    for asset in &BUILT.assets {
        assert!(page.contains(&format!("\"assets/{}\"", asset.name)), "the page names {}: {page}", asset.name);
    }
    assert!(!page.contains("{js}") && !page.contains("{css}"), "{page}");
    // The same origins are those the script takes the player's time from.
    let origins = "<meta name=\"foyer-player-origins\" content=\"https://platform.example.org http://localhost:8080\">";
    assert!(page.contains(origins), "{page}");
}

#[tokio::test]
async fn every_id_of_a_reservations_shape_gets_the_same_page() {
    let webchat = config(&["https://platform.example.org"]);
    let (a, b) = (page_answer(Some(&webchat), "show-1"), page_answer(Some(&webchat), "unknown.id_2=x"));
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(body(a).await, body(b).await, "the document does not depend on the reservation");
}

#[tokio::test]
async fn without_webchat_or_with_a_malformed_id_it_is_the_json_404() {
    let webchat = config(&["https://platform.example.org"]);
    let script = &BUILT.assets[0].name;
    for response in [
        page_answer(None, "show-1"),
        page_answer(Some(&webchat), "no spaces"),
        page_answer(Some(&webchat), &"x".repeat(129)),
        asset_answer(None, script),
        asset_answer(Some(&webchat), "chat.0000000000000000.js"),
        asset_answer(Some(&webchat), "chat.js"),
    ] {
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        let json: serde_json::Value = serde_json::from_str(&body(response).await).unwrap();
        assert_eq!(json["errcode"], "M_UNRECOGNIZED");
    }
}

#[tokio::test]
async fn the_files_are_served_under_their_hash_and_cached_for_good() {
    let webchat = config(&["https://platform.example.org"]);
    for (asset, content_type, text) in [
        (&BUILT.assets[0], "text/javascript; charset=utf-8", SCRIPT),
        (&BUILT.assets[1], "text/css; charset=utf-8", STYLE),
    ] {
        let hash = hex::encode(Sha256::digest(text.as_bytes()));
        assert!(asset.name.contains(&hash[..16]), "{} names its content's hash", asset.name);
        let response = asset_answer(Some(&webchat), &asset.name);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-type"), Some(content_type));
        assert_eq!(header(&response, "cache-control"), Some("public, max-age=31536000, immutable"));
        assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
        assert_eq!(body(response).await, text);
    }
}

/// Nothing from third parties: no file of the page names another site, and the page
/// loads no script or style but its own.
#[test]
fn no_file_of_the_page_names_another_site() {
    let everywhere = ["http://", "https://", "ftp://", "ws://", "wss://"];
    for (name, text, own) in [
        ("chat.html", HTML, &["src=\"//", "href=\"//"][..]),
        ("chat.js", SCRIPT, &["import(", "importScripts"][..]),
        ("chat.css", STYLE, &["url(", "@import"][..]),
    ] {
        for needle in everywhere.iter().chain(own) {
            assert!(!text.to_ascii_lowercase().contains(&needle.to_ascii_lowercase()), "{name} holds {needle:?}");
        }
    }
    let page = &BUILT.page;
    let sources: Vec<&str> = page.split(" src=\"").skip(1).chain(page.split(" href=\"").skip(1)).collect();
    assert_eq!(sources.len(), 2, "one script, one style sheet: {page}");
    assert!(sources.iter().all(|s| s.starts_with("assets/chat.")), "{sources:?}");
}

/// Bodies and names go in as text: the script never parses a string as HTML or code.
#[test]
fn the_script_never_writes_html_or_evaluates_text() {
    for needle in
        ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setTimeout(\""]
    {
        assert!(!SCRIPT.contains(needle), "chat.js uses {needle}");
    }
    assert!(SCRIPT.contains(".textContent = "), "text is set as text");
}

/// The token leaves the address bar before the script does anything else, and the
/// session is kept in memory: no cookie, no storage.
#[test]
fn the_token_is_taken_out_of_the_address_first_and_nothing_is_stored() {
    let replaced = SCRIPT.find("history.replaceState").expect("the script removes the fragment");
    for later in ["fetch(", "addEventListener", "setInterval(", "setTimeout("] {
        let at = SCRIPT.find(later).unwrap_or_else(|| panic!("chat.js has no {later}"));
        assert!(replaced < at, "{later} comes before the fragment is removed");
    }
    for needle in ["document.cookie", "localStorage", "sessionStorage", "indexedDB", "postMessage"] {
        assert!(!SCRIPT.contains(needle), "chat.js uses {needle}");
    }
    assert!(SCRIPT.contains("Authorization: `Bearer ${state.session}`"), "the session goes out as a bearer");
}

/// What the issue asks the page to show, in its HTML: the live region and the plain
/// word about text only.
#[test]
fn the_page_has_its_live_region_and_says_text_only() {
    assert!(HTML.contains("aria-live=\"polite\""));
    assert!(HTML.contains("Text only: no images or files."));
    assert!(HTML.contains("name=\"viewport\""));
    assert!(STYLE.contains("prefers-color-scheme: dark"));
    assert!(STYLE.contains(":focus-visible"));
}
