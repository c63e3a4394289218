//! Claim codes: derived from the reservation and ticket ids (and, for a later holder,
//! their digest) under a key only Foyer holds; written in Crockford's base 32 with a
//! check symbol, read back forgivingly, and kept by the store as a hash only. Also the
//! key itself and the digest that names an email holder without their address.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{Email, ReservationId, TicketId};

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
        key: &ClaimKey, reservation: &ReservationId, ticket: &TicketId, generation: i64, digest: Option<&HolderDigest>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EmailClaim;

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
}
