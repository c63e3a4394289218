//! Logs: one line per meaningful event, to stderr. `RUST_LOG` sets the filter;
//! `logging.format` chooses lines for people (`pretty`) or JSON objects (`json`).
//!
//! A JSON line carries the event's fields (`reservation_id`, `room_id`, …) under
//! `fields` and the enclosing spans, such as an HTTP request's `request_id`, under
//! `spans`.
//!
//! A pretty line shows text from outside as it is (a member's display name, a
//! homeserver's error body), so its control characters are escaped ([`Escaped`]): a
//! `\n` or an ESC sequence there would otherwise forge a log line or rewrite the
//! terminal. JSON lines are escaped by the JSON encoder.

use std::{
    borrow::Cow,
    fmt::Write as _,
    io::{self, Write},
};

use tracing_subscriber::{
    EnvFilter,
    fmt::{
        MakeWriter, SubscriberBuilder,
        format::{DefaultFields, Format},
    },
};

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = match format {
        LogFormat::Pretty => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            pretty(filter, std::io::stderr, ansi).try_init()
        }
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
}

/// The pretty format writing to `writer`, colours (ANSI) on or off.
fn pretty<M>(
    filter: EnvFilter, writer: M, ansi: bool,
) -> SubscriberBuilder<DefaultFields, Format, EnvFilter, Escaped<M>>
where
    M: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Escaped { inner: writer, keep_colours: ansi })
        .with_target(false)
        .with_ansi(ansi)
}

/// Makes writers that escape the control characters of each line they are given. The
/// fmt layer formats one event into one buffer and writes it with one `write_all`, so
/// each `write` is one whole line.
#[derive(Debug, Clone)]
pub struct Escaped<M> {
    inner: M,
    /// Keep the colour sequences (`ESC [ … m`) the formatter writes to a terminal; an
    /// injected one can only change a colour, not move the cursor or end the line.
    keep_colours: bool,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaped<M> {
    type Writer = EscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter { inner: self.inner.make_writer(), keep_colours: self.keep_colours }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        EscapingWriter { inner: self.inner.make_writer_for(meta), keep_colours: self.keep_colours }
    }
}

pub struct EscapingWriter<W> {
    inner: W,
    keep_colours: bool,
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        self.inner.write_all(escape_line(&line, self.keep_colours).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `line` with every control character (C0, DEL, C1) written as an escape (`\n`, `\r`,
/// `\t`, `\x1b`, `\u{85}`), except one final newline, which ends the line.
fn escape_line(line: &str, keep_colours: bool) -> Cow<'_, str> {
    let (body, end) = match line.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (line, ""),
    };
    if !body.chars().any(char::is_control) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        if keep_colours && let Some(len) = colour_sequence(rest) {
            out.push_str(&rest[..len]);
            rest = &rest[len..];
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out.push_str(end);
    Cow::Owned(out)
}

/// The length of an SGR (colour) sequence `ESC [ digits;… m` at the start of `text`.
fn colour_sequence(text: &str) -> Option<usize> {
    let params = text.strip_prefix("\x1b[")?;
    let len = params.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
    params[len..].starts_with('m').then_some(2 + len + 1)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What an [`EscapingWriter`] writes for one `write_all` of `line`.
    fn written(line: &str, keep_colours: bool) -> String {
        let mut out = Vec::new();
        EscapingWriter { inner: &mut out, keep_colours }.write_all(line.as_bytes()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn control_characters_are_escaped_and_the_final_newline_kept() {
        assert_eq!(written("INFO plain line\n", false), "INFO plain line\n");
        assert_eq!(
            written("INFO joined name=Eve\nERROR forged\r\n", false),
            "INFO joined name=Eve\\nERROR forged\\r\n"
        );
        assert_eq!(written("a\x1b[2Jb\x07c\x7fd\0e\tf\n", false), "a\\x1b[2Jb\\x07c\\x7fd\\x00e\\tf\n");
        assert_eq!(written("C1 \u{9b}2J and NEL \u{85}\n", false), "C1 \\u{9b}2J and NEL \\u{85}\n");
        assert_eq!(written("no newline\nat the end", false), "no newline\\nat the end");
        assert_eq!(written("é ✓ 日本\n", false), "é ✓ 日本\n");
        // Bytes that are not UTF-8 are replaced, never passed through.
        let mut out = Vec::new();
        EscapingWriter { inner: &mut out, keep_colours: false }.write_all(b"bad \xff\x1b\n").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "bad \u{fffd}\\x1b\n");
    }

    #[test]
    fn on_a_terminal_colours_stay_and_other_sequences_are_escaped() {
        let coloured = "\x1b[2m2026\x1b[0m \x1b[32m INFO\x1b[0m ok\n";
        assert_eq!(written(coloured, true), coloured);
        assert_eq!(written(coloured, false), coloured.replace('\x1b', "\\x1b"));
        assert_eq!(
            written("\x1b[31mred\x1b[0m \x1b[2J\x1b]0;title\x07\n", true),
            "\x1b[31mred\x1b[0m \\x1b[2J\\x1b]0;title\\x07\n"
        );
    }

    /// A real event through the pretty format: a field with a newline and an ESC stays
    /// on its one line.
    #[test]
    fn a_field_with_a_newline_stays_on_one_line() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let writer = move || Sink(sink.clone());
        let subscriber = pretty(EnvFilter::new("info"), writer, false).finish();
        tracing::subscriber::with_default(subscriber, || {
            let name = "Eve\n2026-11-24T10:00:00Z ERROR forged line \x1b[2J";
            tracing::info!(display_name = %name, error = "body\r\nmore", "member joined");
        });
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(text.ends_with('\n'), "{text:?}");
        assert!(text.contains(r"display_name=Eve\n2026-11-24T10:00:00Z ERROR forged line \x1b[2J"), "{text:?}");
        assert!(text.contains("member joined"), "{text:?}");
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
