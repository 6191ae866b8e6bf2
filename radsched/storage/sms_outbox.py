"""The SMS outbox: rows written with the state change that causes a text, sent after commit.

``enqueue_text`` is what the conversation driver calls inside its transaction. Everything else here
is the SQL the sender (``radsched.twilio.sender``) and the status webhook use to move a row through its
life::

    pending ──claim──▶ sending ──▶ sent ──callback──▶ delivered | failed
       ▲                  │
       └──retry (backoff)─┤──▶ failed (opted out, invalid number, ambiguous)
                          └──▶ dead (rejected, expired, attempts exhausted)

Never twice: a row is marked ``sending`` (claim token + the claiming session's identity) in its own
committed transaction *before* Twilio is called, and every later update is guarded by that token.
A ``sending`` row whose session is gone was interrupted mid-send and becomes ``failed`` /
``ambiguous`` — never pending again. Only a status callback can then prove it was sent.

The number and body are sealed with ``PhiBox`` under an AAD that names the row, and the sealed
payload is deleted as soon as the text is accepted or can never be sent.
"""

from __future__ import annotations

import asyncio
import collections
import re
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from radsched.privacy import PhiBox
from radsched.storage.listen import listen

NOTIFY_CHANNEL = "radsched_sms_outbox"
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")

# Rank of outbox states for status callbacks, which may arrive late, twice or out of order: a
# callback only ever moves a row forward. Rows a callback may rescue (ambiguous, dead, pending after a
# 5xx that Twilio in fact accepted) rank lowest; a failure Twilio itself reported ranks as final.
_RANK = {"pending": 0, "sending": 0, "dead": 0, "sent": 1, "delivered": 2, "failed": 2}
_DELIVERED = frozenset({"delivered", "read"})
_FAILED = frozenset({"failed", "undelivered", "canceled"})


def payload_aad(row_id: int) -> bytes:
    return f"sms_outbox:{row_id}".encode()


class OutboxIds:
    """Row ids for new outbox rows, reserved from ``sms_outbox_id_seq`` a block at a time.

    A text's payload is sealed under an AAD that names its row id, so the id must be known before
    the INSERT. Asking the sequence once per text was one more round trip in every transaction that
    queues a text (issue 16); a block costs one round trip per ``block`` texts.

    Nothing else changes for readers of the table: the ids come from the same sequence (a daemon of
    the previous release, drawing one at a time, never collides), and the AAD is the same, so any
    sender opens the row. Ids reserved and never used leave gaps, as a rolled-back ``nextval``
    always did. With two daemons an id no longer tells which of their rows is older, so the sender
    starts a claimed batch in the order the rows were queued (``created_at``, then id:
    :func:`claim_due`); one conversation's steps are serialised by its lock, so its texts still
    go in the order its steps queued them.
    """

    def __init__(self, block: int = 32) -> None:
        if block < 1:
            raise ValueError("block must be at least 1")
        self._block = block
        self._free: collections.deque[int] = collections.deque()
        # One refill at a time: two concurrent refills would interleave their nextval calls.
        self._refill = asyncio.Lock()

    async def take(self, conn: asyncpg.Connection) -> int:
        """The next reserved id; reserves a new block on ``conn`` when none is left."""
        if not self._free:
            async with self._refill:
                if not self._free:
                    rows = await conn.fetch(
                        "SELECT nextval('sms_outbox_id_seq') FROM generate_series(1, $1)",
                        self._block,
                    )
                    self._free.extend(int(r[0]) for r in rows)
        return self._free.popleft()


async def enqueue_text(
    conn: asyncpg.Connection,
    *,
    phi: PhiBox,
    to_e164: str,
    body: str,
    template_id: str,
    phone_hash: str,
    conversation_id: uuid.UUID | None,
    correlation_id: str,
    now: datetime,
    not_after: datetime | None = None,
    ids: OutboxIds | None = None,
) -> int:
    """Queue one text in the caller's transaction; return the ``sms_outbox`` row id.

    ``ids`` reserves row ids ahead (one round trip per block); without it, the id is asked of the
    sequence for this text alone.

    The row is visible to senders only when the caller commits; the NOTIFY is delivered at commit
    too, so every daemon sharing the database wakes up then (and not for a rolled-back text).
    """
    if not _E164.fullmatch(to_e164):
        raise ValueError("enqueue_text needs an E.164 number")
    if not body:
        raise ValueError("enqueue_text needs a body")
    if ids is not None:
        row_id = await ids.take(conn)
    else:
        row_id = int(await conn.fetchval("SELECT nextval('sms_outbox_id_seq')"))
    sealed = phi.seal({"to": to_e164, "body": body}, aad=payload_aad(row_id))
    await conn.execute(
        """
        WITH queued AS (
            INSERT INTO sms_outbox (id, conversation_id, phone_hash, template_id, payload,
                                    next_attempt_at, not_after, created_at, correlation_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $8)
            RETURNING id
        )
        SELECT pg_notify($9, '') FROM queued
        """,
        row_id,
        conversation_id,
        phone_hash,
        template_id,
        sealed,
        now,
        not_after,
        correlation_id,
        NOTIFY_CHANNEL,
    )
    return row_id


class DedicatedConnection:
    """One connection of our own, used by one statement at a time, outside the shared pool.

    Why not the pool: an asyncpg pool acquire/release costs about 90 µs of client CPU plus a reset
    round trip, several times a statement this short. And this session runs with
    ``synchronous_commit = off``: a commit returns without waiting for the WAL flush (about 5 ms on
    the reference disk), which is right for writes whose loss in a *PostgreSQL* crash is harmless.
    A write that must be durable before anything leaves the process says so with
    :meth:`durable` (the outbox claim, see ``claim_due``).
    """

    def __init__(
        self,
        dsn: str,
        *,
        name: str,
        channel: str | None = None,
        on_notify: Callable[[str], None] | None = None,
    ) -> None:
        self._dsn = dsn
        self._name = name
        # With a channel the session also LISTENs on it (storage/listen.py): the sender hears
        # NOTIFYs on the session that carries its identity.
        self._channel = channel
        self._on_notify = on_notify
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def connection(self) -> asyncpg.Connection | None:
        return self._conn

    @property
    def is_open(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def open(self) -> asyncpg.Connection:
        await self.close()
        settings = {"timezone": "UTC", "synchronous_commit": "off"}
        if self._channel is not None and self._on_notify is not None:
            session = await listen(
                self._dsn, self._channel, self._on_notify, name=self._name, server_settings=settings
            )
            self._conn = session.conn
        else:
            self._conn = await asyncpg.connect(
                self._dsn, server_settings={"application_name": self._name, **settings}
            )
        return self._conn

    @asynccontextmanager
    async def use(self, *, reconnect: bool) -> AsyncIterator[asyncpg.Connection]:
        """The connection, for one statement or transaction. A lost connection is reopened when
        ``reconnect`` is set; otherwise it raises ``ConnectionResetError`` (the sender must learn
        that its session, its identity, changed)."""
        async with self._lock:
            if not self.is_open:
                if not reconnect:
                    raise ConnectionResetError(f"{self._name}: database connection lost")
                await self.open()
            assert self._conn is not None
            yield self._conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()


# --- the sender's side ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedText:
    id: int
    claim_token: uuid.UUID
    payload: bytes | None
    template_id: str
    phone_hash: str
    attempts: int
    not_after: datetime | None
    correlation_id: str


SESSION_IDENTITY_SQL = """
SELECT pid::text || '@' || (extract(epoch FROM backend_start) * 1000000)::bigint::text
FROM pg_stat_activity WHERE pid = pg_backend_pid()
"""


async def session_identity(conn: asyncpg.Connection) -> str:
    """This session's ``pid@backend start`` (what ``claimed_by`` holds while it sends)."""
    identity: str = await conn.fetchval(SESSION_IDENTITY_SQL)
    return identity


async def claim_due(
    conn: asyncpg.Connection, *, now: datetime, limit: int, claimed_by: str
) -> list[ClaimedText]:
    """Mark up to ``limit`` due rows 'sending' (SKIP LOCKED: other daemons take other rows).

    The claim is committed durably (``synchronous_commit = on`` whatever the session says) before
    this returns: a claim lost in a PostgreSQL crash after the text left would make the row
    pending again, and the text would go twice. So it must not run inside the caller's
    transaction (its rows would be committed only later, after the texts left).

    One round trip: the statement is its own transaction and switches ``synchronous_commit`` on
    for that transaction only (``set_config(…, true)`` lasts until the transaction ends, and the
    commit that ends it reads the setting first). BEGIN, SET LOCAL and COMMIT were three more round
    trips per batch (issue 16).
    """
    if conn.is_in_transaction():
        raise RuntimeError(
            "sms_outbox.claim_due commits its own claim; call it outside a transaction"
        )
    token = uuid.uuid4()
    rows = await _claim(conn, now=now, limit=limit, token=token, claimed_by=claimed_by)
    return [
        ClaimedText(
            id=r["id"],
            claim_token=token,
            payload=r["payload"],
            template_id=r["template_id"],
            phone_hash=r["phone_hash"],
            attempts=r["attempts"],
            not_after=r["not_after"],
            correlation_id=r["correlation_id"],
        )
        # Started in the order they were queued: ids come in blocks (OutboxIds), so with two
        # daemons the id alone no longer follows that order; the time of queueing does.
        for r in sorted(rows, key=lambda r: (r["created_at"], int(r["id"])))
    ]


async def _claim(
    conn: asyncpg.Connection, *, now: datetime, limit: int, token: uuid.UUID, claimed_by: str
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        WITH durable AS MATERIALIZED (
            SELECT set_config('synchronous_commit', 'on', true) AS setting
        ), due AS (
            SELECT id FROM sms_outbox
            WHERE state = 'pending' AND next_attempt_at <= $1
            ORDER BY next_attempt_at, id
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        )
        UPDATE sms_outbox o
        SET state = 'sending', attempts = o.attempts + 1,
            claim_token = $3, claimed_by = $4, claimed_at = $1
        -- A row is claimed only through the join with `durable`, so the setting is in place
        -- before any row changes (a claim of nothing writes nothing that needs a flush).
        FROM due, durable WHERE o.id = due.id
        RETURNING o.id, o.payload, o.template_id, o.phone_hash, o.attempts, o.not_after,
                  o.correlation_id, o.created_at
        """,
        now,
        limit,
        token,
        claimed_by,
    )
    return rows


async def mark_sent(
    conn: asyncpg.Connection, text: ClaimedText, *, sid: str, now: datetime
) -> str | None:
    """Twilio accepted the text: keep the MessageSid, delete the sealed payload.

    A status callback can beat this update (Twilio is fast, our commit is not); it then left its
    status on the row, and the row goes straight to that status. Returns the new state, or None
    when the claim was lost (the row was declared ambiguous meanwhile).
    """
    state: str | None = await conn.fetchval(
        """
        UPDATE sms_outbox
        SET state = CASE WHEN provider_status = ANY($5::text[]) THEN 'delivered'
                         WHEN provider_status = ANY($6::text[]) THEN 'failed'
                         ELSE 'sent' END,
            provider_sid = $3, sent_at = $4, payload = NULL, claim_token = NULL,
            error_class = NULL, error_code = NULL, last_error = NULL
        WHERE id = $1 AND claim_token = $2 AND state = 'sending'
        RETURNING state
        """,
        text.id,
        text.claim_token,
        sid,
        now,
        list(_DELIVERED),
        list(_FAILED),
    )
    return state


async def mark_retry(
    conn: asyncpg.Connection,
    text: ClaimedText,
    *,
    next_attempt_at: datetime,
    error_class: str,
    error_code: int | None,
    last_error: str,
) -> bool:
    """Back to 'pending' for another attempt at ``next_attempt_at`` (nothing was created)."""
    done = await conn.fetchval(
        """
        UPDATE sms_outbox
        SET state = 'pending', next_attempt_at = $3, claim_token = NULL,
            error_class = $4, error_code = $5, last_error = $6
        WHERE id = $1 AND claim_token = $2 AND state = 'sending'
        RETURNING true
        """,
        text.id,
        text.claim_token,
        next_attempt_at,
        error_class,
        error_code,
        last_error,
    )
    return bool(done)


async def mark_final(
    conn: asyncpg.Connection,
    text: ClaimedText,
    *,
    state: str,
    error_class: str,
    error_code: int | None,
    last_error: str,
) -> bool:
    """'failed' or 'dead' for good. The sealed payload goes: a text is never re-sent by hand
    (``radsched outbox`` refuses to), so nothing may keep the number and body any longer."""
    done = await conn.fetchval(
        """
        UPDATE sms_outbox
        SET state = $3, claim_token = NULL, error_class = $4, error_code = $5, last_error = $6,
            payload = NULL
        WHERE id = $1 AND claim_token = $2 AND state = 'sending'
        RETURNING true
        """,
        text.id,
        text.claim_token,
        state,
        error_class,
        error_code,
        last_error,
    )
    return bool(done)


async def recover_interrupted(
    conn: asyncpg.Connection, *, now: datetime, lease_s: float
) -> list[str]:
    """Declare 'sending' rows of vanished sessions (or older than the lease) ambiguous.

    Returns their template ids (for the metrics).
    """
    rows = await conn.fetch(
        """
        UPDATE sms_outbox
        SET state = 'failed', claim_token = NULL, error_class = 'ambiguous', payload = NULL,
            last_error = 'interrupted mid-send; not re-sent (needs review)'
        WHERE state = 'sending'
          AND (claimed_at < $1::timestamptz - make_interval(secs => $2::float8)
               OR claimed_by IS NULL
               OR claimed_by NOT IN (
                   SELECT pid::text || '@'
                          || (extract(epoch FROM backend_start) * 1000000)::bigint::text
                   FROM pg_stat_activity WHERE pid IS NOT NULL AND backend_start IS NOT NULL))
        RETURNING template_id
        """,
        now,
        lease_s,
    )
    return [r["template_id"] for r in rows]


async def backlog(conn: asyncpg.Connection) -> tuple[int, datetime | None, datetime | None]:
    """(texts waiting or in flight, creation time of the oldest, when the next pending is due)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(created_at) AS oldest, "
        "       min(next_attempt_at) FILTER (WHERE state = 'pending') AS due "
        "FROM sms_outbox WHERE state IN ('pending', 'sending')"
    )
    assert row is not None
    return int(row["n"]), row["oldest"], row["due"]


# --- status callbacks ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusChange:
    outbox_id: int
    template_id: str
    phone_hash: str
    correlation_id: str
    old_state: str
    new_state: str
    error_code: int | None


def target_state(message_status: str) -> str:
    if message_status in _DELIVERED:
        return "delivered"
    if message_status in _FAILED:
        return "failed"
    return "sent"


async def apply_status(
    conn: asyncpg.Connection,
    *,
    sid: str,
    message_status: str,
    error_code: int | None,
    error_class: str | None,
    outbox_id: int | None,
    now: datetime,
) -> StatusChange | None:
    """Record a status callback on its outbox row; None when the row is unknown.

    The row is found by MessageSid, or — for a text whose send was ambiguous, so we never learnt its
    sid — by the ``?outbox=<id>`` our StatusCallback URL carries. A row still 'sending' only notes
    the status (``mark_sent`` applies it); otherwise the row moves forward, never back.
    """
    row = await conn.fetchrow(
        "SELECT id, state, error_class, template_id, phone_hash, correlation_id "
        "FROM sms_outbox WHERE provider_sid = $1 FOR UPDATE",
        sid,
    )
    if row is None and outbox_id is not None:
        row = await conn.fetchrow(
            "SELECT id, state, error_class, template_id, phone_hash, correlation_id "
            "FROM sms_outbox WHERE id = $1 AND provider_sid IS NULL FOR UPDATE",
            outbox_id,
        )
    if row is None:
        return None
    old = row["state"]
    new = target_state(message_status)
    rescuable = old == "failed" and row["error_class"] == "ambiguous"
    if old == "sending" or _RANK[new] <= (0 if rescuable else _RANK[old]):
        new = old
    if new == old:
        await conn.execute(
            "UPDATE sms_outbox SET provider_sid = $2, provider_status = $3, status_at = $4 "
            "WHERE id = $1",
            row["id"],
            sid,
            message_status,
            now,
        )
    else:
        failed = new == "failed"
        await conn.execute(
            """
            UPDATE sms_outbox
            SET state = $2, provider_sid = $3, provider_status = $4, status_at = $5,
                sent_at = coalesce(sent_at, $5), payload = NULL, claim_token = NULL,
                error_code = CASE WHEN $6 THEN $7::integer END,
                error_class = CASE WHEN $6 THEN $8::text END,
                last_error = CASE WHEN $6 THEN 'status callback: ' || $4::text END
            WHERE id = $1
            """,
            row["id"],
            new,
            sid,
            message_status,
            now,
            failed,
            error_code,
            error_class,
        )
    return StatusChange(
        outbox_id=row["id"],
        template_id=row["template_id"],
        phone_hash=row["phone_hash"],
        correlation_id=row["correlation_id"],
        old_state=old,
        new_state=new,
        error_code=error_code,
    )


async def drop_pending(conn: asyncpg.Connection, conversation_id: uuid.UUID, why: str) -> str:
    """Unsent texts of an ended conversation are dropped (their sealed payload deleted)."""
    status: str = await conn.execute(
        """
        UPDATE sms_outbox SET state = 'dead', payload = NULL, last_error = $2
         WHERE conversation_id = $1 AND state = 'pending'
        """,
        conversation_id,
        why,
    )
    return status


async def drop_pending_to_phone(
    conn: asyncpg.Connection, phone_hash: str, template_ids: Sequence[str], why: str
) -> int:
    """Unsent texts of these templates to a phone that just opted out are dropped (payload deleted):
    a reminder queued before the STOP must not reach the patient after it."""
    status: str = await conn.execute(
        """
        UPDATE sms_outbox SET state = 'dead', payload = NULL, last_error = $3
         WHERE phone_hash = $1 AND state = 'pending' AND template_id = ANY($2::text[])
        """,
        phone_hash,
        list(template_ids),
        why,
    )
    return int(status.rsplit(maxsplit=1)[-1])


async def list_rows(
    conn: asyncpg.Connection, *, state: str | None, limit: int
) -> list[asyncpg.Record]:
    """Newest first, metadata only (``has_body`` says whether the sealed payload is still kept)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT id, template_id, state, attempts, created_at, next_attempt_at,
               sent_at, last_error, payload IS NOT NULL AS has_body
          FROM sms_outbox
         WHERE ($1::text IS NULL OR state = $1)
         ORDER BY id DESC LIMIT $2
        """,
        state,
        limit,
    )
    return rows


async def drop_by_operator(conn: asyncpg.Connection, row_id: int) -> bool:
    """Drop one text not yet being sent (body deleted); False when no such pending row."""
    done = await conn.fetchval(
        """
        UPDATE sms_outbox SET state = 'dead', payload = NULL, last_error = 'dropped by operator'
         WHERE id = $1 AND state = 'pending' RETURNING id
        """,
        row_id,
    )
    return done is not None
