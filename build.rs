//! Embeds the git commit the binary was built from as `FOYER_COMMIT`, for
//! `foyer --version`, `/health/ready` and the `foyer_build_info` metric. Outside a git
//! checkout (a source tarball, a vendored copy) it is "unknown".

use std::process::Command;

/// What `git <args>` prints, trimmed, if git runs and succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

fn main() {
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
