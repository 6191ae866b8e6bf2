"""The load generator of ``bench.twoproc``, run in its own process: orders over MLLP or slot queries
over HTTP, closed loop, one request in flight per connection, counted by the connection's local port.

``python -m bench.twoproc.load SPEC.json`` where SPEC has ``kind`` (``mllp`` or ``http``), ``host``,
``port``, ``connections``, ``seconds`` and either ``orders`` (``[order_id, mrn, phone_digits]``,
used in turn across all connections) or ``requests`` (raw HTTP/1.1 keep-alive requests, cycled).
All connections are opened first, then ``START`` is printed (the benchmark takes its /proc CPU
snapshot and maps each local port to the daemon process that accepted it), then the load runs until
the time or the orders run out. The last line is the JSON result: counts, throughput, latency
percentiles, each local port's count (``ports``) and this process's own CPU seconds.

An order counts as acknowledged only if its ACK's MSA-1 is ``AA`` and MSA-2 is the order's MSH-10;
a slot query only with status 200.
"""

from __future__ import annotations

import asyncio
import itertools
import resource
import sys
import time
from typing import Any

from bench.gateway.__main__ import _read_response
from bench.intake.loadgen import _percentile, order_message, run_spec

START, END = b"\x0b", b"\x1c\r"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ack_code(reply: bytes, control_id: bytes) -> str:
    """MSA-1 of ``reply`` if MSA-2 is ``control_id``; ``wrong id`` or ``no MSA`` otherwise."""
    at = reply.find(b"\rMSA|")
    if at < 0:
        return "no MSA"
    fields = reply[at + 5 :].split(b"\r", 1)[0].split(b"|")
    if len(fields) < 2 or fields[1] != control_id:
        return "wrong id"
    return fields[0].decode(errors="replace")


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    host, port, n = spec["host"], int(spec["port"]), int(spec["connections"])
    conns = [await asyncio.open_connection(host, port) for _ in range(n)]
    latencies: list[float] = []
    codes: dict[str, int] = {}
    ports: dict[int, int] = {}
    if spec["kind"] == "mllp":
        orders = iter(spec["orders"])
    else:
        requests = itertools.cycle(r.encode("latin-1") for r in spec["requests"])
    print("START", flush=True)
    cpu_before = _cpu()
    began = time.perf_counter()
    deadline = began + float(spec["seconds"])

    async def mllp_loop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        local = writer.get_extra_info("sockname")[1]
        for order_id, mrn, digits in orders:
            if time.perf_counter() >= deadline:
                break
            control_id = ("C" + order_id).encode()
            sent = time.perf_counter()
            writer.write(START + order_message(control_id.decode(), order_id, mrn, digits) + END)
            reply = await reader.readuntil(END)
            latencies.append(time.perf_counter() - sent)
            code = ack_code(reply, control_id)
            codes[code] = codes.get(code, 0) + 1
            ports[local] = ports.get(local, 0) + 1
        return "done"

    async def http_loop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        local = writer.get_extra_info("sockname")[1]
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            writer.write(next(requests))
            status, _ = await _read_response(reader)
            latencies.append(time.perf_counter() - sent)
            codes[str(status)] = codes.get(str(status), 0) + 1
            ports[local] = ports.get(local, 0) + 1
        return "done"

    loop = mllp_loop if spec["kind"] == "mllp" else http_loop
    await asyncio.gather(*(loop(r, w) for r, w in conns))
    elapsed = time.perf_counter() - began
    cpu = _cpu() - cpu_before
    for _, writer in conns:
        writer.close()
    latencies.sort()
    return {
        "kind": spec["kind"],
        "connections": n,
        "requests": len(latencies),
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "codes": codes,
        "ports": ports,
        "cpu_s": cpu,
        "ran_out": spec["kind"] == "mllp" and time.perf_counter() < deadline,
    }


def main() -> None:
    run_spec(run)


if __name__ == "__main__":
    sys.exit(main())
