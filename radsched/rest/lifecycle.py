"""REST facade of the appointment lifecycle, in the style of booking (DESIGN.md section 11).

* ``POST /api/ris/cancel-appointment`` ``{"appointment_id", "reason"?}`` → 200 ``{"status": "cancelled",
  "appointment": {...}}``; a repeat answers the same without a second HL7 request; 404 unknown; 409 when the
  RIS refuses (its reason in the message) or another change is still waiting; 502/503/504 as for booking.
* ``POST /api/ris/reschedule-appointment`` ``{"appointment_id", "slot_id"}`` → 200 ``{"status": "rescheduled",
  "confirmation_code", "appointment": {...new start...}}``; 409 when the slot is taken (the old one stands).
* ``GET /api/ris/appointments/{appointment_id}`` → the record, without PHI.

Same ``X-API-Key``, same JSON errors; the paths join ``/api/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from radsched.rest.bodies import BadInput, read_json_object
from radsched.rest.errors import error_response
from radsched.rest.scheduling import Identifier, _validate
from radsched.scheduling.errors import SchedulingError
from radsched.scheduling.lifecycle import ChangeOutcome, Lifecycle

Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
]


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    appointment_id: Identifier
    reason: Reason = ""


class RescheduleBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    appointment_id: Identifier
    slot_id: Identifier


Authorise = Callable[[web.Request], web.Response | None]


def change_json(outcome: ChangeOutcome, tz: tzinfo) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "cancelled" if outcome.kind.value == "cancel" else "rescheduled",
        "appointment": outcome.appointment.json(tz),
    }
    if outcome.kind.value == "reschedule":
        body["confirmation_code"] = outcome.appointment.confirmation_code
    return body


class LifecycleApi:
    def __init__(self, lifecycle: Lifecycle, authorise: Authorise, tz: tzinfo) -> None:
        self._lifecycle = lifecycle
        self._authorise = authorise
        self._tz = tz

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/ris/cancel-appointment", self.cancel),
            web.post("/api/ris/reschedule-appointment", self.reschedule),
            web.get("/api/ris/appointments/{appointment_id}", self.show, allow_head=False),
        ]

    async def cancel(self, request: web.Request) -> web.Response:
        if (denied := self._authorise(request)) is not None:
            return denied
        try:
            body = _validate(CancelBody, await read_json_object(request))
            outcome = await self._lifecycle.cancel(
                body.appointment_id, origin="rest", reason=body.reason
            )
        except BadInput as exc:
            return error_response(400, "invalid_request", str(exc))
        except SchedulingError as exc:
            return error_response(exc.http_status, exc.code, exc.message)
        return web.json_response(change_json(outcome, self._tz))

    async def reschedule(self, request: web.Request) -> web.Response:
        if (denied := self._authorise(request)) is not None:
            return denied
        try:
            body = _validate(RescheduleBody, await read_json_object(request))
            outcome = await self._lifecycle.reschedule(
                body.appointment_id, body.slot_id, origin="rest"
            )
        except BadInput as exc:
            return error_response(400, "invalid_request", str(exc))
        except SchedulingError as exc:
            return error_response(exc.http_status, exc.code, exc.message)
        return web.json_response(change_json(outcome, self._tz))

    async def show(self, request: web.Request) -> web.Response:
        if (denied := self._authorise(request)) is not None:
            return denied
        try:
            view = await self._lifecycle.get(request.match_info["appointment_id"])
        except SchedulingError as exc:
            return error_response(exc.http_status, exc.code, exc.message)
        return web.json_response({"appointment": view.json(self._tz)})


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _post(
    operation: str, summary: str, request_schema: str, ok: str, conflict: str
) -> dict[str, Any]:
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "description": "Idempotent: the same request again returns the same status and body "
            "without a second HL7 request. Recorded before the HL7 goes out; after a crash it is "
            "re-sent with the same MSH-10.",
            "security": [{"ApiKey": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{request_schema}"}
                    }
                },
            },
            "responses": {
                "200": _ok("Done (or the stored outcome of the same request).", ok),
                "404": _error("Unknown appointment (code unknown_appointment)."),
                "409": _error(conflict),
                **_RIS_ERRORS,
            },
        }
    }


_RIS_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "502": {"$ref": "#/components/responses/RisError"},
    "503": {"$ref": "#/components/responses/RisUnavailable"},
    "504": {"$ref": "#/components/responses/RisTimeout"},
}

_ID = {"type": "string", "minLength": 1, "maxLength": 64}
_TIME = {"type": "string", "format": "date-time"}


def openapi_fragment() -> dict[str, Any]:
    record = {
        "type": "object",
        "required": [
            "id",
            "status",
            "origin",
            "location",
            "modality",
            "slot_id",
            "start",
            "duration_minutes",
        ],
        "properties": {
            "id": {**_ID, "description": "Our placer appointment id (SCH-1)."},
            "filler_appointment_id": {"type": "string", "description": "The RIS's id (SCH-2)."},
            "status": {"enum": ["booked", "rescheduled", "cancelled", "deleted"]},
            "origin": {"enum": ["rest", "sms", "ris"]},
            "location": {"type": "string"},
            "modality": {"type": "string"},
            "slot_id": {"type": "string"},
            "start": _TIME,
            "duration_minutes": {"type": "integer", "minimum": 1},
            "emr_destinations": {"type": "array", "items": {"type": "string"}},
            "updated_at": _TIME,
        },
    }
    return {
        "paths": {
            "/api/ris/cancel-appointment": _post(
                "cancelAppointment",
                "Cancel a booked appointment at the RIS (SRM^S04 / ORM CA); SIU^S15 to the EMRs.",
                "CancelRequest",
                "Cancelled",
                "The RIS refused (code change_refused, its reason in the message), or another change "
                "or the booking is still waiting for the RIS (code appointment_conflict).",
            ),
            "/api/ris/reschedule-appointment": _post(
                "rescheduleAppointment",
                "Move a booked appointment to another slot (SRM^S02 / ORM XO); SIU^S13 to the EMRs.",
                "RescheduleRequest",
                "Rescheduled",
                "The slot is taken or the RIS refused; the appointment stands as it was "
                "(codes change_refused, slot_unavailable, appointment_conflict).",
            ),
            "/api/ris/appointments/{appointment_id}": {
                "get": {
                    "operationId": "getAppointment",
                    "summary": "The appointment record (no patient data).",
                    "security": [{"ApiKey": []}],
                    "parameters": [
                        {"name": "appointment_id", "in": "path", "required": True, "schema": _ID}
                    ],
                    "responses": {
                        "200": _ok("The record.", "AppointmentEnvelope"),
                        "401": {"$ref": "#/components/responses/Unauthorized"},
                        "404": _error("Unknown appointment (code unknown_appointment)."),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "AppointmentRecord": record,
                "AppointmentEnvelope": {
                    "type": "object",
                    "required": ["appointment"],
                    "properties": {
                        "appointment": {"$ref": "#/components/schemas/AppointmentRecord"}
                    },
                },
                "CancelRequest": {
                    "type": "object",
                    "required": ["appointment_id"],
                    "properties": {
                        "appointment_id": _ID,
                        "reason": {
                            "type": "string",
                            "maxLength": 200,
                            "description": "Sent to the RIS and the EMRs; no patient data, please.",
                        },
                    },
                },
                "RescheduleRequest": {
                    "type": "object",
                    "required": ["appointment_id", "slot_id"],
                    "properties": {"appointment_id": _ID, "slot_id": _ID},
                },
                "Cancelled": {
                    "type": "object",
                    "required": ["status", "appointment"],
                    "properties": {
                        "status": {"const": "cancelled"},
                        "appointment": {"$ref": "#/components/schemas/AppointmentRecord"},
                    },
                },
                "Rescheduled": {
                    "type": "object",
                    "required": ["status", "confirmation_code", "appointment"],
                    "properties": {
                        "status": {"const": "rescheduled"},
                        "confirmation_code": {"type": "string"},
                        "appointment": {"$ref": "#/components/schemas/AppointmentRecord"},
                    },
                },
            }
        },
    }
