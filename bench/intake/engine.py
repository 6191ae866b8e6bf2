"""In-process part of the intake benchmark: ``SmsEngine.on_inbound_text`` driven directly.

``python -m bench.intake.engine SPEC.json`` (started pinned to one core by ``bench.intake``) runs the
daemon in this process (uvloop, as ``radsched run`` does) against the given database and Twilio
double, seeds ``patients`` conversations through its MLLP listener, then calls ``on_inbound_text``
with ``concurrency`` calls in flight, one round per reply. A call returns after transaction 1 (lock,
step, store, outbox, audit, commit); RIS calls run after commit and each round waits for them
(``drain``) before the next. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
import time
from pathlib import Path
from typing import Any

import mllp
from bench.intake.loadgen import order_message, run_spec
from radsched.daemon import running
from radsched.settings import Settings


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))] if values else 0.0


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    settings = Settings(data_dir=Path(spec["data_dir"]), **spec["settings"])
    async with running(settings) as daemon:
        engine = daemon.sms_engine
        assert engine is not None
        addr = daemon.listening["mllp"]
        patients: list[str] = spec["patients"]

        async def seed(part: list[tuple[int, str]]) -> None:
            async with mllp.Client(addr.host, addr.port) as client:
                for i, digits in part:
                    order = order_message(f"E{i:08d}", f"E{i:07d}", f"EM{i:07d}", digits)
                    await client.request(order, timeout=30)

        async def outbox_drained(timeout: float = 300) -> None:
            # Each round starts with the previous texts sent, so it is measured on its own.
            deadline = time.perf_counter() + timeout
            while await daemon.db.fetchval(
                "bench.outbox",
                "SELECT count(*) FROM sms_outbox WHERE state IN ('pending', 'sending')",
            ):
                if time.perf_counter() > deadline:
                    raise SystemExit("the outbox did not drain")
                await asyncio.sleep(0.05)

        numbered = list(enumerate(patients))
        await asyncio.gather(*(seed(numbered[k::8]) for k in range(8)))
        rounds: dict[str, Any] = {}
        for name, bodies, limit in spec["rounds"]:
            await outbox_drained()
            latencies: list[float] = []
            talking = patients[:limit]

            async def worker(
                k: int,
                bodies: list[str] = bodies,
                latencies: list[float] = latencies,
                talking: list[str] = talking,
            ) -> None:
                for i in range(k, len(talking), spec["concurrency"]):
                    started = time.perf_counter()
                    await engine.on_inbound_text(
                        "+1" + talking[i],
                        bodies[i % len(bodies)],
                        "SM" + secrets.token_hex(16),
                        "b",
                    )
                    latencies.append(time.perf_counter() - started)

            began, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker(k) for k in range(spec["concurrency"])))
            calls_s = time.perf_counter() - began
            await engine.drain(600)
            settled_s = time.perf_counter() - began
            cpu = time.process_time() - cpu
            latencies.sort()
            rounds[name] = {
                "calls": len(latencies),
                "per_second": len(latencies) / calls_s,
                "settled_per_second": len(latencies) / settled_s,
                "p50_ms": _pct(latencies, 0.5) * 1000,
                "p99_ms": _pct(latencies, 0.99) * 1000,
                "max_ms": latencies[-1] * 1000,
                "cpu_ms": cpu * 1000 / len(latencies),
            }
        async with daemon.db.transaction("bench.states") as conn:
            states = dict(
                await conn.fetch("SELECT state, count(*) FROM sms_conversations GROUP BY 1")
            )
        return {"rounds": rounds, "states": states, "concurrency": spec["concurrency"]}


async def quiet(spec: dict[str, Any]) -> dict[str, Any]:
    # Nothing but the JSON result on standard output (the daemon's texts go to the double).
    with contextlib.redirect_stdout(io.StringIO()):
        return await run(spec)


def main() -> None:
    run_spec(quiet)


if __name__ == "__main__":
    main()
