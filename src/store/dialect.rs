//! What differs between SQLite and PostgreSQL ([`Dialect`], implemented in `sqlite.rs` and
//! `postgres.rs`), and the one store generic over it ([`SqlStore`]), which the files by
//! aggregate implement.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use macro_rules_attribute::apply;
use sqlx::{Database, IntoArguments, Pool, query::Query};

use super::{
    Claim, Outbound, Outcome, Receipt, ReservationRecord, StoreError, rows::Read, to_millis, webchat::LogAppended,
};
use crate::config::DatabaseKind;
use crate::model::{ReservationId, WebhookEvent};

/// What one database does its own way.
#[async_trait]
pub trait Dialect: Database<Row: Read, Arguments: IntoArguments<Self>> {
    /// What the store holds besides its pool: the group-commit writers' queue, and on
    /// SQLite the connections it reads on in place.
    type Own: Send + Sync;
    /// Opens a write transaction.
    const BEGIN_WRITE: &'static str;
    /// Which files of `schema::MIGRATIONS` it applies.
    const KIND: DatabaseKind;
    /// Creates the table of applied migrations if there is none.
    const MIGRATIONS_TABLE: &'static str;
    /// Runs first in the migrating transaction, if anything must.
    const BEFORE_MIGRATING: Option<&'static str>;
    /// Appends to `reminders_sent`'s JSON array: `(seconds, reservation_id)`.
    const REMINDER_SENT: &'static str;
    /// Held until the transaction ends, so that two writes of one stream key cannot both
    /// find it free (`$1`, its hash); `None` where writes are one at a time already.
    const LOCK_STREAM_KEY: Option<&'static str>;
    /// [`sql::outbox_claim`] with the dialect's row locking.
    const OUTBOX_CLAIM: &'static str;
    /// Run in a room log append's transaction, bound to the reservation id, to tell the
    /// other instances of it when it commits; `None` where there are no others to tell.
    const TELL_WEB_LOG_APPEND: Option<&'static str>;

    fn rows_affected(done: &Self::QueryResult) -> u64;

    /// The records among `ids`, in one statement however many there are.
    fn records_by_id(ids: &[ReservationId]) -> Result<Query<'static, Self, Self::Arguments>, StoreError>;

    async fn record_webhook(
        store: &SqlStore<Self>, receipt: &Receipt<'_>, event: &WebhookEvent, windows: super::Windows,
    ) -> Result<Outcome, StoreError>;

    async fn claim_due(store: &SqlStore<Self>, due: Due<'_>) -> Result<Vec<Claim>, StoreError>;

    /// The appends to the room log the database tells of ([`super::WebchatStore::web_log_appends`]).
    fn web_log_appends(store: &SqlStore<Self>) -> Option<tokio::sync::mpsc::Receiver<LogAppended>>;

    /// One reservation's record (the read API's `GET`, the lifecycle's look at one).
    async fn reservation(store: &SqlStore<Self>, id: &ReservationId) -> Result<Option<ReservationRecord>, StoreError>;
}

/// What [`super::LeaseStore::claim_due`] leases: up to `limit` reservations due at `now`, to `owner`
/// until `until` (both unix milliseconds).
pub struct Due<'a> {
    pub now: i64,
    pub until: i64,
    pub limit: i64,
    pub owner: &'a str,
}

/// A store on database `D` (see `SqliteStore` and `PostgresStore`).
pub struct SqlStore<D: Dialect> {
    pub(super) pool: Pool<D>,
    pub(super) own: D::Own,
    pub(super) outbox: Outbound,
}

/// Writes an impl block (`impl Trait for SqlStore<D> { .. }`, `impl SqlStore<D> { .. }`)
/// or an `async fn` once for both databases, put on it as `#[apply(on_both_databases!)]`
/// (`macro_rules_attribute`, so that rustfmt still formats the item): generic over the
/// dialect `D`, under the bounds that say what the code binds (the few types the schema
/// uses). It is a macro
/// because Rust implies only supertrait bounds: these have other subjects (`i64`,
/// `&mut D::Connection`), so a trait or alias holding them would not carry them, and
/// every generic impl would have to write them out again.
macro_rules! on_both_databases {
    ($(#[$attr:meta])* impl $role:ident for $ty:ty { $($body:tt)* }) => {
        $crate::store::dialect::on_both_databases!(@bounded
            [$(#[$attr])* impl<D: $crate::store::dialect::Dialect> $role for $ty] { $($body)* });
    };
    ($(#[$attr:meta])* impl $ty:ty { $($body:tt)* }) => {
        $crate::store::dialect::on_both_databases!(@bounded
            [$(#[$attr])* impl<D: $crate::store::dialect::Dialect> $ty] { $($body)* });
    };
    ($(#[$attr:meta])* $vis:vis async fn $name:ident ($($args:tt)*) -> $ret:ty { $($body:tt)* }) => {
        $crate::store::dialect::on_both_databases!(@bounded
            [$(#[$attr])* $vis async fn $name<D: $crate::store::dialect::Dialect>($($args)*) -> $ret]
            { $($body)* });
    };
    (@bounded [$($head:tt)*] { $($body:tt)* }) => {
        $($head)*
        where
            for<'c> &'c mut D::Connection: ::sqlx::Executor<'c, Database = D>,
            for<'q> i64: ::sqlx::Encode<'q, D> + ::sqlx::Type<D>,
            for<'q> Option<i64>: ::sqlx::Encode<'q, D>,
            for<'s> &'s str: ::sqlx::Encode<'s, D> + ::sqlx::Type<D>,
            for<'s> Option<&'s str>: ::sqlx::Encode<'s, D>,
        {
            $($body)*
        }
    };
}
pub(super) use on_both_databases;

#[apply(on_both_databases!)]
impl SqlStore<D> {
    pub(crate) fn pool(&self) -> &Pool<D> {
        &self.pool
    }

    /// Whether `query` bound to `(text, time)` finds a row.
    pub(super) async fn exists(
        &self, query: &'static str, text: &str, at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(query).bind(text);
        let query = match at {
            Some(at) => query.bind(to_millis(at)),
            None => query,
        };
        Ok(query.fetch_optional(&self.pool).await?.is_some())
    }
}
