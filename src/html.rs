//! Escaping for the HTML Foyer writes: the `formatted_body` of its messages (notices, the
//! pinned stream link, admin answers), the status page and the claim page. It imports
//! nothing, so every module that writes HTML, `matrix` included, can use the one rule.

/// `text` safe inside HTML text and double-quoted attributes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A page of Foyer's own (the status page, the claim page): no script, one small style.
pub fn document(title: &str, head: &str, body: &str) -> String {
    format!("{}{body}{DOCUMENT_END}", document_start(title, head))
}

/// [`document`] up to its body, for a page sent in parts (a transcript); the page ends
/// with [`DOCUMENT_END`].
pub fn document_start(title: &str, head: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">{head}<title>{}</title><style>{STYLE}</style></head>\
         <body>",
        escape(title)
    )
}

pub const DOCUMENT_END: &str = "</body></html>";

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1b1b1b;background:#fafafa}\
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.4rem 0 .4rem}\
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #e3e3e3;vertical-align:top}\
th{font-weight:600;background:#f0f0f0}code{font-size:.9em}.error{color:#a40000}.muted{color:#666}\
.failing td{background:#fff1f0}form{margin:.3rem 0}.summary span{margin-right:1rem}\
.command{font-size:1.2rem;padding:.6rem;background:#fff;border:1px solid #ccc;display:inline-block;user-select:all}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(escape(r#"<a href="x?a=1&b=2">"#), "&lt;a href=&quot;x?a=1&amp;b=2&quot;&gt;");
        assert_eq!(escape("plain 'text'"), "plain 'text'");
    }
}
