//! The chat on the recording's timeline (docs/replay.md): the stream's starts and ends
//! as reported make the recording's segments ([`Segments::from_edges`]), and each message
//! is placed on the recording's clock ([`Segments::place`]): the segments one after
//! another, so that a message sent while the stream was down sits at the instant the
//! recording resumes. WebVTT ([`vtt`]) is made here too: it is the recording's subtitles.

use chrono::{DateTime, Utc};

/// A reported start or end of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Edge {
    /// Listed before a start at the same instant: an end and a start together are a gap
    /// of nothing, never a start ignored as a second one.
    End,
    Start,
}

impl Edge {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::End => "end",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "start" => Ok(Self::Start),
            "end" => Ok(Self::End),
            other => Err(format!("{other:?} is not a stream edge (start, end)")),
        }
    }
}

/// One stretch of the recording: from a start to its end, or still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

/// Where a message sits on the recording's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Sent before the stream first started: shown at the start of the recording.
    PreShow,
    /// This many milliseconds into the recording.
    At(i64),
}

impl Placement {
    pub fn offset_ms(self) -> i64 {
        match self {
            Self::PreShow => 0,
            Self::At(ms) => ms,
        }
    }
}

/// The recording's segments, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segments(Vec<Segment>);

impl Segments {
    /// The segments the reported edges make, taken in time order: a start while the
    /// stream is up is the same start reported again (the platform and the streaming
    /// server both tell of it, within moments), and an end while it is down the same end;
    /// every end and the next start around it is a gap on the clock, however short.
    pub fn from_edges(edges: &[(Edge, DateTime<Utc>)]) -> Self {
        let mut sorted = edges.to_vec();
        sorted.sort_by_key(|(edge, at)| (*at, *edge));
        let mut segments: Vec<Segment> = Vec::new();
        for (edge, at) in sorted {
            let up = segments.last().is_some_and(|s| s.end.is_none());
            match (edge, up) {
                (Edge::Start, false) => segments.push(Segment { start: at, end: None }),
                (Edge::End, true) => {
                    if let Some(last) = segments.last_mut() {
                        last.end = Some(at);
                    }
                }
                // Reported again.
                (Edge::Start, true) | (Edge::End, false) => {}
            }
        }
        Segments(segments)
    }

    pub fn list(&self) -> &[Segment] {
        &self.0
    }

    /// Where a message sent at `at` sits on the recording's clock.
    pub fn place(&self, at: DateTime<Utc>) -> Placement {
        let Some(first) = self.0.first() else { return Placement::PreShow };
        if at < first.start {
            return Placement::PreShow;
        }
        let mut before = 0i64;
        for segment in &self.0 {
            if at < segment.start {
                // In the gap before this segment: at the instant the recording resumes.
                return Placement::At(before);
            }
            match segment.end {
                Some(end) if at >= end => before += (end - segment.start).num_milliseconds(),
                _ => return Placement::At(before + (at - segment.start).num_milliseconds()),
            }
        }
        // After the last end: at the end of the recording.
        Placement::At(before)
    }
}

/// One message on the recording's clock, as the replay lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayLine {
    pub offset_ms: i64,
    pub pre_show: bool,
    pub sent_at: DateTime<Utc>,
    /// The name the reader sees (never a Matrix ID).
    pub name: String,
    pub body: String,
}

/// How long a cue shows at most, when the next message comes later.
pub const CUE_MS: i64 = 5000;

/// The replay as WebVTT: a cue per message, from its offset to the next message's or
/// [`CUE_MS`] later, whichever is first (a cue of nothing lasts 1 ms, so that two
/// messages at one instant both show), the voice the sender's name and the text escaped.
pub fn vtt(lines: &[ReplayLine]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for (i, line) in lines.iter().enumerate() {
        let next = lines.get(i + 1).map_or(i64::MAX, |n| n.offset_ms);
        let end = next.min(line.offset_ms.saturating_add(CUE_MS)).max(line.offset_ms + 1);
        out.push_str(&format!(
            "{}\n{} --> {}\n<v {}>{}\n\n",
            i + 1,
            timestamp(line.offset_ms),
            timestamp(end),
            cue_text(&line.name).replace('>', "&gt;"),
            cue_text(&line.body)
        ));
    }
    out
}

/// `hh:mm:ss.ttt`.
fn timestamp(ms: i64) -> String {
    let ms = ms.max(0);
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// Text safe in a cue: `&` and `<` escaped (so `-->` cannot end a timing line either),
/// and no blank line, which would end the cue.
fn cue_text(text: &str) -> String {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace("-->", "--&gt;");
    escaped.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 20, 0, 0).unwrap() + Duration::seconds(s)
    }

    #[test]
    fn starts_reported_twice_are_one_and_each_drop_is_a_gap() {
        let edges = [
            (Edge::Start, t(4)), // the platform, a moment after the server
            (Edge::Start, t(0)),
            (Edge::End, t(60)),
            (Edge::End, t(62)), // the platform again
            (Edge::Start, t(65)),
            (Edge::End, t(100)),
        ];
        let segments = Segments::from_edges(&edges);
        assert_eq!(
            segments.list(),
            [Segment { start: t(0), end: Some(t(60)) }, Segment { start: t(65), end: Some(t(100)) }]
        );
        assert_eq!(segments.place(t(-30)), Placement::PreShow);
        assert_eq!(segments.place(t(10)), Placement::At(10_000));
        assert_eq!(segments.place(t(63)), Placement::At(60_000), "in the gap: when the recording resumes");
        assert_eq!(segments.place(t(70)), Placement::At(65_000));
        assert_eq!(segments.place(t(500)), Placement::At(95_000), "after the end: at the recording's end");
        let live = Segments::from_edges(&[(Edge::Start, t(0))]);
        assert_eq!(live.place(t(30)), Placement::At(30_000));
        assert_eq!(Segments::default().place(t(0)), Placement::PreShow, "never started");
    }

    #[test]
    fn an_end_and_a_start_at_one_instant_are_a_gap_of_nothing() {
        let segments = Segments::from_edges(&[(Edge::Start, t(0)), (Edge::Start, t(10)), (Edge::End, t(10))]);
        assert_eq!(segments.list().len(), 2);
        assert_eq!(segments.place(t(20)), Placement::At(20_000));
    }

    #[test]
    fn cues_end_at_the_next_message_or_after_five_seconds_with_the_text_escaped() {
        let line = |offset_ms, name: &str, body: &str| ReplayLine {
            offset_ms,
            pre_show: false,
            sent_at: t(0),
            name: name.into(),
            body: body.into(),
        };
        let text = vtt(&[line(0, "Ann", "a <b> & c --> d"), line(2000, "B>b", "two\n\nlines"), line(9000, "C", "x")]);
        assert_eq!(
            text,
            "WEBVTT\n\n\
             1\n00:00:00.000 --> 00:00:02.000\n<v Ann>a &lt;b> &amp; c --&gt; d\n\n\
             2\n00:00:02.000 --> 00:00:07.000\n<v B&gt;b>two\nlines\n\n\
             3\n00:00:09.000 --> 00:00:14.000\n<v C>x\n\n"
        );
        assert_eq!(timestamp(3_723_004), "01:02:03.004");
    }
}
