//! What this binary is: its version and the git commit it was built from (`build.rs`),
//! shown by `foyer --version`, `/health/ready` and the `foyer_build_info` metric.

/// The crate's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The short git commit the binary was built from, or "unknown" outside a git checkout.
pub const COMMIT: &str = env!("FOYER_COMMIT");
/// `foyer --version`'s text after the name: `0.1.0 (95e7ffa)`.
pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("FOYER_COMMIT"), ")");
