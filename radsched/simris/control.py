"""The simulated RIS's run-time control channel: a small HTTP API on ``--control HOST:PORT``.

Chosen over signals + files because it is scriptable from any test or rehearsal (``curl``), answers with
the resulting state, and cannot race a half-written file::

    curl -s localhost:2576/faults                                   # current switches
    curl -s -X PUT localhost:2576/faults -d '{"delay": 2.5}'         # partial update
    curl -s -X PUT localhost:2576/faults -d '{"nak": "AE"}'
    curl -s -X DELETE localhost:2576/faults                         # clear every fault
    curl -s localhost:2576/stats                                    # frames by type, bookings, RIS time
    curl -s -X DELETE localhost:2576/stats                          # reset the timing samples
    curl -s localhost:2576/bookings                                 # slot id -> appointment ids

Acting as staff at the RIS front desk (the change is made in the calendar, then SIU^S15 / SIU^S13 goes to
``--notify``, radsched's ``MLLP_LISTEN``; a no-show sends SIU^S26; the answer says which SIU went and the
ACK it got)::

    curl -s -X POST localhost:2576/appointments/SIM0000001/cancel -d '{"reason": "Scanner down"}'
    curl -s -X POST localhost:2576/appointments/SIM0000001/move -d '{"slot_id": "DTWN-CT-202612011400"}'
    curl -s -X POST localhost:2576/appointments/SIM0000001/noshow

The appointment may be named by the RIS id (``SIM...``), its slot id or radsched's appointment id.
"""

from __future__ import annotations

import json

from aiohttp import web

import mllp
from channels import ParseError
from radsched.simris.server import FaultError, SimRis


def control_app(sim: SimRis) -> web.Application:
    async def get_faults(_: web.Request) -> web.Response:
        return web.json_response(sim.faults.as_dict())

    async def put_faults(request: web.Request) -> web.Response:
        try:
            values = await request.json(loads=json.loads)
            if not isinstance(values, dict):
                raise FaultError("body must be a JSON object of fault names to values")
            sim.set_faults(**values)
        except (ValueError, FaultError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(sim.faults.as_dict())

    async def clear_faults(_: web.Request) -> web.Response:
        sim.clear_faults()
        return web.json_response(sim.faults.as_dict())

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(sim.stats())

    async def reset_stats(_: web.Request) -> web.Response:
        sim.reset_timing()
        return web.json_response(sim.stats())

    async def bookings(_: web.Request) -> web.Response:
        return web.json_response(
            {
                slot_id: {
                    "appointment_id": b.appointment_id,
                    "placer_appointment_id": b.placer_appointment_id,
                }
                for slot_id, b in sim.bookings.items()
            }
        )

    async def staff_change(request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        try:
            body = await request.json(loads=json.loads) if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            reason = str(body.get("reason", ""))
            action = request.match_info["action"]
            if action == "cancel":
                result = await sim.staff_cancel(ref, reason=reason)
            elif action == "noshow":
                result = await sim.staff_noshow(ref, reason=reason)
            else:
                slot_id = body.get("slot_id")
                if not isinstance(slot_id, str) or not slot_id:
                    raise ValueError('move needs {"slot_id": "..."}')
                result = await sim.staff_move(ref, slot_id, reason=reason)
        except LookupError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        except (mllp.MLLPError, ParseError) as exc:
            return web.json_response({"error": f"radsched did not answer: {exc}"}, status=502)
        return web.json_response(result)

    app = web.Application()
    app.router.add_get("/faults", get_faults)
    app.router.add_put("/faults", put_faults)
    app.router.add_post("/faults", put_faults)
    app.router.add_delete("/faults", clear_faults)
    app.router.add_get("/stats", stats)
    app.router.add_delete("/stats", reset_stats)
    app.router.add_get("/bookings", bookings)
    app.router.add_post("/appointments/{ref}/{action:cancel|move|noshow}", staff_change)
    return app
