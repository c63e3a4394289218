//! Running an admin's command: reading what it asks for from the store, or recording
//! the action and waking the lifecycle.

use chrono::{DateTime, Utc};

use super::{Command, Services};
use crate::{
    outbox::OutboxReport,
    query,
    schedule::{self, Phase},
    store::{AdminAction, StoreError},
    words::{
        Answer,
        admin::{self, Refused},
    },
};

/// Lines of `!foyer list` at most; the read API pages through the rest.
const LIST_LIMIT: usize = 25;

async fn list(state: &Services, only: Option<Phase>, now: DateTime<Utc>) -> Result<Answer, StoreError> {
    let mut lines = Vec::new();
    let mut total = 0usize;
    query::each_reservation(state.store.as_ref(), &state.config.rooms, now, |phase, record| {
        if only.is_none_or(|want| want == phase) {
            total += 1;
            if lines.len() < LIST_LIMIT {
                lines.push(admin::line(record, phase, now, &state.config));
            }
        }
    })
    .await?;
    Ok(admin::list(only, total, &lines))
}

/// How many holders who cannot be invited `show` names.
const SHOWN_FAILURES: u32 = 20;

/// Runs a command for an admin.
pub async fn run(state: &Services, command: Command, now: DateTime<Utc>) -> Result<Answer, StoreError> {
    match command {
        Command::Help => Ok(admin::help()),
        Command::List(only) => list(state, only, now).await,
        Command::Show(id) => Ok(match state.store.reservation(&id).await? {
            Some(record) => {
                admin::show(&state.config, &record, &state.store.invite_failures(&id, SHOWN_FAILURES).await?, now)
            }
            None => admin::not_found(&id),
        }),
        Command::Outbox => {
            let status = state.store.outbox_status().await?;
            Ok(admin::outbox(&OutboxReport::new(&status, state.config.platform.is_some(), now)))
        }
        Command::OutboxResume => {
            let was_paused = state.store.resume_outbox(now).await?;
            state.outbox.notify_one();
            tracing::info!(was_paused, "admin resumed the outbox");
            Ok(admin::outbox_resumed(was_paused))
        }
        Command::Act(action, id) => {
            let Some(record) = state.store.reservation(&id).await? else { return Ok(admin::not_found(&id)) };
            let (times, status) = schedule::at(&record, &state.config.rooms, now);
            let due = schedule::due_phase(&record, &times, now);
            let refused = match (action, status.phase) {
                (_, Phase::Cancelled) => Some(Refused::Cancelled),
                (AdminAction::OpenNow | AdminAction::ArchiveNow, Phase::Archived) => Some(Refused::AlreadyArchived),
                (AdminAction::OpenNow, Phase::Open | Phase::Live | Phase::Ended) if record.room_id.is_some() => {
                    Some(Refused::AlreadyOpen)
                }
                (AdminAction::OpenNow, _) if due == Phase::Ended && record.room_id.is_none() => {
                    Some(Refused::EndedWithoutRoom)
                }
                _ => None,
            };
            if let Some(why) = refused {
                return Ok(admin::action_refused(&id, why));
            }
            if !state.store.admin_action(&id, action, now).await? {
                return Ok(admin::not_found(&id));
            }
            state.wake.notify_one();
            tracing::info!(reservation_id = %id, action = ?action, "admin command recorded");
            Ok(match action {
                AdminAction::OpenNow => admin::opening_now(&id),
                AdminAction::ArchiveNow => admin::archiving_now(&id),
                AdminAction::Retry => admin::retrying_now(&id),
            })
        }
    }
}
