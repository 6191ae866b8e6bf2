"""SQL of shadow mode: recorded mismatches (``sql/0011_shadow.sql``) and the report over them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from radsched.beside.shadow import Mismatch

__all__ = ["KindSummary", "purge_before", "record", "summary"]


async def record(conn: asyncpg.Connection, mismatches: Sequence[Mismatch], now: datetime) -> None:
    await conn.executemany(
        """
        INSERT INTO shadow_mismatches
            (seen_at, kind, call, modality, location_id, slot_start, here_id, shadow_id, detail)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        """,
        [
            (
                now,
                m.kind,
                m.call,
                m.modality,
                m.location_id,
                m.slot_start,
                m.here_id,
                m.shadow_id,
                m.detail,
            )
            for m in mismatches
        ],
    )


async def purge_before(conn: asyncpg.Connection, cutoff: datetime) -> int:
    status: str = await conn.execute("DELETE FROM shadow_mismatches WHERE seen_at < $1", cutoff)
    return int(status.rsplit(maxsplit=1)[-1])


@dataclass(frozen=True, slots=True)
class KindSummary:
    kind: str
    count: int
    first_seen: datetime
    last_seen: datetime
    examples: tuple[Mismatch, ...]


async def summary(
    conn: asyncpg.Connection, since: datetime, *, examples: int = 3
) -> list[KindSummary]:
    """Mismatches seen since ``since``, by kind (most frequent first), with the latest examples."""
    rows = await conn.fetch(
        """
        SELECT kind, count(*) AS n, min(seen_at) AS first_seen, max(seen_at) AS last_seen
          FROM shadow_mismatches
         WHERE seen_at >= $1
         GROUP BY kind
         ORDER BY n DESC, kind
        """,
        since,
    )
    out: list[KindSummary] = []
    for row in rows:
        samples = await conn.fetch(
            """
            SELECT kind, call, modality, location_id, slot_start, here_id, shadow_id, detail
              FROM shadow_mismatches
             WHERE seen_at >= $1 AND kind = $2
             ORDER BY seen_at DESC, id DESC
             LIMIT $3
            """,
            since,
            row["kind"],
            examples,
        )
        out.append(
            KindSummary(
                row["kind"],
                row["n"],
                row["first_seen"],
                row["last_seen"],
                tuple(Mismatch(**dict(s)) for s in samples),
            )
        )
    return out
