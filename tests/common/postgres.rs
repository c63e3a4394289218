//! A PostgreSQL server for the test binary and a fresh database per test.

use std::{
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::repo_root;

/// A PostgreSQL server for this test binary (`scripts/postgres`), stopped when the test
/// process exits; [`fresh_postgres_database`] gives each test its own database.
struct Postgres {
    url: String,
    _dir: tempfile::TempDir,
    _watcher: Mutex<(Child, ChildStdin)>,
}

static POSTGRES: OnceLock<Postgres> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

fn postgres() -> &'static Postgres {
    POSTGRES.get_or_init(|| {
        // In /tmp, readable by the dedicated user PostgreSQL runs as.
        let dir = tempfile::Builder::new().prefix("foyer-pg-").tempdir_in("/tmp").expect("tempdir");
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let script = repo_root().join("scripts/postgres");
        let out = Command::new("bash").arg(&script).arg("start").arg(dir.path()).output().expect("scripts/postgres");
        assert!(out.status.success(), "scripts/postgres start: {}", String::from_utf8_lossy(&out.stderr));
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let mut watcher = Command::new("sh")
            .arg("-c")
            .arg("cat >/dev/null; bash \"$0\" stop \"$1\"; rm -rf \"$1\"")
            .arg(&script)
            .arg(dir.path())
            .stdin(Stdio::piped())
            .spawn()
            .expect("postgres watcher");
        let stdin = watcher.stdin.take().expect("watcher stdin");
        Postgres { url, _dir: dir, _watcher: Mutex::new((watcher, stdin)) }
    })
}

/// A new, empty PostgreSQL database; returns its URL.
pub async fn fresh_postgres_database() -> String {
    let server = postgres();
    let name = format!("foyer_test_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::SeqCst));
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server.url).await.expect("connect to postgres");
    sqlx::Executor::execute(&mut admin, sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    server.url.rsplit_once('/').map(|(base, _)| format!("{base}/{name}")).expect("url")
}
