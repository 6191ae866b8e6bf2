"""Appointment lifecycle benchmark: ``.venv/bin/python -m bench.lifecycle [--seconds S] [--no-docs]``.

``POST /api/ris/book-appointment``, ``/reschedule-appointment`` and ``/cancel-appointment`` through the REST
facade with the RIS round trip (SRM^S01/S02/S04 to the simulated RIS, ch10-2.5.1), at 1 and 32 concurrent
HTTP/1.1 keep-alive clients, in one run: booking first (it makes the appointments), then reschedules of
those appointments into free slots, then cancels of them. Same process layout as ``bench.gateway`` (daemon
on core 0; sim-ris, PostgreSQL and the load generator on core 1).

A reschedule is one HL7 round trip plus three short transactions (change row, settle + record + SIU^S13
into the EMR outbox + event); a cancel the same with SIU^S15. The result is written into the
``## Appointment lifecycle`` section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from bench import _docs
from bench.gateway.__main__ import (
    API_KEY,
    BOOKABLE,
    DAEMON_CPU,
    OTHER_CPU,
    Result,
    _get,
    _post,
    _read_response,
    control,
    cpu_seconds,
    insert_orders,
    load,
    machine,
    prepare_database,
    weekdays,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "performance.md"
SECTION = "## Appointment lifecycle"


async def _appointments(dsn: str) -> list[tuple[str, str, str]]:
    """(appointment id, location, modality) of every live appointment, oldest first."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT appointment_id, location_id, modality FROM appointments"
            " WHERE status IN ('booked', 'rescheduled') ORDER BY created_at"
        )
    finally:
        await conn.close()
    return [(r["appointment_id"], r["location_id"], r["modality"]) for r in rows]


async def run(seconds: float) -> list[Result]:
    from radsched.storage import embedded
    from tests.daemonproc import DaemonProcess

    workdir = Path(tempfile.mkdtemp(prefix="bench-lifecycle-"))
    workdir.chmod(0o711)
    os.sched_setaffinity(0, {OTHER_CPU})
    handle, dsn = await prepare_database(workdir)
    hash_key, phi_key = secrets.token_hex(32), secrets.token_hex(32)
    sim = subprocess.Popen(  # noqa: ASYNC220 - set-up, before any load runs
        [
            sys.executable,
            "-m",
            "radsched",
            "sim-ris",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--cpu",
            str(OTHER_CPU),
        ],
        stdout=subprocess.PIPE,
    )
    daemon: DaemonProcess | None = None
    try:
        assert sim.stdout is not None
        fields = dict(item.split("=", 1) for item in sim.stdout.readline().decode().split()[2:])
        ris, ctl = fields["mllp"], "http://" + fields["control"]
        data_dir = workdir / "data"
        data_dir.mkdir()
        env = {
            "RADSCHED_DATABASE_URL": dsn,
            "RADSCHED_PHONE_HASH_KEY": hash_key,
            "RADSCHED_PHI_KEY": phi_key,
            "RADSCHED_API_KEYS": API_KEY,
            "RADSCHED_RIS_ADDR": ris,
            "RADSCHED_LOG_FORMAT": "json",
            "RADSCHED_RATE_LIMIT_API_PER_S": "0",
        }
        os.sched_setaffinity(0, {DAEMON_CPU})
        try:
            daemon = DaemonProcess(data_dir, env=env).start()
        finally:
            os.sched_setaffinity(0, {OTHER_CPU})
        host, port = daemon.addresses["http"]
        free: list[tuple[str, str, str]] = []
        for d in weekdays(datetime.now(UTC).date(), 20):
            for loc, mod in BOOKABLE:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(
                    _get(
                        host,
                        port,
                        f"/api/ris/available-slots?location={loc}&modality={mod}&date={d}",
                    )
                )
                status, body = await _read_response(reader)
                writer.close()
                assert status == 200, body
                free += [(s["id"], s["location"], s["modality"]) for s in json.loads(body)["slots"]]
        await insert_orders(dsn, len(free), hash_key, phi_key)
        slots = iter(free)
        orders = iter(range(len(free)))

        def bookings() -> Iterator[bytes]:
            for i in orders:
                slot_id, loc, mod = next(slots)
                body = {
                    "order_id": f"B{i:06d}",
                    "mrn": f"MRN{i:06d}",
                    "modality": mod,
                    "location": loc,
                    "slot_id": slot_id,
                }
                yield _post(host, port, "/api/ris/book-appointment", body)

        results: list[Result] = []

        async def measure(name: str, requests: Iterator[bytes], clients: int, ok: int) -> None:
            assert daemon is not None and daemon.proc is not None
            control(ctl + "/stats", "DELETE")
            cpu_before = cpu_seconds(daemon.proc.pid)
            latencies, elapsed, errors = await load(
                host, port, requests, clients=clients, seconds=seconds, ok=ok
            )
            cpu = (cpu_seconds(daemon.proc.pid) - cpu_before) / max(1, len(latencies))
            service = control(ctl + "/stats")["service_us"]
            assert isinstance(service, dict)
            result = Result(
                name,
                clients,
                latencies,
                elapsed,
                errors,
                service["p50"],
                service["p99"],
                cpu * 1000,
            )
            results.append(result)
            print(result.row(), file=sys.stderr)

        for clients in (1, 32):
            await measure("booking", bookings(), clients, 201)
        # Reschedule each appointment into a slot nobody holds at its own location and modality.
        spare: dict[tuple[str, str], list[str]] = {}
        for slot_id, loc, mod in slots:
            spare.setdefault((loc, mod), []).append(slot_id)
        moves = iter(await _appointments(dsn))

        def reschedules() -> Iterator[bytes]:
            for appointment_id, loc, mod in moves:
                pool = spare.get((loc, mod))
                if not pool:
                    continue
                body = {"appointment_id": appointment_id, "slot_id": pool.pop()}
                yield _post(host, port, "/api/ris/reschedule-appointment", body)

        for clients in (1, 32):
            await measure("reschedule", reschedules(), clients, 200)
        cancels = iter(await _appointments(dsn))

        def cancellations() -> Iterator[bytes]:
            for appointment_id, _loc, _mod in cancels:
                body = {"appointment_id": appointment_id, "reason": "bench"}
                yield _post(host, port, "/api/ris/cancel-appointment", body)

        for clients in (1, 32):
            await measure("cancel", cancellations(), clients, 200)
        return results
    finally:
        if daemon is not None:
            daemon.stop()
        sim.terminate()
        sim.wait(30)
        await embedded.stop(handle)  # type: ignore[arg-type]
        shutil.rmtree(workdir, ignore_errors=True)


def render(results: list[Result], seconds: float, before: str, after: str) -> str:
    lines = [
        SECTION,
        "",
        "Reproduce: `.venv/bin/python -m bench.lifecycle` (options: `--seconds`, `--no-docs`).",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; "
        f"{seconds:g} s per row; same layout as the RIS gateway section (daemon on core {DAEMON_CPU}; "
        f"sim-ris, PostgreSQL and the load generator on core {OTHER_CPU}; dialect ch10-2.5.1; one "
        "MLLP connection to the RIS). Booking makes the appointments; the reschedules move those "
        "appointments into free slots (SRM^S02, SIU^S13 queued to the in-process EMR sink); the "
        "cancels cancel them (SRM^S04, SIU^S15). A row stops early when it runs out of "
        "appointments (the *requests* column). Latencies end to end at the client, in ms.",
        f"Load average before/after: {before} / {after} (other engineers' suites share the machine).",
        "",
        "| request | clients | requests | req/s | p50 | p99 | RIS p50 | own p50 | daemon CPU/req | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[r.row() for r in results],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lifecycle")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results = asyncio.run(run(args.seconds))
    after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = render(results, args.seconds, before, after)
    print(text)
    if not args.no_docs:
        _docs.write_section(SECTION, text, DOC)


if __name__ == "__main__":
    main()
