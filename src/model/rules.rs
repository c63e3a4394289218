//! A show's chat rules (docs/moderation.md): the mode, slow mode, the longest message,
//! links, blocked words, duplicates and strikes. The config's `rooms.rules` gives the
//! defaults; a reservation's `chat.rules` overrides any of them ([`RulesOverride`]).
//! [`ChatRules::check`] says whether a message breaks one, for a web fan's post before
//! it is sent and for a Matrix member's message once the homeserver has it; hosts and
//! moderators are exempt, which the caller decides.

use std::time::Duration;

use regex::{Regex, RegexBuilder};

use super::moderation::{ChatMode, Rule};
use serde_json::{Map, Value, json};

/// Blocked words at most, and the longest pattern, in characters.
pub const MAX_BLOCKED_WORDS: usize = 100;
pub const MAX_BLOCKED_WORD_CHARS: usize = 200;
/// Link hosts in `link_allow_list` at most.
pub const MAX_ALLOWED_LINK_HOSTS: usize = 100;
/// The longest slow mode, duplicate window, strike window and timeout: a day.
pub const MAX_RULE_SECONDS: u64 = 24 * 3600;
/// The longest `max_length` there can be: what the web chat's log keeps of a body.
pub const MAX_MAX_LENGTH: u64 = 4000;
/// The compiled size of all blocked words together, bounded so that a platform cannot
/// make Foyer spend memory or time on one show's patterns.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Which links a message may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Links {
    Allow,
    /// Only hosts and moderators post links (and they are exempt anyway): none.
    HostsOnly,
    /// Links to these hosts (and their subdomains) only, lowercase.
    AllowList(Vec<String>),
}

/// Strikes: `count` broken rules within `within` time a member out for `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strikes {
    pub count: u32,
    pub within: Duration,
    pub timeout: Duration,
}

/// Why a message is refused: the rule, and for slow mode how long until the sender may
/// post again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub rule: Rule,
    pub retry_after: Option<Duration>,
    /// What the fan is told: the rule in words, with the limit.
    pub reason: String,
}

/// A sender's recent posts, what slow mode and duplicates are judged by: how long ago
/// they last posted, and the digests ([`post_digest`]) of what they posted within the
/// duplicate window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recent {
    pub last_post_ago: Option<Duration>,
    pub digests: Vec<String>,
}

/// The rules in force for one show: the config's defaults with its overrides applied.
#[derive(Debug, Clone)]
pub struct ChatRules {
    pub mode: ChatMode,
    pub slow_mode: Duration,
    pub max_length: u32,
    pub links: Links,
    blocked_words: Vec<String>,
    blocked: Option<Regex>,
    pub duplicate_window: Duration,
    pub strikes: Strikes,
}

impl PartialEq for ChatRules {
    fn eq(&self, other: &Self) -> bool {
        (
            self.mode,
            self.slow_mode,
            self.max_length,
            &self.links,
            &self.blocked_words,
            self.duplicate_window,
            self.strikes,
        ) == (
            other.mode,
            other.slow_mode,
            other.max_length,
            &other.links,
            &other.blocked_words,
            other.duplicate_window,
            other.strikes,
        )
    }
}

impl Default for ChatRules {
    /// Open, no slow mode, 500 characters, links allowed, no blocked words, no duplicate
    /// window, and three strikes in five minutes time a member out for ten.
    fn default() -> Self {
        ChatRules {
            mode: ChatMode::Open,
            slow_mode: Duration::ZERO,
            max_length: 500,
            links: Links::Allow,
            blocked_words: Vec::new(),
            blocked: None,
            duplicate_window: Duration::ZERO,
            strikes: Strikes { count: 3, within: Duration::from_secs(300), timeout: Duration::from_secs(600) },
        }
    }
}

/// A refused `rules` object: the path of the field at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} {message}")]
pub struct RulesError {
    pub path: String,
    pub message: String,
}

/// Some of the rules, as a reservation's `chat.rules` or the config's `rooms.rules` gives
/// them: each field absent keeps what is below it. Kept as the JSON it was read from
/// (normalized), so that it is stored and shown as given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RulesOverride(Map<String, Value>);

fn bad(path: &str, key: &str, message: impl Into<String>) -> RulesError {
    RulesError { path: format!("{path}.{key}"), message: message.into() }
}

impl RulesOverride {
    /// Reads a `rules` object found at `path` (for errors: `data.chat.rules`), checking
    /// every field, patterns compiled; an unknown field is refused by name.
    pub fn parse(value: &Value, path: &str) -> Result<Self, RulesError> {
        let Value::Object(map) = value else {
            return Err(RulesError { path: path.to_owned(), message: "must be a JSON object".into() });
        };
        let mut kept = Map::new();
        for (key, value) in map {
            let seconds = |value: &Value| match value.as_u64() {
                Some(n) if n <= MAX_RULE_SECONDS => Ok(json!(n)),
                _ => Err(bad(path, key, format!("must be a whole number of seconds from 0 to {MAX_RULE_SECONDS}"))),
            };
            let checked = match key.as_str() {
                "mode" => match value.as_str().and_then(|m| ChatMode::parse(m).ok()) {
                    Some(mode) => json!(mode.as_str()),
                    None => return Err(bad(path, key, "must be open, reactions_only or hosts_only")),
                },
                "slow_mode_seconds" | "duplicate_window_seconds" => seconds(value)?,
                "max_length" => match value.as_u64() {
                    Some(n) if (1..=MAX_MAX_LENGTH).contains(&n) => json!(n),
                    _ => return Err(bad(path, key, format!("must be a whole number from 1 to {MAX_MAX_LENGTH}"))),
                },
                "links" => match value.as_str() {
                    Some(links @ ("allow" | "hosts_only" | "allow_list")) => json!(links),
                    _ => return Err(bad(path, key, "must be allow, hosts_only or allow_list")),
                },
                "link_allow_list" => json!(link_hosts(value, &format!("{path}.{key}"))?),
                "blocked_words" => {
                    let words = blocked_words(value, &format!("{path}.{key}"))?;
                    compile(&words).map_err(|m| bad(path, key, m))?;
                    json!(words)
                }
                "strikes" => strikes_override(value, &format!("{path}.{key}"))?,
                _ => return Err(bad(path, key, "is not a rule")),
            };
            kept.insert(key.clone(), checked);
        }
        Ok(RulesOverride(kept))
    }

    /// The override as stored and shown.
    pub fn to_json(&self) -> Value {
        Value::Object(self.0.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// This override with `later`'s fields in place of its own: the reservation's rules
    /// with what its room's moderators set by command over them.
    pub fn then(&self, later: &RulesOverride) -> RulesOverride {
        let mut merged = self.0.clone();
        merged.extend(later.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        RulesOverride(merged)
    }
}

fn link_hosts(value: &Value, path: &str) -> Result<Vec<String>, RulesError> {
    let problem = |message: String| RulesError { path: path.to_owned(), message };
    let Value::Array(items) = value else { return Err(problem("must be a list of host names".into())) };
    if items.len() > MAX_ALLOWED_LINK_HOSTS {
        return Err(problem(format!("must hold at most {MAX_ALLOWED_LINK_HOSTS} host names")));
    }
    let mut hosts = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let host = item.as_str().map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase());
        let ok = host.as_deref().is_some_and(|h| {
            !h.is_empty()
                && h.len() <= 253
                && h.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        });
        match host {
            Some(host) if ok => hosts.push(host),
            _ => return Err(at(path, i, "must be a host name, like platform.example.org")),
        }
    }
    Ok(hosts)
}

fn blocked_words(value: &Value, path: &str) -> Result<Vec<String>, RulesError> {
    let problem = |message: String| RulesError { path: path.to_owned(), message };
    let Value::Array(items) = value else { return Err(problem("must be a list of regular expressions".into())) };
    if items.len() > MAX_BLOCKED_WORDS {
        return Err(problem(format!("must hold at most {MAX_BLOCKED_WORDS} patterns")));
    }
    let mut words = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(word) = item.as_str().filter(|w| !w.trim().is_empty()) else {
            return Err(at(path, i, "must be a regular expression, not empty"));
        };
        if word.chars().count() > MAX_BLOCKED_WORD_CHARS {
            return Err(at(path, i, format!("must be at most {MAX_BLOCKED_WORD_CHARS} characters")));
        }
        if let Err(e) = Regex::new(word) {
            return Err(at(path, i, format!("is not a regular expression: {}", last_line(&e.to_string()))));
        }
        words.push(word.to_owned());
    }
    Ok(words)
}

/// The error of item `i` of the list at `path`.
fn at(path: &str, i: usize, message: impl Into<String>) -> RulesError {
    RulesError { path: format!("{path}[{i}]"), message: message.into() }
}

fn last_line(text: &str) -> String {
    text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(text).trim().to_owned()
}

/// All blocked words as one case-insensitive pattern, within [`REGEX_SIZE_LIMIT`].
fn compile(words: &[String]) -> Result<Option<Regex>, String> {
    if words.is_empty() {
        return Ok(None);
    }
    let joined = words.iter().map(|w| format!("(?:{w})")).collect::<Vec<_>>().join("|");
    RegexBuilder::new(&joined)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Some)
        .map_err(|e| format!("are too large or complex together: {}", last_line(&e.to_string())))
}

fn strikes_override(value: &Value, path: &str) -> Result<Value, RulesError> {
    let Value::Object(map) = value else {
        return Err(RulesError { path: path.to_owned(), message: "must be a JSON object".into() });
    };
    let mut kept = Map::new();
    for (key, value) in map {
        let (min, max) = match key.as_str() {
            "count" => (1, 100),
            "within_seconds" | "timeout_seconds" => (1, MAX_RULE_SECONDS),
            _ => return Err(bad(path, key, "is not a strikes setting (count, within_seconds, timeout_seconds)")),
        };
        match value.as_u64() {
            Some(n) if (min..=max).contains(&n) => kept.insert(key.clone(), json!(n)),
            _ => return Err(bad(path, key, format!("must be a whole number from {min} to {max}"))),
        };
    }
    Ok(Value::Object(kept))
}

impl ChatRules {
    /// These rules with `over`'s fields in place of theirs. `over` was checked when it was
    /// parsed, so nothing here can fail but a store's corrupt copy, which is refused.
    pub fn with(&self, over: &RulesOverride) -> Result<ChatRules, RulesError> {
        let mut rules = self.clone();
        let get = |key: &str| over.0.get(key);
        let secs = |v: &Value| Duration::from_secs(v.as_u64().unwrap_or(0));
        if let Some(mode) = get("mode").and_then(Value::as_str).and_then(|m| ChatMode::parse(m).ok()) {
            rules.mode = mode;
        }
        if let Some(v) = get("slow_mode_seconds") {
            rules.slow_mode = secs(v);
        }
        if let Some(v) = get("duplicate_window_seconds") {
            rules.duplicate_window = secs(v);
        }
        if let Some(n) = get("max_length").and_then(Value::as_u64) {
            rules.max_length = n.min(MAX_MAX_LENGTH) as u32;
        }
        let hosts = match get("link_allow_list") {
            Some(list) => Some(link_hosts(list, "rules.link_allow_list")?),
            None => match &rules.links {
                Links::AllowList(hosts) => Some(hosts.clone()),
                _ => None,
            },
        };
        match get("links").and_then(Value::as_str) {
            Some("allow") => rules.links = Links::Allow,
            Some("hosts_only") => rules.links = Links::HostsOnly,
            Some("allow_list") => rules.links = Links::AllowList(hosts.unwrap_or_default()),
            _ => {
                if let (Links::AllowList(_), Some(hosts)) = (&rules.links, hosts) {
                    rules.links = Links::AllowList(hosts);
                }
            }
        }
        if let Some(words) = get("blocked_words") {
            rules.blocked_words = blocked_words(words, "rules.blocked_words")?;
            rules.blocked = compile(&rules.blocked_words)
                .map_err(|m| RulesError { path: "rules.blocked_words".into(), message: m })?;
        }
        if let Some(Value::Object(strikes)) = get("strikes") {
            let n = |key: &str| strikes.get(key).and_then(Value::as_u64);
            if let Some(count) = n("count") {
                rules.strikes.count = count as u32;
            }
            if let Some(within) = n("within_seconds") {
                rules.strikes.within = Duration::from_secs(within);
            }
            if let Some(timeout) = n("timeout_seconds") {
                rules.strikes.timeout = Duration::from_secs(timeout);
            }
        }
        Ok(rules)
    }

    /// Whether a message with these bodies (its `body` and, if any, `formatted_body`, or
    /// an edit's new content, or a caption) breaks a rule, given the sender's `recent`
    /// posts. Checked in a fixed order, so the answer is one rule: slow mode, length,
    /// blocked words, links, duplicates.
    pub fn check(&self, bodies: &[&str], recent: &Recent) -> Result<(), Broken> {
        let broken = |rule: Rule, reason: String| Err(Broken { rule, retry_after: None, reason });
        if !self.slow_mode.is_zero()
            && let Some(ago) = recent.last_post_ago
            && ago < self.slow_mode
        {
            let wait = self.slow_mode - ago;
            let reason = format!("slow mode: one message every {} s", self.slow_mode.as_secs());
            return Err(Broken { rule: Rule::SlowMode, retry_after: Some(wait), reason });
        }
        let body = bodies.first().copied().unwrap_or_default();
        let length = body.chars().count();
        if length > self.max_length as usize {
            return broken(
                Rule::MaxLength,
                format!("the message is {length} characters long; the limit is {}", self.max_length),
            );
        }
        if let Some(blocked) = &self.blocked
            && bodies.iter().any(|b| blocked.is_match(b))
        {
            return broken(Rule::BlockedWords, "the message holds a word this chat does not allow".into());
        }
        let allowed = |host: &str| match &self.links {
            Links::Allow => true,
            Links::HostsOnly => false,
            Links::AllowList(hosts) => hosts.iter().any(|h| host == h || host.ends_with(&format!(".{h}"))),
        };
        if self.links != Links::Allow && bodies.iter().flat_map(|b| link_hosts_in(b)).any(|h| !allowed(&h)) {
            let reason = match self.links {
                Links::AllowList(_) => "links here may point only to the sites this chat allows",
                _ => "only hosts and moderators may post links here",
            };
            return broken(Rule::Links, reason.into());
        }
        if !self.duplicate_window.is_zero() && !body.trim().is_empty() && recent.digests.contains(&post_digest(body)) {
            let reason = format!("the same message again within {} s", self.duplicate_window.as_secs());
            return broken(Rule::Duplicate, reason);
        }
        Ok(())
    }
}

/// What duplicates are compared by: the SHA-256 (hex) of the body in lowercase with its
/// whitespace collapsed, so that no body need be kept to compare.
pub fn post_digest(body: &str) -> String {
    use sha2::{Digest, Sha256};
    let normalized = body.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    Sha256::digest(normalized.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl ChatRules {
    /// How far back a sender's posts matter: the longer of slow mode and the duplicate
    /// window.
    pub fn memory(&self) -> Duration {
        self.slow_mode.max(self.duplicate_window)
    }
}

/// Top-level names a bare `name.tld` is taken as a link for (see [`link_hosts_in`]).
const COMMON_TLDS: &[&str] = &[
    "com", "org", "net", "io", "co", "tv", "me", "gg", "ly", "info", "xyz", "app", "dev", "live", "ru", "de", "uk",
    "fr", "nl", "eu", "us", "ca", "au", "in", "cn", "jp", "br", "site", "online", "shop", "link", "to", "be",
];

/// The hosts of the links in a text: `scheme://host…`, `www.host…`, and bare
/// `host.tld/…` names with a letter-only top-level label, as clients link them.
fn link_hosts_in(text: &str) -> Vec<String> {
    let mut hosts = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '(' | ')')) {
        let rest = match word.find("://") {
            Some(at) => &word[at + 3..],
            None => word,
        };
        let host: String = rest
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .split(':')
            .next()
            .unwrap_or_default()
            .trim_end_matches(['.', ',', '!', '?', ';'])
            .to_ascii_lowercase();
        let labels: Vec<&str> = host.split('.').collect();
        let tld_is_word = labels.last().is_some_and(|t| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_alphabetic()));
        let looks_like_host = labels.len() >= 2
            && tld_is_word
            && labels.iter().all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        // A bare `word.word` is a link only as clients linkify one: with a path, `www.`,
        // or a common top-level name (`sentence.Next` is a typo, not a site).
        let bare_link = rest.contains('/')
            || host.starts_with("www.")
            || labels.last().is_some_and(|tld| COMMON_TLDS.contains(tld));
        if looks_like_host && (word.contains("://") || bare_link) {
            hosts.push(host);
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(over: Value) -> ChatRules {
        ChatRules::default().with(&RulesOverride::parse(&over, "rules").unwrap()).unwrap()
    }

    fn refused(over: Value) -> String {
        RulesOverride::parse(&over, "data.chat.rules").unwrap_err().to_string()
    }

    #[test]
    fn an_override_is_checked_field_by_field_and_named_when_wrong() {
        assert!(refused(json!([])).contains("data.chat.rules must be a JSON object"));
        assert!(refused(json!({"mode": "quiet"})).starts_with("data.chat.rules.mode must be"));
        assert!(refused(json!({"slow": 5})).starts_with("data.chat.rules.slow is not a rule"));
        assert!(refused(json!({"slow_mode_seconds": -1})).contains("slow_mode_seconds must be"));
        assert!(refused(json!({"max_length": 0})).contains("max_length must be a whole number from 1"));
        assert!(refused(json!({"links": "some"})).contains("links must be allow"));
        assert!(refused(json!({"link_allow_list": ["ok.org", "not a host"]})).contains("link_allow_list[1]"));
        assert!(
            refused(json!({"blocked_words": ["ok", "("]})).contains("blocked_words[1] is not a regular expression")
        );
        assert!(refused(json!({"blocked_words": ["x".repeat(201)]})).contains("at most 200 characters"));
        let many: Vec<String> = (0..101).map(|i| format!("w{i}")).collect();
        assert!(refused(json!({"blocked_words": many})).contains("at most 100 patterns"));
        assert!(refused(json!({"strikes": {"count": 0}})).contains("strikes.count must be"));
        assert!(refused(json!({"strikes": {"often": 1}})).contains("strikes.often is not a strikes setting"));
        // A pattern fine alone but huge together is refused as such.
        let huge: Vec<String> = (0..20).map(|i| format!("\\w{{150}}{i}")).collect();
        assert!(refused(json!({"blocked_words": huge})).contains("too large or complex together"));
    }

    #[test]
    fn an_override_keeps_the_rest_of_the_defaults() {
        let r = rules(json!({"slow_mode_seconds": 10, "strikes": {"count": 5}}));
        assert_eq!(r.slow_mode, Duration::from_secs(10));
        assert_eq!(r.max_length, 500);
        assert_eq!(r.strikes.count, 5);
        assert_eq!(r.strikes.timeout, Duration::from_secs(600));
        let list = rules(json!({"links": "allow_list", "link_allow_list": ["Platform.Example.org."]}));
        assert_eq!(list.links, Links::AllowList(vec!["platform.example.org".into()]));
        // A show's own list replaces the default's; its own links mode keeps the list.
        let shown = list.with(&RulesOverride::parse(&json!({"link_allow_list": ["b.org"]}), "r").unwrap()).unwrap();
        assert_eq!(shown.links, Links::AllowList(vec!["b.org".into()]));
    }

    #[test]
    fn each_rule_is_broken_by_what_it_names_and_nothing_else() {
        let none = Recent::default();
        let ok = |r: &ChatRules, body: &str| r.check(&[body], &none).map_err(|b| b.rule);
        assert_eq!(ok(&ChatRules::default(), "hello https://anywhere.example.com"), Ok(()));
        let short = rules(json!({"max_length": 5}));
        assert_eq!(ok(&short, "héllo"), Ok(()));
        assert_eq!(ok(&short, "héllo!"), Err(Rule::MaxLength));
        let words = rules(json!({"blocked_words": ["bad\\w*", "^spam$"]}));
        assert_eq!(ok(&words, "this is BADNESS"), Err(Rule::BlockedWords));
        assert_eq!(ok(&words, "SPAM"), Err(Rule::BlockedWords));
        assert_eq!(ok(&words, "no spam here"), Ok(()));
        // formatted_body is matched too.
        assert_eq!(words.check(&["fine", "<b>Bad</b>"], &none).map_err(|b| b.rule), Err(Rule::BlockedWords));
        let hosts_only = rules(json!({"links": "hosts_only"}));
        for linked in ["see https://x.example.com/a", "go to www.example.org", "visit evil.com/now", "HTTP://A.B.CO"] {
            assert_eq!(ok(&hosts_only, linked), Err(Rule::Links), "{linked}");
        }
        for plain in ["3.14 is pi", "end of sentence.Next", "e.g. this", "mail me at noon"] {
            assert_eq!(ok(&hosts_only, plain), Ok(()), "{plain}");
        }
        let list = rules(json!({"links": "allow_list", "link_allow_list": ["platform.example.org"]}));
        assert_eq!(ok(&list, "https://platform.example.org/watch"), Ok(()));
        assert_eq!(ok(&list, "https://cdn.platform.example.org/x"), Ok(()));
        assert_eq!(ok(&list, "https://platform.example.org.evil.com/x"), Err(Rule::Links));
        assert_eq!(ok(&list, "https://user@evil.com"), Err(Rule::Links));
    }

    #[test]
    fn slow_mode_says_how_long_to_wait_and_duplicates_are_judged_by_recent_posts() {
        let slow = rules(json!({"slow_mode_seconds": 10}));
        let just = Recent { last_post_ago: Some(Duration::from_secs(4)), digests: vec![] };
        let broken = slow.check(&["hi"], &just).unwrap_err();
        assert_eq!((broken.rule, broken.retry_after), (Rule::SlowMode, Some(Duration::from_secs(6))));
        assert!(broken.reason.contains("every 10 s"), "{}", broken.reason);
        let later = Recent { last_post_ago: Some(Duration::from_secs(10)), digests: vec![] };
        assert_eq!(slow.check(&["hi"], &later), Ok(()));
        let dupes = rules(json!({"duplicate_window_seconds": 30}));
        let said = Recent { last_post_ago: None, digests: vec![post_digest("Hello  World")] };
        assert_eq!(dupes.check(&["hello world"], &said).map_err(|b| b.rule), Err(Rule::Duplicate));
        assert_eq!(dupes.check(&["hello there"], &said), Ok(()));
        assert_eq!(ChatRules::default().check(&["hello world"], &said), Ok(()), "no window, no rule");
    }
}
