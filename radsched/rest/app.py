"""Builds the aiohttp application: request ids, JSON errors, and the routes of each component."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Histogram

from radsched.logs import correlated
from radsched.metrics import labelled
from radsched.rest.errors import error_response
from radsched.rest.ratelimit import RateLimiter

log = logging.getLogger("radsched.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = web.AppKey("request_id_header", str)


def _route_name(request: web.Request) -> str:
    # The route's template (e.g. /api/ris/available-slots), never the raw path with ids in it.
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def build_app(
    registry: CollectorRegistry,
    *,
    client_max_size: int = 256 * 1024,
    rate_limiter: RateLimiter | None = None,
) -> web.Application:
    seconds = Histogram(
        "radsched_http_request_seconds",
        "HTTP request duration by route and status.",
        ["method", "route", "status"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 30),
    )

    # Routes are templates, so the (method, route, status) label sets stay few.
    timer = labelled(seconds)

    @web.middleware
    async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Accept a caller's id only when it is short and printable, so it cannot forge log lines.
        supplied = request.headers.get("X-Request-Id", "")
        ok = 0 < len(supplied) <= 64 and supplied.isprintable() and " " not in supplied
        request_id = supplied if ok else secrets.token_hex(8)
        started = time.perf_counter()
        status = 500
        with correlated(request_id):
            try:
                response = await handler(request)
                status = response.status
            except web.HTTPException as exc:
                status = exc.status
                response = error_response(exc.status, _code_for(exc.status), exc.reason)
            except Exception:
                log.exception("unhandled error", extra={"route": _route_name(request)})
                response = error_response(500, "internal", "internal error; see the daemon log")
                status = 500
            finally:
                elapsed = time.perf_counter() - started
                timer(request.method, _route_name(request), str(status)).observe(elapsed)
            response.headers["X-Request-Id"] = request_id
            log.debug(
                "request",
                extra={
                    "method": request.method,
                    "route": _route_name(request),
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                },
            )
            return response

    middlewares: list[Middleware] = [request_context]
    if rate_limiter is not None:
        # Inside request_context, so a 429 or 408 still carries a request id and is timed.
        rate_limiter.max_body = client_max_size
        middlewares.append(rate_limiter.middleware)
    app = web.Application(middlewares=middlewares, client_max_size=client_max_size)
    if rate_limiter is not None:
        app.on_startup.append(rate_limiter.document_responses)
    return app


def _code_for(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        429: "rate_limited",
    }.get(status, "http_error")
