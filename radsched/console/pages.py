"""The operating pages: overview, modalities, EMR outbox, message log, deferred orders, audit,
settings and users. Metadata only: no page shows a message body, phone, name or MRN; the deferred
orders page shows the placer order number to operators only, and every such view is audited."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Literal

from aiohttp import web

from radsched.console.app import address, audit_action, deps, page, requires, see_other, visit
from radsched.console.users import UserError, add_user, disable_user
from radsched.modality import UnknownModality, is_dicom_modality, list_modalities, set_modality
from radsched.privacy import PhiBox, PhiBoxError
from radsched.storage import console as store
from radsched.storage import emr_outbox as outbox_store
from radsched.storage import staff_requests as staff_store
from radsched.storage.console import ROLES, MessageFilter

log = logging.getLogger("radsched.console.pages")

# The modalities a radiology department schedules; any other code with a row is listed too.
COMMON_MODALITIES = ("CR", "DX", "CT", "MR", "US", "MG", "NM", "PT", "RF", "XA")
PAGE_SIZE = 50
NOTE_MAX = 500


def _int(text: str | None, default: int, *, low: int = 0, high: int = 1_000_000) -> int:
    try:
        return min(high, max(low, int(text))) if text else default
    except ValueError:
        return default


# --- overview ----------------------------------------------------------------------------------


async def overview(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    checks = await d.readiness()
    async with d.db.transaction("console.overview") as conn:
        queues = await outbox_store.queue_stats(conn)
        errors = await store.last_outbox_errors(conn)
        sms = await store.sms_queue(conn)
        sms_error = await store.last_sms_error(conn)
        pending, overdue = await staff_store.pending_counts(
            conn, overdue_before=d.clock() - d.request_overdue
        )
    known = {q.destination for q in queues}
    rows = [
        {
            "name": q.destination,
            "pending": q.pending,
            "oldest": q.oldest,
            "dead": q.dead,
            "error": errors.get(q.destination),
        }
        for q in queues
    ]
    rows += [
        {"name": name, "pending": 0, "oldest": None, "dead": 0, "error": None}
        for name in d.destinations
        if name not in known
    ]
    return page(
        request,
        "overview.html",
        {
            "title": "Overview",
            "checks": sorted(checks.items()),
            "ready": not any(checks.values()),
            "queues": sorted(rows, key=lambda r: str(r["name"])),
            "sms": sms,
            "sms_error": sms_error,
            "requests_pending": pending,
            "requests_overdue": overdue,
        },
    )


# --- modalities --------------------------------------------------------------------------------


async def modalities(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    async with d.db.transaction("console.modalities") as conn:
        settings = {s.modality: s for s in await list_modalities(conn, d.modality_defaults)}
        changes = {
            r["item"].removeprefix("modality:"): r
            for r in await store.config_changes(conn, limit=200)
        }
    codes = list(COMMON_MODALITIES) + sorted(set(settings) - set(COMMON_MODALITIES))
    rows = [
        {
            "code": code,
            "enabled": settings[code].enabled if code in settings else False,
            "source": settings[code].source if code in settings else "default",
            "change": changes.get(code),
        }
        for code in codes
    ]
    error = request.query.get("error")
    return page(request, "modalities.html", {"title": "Modalities", "rows": rows, "error": error})


@requires("operator")
async def modality_switch(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    user = visit(request).user
    assert user is not None
    code = request.match_info["code"].upper()
    form = await request.post()
    note = str(form.get("note", "")).strip()
    enable = form.get("enabled") == "1"
    if not note:
        return see_other("/modalities?error=note")
    if not is_dicom_modality(code):
        raise web.HTTPNotFound()
    try:
        async with d.db.transaction("console.modality_set") as conn:
            old, new = await set_modality(
                conn,
                code,
                enabled=enable,
                by=user.name,
                note=note[:NOTE_MAX],
                defaults=d.modality_defaults,
                now=d.clock(),
            )
            await audit_action(
                request,
                conn,
                "modality",
                f"modality:{code}",
                old="enabled" if old else "disabled",
                new="enabled" if new else "disabled",
                note=note[:NOTE_MAX],
            )
    except UnknownModality:
        raise web.HTTPNotFound() from None
    return see_other(f"/modalities#m-{code}")


# --- EMR outbox --------------------------------------------------------------------------------


async def outbox(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    async with d.db.transaction("console.outbox") as conn:
        queues = await outbox_store.queue_stats(conn)
        pending = await outbox_store.list_rows(conn, destination=None, state="pending", limit=100)
        dead = await outbox_store.list_rows(conn, destination=None, state="dead", limit=100)
    notice = request.query.get("done")
    return page(
        request,
        "outbox.html",
        {
            "title": "EMR outbox",
            "queues": queues,
            "pending": pending,
            "dead": dead,
            "notice": notice,
            "destinations": list(d.destinations),
        },
    )


@requires("operator")
async def outbox_action(request: web.Request) -> web.StreamResponse:
    """Retry, redirect or drop one row: the first POST shows what will happen, the second
    (``confirm=yes``) does it."""
    d = deps(request)
    row_id = _int(request.match_info["id"], 0, low=1, high=2**62)
    action = request.match_info["action"]
    form = await request.post()
    to = str(form.get("to", "")).strip() or None
    async with d.db.transaction("console.outbox_row") as conn:
        row = await store.outbox_row(conn, row_id)
    if row is None:
        raise web.HTTPNotFound()
    if form.get("confirm") != "yes":
        return page(
            request,
            "outbox_confirm.html",
            {"title": f"Confirm {action}", "row": row, "action": action, "to": to},
        )
    try:
        if action == "drop":
            result = await d.outbox.drop(row_id)
        else:
            result = await d.outbox.retry(row_id, to=to)
    except ValueError as exc:
        result = f"not done: {exc}"
    except Exception as exc:
        # OutboxActionError and friends: the reason is for the operator, never a body.
        result = f"not done: {exc}"
    async with d.db.transaction("console.outbox_audit") as conn:
        await audit_action(
            request,
            conn,
            f"outbox_{action}",
            f"hl7_outbox:{row_id}",
            old=f"{row['state']} {row['destination']}",
            new=to,
            note=result,
        )
    return page(
        request,
        "outbox_done.html",
        {"title": "EMR outbox", "result": result, "row_id": row_id},
    )


# --- message log -------------------------------------------------------------------------------


def _day(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return day if day.year < 9999 else None  # the day after 9999-12-31 does not exist


async def messages(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    q = request.query
    direction: Literal["in", "out"] = "out" if q.get("direction") == "out" else "in"
    day = _day(q.get("date"))
    flt = MessageFilter(
        control_id=(q.get("control_id") or "").strip() or None,
        message_type=(q.get("type") or "").strip().upper() or None,
        code=(q.get("code") or "").strip() or None,
        since=day,
        until=day + timedelta(days=1) if day else None,
    )
    page_no = _int(q.get("page"), 1, low=1, high=10_000)
    async with d.db.transaction("console.messages") as conn:
        rows = await store.message_log(
            conn, flt, direction=direction, limit=PAGE_SIZE + 1, offset=(page_no - 1) * PAGE_SIZE
        )
    query = {
        "direction": direction,
        "control_id": flt.control_id or "",
        "type": flt.message_type or "",
        "code": flt.code or "",
        "date": q.get("date", "") if day else "",
    }
    return page(
        request,
        "messages.html",
        {
            "title": "Message log",
            "rows": rows[:PAGE_SIZE],
            "more": len(rows) > PAGE_SIZE,
            "page_no": page_no,
            "query": query,
        },
    )


# --- deferred orders ---------------------------------------------------------------------------


@requires("operator")
async def deferred(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    page_no = _int(request.query.get("page"), 1, low=1, high=10_000)
    now = d.clock()
    async with d.db.transaction("console.deferred") as conn:
        found = await store.deferred_orders(
            conn, limit=PAGE_SIZE + 1, offset=(page_no - 1) * PAGE_SIZE
        )
        await audit_action(
            request,
            conn,
            "view_deferred",
            f"page:{page_no}",
            new=f"{min(len(found), PAGE_SIZE)} orders",
        )
    rows = []
    for r in found[:PAGE_SIZE]:
        rows.append(
            {
                "received_at": r["received_at"],
                "updated_at": r["updated_at"],
                "modality": r["modality"],
                "facility": r["facility"],
                "reason": r["deferred_reason"] or "unspecified",
                "placer": _placer(d.phi, r["order_key"], r["phi"]),
                "overdue": now - r["updated_at"] > timedelta(hours=24),
            }
        )
    return page(
        request,
        "deferred.html",
        {
            "title": "Deferred orders",
            "rows": rows,
            "more": len(found) > PAGE_SIZE,
            "page_no": page_no,
        },
    )


def _placer(phi: PhiBox | None, key: str, sealed: bytes | None) -> str:
    if phi is None or sealed is None:
        return "—"
    try:
        data = phi.open(sealed, aad=b"order:" + key.encode())
    except PhiBoxError:
        return "(unreadable)"
    return str(data.get("placer_order_id") or data.get("order_id") or "—")


# --- audit, settings, users --------------------------------------------------------------------


async def audit_log(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    before = request.query.get("before")
    before_id = _int(before, 0, low=1, high=2**62) if before else None
    async with d.db.transaction("console.audit") as conn:
        rows = await store.audit_page(conn, before_id=before_id, limit=PAGE_SIZE + 1)
    return page(
        request,
        "audit.html",
        {
            "title": "Audit log",
            "rows": rows[:PAGE_SIZE],
            "next_before": rows[PAGE_SIZE - 1]["id"] if len(rows) > PAGE_SIZE else None,
        },
    )


async def settings_page(request: web.Request) -> web.StreamResponse:
    return page(
        request, "settings.html", {"title": "Settings", "rows": deps(request).settings_rows}
    )


@requires("admin")
async def users(request: web.Request) -> web.StreamResponse:
    async with deps(request).db.transaction("console.users") as conn:
        found = await store.list_users(conn)
    return page(
        request,
        "users.html",
        {"title": "Users", "users": found, "roles": ROLES, "error": None, "created": None},
    )


@requires("admin")
async def users_submit(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    user = visit(request).user
    assert user is not None
    form = await request.post()
    action = str(form.get("action", ""))
    name = str(form.get("name", "")).strip().lower()
    error = created = None
    try:
        async with d.db.transaction("console.users_change") as conn:
            if action == "add":
                _, created = await add_user(
                    conn,
                    name,
                    str(form.get("role", "viewer")),
                    password=None,
                    by=user.name,
                    now=d.clock(),
                    address=address(request),
                )
            elif action == "disable":
                if name == user.name:
                    raise UserError("you cannot disable yourself")
                await disable_user(
                    conn, name, by=user.name, now=d.clock(), address=address(request)
                )
            else:
                raise web.HTTPBadRequest()
    except UserError as exc:
        error = str(exc)
    async with d.db.transaction("console.users") as conn:
        found = await store.list_users(conn)
    return page(
        request,
        "users.html",
        {
            "title": "Users",
            "users": found,
            "roles": ROLES,
            "error": error,
            "created": (name, created) if created else None,
        },
        status=400 if error else 200,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", overview)
    app.router.add_get("/modalities", modalities)
    app.router.add_post("/modalities/{code}", modality_switch)
    app.router.add_get("/outbox", outbox)
    app.router.add_post("/outbox/{id:\\d+}/{action:retry|drop}", outbox_action)
    app.router.add_get("/messages", messages)
    app.router.add_get("/deferred", deferred)
    app.router.add_get("/audit", audit_log)
    app.router.add_get("/settings", settings_page)
    app.router.add_get("/users", users)
    app.router.add_post("/users", users_submit)
