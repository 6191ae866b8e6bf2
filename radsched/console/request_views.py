"""The Requests page: what patients asked after booking by text, for a person to decide.

Everyone sees the pending requests (oldest first, overdue after ``STAFF_REQUEST_OVERDUE_MIN``) and
the latest decisions; operators and admins approve or deny through the daemon's ``StaffDesk``, the
one behind ``/api/staff-requests`` and ``radsched requests``, and each attempt, done or refused, goes
to the console's audit. Metadata only: ids, kind, modality, times, who decided and their note.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from radsched.console.app import audit_action, deps, page, requires, visit
from radsched.scheduling.errors import SchedulingError
from radsched.sms.after_booking import Decision, DeskError
from radsched.storage import staff_requests as store

__all__ = ["add_routes"]

NOTE_MAX = 200  # staff_requests.note's CHECK
PENDING_SHOWN = 200
DECIDED_SHOWN = 50
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
KINDS = {
    "cancel": "cancel (the patient replied 3)",
    "opted_out": "opted out; may want to cancel",
    "unclear": "reply for several appointments",
}


async def _render(
    request: web.Request,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    d = deps(request)
    now = d.clock()
    async with d.db.transaction("console.requests") as conn:
        pending = await store.list_requests(conn, state="pending", limit=PENDING_SHOWN)
        waiting, overdue = await store.pending_counts(conn, overdue_before=now - d.request_overdue)
        decided = await store.decided_recently(conn, limit=DECIDED_SHOWN)
    rows: list[dict[str, Any]] = [
        {"r": r, "overdue": now - r.created_at > d.request_overdue} for r in pending
    ]
    return page(
        request,
        "requests.html",
        {
            "title": "Requests",
            "pending": rows,
            "waiting": waiting,
            "overdue": overdue,
            "decided": decided,
            "kinds": KINDS,
            "overdue_min": int(d.request_overdue.total_seconds() // 60),
            "can_decide": d.staff is not None,
            "note_max": NOTE_MAX,
            "notice": notice,
            "error": error,
        },
        status=status,
    )


async def requests_page(request: web.Request) -> web.StreamResponse:
    return await _render(request)


def _note(raw: object) -> tuple[str | None, str | None]:
    """(the note or None, a problem to show)."""
    text = " ".join(str(raw or "").replace("\r", " ").replace("\n", " ").split())
    if _CONTROL.search(text):
        return None, "The note may not contain control characters."
    if len(text) > NOTE_MAX:
        return None, f"The note is longer than {NOTE_MAX} characters."
    return text or None, None


def _done(decision: Decision, approved: bool) -> str:
    r = decision.request
    if approved:
        text = f"Request {r.id} approved: appointment {r.appointment_id} is cancelled at the RIS"
        told = "the patient was texted that it is no longer booked"
    else:
        text = f"Request {r.id} denied"
        told = "the patient was texted to call the scheduling team"
    if not decision.texted:
        told = "no text was sent (the patient opted out of texts)"
    return f"{text}; {told}."


@requires("operator")
async def decide(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    user = visit(request).user
    assert user is not None
    raw_id = request.match_info["id"]
    action = request.match_info["action"]
    approve = action == "approve"
    if len(raw_id) > 18:
        raise web.HTTPNotFound()
    request_id = int(raw_id)
    note, problem = _note((await request.post()).get("note"))
    if problem is not None:
        return await _render(request, error=problem, status=400)
    notice = error = None
    status = 200
    if d.staff is None:
        status, code = 503, "not_here"
        error = (
            "This daemon cannot decide requests (it needs the sms and gateway roles): "
            "use the console or `radsched requests` of one that has them."
        )
    else:
        try:
            if approve:
                decision = await d.staff.approve(request_id, by=user.name, note=note)
            else:
                decision = await d.staff.deny(request_id, by=user.name, note=note)
        except DeskError as exc:
            status, code, error = exc.status, exc.code, f"Not decided: {exc}."
        except SchedulingError as exc:
            # The lifecycle's refusals name hosts and control ids, never patient data.
            status, code = exc.http_status, exc.code
            error = f"Not decided, the appointment is still booked: {exc.message}."
        else:
            code = "approved" if approve else "denied"
            notice = _done(decision, approve)
    async with d.db.transaction("console.request_audit") as conn:
        await audit_action(
            request,
            conn,
            f"request_{action}",
            f"staff_request:{request_id}",
            old="pending",
            new=code if error is None else f"refused: {code}",
            note="; ".join(part for part in (note, error) if part) or None,
        )
    return await _render(request, notice=notice, error=error, status=status)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/requests", requests_page)
    app.router.add_post("/requests/{id:\\d+}/{action:approve|deny}", decide)
