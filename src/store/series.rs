//! Recurring series (docs/series.md): the series row, its occurrences as
//! reservations written as `reservation.created` writes one, and what an upsert or a
//! cancellation does to those already stored. Expanding is `model::series`'s.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use macro_rules_attribute::apply;

use super::{
    Outbound, Outcome, StoreError, Windows,
    dialect::{SqlStore, on_both_databases},
    from_millis,
    intake::{self, Sqlx, Writes},
    rows::{Read, parsed},
    to_millis,
};
use crate::model::{Expansion, OccurrenceRecord, ReservationId, Series, SeriesId, SeriesRecord, SeriesUpsert};
use crate::outbox::OutboundEvent;

/// `(series_id)`: its stored revision and cancellation.
const SERIES_STORED: &str = "SELECT revision, cancelled_at FROM series WHERE series_id = $1";
/// `(series_id, revision, definition, at)`: the series as last sent, one generation on.
const UPSERT_SERIES: &str = "INSERT INTO series (series_id, revision, definition, generation, updated_at)
    VALUES ($1, $2, $3, 1, $4)
    ON CONFLICT (series_id) DO UPDATE SET revision = COALESCE(excluded.revision, series.revision),
        definition = excluded.definition, generation = series.generation + 1, updated_at = excluded.updated_at";
const GENERATION: &str = "SELECT generation FROM series WHERE series_id = $1";
/// `(series_id, at, reason)`: the first cancellation counts; before any upsert too.
const CANCEL_SERIES: &str = "INSERT INTO series (series_id, generation, cancelled_at, cancel_reason, updated_at)
    VALUES ($1, 0, $2, $3, $2)
    ON CONFLICT (series_id) DO UPDATE SET
        cancelled_at = COALESCE(series.cancelled_at, excluded.cancelled_at),
        cancel_reason = COALESCE(series.cancel_reason, excluded.cancel_reason)";
/// `(reservation_id, series_id, original_start, generation)`: changes a row only when new.
const ADD_OCCURRENCE: &str = "INSERT INTO series_occurrences (reservation_id, series_id, original_start, generation)
    VALUES ($1, $2, $3, $4) ON CONFLICT (reservation_id) DO NOTHING";
/// `(reservation_id, generation)`: produced again by this upsert.
const SEE_OCCURRENCE: &str = "UPDATE series_occurrences SET generation = $2 WHERE reservation_id = $1";

/// The occurrences of series `$1` taken out by generation `$2` (not produced by it, whose
/// original start is at most `$3`, where the expansion was complete) that have not ended
/// by `$4` and are not cancelled yet. Ended ones are left alone (docs/series.md).
macro_rules! taken_out {
    () => {
        "SELECT o.reservation_id FROM series_occurrences o
            JOIN reservations r ON r.reservation_id = o.reservation_id
            LEFT JOIN reservation_signals s ON s.reservation_id = o.reservation_id
            WHERE o.series_id = $1 AND o.generation <> $2 AND o.original_start <= $3 AND r.ends_at > $4
                AND s.cancelled_at IS NULL"
    };
}
/// Each taken out is planned again (its room gets the notice and is archived)…
const TAKEN_OUT_DUE: &str = concat!(
    "UPDATE lifecycle SET next_due_at = $4, facts_version = facts_version + 1 WHERE reservation_id IN (",
    taken_out!(),
    ")"
);
/// …forgets its tickets' addresses and codes, as `reservation.cancelled` does…
const TAKEN_OUT_FORGET: &str = concat!(
    "UPDATE tickets SET email = NULL, display_name = NULL, claim_hash = NULL WHERE reservation_id IN (",
    taken_out!(),
    ") AND (email IS NOT NULL OR display_name IS NOT NULL OR claim_hash IS NOT NULL)"
);
/// …and is cancelled, with reason `$5` (last: the two above read "not cancelled yet").
const TAKEN_OUT_CANCEL: &str = concat!(
    "INSERT INTO reservation_signals (reservation_id, cancelled_at, cancel_reason)
    SELECT t.reservation_id, $4, CAST($5 AS TEXT) FROM (",
    taken_out!(),
    ") t WHERE 1 = 1
    ON CONFLICT (reservation_id) DO UPDATE SET
        cancelled_at = COALESCE(reservation_signals.cancelled_at, excluded.cancelled_at),
        cancel_reason = COALESCE(reservation_signals.cancel_reason, excluded.cancel_reason)"
);
/// A generation no occurrence has: every occurrence is taken out (`series.cancelled`).
const NO_GENERATION: i64 = -1;

const SERIES_ROW: &str = "SELECT cancelled_at FROM series WHERE series_id = $1";
const OCCURRENCES: &str = "SELECT o.reservation_id, o.original_start, r.starts_at, r.ends_at,
        s.cancelled_at IS NOT NULL AS cancelled
    FROM series_occurrences o
    JOIN reservations r ON r.reservation_id = o.reservation_id
    LEFT JOIN reservation_signals s ON s.reservation_id = o.reservation_id
    WHERE o.series_id = $1 ORDER BY o.original_start";
/// `(series_id, definition)`: the series is still as read, not cancelled; one row then.
/// An update, so that it holds the row against a cancellation or an upsert until the
/// extension commits (PostgreSQL; SQLite's writer is alone anyway).
const STILL_AS_READ: &str =
    "UPDATE series SET updated_at = updated_at WHERE series_id = $1 AND definition = $2 AND cancelled_at IS NULL";
const ACTIVE_SERIES: &str =
    "SELECT series_id, definition FROM series WHERE cancelled_at IS NULL AND definition IS NOT NULL ORDER BY series_id";

/// `series.upserted` inside the intake's transaction: the series row, each occurrence of
/// its expansion written as a reservation, and those stored but taken out cancelled.
pub(super) async fn record_upsert(
    w: &mut impl Writes, upsert: &SeriesUpsert, at: DateTime<Utc>, outbox: &Outbound, windows: Windows,
) -> Result<Outcome, StoreError> {
    let series = &upsert.series;
    let id = series.id.as_str();
    let now = to_millis(at);
    let stored = w
        .fetch_optional(SERIES_STORED, &[id.into()], |row| Ok((row.opt_int("revision")?, row.opt_int("cancelled_at")?)))
        .await?;
    if let (Some((Some(stored), _)), Some(incoming)) = (stored, series.revision)
        && (incoming.0 as i64) < stored
    {
        return Ok(Outcome::Stale);
    }
    let revision = series.revision.map(|r| r.0 as i64);
    w.execute(UPSERT_SERIES, &[id.into(), revision.into(), upsert.definition.as_str().into(), now.into()]).await?;
    if stored.is_some_and(|(_, cancelled)| cancelled.is_some()) {
        // A cancelled series stays so; what was sent is kept, and nothing is made of it.
        return Ok(Outcome::Accepted);
    }
    let generation = w.fetch_optional(GENERATION, &[id.into()], |row| row.int("generation")).await?.unwrap_or(1);
    write_occurrences(w, series, &upsert.expansion, Some(generation), at, outbox, windows).await?;
    let until = to_millis(upsert.expansion.complete_until);
    take_out(w, &[id.into(), generation.into(), until.into(), now.into(), None::<&str>.into()]).await?;
    Ok(Outcome::Accepted)
}

/// `series.cancelled` inside the intake's transaction: every occurrence not ended is
/// cancelled, as `reservation.cancelled` does.
pub(super) async fn record_cancel(
    w: &mut impl Writes, id: &SeriesId, reason: Option<&str>, now: i64,
) -> Result<(), StoreError> {
    w.execute(CANCEL_SERIES, &[id.as_str().into(), now.into(), reason.into()]).await?;
    take_out(w, &[id.as_str().into(), NO_GENERATION.into(), i64::MAX.into(), now.into(), reason.into()]).await
}

async fn take_out(w: &mut impl Writes, args: &[intake::Arg<'_>; 5]) -> Result<(), StoreError> {
    w.execute(TAKEN_OUT_DUE, &args[..4]).await?;
    w.execute(TAKEN_OUT_FORGET, &args[..4]).await?;
    w.execute(TAKEN_OUT_CANCEL, args).await?;
    Ok(())
}

/// Writes the occurrences of `expansion`: with `generation` (an upsert) every one, as
/// produced by it; without (extending as time passes) only those not stored yet. The
/// platform hears of the new ones in one `series.expanded`.
async fn write_occurrences(
    w: &mut impl Writes, series: &Series, expansion: &Expansion, generation: Option<i64>, at: DateTime<Utc>,
    outbox: &Outbound, windows: Windows,
) -> Result<usize, StoreError> {
    let now = to_millis(at);
    let mut added = Vec::new();
    for o in &expansion.occurrences {
        let original = to_millis(o.original_start);
        let key = [o.id.as_str().into(), series.id.as_str().into(), original.into(), generation.unwrap_or(1).into()];
        let new = w.execute(ADD_OCCURRENCE, &key).await? == 1;
        match generation {
            _ if new => {}
            None => continue,
            Some(generation) => _ = w.execute(SEE_OCCURRENCE, &[o.id.as_str().into(), generation.into()]).await?,
        }
        // A newer revision sent for this occurrence alone stays.
        if intake::upsert(w, &series.reservation(o), now, windows).await? == Outcome::Stale {
            continue;
        }
        intake::facts_arrived(w, o.id.as_str(), at, false).await?;
        if new {
            added.push(o.clone());
        }
    }
    if !added.is_empty() {
        intake::write_event(w, outbox, &OutboundEvent::series_expanded(&series.id, &added, at), now).await?;
    }
    Ok(added.len())
}

/// The series: its occurrences read back, and series to expand again.
#[async_trait]
pub trait SeriesStore: Send + Sync {
    /// A series and its occurrences, or `None` when none was sent.
    async fn series(&self, id: &SeriesId) -> Result<Option<SeriesRecord>, StoreError>;

    /// Every series not cancelled, as `(id, data as sent)`.
    async fn active_series(&self) -> Result<Vec<(SeriesId, String)>, StoreError>;

    /// Adds the occurrences of `upsert`'s expansion not stored yet, each once however many
    /// instances try at the same time, in one transaction with its `series.expanded`;
    /// nothing if the series was cancelled or sent again since `upsert` was read from
    /// [`Self::active_series`]. Returns how many it added.
    async fn extend_series(
        &self, upsert: &SeriesUpsert, at: DateTime<Utc>, windows: Windows,
    ) -> Result<usize, StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl SeriesStore for SqlStore<D> {
    async fn series(&self, id: &SeriesId) -> Result<Option<SeriesRecord>, StoreError> {
        let Some(row) = sqlx::query(SERIES_ROW).bind(id.as_str()).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let cancelled_at = row.opt_time("cancelled_at")?;
        let rows = sqlx::query(OCCURRENCES).bind(id.as_str()).fetch_all(&self.pool).await?;
        let occurrences = rows
            .iter()
            .map(|row| {
                Ok(OccurrenceRecord {
                    id: parsed(row, "reservation_id", ReservationId::parse)?,
                    original_start: from_millis(row.int("original_start")?)?,
                    starts_at: from_millis(row.int("starts_at")?)?,
                    ends_at: from_millis(row.int("ends_at")?)?,
                    cancelled: row.flag("cancelled")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(SeriesRecord { id: id.clone(), cancelled_at, occurrences }))
    }

    async fn active_series(&self) -> Result<Vec<(SeriesId, String)>, StoreError> {
        let rows = sqlx::query(ACTIVE_SERIES).fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((parsed(row, "series_id", SeriesId::parse)?, row.text("definition")?))).collect()
    }

    async fn extend_series(
        &self, upsert: &SeriesUpsert, at: DateTime<Utc>, windows: Windows,
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let id = upsert.series.id.as_str();
        let still = sqlx::query(STILL_AS_READ).bind(id).bind(upsert.definition.as_str()).execute(&mut *tx).await?;
        if D::rows_affected(&still) == 0 {
            return Ok(0);
        }
        let (series, expansion) = (&upsert.series, &upsert.expansion);
        let added =
            write_occurrences(&mut Sqlx::<D>(&mut tx), series, expansion, None, at, &self.outbox, windows).await?;
        tx.commit().await?;
        self.outbox.wake_sender(added > 0 && self.outbox.writes());
        Ok(added)
    }
}
