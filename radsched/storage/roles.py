"""Which roles run on a database, and queued work that no running daemon will do.

Every daemon's database sessions carry ``application_name = 'radsched roles=gateway,emr'``
(:func:`session_name`), so the roles running right now are in ``pg_stat_activity``: no table, no
heartbeat, and a daemon that dies takes its sessions — and its roles — with it. After a role change on
restart, work left queued for a role no daemon runs any more (an SIU outbox without an ``emr`` daemon,
texts without an ``sms`` daemon, pending bookings without a ``gateway``) is kept, and reported.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from radsched.beside.roles import ALL_ROLES, Role

__all__ = ["QUEUES", "queued_work", "running_roles", "session_name"]

_PREFIX = "radsched roles="

#: The queue each role drains: (role, what it is called in a report, the count query).
QUEUES: tuple[tuple[Role, str, str], ...] = (
    ("emr", "SIU outbox", "SELECT count(*) FROM hl7_outbox WHERE state = 'pending'"),
    ("sms", "SMS outbox", "SELECT count(*) FROM sms_outbox WHERE state IN ('pending', 'sending')"),
    ("gateway", "pending bookings", "SELECT count(*) FROM bookings WHERE state = 'pending'"),
)


def session_name(roles: Iterable[Role]) -> str:
    return _PREFIX + ",".join(roles)


async def running_roles(conn: asyncpg.Connection) -> set[Role]:
    """Roles of every radsched daemon connected to this database now (this one included)."""
    names = await conn.fetch(
        """
        SELECT DISTINCT application_name FROM pg_stat_activity
         WHERE datname = current_database() AND application_name LIKE $1
        """,
        _PREFIX + "%",
    )
    found: set[Role] = set()
    for row in names:
        listed = str(row["application_name"])[len(_PREFIX) :].split(",")
        found.update(role for role in ALL_ROLES if role in listed)
    return found


async def queued_work(
    conn: asyncpg.Connection, roles: Iterable[Role]
) -> dict[Role, tuple[str, int]]:
    """For each of ``roles``: the queue it drains and how many items wait in it."""
    wanted = set(roles)
    out: dict[Role, tuple[str, int]] = {}
    for role, what, query in QUEUES:
        if role in wanted:
            out[role] = (what, int(await conn.fetchval(query)))
    return out
