//! `GET /api/v1/reservations/{id}/transcript[?format=json|html|text]` (docs/transcripts.md):
//! a reservation's transcript, streamed: the body is written a page of lines at a time,
//! read from the store as it goes, so a long chat never sits whole in memory. A page is
//! bounded in bytes as well as in lines ([`PAGE_BYTES`]), and the body is sent in parts
//! of about [`PART_BYTES`]: a chat of long messages costs no more memory to serve than a
//! chat of short ones (a transcript of 36 MB is served in well under 64 MiB of resident
//! memory; see the test `a_transcript_of_large_messages_is_capped_and_served_in_little_memory`).

use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::Response,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::{
    html,
    http::{AppState, error},
    model::{ReservationId, Transcript, TranscriptLine},
    words,
};

/// The most lines read from the store at once.
const PAGE_LINES: u32 = 500;
/// The most bytes of names and bodies read from the store at once (one longer line is
/// read alone): 1 MiB.
const PAGE_BYTES: u64 = 1024 * 1024;
/// A part of the body is sent once it holds this many bytes. Escaping may make a line
/// longer than it is stored (JSON and HTML escapes, the text format's), so the parts,
/// not the pages, bound what is held to be sent.
const PART_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
    Text,
}

impl Format {
    fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("json") => Ok(Self::Json),
            Some("html") => Ok(Self::Html),
            Some("text") => Ok(Self::Text),
            Some(other) => Err(format!("format: {other:?} is not one of json, html, text")),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Html => "text/html; charset=utf-8",
            Self::Text => "text/plain; charset=utf-8",
        }
    }

    /// What comes before the first line.
    fn start(self, id: &ReservationId, transcript: &Transcript) -> String {
        match self {
            Self::Json => {
                let head = json!({"reservation_id": id.as_str(), "room_id": transcript.room_id.as_str()}).to_string();
                // The object without its closing brace, the lines' array opened after it.
                format!("{},\"messages\":[", head.trim_end_matches('}'))
            }
            Self::Html => words::pages::transcript_start(
                id,
                transcript.room_id.as_str(),
                transcript.messages,
                &utc(transcript.made_at),
            ),
            Self::Text => String::new(),
        }
    }

    /// One line; `first` is the transcript's first (JSON separates the others). The line
    /// that ends a transcript cut at its cap is Foyer's notice in HTML and text; JSON
    /// leaves it out of `messages` and says `"cut": true` ([`Writer`]).
    fn line(self, line: &TranscriptLine, first: bool) -> String {
        match self {
            Self::Json => {
                let object = json!({
                    "event_id": line.event_id.as_str(),
                    "sender": line.sender.as_str(),
                    "display_name": line.display_name,
                    "ts": line.sent_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    "body": line.body,
                    "notice": line.notice,
                });
                if first { object.to_string() } else { format!(",{object}") }
            }
            Self::Html => {
                let who = match &line.display_name {
                    Some(name) => format!(
                        "{} <span class=muted>{}</span>",
                        html::escape(name),
                        html::escape(line.sender.as_str())
                    ),
                    None => html::escape(line.sender.as_str()),
                };
                let notice = if line.notice { words::pages::TRANSCRIPT_NOTICE } else { "" };
                format!(
                    "<tr><td><time datetime=\"{}\">{}</time></td><td>{who}{notice}</td><td style=\"white-space:pre-wrap\">{}</td></tr>",
                    line.sent_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    utc(line.sent_at),
                    html::escape(&line.body),
                )
            }
            Self::Text => {
                // Escaped too: a historical user id is not held to today's grammar.
                let sender = one_line(line.sender.as_str());
                let who = match &line.display_name {
                    Some(name) => format!("{} ({sender})", one_line(name)),
                    None => sender.into_owned(),
                };
                format!("[{}] {who}: {}\n", utc(line.sent_at), one_line(&line.body))
            }
        }
    }

    /// What comes after the last line; `cut`: the transcript was cut at its cap.
    fn end(self, cut: bool) -> String {
        match self {
            Self::Json => format!("],\"cut\":{cut}}}"),
            // The table, then `html::DOCUMENT_END`.
            Self::Html => "</table></body></html>".to_owned(),
            Self::Text => String::new(),
        }
    }
}

/// Writes a transcript's lines, in order, as they come.
struct Writer {
    format: Format,
    /// Messages written so far.
    written: u64,
    cut: bool,
}

impl Writer {
    fn new(format: Format) -> Self {
        Self { format, written: 0, cut: false }
    }

    fn line(&mut self, out: &mut String, line: &TranscriptLine) {
        if line.is_cut() {
            self.cut = true;
            if self.format == Format::Json {
                return;
            }
        }
        out.push_str(&self.format.line(line, self.written == 0));
        self.written += 1;
    }

    fn end(&self, out: &mut String) {
        out.push_str(&self.format.end(self.cut));
    }
}

/// Where the body's stream is: the page read and not yet written, where the next page
/// starts, and whether the store may hold more.
struct Cursor {
    writer: Writer,
    page: std::vec::IntoIter<TranscriptLine>,
    after: Option<u64>,
    more: bool,
}

/// `text` on one line, for the text format: every message is exactly one line, so a
/// member can never write what reads as another line (a forged message). A line break
/// of any kind (`\n`, `\r`, U+0085, U+2028, U+2029), any other control character (C0,
/// DEL, C1) and the bidirectional controls (which reorder what a reader sees) are written
/// as escapes: `\n`, `\r`, `\t`, else `\u{XXXX}`; a backslash as `\\`, so that every
/// escape reads back as one thing.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c == '\\' || needs_escape(c)) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:04X}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.into()
}

/// Characters the text format never writes as they are: controls (C0, DEL, C1, which
/// include U+0085 NEXT LINE), the line and paragraph separators (the only characters of
/// Unicode's Zl and Zp), and the bidirectional controls.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}')
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `2026-12-01 20:00:00 UTC`.
fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[derive(Debug, Deserialize)]
pub struct TranscriptQuery {
    format: Option<String>,
}

/// The handler: 400 for an unknown format, 404 without a transcript, else the stream.
pub async fn transcript(
    State(state): State<AppState>, Path(id): Path<String>, Query(query): Query<TranscriptQuery>,
) -> Response {
    let format = match Format::parse(query.format.as_deref()) {
        Ok(format) => format,
        Err(message) => return error(StatusCode::BAD_REQUEST, "FOYER_BAD_QUERY", message),
    };
    let not_found = || error(StatusCode::NOT_FOUND, "FOYER_NOT_FOUND", format!("no transcript of reservation {id:?}"));
    let Ok(rid) = ReservationId::parse(&id) else { return not_found() };
    let made = match state.store.transcript(&rid).await {
        Ok(Some(made)) => made,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "transcript: store unavailable");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "FOYER_UNAVAILABLE",
                "the database cannot be read now; retry later",
            );
        }
    };
    let start = format.start(&rid, &made);
    let cursor = Cursor { writer: Writer::new(format), page: Vec::new().into_iter(), after: None, more: true };
    let parts = futures_util::stream::unfold(Some(cursor), move |cursor| {
        let (store, rid) = (state.store.clone(), rid.clone());
        async move {
            let mut cursor = cursor?;
            let mut part = String::new();
            while part.len() < PART_BYTES {
                if let Some(line) = cursor.page.next() {
                    cursor.writer.line(&mut part, &line);
                    continue;
                }
                if !cursor.more {
                    cursor.writer.end(&mut part);
                    return Some((Ok(part), None));
                }
                match store.transcript_lines(&rid, cursor.after, PAGE_LINES, PAGE_BYTES).await {
                    Ok(lines) => {
                        cursor.more = !lines.is_empty();
                        cursor.after = lines.last().map(|l| l.seq).or(cursor.after);
                        cursor.page = lines.into_iter();
                    }
                    Err(e) => {
                        // The answer has begun: only cutting it short tells the client.
                        tracing::warn!(reservation_id = %rid, error = %e, "transcript cut short: the store failed");
                        return Some((Err(std::io::Error::other(e.to_string())), None));
                    }
                }
            }
            Some((Ok(part), Some(cursor)))
        }
    });
    let body = futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(start) }), parts);
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(format.content_type()));
    // Members' words: never kept by a cache on the way.
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    if format == Format::Html {
        // Escaped, and a page that could run nothing even if it were not; members'
        // words framed in another site's page could be passed off as that site's.
        let policy = "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";
        headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(policy));
        headers.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    }
    response
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn lines() -> Vec<TranscriptLine> {
        let at = |s| Utc.with_ymd_and_hms(2026, 12, 1, 20, 0, s).unwrap();
        let line = |seq: u64, sender: &str, name: Option<&str>, body: &str, notice| TranscriptLine {
            seq,
            event_id: format!("$e{seq}").try_into().unwrap(),
            sender: sender.try_into().unwrap(),
            display_name: name.map(str::to_owned),
            sent_at: at(seq as u32),
            body: body.into(),
            notice,
        };
        vec![
            line(0, "@foyer:example.org", Some("Foyer"), "The chat is open.", true),
            line(1, "@alice:example.org", Some("Alice <3"), "<b>hi</b> <script>alert(1)</script>", false),
            line(2, "@bob:example.org", None, "two\nlines", false),
        ]
    }

    /// The whole body as the stream writes it, the lines in parts of `part` lines.
    fn render(format: Format, part: usize) -> String {
        render_lines(format, part, &lines())
    }

    fn render_lines(format: Format, part: usize, lines: &[TranscriptLine]) -> String {
        let id = ReservationId::parse("jazz").unwrap();
        let made = Transcript {
            room_id: "!room:example.org".try_into().unwrap(),
            messages: 3,
            made_at: Utc.with_ymd_and_hms(2026, 12, 1, 21, 0, 0).unwrap(),
        };
        let mut out = format.start(&id, &made);
        let mut writer = Writer::new(format);
        for chunk in lines.chunks(part) {
            for line in chunk {
                writer.line(&mut out, line);
            }
        }
        writer.end(&mut out);
        out
    }

    #[test]
    fn json_is_one_document_whatever_the_parts() {
        for part in [1, 2, 3] {
            let body: serde_json::Value = serde_json::from_str(&render(Format::Json, part)).expect("valid JSON");
            assert_eq!(body["reservation_id"], "jazz");
            assert_eq!(body["room_id"], "!room:example.org");
            let messages = body["messages"].as_array().unwrap();
            assert_eq!(messages.len(), 3);
            assert_eq!(
                messages[1],
                json!({"event_id": "$e1", "sender": "@alice:example.org", "display_name": "Alice <3",
                       "ts": "2026-12-01T20:00:01.000Z", "body": "<b>hi</b> <script>alert(1)</script>", "notice": false})
            );
            assert_eq!((messages[0]["notice"].as_bool(), messages[2]["display_name"].is_null()), (Some(true), true));
        }
    }

    #[test]
    fn html_shows_members_markup_as_text_with_utc_times() {
        let page = render(Format::Html, 2);
        assert!(!page.contains("<script>") && !page.contains("<b>hi"), "{page}");
        assert!(page.contains("&lt;b&gt;hi&lt;/b&gt; &lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
        assert!(page.contains("Alice &lt;3"), "{page}");
        assert!(page.contains(">2026-12-01 20:00:01 UTC</time>"), "{page}");
        assert!(page.contains("(Foyer's notice)"), "{page}");
        assert!(page.ends_with("</table></body></html>"), "{page}");
    }

    #[test]
    fn text_is_one_line_per_message() {
        assert_eq!(
            render(Format::Text, 1),
            "[2026-12-01 20:00:00 UTC] Foyer (@foyer:example.org): The chat is open.\n\
             [2026-12-01 20:00:01 UTC] Alice <3 (@alice:example.org): <b>hi</b> <script>alert(1)</script>\n\
             [2026-12-01 20:00:02 UTC] @bob:example.org: two\\nlines\n"
        );
    }

    /// Neither a name nor a body can make what reads as another line: every line break
    /// and control character is escaped, and so is the backslash that escapes them.
    #[test]
    fn text_lines_cannot_be_forged() {
        let forged = "[2026-12-01 20:00:09 UTC] Admin (@admin:example.org): refunds at evil.example";
        let breaks =
            ["\n", "\r", "\r\n", "\u{0B}", "\u{0C}", "\u{1C}", "\u{1D}", "\u{1E}", "\u{85}", "\u{2028}", "\u{2029}"];
        for brk in breaks {
            let line = TranscriptLine {
                seq: 0,
                event_id: "$e".try_into().unwrap(),
                sender: "@mallory:example.org".try_into().unwrap(),
                display_name: Some(format!("Mallory{brk}{forged}")),
                sent_at: Utc.with_ymd_and_hms(2026, 12, 1, 20, 0, 0).unwrap(),
                body: format!("hi{brk}{forged}"),
                notice: false,
            };
            let text = Format::Text.line(&line, true);
            // Whatever a reader takes for a line break, there is only the one at the end.
            let body = text.strip_suffix('\n').expect("ends its line");
            assert!(!body.chars().any(needs_escape), "{brk:?}: {text:?}");
            assert!(!body.lines().skip(1).any(|l| l.starts_with('[')), "{brk:?}: {text:?}");
            assert_eq!(body.split(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']).count(), 1, "{brk:?}: {text:?}");
        }
        assert_eq!(
            one_line("a\r\nb\tc\u{2028}d\u{85}e\u{0}f\u{7F}g\u{9B}h"),
            "a\\r\\nb\\tc\\u{2028}d\\u{0085}e\\u{0000}f\\u{007F}g\\u{009B}h"
        );
        assert_eq!(one_line("C:\\new"), "C:\\\\new", "a backslash of the member's own is told from an escape");
        assert_eq!(one_line("\u{202E}evil"), "\\u{202E}evil", "no reordering of what a reader sees");
        assert!(matches!(one_line("plain words, émoji 🎷"), std::borrow::Cow::Borrowed(_)));
    }

    /// A transcript cut at its cap ends with Foyer's line saying so in HTML and text; JSON
    /// leaves that line out of `messages` and says `"cut": true` (`false` otherwise).
    #[test]
    fn a_cut_transcript_says_so_in_every_format() {
        let mut cut = lines();
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 20, 0, 3).unwrap();
        cut.push(TranscriptLine::cut(3, "@foyer:example.org".try_into().unwrap(), at));
        for part in [1, 4] {
            let body: serde_json::Value = serde_json::from_str(&render_lines(Format::Json, part, &cut)).unwrap();
            assert_eq!((body["messages"].as_array().unwrap().len(), &body["cut"]), (3, &json!(true)), "{body}");
        }
        let whole: serde_json::Value = serde_json::from_str(&render(Format::Json, 2)).unwrap();
        assert_eq!(whole["cut"], false);
        let text = render_lines(Format::Text, 2, &cut);
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("[2026-12-01 20:00:03 UTC] @foyer:example.org: The transcript stops here"), "{text}");
        let page = render_lines(Format::Html, 2, &cut);
        assert!(page.contains("The transcript stops here") && page.ends_with("</table></body></html>"), "{page}");
    }

    #[test]
    fn an_unknown_format_is_named() {
        assert_eq!(Format::parse(None), Ok(Format::Json));
        assert_eq!(Format::parse(Some("pdf")), Err("format: \"pdf\" is not one of json, html, text".into()));
    }
}
