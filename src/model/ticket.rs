//! Tickets and their holders: a Matrix user, or someone the platform knows only by email,
//! whose claim code lets them bind the ticket to a Matrix ID from any client (docs/fans-without-matrix-id.md).
//!
//! A code is derived, not drawn: an HMAC of the reservation and ticket ids under a key
//! only Foyer holds. So the store keeps nothing but the code's hash (to find the ticket a
//! code names), yet the platform can read the code again at any time.
//!
//! A ticket changes hands when the platform grants it to another holder ([`grant`]). A
//! ticket's first email holder has the code of (reservation, ticket); every later one
//! a code derived over their address too ([`HolderDigest`]), so the former holder's code
//! stops working and the new one's differs.
//!
//! The codes themselves, their key and the holders' digests are in [`super::claim_code`].

use std::fmt;

use ruma::OwnedUserId;

use super::{ClaimCode, ClaimKey, HolderDigest, ReservationId, TicketId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub id: TicketId,
    pub holder: Holder,
}

/// Who holds a ticket, as the platform said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    User(OwnedUserId),
    /// Someone without a Matrix ID (yet): found by the homeserver's email binding or by
    /// their claim code, whose hash is kept so the code finds the ticket.
    Email {
        email: Email,
        display_name: Option<DisplayName>,
        claim: EmailClaim,
    },
}

/// How long the address of an email ticket whose reservation has not come is kept
/// (docs/fans-without-matrix-id.md): tickets may come before their reservation, but not by a week. The
/// ticket stays; only the address and its code go.
pub const ORPHAN_EMAILS_KEPT: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// What the store keeps of an email holder besides the address: the digest that tells
/// them apart once the address is erased, and the hash of the code they would have as
/// the ticket's first holder or as a later one (the store knows which they are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailClaim {
    pub digest: HolderDigest,
    pub first_hash: String,
    pub moved_hash: String,
}

impl EmailClaim {
    pub fn new(key: &ClaimKey, reservation: &ReservationId, ticket: &TicketId, email: &Email) -> Self {
        let digest = key.holder_digest(email);
        Self {
            first_hash: ClaimCode::derive(key, reservation, ticket).hash(),
            moved_hash: ClaimCode::derive_moved(key, reservation, ticket, &digest).hash(),
            digest,
        }
    }

    /// The hash of this holder's code, holding the ticket at `generation`.
    pub fn hash(&self, generation: i64) -> &str {
        if generation == 0 { &self.first_hash } else { &self.moved_hash }
    }
}

/// A ticket as the store holds it, as far as a grant decides on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTicket {
    pub user_id: Option<OwnedUserId>,
    /// The unbound holder's address (erased once bound, cancelled or archived).
    pub email: Option<String>,
    /// Names the email holder, bound or not; `None` for a user's ticket, and for email
    /// tickets bound before Foyer kept digests (or before the claim key changed).
    pub digest: Option<String>,
    /// The ticket was an email ticket, bound by a lookup, claim or correction.
    pub bound: bool,
    pub revoked: bool,
    /// How many times the ticket has changed hands.
    pub generation: i64,
}

/// What a `ticket.granted` does to one ticket (docs/webhooks.md, docs/fans-without-matrix-id.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// A new ticket.
    New,
    /// The same holder again, or a revoked ticket (which stays revoked): nothing
    /// changes, and an email holder keeps their code.
    Unchanged,
    /// An unbound email ticket given its holder's user ID: bound as a correction. The
    /// code stops working: the ticket needs no claim any more.
    Correction { generation: i64 },
    /// Another holder: the former one loses the seat (the planner kicks a member with no
    /// ticket left) and their code stops working; a new email holder gets a new code.
    Move { generation: i64 },
    /// An email holder whose address was erased (their reservation never came, in time)
    /// given again: the address and the code of this generation come back.
    Restore { generation: i64 },
}

/// Decides what granting `ticket` to `to` does, given what the store holds of it.
pub fn grant(held: Option<&HeldTicket>, to: &Holder) -> Grant {
    let Some(held) = held else { return Grant::New };
    if held.revoked {
        return Grant::Unchanged;
    }
    let next = held.generation + 1;
    match to {
        Holder::User(user) => match &held.user_id {
            Some(holder) if holder == user => Grant::Unchanged,
            Some(_) => Grant::Move { generation: next },
            None if held.email.is_some() => Grant::Correction { generation: next },
            // Neither user nor address: the address was erased before anyone bound it.
            None => Grant::Move { generation: next },
        },
        Holder::Email { email, claim, .. } => {
            let same =
                held.digest.as_deref() == Some(claim.digest.as_str()) || held.email.as_deref() == Some(email.address());
            match (&held.user_id, &held.email) {
                (None, Some(_)) if same => Grant::Unchanged,
                (None, None) if same => Grant::Restore { generation: held.generation },
                (Some(_), _) if same => Grant::Unchanged,
                // Bound before Foyer kept digests: who claimed it cannot be told from
                // the address, and kicking a fan by mistake is worse than a platform's
                // move left for it to send again with the new holder's user ID.
                (Some(_), _) if held.digest.is_none() && held.bound => Grant::Unchanged,
                _ => Grant::Move { generation: next },
            }
        }
    }
}

impl Holder {
    pub fn user_id(&self) -> Option<&OwnedUserId> {
        match self {
            Self::User(user) => Some(user),
            Self::Email { .. } => None,
        }
    }
}

/// How an email ticket came to have its Matrix ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundHow {
    /// The homeserver has the email bound to one of its users.
    Lookup,
    /// `!claim CODE` in a direct chat with the bot.
    DirectMessage,
    /// A knock whose reason held the code.
    Knock,
    /// The platform sent the ticket again with a `user_id`.
    Correction,
}

impl BoundHow {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lookup => "lookup",
            Self::DirectMessage => "direct_message",
            Self::Knock => "knock",
            Self::Correction => "correction",
        }
    }
}

/// What a claim did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The ticket is now the claimer's.
    Claimed { reservation_id: ReservationId, ticket_id: TicketId },
    /// The claimer had claimed it before: nothing changed.
    AlreadyYours { reservation_id: ReservationId, ticket_id: TicketId },
    /// Someone else holds it; they keep it.
    TakenByOther,
    /// No ticket has this code, or its ticket was revoked or its reservation archived.
    /// One answer for all, so a code's answer tells nothing about which codes exist.
    Unusable,
}

/// What a claim code's page shows: the ticket it names, if it can still be claimed or
/// was claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimStatus {
    pub reservation_id: ReservationId,
    pub ticket_id: TicketId,
    /// Who holds the ticket, once bound.
    pub holder: Option<OwnedUserId>,
    /// The name the platform gave an email holder (gone once the ticket is bound).
    pub display_name: Option<DisplayName>,
}

impl ClaimOutcome {
    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Claimed { .. } => "claimed",
            Self::AlreadyYours { .. } => "already_yours",
            Self::TakenByOther => "taken",
            Self::Unusable => "unusable",
        }
    }
}

/// How a holder's name is shown to them (the claim page greets them by it): 1–255
/// characters, no control characters. Personal data, like the email beside it.
#[derive(Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(input: &str) -> Result<Self, String> {
        let name = input.trim();
        if name.is_empty() || name.chars().count() > 255 {
            return Err("must be 1 to 255 characters".into());
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DisplayName([redacted])")
    }
}

/// A ticket holder's email address, as the platform sent it. Personal data: it is never
/// logged and shown only [`masked`](Email::masked).
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// A plausible address (Foyer sends no mail; it only looks the address up on the
    /// homeserver). Lower-cased as Synapse stores addresses, so lookups match.
    pub fn parse(input: &str) -> Result<Self, String> {
        let address = input.trim();
        if address.is_empty() || address.len() > 254 {
            return Err("must be an email address of 3 to 254 characters".into());
        }
        if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces or control characters".into());
        }
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Err("must be an email address (name@domain)".into());
        };
        if local.is_empty() || local.len() > 64 || local.contains('@') || domain.is_empty() {
            return Err("must be an email address (name@domain)".into());
        }
        if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return Err("must have a valid domain after the @".into());
        }
        Ok(Self(address.to_lowercase()))
    }

    /// `f***@example.org`: enough to tell tickets apart on the status page, not to
    /// contact anyone.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }

    /// The address itself, for the homeserver lookup and the store only.
    pub fn address(&self) -> &str {
        &self.0
    }
}

/// Masks an address read back from the store.
pub fn mask(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email_holder(address: &str) -> Holder {
        let key = ClaimKey::from_secret(b"a deployment secret of some length");
        let email = Email::parse(address).unwrap();
        let (r, t) = (ReservationId::parse("jazz").unwrap(), TicketId::parse("t-1").unwrap());
        Holder::Email { claim: EmailClaim::new(&key, &r, &t, &email), email, display_name: None }
    }

    fn digest(address: &str) -> String {
        let Holder::Email { claim, .. } = email_holder(address) else { unreachable!() };
        claim.digest.as_str().to_owned()
    }

    fn held(user: Option<&str>, email: Option<&str>, bound: bool, generation: i64) -> HeldTicket {
        HeldTicket {
            user_id: user.map(|u| OwnedUserId::try_from(u).unwrap()),
            email: email.map(str::to_owned),
            digest: email.map(digest),
            bound,
            revoked: false,
            generation,
        }
    }

    #[test]
    fn a_grant_to_another_holder_moves_the_ticket_in_every_direction() {
        let alice = Holder::User(OwnedUserId::try_from("@alice:x.org").unwrap());
        let a = email_holder("a@x.org");
        let user_ticket = held(Some("@bob:x.org"), None, false, 0);
        let unclaimed = held(None, Some("b@y.org"), false, 0);
        // b@y.org claimed by @carol: the address is gone, its digest stays.
        let claimed = HeldTicket {
            email: None,
            user_id: Some(OwnedUserId::try_from("@carol:x.org").unwrap()),
            bound: true,
            ..unclaimed.clone()
        };
        for (held, to, expected) in [
            (None, &a, Grant::New),
            (Some(&user_ticket), &alice, Grant::Move { generation: 1 }),
            (Some(&user_ticket), &a, Grant::Move { generation: 1 }),
            (Some(&unclaimed), &a, Grant::Move { generation: 1 }),
            (Some(&claimed), &a, Grant::Move { generation: 1 }),
            (Some(&unclaimed), &alice, Grant::Correction { generation: 1 }),
            (Some(&claimed), &alice, Grant::Move { generation: 1 }),
        ] {
            assert_eq!(grant(held, to), expected, "{held:?} -> {to:?}");
        }
    }

    #[test]
    fn the_same_holder_again_changes_nothing() {
        let bob = Holder::User(OwnedUserId::try_from("@bob:x.org").unwrap());
        let b = email_holder("B@y.org");
        let unclaimed = held(None, Some("b@y.org"), false, 3);
        let claimed = HeldTicket {
            email: None,
            user_id: Some(OwnedUserId::try_from("@carol:x.org").unwrap()),
            bound: true,
            ..unclaimed.clone()
        };
        assert_eq!(grant(Some(&held(Some("@bob:x.org"), None, false, 2)), &bob), Grant::Unchanged);
        assert_eq!(grant(Some(&unclaimed), &b), Grant::Unchanged);
        assert_eq!(grant(Some(&claimed), &b), Grant::Unchanged, "the claimer keeps it");
        // Unclaimed tickets from before digests were kept are told by their address.
        assert_eq!(grant(Some(&HeldTicket { digest: None, ..unclaimed.clone() }), &b), Grant::Unchanged);
        // A revoked ticket stays revoked, whoever it is granted to.
        assert_eq!(grant(Some(&HeldTicket { revoked: true, ..unclaimed.clone() }), &bob), Grant::Unchanged);
        // Claimed before digests were kept: cannot be told, so left alone.
        let legacy = HeldTicket { digest: None, ..claimed.clone() };
        assert_eq!(grant(Some(&legacy), &email_holder("z@z.org")), Grant::Unchanged);
        // An erased address given again comes back, in the same generation (same code).
        let erased = HeldTicket { email: None, ..unclaimed.clone() };
        assert_eq!(grant(Some(&erased), &b), Grant::Restore { generation: 3 });
        assert_eq!(grant(Some(&erased), &email_holder("c@y.org")), Grant::Move { generation: 4 });
    }

    #[test]
    fn emails_are_checked_lowered_and_masked() {
        let e = Email::parse(" Fan.Person@Example.ORG ").unwrap();
        assert_eq!(e.address(), "fan.person@example.org");
        assert_eq!(e.masked(), "f***@example.org");
        assert!(!format!("{e:?}").contains("fan.person"));
        for bad in ["", "fan", "@example.org", "fan@", "fan@@example.org", "fan @x.org", "fan@.org", "fan@x..org"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@x.org", "a".repeat(65))).is_err());
    }
}
