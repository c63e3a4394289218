//! The appservice registration file the homeserver loads (`app_service_config_files`).

use serde::Serialize;

use crate::config::Config;

const HEADER: &str = "\
# Foyer's appservice registration, written by `foyer generate-registration`.
# Give this file to the homeserver (Synapse: app_service_config_files) and restart it.
# It holds both tokens: keep it private (mode 0600).
";

#[derive(Debug, Serialize)]
struct Registration<'a> {
    id: &'a str,
    url: &'a str,
    as_token: &'a str,
    hs_token: &'a str,
    sender_localpart: &'a str,
    rate_limited: bool,
    namespaces: Namespaces,
}

#[derive(Debug, Serialize)]
struct Namespaces {
    users: Vec<Namespace>,
    aliases: Vec<Namespace>,
    rooms: Vec<Namespace>,
}

#[derive(Debug, Serialize)]
struct Namespace {
    exclusive: bool,
    regex: String,
}

/// The exclusive alias namespace: `^#<alias_prefix>.*:<server_name>$`, both parts escaped.
/// Synapse anchors namespace regexes at the start only, so the `$` matters.
pub fn alias_regex(config: &Config) -> String {
    format!(
        "^#{}.*:{}$",
        regex::escape(&config.appservice.alias_prefix),
        regex::escape(config.homeserver.server_name.as_str())
    )
}

/// Renders the registration YAML. Deterministic, so the committed `registration.yaml`
/// can be checked against `config.example.yaml`.
pub fn render(config: &Config) -> String {
    let a = &config.appservice;
    // The homeserver API's own listener when there is one (appservice.homeserver_listen).
    let url = config.registration_url().as_str().trim_end_matches('/');
    let registration = Registration {
        id: &a.id,
        url,
        as_token: a.as_token.expose(),
        hs_token: a.hs_token.expose(),
        sender_localpart: &a.sender_localpart,
        // Exempts the bot from Synapse's invite and room-creation limits; an opening
        // wave invites thousands of holders within seconds.
        rate_limited: false,
        namespaces: Namespaces {
            // Web fans (docs/web-chat.md), registered and acted as by Foyer alone.
            users: config.web_user_regex().map(|regex| Namespace { exclusive: true, regex }).into_iter().collect(),
            aliases: vec![Namespace { exclusive: true, regex: alias_regex(config) }],
            rooms: vec![],
        },
    };
    let body = serde_yaml::to_string(&registration).expect("a registration always serializes");
    format!("{HEADER}{body}")
}
