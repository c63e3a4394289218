//! The door's plans: holders, hosts' guests, web fans' users, knocks and retries.

use super::*;

#[test]
fn a_revoked_holder_is_kicked_and_one_with_another_ticket_stays() {
    let rec = record(Signals::default());
    let mut room = opened(&["dj", "alice", "bob"]);
    room.members.insert(user("alice"), member(Membership::Join, Some("foyer")));
    room.members.insert(user("bob"), member(Membership::Invite, Some("foyer")));
    let audience = Audience { holders: [user("bob")].into(), revoked: [user("alice")].into(), ..Audience::default() };
    let p = plan(Some(&rec), &audience, &room, &rooms(), t(19, 30));
    assert_eq!(steps(&p), vec![Step::Kick(user("alice"), KickReason::TicketRevoked)]);
}

#[test]
fn a_web_fans_user_in_the_audience_stays_uninvited_and_one_out_of_it_is_kicked() {
    let rec = record(Signals::default());
    let mut room = opened(&["dj"]);
    // The web chat joined them (the bot invited them on its way): none has a ticket of its own.
    for name in ["_web_dana", "_web_erin", "_web_finn", "_web_gail"] {
        room.members.insert(user(name), member(Membership::Join, Some("foyer")));
    }
    room.members.insert(user("_web_hope"), member(Membership::Invite, Some("foyer")));
    let audience = Audience {
        // Dana's and Hope's may be there; Erin's ticket was revoked or Erin banned; Finn's
        // ticket moved to another holder; Gail's web user Foyer never made.
        web: [user("_web_dana"), user("_web_hope")].into(),
        revoked: [user("_web_erin")].into(),
        ..Audience::default()
    };
    let p = plan(Some(&rec), &audience, &room, &rooms(), t(19, 30));
    assert_eq!(
        steps(&p),
        vec![
            Step::Kick(user("_web_erin"), KickReason::TicketRevoked),
            Step::Kick(user("_web_finn"), KickReason::NoTicket),
            Step::Kick(user("_web_gail"), KickReason::NoTicket),
        ]
    );
    // Were the web chat's users counted out, the door would remove even Dana.
    let p = plan(Some(&rec), &Audience::default(), &room, &rooms(), t(19, 30));
    assert!(steps(&p).contains(&Step::Kick(user("_web_dana"), KickReason::NoTicket)));
}

#[test]
fn a_holder_who_cannot_be_invited_waits_alone_for_their_retry() {
    let rec = record(Signals::default());
    let mut room = opened(&["dj"]);
    let failure = InviteFailure::after(None, "502 unreachable".into(), t(19, 0));
    assert_eq!(failure.retry_at, t(19, 0) + Duration::seconds(30));
    room.invite_failures.insert(user("bob"), failure.clone());
    // Before bob's retry: alice is invited, bob waits, and the plan looks again then.
    let p = plan(Some(&rec), &holders(&["alice", "bob"]), &room, &rooms(), t(19, 0));
    assert_eq!(steps(&p), vec![Step::Invite(user("alice"))]);
    assert_eq!(p.next_due_at, Some(failure.retry_at));
    // At the retry time bob's invite is planned again.
    let p = plan(Some(&rec), &holders(&["alice", "bob"]), &room, &rooms(), failure.retry_at);
    assert_eq!(steps(&p), vec![Step::Invite(user("alice")), Step::Invite(user("bob"))]);
    // Each failure waits longer, up to an hour.
    let waits: Vec<i64> =
        std::iter::successors(Some(failure), |f| Some(InviteFailure::after(Some(f), "again".into(), t(19, 0))))
            .take(10)
            .map(|f| (f.retry_at - t(19, 0)).num_seconds())
            .collect();
    assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
}

#[test]
fn a_holder_who_left_is_not_invited_again() {
    let rec = record(Signals::default());
    let mut room = opened(&["dj", "alice"]);
    room.members.insert(user("alice"), member(Membership::Leave, None));
    assert_eq!(steps(&plan(Some(&rec), &holders(&["alice"]), &room, &rooms(), t(19, 30))), vec![]);
}

#[test]
fn knocks_from_holders_are_accepted_and_others_refused() {
    let rec = record(Signals::default());
    let mut room = opened(&["dj"]);
    room.members.insert(user("alice"), member(Membership::Knock, None));
    room.members.insert(user("eve"), member(Membership::Knock, None));
    let p = plan(Some(&rec), &holders(&["alice"]), &room, &rooms(), t(19, 30));
    assert_eq!(
        steps(&p),
        vec![
            Step::Invite(user("alice")),
            Step::AcceptKnock(user("alice")),
            Step::Kick(user("eve"), KickReason::KnockRefused)
        ]
    );
}

#[test]
fn a_guest_of_a_host_stays_and_a_stranger_is_removed() {
    let rec = record(Signals::default());
    let mut room = opened(&["dj"]);
    room.members.insert(user("guest"), member(Membership::Join, Some("dj")));
    room.members.insert(user("mallory"), member(Membership::Join, Some("mallory")));
    let p = plan(Some(&rec), &holders(&[]), &room, &rooms(), t(19, 30));
    assert_eq!(steps(&p), vec![Step::Kick(user("mallory"), KickReason::NoTicket)]);
}

#[test]
fn a_room_open_to_the_channel_or_anyone_gets_its_join_rule_and_keeps_whoever_came_in() {
    let mut rec = record(Signals::default());
    rec.reservation.channel = Some(crate::model::Channel {
        id: crate::model::ExternalId::parse("blue-room").unwrap(),
        name: crate::model::Title::parse("The Blue Room").unwrap(),
    });
    rec.reservation.access = crate::model::Access::Channel;
    let mut room = opened(&["dj"]);
    room.members.insert(user("walkin"), member(Membership::Join, None));
    // The space comes first: the join rule names it.
    assert_eq!(
        steps(&plan(Some(&rec), &Audience::default(), &room, &rooms(), t(19, 30))),
        vec![Step::EnsureSpace(rec.reservation.channel.clone().unwrap())]
    );
    room.space = Some(space());
    room.space_linked = Some(space());
    let p = plan(Some(&rec), &Audience::default(), &room, &rooms(), t(19, 30));
    assert_eq!(steps(&p), vec![Step::SetAccess(crate::model::Access::Channel)], "nobody kicked");
    apply(&mut room, &p.work, &rec);
    assert_eq!(plan(Some(&rec), &Audience::default(), &room, &rooms(), t(19, 30)).work, Work::Nothing);
    // Back to tickets: the rule again, and whoever has no ticket goes.
    rec.reservation.access = crate::model::Access::Tickets;
    let p = plan(Some(&rec), &Audience::default(), &room, &rooms(), t(19, 31));
    assert_eq!(
        steps(&p),
        vec![Step::SetAccess(crate::model::Access::Tickets), Step::Kick(user("walkin"), KickReason::NoTicket)]
    );
}
