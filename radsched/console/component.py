"""The console as a daemon component: its dependencies from the daemon's parts, the first admin, and
an aiohttp runner for the composition root to bind on ``ADMIN_LISTEN``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime, timedelta

from aiohttp import web
from pydantic import SecretStr

from radsched.console.app import ConsoleDeps, Readiness, StaffDecisions
from radsched.console.session import derive_cookie_key
from radsched.console.site import build_console_app
from radsched.console.users import FIRST_ADMIN, ensure_first_admin
from radsched.privacy import PhiBox
from radsched.settings import Settings
from radsched.storage.db import Database

# Shown as set/unset only. Everything typed SecretStr is masked too; these are the plain-text ones
# that still name a credential or a person-facing number.
_MASK_ALWAYS = frozenset({"twilio_account_sid"})


def settings_rows(settings: Settings) -> list[tuple[str, str]]:
    """(RADSCHED_NAME, value) for every setting; secrets shown as 'set'/'unset', never their value."""
    rows: list[tuple[str, str]] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) or name in _MASK_ALWAYS:
            shown = "•••••• (set)" if value else "(unset)"
        elif value is None or value == "":
            shown = "(unset)"
        else:
            shown = str(value)
        rows.append(("RADSCHED_" + name.upper(), shown))
    return rows


class CommandOutbox:
    """The console's outbox actions are those of ``radsched outbox`` (same checks, same SQL)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def retry(self, row_id: int, *, to: str | None) -> str:
        from radsched.emr.outbox_actions import retry_row

        return await retry_row(self._settings, row_id, to=to)

    async def drop(self, row_id: int) -> str:
        from radsched.emr.outbox_actions import drop_row

        return await drop_row(self._settings, row_id)


def emr_destinations(settings: Settings) -> list[str]:
    if not settings.emr_routes:
        return []
    from radsched.emr.routes import parse_routes

    return sorted({r.destination.name for r in parse_routes(settings.emr_routes).routes})


def console_deps(
    settings: Settings,
    *,
    db: Database,
    phi_secret: str,
    phi: PhiBox,
    readiness: Readiness,
    clock: Callable[[], datetime],
    client_ip: Callable[[web.Request], str] | None = None,
    staff: StaffDecisions | None = None,
) -> ConsoleDeps:
    return ConsoleDeps(
        db=db,
        cookie_key=derive_cookie_key(phi_secret),
        readiness=readiness,
        outbox=CommandOutbox(settings),
        settings_rows=settings_rows(settings),
        modality_defaults=settings.modality_defaults,
        timezone=settings.timezone,
        phi=phi,
        destinations=emr_destinations(settings),
        clock=clock,
        client_ip=client_ip or (lambda request: request.remote or ""),
        staff=staff,
        request_overdue=timedelta(minutes=settings.staff_request_overdue_min),
    )


async def first_admin(db: Database, *, now: datetime, admin_url: str) -> str | None:
    """Create ``admin`` on a database without console users and print its one-time password to the
    terminal (not the log: the log may be shipped elsewhere; the password must be changed at first
    login anyway)."""
    async with db.transaction("console.first_admin") as conn:
        one_time = await ensure_first_admin(conn, now=now)
    if one_time is not None:
        print(
            f"radsched console: {admin_url} — log in as {FIRST_ADMIN!r} with the one-time "
            f"password {one_time} (you will choose your own at first login)",
            file=sys.stderr,
            flush=True,
        )
    return one_time


async def console_runner(deps: ConsoleDeps, *, settings: Settings) -> web.AppRunner:
    runner = web.AppRunner(
        build_console_app(deps),
        access_log=None,
        shutdown_timeout=settings.shutdown_grace_s,
        handle_signals=False,
        keepalive_timeout=settings.http_idle_timeout_s,
    )
    await runner.setup()
    return runner
