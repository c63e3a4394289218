//! Recurring series (docs/series.md): a rule in local wall-clock time, expanded at an
//! injected `now` into occurrences, each a reservation of its own. Pure: no clock, no I/O.
//!
//! The rule is expanded in "floating" time (the `rrule` crate on UTC, which has no DST,
//! stands for the local wall clock), and each local start is then placed in `tzid` here,
//! so that the two DST rules of the contract are ours and tested: a local time that does
//! not exist moves forward by the gap (RFC 5545's "offset before the gap"), and a
//! repeated one takes its first instant.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr as _;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset as _, TimeDelta, TimeZone as _, Utc};

use super::{MAX_SPAN_SECONDS, Reservation, ReservationId, Revision};

/// Occurrences kept in one expansion, the earliest first (docs/series.md).
pub const MAX_OCCURRENCES: usize = 100;
/// Instances of the rule looked at in one expansion, past ones included: a rule like
/// `FREQ=SECONDLY` or a `dtstart` years ago stops here instead of spinning.
pub const MAX_STEPS: usize = 20_000;
/// A series id leaves room for `.yyyymmddThhmmZ` (15 characters) within a
/// [`ReservationId`]'s 128.
pub const MAX_SERIES_ID: usize = 128 - 15;
/// How `dtstart`, `exdates` and `original_start` are written: local time, no offset.
pub const LOCAL_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// A series' id: 1–113 characters of a [`ReservationId`]'s alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(ReservationId);

impl SeriesId {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.len() > MAX_SERIES_ID {
            return Err(format!(
                "must be 1 to {MAX_SERIES_ID} characters of A-Z a-z 0-9 . _ = - (an occurrence's id adds 15)"
            ));
        }
        ReservationId::parse(value)
            .map(Self)
            .map_err(|_| format!("must be 1 to {MAX_SERIES_ID} characters of A-Z a-z 0-9 . _ = -"))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The id as a reservation id: the key of its receipts and its outbound events.
    pub fn as_reservation_id(&self) -> &ReservationId {
        &self.0
    }

    /// `<series_id>.<original start in UTC, yyyymmddThhmmZ>`: stable whatever moves it.
    pub fn occurrence_id(&self, original_start: DateTime<Utc>) -> ReservationId {
        let id = format!("{}.{}", self.0, original_start.format("%Y%m%dT%H%MZ"));
        ReservationId::parse(&id).expect("a series id and a UTC minute make a reservation id")
    }
}

impl fmt::Display for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A local wall-clock time as the payload writes it (`2026-12-04T20:00:00`).
pub fn parse_local(value: &str) -> Result<NaiveDateTime, String> {
    NaiveDateTime::parse_from_str(value, LOCAL_FORMAT)
        .map_err(|_| "must be a local date-time without offset, like 2026-12-04T20:00:00".to_owned())
}

/// An IANA time zone name (`Europe/Berlin`).
pub fn parse_tzid(value: &str) -> Result<chrono_tz::Tz, String> {
    value.parse().map_err(|_| format!("{value:?} is not an IANA time zone name, like Europe/Berlin"))
}

/// One occurrence moved: `original_start` names it (local time), the new times are UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub original_start: NaiveDateTime,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl Override {
    pub fn new(
        original_start: NaiveDateTime, starts_at: DateTime<Utc>, ends_at: DateTime<Utc>,
    ) -> Result<Self, String> {
        if ends_at <= starts_at {
            return Err("ends_at must be after starts_at".into());
        }
        if (ends_at - starts_at).num_seconds() > MAX_SPAN_SECONDS {
            return Err("ends_at must be at most 7 days after starts_at".into());
        }
        Ok(Self { original_start, starts_at, ends_at })
    }
}

/// What goes wrong building a [`Recurrence`], with the payload field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RecurrenceError {
    /// `rrule`, `dtstart` or `duration_seconds`.
    pub field: &'static str,
    pub message: String,
}

/// When a series' occurrences fall: the rule, its start, zone and length, the dates
/// taken out and the occurrences moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recurrence {
    rule: rrule::RRuleSet,
    dtstart: NaiveDateTime,
    tz: chrono_tz::Tz,
    duration: TimeDelta,
    /// Looked up at each of up to [`MAX_STEPS`] instances of the rule: sets, not lists.
    exdates: BTreeSet<NaiveDateTime>,
    /// By original start; the first sent for one counts.
    overrides: BTreeMap<NaiveDateTime, Override>,
}

impl Recurrence {
    pub fn new(
        rrule: &str, dtstart: NaiveDateTime, tz: chrono_tz::Tz, duration_seconds: u64, exdates: Vec<NaiveDateTime>,
        overrides: Vec<Override>,
    ) -> Result<Self, RecurrenceError> {
        let bad = |field, message: String| RecurrenceError { field, message };
        if duration_seconds == 0 || duration_seconds > MAX_SPAN_SECONDS as u64 {
            return Err(bad("duration_seconds", format!("must be 1 to {MAX_SPAN_SECONDS} (7 days)")));
        }
        // Only the rule's value: a DTSTART or EXDATE inside it would compete with ours.
        if rrule.contains(':') || rrule.contains('\n') {
            return Err(bad("rrule", "must be an RRULE value like FREQ=WEEKLY;BYDAY=FR, without \"RRULE:\"".into()));
        }
        let start = Utc.from_utc_datetime(&dtstart).with_timezone(&rrule::Tz::UTC);
        let rule = rrule::RRule::<rrule::Unvalidated>::from_str(rrule)
            .and_then(|r| r.build(start))
            .map_err(|e| bad("rrule", e.to_string()))?;
        let duration = TimeDelta::seconds(duration_seconds as i64);
        let exdates = exdates.into_iter().collect();
        let mut by_start = BTreeMap::new();
        for o in overrides {
            by_start.entry(o.original_start).or_insert(o);
        }
        Ok(Self { rule, dtstart, tz, duration, exdates, overrides: by_start })
    }

    /// The occurrences of `series` at `now` within `horizon`: those that have not ended,
    /// whose original start is at most `now + horizon`, at most [`MAX_OCCURRENCES`],
    /// after at most [`MAX_STEPS`] instances of the rule.
    pub fn expand(&self, series: &SeriesId, now: DateTime<Utc>, horizon: TimeDelta) -> Expansion {
        let until = now + horizon;
        let mut occurrences: Vec<Occurrence> = Vec::new();
        let mut steps = 0;
        let mut instances = self.rule.clone().limit().into_iter();
        let complete_until = loop {
            let Some(instance) = instances.next() else {
                // The rule has no more instances (COUNT, UNTIL): nothing later can come.
                break DateTime::<Utc>::MAX_UTC;
            };
            steps += 1;
            let local = instance.naive_utc();
            let original_start = place(local, self.tz);
            if original_start > until {
                break until;
            }
            if steps > MAX_STEPS {
                break original_start;
            }
            if self.exdates.contains(&local) {
                continue;
            }
            let id = series.occurrence_id(original_start);
            let moved = self.overrides.get(&local);
            let (starts_at, ends_at) =
                moved.map_or((original_start, original_start + self.duration), |o| (o.starts_at, o.ends_at));
            if ends_at <= now || occurrences.iter().any(|o| o.id == id) {
                continue;
            }
            occurrences.push(Occurrence { id, original_start, starts_at, ends_at, moved: moved.is_some() });
            if occurrences.len() == MAX_OCCURRENCES {
                break original_start;
            }
        };
        Expansion { occurrences, complete_until }
    }

    /// The instant a local start stands for (see [`place`]).
    pub fn place(&self, local: NaiveDateTime) -> DateTime<Utc> {
        place(local, self.tz)
    }
}

/// A local wall-clock time in `tz`: a time in a DST gap moves forward by the gap (it
/// is read with the offset before the gap), a repeated one takes its first instant.
pub fn place(local: NaiveDateTime, tz: chrono_tz::Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // The last local time before the gap carries the offset before it. Gaps are
            // at most a day (Samoa, 2011); steps of 15 minutes find its edge's offset.
            let before = (1..=26 * 4)
                .find_map(|k| tz.from_local_datetime(&(local - TimeDelta::minutes(15 * k))).latest())
                .map_or(0, |t| t.offset().fix().local_minus_utc());
            Utc.from_utc_datetime(&(local - TimeDelta::seconds(i64::from(before))))
        }
    }
}

/// One occurrence: its id from its original start, and its times (moved or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub id: ReservationId,
    pub original_start: DateTime<Utc>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// An override moved it.
    pub moved: bool,
}

/// A series' occurrences at one `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub occurrences: Vec<Occurrence>,
    /// Every occurrence whose original start is at most this is in `occurrences` (or
    /// ended): a stored one up to here that is not was taken out (an exdate, a changed
    /// rule). Later ones are not known yet.
    pub complete_until: DateTime<Utc>,
}

/// A series as the platform last described it (`series.upserted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub id: SeriesId,
    pub revision: Option<Revision>,
    pub recurrence: Recurrence,
    /// The reservation fields every occurrence has; its id and times are the series' own
    /// and its first occurrence's, replaced in each.
    pub template: Reservation,
}

impl Series {
    /// Each occurrence of `expansion` as the reservation it is.
    pub fn reservation(&self, occurrence: &Occurrence) -> Reservation {
        Reservation {
            id: occurrence.id.clone(),
            starts_at: occurrence.starts_at,
            ends_at: occurrence.ends_at,
            ..self.template.clone()
        }
    }
}

/// `series.upserted`: the series, its expansion when it arrived, and its `data` as
/// sent, kept so that it is expanded again as time passes under the same rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesUpsert {
    pub series: Series,
    pub expansion: Expansion,
    pub definition: String,
}

/// A series as the store reads it back: whether it is cancelled, and its occurrences,
/// the earliest original start first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesRecord {
    pub id: SeriesId,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub occurrences: Vec<OccurrenceRecord>,
}

/// One stored occurrence: its reservation's id and times, and whether it is cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OccurrenceRecord {
    pub id: ReservationId,
    pub original_start: DateTime<Utc>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub cancelled: bool,
}

#[cfg(test)]
mod tests;
