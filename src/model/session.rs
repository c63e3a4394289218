//! A login to the status page.

/// One status-page login: 128 random bits as 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    pub fn random() -> SessionId {
        SessionId(rand::random::<[u8; 16]>().iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn parse(text: &str) -> Option<SessionId> {
        let hex = text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        hex.then(|| SessionId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
