//! `foyer check-config` and `generate-registration`: every error class is named by its
//! key path, all problems at once, exit codes as the contract says.

use std::process::Command;

use crate::common::{foyer::valid_config_yaml, foyer_bin, git_commit};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn foyer(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(foyer_bin());
    cmd.args(args).env_remove("FOYER_AS_TOKEN").env_remove("FOYER_HS_TOKEN").env_remove("FOYER_API_TOKEN");
    cmd.env_remove("FOYER_WEBHOOK_SECRETS").env_remove("FOYER_DATABASE_URL").env_remove("FOYER_INGEST_TOKEN");
    cmd.env_remove("FOYER_PLATFORM_WEBHOOK_SECRET").env_remove("FOYER_CALENDAR_FEED_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run foyer");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check(yaml: &str) -> Run {
    check_with(yaml, &[])
}

fn check_with(yaml: &str, env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    foyer(&["check-config", "-c", path.to_str().unwrap()], env)
}

/// Asserts exit 1 and that stderr has a line `  <path>: ...<needle>...`.
fn assert_problem(run: &Run, path: &str, needle: &str) {
    assert_eq!(run.code, 1, "exit code; stderr:\n{}", run.stderr);
    let line = run
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{path}:")))
        .unwrap_or_else(|| panic!("no problem at {path} in:\n{}", run.stderr));
    assert!(line.contains(needle), "{line:?} should mention {needle:?}");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn a_valid_config_passes_with_a_summary() {
    let run = check(&valid_config_yaml());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("is valid"), "{}", run.stdout);
    assert!(run.stdout.contains("@foyer:example.org"), "{}", run.stdout);
    assert!(run.stdout.contains("#live_<reservation_id>:example.org"), "{}", run.stdout);
}

#[test]
fn unknown_keys_are_named_with_a_suggestion() {
    let yaml = valid_config_yaml().replace("  tolerance: 5m", "  tolerence: 5m") + "extra_section: {}\n";
    let run = check(&yaml);
    assert_problem(&run, "webhooks.tolerence", "unknown key (did you mean tolerance?)");
    assert_problem(&run, "extra_section", "unknown key");
}

#[test]
fn missing_keys_are_named() {
    let yaml =
        valid_config_yaml().replace("  server_name: example.org\n", "").replace("  url: http://127.0.0.1:29330\n", "");
    let run = check(&yaml);
    assert_problem(&run, "homeserver.server_name", "is missing");
    assert_problem(&run, "appservice.url", "is missing");
}

#[test]
fn missing_sections_are_named() {
    let run = check("homeserver:\n  url: http://127.0.0.1:8008\n  server_name: example.org\n");
    for section in ["appservice", "webhooks", "api"] {
        assert_problem(&run, section, "is missing");
    }
}

#[test]
fn bad_durations_are_named() {
    let yaml = valid_config_yaml()
        .replace("open_before: 30m", "open_before: 30 minutes")
        .replace("close_after: 1h", "close_after: 8d");
    let run = check(&yaml);
    assert_problem(&run, "rooms.open_before", "is not a duration");
    assert_problem(&run, "rooms.close_after", "out of range");
}

#[test]
fn bad_urls_are_named() {
    let yaml = valid_config_yaml()
        .replace("url: http://127.0.0.1:8008", "url: 127.0.0.1:8008")
        .replace("url: http://127.0.0.1:29330", "url: ftp://127.0.0.1:29330");
    let run = check(&yaml);
    assert_problem(&run, "homeserver.url", "127.0.0.1:8008");
    assert_problem(&run, "appservice.url", "http:// or https://");
}

#[test]
fn a_listen_that_is_not_an_address_is_named() {
    let yaml = valid_config_yaml().replace("listen: 127.0.0.1:29330", "listen: localhost");
    assert_problem(&check(&yaml), "appservice.listen", "is not an address");
}

#[test]
fn short_tokens_are_named() {
    let yaml = valid_config_yaml().replace(&"a".repeat(40), "short");
    let run = check(&yaml);
    assert_problem(&run, "appservice.as_token", "at least 32 characters (it has 5)");
}

#[test]
fn placeholders_are_refused_by_check_config_but_allowed_by_generate_registration() {
    let example = std::fs::read_to_string(crate::common::repo_root().join("config.example.yaml")).unwrap();
    let run = check(&example);
    for path in ["appservice.as_token", "appservice.hs_token", "api.token", "webhooks.secrets[0]"] {
        assert_problem(&run, path, "placeholder");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("registration.yaml");
    let example_path = crate::common::repo_root().join("config.example.yaml");
    let run = foyer(&["generate-registration", "-c", example_path.to_str().unwrap(), "-o", out.to_str().unwrap()], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn all_problems_are_reported_at_once() {
    let yaml = valid_config_yaml()
        .replace("listen: 127.0.0.1:29330", "listen: nowhere")
        .replace("open_before: 30m", "open_before: soon")
        .replace("archive_mode: read_only", "archive_mode: burn");
    let run = check(&yaml);
    assert_problem(&run, "appservice.listen", "not an address");
    assert_problem(&run, "rooms.open_before", "not a duration");
    assert_problem(&run, "rooms.archive_mode", "read_only, kick, delete");
    assert!(run.stderr.contains("has 3 problems"), "{}", run.stderr);
}

#[test]
fn secrets_come_from_files_and_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("as_token"), format!("{}\n", "f".repeat(40))).unwrap();
    let yaml = valid_config_yaml()
        .replace(&format!("as_token: {}", "a".repeat(40)), "as_token_file: as_token")
        .replace(&format!("token: {}", "c".repeat(40)), "token: CHANGE_ME_in_the_environment");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let api_token = "e".repeat(40);
    let run = foyer(&["check-config", "-c", path.to_str().unwrap()], &[("FOYER_API_TOKEN", &api_token)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("appservice.as_token from file"), "{}", run.stdout);
    assert!(run.stdout.contains("api.token from environment variable FOYER_API_TOKEN"), "{}", run.stdout);
    assert!(
        !run.stdout.contains(&api_token) && !run.stdout.contains(&"f".repeat(40)),
        "secrets printed:\n{}",
        run.stdout
    );

    // A missing secret file is named by its key.
    std::fs::remove_file(dir.path().join("as_token")).unwrap();
    let run = foyer(&["check-config", "-c", path.to_str().unwrap()], &[("FOYER_API_TOKEN", &api_token)]);
    assert_problem(&run, "appservice.as_token_file", "cannot read");
}

#[test]
fn database_pool_settings_are_checked() {
    let yaml = valid_config_yaml()
        .replace("  url: sqlite://foyer.db\n", "  url: mysql://x\n  max_connections: 0\n  acquire_timeout: forever\n");
    let run = check(&yaml);
    assert_problem(&run, "database.url", "sqlite:// or postgres://");
    assert_problem(&run, "database.max_connections", "1 to 500");
    assert_problem(&run, "database.acquire_timeout", "is not a duration");
}

#[test]
fn delete_mode_needs_a_synapse_admin_token() {
    let yaml = valid_config_yaml().replace("archive_mode: read_only", "archive_mode: delete");
    assert_problem(&check(&yaml), "synapse_admin.token", "archive_mode is delete");
}

#[test]
fn auto_join_needs_a_synapse_admin_token_and_the_pace_is_a_rate() {
    let yaml = valid_config_yaml().replace("archive_mode: read_only", "archive_mode: read_only\n  auto_join: local");
    assert_problem(&check(&yaml), "synapse_admin.token", "rooms.auto_join is local");
    for (pace, says) in
        [("0", "above 0"), ("fast", "a number of joins a second"), ("-1", "above 0"), ("5000", "at most 1000")]
    {
        let yaml = valid_config_yaml()
            .replace("archive_mode: read_only", &format!("archive_mode: read_only\n  join_pace: {pace}"));
        assert_problem(&check(&yaml), "rooms.join_pace", says);
    }
    let yaml = valid_config_yaml().replace("archive_mode: read_only", "archive_mode: read_only\n  auto_join: everyone");
    assert_problem(&check(&yaml), "rooms.auto_join", "is not one of: off, local");
}

#[test]
fn series_horizon_is_a_duration_within_bounds() {
    for (horizon, says) in [("30s", "out of range"), ("2y", ""), ("400d", "out of range"), ("soon", "")] {
        let yaml = valid_config_yaml() + &format!("series:\n  horizon: {horizon}\n");
        assert_problem(&check(&yaml), "series.horizon", says);
    }
    let yaml = valid_config_yaml() + "series:\n  horizon: 14d\n  window: 3\n";
    assert_problem(&check(&yaml), "series.window", "");
    assert_eq!(check(&(valid_config_yaml() + "series:\n  horizon: 14d\n")).code, 0);
}

#[test]
fn a_file_that_is_not_yaml_or_missing_is_one_clear_line() {
    let run = check("homeserver: [unclosed\n");
    assert_eq!(run.code, 1);
    assert!(run.stderr.starts_with("foyer: config file") && run.stderr.contains("not valid YAML"), "{}", run.stderr);
    let run = foyer(&["check-config", "-c", "/nonexistent/foyer.yaml"], &[]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("cannot read config file /nonexistent/foyer.yaml"), "{}", run.stderr);
}

#[test]
fn bad_arguments_exit_1() {
    let run = foyer(&["serve"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let run = foyer(&["no-such-command"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
}

#[test]
fn the_committed_registration_matches_the_example_config() {
    let root = crate::common::repo_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("registration.yaml");
    let example = root.join("config.example.yaml");
    let run = foyer(&["generate-registration", "-c", example.to_str().unwrap(), "-o", out.to_str().unwrap()], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let generated = std::fs::read_to_string(&out).unwrap();
    let committed = std::fs::read_to_string(root.join("registration.yaml")).unwrap();
    assert_eq!(generated, committed, "registration.yaml drifted from config.example.yaml; regenerate it");
}

#[test]
fn generate_registration_gives_web_fans_an_exclusive_namespace_when_web_chat_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let generate = |yaml: &str, name: &str| {
        let config = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&config, yaml).unwrap();
        let out = dir.path().join(format!("{name}-registration.yaml"));
        let run = foyer(&["generate-registration", "-c", config.to_str().unwrap(), "-o", out.to_str().unwrap()], &[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let text = std::fs::read_to_string(&out).unwrap();
        serde_yaml::from_str::<serde_yaml::Value>(&text).unwrap()
    };
    let off = generate(&valid_config_yaml(), "off");
    assert_eq!(off["namespaces"]["users"], serde_yaml::Value::Sequence(vec![]), "no web chat, no namespace");
    let webchat = format!(
        "webchat:\n  token_secrets: [\"{}\"]\n  allowed_origins: [\"https://p.example.org\"]\n  puppet_prefix: web.fan_\n",
        "w".repeat(40)
    );
    let on = generate(&format!("{}{webchat}", valid_config_yaml()), "on");
    assert_eq!(on["namespaces"]["users"][0]["regex"].as_str(), Some(r"^@web\.fan_.*:example\.org$"));
    assert_eq!(on["namespaces"]["users"][0]["exclusive"], serde_yaml::Value::Bool(true));
    assert_eq!(on["namespaces"]["aliases"], off["namespaces"]["aliases"]);
}

#[test]
fn generate_registration_writes_0600_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, valid_config_yaml()).unwrap();
    let out = dir.path().join("registration.yaml");
    let args = ["generate-registration", "-c", config.to_str().unwrap(), "-o", out.to_str().unwrap()];
    let run = foyer(&args, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let parsed: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(parsed["rate_limited"], serde_yaml::Value::Bool(false));
    assert_eq!(parsed["sender_localpart"].as_str(), Some("foyer"));
    assert_eq!(parsed["url"].as_str(), Some("http://127.0.0.1:29330"));
    assert_eq!(parsed["namespaces"]["aliases"][0]["regex"].as_str(), Some(r"^#live_.*:example\.org$"));
    assert_eq!(parsed["namespaces"]["aliases"][0]["exclusive"], serde_yaml::Value::Bool(true));

    std::fs::write(&out, "keep me").unwrap();
    let run = foyer(&args, &[]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("already exists; pass --force"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");

    let mut forced = args.to_vec();
    forced.push("--force");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(foyer(&forced, &[]).code, 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn logging_and_admins_are_checked() {
    let ok =
        valid_config_yaml() + "logging:\n  format: json\nadmins: [\"@alice:example.org\", \"@bob:elsewhere.net\"]\n";
    assert_eq!(check(&ok).code, 0, "{}", check(&ok).stderr);
    let run = check(&(valid_config_yaml() + "logging:\n  format: xml\n  colour: true\nadmins: [\"alice\", 3]\n"));
    assert_problem(&run, "logging.format", "\"xml\" is not one of: pretty, json");
    assert_problem(&run, "logging.colour", "unknown");
    assert_problem(&run, "admins[0]", "\"alice\" is not a Matrix user ID");
    assert_problem(&run, "admins[1]", "must be a Matrix user ID in quotes");
    assert_problem(&check(&(valid_config_yaml() + "admins: \"@alice:example.org\"\n")), "admins", "must be a list");
}

#[test]
fn allow_http_stream_urls_is_a_boolean() {
    let with = |value: &str| {
        check(
            &valid_config_yaml()
                .replace("  join_rule: invite\n", &format!("  join_rule: invite\n  allow_http_stream_urls: {value}\n")),
        )
    };
    let run = with("true");
    assert_eq!(run.code, 0, "{}", run.stderr);
    for bad in ["yes", "\"true\"", "1"] {
        assert_problem(&with(bad), "rooms.allow_http_stream_urls", "must be true or false");
    }
}

#[test]
fn check_config_masks_database_passwords_in_the_user_info_and_the_query() {
    let url = "postgres://foyer:hunter2-info@db.example.org/foyer?sslmode=require&password=hunter2-query";
    let run = check(&valid_config_yaml().replace("url: sqlite://foyer.db", &format!("url: \"{url}\"")));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("database    postgres://foyer:***@db.example.org/foyer?sslmode=require&password=***"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"), "a password printed:\n{}", run.stdout);
}

#[test]
fn the_ingest_section_is_checked_like_the_others() {
    let with = |ingest: &str| format!("{}ingest:\n{ingest}", valid_config_yaml());
    assert_problem(&check(&with("  tokn: x\n")), "ingest.tokn", "unknown key (did you mean token?)");
    assert_problem(&check(&with("  token: short\n")), "ingest.token", "at least 32 characters (it has 5)");
    assert_problem(&check(&with("  token: CHANGE_ME_ingest\n")), "ingest.token", "placeholder");
    assert_problem(&check(&with("  token: x\n  token_file: y\n")), "ingest.token", "not both");
    let run = check(&with(&format!("  token: {}\n", "i".repeat(40))));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("ingest.token from config file"), "{}", run.stdout);
    // The environment alone is enough: no ingest section needed.
    let run = check_with(&valid_config_yaml(), &[("FOYER_INGEST_TOKEN", &"e".repeat(40))]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("ingest.token from environment variable FOYER_INGEST_TOKEN"), "{}", run.stdout);
    assert!(!run.stdout.contains(&"e".repeat(40)), "{}", run.stdout);
}

#[test]
fn the_platform_section_needs_a_url_and_a_standard_webhooks_secret() {
    let with = |platform: &str| format!("{}platform:\n{platform}", valid_config_yaml());
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let url = "  webhook_url: https://platform.example.org/foyer/events?route=foyer\n";
    assert_problem(&check(&with(&format!("  webhook_secret: {secret}\n"))), "platform.webhook_url", "is missing");
    assert_problem(&check(&with(url)), "platform.webhook_secret", "is missing");
    let bad_url = format!("  webhook_url: ftp://platform.example.org/\n  webhook_secret: {secret}\n");
    assert_problem(&check(&with(&bad_url)), "platform.webhook_url", "http:// or https://");
    let fragment = format!("  webhook_url: https://platform.example.org/#x\n  webhook_secret: {secret}\n");
    assert_problem(&check(&with(&fragment)), "platform.webhook_url", "no fragment");
    let not_whsec = format!("{url}  webhook_secret: MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n");
    assert_problem(&check(&with(&not_whsec)), "platform.webhook_secret", "must start with whsec_");
    let short = format!("{url}  webhook_secret: whsec_c2hvcnQ=\n");
    assert_problem(&check(&with(&short)), "platform.webhook_secret", "at least 16");
    let placeholder = format!("{url}  webhook_secret: whsec_CHANGE_ME\n");
    assert_problem(&check(&with(&placeholder)), "platform.webhook_secret", "placeholder");
    assert_problem(
        &check(&with(&format!("{url}  webhook_secrt: {secret}\n"))),
        "platform.webhook_secrt",
        "unknown key",
    );

    let run = check(&with(&format!("{url}  webhook_secret: {secret}\n")));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("platform    events to https://platform.example.org/foyer/events"), "{}", run.stdout);
    assert!(run.stdout.contains("platform.webhook_secret from config file"), "{}", run.stdout);
    // The query may hold the receiver's token, and the secret is never shown.
    assert!(!run.stdout.contains("route=foyer") && !run.stdout.contains(secret), "{}", run.stdout);
    // From the environment, and without a platform section no events are configured.
    let run = check_with(&with(url), &[("FOYER_PLATFORM_WEBHOOK_SECRET", secret)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("platform.webhook_secret from environment variable FOYER_PLATFORM_WEBHOOK_SECRET"));
    let run = check(&valid_config_yaml());
    assert!(!run.stdout.contains("platform"), "{}", run.stdout);
}

#[test]
fn version_names_the_release_and_the_commit() {
    for flag in ["--version", "-V"] {
        let run = foyer(&[flag], &[]);
        assert_eq!(run.code, 0, "{flag}: {}", run.stderr);
        assert_eq!(run.stdout, format!("foyer {} ({})\n", env!("CARGO_PKG_VERSION"), git_commit()), "{flag}");
    }
}

#[test]
fn example_config_prints_config_example_yaml() {
    let run = foyer(&["example-config"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let file = std::fs::read_to_string(crate::common::repo_root().join("config.example.yaml")).unwrap();
    assert!(run.stdout == file, "foyer example-config differs from config.example.yaml; rebuild");
}

#[test]
fn transcripts_are_on_or_off_with_a_retention_and_a_wait() {
    let with = |extra: &str| {
        check(&valid_config_yaml().replace("  join_rule: invite\n", &format!("  join_rule: invite\n{extra}")))
    };
    let run = check(&valid_config_yaml());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("transcripts off"), "off by default: {}", run.stdout);
    let run = with("  transcript: on\n  transcript_retention: 7d\n  transcript_wait: 2m\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("transcripts on: kept 7d, the archive waits at most 2m"), "{}", run.stdout);
    assert_problem(&with("  transcript: maybe\n"), "rooms.transcript", "\"maybe\" is not one of: on, off");
    assert_problem(&with("  transcript_retention: forever\n"), "rooms.transcript_retention", "is not a duration");
    assert_problem(&with("  transcript_wait: 8d\n"), "rooms.transcript_wait", "8d is out of range; use 0s to 7d");
}

#[test]
fn the_homeserver_api_may_have_a_listener_of_its_own_and_the_registration_follows_it() {
    let with = |keys: &str| {
        valid_config_yaml()
            .replace("  url: http://127.0.0.1:29330\n", &format!("  url: http://127.0.0.1:29330\n{keys}"))
    };
    assert_problem(
        &check(&with("  homeserver_listen: localhost\n")),
        "appservice.homeserver_listen",
        "is not an address",
    );
    assert_problem(
        &check(&with("  homeserver_listen: 127.0.0.1:29330\n")),
        "appservice.homeserver_listen",
        "appservice.listen's address too",
    );
    assert_problem(
        &check(&with("  homeserver_url: http://127.0.0.1:29331\n")),
        "appservice.homeserver_url",
        "appservice.homeserver_listen is not",
    );
    assert_problem(
        &check(&with("  homeserver_listen: 0.0.0.0:29331\n")),
        "appservice.homeserver_url",
        "is required when appservice.homeserver_listen (0.0.0.0:29331) listens on every address",
    );
    assert_problem(
        &check(&with("  homeserver_listen: 127.0.0.1:29331\n  homeserver_url: ftp://x\n")),
        "appservice.homeserver_url",
        "http:// or https://",
    );
    let run = check(&with("  homeserver_listen: 127.0.0.1:29331\n"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("homeserver API on its own listener 127.0.0.1:29331, reached at http://127.0.0.1:29331/"),
        "{}",
        run.stdout
    );

    // generate-registration gives the homeserver the URL of its own listener.
    let registration_url = |keys: &str| {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, with(keys)).unwrap();
        let out = dir.path().join("registration.yaml");
        let run = foyer(&["generate-registration", "-c", config.to_str().unwrap(), "-o", out.to_str().unwrap()], &[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let parsed: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        parsed["url"].as_str().map(str::to_owned)
    };
    assert_eq!(registration_url("  homeserver_listen: '[::1]:29331'\n").as_deref(), Some("http://[::1]:29331"));
    assert_eq!(
        registration_url("  homeserver_listen: 0.0.0.0:29331\n  homeserver_url: http://10.0.0.5:29331/\n").as_deref(),
        Some("http://10.0.0.5:29331")
    );
    assert_eq!(registration_url("").as_deref(), Some("http://127.0.0.1:29330"));
}

#[test]
fn check_config_warns_when_the_publish_hooks_are_open_beyond_loopback() {
    let public = valid_config_yaml().replace("listen: 127.0.0.1:29330", "listen: 0.0.0.0:29330");
    let run = check(&public);
    assert_eq!(run.code, 0, "a warning does not fail the check: {}", run.stderr);
    let warning = run.stdout.lines().find(|l| l.starts_with("warning: ingest.token:")).unwrap_or_else(|| {
        panic!("no warning about ingest.token in:\n{}", run.stdout);
    });
    assert!(warning.contains("0.0.0.0:29330") && warning.contains("set ingest.token"), "{warning}");
    // Loopback, or a token: nothing to warn about.
    assert!(!check(&valid_config_yaml()).stdout.contains("warning:"));
    let run = check_with(&public, &[("FOYER_INGEST_TOKEN", &"e".repeat(40))]);
    assert!(!run.stdout.contains("warning: ingest.token"), "{}", run.stdout);
}

#[test]
fn check_config_warns_when_strangers_share_the_homeservers_listener() {
    let public = valid_config_yaml().replace("listen: 127.0.0.1:29330", "listen: 0.0.0.0:29330");
    let run = check(&public);
    assert_eq!(run.code, 0, "a warning does not fail the check: {}", run.stderr);
    assert!(run.stdout.contains("warning: appservice.homeserver_listen: is not set"), "{}", run.stdout);
    let own = public.replace(
        "  url: http://127.0.0.1:29330\n",
        "  url: http://127.0.0.1:29330\n  homeserver_listen: 127.0.0.1:29331\n",
    );
    let run = check(&own);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("warning: appservice.homeserver_listen"), "{}", run.stdout);
}

#[test]
fn chat_rules_are_checked_and_each_bad_one_named() {
    let good = valid_config_yaml().replace(
        "rooms:\n",
        "rooms:\n  rules:\n    slow_mode_seconds: 10\n    links: allow_list\n    link_allow_list: [platform.example.org]\n    blocked_words: ['bad\\w*']\n    strikes: {count: 2}\n",
    );
    let run = check(&good);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = check(&valid_config_yaml().replace("rooms:\n", "rooms:\n  rules:\n    mode: quiet\n"));
    assert_problem(&run, "rooms.rules.mode", "open, reactions_only or hosts_only");
    let run = check(&valid_config_yaml().replace("rooms:\n", "rooms:\n  rules:\n    blocked_words: ['ok', '(']\n"));
    assert_problem(&run, "rooms.rules.blocked_words[1]", "is not a regular expression");
    let run = check(&valid_config_yaml().replace("rooms:\n", "rooms:\n  rules:\n    strikes: {often: 1}\n"));
    assert_problem(&run, "rooms.rules.strikes.often", "is not a strikes setting");
}

#[test]
fn the_calendar_section_is_checked_like_the_others() {
    let with = |section: &str| format!("{}calendar:\n{section}", valid_config_yaml());
    for (section, path, needle) in [
        ("  public: yes please\n", "calendar.public", "must be true or false"),
        ("  feed_key: short\n", "calendar.feed_key", "at least 32 characters (it has 5)"),
        ("  feed_key: CHANGE_ME_calendar\n", "calendar.feed_key", "placeholder"),
        ("  feed_key: x\n  feed_key_file: y\n", "calendar.feed_key", "not both"),
        ("  feed_key_file: missing\n", "calendar.feed_key_file", "cannot read"),
        ("  publik: true\n", "calendar.publik", "unknown key (did you mean public?)"),
    ] {
        assert_problem(&check(&with(section)), path, needle);
    }
    let key = "k".repeat(40);
    let run = check(&with(&format!("  public: true\n  feed_key: {key}\n")));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("calendar.feed_key from config file") && !run.stdout.contains(&key), "{}", run.stdout);
    // The environment alone is enough: no section needed.
    let run = check_with(&valid_config_yaml(), &[("FOYER_CALENDAR_FEED_KEY", &key)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("calendar.feed_key from environment variable FOYER_CALENDAR_FEED_KEY"),
        "{}",
        run.stdout
    );
}
