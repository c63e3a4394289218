//! The schema: one sequence of migrations for both databases, applied at start-up.
//!
//! Version N is the same schema change on SQLite and PostgreSQL, in
//! `migrations/NNNN_name.sql` where the DDL is the same and in `migrations/sqlite/` and
//! `migrations/postgres/` (same name) where it differs. `foyer_migrations` holds the
//! versions a database has applied; Foyer keeps no checksums, only the numbers.
//!
//! PostgreSQL had a numbering of its own before (its 1 was versions 1–6 in one file,
//! each later one 5 behind); such a database is renumbered, rows of `foyer_migrations`
//! only, in the migrating transaction before anything is applied.

use chrono::Utc;
use macro_rules_attribute::apply;
use sqlx::Pool;

use super::{
    StoreError,
    dialect::on_both_databases,
    rows::{Read, corrupt},
    to_millis,
};
use crate::{config::DatabaseKind, model::ReservationId};

/// One version: its file's name and its SQL on each database.
pub(super) struct Migration {
    pub(super) file: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

impl Migration {
    pub(super) fn sql(&self, kind: DatabaseKind) -> &'static str {
        match kind {
            DatabaseKind::Sqlite => self.sqlite,
            DatabaseKind::Postgres => self.postgres,
        }
    }
}

/// Every version, 1 first, each applied once in this order: `build.rs` lists
/// `migrations/` (each `NNNN_name.sql`, or the same name in `sqlite/` and `postgres/`)
/// and fails the build on a gap. Never edit a released one: databases have applied it,
/// and a fresh database must end up like an upgraded one. A change is a new file with
/// the next number.
pub(super) const MIGRATIONS: &[Migration] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// PostgreSQL's own numbering ended here, at what is now version 12.
const FORMER_POSTGRES_LATEST: i64 = 7;
/// What a former PostgreSQL version 2 or later is now, less itself.
const FORMER_POSTGRES_SHIFT: i64 = 5;
/// The versions a PostgreSQL database on the former numbering shows after renumbering
/// start here. Foyer applies all it knows in one transaction, so no PostgreSQL database on
/// this numbering stands below it: one that does is on the former one.
const ONE_SEQUENCE_SINCE: i64 = FORMER_POSTGRES_LATEST + FORMER_POSTGRES_SHIFT;

const APPLIED: &str = "SELECT version, applied_at FROM foyer_migrations ORDER BY version";
const MIGRATED: &str = "INSERT INTO foyer_migrations (version, applied_at) VALUES ($1, $2)";
const FORGET_NUMBERING: &str = "DELETE FROM foyer_migrations";

/// Why a database's schema cannot be used; nothing was changed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "its schema is at version {found}, newer than this Foyer knows ({known}): a newer Foyer migrated it; run that one or a later one"
    )]
    FromTheFuture { found: i64, known: i64 },
    #[error(
        "its applied migrations {applied:?} are neither Foyer's versions 1 to {known} nor PostgreSQL's former 1 to {FORMER_POSTGRES_LATEST}, in order: it was not migrated by Foyer, or was edited by hand"
    )]
    Unrecognised { applied: Vec<i64>, known: i64 },
}

/// Where a database stands, by the versions it has applied (ascending).
#[derive(Debug, PartialEq, Eq)]
enum Standing {
    /// On this numbering, at this version (0: nothing applied yet).
    At(i64),
    /// A PostgreSQL database on its former numbering, at this former version.
    FormerPostgres(i64),
}

/// Where a database of `kind` stands, or why it cannot be used.
fn standing(kind: DatabaseKind, applied: &[i64]) -> Result<Standing, SchemaError> {
    let known = MIGRATIONS.len() as i64;
    let Some(&found) = applied.last() else { return Ok(Standing::At(0)) };
    // First: whatever else it holds, a schema from the future is not this binary's to run on.
    if found > known {
        return Err(SchemaError::FromTheFuture { found, known });
    }
    let unrecognised = || SchemaError::Unrecognised { applied: applied.to_vec(), known };
    if !applied.iter().copied().eq(1..=found) {
        return Err(unrecognised());
    }
    match kind {
        DatabaseKind::Postgres if found <= FORMER_POSTGRES_LATEST => Ok(Standing::FormerPostgres(found)),
        DatabaseKind::Postgres if found < ONE_SEQUENCE_SINCE => Err(unrecognised()),
        _ => Ok(Standing::At(found)),
    }
}

/// A former PostgreSQL numbering's `(version, applied_at)` rows on this one: 1 was
/// versions 1–6, applied together; each later version is 5 behind.
fn renumbered(former: &[(i64, i64)]) -> Vec<(i64, i64)> {
    former
        .iter()
        .flat_map(|&(version, at)| match version {
            1 => (1..=1 + FORMER_POSTGRES_SHIFT).map(|v| (v, at)).collect::<Vec<_>>(),
            _ => vec![(version + FORMER_POSTGRES_SHIFT, at)],
        })
        .collect()
}

/// Applies the migrations this database lacks, in one transaction (on PostgreSQL under an
/// advisory lock: instances starting together migrate one after the other), renumbering a
/// PostgreSQL database on the former numbering first. Refuses, changing nothing, a
/// database that a newer Foyer migrated or whose versions match neither numbering.
#[apply(on_both_databases!)]
pub(super) async fn migrate(pool: &Pool<D>) -> Result<(), StoreError> {
    let open_err = |e: sqlx::Error| StoreError::Open(format!("migrating: {e}"));
    let mut tx = pool.begin_with(D::BEGIN_WRITE).await.map_err(open_err)?;
    if let Some(first) = D::BEFORE_MIGRATING {
        sqlx::raw_sql(first).execute(&mut *tx).await.map_err(open_err)?;
    }
    sqlx::raw_sql(D::MIGRATIONS_TABLE).execute(&mut *tx).await.map_err(open_err)?;
    let rows = sqlx::query(APPLIED).fetch_all(&mut *tx).await.map_err(open_err)?;
    let applied = rows
        .iter()
        .map(|row| Ok((row.int("version")?, row.int("applied_at")?)))
        .collect::<Result<Vec<_>, StoreError>>()
        .map_err(|e| StoreError::Open(format!("migrating: reading foyer_migrations: {e}")))?;
    let versions: Vec<i64> = applied.iter().map(|&(version, _)| version).collect();
    let current = match standing(D::KIND, &versions)? {
        Standing::At(version) => version,
        Standing::FormerPostgres(former) => {
            sqlx::query(FORGET_NUMBERING).execute(&mut *tx).await.map_err(open_err)?;
            for (version, at) in renumbered(&applied) {
                sqlx::query(MIGRATED).bind(version).bind(at).execute(&mut *tx).await.map_err(open_err)?;
            }
            let version = former + FORMER_POSTGRES_SHIFT;
            tracing::info!(
                former,
                version,
                "renumbered PostgreSQL's applied migrations to the sequence both databases share"
            );
            version
        }
    };
    for (version, migration) in (1i64..).zip(MIGRATIONS).filter(|(v, _)| *v > current) {
        sqlx::raw_sql(migration.sql(D::KIND)).execute(&mut *tx).await.map_err(open_err)?;
        sqlx::query(MIGRATED).bind(version).bind(to_millis(Utc::now())).execute(&mut *tx).await.map_err(open_err)?;
        tracing::info!(version, file = migration.file, "applied database migration");
    }
    tx.commit().await.map_err(open_err)
}

/// Where a database's schema stands against this binary, read without changing it (for
/// `foyer check-config --online`).
#[derive(Debug, PartialEq, Eq)]
pub enum SchemaState {
    /// No Foyer schema yet (a new database, or a SQLite file not created yet).
    Empty,
    /// At an older version: `foyer serve` migrates it.
    Behind { at: i64 },
    /// At this binary's version.
    Current,
}

/// The newest version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// A read-only connection to the configured database, for `foyer check-config --online`.
enum ReadOnly {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// The URL may hold a password: errors name the database's kind, not its URL.
fn open_err(e: sqlx::Error) -> StoreError {
    StoreError::Open(e.to_string())
}

impl ReadOnly {
    /// The connection; `None` for a SQLite file that does not exist (it is not created).
    async fn open(config: &crate::config::DatabaseConfig) -> Result<Option<Self>, StoreError> {
        use sqlx::Connection as _;
        match config.kind {
            DatabaseKind::Sqlite => {
                use std::str::FromStr as _;
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(config.url.expose())
                    .map_err(open_err)?
                    .read_only(true)
                    .create_if_missing(false);
                if !options.get_filename().exists() {
                    return Ok(None);
                }
                Ok(Some(Self::Sqlite(sqlx::SqliteConnection::connect_with(&options).await.map_err(open_err)?)))
            }
            DatabaseKind::Postgres => {
                Ok(Some(Self::Postgres(sqlx::PgConnection::connect(config.url.expose()).await.map_err(open_err)?)))
            }
        }
    }
}

/// Reads which versions the database has applied, in a read-only connection (SQLite: a
/// file that does not exist is not created), and says where it stands.
pub async fn inspect(config: &crate::config::DatabaseConfig) -> Result<SchemaState, StoreError> {
    let versions: Vec<i64> = match ReadOnly::open(config).await? {
        None => return Ok(SchemaState::Empty),
        Some(ReadOnly::Sqlite(mut db)) => {
            let table: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'foyer_migrations'",
            )
            .fetch_one(&mut db)
            .await
            .map_err(open_err)?;
            if table == 0 {
                return Ok(SchemaState::Empty);
            }
            sqlx::query_scalar(APPLIED_VERSIONS).fetch_all(&mut db).await.map_err(open_err)?
        }
        Some(ReadOnly::Postgres(mut db)) => {
            let table: bool = sqlx::query_scalar("SELECT to_regclass('foyer_migrations') IS NOT NULL")
                .fetch_one(&mut db)
                .await
                .map_err(open_err)?;
            if !table {
                return Ok(SchemaState::Empty);
            }
            sqlx::query_scalar(APPLIED_VERSIONS).fetch_all(&mut db).await.map_err(open_err)?
        }
    };
    Ok(match standing(config.kind, &versions)? {
        Standing::At(0) => SchemaState::Empty,
        Standing::At(at) if at == latest_version() => SchemaState::Current,
        Standing::At(at) => SchemaState::Behind { at },
        Standing::FormerPostgres(former) => SchemaState::Behind { at: former + FORMER_POSTGRES_SHIFT },
    })
}

/// `(now)`: the reservation to start after now, neither cancelled nor archived, whose own
/// `chat.auto_join` is not `local` (read while `rooms.auto_join` is off), with the most
/// active tickets (counted as `tickets.active` is), and that count.
const LARGEST_SHOW_TO_COME: &str = "SELECT r.reservation_id, COUNT(*) AS active FROM reservations r
    JOIN tickets t ON t.reservation_id = r.reservation_id
    LEFT JOIN reservation_signals s ON s.reservation_id = r.reservation_id
    LEFT JOIN lifecycle l ON l.reservation_id = r.reservation_id
    WHERE r.starts_at > $1 AND s.cancelled_at IS NULL AND l.archived_at IS NULL
        AND (r.auto_join IS NULL OR r.auto_join <> 'local')
        AND t.revoked_at IS NULL AND (t.user_id IS NOT NULL OR t.claim_hash IS NOT NULL)
    GROUP BY r.reservation_id ORDER BY active DESC, r.reservation_id LIMIT 1";

/// The show to come whose holders join by themselves (with `rooms.auto_join` off) with
/// the most active tickets, and how many (what the homeserver's join limit means for
/// it, `foyer check-config --online`), read in a read-only
/// connection from a database at this binary's schema ([`SchemaState::Current`]).
/// `None` when no show to come has a ticket.
pub async fn largest_show_to_come(
    config: &crate::config::DatabaseConfig, now: chrono::DateTime<Utc>,
) -> Result<Option<(ReservationId, u64)>, StoreError> {
    fn read(row: &(impl Read + ?Sized)) -> Result<(ReservationId, u64), StoreError> {
        let id = ReservationId::parse(&row.text("reservation_id")?).map_err(|e| corrupt("reservation_id", e))?;
        Ok((id, row.int("active")? as u64))
    }
    let now = to_millis(now);
    // The same statement on either connection (the query's type names its database).
    match ReadOnly::open(config).await? {
        None => Ok(None),
        Some(ReadOnly::Sqlite(mut db)) => {
            let row = sqlx::query(LARGEST_SHOW_TO_COME).bind(now).fetch_optional(&mut db).await?;
            row.as_ref().map(read).transpose()
        }
        Some(ReadOnly::Postgres(mut db)) => {
            let row = sqlx::query(LARGEST_SHOW_TO_COME).bind(now).fetch_optional(&mut db).await?;
            row.as_ref().map(read).transpose()
        }
    }
}

const APPLIED_VERSIONS: &str = "SELECT version FROM foyer_migrations ORDER BY version";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_migration_file_is_numbered_as_its_version() {
        for (version, migration) in (1..).zip(MIGRATIONS) {
            assert!(
                migration.file.starts_with(&format!("{version:04}_")),
                "{} is applied as version {version}",
                migration.file
            );
        }
    }

    /// Every file in migrations/ is in the sequence, once: a file added but not listed
    /// would never run, and one shared file beside a per-dialect one of its name would
    /// leave it unclear which runs.
    #[test]
    fn every_migration_file_is_listed_once() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut found = Vec::new();
        for dir in [root.to_owned(), format!("{root}/sqlite"), format!("{root}/postgres")] {
            for entry in std::fs::read_dir(&dir).expect("migrations/") {
                let name = entry.expect("entry").file_name().into_string().expect("utf-8");
                if let Some(stem) = name.strip_suffix(".sql") {
                    found.push((dir.clone(), stem.to_owned()));
                }
            }
        }
        for migration in MIGRATIONS {
            let shared = found.iter().any(|(dir, f)| dir == root && f == migration.file);
            let sqlite = found.iter().any(|(dir, f)| dir.ends_with("/sqlite") && f == migration.file);
            let postgres = found.iter().any(|(dir, f)| dir.ends_with("/postgres") && f == migration.file);
            assert!(
                shared != (sqlite && postgres) && sqlite == postgres,
                "{}: shared {shared}, sqlite {sqlite}, postgres {postgres}",
                migration.file
            );
        }
        for (dir, file) in &found {
            assert!(MIGRATIONS.iter().any(|m| m.file == file), "{dir}/{file}.sql is not in MIGRATIONS");
        }
    }

    #[test]
    fn where_a_database_stands() {
        use DatabaseKind::{Postgres, Sqlite};
        let known = MIGRATIONS.len() as i64;
        let upto = |n: i64| (1..=n).collect::<Vec<_>>();
        for kind in [Sqlite, Postgres] {
            assert_eq!(standing(kind, &[]), Ok(Standing::At(0)), "{kind:?}: fresh");
            assert_eq!(standing(kind, &upto(known)), Ok(Standing::At(known)), "{kind:?}: up to date");
            let future = upto(known + 1);
            assert_eq!(standing(kind, &future), Err(SchemaError::FromTheFuture { found: known + 1, known }));
            for gap in [vec![1, 2, 4], vec![2, 3], vec![0, 1]] {
                assert_eq!(standing(kind, &gap), Err(SchemaError::Unrecognised { applied: gap.clone(), known }));
            }
        }
        // SQLite's numbering has not changed: every prefix is where it stands.
        for n in 1..=known {
            assert_eq!(standing(Sqlite, &upto(n)), Ok(Standing::At(n)));
        }
        // PostgreSQL up to 7 is the former numbering; 8 to 11 no Foyer ever left.
        for n in 1..=7 {
            assert_eq!(standing(Postgres, &upto(n)), Ok(Standing::FormerPostgres(n)));
        }
        for n in 8..=11 {
            assert_eq!(standing(Postgres, &upto(n)), Err(SchemaError::Unrecognised { applied: upto(n), known }));
        }
    }

    #[test]
    fn the_former_postgres_numbering_maps_onto_the_shared_one() {
        // The former PostgreSQL files, in order, and the versions they were on SQLite.
        let former = [(1, 100), (2, 200), (3, 300), (4, 400), (5, 500), (6, 600), (7, 700)];
        let expected: Vec<_> = (1..=6).map(|v| (v, 100)).chain((7..=12).map(|v| (v, (v - 5) * 100))).collect();
        assert_eq!(renumbered(&former), expected);
        assert_eq!(renumbered(&former[..1]), (1..=6).map(|v| (v, 100)).collect::<Vec<_>>());
        // What the former PostgreSQL files were is what these versions are now.
        let names =
            ["next_wake_index", "admin_actions", "admin_inbox", "room_name", "holder_invites", "status_sessions"];
        for (former, name) in (2..).zip(names) {
            let now = &MIGRATIONS[(former + FORMER_POSTGRES_SHIFT - 1) as usize];
            assert!(now.file.ends_with(name), "former PostgreSQL {former} ({name}) is now {}", now.file);
        }
    }
}
