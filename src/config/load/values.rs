//! The walker's building blocks: one key of a mapping read with its key path (a
//! section, a string, a name, a URL, a duration, a flag, a choice), and the keys nobody
//! asked for reported, with the known key a typo is nearest to.

use std::{collections::BTreeSet, time::Duration};

use serde_yaml::Value;
use url::Url;

use super::{Section, Walker};
use crate::config::{format_duration, parse_duration};

impl Walker<'_> {
    pub(super) fn section<'y>(
        &mut self, parent: &mut Section<'y>, key: &'static str, required: bool,
    ) -> Option<Section<'y>> {
        let path = parent.key_path(key);
        match parent.get(key) {
            Some(Value::Mapping(map)) => Some(Section::new(&path, map)),
            Some(_) => {
                self.problem(path, "must be a mapping of keys");
                None
            }
            None if required => {
                self.problem(path, "is missing (a required section)");
                None
            }
            None => None,
        }
    }

    /// Reports every key of the section that nothing asked for.
    pub(super) fn finish(&mut self, section: Section<'_>) {
        for key in section.map.keys() {
            let Some(name) = key.as_str() else {
                self.problem(section.key_path(&format!("{key:?}")), "keys must be strings");
                continue;
            };
            if section.known.contains(name) {
                continue;
            }
            let hint = closest(name, &section.known).map(|k| format!(" (did you mean {k}?)")).unwrap_or_default();
            self.problem(section.key_path(name), format!("unknown key{hint}"));
        }
    }

    pub(super) fn string(&mut self, s: &mut Section<'_>, key: &'static str, required: bool) -> Option<String> {
        match s.get(key) {
            Some(Value::String(v)) if v.trim().is_empty() => {
                self.problem(s.key_path(key), "is empty");
                None
            }
            Some(Value::String(v)) => Some(v.clone()),
            Some(_) => {
                self.problem(s.key_path(key), "must be a string (put it in quotes)");
                None
            }
            None if required => {
                self.problem(s.key_path(key), "is missing");
                None
            }
            None => None,
        }
    }

    /// An identifier-like string (with a default) made of the allowed characters.
    pub(super) fn name(
        &mut self, s: &mut Section<'_>, key: &'static str, default: &str, max_len: usize,
        allowed: impl Fn(char) -> bool, described: &str,
    ) -> Option<String> {
        let value = self.string(s, key, false).unwrap_or_else(|| default.to_owned());
        if value.chars().count() > max_len || !value.chars().all(allowed) {
            self.problem(s.key_path(key), format!("{value:?} must be 1 to {max_len} characters: {described}"));
            return None;
        }
        Some(value)
    }

    /// An optional base URL: `Some(None)` when absent, `None` when given but wrong.
    pub(super) fn opt_url(&mut self, s: &mut Section<'_>, key: &'static str) -> Option<Option<Url>> {
        if s.get(key).is_none() {
            return Some(None);
        }
        self.url(s, key).map(Some)
    }

    pub(super) fn url(&mut self, s: &mut Section<'_>, key: &'static str) -> Option<Url> {
        let text = self.string(s, key, true)?;
        match Url::parse(&text) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                self.problem(s.key_path(key), format!("{text:?} must be an http:// or https:// URL"));
                None
            }
            Ok(url) if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() => {
                self.problem(
                    s.key_path(key),
                    format!("{text:?} must be a base URL with a host and without query or fragment"),
                );
                None
            }
            Ok(url) => Some(url),
            Err(e) => {
                self.problem(s.key_path(key), format!("{text:?} is not a URL ({e})"));
                None
            }
        }
    }

    pub(super) fn duration(
        &mut self, s: &mut Section<'_>, key: &'static str, default: Duration, range: std::ops::RangeInclusive<Duration>,
    ) -> Option<Duration> {
        let Some(value) = s.get(key) else {
            return Some(default);
        };
        let Value::String(text) = value else {
            self.problem(s.key_path(key), "must be a duration string with a unit, like 90s, 30m or 2h");
            return None;
        };
        match parse_duration(text) {
            Ok(d) if range.contains(&d) => Some(d),
            Ok(_) => {
                self.problem(
                    s.key_path(key),
                    format!(
                        "{text} is out of range; use {} to {}",
                        format_duration(*range.start()),
                        format_duration(*range.end())
                    ),
                );
                None
            }
            Err(message) => {
                self.problem(s.key_path(key), message);
                None
            }
        }
    }

    /// A list of durations, like `[10m, 1h]`.
    pub(super) fn durations(
        &mut self, s: &mut Section<'_>, key: &'static str, default: Vec<Duration>,
        range: std::ops::RangeInclusive<Duration>,
    ) -> Option<Vec<Duration>> {
        let Some(value) = s.get(key) else { return Some(default) };
        let Value::Sequence(items) = value else {
            self.problem(s.key_path(key), "must be a list of durations, like [10m, 1h]");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", s.key_path(key));
            match item.as_str().map(parse_duration) {
                Some(Ok(d)) if range.contains(&d) => out.push(d),
                Some(Ok(_)) => self.problem(
                    path,
                    format!(
                        "is out of range; use {} to {}",
                        format_duration(*range.start()),
                        format_duration(*range.end())
                    ),
                ),
                Some(Err(message)) => self.problem(path, message),
                None => self.problem(path, "must be a duration string with a unit, like 10m"),
            }
        }
        (out.len() == items.len()).then_some(out)
    }

    /// `true` or `false` (YAML booleans, not `yes`/`no` strings), with a default.
    pub(super) fn flag(&mut self, s: &mut Section<'_>, key: &'static str, default: bool) -> Option<bool> {
        match s.get(key) {
            None => Some(default),
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.problem(s.key_path(key), "must be true or false");
                None
            }
        }
    }

    /// `on` or `off` (YAML 1.1's booleans, which admins write, are taken too).
    pub(super) fn on_off(&mut self, s: &mut Section<'_>, key: &'static str, default: bool) -> Option<bool> {
        match s.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => self.choice(s, key, default, &[("on", true), ("off", false)]),
        }
    }

    pub(super) fn choice<T: Copy>(
        &mut self, s: &mut Section<'_>, key: &'static str, default: T, options: &[(&str, T)],
    ) -> Option<T> {
        let Some(text) = self.string(s, key, false) else {
            return (!self.problems.iter().any(|p| p.path == s.key_path(key))).then_some(default);
        };
        let found = options.iter().find(|(name, _)| *name == text).map(|(_, v)| *v);
        if found.is_none() {
            let names: Vec<_> = options.iter().map(|(n, _)| *n).collect();
            self.problem(s.key_path(key), format!("{text:?} is not one of: {}", names.join(", ")));
        }
        found
    }
}

/// The known key nearest to a misspelt one, if it is near enough to be a typo.
fn closest<'k>(name: &str, known: &BTreeSet<&'k str>) -> Option<&'k str> {
    known.iter().map(|k| (edit_distance(name, k), *k)).filter(|(d, k)| *d <= 2.max(k.len() / 4)).min().map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
