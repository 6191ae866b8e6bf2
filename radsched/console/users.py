"""Creating, disabling and listing console users: shared by ``radsched admin-user`` and the console's
own users page, and the first start's admin."""

from __future__ import annotations

import re
from datetime import datetime

from radsched.console.passwords import check_new_password, hash_password, one_time_password
from radsched.storage import console as store
from radsched.storage.console import ROLES, AuditEntry, Role, User
from radsched.storage.pg import Connection, UniqueViolationError

NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
FIRST_ADMIN = "admin"


class UserError(ValueError):
    """A user cannot be created or changed; the message says why (no password in it)."""


def check_name(name: str) -> str:
    if not NAME_RULE.match(name):
        raise UserError(
            f"{name!r} is not a user name: 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        )
    return name


def check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise UserError(f"{role!r} is not a role: one of {', '.join(ROLES)}")


async def add_user(
    conn: Connection,
    name: str,
    role: str,
    *,
    password: str | None,
    by: str,
    now: datetime,
    address: str | None = None,
) -> tuple[User, str | None]:
    """Create a user. Without ``password`` a one-time password is generated and returned (shown once,
    to be changed at first login). Audited in the same transaction as the insert."""
    name = check_name(name)
    checked_role = check_role(role)
    one_time = None
    if password is None:
        one_time = password = one_time_password()
    else:
        try:
            check_new_password(name, password)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    try:
        user = await store.create_user(
            conn,
            name,
            checked_role,
            hash_password(password),
            must_change=one_time is not None,
            now=now,
        )
    except UniqueViolationError:
        raise UserError(f"a user named {name!r} exists already") from None
    await store.audit(
        conn,
        AuditEntry(by, "user_add", f"user:{name}", None, checked_role, address=address),
        now=now,
    )
    return user, one_time


async def disable_user(
    conn: Connection, name: str, *, by: str, now: datetime, address: str | None = None
) -> User:
    user = await store.disable_user(conn, name, now=now)
    if user is None:
        raise UserError(f"no user named {name!r}")
    await store.audit(
        conn,
        AuditEntry(by, "user_disable", f"user:{name}", "enabled", "disabled", address=address),
        now=now,
    )
    return user


async def ensure_first_admin(conn: Connection, *, now: datetime) -> str | None:
    """On a database without console users, create ``admin`` and return its one-time password."""
    await store.lock_first_admin(conn)
    if await store.count_users(conn):
        return None
    _, one_time = await add_user(
        conn, FIRST_ADMIN, "admin", password=None, by="first-start", now=now
    )
    return one_time
