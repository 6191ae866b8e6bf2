"""``sms_audit_log``: one metadata row per text in or out and per engine decision.

A row holds the phone hash, a type (template id, keyword class or decision name), the direction,
the consent state at that moment, the conversation id as session id, the correlation id, the
modality and an outcome constant. Never a body, number, name or MRN: callers pass constants, and
the columns are bounded so that a mistake cannot smuggle a message body in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg

__all__ = ["AuditRow", "AuditTrail", "Direction", "recent_endings"]

Direction = Literal["inbound", "outbound", "system"]
_MAX = 64  # constants are short; anything longer is a bug, cut rather than stored


@dataclass(frozen=True, slots=True)
class AuditRow:
    message_type: str
    direction: Direction
    consent_state: str | None
    outcome: str | None


@dataclass
class AuditTrail:
    """Audit rows of one transaction for one phone, written together in one round trip."""

    phone_hash: str
    session_id: uuid.UUID | None
    correlation_id: str
    modality: str | None
    consent_state: str | None = None
    rows: list[AuditRow] = field(default_factory=list)

    def add(self, message_type: str, direction: Direction, outcome: str | None = None) -> None:
        self.rows.append(
            AuditRow(
                message_type[:_MAX],
                direction,
                self.consent_state,
                outcome[:_MAX] if outcome else None,
            )
        )

    async def flush(self, conn: asyncpg.Connection, now: datetime) -> None:
        sql, params = self.insert(1)
        if sql:
            await conn.execute(sql, now, *params)

    def insert(self, first: int) -> tuple[str, list[Any]]:
        """The pending rows as one INSERT (``$first`` is the time; the other parameters follow,
        ``params`` lists them), and forget them. Empty when there is nothing to write.

        Callers put it in a ``WITH`` in front of their own statement so that a transition's
        state and its audit rows cost one round trip.
        """
        if not self.rows:
            return "", []
        rows, self.rows = self.rows, []
        n = [f"${first + i}" for i in range(8)]
        # Only parameter numbers are formatted into the text; the values travel as parameters.
        sql = f"""
            INSERT INTO sms_audit_log (occurred_at, phone_hash, message_type, direction,
                                       consent_state, session_id, correlation_id, modality, outcome)
            SELECT {n[0]}::timestamptz, {n[1]}::text, t.message_type, t.direction, t.consent_state,
                   {n[2]}::uuid, {n[3]}::text, {n[4]}::text, t.outcome
              FROM unnest({n[5]}::text[], {n[6]}::text[], {n[7]}::text[], ${first + 8}::text[])
                   WITH ORDINALITY AS t(message_type, direction, consent_state, outcome, n)
             ORDER BY t.n
            """  # noqa: S608
        params: list[Any] = [
            self.phone_hash,
            self.session_id,
            self.correlation_id[:_MAX],
            self.modality,
            [r.message_type for r in rows],
            [r.direction for r in rows],
            [r.consent_state for r in rows],
            [r.outcome for r in rows],
        ]
        return sql, params


async def recent_endings(conn: asyncpg.Connection, phone_hash: str, since: datetime) -> int:
    """How many conversation-ended texts went to this phone since ``since``."""
    n = await conn.fetchval(
        """
        SELECT count(*) FROM sms_audit_log
         WHERE phone_hash = $1 AND direction = 'outbound' AND message_type = 'ended'
           AND occurred_at > $2
        """,
        phone_hash,
        since,
    )
    return int(n)
