"""``scheduling_config`` and ``config_audit``: the per-modality SMS switches and who changed them.

radsched.modality decides what a switch means (codes, defaults, the cache); these are its statements.
A switch, its audit row and the notification to every daemon commit in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

__all__ = ["read_all", "read_locked", "write"]


async def read_all(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every modality with a row: modality, enabled, updated_at, updated_by."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT modality, enabled, updated_at, updated_by FROM scheduling_config"
    )
    return rows


async def read_locked(conn: asyncpg.Connection, code: str) -> bool | None:
    """The stored switch of ``code`` (None: no row), after serialising concurrent switches of it
    for the caller's transaction, so that old -> new in the audit is exact."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "modality:" + code)
    current: bool | None = await conn.fetchval(
        "SELECT enabled FROM scheduling_config WHERE modality = $1", code
    )
    return current


async def write(
    conn: asyncpg.Connection,
    code: str,
    *,
    enabled: bool,
    by: str,
    now: datetime,
    old_value: str,
    new_value: str,
    note: str | None,
    channel: str,
) -> None:
    """Store the switch, audit it (``old_value`` → ``new_value``) and NOTIFY ``channel``."""
    await conn.execute(
        """
        INSERT INTO scheduling_config (modality, enabled, updated_at, updated_by)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (modality) DO UPDATE
            SET enabled = EXCLUDED.enabled, updated_at = EXCLUDED.updated_at,
                updated_by = EXCLUDED.updated_by
        """,
        code,
        enabled,
        now,
        by,
    )
    await conn.execute(
        """
        INSERT INTO config_audit (changed_at, changed_by, item, old_value, new_value, note)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        now,
        by,
        f"modality:{code}",
        old_value,
        new_value,
        note,
    )
    await conn.execute("SELECT pg_notify($1, $2)", channel, "modality:" + code)
