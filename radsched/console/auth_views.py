"""Login, logout and the password change (forced after a one-time password)."""

from __future__ import annotations

import asyncio
import logging
import math

from aiohttp import web

from radsched.console.app import (
    LIMITER,
    address,
    audit_action,
    deps,
    page,
    see_other,
    visit,
)
from radsched.console.passwords import (
    PasswordRejected,
    check_new_password,
    hash_password,
    verify_password,
)
from radsched.console.session import SessionState
from radsched.console.users import NAME_RULE
from radsched.storage import console as store

log = logging.getLogger("radsched.console.auth")


async def login_form(request: web.Request) -> web.StreamResponse:
    if visit(request).user is not None:
        return see_other("/")
    expired = request.query.get("expired") == "1"
    return page(request, "login.html", {"title": "Log in", "error": None, "expired": expired})


async def login_submit(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    v = visit(request)
    form = await request.post()
    name = str(form.get("name", "")).strip().lower()
    password = str(form.get("password", ""))
    addr = address(request)
    limiter = request.app[LIMITER]
    wait = limiter.wait_s(name, addr)
    async with d.db.transaction("console.login_lookup") as conn:
        user = await store.user_by_name(conn, name) if NAME_RULE.match(name) else None
        if wait > 0:
            await audit_action(request, conn, "login_limited", actor=user.name if user else "?")
    if wait > 0:
        minutes = max(1, math.ceil(wait / 60))
        error = f"Too many failed attempts. Try again in {minutes} minute{'s' * (minutes > 1)}."
        return page(
            request, "login.html", {"title": "Log in", "error": error, "expired": False}, status=429
        )
    usable = user is not None and user.disabled_at is None
    # argon2id costs tens of milliseconds of CPU: off the event loop, so other requests go on.
    ok = await asyncio.to_thread(
        verify_password, user.password_hash if user is not None and usable else None, password
    )
    now = d.clock()
    if not ok or user is None:
        limiter.failed(name, addr)
        async with d.db.transaction("console.login_failed") as conn:
            await audit_action(
                request,
                conn,
                "login_failed",
                note="user disabled" if user is not None and not usable else None,
                actor=user.name if user else "?",
            )
        log.info("console login failed", extra={"console_user": user.name if user else "?"})
        return page(
            request,
            "login.html",
            {"title": "Log in", "error": "Wrong user name or password.", "expired": False},
            status=401,
        )
    state = SessionState.logged_in(now)
    async with d.db.transaction("console.login") as conn:
        await store.start_session(conn, state.session_id, user.id, now=now)
        await audit_action(request, conn, "login", new=user.role, actor=user.name)
    log.info("console login", extra={"console_user": user.name})
    v.state, v.user = state, user
    return see_other("/password" if user.must_change else "/")


async def logout(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    v = visit(request)
    now = d.clock()
    async with d.db.transaction("console.logout") as conn:
        await store.end_session(conn, v.state.session_id, now=now, reason="logout")
        await audit_action(request, conn, "logout")
    v.state, v.user, v.logout = SessionState.anonymous(now), None, True
    return see_other("/login")


async def password_form(request: web.Request) -> web.StreamResponse:
    return page(request, "password.html", {"title": "Change password", "error": None})


async def password_submit(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    user = visit(request).user
    assert user is not None
    form = await request.post()
    current = str(form.get("current", ""))
    new = str(form.get("new", ""))
    error = None
    if not await asyncio.to_thread(verify_password, user.password_hash, current):
        error = "The current password is wrong."
    elif new != str(form.get("confirm", "")):
        error = "The two new passwords differ."
    else:
        try:
            check_new_password(user.name, new, current=current)
        except PasswordRejected as exc:
            error = str(exc).capitalize() + "."
    if error is not None:
        return page(
            request, "password.html", {"title": "Change password", "error": error}, status=400
        )
    hashed = await asyncio.to_thread(hash_password, new)
    async with d.db.transaction("console.password") as conn:
        await store.set_password(conn, user.id, hashed, must_change=False, now=d.clock())
        await audit_action(request, conn, "password_changed", f"user:{user.name}")
    return see_other("/")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
    app.router.add_get("/password", password_form)
    app.router.add_post("/password", password_submit)
