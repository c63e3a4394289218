//! The moderation record (docs/web-chat.md, "Reports"): what was done about a
//! reservation's chat and by whom. Web fans' reports are its first entries; the rules,
//! timeouts, bans and modes of moderation add theirs to the same record.

use chrono::{DateTime, Utc};
use ruma::OwnedEventId;

use super::{ReservationId, ViewerKey};

/// The longest reason a report may give, in Unicode characters.
pub const MAX_REPORT_REASON: usize = 500;

/// Why a fan reports a message: at most [`MAX_REPORT_REASON`] characters of text with no
/// control characters but line breaks; it may be empty (the report alone says enough).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportReason(String);

impl ReportReason {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let length = text.chars().count();
        if length > MAX_REPORT_REASON {
            return Err(format!("reason is {length} characters long; the limit is {MAX_REPORT_REASON}"));
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err("reason holds control characters".to_owned());
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The reported message as the chat showed it: what the platform's moderators are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedMessage {
    pub sender_name: String,
    pub sender_role: String,
    pub body: String,
    pub origin_ts: DateTime<Utc>,
}

/// A viewer's report of a message to record, once per viewer and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    pub reservation: ReservationId,
    pub event_id: OwnedEventId,
    pub reporter: ViewerKey,
    pub reason: ReportReason,
    pub message: ReportedMessage,
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_short_plain_text_and_may_be_empty() {
        assert_eq!(ReportReason::parse("  spam \n").unwrap().as_str(), "spam");
        assert_eq!(ReportReason::parse("").unwrap().as_str(), "");
        assert_eq!(ReportReason::parse("two\nlines").unwrap().as_str(), "two\nlines");
        assert!(ReportReason::parse(&"é".repeat(MAX_REPORT_REASON)).is_ok());
        let long = ReportReason::parse(&"é".repeat(MAX_REPORT_REASON + 1)).unwrap_err();
        assert!(long.contains("501 characters"), "{long}");
        assert!(ReportReason::parse("bell\u{7}").unwrap_err().contains("control"));
    }
}
