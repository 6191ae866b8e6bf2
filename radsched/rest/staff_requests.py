"""REST face of the staff requests (issue 13 item 3), behind ``X-API-Key`` like the rest of the API.

* ``GET /api/staff-requests?state=pending|approved|denied`` → ``{"requests": [...]}``, oldest first,
  without patient data (ids, kind, appointment, times, who decided).
* ``POST /api/staff-requests/{id}/approve`` ``{"by"}`` → the appointment is cancelled through the
  lifecycle (SRM^S04 / ORM CA to the RIS, SIU^S15 to the EMRs), the request is approved and the
  patient texted; 409 when already decided or when the request names no single appointment; the
  RIS's refusals as for a cancel (409 ``change_refused``, 502/503/504).
* ``POST /api/staff-requests/{id}/deny`` ``{"by", "note"?}`` → denied; the patient is asked to call.

``radsched requests`` calls these on the running daemon; the console lists them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Annotated, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge
from pydantic import BaseModel, ConfigDict, StringConstraints

from radsched.rest import openapi
from radsched.rest.bodies import BadInput, read_json_object
from radsched.rest.errors import error_response
from radsched.rest.scheduling import _validate
from radsched.scheduling.errors import SchedulingError
from radsched.sms.after_booking import DeskError, StaffDesk
from radsched.storage import staff_requests
from radsched.storage.db import Database
from radsched.storage.staff_requests import StaffRequest
from radsched.tasks import spawn

__all__ = ["StaffRequestsApi", "install", "openapi_fragment", "request_json"]

log = logging.getLogger("radsched.staff")
GAUGE_INTERVAL_S = 30.0

_Text = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$"
    ),
]
_Note = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
]
_STATES: tuple[staff_requests.State, ...] = ("pending", "approved", "denied")


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    by: _Text


class DenyBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    by: _Text
    note: _Note = ""


def request_json(request: StaffRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "kind": request.kind,
        "state": request.state,
        "appointment_id": request.appointment_id,
        "modality": request.modality,
        "created_at": request.created_at.isoformat(),
        "decided_at": request.decided_at.isoformat() if request.decided_at else None,
        "decided_by": request.decided_by,
        "note": request.note,
    }


Authorise = Callable[[web.Request], web.Response | None]


class StaffRequestsApi:
    def __init__(self, desk: StaffDesk, authorise: Authorise) -> None:
        self._desk = desk
        self._authorise = authorise

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/staff-requests", self.list, allow_head=False),
            web.post("/api/staff-requests/{id}/approve", self.approve),
            web.post("/api/staff-requests/{id}/deny", self.deny),
        ]

    async def list(self, request: web.Request) -> web.Response:
        if (denied := self._authorise(request)) is not None:
            return denied
        raw = request.query.get("state") or None
        state = next((s for s in _STATES if s == raw), None)
        if raw is not None and state is None:
            return error_response(400, "invalid_request", "state: one of pending, approved, denied")
        found = await self._desk.list(state)
        return web.json_response({"requests": [request_json(r) for r in found]})

    async def approve(self, request: web.Request) -> web.Response:
        return await self._decide(request, approve=True)

    async def deny(self, request: web.Request) -> web.Response:
        return await self._decide(request, approve=False)

    async def _decide(self, request: web.Request, *, approve: bool) -> web.Response:
        if (denied := self._authorise(request)) is not None:
            return denied
        raw_id = request.match_info["id"]
        if not raw_id.isdigit() or len(raw_id) > 18:
            return error_response(404, "unknown_request", "no such staff request")
        try:
            data = await read_json_object(request)
            if approve:
                body = _validate(ApproveBody, data)
                decision = await self._desk.approve(int(raw_id), by=body.by)
            else:
                deny = _validate(DenyBody, data)
                decision = await self._desk.deny(int(raw_id), by=deny.by, note=deny.note or None)
        except BadInput as exc:
            return error_response(400, "invalid_request", str(exc))
        except DeskError as exc:
            return error_response(exc.status, exc.code, str(exc))
        except SchedulingError as exc:
            return error_response(exc.http_status, exc.code, exc.message)
        return web.json_response(
            {"request": request_json(decision.request), "patient_texted": decision.texted}
        )


def openapi_fragment() -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    decided = {
        "description": "Decided.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StaffDecision"}}},
    }
    path_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}

    def post(operation: str, summary: str, body: str) -> dict[str, Any]:
        return {
            "post": {
                "operationId": operation,
                "summary": summary,
                "security": [{"ApiKey": []}],
                "parameters": [path_id],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}
                    },
                },
                "responses": {
                    "200": decided,
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "404": {"description": "No such request (unknown_request).", **error},
                    "409": {
                        "description": "Already decided, names no single appointment, or the "
                        "RIS refused the cancel.",
                        **error,
                    },
                    "502": {"$ref": "#/components/responses/RisError"},
                    "503": {"$ref": "#/components/responses/RisUnavailable"},
                    "504": {"$ref": "#/components/responses/RisTimeout"},
                },
            }
        }

    record = {
        "type": "object",
        "required": ["id", "kind", "state", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "kind": {"enum": ["cancel", "opted_out", "unclear"]},
            "state": {"enum": list(_STATES)},
            "appointment_id": {"type": ["string", "null"]},
            "modality": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "decided_at": {"type": ["string", "null"], "format": "date-time"},
            "decided_by": {"type": ["string", "null"]},
            "note": {"type": ["string", "null"]},
        },
    }
    by = {"type": "string", "minLength": 1, "maxLength": 64}
    return {
        "paths": {
            "/api/staff-requests": {
                "get": {
                    "operationId": "listStaffRequests",
                    "summary": "Requests for a person to decide, oldest first (no patient data).",
                    "security": [{"ApiKey": []}],
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "required": False,
                            "schema": {"enum": list(_STATES)},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The requests.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/StaffRequestList"}
                                }
                            },
                        },
                        "400": {"$ref": "#/components/responses/BadRequest"},
                        "401": {"$ref": "#/components/responses/Unauthorized"},
                    },
                }
            },
            "/api/staff-requests/{id}/approve": post(
                "approveStaffRequest",
                "Approve: cancel the appointment at the RIS, then text the patient.",
                "StaffApprove",
            ),
            "/api/staff-requests/{id}/deny": post(
                "denyStaffRequest", "Deny: text the patient to call.", "StaffDeny"
            ),
        },
        "components": {
            "schemas": {
                "StaffRequest": record,
                "StaffRequestList": {
                    "type": "object",
                    "required": ["requests"],
                    "properties": {
                        "requests": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/StaffRequest"},
                        }
                    },
                },
                "StaffDecision": {
                    "type": "object",
                    "required": ["request", "patient_texted"],
                    "properties": {
                        "request": {"$ref": "#/components/schemas/StaffRequest"},
                        "patient_texted": {"type": "boolean"},
                    },
                },
                "StaffApprove": {"type": "object", "required": ["by"], "properties": {"by": by}},
                "StaffDeny": {
                    "type": "object",
                    "required": ["by"],
                    "properties": {"by": by, "note": {"type": "string", "maxLength": 200}},
                },
            }
        },
    }


async def install(
    stack: AsyncExitStack,
    *,
    app: web.Application,
    desk: StaffDesk,
    authorise: Authorise,
    db: Database,
    registry: CollectorRegistry | None,
    overdue_after: timedelta,
    clock: Callable[[], datetime],
) -> None:
    """The routes, their OpenAPI paths, and ``radsched_staff_requests{state}`` (pending, overdue)."""
    app.router.add_routes(StaffRequestsApi(desk, authorise).routes())
    openapi.add_paths(app, openapi_fragment())
    gauge = Gauge(
        "radsched_staff_requests",
        "Patients' requests waiting for staff (radsched requests): pending, and of those overdue "
        "(older than STAFF_REQUEST_OVERDUE_MIN).",
        ["state"],
        registry=registry,
    )

    async def refresh() -> None:
        while True:
            try:
                async with db.transaction("staff.counts") as conn:
                    pending, overdue = await staff_requests.pending_counts(
                        conn, overdue_before=clock() - overdue_after
                    )
                gauge.labels("pending").set(pending)
                gauge.labels("overdue").set(overdue)
            except Exception:  # a background loop: log, keep going
                log.exception("staff request gauges failed")
            await asyncio.sleep(GAUGE_INTERVAL_S)

    task = spawn(refresh(), name="staff-requests-gauge")
    stack.callback(task.cancel)
