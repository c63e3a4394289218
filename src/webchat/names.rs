//! Names a web fan may not take (docs/web-chat.md): one that imitates a host's, a
//! moderator's or the bot's display name, look-alike characters included, or one that
//! claims a role ("host", "moderator", …).
//!
//! Both sides are brought to a *skeleton* and the skeletons compared:
//!
//! 1. NFKC (`unicode-normalization`, unicode-rs's crate, which `url` already brings):
//!    fullwidth `Ａ`, mathematical `𝐀`, circled `Ⓐ`, ligatures `ﬁ` become plain letters;
//! 2. capitals that look Latin (Greek `Α Ι Η`, Cyrillic `А Н Ѕ`…) become the Latin
//!    capital, before lower-casing would turn `Η` into `η` (which looks like `n`);
//! 3. lower case (and `ß` as `ss`);
//! 4. canonical decomposition with the combining marks dropped (`é` is `e`), and the
//!    invisible characters dropped (zero-width spaces and joiners, direction marks,
//!    variation selectors, the Hangul fillers, tags);
//! 5. small letters that look Latin (Cyrillic `а е о р с х у і ј ѕ`, Greek `ο ι α ν κ ρ`…)
//!    and digits and signs that pass for letters (`0` o, `1` `!` `|` l, `3` e, `4` `@` a,
//!    `5` `$` s, `7` t, `8` b) become the Latin letter; `i` and `l` are one letter, and
//!    `rn` is `m`, `vv` is `w`;
//! 6. everything that is not a letter or a digit (spaces, punctuation, symbols) goes.
//!
//! The table in step 5 is ours, kept small on purpose: the letters that render like Latin
//! ones in common fonts. The full Unicode confusables (UTS #39, `unicode-security`) map
//! to prototypes that are not plain lower-case Latin, so that case folding and the
//! digits would still need this table; a short list that the tests name is easier to
//! review.

use std::fmt;

use unicode_normalization::{UnicodeNormalization as _, char::is_combining_mark};

/// The words a fan's name may not hold as a word, whatever the letters look like.
pub const ROLE_WORDS: &[&str] = &["host", "moderator", "mod", "admin", "foyer", "official"];

/// A protected name is also refused inside a longer one ("Alice (host)") when its
/// skeleton is at least this long; shorter ones ("Al") only when the whole name is it.
pub const MIN_CONTAINED: usize = 4;

/// What a refused name imitates, for the sentence that refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protected<'a> {
    /// One of the protected display names (a host's, a moderator's, the bot's), as given.
    Name(&'a str),
    /// A word that claims a role, from [`ROLE_WORDS`].
    Role(&'static str),
}

impl fmt::Display for Protected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => write!(f, "looks like the name {name:?}"),
            Self::Role(word) => write!(f, "claims a role with the word {word:?}"),
        }
    }
}

/// Whether a fan's display name imitates one of `protected` (the hosts', moderators'
/// and bot's display names) or claims a role; which one, if so. Names are checked
/// before role words.
pub fn imitates<'a>(name: &str, protected: &[&'a str]) -> Option<Protected<'a>> {
    let fan = skeleton(name);
    for &other in protected {
        let theirs = skeleton(other);
        if theirs.is_empty() {
            continue;
        }
        if fan == theirs || (theirs.chars().count() >= MIN_CONTAINED && fan.contains(&theirs)) {
            return Some(Protected::Name(other));
        }
    }
    let words: Vec<String> = words(name).iter().map(|w| skeleton(w)).collect();
    for &role in ROLE_WORDS {
        let role_skeleton = skeleton(role);
        let plural = format!("{role_skeleton}s");
        // "h o s t" and "h.o.s.t" are the word too: the whole name's skeleton is it.
        if fan == role_skeleton || fan == plural || words.iter().any(|w| *w == role_skeleton || *w == plural) {
            return Some(Protected::Role(role));
        }
    }
    None
}

/// A name brought to the form look-alikes share (steps 1 to 6 above).
pub fn skeleton(name: &str) -> String {
    let mapped: String = folded(name).chars().map(look_alike).filter(|c| c.is_alphanumeric()).collect();
    mapped.replace("rn", "m").replace("vv", "w")
}

/// Steps 1 to 4: compatibility forms, Latin-looking capitals, lower case, no marks, no
/// invisible characters. Separators and punctuation stay (words are split on them).
fn folded(name: &str) -> String {
    let capitals: String = name.nfkc().map(capital_look_alike).collect();
    let lower = capitals.to_lowercase().replace('ß', "ss");
    lower.nfd().filter(|&c| !is_combining_mark(c) && !is_invisible(c)).nfc().collect()
}

/// The name's words, split on whatever is neither a letter nor a digit (nor a sign
/// that passes for a letter), once invisible characters are gone.
fn words(name: &str) -> Vec<String> {
    let passes_for_letter = |c: char| look_alike(c).is_alphanumeric();
    folded(name).split(|c: char| !passes_for_letter(c)).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Greek and Cyrillic capitals that look like Latin capitals.
fn capital_look_alike(c: char) -> char {
    match c {
        'Α' | 'А' => 'A',
        'Β' | 'В' => 'B',
        'С' | 'Ϲ' => 'C',
        'Ε' | 'Е' | 'Ё' => 'E',
        'Η' | 'Н' => 'H',
        'Ι' | 'І' | 'Ї' | 'Ӏ' => 'I',
        'Ј' => 'J',
        'Κ' | 'К' => 'K',
        'Μ' | 'М' => 'M',
        'Ν' => 'N',
        'Ο' | 'О' => 'O',
        'Ρ' | 'Р' => 'P',
        'Ѕ' => 'S',
        'Τ' | 'Т' => 'T',
        'Υ' | 'Ү' => 'Y',
        'Χ' | 'Х' => 'X',
        'Ζ' => 'Z',
        other => other,
    }
}

/// Small letters, digits and signs that look like a small Latin letter, as that letter;
/// `i`, `l` and what looks like them are all `l`.
fn look_alike(c: char) -> char {
    match c {
        'а' | 'α' | '4' | '@' => 'a',
        'ь' | '8' => 'b',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' | 'ε' | '3' => 'e',
        'ɡ' => 'g',
        'һ' => 'h',
        'і' | 'ї' | 'ι' | 'ı' | 'ӏ' | 'i' | 'l' | '1' | '!' | '|' => 'l',
        'ј' | 'ϳ' => 'j',
        'κ' | 'к' => 'k',
        'о' | 'ο' | 'σ' | '0' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' | '5' | '$' => 's',
        'τ' | '7' => 't',
        'υ' => 'u',
        'ν' | 'ѵ' => 'v',
        'ԝ' | 'ѡ' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAFF: &[&str] = &["Alice", "DJ Spike", "Foyer", "Bob"];

    fn check(name: &str) -> Option<Protected<'static>> {
        imitates(name, STAFF)
    }

    #[test]
    fn look_alike_letters_imitate_the_name() {
        for name in [
            "Alice",
            "alice",
            "ALICE",
            "\u{0410}lice",               // Cyrillic А
            "Al\u{0456}c\u{0435}",        // Cyrillic і and е
            "\u{0391}L\u{0399}C\u{0395}", // Greek Α Ι Ε
            "A1ice",                      // digit one for l
            "AIice",                      // capital I for l
            "A l i c e",
            "a.l.i.c.e",
            "A\u{200B}lice",                                 // zero-width space
            "Al\u{200D}ice\u{FE0F}",                         // zero-width joiner, variation selector
            "Álíçé",                                         // accents, precomposed
            "A\u{0301}lice\u{0327}",                         // combining marks
            "\u{FF21}\u{FF4C}\u{FF49}\u{FF43}\u{FF45}",      // fullwidth Ａｌｉｃｅ
            "\u{1D400}\u{1D425}\u{1D422}\u{1D41C}\u{1D41E}", // mathematical bold 𝐀𝐥𝐢𝐜𝐞
            "Alice (host)",
            "~~ alice ~~",
            "Alice\u{3164}", // Hangul filler
        ] {
            assert_eq!(check(name), Some(Protected::Name("Alice")), "{name:?}");
        }
        assert_eq!(check("DJ \u{0405}\u{0440}ike"), Some(Protected::Name("DJ Spike")), "Cyrillic Ѕ and р");
        assert_eq!(check("dj_sp1ke"), Some(Protected::Name("DJ Spike")));
        assert_eq!(check("D J 5 P I K E"), Some(Protected::Name("DJ Spike")));
        assert_eq!(check("F\u{03BF}yer"), Some(Protected::Name("Foyer")), "Greek ο");
        assert_eq!(check("F0YER"), Some(Protected::Name("Foyer")));
    }

    #[test]
    fn a_short_protected_name_is_refused_only_whole() {
        assert_eq!(check("B\u{043E}b"), Some(Protected::Name("Bob")), "Cyrillic о");
        assert_eq!(check("B0B"), Some(Protected::Name("Bob")));
        assert_eq!(check("Bobby"), None, "\"bob\" is under 4 characters: only the whole name imitates it");
        assert_eq!(check("Bob Dylan fan"), None);
    }

    #[test]
    fn other_names_pass() {
        for name in [
            "Dana",
            "Alicia",
            "Ali",
            "Spike Lee",
            "Ghost",
            "Hostess",
            "Admiral",
            "Mode",
            "Modern",
            "Fan 2024",
            "李雷",
            "Zoë",
        ] {
            assert_eq!(check(name), None, "{name:?}");
        }
    }

    #[test]
    fn role_words_are_refused_as_words_whatever_their_letters() {
        let role = |name: &str| match check(name) {
            Some(Protected::Role(word)) => word,
            other => panic!("{name:?} gave {other:?}"),
        };
        assert_eq!(role("The Host"), "host");
        assert_eq!(role("h0st"), "host");
        assert_eq!(role("H\u{041E}ST"), "host", "Cyrillic О");
        assert_eq!(role("h.o.s.t"), "host");
        assert_eq!(role("\u{041C}\u{043E}derator Dana"), "moderator", "Cyrillic М and о");
        assert_eq!(role("rnoderator"), "moderator", "rn for m");
        assert_eq!(role("dana [mod]"), "mod");
        assert_eq!(role("MODS"), "mod");
        assert_eq!(role("ad\u{200B}min"), "admin");
        assert_eq!(role("Official fan club"), "official");
        assert_eq!(role("0ff1c1al"), "official");
        // "Foyer" is also the bot's name: the name is found first.
        assert_eq!(imitates("foyer bot", &[]), Some(Protected::Role("foyer")));
    }

    #[test]
    fn empty_or_symbol_only_protected_names_protect_nothing() {
        assert_eq!(imitates("anyone", &["🙂", "", "  "]), None);
    }

    #[test]
    fn the_refusal_names_what_is_imitated() {
        assert_eq!(check("\u{0410}lice").unwrap().to_string(), "looks like the name \"Alice\"");
        assert_eq!(check("the host").unwrap().to_string(), "claims a role with the word \"host\"");
    }

    #[test]
    fn skeletons_are_what_look_alikes_share() {
        assert_eq!(skeleton("Alice"), skeleton("\u{0410}\u{04CF}\u{0456}\u{0441}\u{0435}"));
        assert_eq!(skeleton("Straße"), "strasse");
        assert_eq!(skeleton("ﬁlm"), skeleton("film"));
        assert_ne!(skeleton("Alice"), skeleton("Alicia"));
    }
}
