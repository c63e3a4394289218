"""Reads an iCalendar feed with the `icalendar` package, a real parser, as a calendar app
would.

    read_feed.py < feed.ics

Prints one JSON object: the calendar's properties (`version`, `prodid`, `name`,
`refresh`, `refresh_value`, `ttl`) and each event's (`uid`, `sequence`, `status`,
`summary`, `description`, `url`, `dtstart`, `dtend`, `dtstamp`, times in ISO 8601 and
UTC), in the feed's order. Exits 1 when the feed does not parse or an event lacks what
RFC 5545 requires of it (`UID`, `DTSTAMP`, `DTSTART`).
"""
import json
import sys

import re

from icalendar import Calendar


def utc(prop):
    """A DATE-TIME property as ISO 8601 in UTC, or None."""
    if prop is None:
        return None
    value = prop.dt
    if value.tzinfo is None or value.utcoffset() is None or value.utcoffset().total_seconds() != 0:
        raise SystemExit(f"not a UTC time: {value!r}")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def text(prop):
    return None if prop is None else str(prop)


def unescape(value):
    """RFC 5545's TEXT unescaped, in one pass (`\\,` `\\;` `\\n` `\\\\`)."""
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def main() -> int:
    data = sys.stdin.buffer.read()
    calendar = Calendar.from_ical(data)
    if calendar.name != "VCALENDAR":
        raise SystemExit(f"not a VCALENDAR: {calendar.name}")
    refresh = calendar.get("REFRESH-INTERVAL")
    events = []
    for event in calendar.walk("VEVENT"):
        for required in ("UID", "DTSTAMP", "DTSTART"):
            if required not in event:
                raise SystemExit(f"an event without {required}: {event.to_ical()!r}")
        sequence = event.get("SEQUENCE")
        events.append({
            "uid": text(event.get("UID")),
            "sequence": None if sequence is None else int(sequence),
            "status": text(event.get("STATUS")),
            "summary": text(event.get("SUMMARY")),
            "description": text(event.get("DESCRIPTION")),
            "url": text(event.get("URL")),
            "dtstart": utc(event.get("DTSTART")),
            "dtend": utc(event.get("DTEND")),
            "dtstamp": utc(event.get("DTSTAMP")),
        })
    print(json.dumps({
        "version": text(calendar.get("VERSION")),
        "prodid": text(calendar.get("PRODID")),
        # An X- property's type is unknown to the parser, which keeps it escaped; calendar
        # apps read X-WR-CALNAME as TEXT.
        "name": None if "X-WR-CALNAME" not in calendar else unescape(str(calendar["X-WR-CALNAME"])),
        "refresh": None if refresh is None else refresh.to_ical().decode(),
        "refresh_value": None if refresh is None else refresh.params.get("VALUE"),
        "ttl": text(calendar.get("X-PUBLISHED-TTL")),
        "events": events,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
