//! The command line: `generate-registration`, `example-config`, `check-config`, `serve`,
//! `migrate-store`.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};

use crate::{
    config::{Config, ConfigError, Placeholders, format_duration},
    registration,
    startup::{self, ServeError},
    store::StoreError,
};

/// Exit codes users can script against (docs/operating.md, "Exit codes").
pub const EXIT_CONFIG: u8 = 1;
pub const EXIT_HOMESERVER: u8 = 2;
pub const EXIT_OTHER: u8 = 3;

#[derive(Debug, Parser)]
#[command(name = "foyer", version = crate::build_info::LONG_VERSION, about = "A Matrix chat room for every scheduled live stream")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the appservice registration file the homeserver loads.
    GenerateRegistration {
        #[arg(short, long, value_name = "CONFIG")]
        config: PathBuf,
        #[arg(short, long, value_name = "FILE", default_value = "registration.yaml")]
        output: PathBuf,
        /// Overwrite the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the documented example config (config.example.yaml) to start from.
    ExampleConfig,
    /// Validate the config and print every problem with its key path.
    CheckConfig {
        #[arg(short, long, value_name = "CONFIG")]
        config: PathBuf,
        /// Also check the live deployment: the homeserver, the tokens, the ping, the
        /// database and the listen address, one line each with what to fix.
        #[arg(long)]
        online: bool,
    },
    /// Run the service until SIGTERM or SIGINT.
    Serve {
        #[arg(short, long, value_name = "CONFIG")]
        config: PathBuf,
    },
    /// Copy a stopped SQLite deployment's state into an empty PostgreSQL database.
    MigrateStore {
        /// The SQLite database, e.g. sqlite:///var/lib/foyer/foyer.db
        #[arg(long, value_name = "URL")]
        from: String,
        /// The PostgreSQL database, e.g. postgres://foyer@db/foyer (or FOYER_MIGRATE_TO,
        /// which keeps a password out of the process list).
        #[arg(long, value_name = "URL", env = "FOYER_MIGRATE_TO", hide_env_values = true)]
        to: String,
    },
}

pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EXIT_CONFIG) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        Command::GenerateRegistration { config, output, force } => generate_registration(&config, &output, force),
        Command::ExampleConfig => example_config(),
        Command::CheckConfig { config, online } => check_config(&config, online),
        Command::Serve { config } => serve(&config),
        Command::MigrateStore { from, to } => migrate_store(&from, &to),
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("foyer: {message}");
    ExitCode::from(code)
}

/// Prints a config error: one line, and for an invalid config one line per problem.
fn config_failure(error: &ConfigError) -> ExitCode {
    eprintln!("foyer: {error}");
    if let ConfigError::Invalid { problems, .. } = error {
        for problem in problems {
            eprintln!("  {problem}");
        }
    }
    ExitCode::from(EXIT_CONFIG)
}

fn generate_registration(config_path: &Path, output: &Path, force: bool) -> ExitCode {
    let config = match Config::load(config_path, Placeholders::Allow) {
        Ok(c) => c,
        Err(e) => return config_failure(&e),
    };
    let text = registration::render(&config);
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(output) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return fail(EXIT_CONFIG, format!("{} already exists; pass --force to overwrite it", output.display()));
        }
        Err(e) => {
            return fail(EXIT_OTHER, format!("cannot write {}: {e}", output.display()));
        }
    };
    // An existing file keeps its old mode on truncate; the tokens need 0600 either way.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
    }
    if let Err(e) = file.write_all(text.as_bytes()) {
        return fail(EXIT_OTHER, format!("cannot write {}: {e}", output.display()));
    }
    println!(
        "wrote {} for appservice {:?} (bot {}, aliases {}); add it to the homeserver's app_service_config_files and restart it",
        output.display(),
        config.appservice.id,
        config.bot_user_id(),
        registration::alias_regex(&config),
    );
    ExitCode::SUCCESS
}

/// config.example.yaml as it was when the binary was built: an installed binary has
/// no repository beside it to copy the file from.
pub const EXAMPLE_CONFIG: &str = include_str!("../config.example.yaml");

fn example_config() -> ExitCode {
    print!("{EXAMPLE_CONFIG}");
    ExitCode::SUCCESS
}

fn check_config(config_path: &Path, online: bool) -> ExitCode {
    let config = match Config::load(config_path, Placeholders::Refuse) {
        Ok(c) => c,
        Err(e) => return config_failure(&e),
    };
    let rooms = &config.rooms;
    println!("{} is valid", config_path.display());
    println!("  homeserver  {} at {}", config.homeserver.server_name, config.homeserver.url);
    println!(
        "  appservice  {:?}, bot {}, listening on {}, reached at {}",
        config.appservice.id,
        config.bot_user_id(),
        config.appservice.listen,
        config.appservice.url
    );
    if let Some(own) = &config.appservice.homeserver_listener {
        println!(
            "  homeserver API on its own listener {}, reached at {} (the registration's url)",
            own.listen, own.url
        );
    }
    println!(
        "  rooms       {}: open {} before the start, archive {} after the end ({}, join rule {})",
        config.alias_pattern(),
        format_duration(rooms.open_before),
        format_duration(rooms.close_after),
        rooms.archive_mode.as_str(),
        rooms.join_rule.as_str()
    );
    if rooms.transcript {
        println!(
            "  transcripts on: kept {}, the archive waits at most {} for one",
            format_duration(rooms.transcript_retention),
            format_duration(rooms.transcript_wait)
        );
    } else {
        println!("  transcripts off (a reservation's chat.transcript: true saves its chat)");
    }
    println!("  database    {}", config.database_display());
    println!(
        "  webhooks    {} secret(s), tolerance {}",
        config.webhooks.secrets.len(),
        format_duration(config.webhooks.tolerance)
    );
    if let Some(platform) = &config.platform {
        // The URL may carry a receiver's token in its query: only where it goes is shown.
        let url = &platform.webhook_url;
        println!("  platform    events to {}{}", url.origin().ascii_serialization(), url.path());
    }
    for (key, source) in &config.secret_sources {
        println!("  {key} from {source}");
    }
    // Warnings do not fail the check: the config works, but leaves a door open.
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    if online { check_online(&config) } else { ExitCode::SUCCESS }
}

/// The online checks: exit 0 only when every one passed.
fn check_online(config: &Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(EXIT_OTHER, format!("cannot start the async runtime: {e}")),
    };
    let crate::online::Report { checks, advice } = runtime.block_on(crate::online::check(config));
    println!("online checks:");
    for check in &checks {
        println!("{check}");
    }
    // Advice fails nothing: it is not counted among the checks.
    for note in &advice {
        println!("{note}");
    }
    let failed = checks.iter().filter(|c| !matches!(c.verdict, crate::online::Verdict::Pass(_))).count();
    if failed == 0 {
        println!("all {} online checks passed", checks.len());
        ExitCode::SUCCESS
    } else {
        fail(EXIT_CONFIG, format!("{failed} of {} online checks did not pass; see above", checks.len()))
    }
}

fn migrate_store(from: &str, to: &str) -> ExitCode {
    use crate::{
        config::{DatabaseConfig, DatabaseKind},
        secret::Secret,
        store::migrate::{MigrateError, sqlite_to_postgres},
    };
    if !from.starts_with("sqlite:") || !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        return fail(EXIT_CONFIG, "--from must be a sqlite:// URL and --to a postgres:// URL");
    }
    let config = |url: &str, kind| DatabaseConfig {
        url: Secret::new(url),
        kind,
        max_connections: Some(4),
        acquire_timeout: std::time::Duration::from_secs(30),
    };
    let (source, target) = (config(from, DatabaseKind::Sqlite), config(to, DatabaseKind::Postgres));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(EXIT_OTHER, format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(sqlite_to_postgres(&source, &target)) {
        Ok(copied) => {
            for (table, rows) in copied {
                println!("  {table}: {rows} rows");
            }
            println!("copied {from} into PostgreSQL; point database.url at it and start Foyer");
            ExitCode::SUCCESS
        }
        Err(e @ MigrateError::TargetNotEmpty(_)) => fail(EXIT_CONFIG, e),
        Err(e) => fail(EXIT_OTHER, e),
    }
}

fn serve(config_path: &Path) -> ExitCode {
    let config = match Config::load(config_path, Placeholders::Refuse) {
        Ok(c) => c,
        Err(e) => return config_failure(&e),
    };
    crate::logging::init(config.logging.format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(EXIT_OTHER, format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(startup::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ ServeError::Handshake(_)) => fail(EXIT_HOMESERVER, e),
        Err(e @ ServeError::Limits(_)) => fail(EXIT_CONFIG, e),
        // A database this binary must not run on (say, after a downgrade): the admin
        // picks the right binary or database; retrying cannot help.
        Err(e @ ServeError::Store(StoreError::Schema(_))) => fail(EXIT_CONFIG, e),
        Err(e) => fail(EXIT_OTHER, e),
    }
}
