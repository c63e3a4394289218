//! `docs/openapi.yaml` held to the code: its paths are the routes of [`ROUTES`], which
//! the routers are built from; its inbound examples pass Foyer's own payload parser; its
//! outbound examples are what Foyer sends. (`scripts/test` also runs a validator on it.)

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::*;
use crate::{
    config::ArchiveMode,
    model::{
        ActionReason, Actor, ArchivedTranscript, BoundHow, ChatMode, ModeratedMember, ModerationAction, NewAction,
        NewReport, ReportReason, ReportedMessage, ReservationId, Rule, TicketId, TimeoutLength, ViewerKey,
    },
    outbox::{EventType, OutboundEvent},
};

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("docs/openapi.yaml is readable");
    serde_yaml::from_str(&text).expect("docs/openapi.yaml is YAML")
}

const OPERATIONS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

#[test]
fn every_route_is_documented_and_every_documented_route_is_served() {
    let doc = document();
    let paths = doc["paths"].as_object().expect("the document has paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item is an object");
            OPERATIONS.iter().filter(|op| item.contains_key(**op)).map(|op| (op.to_uppercase(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = all_routes().map(|r| (r.method.to_string(), r.path.to_owned())).collect();
    assert_eq!(served.len(), all_routes().count(), "a route is in a table twice");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty(), "served but not in docs/openapi.yaml: {undocumented:?}");
    assert!(unserved.is_empty(), "in docs/openapi.yaml but not served: {unserved:?}");
}

#[test]
fn every_route_sits_under_its_groups_prefix() {
    for route in all_routes() {
        let rest = route.path.strip_prefix(route.group.prefix());
        assert!(rest.is_some_and(|r| r.starts_with('/')), "{} is not under {:?}", route.path, route.group.prefix());
        assert!(MethodFilter::try_from(route.method.clone()).is_ok(), "{} {}", route.method, route.path);
    }
}

/// The routers are built from [`ROUTES`] alone: no file under `src/http/` adds a route
/// by hand (which the document test could not see).
#[test]
fn no_route_is_added_outside_the_table() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    let mut by_hand = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("http/tests.rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for needle in [".route(", ".route_service(", ".nest_service(", ".fallback_service("] {
                by_hand.extend(text.match_indices(needle).map(|_| format!("{}: {needle}", path.display())));
            }
        }
    }
    // The one call is `routes`' own, which reads the table.
    assert_eq!(by_hand, vec![format!("{dir}/mod.rs: .route(")], "routes added outside ROUTES");
}

/// The examples of `POST /webhooks/v1/events`, by name.
fn inbound_examples(doc: &Value) -> Vec<(String, Value)> {
    let examples =
        doc["paths"]["/webhooks/v1/events"]["post"]["requestBody"]["content"]["application/json"]["examples"]
            .as_object()
            .expect("the webhook has examples");
    examples.iter().map(|(name, example)| (name.clone(), example["value"].clone())).collect()
}

#[test]
fn every_webhook_example_passes_foyers_own_validation() {
    let rules = webhooks::payload::Rules {
        bot: Some(ruma::OwnedUserId::try_from("@foyer:example.org").unwrap()),
        ..Default::default()
    };
    // After every example's times: a stream signal is not in the future.
    let now: DateTime<Utc> = "2026-11-28T00:00:00Z".parse().unwrap();
    let examples = inbound_examples(&document());
    let mut kinds = BTreeSet::new();
    for (name, example) in &examples {
        let body = serde_json::to_vec(example).unwrap();
        let (kind, _) = webhooks::payload::parse_typed(&body, now, &rules)
            .unwrap_or_else(|e| panic!("the example {name} is refused: {e}"));
        assert_eq!(kind, name, "the example {name} is a {kind}");
        kinds.insert(kind);
    }
    let every = [
        "reservation.created",
        "reservation.updated",
        "reservation.cancelled",
        "ticket.granted",
        "ticket.revoked",
        "stream.started",
        "stream.ended",
        "follower.added",
        "follower.removed",
        "series.upserted",
        "series.cancelled",
    ];
    assert_eq!(kinds, BTreeSet::from(every), "one example of each event type");
}

/// The schema's list of inbound types, and its discriminator, name the same types as the
/// examples (which the parser reads).
#[test]
fn the_inbound_schema_names_every_type_the_parser_reads() {
    let doc = document();
    let mapping = doc["components"]["schemas"]["InboundEvent"]["discriminator"]["mapping"].as_object().unwrap();
    let mapped: BTreeSet<&str> = mapping.keys().map(String::as_str).collect();
    let examples = inbound_examples(&doc);
    let named: BTreeSet<&str> = examples.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(mapped, named);
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().expect("a time is a string").parse().expect("a time is RFC 3339")
}

fn text(value: &Value) -> &str {
    value.as_str().expect("a string")
}

/// What Foyer itself builds from the example's own values.
fn built(kind: &str, example: &Value) -> OutboundEvent {
    let data = &example["data"];
    if kind == "series.expanded" {
        let series = crate::model::SeriesId::parse(text(&data["series_id"])).unwrap();
        let occurrences: Vec<_> = data["occurrences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| crate::model::Occurrence {
                id: ReservationId::parse(text(&o["reservation_id"])).unwrap(),
                original_start: time(&o["original_start"]),
                starts_at: time(&o["starts_at"]),
                ends_at: time(&o["ends_at"]),
                moved: false,
            })
            .collect();
        return OutboundEvent::series_expanded(&series, &occurrences, time(&example["timestamp"]));
    }
    let id = ReservationId::parse(text(&data["reservation_id"])).unwrap();
    let at = time(&example["timestamp"]);
    let room = |v: &Value| ruma::OwnedRoomId::try_from(text(v)).unwrap();
    let count = |v: &Value| u32::try_from(v.as_u64().unwrap()).unwrap();
    match kind {
        "room.opened" => {
            let alias = ruma::OwnedRoomAliasId::try_from(text(&data["room_alias"])).unwrap();
            OutboundEvent::room_opened(&id, &room(&data["room_id"]), &alias, time(&data["opened_at"]))
        }
        "room.archived" => {
            let mode = [ArchiveMode::ReadOnly, ArchiveMode::Kick, ArchiveMode::Delete]
                .into_iter()
                .find(|m| m.as_str() == text(&data["mode"]))
                .unwrap();
            let transcript = match (&data["transcript"], data.get("transcript_error")) {
                (Value::Object(t), _) => ArchivedTranscript::Made {
                    url: text(&t["url"]).to_owned(),
                    messages: t["messages"].as_u64().unwrap(),
                },
                (_, Some(error)) => ArchivedTranscript::Missing { error: text(error).to_owned() },
                _ => ArchivedTranscript::NotWanted,
            };
            OutboundEvent::room_archived(
                &id,
                Some(&room(&data["room_id"])),
                mode,
                &transcript,
                time(&data["archived_at"]),
            )
        }
        "ticket.claimed" => {
            let how = [BoundHow::Lookup, BoundHow::DirectMessage, BoundHow::Knock, BoundHow::Correction]
                .into_iter()
                .find(|h| h.as_str() == text(&data["how"]))
                .unwrap();
            let user = ruma::OwnedUserId::try_from(text(&data["user_id"])).unwrap();
            OutboundEvent::ticket_claimed(&id, text(&data["ticket_id"]), &user, how, at)
        }
        "ticket.uninvitable" => {
            OutboundEvent::ticket_uninvitable(&id, text(&data["ticket_id"]), text(&data["error"]), at)
        }
        "reservation.failing" => OutboundEvent::reservation_failing(
            &id,
            text(&data["step"]),
            text(&data["error"]),
            count(&data["attempts"]),
            at,
        ),
        "reservation.recovered" => OutboundEvent::reservation_recovered(&id, count(&data["attempts"]), at),
        "message.reported" => {
            let message = &data["message"];
            OutboundEvent::message_reported(&NewReport {
                reservation: id,
                event_id: ruma::OwnedEventId::try_from(text(&data["event_id"])).unwrap(),
                reporter: ViewerKey::Ticket(TicketId::parse(text(&data["reporter"]["ticket_id"])).unwrap()),
                reason: ReportReason::parse(text(&data["reason"])).unwrap(),
                message: ReportedMessage {
                    sender_name: text(&message["sender_name"]).to_owned(),
                    sender_role: text(&message["sender_role"]).to_owned(),
                    body: text(&message["body"]).to_owned(),
                    origin_ts: time(&message["sent_at"]),
                },
                at: time(&data["reported_at"]),
            })
        }
        "member.moderated" => {
            let action = moderation_action(text(&data["action"]), data);
            let new = NewAction {
                reservation: id,
                action,
                actor: viewed_actor(&data["actor"]),
                reason: ActionReason::parse(text(&data["reason"])).unwrap(),
                at: time(&data["at"]),
            };
            // The action id is the store's digest; any one makes the same body.
            OutboundEvent::member_moderated(&new, "0")
        }
        other => panic!("{other} is not an outbound event"),
    }
}

/// A `member.moderated` example's actor, read back.
fn viewed_actor(actor: &Value) -> Actor {
    match text(&actor["kind"]) {
        "bot" => Actor::Bot,
        "member" => Actor::Member(ruma::OwnedUserId::try_from(text(&actor["user_id"])).unwrap()),
        _ => Actor::Viewer(viewed_viewer(actor).expect("a viewer names a ticket or sub")),
    }
}

fn viewed_viewer(view: &Value) -> Option<ViewerKey> {
    match (view.get("ticket_id"), view.get("sub")) {
        (Some(ticket), _) => Some(ViewerKey::Ticket(TicketId::parse(text(ticket)).unwrap())),
        (_, Some(sub)) => Some(ViewerKey::Platform(crate::model::ViewerSub::parse(text(sub)).unwrap())),
        _ => None,
    }
}

/// A `member.moderated` example's action, from its `action`, `member`, `event_id` and `details`.
fn moderation_action(kind: &str, data: &Value) -> ModerationAction {
    let member = || {
        let member = &data["member"];
        let user = member.get("user_id").map(|u| ruma::OwnedUserId::try_from(text(u)).unwrap());
        ModeratedMember::from_parts(user, viewed_viewer(member)).expect("the action names its member")
    };
    let event_id = data["event_id"].as_str().map(|e| ruma::OwnedEventId::try_from(e).unwrap());
    let details = &data["details"];
    let rule = || details.get("rule").map(|r| Rule::parse(text(r)).unwrap());
    let until = || time(&details["until"]);
    match kind {
        "rule" => ModerationAction::Rule { rule: rule().unwrap(), member: member(), event_id },
        "redaction" => ModerationAction::Redaction { member: member(), event_id: event_id.unwrap(), rule: rule() },
        "timeout" => {
            let seconds = u32::try_from(details["seconds"].as_u64().unwrap()).unwrap();
            let duration = TimeoutLength::seconds(seconds).unwrap();
            ModerationAction::Timeout { member: member(), duration, until: until(), event_id }
        }
        "untimeout" => ModerationAction::Untimeout { member: member(), until: until(), event_id },
        "ban" => ModerationAction::Ban { member: member(), event_id },
        "unban" => ModerationAction::Unban { member: member(), event_id },
        "mode" => ModerationAction::Mode { mode: ChatMode::parse(text(&details["mode"])).unwrap(), event_id },
        "slow" => {
            ModerationAction::Slow { seconds: u32::try_from(details["seconds"].as_u64().unwrap()).unwrap(), event_id }
        }
        other => panic!("{other} is not an action member.moderated tells of"),
    }
}

#[test]
fn every_outbound_example_is_what_foyer_sends() {
    let doc = document();
    let webhooks = doc["webhooks"].as_object().expect("the document has webhooks");
    let documented: BTreeSet<&str> = webhooks.keys().map(String::as_str).collect();
    let sent: BTreeSet<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(documented, sent, "the document's webhooks are Foyer's outbound events");
    for (kind, item) in webhooks {
        let example = &item["post"]["requestBody"]["content"]["application/json"]["example"];
        assert!(example.is_object(), "{kind} has an example");
        let event = built(kind, example);
        let body: Value = serde_json::from_str(&event.body).unwrap();
        assert_eq!(&body, example, "{kind}: the example is not what Foyer sends");
    }
}
