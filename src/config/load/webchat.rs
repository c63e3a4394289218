//! `webchat`: the chat beside the player (docs/web-chat.md). Optional: without the section
//! web chat is off, and its secrets' environment variable is not read.

use serde_yaml::Value;

use super::{Section, Walker};
use crate::{
    config::{AppserviceConfig, DEFAULT_PUPPET_PREFIX, Origin, TrustedProxy, WebchatConfig},
    secret::Secret,
};

/// The longest `puppet_prefix`: the opaque part after it still fits in a user ID.
const MAX_PUPPET_PREFIX: usize = 64;

impl Walker<'_> {
    /// `webchat.token_secrets` (or `token_secrets_file`, or `FOYER_WEBCHAT_TOKEN_SECRETS`),
    /// `allowed_origins`, `puppet_prefix` and `trusted_proxies`. `appservice` is the
    /// appservice section when it was valid, to keep the web fans' names apart from the
    /// bot's and the rooms' aliases.
    pub(super) fn webchat(
        &mut self, s: &mut Section<'_>, appservice: Option<&AppserviceConfig>,
    ) -> Option<WebchatConfig> {
        let token_secrets = self.token_secrets(s);
        let allowed_origins =
            self.list(s, "allowed_origins", true, "[\"https://platform.example.org\"]", Origin::parse);
        let puppet_prefix = self.puppet_prefix(s, appservice);
        let trusted_proxies = self.list(s, "trusted_proxies", false, "[\"10.0.0.0/8\", \"::1\"]", TrustedProxy::parse);
        if let Some(origins) = &allowed_origins
            && origins.is_empty()
        {
            self.problem(
                s.key_path("allowed_origins"),
                "must list at least one origin (the platform's watch page, like https://platform.example.org)",
            );
            return None;
        }
        Some(WebchatConfig {
            token_secrets: token_secrets?,
            allowed_origins: allowed_origins?,
            puppet_prefix: puppet_prefix?,
            trusted_proxies: trusted_proxies?,
        })
    }

    fn token_secrets(&mut self, s: &mut Section<'_>) -> Option<Vec<Secret>> {
        let path = s.key_path("token_secrets");
        let (values, source) = self.secret_list(s, "token_secrets", "FOYER_WEBCHAT_TOKEN_SECRETS")?;
        self.secret_sources.push((path.clone(), source));
        if values.is_empty() {
            self.problem(&path, "must list at least one secret (at least 32 characters, like `openssl rand -hex 32`)");
            return None;
        }
        let mut secrets: Vec<Secret> = Vec::new();
        let mut all_good = true;
        for (i, value) in values.into_iter().enumerate() {
            let at = format!("{path}[{i}]");
            match self.checked_token(&at, Secret::new(value)) {
                Some(secret) if secrets.contains(&secret) => {
                    self.problem(at, "is listed twice");
                    all_good = false;
                }
                Some(secret) => secrets.push(secret),
                None => all_good = false,
            }
        }
        all_good.then_some(secrets)
    }

    /// A list of strings, each parsed; every bad item named by its index.
    fn list<T>(
        &mut self, s: &mut Section<'_>, key: &'static str, required: bool, example: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let path = s.key_path(key);
        let items = match s.get(key) {
            None if required => {
                self.problem(path, format!("is missing (a list, like {example})"));
                return None;
            }
            None => return Some(Vec::new()),
            Some(Value::Sequence(items)) => items,
            Some(_) => {
                self.problem(path, format!("must be a list, like {example}"));
                return None;
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str().map(&parse) {
                Some(Ok(v)) => out.push(v),
                Some(Err(message)) => self.problem(format!("{path}[{i}]"), message),
                None => self.problem(format!("{path}[{i}]"), "must be a string (put it in quotes)"),
            }
        }
        (out.len() == items.len()).then_some(out)
    }

    /// `webchat.puppet_prefix`: the start of a Matrix localpart, apart from the bot's
    /// localpart (which must not fall in the web fans' namespace) and from the rooms'
    /// alias prefix (one namespace's pattern must not take the other's names).
    fn puppet_prefix(&mut self, s: &mut Section<'_>, appservice: Option<&AppserviceConfig>) -> Option<String> {
        let prefix = self.name(
            s,
            "puppet_prefix",
            DEFAULT_PUPPET_PREFIX,
            MAX_PUPPET_PREFIX,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._=-/+".contains(c),
            "lowercase letters, digits and ._=-/+ (the start of a Matrix localpart)",
        )?;
        let path = s.key_path("puppet_prefix");
        let appservice = appservice?;
        let bot = &appservice.sender_localpart;
        if bot.starts_with(&prefix) {
            self.problem(
                path,
                format!(
                    "{prefix:?} starts the bot's localpart (appservice.sender_localpart {bot:?}): the bot would be a web fan"
                ),
            );
            return None;
        }
        let aliases = &appservice.alias_prefix;
        if aliases.starts_with(&prefix) || prefix.starts_with(aliases.as_str()) {
            self.problem(
                path,
                format!(
                    "{prefix:?} overlaps appservice.alias_prefix ({aliases:?}); give web fans a prefix of their own"
                ),
            );
            return None;
        }
        Some(prefix)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{
        config::{Config, ConfigError, Placeholders, from_yaml_str},
        secret::Secret,
    };

    const SECRET_A: &str = "0123456789abcdef0123456789abcdef-a";
    const SECRET_B: &str = "0123456789abcdef0123456789abcdef-b";

    fn base() -> String {
        "homeserver: {url: 'http://127.0.0.1:8008', server_name: example.org}
appservice: {url: 'http://127.0.0.1:29330', as_token: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, hs_token: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb, sender_localpart: foyer, alias_prefix: live_}
webhooks: {secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]}
api: {token: cccccccccccccccccccccccccccccccccc}
"
        .to_owned()
    }

    fn load_env(webchat: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let yaml = format!("{}webchat:\n{webchat}", base());
        from_yaml_str(&yaml, "test", Path::new(""), env, Placeholders::Refuse)
    }

    fn load(webchat: &str) -> Result<Config, ConfigError> {
        load_env(webchat, &|_| None)
    }

    /// The problems, as `path: message` lines.
    fn problems(webchat: &str) -> Vec<String> {
        match load(webchat) {
            Err(ConfigError::Invalid { problems, .. }) => problems.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("not a config problem: {e}"),
            Ok(_) => panic!("accepted:\n{webchat}"),
        }
    }

    fn assert_problem(webchat: &str, path: &str, needle: &str) {
        let found = problems(webchat);
        assert!(
            found.iter().any(|p| p.starts_with(&format!("{path}: ")) && p.contains(needle)),
            "no problem at {path} saying {needle:?} in {found:#?}"
        );
    }

    #[test]
    fn absent_is_off_and_a_full_section_is_typed() {
        let yaml = base();
        let config = from_yaml_str(&yaml, "test", Path::new(""), &|_| None, Placeholders::Refuse).unwrap();
        assert!(config.webchat.is_none());

        let config = load(&format!(
            "  token_secrets: [{SECRET_A}, {SECRET_B}]\n  allowed_origins: ['https://Platform.example.org', 'http://localhost:8080']\n  trusted_proxies: ['10.0.0.0/8', '::1']\n"
        ))
        .unwrap();
        let webchat = config.webchat.unwrap();
        assert_eq!(webchat.token_secrets.len(), 2);
        assert_eq!(webchat.token_secrets[1], Secret::new(SECRET_B));
        assert!(webchat.allows_origin("https://platform.example.org"));
        assert!(!webchat.allows_origin("https://platform.example.org.evil.net"));
        assert_eq!(webchat.puppet_prefix, "_foyer_web_");
        assert!(webchat.trusts_proxy("10.9.8.7".parse().unwrap()));
        assert!(!webchat.trusts_proxy("192.168.1.1".parse().unwrap()));
        assert!(!format!("{webchat:?}").contains(SECRET_A), "the secrets stay out of Debug");
        assert!(
            config.secret_sources.iter().any(|(path, from)| path == "webchat.token_secrets" && from == "config file")
        );
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file() {
        let env = |name: &str| (name == "FOYER_WEBCHAT_TOKEN_SECRETS").then(|| format!("{SECRET_A}, {SECRET_B}"));
        let config = load_env("  allowed_origins: ['https://platform.example.org']\n", &env).unwrap();
        assert_eq!(config.webchat.unwrap().token_secrets.len(), 2);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("webchat.keys"), format!("{SECRET_A}\n\n{SECRET_B}\n")).unwrap();
        let yaml = format!(
            "{}webchat:\n  token_secrets_file: webchat.keys\n  allowed_origins: ['https://platform.example.org']\n",
            base()
        );
        let config = from_yaml_str(&yaml, "test", dir.path(), &|_| None, Placeholders::Refuse).unwrap();
        let webchat = config.webchat.unwrap();
        assert_eq!(webchat.token_secrets[0], Secret::new(SECRET_A));
        assert_eq!(webchat.token_secrets.len(), 2);
    }

    #[test]
    fn bad_secrets_are_named_by_their_index() {
        let origins = "  allowed_origins: ['https://platform.example.org']\n";
        assert_problem(
            &format!("  token_secrets: [{SECRET_A}, short]\n{origins}"),
            "webchat.token_secrets[1]",
            "at least 32",
        );
        assert_problem(&format!("  token_secrets: []\n{origins}"), "webchat.token_secrets", "at least one");
        assert_problem(origins, "webchat.token_secrets", "is missing");
        assert_problem(&format!("  token_secrets: {SECRET_A}\n{origins}"), "webchat.token_secrets", "must be a list");
        assert_problem(
            &format!("  token_secrets: [{SECRET_A}, {SECRET_A}]\n{origins}"),
            "webchat.token_secrets[1]",
            "listed twice",
        );
        assert_problem(
            &format!("  token_secrets: [CHANGE_ME_webchat_token_secret_at_least_32_characters]\n{origins}"),
            "webchat.token_secrets[0]",
            "placeholder",
        );
        let both = format!("  token_secrets: [{SECRET_A}]\n  token_secrets_file: keys\n{origins}");
        assert_problem(&both, "webchat.token_secrets", "not both");
        for problem in problems(&format!("  token_secrets: [{SECRET_A}, short]\n{origins}")) {
            assert!(!problem.contains(SECRET_A) && !problem.contains("short"), "a secret in {problem}");
        }
    }

    #[test]
    fn bad_origins_are_named_by_their_index() {
        let secrets = format!("  token_secrets: [{SECRET_A}]\n");
        let with = |origins: &str| format!("{secrets}  allowed_origins: {origins}\n");
        assert_problem(
            &with("['https://a.example.org', 'https://b.example.org/']"),
            "webchat.allowed_origins[1]",
            "trailing slash",
        );
        assert_problem(&with("['https://a.example.org/watch']"), "webchat.allowed_origins[0]", "no path");
        assert_problem(&with("['*']"), "webchat.allowed_origins[0]", "wildcard");
        assert_problem(&with("[]"), "webchat.allowed_origins", "at least one");
        assert_problem(&with("https://a.example.org"), "webchat.allowed_origins", "must be a list");
        assert_problem(&with("[42]"), "webchat.allowed_origins[0]", "must be a string");
        assert_problem(&secrets, "webchat.allowed_origins", "is missing");
    }

    #[test]
    fn bad_proxies_are_named_by_their_index() {
        let ok = format!("  token_secrets: [{SECRET_A}]\n  allowed_origins: ['https://platform.example.org']\n");
        assert_problem(
            &format!("{ok}  trusted_proxies: ['10.0.0.1', '10.0.0.1/8']\n"),
            "webchat.trusted_proxies[1]",
            "10.0.0.0/8",
        );
        assert_problem(
            &format!("{ok}  trusted_proxies: ['proxy.internal']\n"),
            "webchat.trusted_proxies[0]",
            "not an IP address",
        );
        assert_problem(&format!("{ok}  trusted_proxies: '10.0.0.0/8'\n"), "webchat.trusted_proxies", "must be a list");
    }

    #[test]
    fn the_puppet_prefix_is_a_localpart_apart_from_the_bot_and_the_aliases() {
        let ok = format!("  token_secrets: [{SECRET_A}]\n  allowed_origins: ['https://platform.example.org']\n");
        let with = |prefix: &str| format!("{ok}  puppet_prefix: '{prefix}'\n");
        assert_eq!(load(&with("web_")).unwrap().webchat.unwrap().puppet_prefix, "web_");
        assert_problem(&with("Web_"), "webchat.puppet_prefix", "lowercase");
        assert_problem(&with("web fan_"), "webchat.puppet_prefix", "lowercase");
        assert_problem(&with(""), "webchat.puppet_prefix", "empty");
        assert_problem(&with(&"w".repeat(65)), "webchat.puppet_prefix", "1 to 64");
        // The bot is @foyer: a prefix "foy" would make it a web fan.
        assert_problem(&with("foy"), "webchat.puppet_prefix", "sender_localpart");
        // The aliases are #live_…: neither may start the other.
        assert_problem(&with("live_"), "webchat.puppet_prefix", "alias_prefix");
        assert_problem(&with("live_web_"), "webchat.puppet_prefix", "alias_prefix");
        assert_problem(&with("li"), "webchat.puppet_prefix", "alias_prefix");
        assert_problem(
            &format!("{ok}  puppet_prefixes: web_\n"),
            "webchat.puppet_prefixes",
            "did you mean puppet_prefix",
        );
    }

    /// The example's `webchat` block, uncommented, is a valid section (with the
    /// placeholders allowed, as `generate-registration` allows them).
    #[test]
    fn the_examples_webchat_block_loads() {
        let example = crate::cli::EXAMPLE_CONFIG;
        let start = example.find("# webchat:").expect("the example documents webchat");
        let block: String =
            example[start..].lines().take_while(|l| l.starts_with('#')).map(|l| format!("{}\n", &l[2..])).collect();
        let yaml = format!("{}{block}", base());
        let config = from_yaml_str(&yaml, "example", Path::new(""), &|_| None, Placeholders::Allow).unwrap();
        let webchat = config.webchat.expect("the block is the webchat section");
        assert_eq!(webchat.puppet_prefix, crate::config::DEFAULT_PUPPET_PREFIX);
        assert_eq!(webchat.allowed_origins[0].as_str(), "https://platform.example.org");
        assert!(webchat.trusted_proxies.is_empty());
    }
}
