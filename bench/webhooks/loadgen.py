"""Load generator for the webhook benchmark: signed Twilio inbound-SMS posts, run in its own process.

``python -m bench.webhooks.loadgen SPEC.json`` reads the target, the auth token and the list of
(From, Body) pairs, signs every request up front (so signing costs nothing during the run), then
posts them either closed-loop (``concurrency`` requests always in flight) or open-loop at a fixed
``rate`` (each request starts on schedule whether or not earlier ones finished: latency includes
queueing, the honest figure). Prints one JSON line: counts, statuses and latency percentiles.
"""

from __future__ import annotations

import asyncio
import json
import resource
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from radsched.commands.text import inbound_sms_form, signature


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    url = spec["url"] + "/sms/inbound"
    signed_url = spec["public_url"] + "/sms/inbound"
    prepared = []
    for sender, body in spec["messages"]:
        form = inbound_sms_form(
            account_sid=spec["account_sid"],
            from_=sender,
            to=spec["to"],
            body=body,
            message_sid="SM" + secrets.token_hex(16),
        )
        prepared.append((form, signature(spec["auth_token"], signed_url, form)))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=spec.get("connections", 64))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(form: dict[str, str], sig: str) -> None:
            started = time.perf_counter()
            try:
                async with session.post(
                    url, data=form, headers={"X-Twilio-Signature": sig}
                ) as response:
                    await response.read()
                    key = str(response.status)
            except aiohttp.ClientError as exc:
                key = type(exc).__name__
            latencies.append(time.perf_counter() - started)
            statuses[key] = statuses.get(key, 0) + 1

        started = time.perf_counter()
        if spec.get("rate"):
            interval = 1.0 / float(spec["rate"])
            tasks = []
            for n, (form, sig) in enumerate(prepared):
                delay = started + n * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(form, sig)))
            await asyncio.gather(*tasks)
        else:
            queue = list(reversed(prepared))

            async def worker() -> None:
                while queue:
                    form, sig = queue.pop()
                    await one(form, sig)

            await asyncio.gather(*(worker() for _ in range(int(spec["concurrency"]))))
        elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    latencies.sort()
    return {
        "requests": len(prepared),
        "seconds": elapsed,
        "per_second": len(prepared) / elapsed if elapsed else 0.0,
        "statuses": statuses,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p90_ms": _percentile(latencies, 0.90) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] if latencies else 0.0) * 1000,
        # Includes signing every request up front; compare with the daemon's CPU per request.
        "loadgen_cpu_ms": (usage.ru_utime + usage.ru_stime) * 1000 / max(1, len(prepared)),
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(asyncio.run(run(spec))), flush=True)


if __name__ == "__main__":
    main()
