//! Embeds the git commit the binary was built from as `FOYER_COMMIT`, for
//! `foyer --version`, `/health/ready` and the `foyer_build_info` metric. Outside a git
//! checkout (a source tarball, a vendored copy) it is "unknown".
//!
//! Also lists `migrations/` for `src/store/schema.rs` (`$OUT_DIR/migrations.rs`), as
//! sqlx's `migrate!` reads its folder: a new version is its SQL file and nothing else, and
//! a gap, a repeated number or a version on one database only fails the build, naming
//! the file.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

/// What `git <args>` prints, trimmed, if git runs and succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

/// The `NNNN_name.sql` files of a folder, by version.
fn versions(dir: &Path) -> BTreeMap<u32, String> {
    let mut found = BTreeMap::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".sql")) else {
            continue;
        };
        let version = name.split('_').next().and_then(|v| v.parse::<u32>().ok());
        let version = version.unwrap_or_else(|| panic!("{}: a migration is named NNNN_name.sql", path.display()));
        if let Some(other) = found.insert(version, name.to_owned()) {
            panic!("{}: version {version} twice ({other}.sql and {name}.sql)", dir.display());
        }
    }
    found
}

/// `$OUT_DIR/migrations.rs`: one `Migration` per version, 1 first, with no gap.
fn list_migrations() {
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("migrations");
    let (shared, sqlite, postgres) = (versions(&dir), versions(&dir.join("sqlite")), versions(&dir.join("postgres")));
    let mut list = String::from("&[\n");
    let last = shared.keys().chain(sqlite.keys()).max().copied().unwrap_or(0);
    for version in 1..=last {
        let file = |d: &Path, name: &str| format!("include_str!({:?})", d.join(format!("{name}.sql")));
        let (name, sqlite_sql, postgres_sql) = match (
            shared.get(&version),
            sqlite.get(&version),
            postgres.get(&version),
        ) {
            (Some(name), None, None) => (name, file(&dir, name), file(&dir, name)),
            (None, Some(name), Some(other)) if name == other => {
                (name, file(&dir.join("sqlite"), name), file(&dir.join("postgres"), name))
            }
            (None, None, None) => panic!("migrations/: no version {version} (versions run 1, 2, 3, … with no gap)"),
            _ => panic!(
                "migrations/: version {version} must be one file here, or one file of the same name in both sqlite/ and postgres/"
            ),
        };
        writeln!(list, "    Migration {{ file: {name:?}, sqlite: {sqlite_sql}, postgres: {postgres_sql} }},").unwrap();
    }
    list.push(']');
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    std::fs::write(&out, list).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    for d in [dir.clone(), dir.join("sqlite"), dir.join("postgres")] {
        println!("cargo:rerun-if-changed={}", d.display());
    }
}

fn main() {
    list_migrations();
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=FOYER_COMMIT={commit}");
    // Run again when HEAD moves: a checkout changes HEAD, a commit changes the branch's
    // ref (loose, or in packed-refs). `--git-path` finds them in a worktree too, where
    // .git is a file. Only paths that exist are named: cargo reruns a script on every
    // build for a path that does not.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|r| r.starts_with("refs/")) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
