//! Fixtures for unit tests: a reservation on 27 Nov 2026, 19:00–21:00 UTC, and the
//! example config's room margins (open 30 min before, archive 1 h after).

use chrono::{DateTime, TimeZone as _, Utc};
use ruma::OwnedUserId;

use crate::{
    config::{ArchiveMode, JoinRule, RoomsConfig},
    model::{Reservation, ReservationId, ReservationRecord, Signals, TicketCounts, Title},
};

/// 27 Nov 2026 at `h:m` UTC.
pub fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, h, m, 0).unwrap()
}

pub fn rooms() -> RoomsConfig {
    RoomsConfig {
        open_before: std::time::Duration::from_secs(30 * 60),
        close_after: std::time::Duration::from_secs(3600),
        max_overrun: std::time::Duration::from_secs(6 * 3600),
        archive_mode: ArchiveMode::ReadOnly,
        join_rule: JoinRule::Invite,
        reminders: vec![std::time::Duration::from_secs(600)],
        closing_warning: std::time::Duration::from_secs(300),
        allow_http_stream_urls: false,
        transcript: false,
        transcript_retention: std::time::Duration::from_secs(30 * 86400),
        transcript_wait: std::time::Duration::from_secs(600),
        rules: crate::model::ChatRules::default(),
        reconnect_grace: std::time::Duration::from_secs(10),
        auto_join: crate::model::AutoJoin::Off,
        join_pace: crate::config::JoinPace::default(),
        server_name: ruma::OwnedServerName::try_from("example.org").unwrap(),
        admin_join: true,
    }
}

pub fn user(name: &str) -> OwnedUserId {
    OwnedUserId::try_from(format!("@{name}:example.org")).unwrap()
}

/// "Jazz", 19:00–21:00, opens 18:30, archived 22:00, with these hosts.
pub fn record(signals: Signals, hosts: Vec<OwnedUserId>) -> ReservationRecord {
    ReservationRecord {
        reservation: Reservation {
            id: ReservationId::parse("jazz").unwrap(),
            revision: None,
            title: Title::parse("Jazz").unwrap(),
            description: None,
            starts_at: t(19, 0),
            ends_at: t(21, 0),
            stream_url: None,
            channel: None,
            hosts,
            open_before_seconds: None,
            close_after_seconds: None,
            transcript: None,
            stream_key: None,
            rules: Default::default(),
            moderators: Vec::new(),
            archive: Default::default(),
            replay_offset: None,
            auto_join: None,
        },
        signals,
        tickets: TicketCounts::default(),
        room_id: None,
        members: Default::default(),
        archived: false,
        last_error: None,
        attempts: 0,
    }
}
