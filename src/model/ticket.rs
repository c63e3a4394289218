//! Tickets and their holders: a Matrix user, or someone the platform knows only by email,
//! whose claim code lets them bind the ticket to a Matrix ID from any client (contract §7).
//!
//! A code is derived, not drawn: an HMAC of the reservation and ticket ids under a key
//! only Foyer holds. So the store keeps nothing but the code's hash (to find the ticket a
//! code names), yet the platform can read the code again at any time.
//!
//! A ticket changes hands when the platform grants it to another holder ([`grant`]). A
//! ticket's first email holder has the code of (reservation, ticket); every later one
//! a code derived over their address too ([`HolderDigest`]), so the former holder's code
//! stops working and the new one's differs.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use ruma::OwnedUserId;

use super::{ReservationId, TicketId};

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
/// (contract §7): tickets may come before their reservation, but not by a week. The
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

/// An email holder named without their address: an HMAC of it under the claim key, kept
/// after the address is erased so that a grant sent again to the same address is told
/// from a move to another one. Not reversible without the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderDigest(String);

impl HolderDigest {
    /// A digest read back from the store.
    pub fn stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A ticket as the store holds it, as far as a grant decides on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTicket {
    pub user_id: Option<String>,
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

/// What a `ticket.granted` does to one ticket (contract §3, §7).
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
            Some(holder) if holder == user.as_str() => Grant::Unchanged,
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
    Claimed { reservation_id: String, ticket_id: String },
    /// The claimer had claimed it before: nothing changed.
    AlreadyYours { reservation_id: String, ticket_id: String },
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
    pub reservation_id: String,
    pub ticket_id: String,
    /// Who holds the ticket, once bound.
    pub holder: Option<String>,
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

/// Crockford's base 32: no I, L, O or U, so nothing reads as another symbol; reading is
/// forgiving (lower case, `O` for `0`, `I`/`L` for `1`, hyphens and spaces ignored).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// 14 symbols of 5 bits: 70 bits no one can guess. A 15th symbol is the check.
const DATA_SYMBOLS: usize = 14;
const SYMBOLS: usize = DATA_SYMBOLS + 1;

/// A ticket's claim code, in its canonical form (15 symbols, no hyphens).
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimCode(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimCodeError {
    #[error("this is not a claim code: a code has 15 letters and digits, like ABCDE-FGHJK-MNPQR")]
    Malformed,
    /// Well formed, but the check symbol does not match: almost surely a typo, never a
    /// code Foyer made.
    #[error("this code has a typo: one of its letters or digits is wrong or two are swapped")]
    Typo,
}

/// The key codes are derived with; see [`ClaimCode::derive`].
#[derive(Clone)]
pub struct ClaimKey([u8; 32]);

impl ClaimKey {
    /// A key for claim codes from a secret of the deployment. The label keeps it apart
    /// from every other use of that secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"foyer claim codes v1");
        Self(mac.finalize().into_bytes().into())
    }
}

impl ClaimKey {
    /// The digest naming an email holder ([`HolderDigest`]).
    pub fn holder_digest(&self, email: &Email) -> HolderDigest {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"holder email\0");
        mac.update(email.address().as_bytes());
        HolderDigest(hex(&mac.finalize().into_bytes()))
    }

    /// Names the key without giving it away: the store keeps it beside the hashes the
    /// key made, and renews them when the key changes.
    pub fn fingerprint(&self) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"fingerprint");
        hex(&mac.finalize().into_bytes()[..8])
    }
}

impl ClaimCode {
    /// The code of this ticket of this reservation for its first email holder.
    pub fn derive(key: &ClaimKey, reservation: &ReservationId, ticket: &TicketId) -> Self {
        Self::from_parts(key, &[reservation.as_str(), ticket.as_str()])
    }

    /// The code of a holder the ticket moved to, named by their digest.
    pub fn derive_moved(key: &ClaimKey, reservation: &ReservationId, ticket: &TicketId, to: &HolderDigest) -> Self {
        Self::from_parts(key, &[reservation.as_str(), ticket.as_str(), to.as_str()])
    }

    /// The code of the ticket's holder at `generation` (`digest` names them after a move).
    pub fn of_holder(
        key: &ClaimKey,
        reservation: &ReservationId,
        ticket: &TicketId,
        generation: i64,
        digest: Option<&HolderDigest>,
    ) -> Option<Self> {
        match (generation, digest) {
            (0, _) => Some(Self::derive(key, reservation, ticket)),
            (_, Some(digest)) => Some(Self::derive_moved(key, reservation, ticket, digest)),
            (_, None) => None,
        }
    }

    fn from_parts(key: &ClaimKey, parts: &[&str]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes keys of any length");
        // Lengths first, so no two lists of parts feed the same bytes.
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        let bytes = mac.finalize().into_bytes();
        let mut bits = u128::from_be_bytes(bytes[..16].try_into().expect("a SHA-256 MAC has 32 bytes"));
        let mut values = [0u8; SYMBOLS];
        for value in values.iter_mut().take(DATA_SYMBOLS) {
            *value = (bits >> 123) as u8;
            bits <<= 5;
        }
        values[DATA_SYMBOLS] = check_value(&values[..DATA_SYMBOLS]);
        Self(values.iter().map(|&v| ALPHABET[v as usize] as char).collect())
    }

    /// Reads a code as a person may have typed it. A code of the right shape whose check
    /// fails is a [`ClaimCodeError::Typo`], so the answer can say so.
    pub fn parse(input: &str) -> Result<Self, ClaimCodeError> {
        let mut values = Vec::with_capacity(SYMBOLS);
        for c in input.trim().chars() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            let value = symbol_value(c).ok_or(ClaimCodeError::Malformed)?;
            values.push(value);
            if values.len() > SYMBOLS {
                return Err(ClaimCodeError::Malformed);
            }
        }
        if values.len() != SYMBOLS {
            return Err(ClaimCodeError::Malformed);
        }
        if check_value(&values[..DATA_SYMBOLS]) != values[DATA_SYMBOLS] {
            return Err(ClaimCodeError::Typo);
        }
        Ok(Self(values.iter().map(|&v| ALPHABET[v as usize] as char).collect()))
    }

    /// The code somewhere in a line of text, such as a knock's reason ("my code is
    /// ABCDE-FGHJK-MNPQR") or a message (`!claim abcde fghjk mnpqr`). `None` when nothing
    /// in it looks like a code; a typo in something that does is reported.
    pub fn find_in(text: &str) -> Option<Result<Self, ClaimCodeError>> {
        let text = text.trim();
        let text = text.strip_prefix("!claim").unwrap_or(text);
        if let Ok(code) = Self::parse(text) {
            return Some(Ok(code));
        }
        // A code alone in a word, or typed in its three groups of five with spaces
        // between. Only text in a code's shape counts, so a typo is told only where a
        // code was meant, not in any 15 letters of a sentence.
        let words: Vec<&str> =
            text.split(|c: char| c.is_whitespace() || ",.;:!?()[]\"'".contains(c)).filter(|w| !w.is_empty()).collect();
        let groups = words.windows(3).filter(|w| w.iter().all(|g| g.chars().count() == 5)).map(|w| w.concat());
        let mut typo = None;
        for candidate in words.iter().map(|w| w.to_string()).chain(groups) {
            match Self::parse(&candidate) {
                Ok(code) => return Some(Ok(code)),
                Err(ClaimCodeError::Typo) => typo = Some(Err(ClaimCodeError::Typo)),
                Err(ClaimCodeError::Malformed) => {}
            }
        }
        typo
    }

    /// How the store finds the ticket a code names, without keeping the code.
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }

    /// The canonical form, without hyphens; for URLs and comparisons.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Grouped in fives, as people read and type it: `ABCDE-FGHJK-MNPQR`.
impl fmt::Display for ClaimCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_str();
        write!(f, "{}-{}-{}", &s[..5], &s[5..10], &s[10..])
    }
}

/// Never printed by accident: a code is as good as the ticket.
impl fmt::Debug for ClaimCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClaimCode([redacted])")
    }
}

fn symbol_value(c: char) -> Option<u8> {
    let c = match c.to_ascii_uppercase() {
        'O' => '0',
        'I' | 'L' => '1',
        c => c,
    };
    ALPHABET.iter().position(|&a| a as char == c).map(|p| p as u8)
}

/// Luhn mod 32: catches every single wrong symbol and every swap of two neighbours
/// except the one pair Luhn cannot tell apart.
fn check_value(data: &[u8]) -> u8 {
    const N: u32 = 32;
    let mut sum = 0u32;
    for (i, &value) in data.iter().rev().enumerate() {
        let factor = if i % 2 == 0 { 2 } else { 1 };
        let addend = factor * u32::from(value);
        sum += addend / N + addend % N;
    }
    ((N - sum % N) % N) as u8
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

    fn code(reservation: &str, ticket: &str) -> ClaimCode {
        let key = ClaimKey::from_secret(b"a deployment secret of some length");
        ClaimCode::derive(&key, &ReservationId::parse(reservation).unwrap(), &TicketId::parse(ticket).unwrap())
    }

    #[test]
    fn a_code_is_stable_per_ticket_and_differs_between_tickets() {
        assert_eq!(code("jazz", "t-1"), code("jazz", "t-1"));
        assert_ne!(code("jazz", "t-1"), code("jazz", "t-2"));
        assert_ne!(code("jazz", "t-1"), code("rock", "t-1"));
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(code("ab", "c"), code("a", "bc"));
        let other = ClaimKey::from_secret(b"another deployment");
        let r = ReservationId::parse("jazz").unwrap();
        let t = TicketId::parse("t-1").unwrap();
        assert_ne!(ClaimCode::derive(&other, &r, &t), code("jazz", "t-1"));
    }

    #[test]
    fn a_code_reads_back_however_it_is_typed() {
        let c = code("jazz", "t-1");
        let shown = c.to_string();
        assert_eq!(shown.len(), 17, "{shown}");
        assert_eq!(ClaimCode::parse(&shown), Ok(c.clone()));
        assert_eq!(ClaimCode::parse(&shown.to_lowercase()), Ok(c.clone()));
        assert_eq!(ClaimCode::parse(&shown.replace('-', " ")), Ok(c.clone()));
        assert_eq!(ClaimCode::parse(&format!("  {}  ", c.as_str())), Ok(c.clone()));
        let confusable = c.as_str().replace('0', "O").replace('1', "l");
        assert_eq!(ClaimCode::parse(&confusable), Ok(c));
    }

    #[test]
    fn every_single_wrong_symbol_is_a_typo() {
        for ticket in ["t-1", "t-2", "t-3", "vip"] {
            let c = code("jazz", ticket);
            for i in 0..SYMBOLS {
                for &replacement in ALPHABET {
                    let mut typed: Vec<u8> = c.as_str().bytes().collect();
                    if typed[i] == replacement {
                        continue;
                    }
                    typed[i] = replacement;
                    let typed = String::from_utf8(typed).unwrap();
                    assert_eq!(ClaimCode::parse(&typed), Err(ClaimCodeError::Typo), "{typed}");
                }
            }
        }
    }

    #[test]
    fn most_swapped_neighbours_are_typos() {
        let (mut caught, mut swaps) = (0, 0);
        for ticket in 0..50 {
            let c = code("jazz", &format!("t-{ticket}"));
            let bytes: Vec<u8> = c.as_str().bytes().collect();
            for i in 0..SYMBOLS - 1 {
                if bytes[i] == bytes[i + 1] {
                    continue;
                }
                let mut typed = bytes.clone();
                typed.swap(i, i + 1);
                swaps += 1;
                if ClaimCode::parse(std::str::from_utf8(&typed).unwrap()) == Err(ClaimCodeError::Typo) {
                    caught += 1;
                }
            }
        }
        assert!(caught * 100 >= swaps * 95, "{caught} of {swaps} swaps caught");
    }

    #[test]
    fn what_is_not_a_code_is_malformed() {
        for bad in ["", "ABCDE", "ABCDE-FGHJK-MNPQR-STVWX", "ABCDE-FGHJK-MNPQU", "ÄBCDE-FGHJK-MNPQR", "!claim"] {
            assert_eq!(ClaimCode::parse(bad), Err(ClaimCodeError::Malformed), "{bad}");
        }
    }

    #[test]
    fn a_code_is_found_in_a_message_or_a_knock_reason() {
        let c = code("jazz", "t-9");
        let shown = c.to_string();
        for text in [
            format!("!claim {shown}"),
            format!("!claim {}", shown.to_lowercase().replace('-', " ")),
            format!("Hi! my code is {shown}, thanks"),
            format!("code: ({})", c.as_str()),
        ] {
            assert_eq!(ClaimCode::find_in(&text), Some(Ok(c.clone())), "{text}");
        }
        let mut typo: Vec<u8> = shown.bytes().collect();
        typo[0] = if typo[0] == b'A' { b'B' } else { b'A' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(ClaimCode::find_in(&format!("!claim {typo}")), Some(Err(ClaimCodeError::Typo)));
        assert_eq!(ClaimCode::find_in("please let me in"), None);
        assert_eq!(ClaimCode::find_in("!claim"), None);
    }

    #[test]
    fn the_hash_names_the_code_and_the_debug_form_hides_it() {
        let c = code("jazz", "t-1");
        assert_eq!(c.hash(), ClaimCode::parse(&c.to_string().to_lowercase()).unwrap().hash());
        assert_ne!(c.hash(), code("jazz", "t-2").hash());
        assert_eq!(c.hash().len(), 64);
        assert!(!format!("{c:?}").contains(c.as_str()));
    }

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
            user_id: user.map(str::to_owned),
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
        let claimed =
            HeldTicket { email: None, user_id: Some("@carol:x.org".into()), bound: true, ..unclaimed.clone() };
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
        let claimed =
            HeldTicket { email: None, user_id: Some("@carol:x.org".into()), bound: true, ..unclaimed.clone() };
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
    fn a_moved_holder_has_a_code_of_their_own() {
        let key = ClaimKey::from_secret(b"a deployment secret of some length");
        let (r, t) = (ReservationId::parse("jazz").unwrap(), TicketId::parse("t-1").unwrap());
        let (a, b) = (Email::parse("a@x.org").unwrap(), Email::parse("b@x.org").unwrap());
        let (ca, cb) = (EmailClaim::new(&key, &r, &t, &a), EmailClaim::new(&key, &r, &t, &b));
        assert_eq!(ca.hash(0), cb.hash(0), "the first holder's code is the ticket's, as before moves");
        assert_eq!(ca.hash(0), code("jazz", "t-1").hash());
        assert_ne!(ca.hash(1), cb.hash(1));
        assert_ne!(ca.hash(1), ca.hash(0));
        assert_eq!(ca.hash(1), ca.hash(2), "a holder's code depends on them, not on how many came between");
        let shown = ClaimCode::of_holder(&key, &r, &t, 1, Some(&ca.digest)).unwrap();
        assert_eq!(shown.hash(), ca.hash(1));
        assert_eq!(ClaimCode::of_holder(&key, &r, &t, 1, None), None, "a bound holder's code is not shown");
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
