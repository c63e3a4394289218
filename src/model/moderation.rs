//! The moderation record (docs/moderation.md): what was done about a reservation's chat
//! and by whom. Web fans' reports ([`NewReport`]) and moderation's actions
//! ([`NewAction`]: rules broken, redactions, timeouts, bans, modes) go into the same
//! record, each once, and read back as [`ModerationEntry`].

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use ruma::{EventId, OwnedEventId, OwnedUserId, UserId};
use serde_json::{Value, json};

use super::{ReservationId, ViewerKey, webchat::named};

/// The longest reason a report may give, in Unicode characters.
pub const MAX_REPORT_REASON: usize = 500;

/// Why a fan reports a message: at most [`MAX_REPORT_REASON`] characters of text with no
/// control characters but line breaks; it may be empty (the report alone says enough).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportReason(String);

impl ReportReason {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let length = text.chars().count();
        if length > MAX_REPORT_REASON {
            return Err(format!("reason is {length} characters long; the limit is {MAX_REPORT_REASON}"));
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err("reason holds control characters".to_owned());
        }
        Ok(Self(text.to_owned()))
    }

    /// Whatever `text` is, made one: control characters but line breaks dropped, cut at
    /// [`MAX_REPORT_REASON`] characters. For reasons Foyer words itself, or a moderator's
    /// words that are recorded rather than refused.
    pub fn lossy(text: &str) -> Self {
        let kept = text.trim().chars().filter(|c| !c.is_control() || *c == '\n').take(MAX_REPORT_REASON);
        Self(kept.collect::<String>().trim().to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The reported message as the chat showed it: what the platform's moderators are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedMessage {
    pub sender_name: String,
    pub sender_role: String,
    pub body: String,
    pub origin_ts: DateTime<Utc>,
}

/// A viewer's report of a message to record, once per viewer and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    pub reservation: ReservationId,
    pub event_id: OwnedEventId,
    pub reporter: ViewerKey,
    pub reason: ReportReason,
    pub message: ReportedMessage,
    pub at: DateTime<Utc>,
}

/// A reason an action gives (a moderator's words, a rule's name): the same bounds as a
/// report's.
pub type ActionReason = ReportReason;

named! {
    /// A chat rule a message can break; its name is the metric's `rule` label.
    Rule {
        SlowMode = "slow_mode",
        MaxLength = "max_length",
        Links = "links",
        BlockedWords = "blocked_words",
        Duplicate = "duplicate",
    }
}

named! {
    /// Who may post in a room, by its power levels (docs/moderation.md).
    ChatMode {
        Open = "open",
        ReactionsOnly = "reactions_only",
        HostsOnly = "hosts_only",
    }
}

/// A room as created is open. (`named!` writes the enum, so the default is written here.)
#[allow(clippy::derivable_impls)]
impl Default for ChatMode {
    fn default() -> Self {
        Self::Open
    }
}

named! {
    /// The kinds of entry in the moderation record: the `action` of the read API, of
    /// `member.moderated` and of the metric.
    ActionKind {
        Rule = "rule",
        Redaction = "redaction",
        Timeout = "timeout",
        Untimeout = "untimeout",
        Ban = "ban",
        Unban = "unban",
        Mode = "mode",
        Slow = "slow",
        /// A web fan's report ([`NewReport`], recorded with `message.reported`).
        Report = "report",
    }
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Foyer's bot, applying a rule or lifting a timeout on time.
    Bot,
    /// A host or moderator in Matrix.
    Member(OwnedUserId),
    /// A web viewer, by ticket or platform viewer id (a report's reporter).
    Viewer(ViewerKey),
}

impl Actor {
    /// The stored kind: `bot`, `member`, or the viewer's `ticket` or `platform`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bot => "bot",
            Self::Member(_) => "member",
            Self::Viewer(viewer) => viewer.kind(),
        }
    }

    /// The stored value: empty for the bot, a Matrix ID, a ticket or viewer id.
    pub fn value(&self) -> &str {
        match self {
            Self::Bot => "",
            Self::Member(user) => user.as_str(),
            Self::Viewer(viewer) => viewer.value(),
        }
    }

    /// An actor read back from its kind and value.
    pub fn parse(kind: &str, value: &str) -> Result<Self, String> {
        match kind {
            "bot" if value.is_empty() => Ok(Self::Bot),
            "bot" => Err("the bot is stored without a value".to_owned()),
            "member" => OwnedUserId::try_from(value).map(Self::Member).map_err(|e| format!("{value:?}: {e}")),
            other => ViewerKey::parse(other, value).map(Self::Viewer),
        }
    }

    /// As the read API and `member.moderated` show it: `{"kind": "bot"}`,
    /// `{"kind": "member", "user_id"}`, `{"kind": "viewer", "ticket_id" | "sub"}`.
    pub fn view(&self) -> Value {
        match self {
            Self::Bot => json!({"kind": "bot"}),
            Self::Member(user) => json!({"kind": "member", "user_id": user.as_str()}),
            Self::Viewer(viewer) => {
                let mut view = viewer_view(viewer);
                view["kind"] = json!("viewer");
                view
            }
        }
    }
}

/// `{"ticket_id"}` or `{"sub"}`, as `message.reported` names a reporter.
fn viewer_view(viewer: &ViewerKey) -> Value {
    match viewer {
        ViewerKey::Ticket(ticket) => json!({"ticket_id": ticket.as_str()}),
        ViewerKey::Platform(sub) => json!({"sub": sub.as_str()}),
    }
}

/// Whom an action concerns: a member by Matrix ID, with their ticket or `sub` when known,
/// or a web fan refused before Foyer made them a Matrix user. Never neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeratedMember {
    user_id: Option<OwnedUserId>,
    viewer: Option<ViewerKey>,
}

impl ModeratedMember {
    /// A member of the room, with the ticket or `sub` they came by when Foyer knows it.
    pub fn user(user_id: OwnedUserId, viewer: Option<ViewerKey>) -> Self {
        Self { user_id: Some(user_id), viewer }
    }

    /// A web fan who has no Matrix user yet (their first post was refused).
    pub fn web_viewer(viewer: ViewerKey) -> Self {
        Self { user_id: None, viewer: Some(viewer) }
    }

    /// Read back; `None` when neither is stored (an action on the room).
    pub fn from_parts(user_id: Option<OwnedUserId>, viewer: Option<ViewerKey>) -> Option<Self> {
        (user_id.is_some() || viewer.is_some()).then_some(Self { user_id, viewer })
    }

    pub fn user_id(&self) -> Option<&UserId> {
        self.user_id.as_deref()
    }

    /// Who posts, as the store keeps their posts and timeouts: `member:<user id>` for a
    /// Matrix member, `<viewer kind>:<value>` for a web fan (who posts through the gateway
    /// by their ticket or `sub`).
    pub fn sender_key(&self) -> String {
        match (&self.user_id, &self.viewer) {
            (Some(user), _) => format!("member:{user}"),
            (None, Some(viewer)) => format!("{}:{}", viewer.kind(), viewer.value()),
            (None, None) => unreachable!("a moderated member is a user or a viewer"),
        }
    }

    pub fn viewer(&self) -> Option<&ViewerKey> {
        self.viewer.as_ref()
    }

    /// `{"user_id", "ticket_id" | "sub"}`, each part only when known.
    pub fn view(&self) -> Value {
        let mut view = self.viewer.as_ref().map(viewer_view).unwrap_or_else(|| json!({}));
        if let Some(user) = &self.user_id {
            view["user_id"] = json!(user.as_str());
        }
        view
    }

    /// What tells this member from another in an action's identity.
    fn identity(&self) -> [&str; 3] {
        let (kind, value) = self.viewer.as_ref().map_or(("", ""), |v| (v.kind(), v.value()));
        [self.user_id.as_ref().map_or("", |u| u.as_str()), kind, value]
    }
}

/// What moderation did, with what makes it one ([`NewAction::identity`]). A report is
/// not one of them: it is recorded by the store's `record_report`, with the message the
/// platform is told of in `message.reported`; it reads back as [`ActionKind::Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModerationAction {
    /// A message broke `rule`: `event_id` in Matrix (the bot redacts it next), none for a
    /// web fan's post refused before it was sent. It counts as a strike.
    Rule {
        rule: Rule,
        member: ModeratedMember,
        event_id: Option<OwnedEventId>,
    },
    /// `event_id` was redacted, for `rule` when the bot did it for one.
    Redaction {
        member: ModeratedMember,
        event_id: OwnedEventId,
        rule: Option<Rule>,
    },
    /// The member cannot post until `until`; `event_id` is the command, if one did it.
    Timeout {
        member: ModeratedMember,
        duration: TimeoutLength,
        until: DateTime<Utc>,
        event_id: Option<OwnedEventId>,
    },
    /// The timeout that ran until `until` was lifted, on time or by a command.
    Untimeout {
        member: ModeratedMember,
        until: DateTime<Utc>,
        event_id: Option<OwnedEventId>,
    },
    /// The member is banned, bound to their ticket or `sub`; `event_id` is the command or
    /// the Matrix ban.
    Ban {
        member: ModeratedMember,
        event_id: Option<OwnedEventId>,
    },
    Unban {
        member: ModeratedMember,
        event_id: Option<OwnedEventId>,
    },
    /// The room's mode changed, by a command (`event_id`) or the platform.
    Mode {
        mode: ChatMode,
        event_id: Option<OwnedEventId>,
    },
    /// Slow mode set to `seconds` between a member's messages (0: off).
    Slow {
        seconds: u32,
        event_id: Option<OwnedEventId>,
    },
}

/// How long a timeout lasts: 1 s to a year, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeoutLength(u32);

/// The longest timeout: a year, in seconds.
pub const MAX_TIMEOUT_SECONDS: u32 = 366 * 24 * 3600;

impl TimeoutLength {
    pub fn seconds(seconds: u32) -> Result<Self, String> {
        if seconds == 0 || seconds > MAX_TIMEOUT_SECONDS {
            return Err(format!("a timeout lasts 1 to {MAX_TIMEOUT_SECONDS} seconds, not {seconds}"));
        }
        Ok(Self(seconds))
    }

    pub fn as_seconds(self) -> u32 {
        self.0
    }
}

impl ModerationAction {
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::Rule { .. } => ActionKind::Rule,
            Self::Redaction { .. } => ActionKind::Redaction,
            Self::Timeout { .. } => ActionKind::Timeout,
            Self::Untimeout { .. } => ActionKind::Untimeout,
            Self::Ban { .. } => ActionKind::Ban,
            Self::Unban { .. } => ActionKind::Unban,
            Self::Mode { .. } => ActionKind::Mode,
            Self::Slow { .. } => ActionKind::Slow,
        }
    }

    /// The rule it was for, if any: the metric's `rule` label.
    pub fn rule(&self) -> Option<Rule> {
        match self {
            Self::Rule { rule, .. } => Some(*rule),
            Self::Redaction { rule, .. } => *rule,
            _ => None,
        }
    }

    pub fn member(&self) -> Option<&ModeratedMember> {
        match self {
            Self::Rule { member, .. }
            | Self::Redaction { member, .. }
            | Self::Timeout { member, .. }
            | Self::Untimeout { member, .. }
            | Self::Ban { member, .. }
            | Self::Unban { member, .. } => Some(member),
            Self::Mode { .. } | Self::Slow { .. } => None,
        }
    }

    pub fn event_id(&self) -> Option<&EventId> {
        match self {
            Self::Redaction { event_id, .. } => Some(event_id),
            Self::Rule { event_id, .. }
            | Self::Timeout { event_id, .. }
            | Self::Untimeout { event_id, .. }
            | Self::Ban { event_id, .. }
            | Self::Unban { event_id, .. }
            | Self::Mode { event_id, .. }
            | Self::Slow { event_id, .. } => event_id.as_deref(),
        }
    }

    /// What the kind adds: `rule`, `seconds` and `until`, `mode`.
    pub fn details(&self) -> Value {
        match self {
            Self::Rule { rule, .. } | Self::Redaction { rule: Some(rule), .. } => json!({"rule": rule.as_str()}),
            Self::Timeout { duration, until, .. } => {
                json!({"seconds": duration.as_seconds(), "until": rfc3339(*until)})
            }
            Self::Untimeout { until, .. } => json!({"until": rfc3339(*until)}),
            Self::Mode { mode, .. } => json!({"mode": mode.as_str()}),
            Self::Slow { seconds, .. } => json!({"seconds": seconds}),
            Self::Redaction { rule: None, .. } | Self::Ban { .. } | Self::Unban { .. } => json!({}),
        }
    }
}

/// An action to record, once ([`NewAction::identity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAction {
    pub reservation: ReservationId,
    pub action: ModerationAction,
    pub actor: Actor,
    pub reason: ActionReason,
    pub at: DateTime<Utc>,
}

impl NewAction {
    /// What makes the action one, whoever records it and however often (a retry, a
    /// second instance): the store keeps one row per reservation and identity.
    /// - a rule: the rule, the member, and the message that broke it (one per event and
    ///   rule), or for a web post refused before it was an event, its instant;
    /// - a redaction: the redacted event (an event is redacted once);
    /// - a timeout: the member and the instant it ends (a retry computes the same one);
    /// - an untimeout: the member and the end of the timeout it lifts (lifted once,
    ///   whether on time, by a command, or by two instances at once);
    /// - a ban, an unban, a mode, a slow mode: its object and the event that did it (a
    ///   command, a Matrix ban), or without one (the platform's update), its instant.
    pub fn identity(&self) -> Vec<String> {
        let occasion = || match self.action.event_id() {
            Some(event) => event.as_str().to_owned(),
            None => format!("at:{}", self.at.timestamp_millis()),
        };
        let member = |m: &ModeratedMember| m.identity().map(str::to_owned);
        let kind = self.action.kind().as_str().to_owned();
        let mut parts = vec![kind];
        match &self.action {
            ModerationAction::Rule { rule, member: m, .. } => {
                parts.push(rule.as_str().to_owned());
                parts.extend(member(m));
                parts.push(occasion());
            }
            ModerationAction::Redaction { event_id, .. } => parts.push(event_id.as_str().to_owned()),
            ModerationAction::Timeout { member: m, until, .. }
            | ModerationAction::Untimeout { member: m, until, .. } => {
                parts.extend(member(m));
                parts.push(until.timestamp_millis().to_string());
            }
            ModerationAction::Ban { member: m, .. } | ModerationAction::Unban { member: m, .. } => {
                parts.extend(member(m));
                parts.push(occasion());
            }
            ModerationAction::Mode { mode, .. } => {
                parts.push(mode.as_str().to_owned());
                parts.push(occasion());
            }
            ModerationAction::Slow { seconds, .. } => {
                parts.push(seconds.to_string());
                parts.push(occasion());
            }
        }
        parts
    }

    /// As the record reads it back.
    pub fn entry(&self) -> ModerationEntry {
        ModerationEntry {
            at: self.at,
            kind: self.action.kind(),
            actor: self.actor.clone(),
            member: self.action.member().cloned(),
            event_id: self.action.event_id().map(ToOwned::to_owned),
            reason: self.reason.as_str().to_owned(),
            details: self.action.details(),
        }
    }
}

/// One entry of the moderation record as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct ModerationEntry {
    pub at: DateTime<Utc>,
    pub kind: ActionKind,
    pub actor: Actor,
    pub member: Option<ModeratedMember>,
    pub event_id: Option<OwnedEventId>,
    pub reason: String,
    /// A JSON object: what the kind adds (`rule`, `seconds`, `until`, `mode`).
    pub details: Value,
}

impl ModerationEntry {
    /// `{at, action, actor, member, event_id, reason, details}`: an entry of the read
    /// API, and the `data` of `member.moderated` with the reservation's id.
    pub fn view(&self) -> Value {
        json!({
            "at": rfc3339(self.at),
            "action": self.kind.as_str(),
            "actor": self.actor.view(),
            "member": self.member.as_ref().map(ModeratedMember::view),
            "event_id": self.event_id.as_ref().map(|e| e.as_str()),
            "reason": self.reason,
            "details": self.details,
        })
    }
}

/// Where a page of the record ends: the last entry's time and action id, in the read
/// API's `next` as `<unix ms>-<action id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordCursor {
    pub at_millis: i64,
    pub action_id: String,
}

impl RecordCursor {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a page's next value");
        let (at, id) = text.split_once('-').ok_or_else(bad)?;
        let at_millis = at.parse::<i64>().map_err(|_| bad())?;
        let hex = id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex || at_millis < 0 {
            return Err(bad());
        }
        Ok(Self { at_millis, action_id: id.to_owned() })
    }
}

impl fmt::Display for RecordCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.at_millis, self.action_id)
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_short_plain_text_and_may_be_empty() {
        assert_eq!(ReportReason::parse("  spam \n").unwrap().as_str(), "spam");
        assert_eq!(ReportReason::parse("").unwrap().as_str(), "");
        assert_eq!(ReportReason::parse("two\nlines").unwrap().as_str(), "two\nlines");
        assert!(ReportReason::parse(&"é".repeat(MAX_REPORT_REASON)).is_ok());
        let long = ReportReason::parse(&"é".repeat(MAX_REPORT_REASON + 1)).unwrap_err();
        assert!(long.contains("501 characters"), "{long}");
        assert!(ReportReason::parse("bell\u{7}").unwrap_err().contains("control"));
    }

    fn ada() -> ModeratedMember {
        let ticket = ViewerKey::Ticket(super::super::TicketId::parse("t-7").unwrap());
        ModeratedMember::user(OwnedUserId::try_from("@ada:example.org").unwrap(), Some(ticket))
    }

    fn event(id: &str) -> OwnedEventId {
        OwnedEventId::try_from(format!("${id}:example.org")).unwrap()
    }

    fn action(action: ModerationAction, at_ms: i64) -> NewAction {
        NewAction {
            reservation: ReservationId::parse("jazz").unwrap(),
            action,
            actor: Actor::Bot,
            reason: ActionReason::parse("").unwrap(),
            at: DateTime::from_timestamp_millis(at_ms).unwrap(),
        }
    }

    #[test]
    fn an_action_is_one_by_what_it_is_about_not_by_when_it_was_recorded() {
        let rule = |rule, event_id: Option<OwnedEventId>, at| {
            action(ModerationAction::Rule { rule, member: ada(), event_id }, at).identity()
        };
        // A message breaking a rule: one per event and rule, whenever recorded.
        assert_eq!(rule(Rule::Links, Some(event("a")), 1), rule(Rule::Links, Some(event("a")), 2));
        assert_ne!(rule(Rule::Links, Some(event("a")), 1), rule(Rule::MaxLength, Some(event("a")), 1));
        assert_ne!(rule(Rule::Links, Some(event("a")), 1), rule(Rule::Links, Some(event("b")), 1));
        // A web post refused before it was an event: one per instant.
        assert_ne!(rule(Rule::Links, None, 1), rule(Rule::Links, None, 2));
        // A timeout by when it ends; its lifting by the end of the timeout it lifts.
        let until = DateTime::from_timestamp_millis(600_000).unwrap();
        let duration = TimeoutLength::seconds(600).unwrap();
        let timeout = |at| action(ModerationAction::Timeout { member: ada(), duration, until, event_id: None }, at);
        assert_eq!(timeout(1).identity(), timeout(5).identity());
        let lifted = |at| action(ModerationAction::Untimeout { member: ada(), until, event_id: None }, at);
        assert_eq!(lifted(600_000).identity(), lifted(600_900).identity());
        assert_ne!(lifted(1).identity(), timeout(1).identity());
        // A ban by the command or Matrix ban that did it: banned, unbanned, banned again is three.
        let ban = |e| action(ModerationAction::Ban { member: ada(), event_id: Some(event(e)) }, 1).identity();
        assert_ne!(ban("a"), ban("b"));
        let unban = action(ModerationAction::Unban { member: ada(), event_id: Some(event("a")) }, 1).identity();
        assert_ne!(ban("a"), unban);
        // The member is part of it: the same command time for two members is two timeouts.
        let bob = ModeratedMember::user(OwnedUserId::try_from("@bob:example.org").unwrap(), None);
        let other = action(ModerationAction::Timeout { member: bob, duration, until, event_id: None }, 1);
        assert_ne!(other.identity(), timeout(1).identity());
    }

    #[test]
    fn an_entry_shows_who_whom_and_what_the_kind_adds() {
        let until = DateTime::from_timestamp_millis(1_795_807_390_000).unwrap();
        let mut new = action(
            ModerationAction::Timeout {
                member: ada(),
                duration: TimeoutLength::seconds(600).unwrap(),
                until,
                event_id: Some(event("cmd")),
            },
            1_795_806_790_000,
        );
        new.actor = Actor::Member(OwnedUserId::try_from("@mod:example.org").unwrap());
        let view = new.entry().view();
        assert_eq!(view["action"], "timeout");
        assert_eq!(view["actor"], json!({"kind": "member", "user_id": "@mod:example.org"}));
        assert_eq!(view["member"], json!({"user_id": "@ada:example.org", "ticket_id": "t-7"}));
        assert_eq!(view["event_id"], "$cmd:example.org");
        assert_eq!(view["details"], json!({"seconds": 600, "until": "2026-11-27T19:23:10.000Z"}));
        let mode = action(ModerationAction::Mode { mode: ChatMode::HostsOnly, event_id: None }, 0).entry().view();
        assert_eq!((&mode["member"], &mode["details"]), (&Value::Null, &json!({"mode": "hosts_only"})));
        assert_eq!(mode["actor"], json!({"kind": "bot"}));
    }

    #[test]
    fn actors_names_and_cursors_read_back_and_refuse_what_is_not_one() {
        for actor in [
            Actor::Bot,
            Actor::Member(OwnedUserId::try_from("@mod:example.org").unwrap()),
            Actor::Viewer(ViewerKey::Platform(super::super::ViewerSub::parse("viewer-9").unwrap())),
        ] {
            assert_eq!(Actor::parse(actor.kind(), actor.value()).unwrap(), actor);
        }
        assert!(Actor::parse("member", "not an id").is_err());
        assert!(Actor::parse("bot", "@x:example.org").is_err());
        for rule in Rule::ALL {
            assert_eq!(Rule::parse(rule.as_str()), Ok(*rule));
        }
        assert!(Rule::parse("caps").unwrap_err().contains("\"caps\""));
        assert!(ChatMode::parse("reactions").is_err());
        assert!(TimeoutLength::seconds(0).is_err() && TimeoutLength::seconds(MAX_TIMEOUT_SECONDS + 1).is_err());
        assert!(ModeratedMember::from_parts(None, None).is_none());
        let cursor = RecordCursor { at_millis: 42, action_id: "ab".repeat(32) };
        assert_eq!(RecordCursor::parse(&cursor.to_string()), Ok(cursor));
        for bad in
            ["", "42", "x-abab", "42-ABAB", &format!("-1-{}", "ab".repeat(32)), &format!("42-{}", "ab".repeat(31))]
        {
            assert!(RecordCursor::parse(bad).unwrap_err().contains("not a page's next value"), "{bad}");
        }
    }
}
