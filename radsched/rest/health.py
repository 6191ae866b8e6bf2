"""``/healthz`` (process alive), ``/readyz`` (dependencies reachable) and ``/metrics``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from radsched.metrics import Metrics

log = logging.getLogger("radsched.http.health")

# A check returns None when healthy, or a short reason (no PHI, no secrets) when not.
ReadinessCheck = Callable[[], Awaitable[str | None]]


@dataclass
class Readiness:
    """Named checks that /readyz runs concurrently, each bounded by a timeout."""

    timeout: float = 3.0
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)

    def add(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

    async def run(self) -> dict[str, str | None]:
        async def one(check: ReadinessCheck) -> str | None:
            try:
                return await asyncio.wait_for(check(), self.timeout)
            except TimeoutError:
                return f"no answer within {self.timeout:g}s"
            except Exception as exc:  # a failing check is a reason, never a 500
                return type(exc).__name__ + (f": {exc}" if str(exc) else "")

        names = list(self.checks)
        results = await asyncio.gather(*(one(self.checks[n]) for n in names))
        return dict(zip(names, results, strict=True))


def add_health_routes(
    app: web.Application, readiness: Readiness, metrics: Metrics, *, roles: Sequence[str] = ()
) -> None:
    """``/healthz`` and ``/readyz``; the readiness answer names the roles this daemon runs (issue 17)."""
    shown = list(roles)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        results = await readiness.run()
        failing = {name: reason for name, reason in results.items() if reason}
        metrics.ready.set(0 if failing else 1)
        if failing:
            log.warning(
                "not ready", extra={"reasons": "; ".join(f"{k}: {v}" for k, v in failing.items())}
            )
            return web.json_response(
                {
                    "status": "unavailable",
                    "roles": shown,
                    "checks": {n: r or "ok" for n, r in results.items()},
                },
                status=503,
            )
        return web.json_response(
            {"status": "ready", "roles": shown, "checks": dict.fromkeys(results, "ok")}
        )

    async def metrics_view(_: web.Request) -> web.Response:
        body = metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
