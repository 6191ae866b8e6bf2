"""MLLP order load generator: unique ORM^O01 messages over N connections, run in its own process.

``python -m bench.intake.loadgen SPEC.json`` where SPEC has ``host``, ``port``, ``connections``,
``seconds`` and ``orders`` (a list of ``[order_id, mrn, phone_digits]``, used in order across
all connections). Each connection sends one order, waits for its ACK (closed loop, like a RIS
interface engine with one message in flight per connection), and repeats until the orders or the
time run out. Prints one JSON line: counts by ACK code, throughput and latency percentiles.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import mllp

_MSA = b"MSA|"


def order_message(control_id: str, order_id: str, mrn: str, digits: str) -> bytes:
    area, exchange, line = digits[:3], digits[3:6], digits[6:]
    return (
        "MSH|^~\\&|SYNAPSE|RADIOLOGY|RADSCHED|RADSCHED|20260601100000||ORM^O01|"
        f"{control_id}|P|2.3\r"
        f"PID|1||{mrn}^^^HOSP^MR||BENCH^PATIENT||19800101|F|||||({area}){exchange}-{line}^PRN^CP\r"
        f"ORC|NW|{order_id}|F{order_id}\r"
        f"OBR|1|{order_id}|F{order_id}|71045^XR CHEST 2V^CPT||||||||||||||||||||CR\r"
    ).encode()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    orders: list[list[str]] = spec["orders"]
    # MSH-10 unique across runs too: a repeated control id would be answered as a duplicate.
    payloads = [
        order_message("C" + order_id, order_id, mrn, digits) for order_id, mrn, digits in orders
    ]
    latencies: list[float] = []
    codes: dict[str, int] = {}
    next_index = 0
    deadline = time.perf_counter() + float(spec["seconds"])

    async def connection() -> None:
        nonlocal next_index
        async with mllp.Client(spec["host"], int(spec["port"])) as client:
            while time.perf_counter() < deadline and next_index < len(payloads):
                payload = payloads[next_index]
                next_index += 1
                started = time.perf_counter()
                reply = await client.request(payload, timeout=30)
                latencies.append(time.perf_counter() - started)
                at = reply.find(_MSA)
                code = reply[at + 4 : at + 6].decode() if at >= 0 else "??"
                codes[code] = codes.get(code, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(int(spec["connections"]))))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "connections": spec["connections"],
        "orders": len(latencies),
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] if latencies else 0.0) * 1000,
        "codes": codes,
    }


def run_spec(run: Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]) -> None:
    """Read the spec named on the command line, run it under uvloop, print the JSON result."""
    spec = json.loads(Path(sys.argv[1]).read_text())
    try:
        import uvloop

        result = uvloop.run(run(spec))
    except ImportError:
        result = asyncio.run(run(spec))
    print(json.dumps(result))


def main() -> None:
    run_spec(run)


if __name__ == "__main__":
    main()
