"""Open-loop MLLP load at a fixed rate, run in its own process: ``python -m bench.day.paced SPEC.json``.

SPEC has ``host``, ``port``, ``connections``, ``rate`` (messages per second in total) and ``messages``
(HL7 payloads as text, sent in order). Message i is due at start + i / rate on connection
i mod connections; a connection still waiting for an earlier ACK sends late, and the latency is
counted from when the message was due, so queueing shows in the figures (no coordinated omission).
Prints one JSON line: ACK codes, percentiles, and the p99 of each second of the run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import mllp
from bench.intake.loadgen import _percentile, run_spec

_MSA = b"MSA|"


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    payloads = [m.encode() for m in spec["messages"]]
    connections, rate = int(spec["connections"]), float(spec["rate"])
    latencies: list[tuple[float, float]] = []  # (due offset, latency)
    codes: dict[str, int] = {}
    began = time.perf_counter() + 0.2

    async def connection(first: int) -> None:
        async with mllp.Client(spec["host"], int(spec["port"])) as client:
            for i in range(first, len(payloads), connections):
                due = began + i / rate
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                reply = await client.request(payloads[i], timeout=60)
                latencies.append((due - began, time.perf_counter() - due))
                at = reply.find(_MSA)
                code = reply[at + 4 : at + 6].decode() if at >= 0 else "??"
                codes[code] = codes.get(code, 0) + 1

    await asyncio.gather(*(connection(c) for c in range(connections)))
    elapsed = time.perf_counter() - began
    ordered = sorted(x for _, x in latencies)
    per_second: dict[int, list[float]] = {}
    for offset, latency in latencies:
        per_second.setdefault(int(offset), []).append(latency)
    return {
        "messages": len(ordered),
        "seconds": elapsed,
        "per_second": len(ordered) / elapsed if elapsed else 0.0,
        "p50_ms": _percentile(ordered, 0.50) * 1000,
        "p99_ms": _percentile(ordered, 0.99) * 1000,
        "max_ms": (ordered[-1] if ordered else 0.0) * 1000,
        "p99_by_second_ms": [
            _percentile(sorted(per_second[s]), 0.99) * 1000 for s in sorted(per_second)
        ],
        "codes": codes,
    }


def main() -> None:
    run_spec(run)


if __name__ == "__main__":
    main()
