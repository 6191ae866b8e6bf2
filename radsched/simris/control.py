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
"""

from __future__ import annotations

import json

from aiohttp import web

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

    app = web.Application()
    app.router.add_get("/faults", get_faults)
    app.router.add_put("/faults", put_faults)
    app.router.add_post("/faults", put_faults)
    app.router.add_delete("/faults", clear_faults)
    app.router.add_get("/stats", stats)
    app.router.add_delete("/stats", reset_stats)
    app.router.add_get("/bookings", bookings)
    return app
