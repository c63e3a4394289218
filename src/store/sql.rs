//! The statements that several aggregates share. Every statement is written once for
//! SQLite and PostgreSQL with `$N` placeholders (sqlx's SQLite driver binds `$N` too,
//! reordered and repeated), in the file of the aggregate it belongs to; what differs per
//! dialect is in `sqlite.rs` and `postgres.rs`. Times are unix milliseconds.

/// New facts: due at `$2`, and the version bump tells a worker holding a lease that what
/// it planned from is outdated: `(reservation_id, at)`.
pub(super) const FACTS_ARRIVED: &str =
    "INSERT INTO lifecycle (reservation_id, next_due_at, facts_version) VALUES ($1, $2, 1)
    ON CONFLICT (reservation_id) DO UPDATE SET
        next_due_at = excluded.next_due_at, facts_version = lifecycle.facts_version + 1";
pub(super) const SETTING: &str = "SELECT value FROM foyer_settings WHERE name = $1";
/// `(name, value)`.
pub(super) const SET_SETTING: &str = "INSERT INTO foyer_settings (name, value) VALUES ($1, $2)
    ON CONFLICT (name) DO UPDATE SET value = excluded.value";
