//! Transcripts in the store: lines written a page at a time while the room is read
//! (`write_transcript`), served a page at a time (`transcript_lines`), and deleted after
//! `rooms.transcript_retention` (`prune_transcripts`). The mark that one was made is a
//! step record (`StepRecord::TranscriptMade`, in `room.rs`): lines without it are a
//! transcript cut short, never served, and made again from the start.

use chrono::{DateTime, Utc};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use sqlx::{Encode, Executor, Type};

use super::{
    StoreError,
    db::{Dialect, SqlStore},
    from_millis,
    rows::{Read, corrupt},
    to_millis,
};
use crate::model::{ReservationId, Transcript, TranscriptEntry, TranscriptLine};

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
/// `(reservation_id, after seq, limit)`.
const LINES: &str = "SELECT seq, event_id, sender, display_name, sent_at, body, notice FROM transcript_lines
    WHERE reservation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
/// `(before)`: the lines of transcripts made before, and those of rooms archived before
/// (a transcript cut short, the archive having gone on without it).
const PRUNE_LINES: &str = "DELETE FROM transcript_lines WHERE reservation_id IN (
        SELECT reservation_id FROM transcripts WHERE made_at < $1
        UNION SELECT reservation_id FROM lifecycle WHERE archived_at < $1)";
const PRUNE: &str = "DELETE FROM transcripts WHERE made_at < $1";

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> Option<i64>: Encode<'q, D>,
    for<'s> &'s str: Encode<'s, D> + Type<D>,
    for<'s> Option<&'s str>: Encode<'s, D>,
{
    /// [`super::Store::clear_transcript`].
    pub(super) async fn clear_transcript_lines(&self, id: &ReservationId) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        sqlx::query(CLEAR).bind(id.as_str()).execute(&mut *tx).await?;
        Ok(tx.commit().await?)
    }

    /// [`super::Store::write_transcript`]: one page, in order, in one transaction.
    pub(super) async fn write_transcript_page(
        &self,
        id: &ReservationId,
        entries: &[TranscriptEntry],
    ) -> Result<(), StoreError> {
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

    /// [`super::Store::transcript`].
    pub(super) async fn read_transcript(&self, id: &ReservationId) -> Result<Option<Transcript>, StoreError> {
        let Some(row) = sqlx::query(MADE).bind(id.as_str()).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let room_id = OwnedRoomId::try_from(row.text("room_id")?).map_err(|e| corrupt("transcript room_id", e))?;
        let messages = u64::try_from(row.int("messages")?).map_err(|e| corrupt("transcript messages", e))?;
        Ok(Some(Transcript { room_id, messages, made_at: from_millis(row.int("made_at")?)? }))
    }

    /// [`super::Store::transcript_lines`].
    pub(super) async fn read_transcript_lines(
        &self,
        id: &ReservationId,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<TranscriptLine>, StoreError> {
        let after = after.map_or(-1, |seq| seq as i64);
        let query = sqlx::query(LINES).bind(id.as_str()).bind(after).bind(i64::from(limit));
        query.fetch_all(&self.pool).await?.iter().map(line).collect()
    }

    /// [`super::Store::prune_transcripts`].
    pub(super) async fn delete_transcripts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = to_millis(before);
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        sqlx::query(PRUNE_LINES).bind(before).execute(&mut *tx).await?;
        let done = sqlx::query(PRUNE).bind(before).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(D::rows_affected(&done))
    }
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
