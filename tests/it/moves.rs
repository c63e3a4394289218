//! A ticket changing hands (contract §3 and §7), on a real Synapse, in each direction the
//! platform may send it: user→email, email→email (claimed or not) and email→user. (A
//! user→user move is `claims::a_ticket_moved_to_another_holder_invites_them_and_removes_the_first`.)
//! Each time the former holder loses the seat, their code stops working, and a new email
//! holder claims with a code of their own.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    claims::{address, email_ticket, ticket, wait_membership},
    common::{
        foyer::{TestFoyer, open_reservation},
        synapse::Synapse,
        unique,
        users::{TestUser, nio_claim},
    },
};

/// An open room for a fresh reservation; returns its id and room.
async fn opened(foyer: &TestFoyer, name: &str) -> (String, String) {
    let id = unique(name);
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    let room = foyer.room_id(&id, Duration::from_secs(20)).await;
    (id, room)
}

async fn grant_email(foyer: &TestFoyer, id: &str, email: &str) {
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [email_ticket("t-1", email)]})).await;
}

/// The code the tickets endpoint shows for `t-1` while it is unclaimed.
async fn code(foyer: &TestFoyer, id: &str) -> String {
    let seen = ticket(foyer, id, "t-1").await;
    assert_eq!(seen["state"], "unclaimed", "{seen}");
    seen["claim"]["code"].as_str().expect("a claim code").to_owned()
}

/// `user` sends `!claim <code>` to the bot; returns the bot's answer.
fn claim(foyer: &TestFoyer, user: &TestUser, code: &str) -> String {
    let bot = foyer.slot.bot_user_id();
    let said =
        tokio::task::block_in_place(|| nio_claim(user, &Synapse::shared().url, &bot, &[&format!("!claim {code}")]));
    said["answers"][0].as_str().unwrap_or_default().to_owned()
}

fn refused(answer: &str) -> bool {
    answer.contains("that code doesn't work")
}

/// Claims `code` as `user`, then waits until they are in the room.
async fn claim_and_join(foyer: &TestFoyer, room: &str, user: &TestUser, code: &str) {
    let answer = claim(foyer, user, code);
    assert!(answer.contains("is claimed"), "{answer}");
    user.join_once_invited(room, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_moved_from_a_user_to_an_email_seats_the_new_holder_only() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let (ann, bob) = (hs.create_user("ann").await, hs.create_user("bob").await);
    let (id, room) = opened(&foyer, "u2e").await;
    foyer.grant(&id, &[("t-1", &ann.user_id)]).await;
    ann.join_once_invited(&room, Duration::from_secs(30)).await;

    grant_email(&foyer, &id, &address("bob")).await;
    wait_membership(&foyer, &room, &ann, "leave").await;
    let code = code(&foyer, &id).await;
    claim_and_join(&foyer, &room, &bob, &code).await;
    assert_eq!(ticket(&foyer, &id, "t-1").await["user_id"], bob.user_id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unclaimed_ticket_moved_to_another_email_has_a_new_code_and_the_old_one_stops() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let (ann, bob) = (hs.create_user("ann").await, hs.create_user("bob").await);
    let (id, room) = opened(&foyer, "e2e").await;
    grant_email(&foyer, &id, &address("ann")).await;
    let old = code(&foyer, &id).await;

    let bob_email = address("bob");
    grant_email(&foyer, &id, &bob_email).await;
    let new = code(&foyer, &id).await;
    assert_ne!(new, old, "the new holder's code is their own");
    let answer = claim(&foyer, &ann, &old);
    assert!(refused(&answer), "the former holder's code still works: {answer}");
    claim_and_join(&foyer, &room, &bob, &new).await;
    // Sent again, the same holder keeps the ticket.
    grant_email(&foyer, &id, &bob_email).await;
    let seen = ticket(&foyer, &id, "t-1").await;
    assert_eq!((seen["state"].as_str(), seen["user_id"].as_str()), (Some("bound"), Some(bob.user_id.as_str())));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claimed_ticket_moved_to_another_email_unseats_the_claimer() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let (ann, bob) = (hs.create_user("ann").await, hs.create_user("bob").await);
    let (id, room) = opened(&foyer, "c2e").await;
    let ann_email = address("ann");
    grant_email(&foyer, &id, &ann_email).await;
    let old = code(&foyer, &id).await;
    claim_and_join(&foyer, &room, &ann, &old).await;
    // The platform sending the same holder again changes nothing.
    grant_email(&foyer, &id, &ann_email).await;
    assert_eq!(ticket(&foyer, &id, "t-1").await["user_id"], ann.user_id.as_str());

    grant_email(&foyer, &id, &address("bob")).await;
    wait_membership(&foyer, &room, &ann, "leave").await;
    let new = code(&foyer, &id).await;
    assert_ne!(new, old);
    let answer = claim(&foyer, &bob, &old);
    assert!(refused(&answer), "the former holder's code still works: {answer}");
    claim_and_join(&foyer, &room, &bob, &new).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claimed_ticket_moved_to_a_user_seats_them_and_the_old_code_stops() {
    let hs = Synapse::shared();
    let foyer = TestFoyer::start().await;
    let (ann, bob, eve) = (hs.create_user("ann").await, hs.create_user("bob").await, hs.create_user("eve").await);
    let (id, room) = opened(&foyer, "e2u").await;
    grant_email(&foyer, &id, &address("ann")).await;
    let old = code(&foyer, &id).await;
    claim_and_join(&foyer, &room, &ann, &old).await;

    foyer.grant(&id, &[("t-1", &bob.user_id)]).await;
    bob.join_once_invited(&room, Duration::from_secs(30)).await;
    wait_membership(&foyer, &room, &ann, "leave").await;
    let seen: Value = ticket(&foyer, &id, "t-1").await;
    assert_eq!((seen["user_id"].as_str(), &seen["claim"]), (Some(bob.user_id.as_str()), &Value::Null), "{seen}");
    let answer = claim(&foyer, &eve, &old);
    assert!(refused(&answer), "the former holder's code still works: {answer}");
}
