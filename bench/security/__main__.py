"""Cost of the abuse limits: ``.venv/bin/python -m bench.security [--seconds S]``.

1. ``TokenBuckets.take`` alone, over 10,000 keys (the per-request decision).
2. The same aiohttp app (``radsched.rest.app.build_app``, trivial handlers, real loopback socket,
   keep-alive client with 8 requests in flight) with and without the rate-limit middleware, for a GET
   with an API key and a 300-byte JSON POST with a bearer token (the body is read and handed back).
   Limits are on but never reached, so every request pays the full check.

Prints a Markdown section for docs/performance.md ("Security limits").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from radsched.rest.app import build_app
from radsched.rest.ratelimit import Limits, Rate, RateLimiter, TokenBuckets

KEY, TOKEN = "bench-key-0123456789", "bench-token-0123456789"
BODY = {"order_id": "A" * 20, "mrn": "M" * 20, "phone": "+12175550100", "procedure": "x" * 200}


def bucket_cost(n: int = 1_000_000) -> float:
    buckets = TokenBuckets(Rate(1e9, 10**9), "bench")
    keys = [f"key-{i}" for i in range(10_000)]
    started = time.perf_counter()
    for i in range(n):
        buckets.take(keys[i % 10_000])
    return (time.perf_counter() - started) / n * 1e9


def middleware_cost(n: int = 50_000) -> float:
    """Microseconds per request of the middleware alone (valid API key, GET, trivial handler)."""
    from aiohttp.test_utils import make_mocked_request

    limiter = limiter_for_bench()
    request = make_mocked_request("GET", "/api/ris/locations", headers={"X-API-Key": KEY})

    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response()

    async def run() -> float:
        started = time.perf_counter()
        for _ in range(n):
            await limiter.middleware(request, handler)
        return (time.perf_counter() - started) / n * 1e6

    return asyncio.run(run())


def limiter_for_bench() -> RateLimiter:
    high = Rate(1e9, 10**9)  # on, never reached: every request pays the full check
    return RateLimiter(
        Limits(high, high, high, high),
        api_keys=(KEY,),
        order_tokens=(TOKEN,),
        hash_key=b"k" * 32,
        public_url="http://127.0.0.1",
        twilio_auth_token="",
    )


def app(limited: bool) -> web.Application:
    limiter = limiter_for_bench() if limited else None
    application = build_app(CollectorRegistry(), rate_limiter=limiter)

    async def get(_: web.Request) -> web.Response:
        return web.json_response({"locations": []})

    async def post(request: web.Request) -> web.Response:
        await request.json()
        return web.json_response({"status": "accepted"}, status=202)

    application.router.add_get("/api/ris/locations", get)
    application.router.add_post("/api/orders", post)
    return application


async def load(limited: bool, method: str, seconds: float) -> tuple[float, float]:
    runner = web.AppRunner(app(limited), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}" + ("/api/ris/locations" if method == "GET" else "/api/orders")
    headers = {"X-API-Key": KEY, "Authorization": f"Bearer {TOKEN}"}
    latencies: list[float] = []
    async with aiohttp.ClientSession(headers=headers) as http:

        async def worker(deadline: float) -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                kw = {"json": BODY} if method == "POST" else {}
                async with http.request(method, url, **kw) as response:
                    await response.read()
                    assert response.status in (200, 202), response.status
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker(time.perf_counter() + 0.5) for _ in range(8)))  # warm-up
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds) for _ in range(8)))
        elapsed = time.perf_counter() - started
    await runner.cleanup()
    return len(latencies) / elapsed, statistics.median(latencies) * 1e3


async def main_async(seconds: float, rounds: int) -> None:
    # asyncio.run() cannot nest: the isolated figures are taken before the loop starts (see main).
    print("| request | middleware | req/s, median (min-max) of rounds | p50 ms |")
    print("|---|---|---|---|")
    for method in ("GET", "POST"):
        runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(rounds):  # interleaved, so drift on a shared machine hits both alike
            for limited in (False, True):
                runs[limited].append(await load(limited, method, seconds))
        for limited in (False, True):
            rates = [r[0] for r in runs[limited]]
            p50 = statistics.median(r[1] for r in runs[limited])
            name = "rate limiter" if limited else "none"
            spread = f"({min(rates):,.0f}-{max(rates):,.0f})"
            print(f"| {method} | {name} | {statistics.median(rates):,.0f} {spread} | {p50:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.security")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"TokenBuckets.take over 10,000 keys: {bucket_cost():.0f} ns per call")
    print(f"the middleware alone (GET, valid key): {middleware_cost():.1f} µs per request\n")
    asyncio.run(main_async(args.seconds, args.rounds))


if __name__ == "__main__":
    main()
