//! `foyer migrate-store`: copies a SQLite deployment's state into an empty PostgreSQL
//! database, table by table in one transaction, for the day one machine is not enough.

use sqlx::{Column as _, Row as _};

use super::{Outbound, PostgresStore, SqliteStore, StoreError};
use crate::config::DatabaseConfig;

/// Tables in an order that respects how rows refer to each other. `status_sessions` and
/// `webchat_sessions` are left out on purpose: they hold the live logins, so leaving them
/// out logs everyone out of the status page and the web chat with the move (a new login
/// is all it costs), which is the safe side; copying them would gain nothing worth a
/// table of bearers in transit. The web chat's log goes with its heads, so that no seq
/// is handed out twice.
const TABLES: &[&str] = &[
    "webhook_receipts",
    "reservations",
    "reservation_signals",
    "tickets",
    "lifecycle",
    "room_invites",
    "room_members",
    "seen_events",
    "spaces",
    "admin_inbox",
    "direct_chats",
    "staff_chats",
    "outbox",
    "transcripts",
    "transcript_lines",
    "webchat_log_heads",
    "webchat_log",
    "webchat_users",
    "webchat_bans",
    "moderation_record",
    "chat_posts",
    "chat_timeouts",
    "chat_redactions",
    "stream_edges",
    "followers",
    "announcements",
    "archive_takedowns",
    "archive_anonymous",
];

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the target database already holds Foyer data ({0} reservations); migrate into an empty database")]
    TargetNotEmpty(i64),
    #[error("copying {table}: {message}")]
    Copy { table: &'static str, message: String },
}

/// Copies every table; returns (table, rows) per table. Leases are not carried over.
pub async fn sqlite_to_postgres(
    from: &DatabaseConfig, to: &DatabaseConfig,
) -> Result<Vec<(&'static str, u64)>, MigrateError> {
    let source = SqliteStore::open(from, Outbound::Skip).await?;
    let target = PostgresStore::open(to, Outbound::Skip).await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reservations")
        .fetch_one(target.pool())
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    if existing > 0 {
        return Err(MigrateError::TargetNotEmpty(existing));
    }
    let mut tx = target.pool().begin().await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let mut copied = Vec::new();
    for &table in TABLES {
        let fail = |e: sqlx::Error| MigrateError::Copy { table, message: e.to_string() };
        let types: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_name = $1",
        )
        .bind(table)
        .fetch_all(&mut *tx)
        .await
        .map_err(fail)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(source.pool())
            .await
            .map_err(fail)?;
        for row in &rows {
            let columns: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
            let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
            let sql = format!("INSERT INTO {table} ({}) VALUES ({})", columns.join(", "), placeholders.join(", "));
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (i, column) in columns.iter().enumerate() {
                let numeric = types.iter().any(|(name, kind)| name == column && kind == "bigint");
                insert = if numeric {
                    insert.bind(row.try_get::<Option<i64>, _>(i).map_err(fail)?)
                } else {
                    insert.bind(row.try_get::<Option<String>, _>(i).map_err(fail)?)
                };
            }
            insert.execute(&mut *tx).await.map_err(fail)?;
        }
        copied.push((table, rows.len() as u64));
    }
    sqlx::query("UPDATE lifecycle SET locked_until = NULL, locked_by = NULL")
        .execute(&mut *tx)
        .await
        .map_err(|e| MigrateError::Copy { table: "lifecycle", message: e.to_string() })?;
    // The inbox's order was copied with its rows; new rows come after them.
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('admin_inbox', 'seq'), COALESCE(MAX(seq), 0) + 1, false) FROM admin_inbox",
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| MigrateError::Copy { table: "admin_inbox", message: e.to_string() })?;
    // The same for the outbox, whose order is the order events are sent in; a sender's
    // lease is the old instance's, like the lifecycle's.
    sqlx::query("UPDATE outbox SET locked_until = NULL, locked_by = NULL")
        .execute(&mut *tx)
        .await
        .map_err(|e| MigrateError::Copy { table: "outbox", message: e.to_string() })?;
    sqlx::query("SELECT setval(pg_get_serial_sequence('outbox', 'seq'), COALESCE(MAX(seq), 0) + 1, false) FROM outbox")
        .execute(&mut *tx)
        .await
        .map_err(|e| MigrateError::Copy { table: "outbox", message: e.to_string() })?;
    tx.commit().await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(copied)
}
