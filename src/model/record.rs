//! What is recorded about a reservation besides its description and its facts
//! ([`Signals`]): its counts, its room and its failures, as the store reads them back.

use chrono::{DateTime, Utc};

use super::{Audience, Reservation, RoomState, Signals};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TicketCounts {
    pub active: u64,
    pub revoked: u64,
    /// Active tickets whose holder's invite failed (and is tried again later).
    pub uninvitable: u64,
    /// Active email tickets not bound to a Matrix ID yet.
    pub unclaimed: u64,
    /// Active email tickets bound to a Matrix ID (by lookup, claim or correction).
    pub claimed: u64,
    /// Distinct Matrix IDs holding an active ticket: what `MemberCounts::holders_joined`
    /// reaches when every holder is in (a holder may have several tickets, and an
    /// unclaimed ticket has no one to join yet).
    pub holders: u64,
}

/// Members of the room by membership, from the homeserver's events (the bot excluded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberCounts {
    pub invited: u64,
    pub joined: u64,
    /// Joined members holding an active ticket of the reservation: not the hosts,
    /// moderators, web fans or Foyer's doorkeeper (without a ticket), who are in `joined`.
    pub holders_joined: u64,
}

/// A reservation with everything recorded about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRecord {
    pub reservation: Reservation,
    pub signals: Signals,
    pub tickets: TicketCounts,
    /// The room, once created (or adopted).
    pub room_id: Option<String>,
    pub members: MemberCounts,
    pub archived: bool,
    /// The last failed attempt's error, while the reservation keeps failing.
    pub last_error: Option<String>,
    /// Consecutive failed attempts.
    pub attempts: u32,
}

/// One ticket as the read API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRow {
    pub ticket_id: String,
    /// `None` when the revocation came before the grant.
    pub user_id: Option<String>,
    pub revoked: bool,
    /// The holder's last invite error, while their invite keeps failing.
    pub invite_error: Option<String>,
    /// An email ticket's address, masked (`f***@example.org`), until it is bound.
    pub email_masked: Option<String>,
    /// An email ticket: it has a claim code.
    pub has_claim: bool,
    /// How an email ticket got its holder: `lookup`, `direct_message`, `knock` or
    /// `correction`.
    pub bound_how: Option<String>,
    /// How many times the ticket changed hands, and who holds it after a move: its code
    /// is derived over them (`ClaimCode::of_holder`).
    pub holder_generation: i64,
    pub holder_digest: Option<super::HolderDigest>,
}

impl TicketRow {
    /// `bound`, `unclaimed`, `uninvitable` or `revoked` (docs/openapi.yaml).
    pub fn state(&self) -> &'static str {
        match (self.revoked, &self.user_id, &self.invite_error) {
            (true, _, _) => "revoked",
            (false, None, _) if self.has_claim => "unclaimed",
            (false, None, _) => "revoked",
            (false, Some(_), Some(_)) => "uninvitable",
            (false, Some(_), None) => "bound",
        }
    }
}

/// What the lifecycle needs to plan one reservation, besides its record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleState {
    pub room: RoomState,
    pub audience: Audience,
    /// Consecutive failed attempts, for backoff.
    pub attempts: u32,
    /// Who began creating the room, and when, until it is recorded.
    pub create_began: Option<CreateBegan>,
}

/// An instance began `createRoom` for a reservation (see `room::create_or_adopt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateBegan {
    pub by: String,
    pub at: DateTime<Utc>,
}
