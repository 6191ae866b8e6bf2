"""The console's aiohttp application: what it is given, and the middleware every request passes.

Order of checks for each request: security headers on every answer; the session cookie is opened
(a missing, altered or expired one makes an anonymous visitor); unsafe methods must come from our own
pages (``Sec-Fetch-Site``/``Origin``) and carry the session's CSRF token; every path except the login
page and the static files needs a live session; a user with a one-time password may only change it.
Role checks sit on the handlers (:func:`requires`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web

from radsched.console.limiter import LoginLimiter
from radsched.console.session import COOKIE_NAME, CookieCodec, SessionState
from radsched.privacy import PhiBox
from radsched.rest import bodies
from radsched.sms.after_booking import Decision
from radsched.storage import console as store
from radsched.storage.console import AuditEntry, Role, User
from radsched.storage.db import Database

log = logging.getLogger("radsched.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ROLE_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}
PUBLIC_PATHS = frozenset({"/login"})
PASSWORD_PATHS = frozenset({"/password", "/logout"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Re-writing last_seen_at at most once a minute: the idle timeout is 30 minutes, so a minute of slack
# in the server-side row costs nothing and saves a write per page view.
TOUCH_AFTER_S = 60.0

_HEADERS = {
    # No script at all, no inline styles, no framing, forms only to ourselves.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class OutboxActions(Protocol):
    """The operator actions of ``radsched outbox`` (retry, redirect an unrouted row, drop)."""

    async def retry(self, row_id: int, *, to: str | None) -> str: ...

    async def drop(self, row_id: int) -> str: ...


class StaffDecisions(Protocol):
    """Decisions on the patients' requests after booking: the daemon's
    :class:`radsched.sms.after_booking.StaffDesk`, the one the REST API and ``radsched requests``
    use. It raises ``DeskError`` (already decided, names no single appointment) and the lifecycle's
    ``SchedulingError`` (the RIS refused the cancel, or could not be reached)."""

    async def approve(self, request_id: int, *, by: str, note: str | None = None) -> Decision: ...

    async def deny(self, request_id: int, *, by: str, note: str | None) -> Decision: ...


Readiness = Callable[[], Awaitable[Mapping[str, str | None]]]


def _now() -> datetime:
    return datetime.now(UTC)


def _remote(request: web.Request) -> str:
    return request.remote or ""


@dataclass(frozen=True, slots=True)
class ConsoleDeps:
    db: Database
    cookie_key: bytes
    readiness: Readiness
    """The same checks as ``/readyz``: name -> None (healthy) or a short reason."""
    outbox: OutboxActions
    settings_rows: Sequence[tuple[str, str]]
    """Effective settings as (NAME, shown value), secrets already masked."""
    modality_defaults: tuple[str, ...]
    timezone: str = "UTC"
    phi: PhiBox | None = None
    """Opens the placer order number for operators on the deferred-orders page; None hides it."""
    destinations: Sequence[str] = ()
    """Configured EMR destinations, offered when redirecting an unrouted dead letter."""
    clock: Callable[[], datetime] = _now
    client_ip: Callable[[web.Request], str] = _remote
    limiter: LoginLimiter | None = None
    staff: StaffDecisions | None = None
    """Approves and denies staff requests; None (a daemon without the sms and gateway roles): the
    requests are listed, and decided on a daemon that has them."""
    request_overdue: timedelta = timedelta(minutes=240)
    """``STAFF_REQUEST_OVERDUE_MIN``: a pending request older than this is marked overdue."""


DEPS = web.AppKey("console_deps", ConsoleDeps)
LIMITER = web.AppKey("console_limiter", LoginLimiter)
CODEC = web.AppKey("console_codec", CookieCodec)


@dataclass(slots=True)
class Visit:
    """What the middleware learnt about this request's visitor."""

    state: SessionState
    user: User | None = None
    expired: str | None = None
    logout: bool = False


# aiohttp >= 3.13 wants typed request keys; older releases take a plain string.
VISIT: Any = (
    web.RequestKey("console_visit", Visit) if hasattr(web, "RequestKey") else "console_visit"
)


def visit(request: web.Request) -> Visit:
    found: Visit = request[VISIT]
    return found


def deps(request: web.Request) -> ConsoleDeps:
    return request.app[DEPS]


def address(request: web.Request) -> str:
    return deps(request).client_ip(request)


async def audit_action(
    request: web.Request,
    conn: Any,
    action: str,
    target: str | None = None,
    *,
    old: str | None = None,
    new: str | None = None,
    note: str | None = None,
    actor: str | None = None,
) -> None:
    user = visit(request).user
    who = actor or (user.name if user else "?")
    await store.audit(
        conn,
        AuditEntry(who, action, target, old, new, note, address=address(request)),
        now=deps(request).clock(),
    )


def requires(role: Role) -> Callable[[Handler], Handler]:
    """Refuse (403, audited) a user whose role is below ``role``."""

    def wrap(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            user = visit(request).user
            assert user is not None  # the middleware sent anonymous visitors to /login
            if ROLE_RANK[user.role] < ROLE_RANK[role]:
                async with deps(request).db.transaction("console.refused") as conn:
                    await audit_action(
                        request, conn, "refused", f"{request.method} {_route(request)}", note=role
                    )
                return page(
                    request,
                    "error.html",
                    {
                        "title": "Not allowed",
                        "message": f"This needs the {role} role; you are {user.role}.",
                    },
                    status=403,
                )
            return await handler(request)

        return checked

    return wrap


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def page(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    v = visit(request)
    full = {
        "user": v.user,
        "csrf": v.state.csrf,
        "path": request.path,
        "rank": ROLE_RANK[v.user.role] if v.user else -1,
        **context,
    }
    return aiohttp_jinja2.render_template(template, request, full, status=status)


def _same_origin(request: web.Request) -> bool:
    """OWASP's fetch-metadata check, with the Origin header as the fallback for older browsers."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own 404/405 for unknown paths
        for name, value in _HEADERS.items():
            exc.headers.setdefault(name, value)
        raise
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def see_other(location: str) -> web.Response:
    """A 303 after a form (the browser then GETs ``location``); returned, so the cookie is set."""
    return web.Response(status=303, headers={"Location": location})


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/static/"):
        return await handler(request)
    d = request.app[DEPS]
    now = d.clock()
    codec = request.app[CODEC]
    raw = request.cookies.get(COOKIE_NAME)
    state = codec.decode(raw) if raw else None
    v = Visit(state or SessionState.anonymous(now))
    if state is not None and state.session_id:
        reason = state.expiry(now)
        async with d.db.transaction("console.session") as conn:
            if reason is not None:
                await store.end_session(conn, state.session_id, now=now, reason=f"{reason} timeout")
            else:
                v.user = await store.live_session_user(
                    conn, state.session_id, now=now, touch_after_s=TOUCH_AFTER_S
                )
        if v.user is None:
            v.expired = reason or "ended"
            v.state = SessionState.anonymous(now)
    request[VISIT] = v

    if request.method not in SAFE_METHODS:
        form = await request.post()
        token = form.get("csrf")
        if (
            not _same_origin(request)
            or not isinstance(token, str)
            or not hmac.compare_digest(token.encode(), state.csrf.encode() if state else b"-")
        ):
            async with d.db.transaction("console.csrf_refused") as conn:
                await audit_action(request, conn, "csrf_refused", f"POST {_route(request)}")
            log.warning("console form refused: cross-site or without a valid CSRF token")
            response: web.StreamResponse = page(
                request,
                "error.html",
                {
                    "title": "Form refused",
                    "message": "This form was stale or came from another site. "
                    "Reload the page and try again.",
                },
                status=403,
            )
            return _with_cookie(request, response, v)

    try:  # what the database cannot store (NUL) never reaches it
        bodies.query(request.query)
        if request.method not in SAFE_METHODS:
            bodies.form(await request.post())
    except bodies.BadInput as exc:
        response = page(
            request, "error.html", {"title": "Invalid input", "message": str(exc)}, status=400
        )
        return _with_cookie(request, response, v)

    if v.user is None and request.path not in PUBLIC_PATHS:
        target = "/login?expired=1" if v.expired in ("idle", "absolute") else "/login"
        response = see_other(target)
    elif v.user is not None and v.user.must_change and request.path not in PASSWORD_PATHS:
        response = see_other("/password")
    else:
        response = await handler(request)
    if visit(request).user is not None and not visit(request).logout:
        v = visit(request)
        v.state = v.state.seen(now)
    return _with_cookie(request, response, visit(request))


def _with_cookie(
    request: web.Request, response: web.StreamResponse, v: Visit
) -> web.StreamResponse:
    response.set_cookie(
        COOKIE_NAME,
        request.app[CODEC].encode(v.state),
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
        path="/",
    )
    return response
