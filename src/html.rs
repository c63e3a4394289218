//! Escaping for the HTML Foyer writes: the `formatted_body` of its messages (notices, the
//! pinned stream link, admin answers) and the status page. It imports nothing, so every
//! module that writes HTML, `matrix` included, can use the one rule.

/// `text` safe inside HTML text and double-quoted attributes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(escape(r#"<a href="x?a=1&b=2">"#), "&lt;a href=&quot;x?a=1&amp;b=2&quot;&gt;");
        assert_eq!(escape("plain 'text'"), "plain 'text'");
    }
}
