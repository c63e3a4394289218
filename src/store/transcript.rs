//! Transcripts in the store: lines written a page at a time while the room is read
//! (`write_transcript`), served a page at a time (`transcript_lines`, a page bounded in
//! lines and in bytes: the sizes are read first, then only the lines that fit), and
//! deleted after
//! `rooms.transcript_retention` (`prune_transcripts`). The mark that one was made is a
//! step record (`StepRecord::TranscriptMade`, in `room.rs`): lines without it are a
//! transcript cut short, never served, and made again from the start.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use macro_rules_attribute::apply;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use sqlx::AssertSqlSafe;

use super::{
    StoreError,
    dialect::{SqlStore, on_both_databases},
    from_millis,
    rows::{Read, corrupt},
    to_millis,
};
use crate::{
    config::DatabaseKind,
    model::{ReservationId, Transcript, TranscriptEntry, TranscriptLine},
};

/// `(reservation_id)`: a transcript begins again from nothing.
const CLEAR: &str = "DELETE FROM transcript_lines WHERE reservation_id = $1";
/// `(reservation_id, seq, event_id, sender, display_name, sent_at, body, notice)`. A line
/// already there (the homeserver gave an event twice) is kept.
const LINE: &str = "INSERT INTO transcript_lines
        (reservation_id, seq, event_id, sender, display_name, sent_at, body, notice)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";
/// `(body, reservation_id, event_id, sender)`: only the original's sender edits it.
const EDIT: &str = "UPDATE transcript_lines SET body = $1 WHERE reservation_id = $2 AND event_id = $3 AND sender = $4";
const MADE: &str = "SELECT room_id, messages, made_at FROM transcripts WHERE reservation_id = $1";
/// `(reservation_id, after seq, limit)`: the sizes of the next lines, in bytes of name and
/// body (`octet_length`, in SQLite since 3.43 as in PostgreSQL), without their text.
const SIZES: &str = "SELECT seq, CAST(octet_length(body) + COALESCE(octet_length(display_name), 0) AS BIGINT) AS size
    FROM transcript_lines WHERE reservation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
/// `(reservation_id, after seq, through seq)`.
const LINES: &str = "SELECT seq, event_id, sender, display_name, sent_at, body, notice FROM transcript_lines
    WHERE reservation_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq";
/// `(before)`: the lines of transcripts made before, and those of rooms archived before
/// (a transcript cut short, the archive having gone on without it).
const PRUNE_LINES: &str = "DELETE FROM transcript_lines WHERE reservation_id IN (
        SELECT reservation_id FROM transcripts WHERE made_at < $1
        UNION SELECT reservation_id FROM lifecycle WHERE archived_at < $1)";
const PRUNE: &str = "DELETE FROM transcripts WHERE made_at < $1";
/// `(before)`: who asked to be anonymous in the public archive (Matrix IDs) goes with it.
const PRUNE_ANONYMOUS: &str = "DELETE FROM archive_anonymous WHERE reservation_id IN (
        SELECT reservation_id FROM lifecycle WHERE archived_at < $1)";
/// SQLite: the connection's memory map, its size and off (see `transcript_lines`).
const MAP_SIZE: &str = "PRAGMA mmap_size";
const MAP_OFF: &str = "PRAGMA mmap_size = 0";

/// A page of lines on `conn`: their sizes first, then the lines that fit.
#[apply(on_both_databases!)]
async fn read_page(
    conn: &mut D::Connection, id: &ReservationId, after: Option<u64>, max_lines: u32, max_bytes: u64,
) -> Result<Vec<TranscriptLine>, StoreError> {
    let after = after.map_or(-1, |seq| seq as i64);
    let sizes = sqlx::query(SIZES).bind(id.as_str()).bind(after).bind(i64::from(max_lines));
    let (mut through, mut bytes) = (None, 0u64);
    for row in sizes.fetch_all(&mut *conn).await? {
        let size = u64::try_from(row.int("size")?).map_err(|e| corrupt("transcript line size", e))?;
        bytes = bytes.saturating_add(size);
        if through.is_some() && bytes > max_bytes {
            break;
        }
        through = Some(row.int("seq")?);
    }
    let Some(through) = through else { return Ok(Vec::new()) };
    let query = sqlx::query(LINES).bind(id.as_str()).bind(after).bind(through);
    query.fetch_all(&mut *conn).await?.iter().map(line).collect()
}

fn line(row: &impl Read) -> Result<TranscriptLine, StoreError> {
    let seq = u64::try_from(row.int("seq")?).map_err(|e| corrupt("transcript line seq", e))?;
    let event_id = OwnedEventId::try_from(row.text("event_id")?).map_err(|e| corrupt("transcript line event_id", e))?;
    let sender = OwnedUserId::try_from(row.text("sender")?).map_err(|e| corrupt("transcript line sender", e))?;
    Ok(TranscriptLine {
        seq,
        event_id,
        sender,
        display_name: row.opt_text("display_name")?,
        sent_at: from_millis(row.int("sent_at")?)?,
        body: row.text("body")?,
        notice: row.int("notice")? != 0,
    })
}

/// Transcripts: written a page at a time, served a page at a time, pruned.
#[async_trait]
pub trait TranscriptStore: Send + Sync {
    /// Forgets the lines of a transcript not made yet (one cut short): it is written
    /// again from the start.
    async fn clear_transcript(&self, id: &ReservationId) -> Result<(), StoreError>;

    /// Writes one page of a transcript being made, in order, in one transaction. It is
    /// served once [`StepRecord::TranscriptMade`] is recorded.
    async fn write_transcript(&self, id: &ReservationId, entries: &[TranscriptEntry]) -> Result<(), StoreError>;

    /// The reservation's transcript, if one was made (and not yet deleted).
    async fn transcript(&self, id: &ReservationId) -> Result<Option<Transcript>, StoreError>;

    /// A page of the reservation's transcript: the lines after line `after` (from the
    /// first with `None`), in the room's order, at most `max_lines` of them and no more
    /// than fit in `max_bytes` of display names and bodies, but always at least one
    /// (so that a page of one very long line still moves on).
    async fn transcript_lines(
        &self, id: &ReservationId, after: Option<u64>, max_lines: u32, max_bytes: u64,
    ) -> Result<Vec<TranscriptLine>, StoreError>;

    /// Deletes the transcripts made before `before`, with their lines, and the lines of
    /// rooms archived before it without one; returns how many transcripts went.
    async fn prune_transcripts(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

#[apply(on_both_databases!)]
#[async_trait]
impl TranscriptStore for SqlStore<D> {
    async fn clear_transcript(&self, id: &ReservationId) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        sqlx::query(CLEAR).bind(id.as_str()).execute(&mut *tx).await?;
        Ok(tx.commit().await?)
    }

    async fn write_transcript(&self, id: &ReservationId, entries: &[TranscriptEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        for entry in entries {
            let query = match entry {
                TranscriptEntry::Line(line) => sqlx::query(LINE)
                    .bind(id.as_str())
                    .bind(line.seq as i64)
                    .bind(line.event_id.as_str())
                    .bind(line.sender.as_str())
                    .bind(line.display_name.as_deref())
                    .bind(to_millis(line.sent_at))
                    .bind(line.body.as_str())
                    .bind(i64::from(line.notice)),
                TranscriptEntry::Edit { event_id, sender, body } => sqlx::query(EDIT)
                    .bind(body.as_str())
                    .bind(id.as_str())
                    .bind(event_id.as_str())
                    .bind(sender.as_str()),
            };
            query.execute(&mut *tx).await?;
        }
        Ok(tx.commit().await?)
    }

    async fn transcript(&self, id: &ReservationId) -> Result<Option<Transcript>, StoreError> {
        let Some(row) = sqlx::query(MADE).bind(id.as_str()).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let room_id = OwnedRoomId::try_from(row.text("room_id")?).map_err(|e| corrupt("transcript room_id", e))?;
        let messages = u64::try_from(row.int("messages")?).map_err(|e| corrupt("transcript messages", e))?;
        Ok(Some(Transcript { room_id, messages, made_at: from_millis(row.int("made_at")?)? }))
    }

    /// On SQLite, with the connection's memory map off: the database is read through a
    /// map (`store/sqlite.rs`), and every page a transcript's GET reads through it would
    /// stay in Foyer's resident memory, as much as the transcript (32 MiB at its cap).
    /// Read through SQLite's page cache instead, a GET's resident memory is what it
    /// holds: a page of lines and a part of the body. The connection's map is put back
    /// for its next user (or, if that fails, the connection is closed).
    async fn transcript_lines(
        &self, id: &ReservationId, after: Option<u64>, max_lines: u32, max_bytes: u64,
    ) -> Result<Vec<TranscriptLine>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mapped = match D::KIND {
            DatabaseKind::Sqlite => {
                let size = sqlx::query(MAP_SIZE).fetch_one(&mut *conn).await?.int("mmap_size")?;
                sqlx::query(MAP_OFF).execute(&mut *conn).await?;
                Some(size)
            }
            DatabaseKind::Postgres => None,
        };
        let page = read_page::<D>(&mut conn, id, after, max_lines, max_bytes).await;
        if let Some(size) = mapped {
            let restore = sqlx::query(AssertSqlSafe(format!("PRAGMA mmap_size = {size}")));
            if let Err(e) = restore.execute(&mut *conn).await {
                tracing::warn!(error = %e, "a connection whose memory map could not be restored is closed");
                conn.close_on_drop();
            }
        }
        page
    }

    async fn prune_transcripts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = to_millis(before);
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        sqlx::query(PRUNE_LINES).bind(before).execute(&mut *tx).await?;
        sqlx::query(PRUNE_ANONYMOUS).bind(before).execute(&mut *tx).await?;
        let done = sqlx::query(PRUNE).bind(before).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(D::rows_affected(&done))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        config::DatabaseConfig,
        model::TranscriptEntry,
        secret::Secret,
        store::{Outbound, SqliteStore},
    };

    /// A transcript's page is read with SQLite's memory map off, and the connection has
    /// its map back afterwards (the read API's reads count on it).
    #[tokio::test]
    async fn a_page_is_read_unmapped_and_the_connection_gets_its_map_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            url: Secret::new(format!("sqlite://{}", dir.path().join("foyer.db").display())),
            kind: DatabaseKind::Sqlite,
            max_connections: Some(1),
            acquire_timeout: Duration::from_secs(5),
        };
        let store = SqliteStore::open(&config, Outbound::Skip).await.expect("open");
        let mapped = || async {
            let row = sqlx::query(MAP_SIZE).fetch_one(&store.pool).await.unwrap();
            row.int("mmap_size").unwrap()
        };
        let before = mapped().await;
        assert!(before > 0, "the store maps its file");
        let id = ReservationId::parse("jazz").unwrap();
        let line = |seq: u64, body: &str| {
            TranscriptEntry::Line(TranscriptLine {
                seq,
                event_id: format!("$e{seq}").try_into().unwrap(),
                sender: "@alice:example.org".try_into().unwrap(),
                display_name: None,
                sent_at: DateTime::from_timestamp_millis(1_800_000_000_000).unwrap(),
                body: body.into(),
                notice: false,
            })
        };
        store.write_transcript(&id, &[line(0, "one"), line(1, "two")]).await.unwrap();
        let page = store.transcript_lines(&id, None, 10, 4).await.unwrap();
        assert_eq!(page.iter().map(|l| l.body.as_str()).collect::<Vec<_>>(), ["one"]);
        assert_eq!(mapped().await, before, "the one connection has its map back");
    }
}
