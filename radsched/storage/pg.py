"""The PostgreSQL driver's names that the rest of radsched may use, so that only storage imports asyncpg.

Components hold a connection or pool (typed here) and hand it to storage functions; they catch the
errors below to tell "the database is unreachable" from a bug. Nothing else of asyncpg leaks out.
"""

from __future__ import annotations

from asyncpg import (
    Connection,
    InterfaceError,
    Pool,
    PostgresError,
    Record,
    UndefinedTableError,
    UniqueViolationError,
)

__all__ = [
    "UNREACHABLE",
    "Connection",
    "InterfaceError",
    "Pool",
    "PostgresError",
    "Record",
    "UndefinedTableError",
    "UniqueViolationError",
]

UNREACHABLE: tuple[type[BaseException], ...] = (OSError, PostgresError, InterfaceError)
"""What a query raises when the database is down, restarting or the connection was lost."""
