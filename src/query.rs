//! Walks over every reservation, for the status page, `/metrics` and `!foyer list`.

use chrono::{DateTime, Utc};

use crate::{
    config::RoomsConfig,
    model::{ReservationId, ReservationRecord},
    schedule::{self, Phase},
    store::{Counts, Store, StoreError},
};

/// Reservations read per page of a walk.
const PAGE: u32 = 1000;

/// Every reservation, a page at a time, with its phase at `now`. The records carry no
/// ticket or member counts (zeros): reading those for every reservation would cost a
/// scan of the tickets; fetch one reservation for its counts.
pub async fn each_reservation(
    store: &dyn Store, rooms: &RoomsConfig, now: DateTime<Utc>, mut visit: impl FnMut(Phase, &ReservationRecord),
) -> Result<(), StoreError> {
    let mut after: Option<ReservationId> = None;
    loop {
        let batch = store.reservations_after(after.as_ref(), PAGE, Counts::Zero).await?;
        for record in &batch {
            visit(schedule::at(record, rooms, now).1.phase, record);
        }
        match batch.last() {
            Some(last) if batch.len() == PAGE as usize => after = Some(last.reservation.id.clone()),
            _ => return Ok(()),
        }
    }
}

/// How many reservations are in each phase at `now` (every phase listed, zeros too).
pub async fn phase_counts(
    store: &dyn Store, rooms: &RoomsConfig, now: DateTime<Utc>,
) -> Result<Vec<(Phase, u64)>, StoreError> {
    let mut counts: Vec<(Phase, u64)> = Phase::ALL.iter().map(|p| (*p, 0)).collect();
    each_reservation(store, rooms, now, |phase, _| {
        if let Some(entry) = counts.iter_mut().find(|(p, _)| *p == phase) {
            entry.1 += 1;
        }
    })
    .await?;
    Ok(counts)
}
