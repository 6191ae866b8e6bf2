"""Running beside QIE: what the composition root builds from ``ROLES``, ``SCHEDULING_*`` and ``SHADOW_*``.

Small constructors, each given what it needs:

* :func:`open_scheduling_backend` — the sms role's RIS when ``SCHEDULING_BACKEND=rest``;
* :func:`open_shadow` — the gateway's scheduling service wrapped for a parallel run, or as it was;
* :class:`RoleMetrics` and :func:`role_readiness` — the roles in ``/metrics`` and, in ``/readyz``,
  queued work that no daemon on the database will do after a role change;
* :func:`engine_secrets` — the engines' keys, for the log redactor.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from datetime import datetime, tzinfo
from typing import Literal
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Gauge

from radsched.beside.roles import ALL_ROLES, Role
from radsched.beside.shadow_gateway import Scheduling, ShadowRecorder, ShadowScheduling
from radsched.scheduling.rest_backend import (
    EngineEndpoint,
    RestEngineClient,
    RestMetrics,
    RestScheduling,
)
from radsched.settings import Settings
from radsched.storage.db import Database
from radsched.storage.roles import queued_work, running_roles

log = logging.getLogger("radsched.beside")

__all__ = [
    "RoleMetrics",
    "endpoint",
    "engine_secrets",
    "open_scheduling_backend",
    "open_shadow",
    "role_readiness",
]


def endpoint(settings: Settings, which: Literal["scheduling", "shadow"]) -> EngineEndpoint:
    if which == "scheduling":
        url, key = settings.scheduling_url, settings.scheduling_api_key
        header, timeout = settings.scheduling_api_key_header, settings.scheduling_timeout_s
    else:
        url, key = settings.shadow_url, settings.shadow_api_key
        header, timeout = settings.shadow_api_key_header, settings.shadow_timeout_s
    if not url or key is None:  # the settings validator refuses this combination
        raise ValueError(f"RADSCHED_{which.upper()}_URL and _API_KEY are not set")
    return EngineEndpoint(
        which,
        url,
        key.get_secret_value(),
        api_key_header=header,
        timeout_s=timeout,
        max_response_bytes=settings.rest_max_response_bytes,
    )


def _warn_if_cleartext(ep: EngineEndpoint) -> None:
    parts = urlsplit(ep.base_url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "http" and host not in ("localhost", "127.0.0.1", "::1"):
        # Allowed (a hospital LAN, a TLS-terminating sidecar), but the key and the MRN of each
        # booking cross the network in clear text: say so once at start.
        log.warning(
            "the REST engine is reached over plain http: its API key and booking data are unencrypted",
            extra={"setting": ep.setting},
        )


def engine_secrets(settings: Settings) -> list[str]:
    keys = (settings.scheduling_api_key, settings.shadow_api_key)
    return [k.get_secret_value() for k in keys if k is not None and k.get_secret_value()]


async def open_scheduling_backend(
    settings: Settings, stack: AsyncExitStack, *, tz: tzinfo, metrics: RestMetrics
) -> RestScheduling:
    ep = endpoint(settings, "scheduling")
    _warn_if_cleartext(ep)
    client = RestEngineClient(ep, tz=tz, metrics=metrics)
    stack.push_async_callback(client.aclose)
    return RestScheduling(client)


async def open_shadow(
    settings: Settings,
    stack: AsyncExitStack,
    here: Scheduling,
    *,
    db: Database,
    registry: CollectorRegistry | None,
    clock: Callable[[], datetime],
    tz: tzinfo,
    metrics: RestMetrics,
) -> Scheduling:
    """``here`` itself without ``SHADOW_URL``; otherwise ``here`` compared with the shadowed engine."""
    if not settings.shadow_url:
        return here
    # No retry: a struggling shadow gets no extra load from us, and its failure is only recorded.
    ep = endpoint(settings, "shadow")
    _warn_if_cleartext(ep)
    client = RestEngineClient(ep, tz=tz, metrics=metrics, read_retries=0)
    stack.push_async_callback(client.aclose)
    recorder = ShadowRecorder(db, registry, clock=clock)
    service = ShadowScheduling(here, client, recorder, bookings=settings.shadow_bookings)
    stack.push_async_callback(service.aclose)
    return service


class RoleMetrics:
    """``radsched_role{role}``: 1 for each role this daemon runs, 0 for the others."""

    def __init__(self, registry: CollectorRegistry | None, roles: Iterable[Role]) -> None:
        self.role = Gauge(
            "radsched_role",
            "Roles this daemon runs (1) and does not run (0)",
            ["role"],
            registry=registry,
        )
        mine = set(roles)
        for role in ALL_ROLES:
            self.role.labels(role).set(1 if role in mine else 0)


def role_readiness(db: Database) -> Callable[[], Awaitable[str | None]]:
    """A ``/readyz`` check: None, or which queue waits for a role no daemon on the database runs."""

    async def check() -> str | None:
        async with db.transaction("roles.readiness") as conn:
            missing = [r for r in ALL_ROLES if r not in await running_roles(conn)]
            if not missing:
                return None
            waiting = await queued_work(conn, missing)
        stuck = [
            f"{what}: {count} queued and no daemon on this database runs the {role} role"
            for role, (what, count) in waiting.items()
            if count
        ]
        return "; ".join(stuck) or None

    return check
