//! Every statement SQLite and PostgreSQL share, written once with `$N` placeholders
//! (sqlx's SQLite driver binds `$N` too, reordered and repeated). What differs per
//! dialect is in `sqlite.rs` and `postgres.rs`; what records a step and reads the room
//! back is in `room.rs`. Times are unix milliseconds.

// Webhooks.

/// A webhook's receipt, once per `webhook-id`: `(webhook_id, event_type, reservation_id, received_at)`.
pub(super) const RECEIPT: &str =
    "INSERT INTO webhook_receipts (webhook_id, event_type, reservation_id, outcome, received_at)
    VALUES ($1, $2, $3, 'accepted', $4) ON CONFLICT (webhook_id) DO NOTHING";
pub(super) const RECEIPT_STALE: &str = "UPDATE webhook_receipts SET outcome = 'stale' WHERE webhook_id = $1";
/// New facts: due at `$2`, and the version bump tells a worker holding a lease that what
/// it planned from is outdated: `(reservation_id, at)`.
pub(super) const FACTS_ARRIVED: &str =
    "INSERT INTO lifecycle (reservation_id, next_due_at, facts_version) VALUES ($1, $2, 1)
    ON CONFLICT (reservation_id) DO UPDATE SET
        next_due_at = excluded.next_due_at, facts_version = lifecycle.facts_version + 1";
/// New tickets or revocations: like [`FACTS_ARRIVED`] once the room exists. Before, they
/// change no plan (`lifecycle/plan.rs` reads the audience only in a room), so nothing is
/// made due: tickets sold ahead of a show cost no planning each. The version still moves,
/// so a worker opening the room right now plans again before it lets go (its release
/// sees the change), and the new holders are invited: `(reservation_id, at)`.
pub(super) const TICKETS_ARRIVED: &str = "UPDATE lifecycle SET facts_version = facts_version + 1,
        next_due_at = CASE WHEN room_id IS NOT NULL THEN $2 ELSE next_due_at END
    WHERE reservation_id = $1";
pub(super) const REVISION: &str = "SELECT revision FROM reservations WHERE reservation_id = $1";
/// A reservation's description, kept at its stored revision when the new one has none.
pub(super) const UPSERT_RESERVATION: &str = "INSERT INTO reservations (reservation_id, revision, title, description,
        starts_at, ends_at, stream_url, channel_id, channel_name, hosts, open_before_seconds, close_after_seconds,
        updated_at, stream_key_hash, transcript)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
    ON CONFLICT (reservation_id) DO UPDATE SET
        revision = COALESCE(excluded.revision, reservations.revision),
        title = excluded.title, description = excluded.description,
        starts_at = excluded.starts_at, ends_at = excluded.ends_at, stream_url = excluded.stream_url,
        channel_id = excluded.channel_id, channel_name = excluded.channel_name, hosts = excluded.hosts,
        open_before_seconds = excluded.open_before_seconds,
        close_after_seconds = excluded.close_after_seconds, updated_at = excluded.updated_at,
        stream_key_hash = excluded.stream_key_hash, transcript = excluded.transcript";
/// Another active reservation (neither cancelled nor archived) with this stream key:
/// `(stream_key_hash, reservation_id)`.
pub(super) const STREAM_KEY_TAKEN: &str = "SELECT r.reservation_id FROM reservations r
    LEFT JOIN reservation_signals s ON s.reservation_id = r.reservation_id
    LEFT JOIN lifecycle l ON l.reservation_id = r.reservation_id
    WHERE r.stream_key_hash = $1 AND r.reservation_id <> $2
        AND s.cancelled_at IS NULL AND l.archived_at IS NULL
    LIMIT 1";
/// The first cancellation counts: `(reservation_id, at, reason)`.
pub(super) const CANCEL: &str = "INSERT INTO reservation_signals (reservation_id, cancelled_at, cancel_reason)
    VALUES ($1, $2, $3)
    ON CONFLICT (reservation_id) DO UPDATE SET
        cancelled_at = COALESCE(reservation_signals.cancelled_at, excluded.cancelled_at),
        cancel_reason = COALESCE(reservation_signals.cancel_reason, excluded.cancel_reason)";
/// What a grant decides on (`model::grant`): `(reservation_id, ticket_id)`.
pub(super) const TICKET_HELD: &str = "SELECT user_id, email, holder_digest, bound_how IS NOT NULL AS bound,
        revoked_at IS NOT NULL AS revoked, holder_generation
    FROM tickets WHERE reservation_id = $1 AND ticket_id = $2";
/// A ticket's holder, as a grant decided: `(reservation_id, ticket_id, user_id, email,
/// display_name, claim_hash, holder_digest, holder_generation, bound_how, at)`. Every
/// column of the holder is written, so nothing of the former one stays; a new email
/// holder is looked up on the homeserver afresh. The first grant's time is kept.
pub(super) const HOLD_TICKET: &str = "INSERT INTO tickets
        (reservation_id, ticket_id, user_id, email, display_name, claim_hash, holder_digest, holder_generation,
         bound_how, bound_at, granted_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $9 IS NULL THEN NULL ELSE $10 END, $10)
    ON CONFLICT (reservation_id, ticket_id) DO UPDATE SET
        user_id = excluded.user_id, email = excluded.email, display_name = excluded.display_name,
        claim_hash = excluded.claim_hash, holder_digest = excluded.holder_digest,
        holder_generation = excluded.holder_generation, bound_how = excluded.bound_how,
        bound_at = excluded.bound_at, looked_up_at = NULL,
        granted_at = COALESCE(tickets.granted_at, excluded.granted_at)";
/// Whether `ticket.granted` for `$1` comes too late: its reservation is cancelled or archived.
pub(super) const RESERVATION_CLOSED: &str = "SELECT 1 FROM reservation_signals s WHERE s.reservation_id = $1
        AND s.cancelled_at IS NOT NULL
    UNION ALL SELECT 1 FROM lifecycle l WHERE l.reservation_id = $1 AND l.archived_at IS NOT NULL
    LIMIT 1";
/// A cancellation ends what the addresses and codes of its tickets were for: `(reservation_id)`.
pub(super) const FORGET_CANCELLED: &str = "UPDATE tickets SET email = NULL, display_name = NULL, claim_hash = NULL
    WHERE reservation_id = $1 AND (email IS NOT NULL OR display_name IS NOT NULL OR claim_hash IS NOT NULL)";
/// The addresses of tickets whose reservation has not come since `$1`, erased with
/// their codes; the tickets stay (contract §7): `(before)`.
pub(super) const FORGET_ORPHANS: &str = "UPDATE tickets SET email = NULL, display_name = NULL, claim_hash = NULL
    WHERE email IS NOT NULL AND granted_at < $1
        AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.reservation_id = tickets.reservation_id)";
/// Drops a receipt again: `(webhook_id)`, for a grant that came too late and stores nothing.
pub(super) const RECEIPT_FORGET: &str = "DELETE FROM webhook_receipts WHERE webhook_id = $1";
/// `(reservation_id, ticket_id, at)`; the first revocation counts.
pub(super) const REVOKE_TICKET: &str = "INSERT INTO tickets (reservation_id, ticket_id, revoked_at) VALUES ($1, $2, $3)
    ON CONFLICT (reservation_id, ticket_id) DO UPDATE SET revoked_at = COALESCE(tickets.revoked_at, excluded.revoked_at)";
/// `(reservation_id, at)`; the latest start counts (`CASE`, since SQLite has no `GREATEST`).
pub(super) const STREAM_STARTED: &str = "INSERT INTO reservation_signals (reservation_id, stream_started_at)
    VALUES ($1, $2)
    ON CONFLICT (reservation_id) DO UPDATE SET stream_started_at =
        CASE WHEN COALESCE(reservation_signals.stream_started_at, 0) > excluded.stream_started_at
        THEN COALESCE(reservation_signals.stream_started_at, 0) ELSE excluded.stream_started_at END";
/// `(reservation_id, at)`; the latest end counts.
pub(super) const STREAM_ENDED: &str = "INSERT INTO reservation_signals (reservation_id, stream_ended_at)
    VALUES ($1, $2)
    ON CONFLICT (reservation_id) DO UPDATE SET stream_ended_at =
        CASE WHEN COALESCE(reservation_signals.stream_ended_at, 0) > excluded.stream_ended_at
        THEN COALESCE(reservation_signals.stream_ended_at, 0) ELSE excluded.stream_ended_at END";

// Reading reservations.

/// A reservation with its signals, lifecycle and the counts named by `$counts`, filtered
/// by `$where`; read back by `rows::record`.
macro_rules! select_with {
    ($counts:literal, $where:literal) => {
        concat!(
            "SELECT r.*, s.cancelled_at, s.cancel_reason, s.stream_started_at, s.stream_ended_at,
                s.admin_opened_at, s.admin_archived_at, l.last_error, l.attempts,
                l.room_id AS room_id, l.archived_at AS archived_at, ",
            $counts,
            " FROM reservations r
            LEFT JOIN reservation_signals s ON s.reservation_id = r.reservation_id
            LEFT JOIN lifecycle l ON l.reservation_id = r.reservation_id ",
            $where
        )
    };
}
pub(super) use select_with;

/// Reservations with their ticket and member counts, filtered by `$where`.
macro_rules! records {
    ($where:literal) => {
        $crate::store::sql::select_with!(
            "(SELECT COUNT(*) FROM tickets t WHERE t.reservation_id = r.reservation_id
                    AND (t.user_id IS NOT NULL OR t.claim_hash IS NOT NULL)
                    AND t.revoked_at IS NULL) AS tickets_active,
                (SELECT COUNT(*) FROM tickets t WHERE t.reservation_id = r.reservation_id
                    AND t.user_id IS NULL AND t.claim_hash IS NOT NULL
                    AND t.revoked_at IS NULL) AS tickets_unclaimed,
                (SELECT COUNT(*) FROM tickets t WHERE t.reservation_id = r.reservation_id
                    AND t.bound_how IS NOT NULL AND t.revoked_at IS NULL) AS tickets_claimed,
                (SELECT COUNT(*) FROM tickets t WHERE t.reservation_id = r.reservation_id
                    AND t.revoked_at IS NOT NULL) AS tickets_revoked,
                (SELECT COUNT(*) FROM tickets t JOIN room_invites i
                    ON i.reservation_id = t.reservation_id AND i.user_id = t.user_id
                    WHERE t.reservation_id = r.reservation_id AND t.revoked_at IS NULL
                    AND i.failure IS NOT NULL) AS tickets_uninvitable,
                (SELECT COUNT(*) FROM room_members m WHERE m.room_id = l.room_id
                    AND m.membership = 'invite') AS members_invited,
                (SELECT COUNT(*) FROM room_members m WHERE m.room_id = l.room_id
                    AND m.membership = 'join') AS members_joined",
            $where
        )
    };
}
pub(super) use records;

/// Reservations filtered by `$where` with their counts left at zero, for reads that
/// must not count every ticket and member (`rows::record` reads the columns all the same).
macro_rules! without_counts {
    ($where:literal) => {
        $crate::store::sql::select_with!(
            "CAST(0 AS BIGINT) AS tickets_active, CAST(0 AS BIGINT) AS tickets_revoked,
                CAST(0 AS BIGINT) AS tickets_uninvitable, CAST(0 AS BIGINT) AS tickets_unclaimed,
                CAST(0 AS BIGINT) AS tickets_claimed,
                CAST(0 AS BIGINT) AS members_invited, CAST(0 AS BIGINT) AS members_joined",
            $where
        )
    };
}

pub(super) const RECORD_BY_ID: &str = records!("WHERE r.reservation_id = $1");
/// The reservations with a stream key (`$1`, its hash): at most one active, and any
/// number cancelled or archived.
pub(super) const RECORDS_BY_STREAM_KEY: &str =
    without_counts!("WHERE r.stream_key_hash = $1 ORDER BY r.reservation_id LIMIT 16");
/// One reservation as planning reads it, the counts left at zero (`Store::planning`).
pub(super) const RECORD_TO_PLAN: &str = without_counts!("WHERE r.reservation_id = $1");
/// A page: `(after reservation_id, limit)`.
pub(super) const RECORDS_AFTER: &str = records!("WHERE r.reservation_id > $1 ORDER BY r.reservation_id LIMIT $2");
/// A page with what a phase needs and the counts left at zero: the counts read the
/// tickets and members tables, which a walk over every reservation must not.
pub(super) const SCHEDULES_AFTER: &str =
    without_counts!("WHERE r.reservation_id > $1 ORDER BY r.reservation_id LIMIT $2");

/// One channel's reservations that may be in their window around now, without the
/// counts: `(channel_id, starts_at at most, ends_at at least, limit)`. The caller gives
/// bounds wide enough for any `open_before`, `close_after` and overrun and keeps the ones
/// whose window holds now (`schedule`); `reservations_by_channel` finds them.
pub(super) const CHANNEL_AROUND: &str = without_counts!(
    "WHERE r.channel_id = $1 AND r.starts_at <= $2 AND r.ends_at >= $3 ORDER BY r.starts_at, r.reservation_id LIMIT $4"
);

/// A ticket page: `(reservation_id, after ticket_id, limit)`.
pub(super) const TICKETS_PAGE: &str = "SELECT t.ticket_id, t.user_id, t.revoked_at IS NOT NULL AS revoked, i.failure,
        t.email, t.claim_hash IS NOT NULL AS has_claim, t.bound_how, t.holder_generation, t.holder_digest
    FROM tickets t
    LEFT JOIN room_invites i ON i.reservation_id = t.reservation_id AND i.user_id = t.user_id
    WHERE t.reservation_id = $1 AND t.ticket_id > $2
    ORDER BY t.ticket_id LIMIT $3";
/// The ticket a claim code names, and whether it can still be claimed: `(claim_hash)`.
pub(super) const CLAIMABLE: &str = "SELECT t.reservation_id, t.ticket_id, t.user_id,
        t.revoked_at IS NOT NULL AS revoked, l.archived_at IS NOT NULL AS archived
    FROM tickets t LEFT JOIN lifecycle l ON l.reservation_id = t.reservation_id
    WHERE t.claim_hash = $1";
/// Binds an unbound, unrevoked ticket and forgets its email:
/// `(user_id, how, at, reservation_id, ticket_id)`.
pub(super) const BIND_TICKET: &str = "UPDATE tickets
    SET user_id = $1, bound_how = $2, bound_at = $3, email = NULL, display_name = NULL
    WHERE reservation_id = $4 AND ticket_id = $5 AND user_id IS NULL AND revoked_at IS NULL";
/// Email tickets to look up on the homeserver: never looked up (just arrived), not since
/// their room was opened, or not since `$1` while it is open; the longest waiting first:
/// `(before, limit)`.
pub(super) const LOOKUPS_DUE: &str = "SELECT t.reservation_id, t.ticket_id, t.email FROM tickets t
    LEFT JOIN lifecycle l ON l.reservation_id = t.reservation_id
    WHERE t.user_id IS NULL AND t.email IS NOT NULL AND t.revoked_at IS NULL
        AND (t.looked_up_at IS NULL
            OR (l.room_id IS NOT NULL AND l.archived_at IS NULL
                AND (t.looked_up_at < $1 OR t.looked_up_at < l.create_began_at)))
    ORDER BY COALESCE(t.looked_up_at, 0) LIMIT $2";
/// `(at, reservation_id, ticket_id)`.
pub(super) const LOOKED_UP: &str = "UPDATE tickets SET looked_up_at = $1 WHERE reservation_id = $2 AND ticket_id = $3";
/// Tickets with a claim hash, a page after `(reservation_id, ticket_id)`:
/// `(after reservation, after ticket, limit)`.
pub(super) const CLAIM_HASHES: &str = "SELECT reservation_id, ticket_id, claim_hash, holder_digest, holder_generation,
        email FROM tickets
    WHERE (claim_hash IS NOT NULL OR holder_digest IS NOT NULL)
        AND (reservation_id > $1 OR (reservation_id = $1 AND ticket_id > $2))
    ORDER BY reservation_id, ticket_id LIMIT $3";
/// `(hash, digest, reservation_id, ticket_id)`.
pub(super) const SET_CLAIM_HASH: &str =
    "UPDATE tickets SET claim_hash = $1, holder_digest = $2 WHERE reservation_id = $3 AND ticket_id = $4";
pub(super) const SETTING: &str = "SELECT value FROM foyer_settings WHERE name = $1";
/// `(name, value)`.
pub(super) const SET_SETTING: &str = "INSERT INTO foyer_settings (name, value) VALUES ($1, $2)
    ON CONFLICT (name) DO UPDATE SET value = excluded.value";
/// Holders and hosts whose invite keeps failing: `(reservation_id, limit)`.
pub(super) const INVITE_FAILURES: &str = "SELECT user_id, failure FROM room_invites
    WHERE reservation_id = $1 AND failure IS NOT NULL ORDER BY user_id LIMIT $2";

// Homeserver events.

pub(super) const RESERVATION_OF_ROOM: &str = "SELECT reservation_id FROM lifecycle WHERE room_id = $1";
/// Whether `$1` is a reservation's room or a channel space.
pub(super) const MANAGED_ROOM: &str =
    "SELECT 1 FROM lifecycle WHERE room_id = $1 UNION ALL SELECT 1 FROM spaces WHERE room_id = $1 LIMIT 1";
/// An event id, once: `(event_id, at)`.
pub(super) const SEEN_EVENT: &str =
    "INSERT INTO seen_events (event_id, seen_at) VALUES ($1, $2) ON CONFLICT DO NOTHING";
/// A membership event: `(room_id, user_id, membership, invited_by, event_id, at)`.
pub(super) const MEMBER_EVENT: &str =
    "INSERT INTO room_members (room_id, user_id, membership, invited_by, event_id, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (room_id, user_id) DO UPDATE SET
        membership = excluded.membership,
        invited_by = COALESCE(excluded.invited_by, room_members.invited_by),
        event_id = excluded.event_id, updated_at = excluded.updated_at";
/// A known reservation has new facts: `(at, reservation_id)`.
pub(super) const FACTS_CHANGED: &str =
    "UPDATE lifecycle SET next_due_at = $1, facts_version = facts_version + 1 WHERE reservation_id = $2";
/// What [`super::Store::prune_seen_events`] deletes, each statement bound to `before`.
pub(super) const PRUNE: [&str; 2] = [
    "DELETE FROM seen_events WHERE seen_at < $1",
    "DELETE FROM room_members WHERE membership = 'leave' AND updated_at < $1",
];

// Leases.

/// Leases one reservation nobody holds: `(until, owner, reservation_id, now)`.
pub(super) const CLAIM: &str = "UPDATE lifecycle SET locked_until = $1, locked_by = $2
    WHERE reservation_id = $3 AND (locked_until IS NULL OR locked_until <= $4)
    RETURNING facts_version, attempts";
/// `(until, reservation_id, owner)`.
pub(super) const RENEW: &str = "UPDATE lifecycle SET locked_until = $1 WHERE reservation_id = $2 AND locked_by = $3";
/// A leased row is due again when its lease runs out, not before.
pub(super) const NEXT_DUE: &str =
    "SELECT MIN(CASE WHEN locked_until > next_due_at THEN locked_until ELSE next_due_at END)
    AS due FROM lifecycle WHERE next_due_at IS NOT NULL";
/// Ends a lease: due at `$2`, or at once (`$3`) when the facts changed meanwhile; an
/// error (`$4`) counts an attempt: `(facts_version, next_due_at, now, error, reservation_id, owner)`.
pub(super) const RELEASE: &str = "UPDATE lifecycle SET locked_until = NULL,
        next_due_at = CASE WHEN facts_version = $1 THEN $2 ELSE $3 END,
        attempts = CASE WHEN CAST($4 AS TEXT) IS NULL THEN 0 ELSE attempts + 1 END,
        last_error = $4
    WHERE reservation_id = $5 AND locked_by = $6";
/// Whether an instance holds any lease that has not run out: `(owner, now)`.
pub(super) const HOLDS_LIVE_LEASE: &str = "SELECT 1 FROM lifecycle WHERE locked_by = $1 AND locked_until > $2 LIMIT 1";

// Admin commands.

pub(super) const RESERVATION_EXISTS: &str = "SELECT 1 FROM reservations WHERE reservation_id = $1";
/// `(reservation_id, at)`; the first request counts, asking again changes nothing.
pub(super) const ADMIN_OPEN: &str = "INSERT INTO reservation_signals (reservation_id, admin_opened_at) VALUES ($1, $2)
    ON CONFLICT (reservation_id) DO UPDATE SET
        admin_opened_at = COALESCE(reservation_signals.admin_opened_at, excluded.admin_opened_at)";
/// `(reservation_id, at)`; as [`ADMIN_OPEN`].
pub(super) const ADMIN_ARCHIVE: &str = "INSERT INTO reservation_signals (reservation_id, admin_archived_at)
    VALUES ($1, $2)
    ON CONFLICT (reservation_id) DO UPDATE SET
        admin_archived_at = COALESCE(reservation_signals.admin_archived_at, excluded.admin_archived_at)";
/// Due now with failures forgotten: `(reservation_id, now)`.
pub(super) const ADMIN_DUE: &str =
    "INSERT INTO lifecycle (reservation_id, next_due_at, facts_version) VALUES ($1, $2, 1)
    ON CONFLICT (reservation_id) DO UPDATE SET
        next_due_at = excluded.next_due_at, attempts = 0, facts_version = lifecycle.facts_version + 1";
/// `(event_id, event JSON, received_at)`; an event already kept is kept once.
pub(super) const QUEUE_ADMIN_EVENT: &str =
    "INSERT INTO admin_inbox (event_id, event, received_at) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING";
pub(super) const ADMIN_INBOX: &str = "SELECT event_id, event, received_at FROM admin_inbox ORDER BY seq LIMIT $1";
pub(super) const FORGET_ADMIN_EVENT: &str = "DELETE FROM admin_inbox WHERE event_id = $1";

// Direct chats opened by strangers to claim tickets.

/// `(room_id, user_id, at)`.
pub(super) const DIRECT_CHAT_ACTIVE: &str = "INSERT INTO direct_chats (room_id, user_id, last_active_at)
    VALUES ($1, $2, $3) ON CONFLICT (room_id) DO UPDATE SET last_active_at = excluded.last_active_at";
/// `(before, limit)`.
/// `(room_id, at)`: only a chat a stranger opened is kept (an admin's room never is).
pub(super) const DIRECT_CHAT_USED: &str = "UPDATE direct_chats SET last_active_at = $2 WHERE room_id = $1";
pub(super) const IDLE_DIRECT_CHATS: &str =
    "SELECT room_id FROM direct_chats WHERE last_active_at < $1 ORDER BY last_active_at LIMIT $2";
pub(super) const FORGET_DIRECT_CHAT: &str = "DELETE FROM direct_chats WHERE room_id = $1";
/// `(room_id)`: who opened the chat, if it is a stranger's direct chat.
pub(super) const DIRECT_CHAT_OPENER: &str = "SELECT user_id FROM direct_chats WHERE room_id = $1";
/// `(user_id)`: the user's open direct chats, and everyone's.
pub(super) const DIRECT_CHAT_COUNTS: &str = "SELECT
    (SELECT COUNT(*) FROM direct_chats WHERE user_id = $1) AS of_user,
    (SELECT COUNT(*) FROM direct_chats) AS open";

// Status-page sessions.

pub(super) const DROP_EXPIRED_SESSIONS: &str = "DELETE FROM status_sessions WHERE expires_at <= $1";
pub(super) const START_SESSION: &str =
    "INSERT INTO status_sessions (session_id, created_at, expires_at) VALUES ($1, $2, $3)";
pub(super) const SESSION_LIVE: &str = "SELECT 1 FROM status_sessions WHERE session_id = $1 AND expires_at > $2";
pub(super) const END_SESSION: &str = "DELETE FROM status_sessions WHERE session_id = $1";

/// One outbound event into the outbox, once per `once_key` (NULL never conflicts):
/// `(event_id, reservation_id, type, payload, once_key, created_at)`, due at once.
pub(super) const OUTBOX_INSERT: &str = "INSERT INTO outbox
        (event_id, reservation_id, type, payload, once_key, created_at, next_attempt_at)
    VALUES ($1, $2, $3, $4, $5, $6, $6)
    ON CONFLICT DO NOTHING";
pub(super) const OUTBOX_EVENTS: &str = "SELECT reservation_id, type, event_id, payload FROM outbox ORDER BY seq";

// The outbox's sender.

/// The name of the flag (in `foyer_settings`) a `410 Gone` raises: `1` while every
/// delivery waits for `!foyer outbox resume`.
pub(super) const OUTBOX_PAUSED: &str = "outbox_paused";
/// Leases the oldest undelivered row of each reservation that is due and not leased,
/// unless delivery is paused: `(owner, until, now, limit)`. A row waits while an earlier
/// one of its reservation is pending or paused (order per reservation); dropped and
/// failed rows no longer count. `$lock` is PostgreSQL's `FOR UPDATE SKIP LOCKED`, so
/// that instances claiming at once each skip what another is taking; the outer
/// conditions are checked again on the row as it is when the lock is taken.
macro_rules! outbox_claim {
    ($lock:literal) => {
        concat!(
            "UPDATE outbox SET locked_by = $1, locked_until = $2
            WHERE seq IN (
                SELECT o.seq FROM outbox o
                WHERE o.state = 'pending' AND o.next_attempt_at <= $3
                    AND (o.locked_until IS NULL OR o.locked_until <= $3)
                    AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.reservation_id = o.reservation_id
                        AND e.seq < o.seq AND e.state IN ('pending', 'paused'))
                    AND NOT EXISTS (SELECT 1 FROM foyer_settings s
                        WHERE s.name = 'outbox_paused' AND s.value = '1')
                ORDER BY o.seq LIMIT $4 ",
            $lock,
            ")
            AND state = 'pending' AND (locked_until IS NULL OR locked_until <= $3)
            RETURNING seq, event_id, reservation_id, type, payload, attempts"
        )
    };
}
pub(super) use outbox_claim;
/// Ends a lease with the attempt's outcome, if this owner still holds it:
/// `(state, next_attempt_at, error, finished_at, seq, owner)`.
pub(super) const OUTBOX_FINISH: &str = "UPDATE outbox SET state = $1, attempts = attempts + 1,
        next_attempt_at = $2, last_error = $3, finished_at = $4, locked_by = NULL, locked_until = NULL
    WHERE seq = $5 AND locked_by = $6 AND state = 'pending'";
/// After a resume, the rows a `410` stopped are due again: `(now)`.
pub(super) const OUTBOX_UNPAUSE: &str =
    "UPDATE outbox SET state = 'pending', next_attempt_at = $1 WHERE state = 'paused'";
/// The undelivered rows: how many and since when.
pub(super) const OUTBOX_DEPTH: &str =
    "SELECT COUNT(*) AS depth, MIN(created_at) AS oldest FROM outbox WHERE state IN ('pending', 'paused')";
