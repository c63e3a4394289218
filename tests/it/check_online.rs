//! `foyer check-config --online` against a real Synapse: a good deployment passes every
//! check (with Foyer stopped, and running); each failure class fails its check with the
//! fix it prints, and the exit code is 1.

use std::path::Path;

use crate::common::{
    foyer::{TestFoyer, sqlite_exec},
    foyer_bin, free_port, random_token, repo_root,
    synapse::{Slot, Synapse},
    unique,
};
use serde_json::json;

struct Run {
    code: i32,
    stdout: String,
}

impl Run {
    /// The report's line for check `name`.
    fn line(&self, name: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} line in:\n{}", self.stdout))
    }

    /// Check `name` has `mark` (`ok`, `FAIL`, `skip`) and its line says `needle`.
    fn assert(&self, name: &str, mark: &str, needle: &str) {
        let line = self.line(name);
        assert!(
            line.trim_start().starts_with(mark) && line.contains(needle),
            "{name}: want {mark} {needle:?}, got:\n{}",
            self.stdout
        );
    }
}

/// Runs `foyer check-config --online` on `config`; stdout and stderr together.
async fn online(config: &Path) -> Run {
    let mut cmd = tokio::process::Command::new(foyer_bin());
    cmd.arg("check-config").arg("--online").arg("-c").arg(config);
    for var in ["AS_TOKEN", "HS_TOKEN", "API_TOKEN", "WEBHOOK_SECRETS", "DATABASE_URL", "SYNAPSE_ADMIN_TOKEN"] {
        cmd.env_remove(format!("FOYER_{var}"));
    }
    let out = cmd.output().await.expect("run foyer");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let run = Run { code: out.status.code().unwrap_or(-1), stdout: format!("{stdout}{stderr}") };
    eprintln!("foyer check-config --online, exit {}:\n{}", run.code, run.stdout);
    run
}

/// Writes `yaml` as `config.yaml` in `dir` and checks it online.
async fn online_yaml(dir: &Path, yaml: &str) -> Run {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write config");
    online(&path).await
}

/// A slot's config with a server admin's token.
async fn good_config(slot: &Slot) -> String {
    let admin = Synapse::shared().create_admin().await;
    format!("{}synapse_admin:\n  token: {}\n", slot.config_yaml(), admin.access_token)
}

const CHECKS: [&str; 7] = ["homeserver", "as_token", "ping", "webchat", "database", "synapse_admin", "listen"];

#[tokio::test]
async fn a_good_deployment_passes_every_check_before_foyer_runs() {
    let slot = Synapse::shared().take_slot();
    let dir = tempfile::tempdir().unwrap();
    let run = online_yaml(dir.path(), &good_config(&slot).await).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    for check in CHECKS {
        run.assert(check, "ok", "");
    }
    run.assert("as_token", "ok", &slot.bot_user_id());
    run.assert("ping", "ok", "answered by this check, standing in for Foyer");
    run.assert("database", "ok", "no Foyer schema yet: foyer serve creates it");
    run.assert("synapse_admin", "ok", "a server admin's token");
    run.assert("listen", "ok", "is free");
    run.assert("webchat", "ok", &format!("gives Foyer the web fans' namespace ^@{}.*:localhost$", slot.puppet_prefix));
    assert!(run.stdout.contains("all 7 online checks passed"), "{}", run.stdout);
    assert!(!dir.path().join("foyer.db").exists(), "the check created the database");
    // No database yet: what the join limit means in general, as advice that fails nothing.
    run.assert("joins", "note", "rooms.auto_join is off: at Synapse's default join limit (rc_joins_per_room");
    run.assert("joins", "note", "(300 holders: about 290 s), refused (429) meanwhile");
    run.assert("joins", "note", "set rooms.auto_join: local (README, Big shows)");

    // With auto_join on, nothing to advise.
    let run = online_yaml(dir.path(), &format!("{}rooms:\n  auto_join: local\n", good_config(&slot).await)).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(!run.stdout.contains("joins"), "{}", run.stdout);
}

#[tokio::test]
async fn a_good_deployment_passes_every_check_while_foyer_runs() {
    let foyer = TestFoyer::start().await;
    let run = online(&foyer.dir().join("config.yaml")).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    run.assert("ping", "ok", "(answered by Foyer)");
    let latest = foyer::store::latest_version();
    run.assert("database", "ok", &format!("opens at schema version {latest}, this Foyer's"));
    run.assert("synapse_admin", "ok", "not set");
    run.assert("listen", "ok", "is in use by a running Foyer");
}

/// With `rooms.auto_join` off, the advice names the largest show to come by its active
/// tickets (a revoked one and a cancelled show's do not count) and what the join limit
/// means for it; the check still passes.
#[tokio::test]
async fn the_join_advice_names_the_largest_show_to_come() {
    let foyer = TestFoyer::start().await;
    let at = |s: i64| (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339();
    let (small, big, gone) = (unique("small"), unique("big"), unique("gone"));
    for (id, tickets) in [(&small, 3), (&big, 25), (&gone, 30)] {
        // Two hours ahead, opening a minute before: no room, no invite yet.
        let show = json!({"reservation_id": id, "title": "Show", "starts_at": at(7200), "ends_at": at(10800),
                          "chat": {"open_before_seconds": 60}});
        foyer.accept("reservation.created", show).await;
        let fans: Vec<(String, String)> =
            (0..tickets).map(|n| (format!("t-{n}"), format!("@fan{n}:localhost"))).collect();
        let fans: Vec<(&str, &str)> = fans.iter().map(|(t, u)| (t.as_str(), u.as_str())).collect();
        foyer.grant(id, &fans).await;
    }
    foyer.revoke(&big, &["t-0"]).await;
    foyer.accept("reservation.cancelled", json!({"reservation_id": gone})).await;
    let run = online(&foyer.dir().join("config.yaml")).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    let said = format!("the largest show to come, {big}, has 24 active tickets; at Synapse's default join limit");
    run.assert("joins", "note", &said);
    run.assert("joins", "note", "its holders need about 14 s to join by themselves, refused (429) meanwhile");
}

#[tokio::test]
async fn a_homeserver_that_does_not_answer_is_named_and_the_checks_that_need_it_skipped() {
    let slot = Synapse::shared().take_slot();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    let yaml = format!("{}synapse_admin:\n  token: {}\n", slot.config_yaml(), random_token());
    let run = online_yaml(dir.path(), &yaml.replace(&slot.homeserver_url, "http://127.0.0.1:1")).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    run.assert("homeserver", "FAIL", "does not answer");
    run.assert("synapse_admin", "skip", "the homeserver does not answer");
    run.assert("homeserver", "FAIL", "check that it is running and that homeserver.url is right");
    run.assert("as_token", "skip", "the homeserver does not answer");
    run.assert("ping", "skip", "the homeserver does not answer");
    run.assert("listen", "ok", "is free");
}

#[tokio::test]
async fn an_as_token_the_homeserver_does_not_know_names_the_registration() {
    let slot = Synapse::shared().take_slot();
    let dir = tempfile::tempdir().unwrap();
    let run = online_yaml(dir.path(), &slot.config_yaml().replace(&slot.as_token, &random_token())).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    run.assert("homeserver", "ok", "answers");
    run.assert("as_token", "FAIL", "list it in app_service_config_files and restart the homeserver");
    run.assert("ping", "skip", "the as_token check did not pass");
}

#[tokio::test]
async fn a_homeserver_that_cannot_reach_appservice_url_is_named() {
    let slot = Synapse::shared().take_slot();
    let dir = tempfile::tempdir().unwrap();
    // Foyer would listen elsewhere than where the registration sends the homeserver.
    let elsewhere = format!("listen: 127.0.0.1:{}", free_port());
    let yaml = slot.config_yaml().replace(&format!("listen: 127.0.0.1:{}", slot.port), &elsewhere);
    let run = online_yaml(dir.path(), &yaml).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    run.assert("as_token", "ok", "accepted");
    run.assert("ping", "FAIL", "the homeserver cannot reach Foyer");
    run.assert("ping", "FAIL", "check appservice.url in the registration and that Foyer listens there");
}

#[tokio::test]
async fn an_hs_token_that_differs_from_the_registration_is_named() {
    let slot = Synapse::shared().take_slot();
    let dir = tempfile::tempdir().unwrap();
    let run = online_yaml(dir.path(), &slot.config_yaml().replace(&slot.hs_token, &random_token())).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    run.assert("ping", "FAIL", "hs_token differ from appservice.hs_token");
}

#[tokio::test]
async fn a_database_is_current_migratable_too_new_or_unreachable() {
    let slot = Synapse::shared().take_slot();
    let dir = tempfile::tempdir().unwrap();
    let latest = foyer::store::latest_version();
    // The fixture of main at 9d5910a: version 12, which serve migrates.
    let db = dir.path().join("foyer.db");
    std::fs::copy(repo_root().join("tests/fixtures/main-9d5910a.sqlite"), &db).expect("copy the fixture");
    let before = std::fs::read(&db).unwrap();
    let run = online_yaml(dir.path(), &slot.config_yaml()).await;
    run.assert("database", "ok", &format!("opens at schema version 12: foyer serve migrates it to {latest}"));
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(std::fs::read(&db).unwrap() == before, "the check changed the database");

    // Migrated by a newer Foyer.
    sqlite_exec(&db, &format!("INSERT INTO foyer_migrations (version, applied_at) VALUES ({}, 0)", latest + 1));
    let run = online_yaml(dir.path(), &slot.config_yaml()).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    let said =
        format!("newer than this Foyer knows ({latest}): a newer Foyer migrated it; run that one or a later one");
    run.assert("database", "FAIL", &said);

    // A PostgreSQL server that is not there (nothing listens on port 1).
    let yaml = slot.config_yaml().replace("sqlite://foyer.db", "postgres://foyer:secret-password@127.0.0.1:1/foyer");
    let run = online_yaml(dir.path(), &yaml).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    run.assert("database", "FAIL", "check database.url, and that the database server is running");
    assert!(!run.stdout.contains("secret-password"), "{}", run.stdout);
}

#[tokio::test]
async fn a_synapse_admin_token_that_is_not_an_admins_is_named() {
    let slot = Synapse::shared().take_slot();
    let dir = tempfile::tempdir().unwrap();
    let user = Synapse::shared().create_user("notadmin").await;
    let yaml = format!("{}synapse_admin:\n  token: {}\n", slot.config_yaml(), user.access_token);
    let run = online_yaml(dir.path(), &yaml).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    run.assert("synapse_admin", "FAIL", "is not a server admin's");
    run.assert("synapse_admin", "FAIL", "use an admin's token");

    let yaml = format!("{}synapse_admin:\n  token: {}\n", slot.config_yaml(), random_token());
    let run = online_yaml(dir.path(), &yaml).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    run.assert("synapse_admin", "FAIL", "the homeserver does not know synapse_admin.token");
}

#[tokio::test]
async fn a_listen_address_another_program_holds_is_named() {
    let slot = Synapse::shared().take_slot();
    let dir = tempfile::tempdir().unwrap();
    // Another program: it accepts connections (the kernel does) and never answers.
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", slot.port)).expect("bind the slot's port");
    let run = online_yaml(dir.path(), &slot.config_yaml()).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    run.assert("listen", "FAIL", "is in use by another program, not Foyer; stop it, or pick another appservice.listen");
    run.assert("ping", "skip", "appservice.listen is not usable");
}

#[tokio::test]
async fn a_registration_without_the_web_fans_namespace_fails_the_webchat_check() {
    let slot = Synapse::shared().take_slot();
    let dir = tempfile::tempdir().unwrap();
    // The loaded registration gives this slot `web<n>_`; a prefix no registration holds
    // is what a deployment that turned web chat on without regenerating it has.
    let yaml = slot
        .config_yaml()
        .replace(&format!("puppet_prefix: {}", slot.puppet_prefix), &format!("puppet_prefix: nobody{}_", slot.index));
    let run = online_yaml(dir.path(), &yaml).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    run.assert("webchat", "FAIL", &format!("lacks the web fans' namespace ^@nobody{}_.*:localhost$", slot.index));
    run.assert("webchat", "FAIL", "regenerate it with `foyer generate-registration`");
    run.assert("as_token", "ok", "");

    // Without webchat, no namespace is needed.
    let (head, _) = slot.config_yaml().split_once("webchat:").map(|(h, t)| (h.to_owned(), t.to_owned())).unwrap();
    let run = online_yaml(dir.path(), &head).await;
    run.assert("webchat", "ok", "webchat is not set");
}
