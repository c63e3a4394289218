//! Running an admin's command: reading what it asks for from the store, or recording
//! the action and waking the lifecycle.

use chrono::{DateTime, Utc};

use super::{
    Command, Services,
    answer::{Answer, help, line, outbox, show},
};
use crate::{
    html::escape,
    model::ReservationId,
    query,
    schedule::{self, Phase},
    store::{AdminAction, StoreError},
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
                lines.push(line(record, phase, now, &state.config));
            }
        }
    })
    .await?;
    let what = only.map_or("reservations".to_owned(), |p| format!("{} reservations", p.as_str()));
    if lines.is_empty() {
        return Ok(Answer::plain(format!("No {what}.")));
    }
    let more = if total > lines.len() {
        format!(" (the first {}; the read API lists all)", lines.len())
    } else {
        String::new()
    };
    let head = format!("{total} {what}{more}:");
    let text =
        std::iter::once(head.clone()).chain(lines.iter().map(|(t, _)| format!("• {t}"))).collect::<Vec<_>>().join("\n");
    let items: String = lines.iter().map(|(_, h)| format!("<li>{h}</li>")).collect();
    Ok(Answer { text, html: format!("<p>{}</p><ul>{items}</ul>", escape(&head)) })
}

/// How many holders who cannot be invited `show` names.
const SHOWN_FAILURES: u32 = 20;

/// Runs a command for an admin.
pub async fn run(state: &Services, command: Command, now: DateTime<Utc>) -> Result<Answer, StoreError> {
    let not_found = |id: &ReservationId| Answer::plain(format!("There is no reservation `{}`.", id.as_str()));
    match command {
        Command::Help => Ok(help()),
        Command::List(only) => list(state, only, now).await,
        Command::Show(id) => Ok(match state.store.reservation(&id).await? {
            Some(record) => show(state, &record, &state.store.invite_failures(&id, SHOWN_FAILURES).await?, now),
            None => not_found(&id),
        }),
        Command::Outbox => Ok(outbox(&state.store.outbox_status().await?, state.config.platform.is_some(), now)),
        Command::OutboxResume => {
            let was_paused = state.store.resume_outbox(now).await?;
            state.outbox.notify_one();
            tracing::info!(was_paused, "admin resumed the outbox");
            Ok(Answer::plain(if was_paused {
                "Delivery to the platform resumed: the paused events are sent now."
            } else {
                "Delivery to the platform was not paused; nothing to resume."
            }))
        }
        Command::Act(action, id) => {
            let Some(record) = state.store.reservation(&id).await? else { return Ok(not_found(&id)) };
            let (times, status) = schedule::at(&record, &state.config.rooms, now);
            let due = schedule::due_phase(&record, &times, now);
            let refused = match (action, status.phase) {
                (_, Phase::Cancelled) => Some("is cancelled"),
                (AdminAction::OpenNow | AdminAction::ArchiveNow, Phase::Archived) => Some("is already archived"),
                (AdminAction::OpenNow, Phase::Open | Phase::Live | Phase::Ended) if record.room_id.is_some() => {
                    Some("is already open")
                }
                (AdminAction::OpenNow, _) if due == Phase::Ended && record.room_id.is_none() => {
                    Some("has ended without a room; its room never opens")
                }
                _ => None,
            };
            if let Some(why) = refused {
                return Ok(Answer::plain(format!("`{}` {why}; nothing to do.", id.as_str())));
            }
            if !state.store.admin_action(&id, action, now).await? {
                return Ok(not_found(&id));
            }
            state.wake.notify_one();
            tracing::info!(reservation_id = %id, action = ?action, "admin command recorded");
            let done = match action {
                AdminAction::OpenNow => "Opening the room of `{id}` now.",
                AdminAction::ArchiveNow => "Archiving the room of `{id}` now.",
                AdminAction::Retry => "Retrying `{id}` now.",
            };
            Ok(Answer::plain(done.replace("{id}", id.as_str())))
        }
    }
}
