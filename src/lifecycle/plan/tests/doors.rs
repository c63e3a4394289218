//! Doors open at scale: with `auto_join`, local holders are joined by Foyer once the
//! doorkeeper is in; hosts and other servers' holders are invited.

use super::*;
use crate::model::AutoJoin;

fn auto_join() -> RoomsConfig {
    RoomsConfig { auto_join: AutoJoin::Local, ..rooms() }
}

/// Open, with the doorkeeper in and the host invited.
fn kept() -> RoomState {
    let mut room = opened(&["dj"]);
    room.doorkeeper = Some(doorkeeper());
    room.members.insert(doorkeeper(), member(Membership::Join, Some("foyer")));
    room
}

fn with_remote(names: &[&str], remote: &str) -> Audience {
    let mut audience = holders(names);
    audience.holders.insert(OwnedUserId::try_from(remote).unwrap());
    audience
}

#[test]
fn local_holders_are_joined_and_other_servers_holders_and_hosts_invited() {
    let rec = record(Signals::default());
    let mut room = kept();
    room.invited.clear();
    let audience = with_remote(&["ann", "bea"], "@cal:far.example");
    let p = plan(Some(&rec), &audience, &room, &auto_join(), t(18, 31));
    let far = OwnedUserId::try_from("@cal:far.example").unwrap();
    assert_eq!(
        steps(&p),
        vec![Step::Invite(user("dj")), Step::Join(user("ann")), Step::Join(user("bea")), Step::Invite(far)]
    );
    // Without auto_join, everyone is invited as before.
    let p = plan(Some(&rec), &audience, &room, &rooms(), t(18, 31));
    assert!(steps(&p).iter().all(|s| matches!(s, Step::Invite(_))), "{:?}", steps(&p));
    // And without the admin API configured, whatever the reservation asks.
    let mut asks = rec.clone();
    asks.reservation.auto_join = Some(AutoJoin::Local);
    let no_admin = RoomsConfig { admin_join: false, ..rooms() };
    let p = plan(Some(&asks), &audience, &room, &no_admin, t(18, 31));
    assert!(steps(&p).iter().all(|s| matches!(s, Step::Invite(_))), "{:?}", steps(&p));
    // A reservation's own chat.auto_join wins over the config.
    let p = plan(Some(&asks), &audience, &room, &rooms(), t(18, 31));
    assert!(steps(&p).contains(&Step::Join(user("ann"))));
}

#[test]
fn the_doorkeeper_is_let_in_first_and_then_the_holders_joined() {
    let rec = record(Signals::default());
    let mut room = opened(&["dj"]);
    let audience = holders(&["ann", "bea"]);
    let first = plan(Some(&rec), &audience, &room, &auto_join(), t(18, 31));
    assert_eq!(steps(&first), vec![Step::AdmitDoorkeeper]);
    apply(&mut room, &first.work, &rec);
    let then = plan(Some(&rec), &audience, &room, &auto_join(), t(18, 31));
    assert_eq!(steps(&then), vec![Step::Join(user("ann")), Step::Join(user("bea"))]);
    apply(&mut room, &then.work, &rec);
    assert_eq!(plan(Some(&rec), &audience, &room, &auto_join(), t(18, 31)).work, Work::Nothing);
    // The doorkeeper is never taken for someone without a ticket.
    room.members.insert(doorkeeper(), member(Membership::Join, Some("foyer")));
    assert_eq!(plan(Some(&rec), &audience, &room, &auto_join(), t(18, 32)).work, Work::Nothing);
    // Removed by someone, it is let in again before the next join.
    room.members.insert(doorkeeper(), member(Membership::Leave, None));
    let late = holders(&["ann", "bea", "cat"]);
    assert_eq!(steps(&plan(Some(&rec), &late, &room, &auto_join(), t(18, 40))), vec![Step::AdmitDoorkeeper]);
}

#[test]
fn a_holder_who_leaves_is_not_joined_again_but_a_late_ticket_is_joined_on_arrival() {
    let rec = record(Signals::default());
    let mut room = kept();
    room.invited.insert(user("ann"));
    room.members.insert(user("ann"), member(Membership::Leave, None));
    let p = plan(Some(&rec), &holders(&["ann"]), &room, &auto_join(), t(18, 45));
    assert_eq!(p.work, Work::Nothing);
    let p = plan(Some(&rec), &holders(&["ann", "dan"]), &room, &auto_join(), t(18, 45));
    assert_eq!(steps(&p), vec![Step::Join(user("dan"))]);
}
