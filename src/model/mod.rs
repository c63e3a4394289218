//! Foyer's domain, with no I/O: what a reservation is ([`reservation`]), what is recorded
//! about it ([`record`]), its room as Foyer knows it, the steps that change the room and
//! how their outcomes are recorded ([`room`]), the chat beside the player as the store
//! keeps it ([`webchat`]), the moderation record ([`moderation`]), what calendars list and their signed
//! links ([`calendar`]), and the names Foyer gives things on the homeserver
//! ([`naming`]). Every other module may import it; it imports none of them.

pub mod calendar;
pub mod claim_code;
pub mod moderation;
pub mod naming;
pub mod record;
pub mod replay;
pub mod reservation;
pub mod room;
pub mod rules;
pub mod series;
pub mod session;
pub mod ticket;
pub mod transcript;
pub mod webchat;

pub use self::{
    claim_code::*, moderation::*, record::*, reservation::*, room::*, rules::*, series::*, session::*, ticket::*,
    transcript::*, webchat::*,
};
