"""Unique ORM^O01 orders over MLLP as fast as the daemon ACKs them: ``python -m bench.memory.sender
HOST PORT COUNT CONNECTIONS MODALITY [START]``. One message in flight per connection (closed loop,
like a RIS interface engine). Prints one JSON line: counts by ACK code, seconds, orders per second."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

import mllp
from tests.chaos.peers import order_message


async def send(
    host: str, port: int, count: int, connections: int, modality: str, *, start: int = 0
) -> None:
    codes: Counter[str] = Counter()
    next_n = start

    async def one_connection() -> None:
        nonlocal next_n
        async with mllp.Client(host, port) as client:
            while next_n < start + count:
                n = next_n
                next_n += 1
                phone = f"+1217{5000000 + n % 4000000:07d}"
                payload = order_message(f"MEM{n:09d}", f"MO{n:09d}", f"MRN{n:08d}", phone, modality)
                reply = await client.request(payload, timeout=60)
                code = reply.split(b"MSA|", 1)[1][:2].decode() if b"MSA|" in reply else "??"
                codes[code] += 1

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {"codes": dict(codes), "seconds": round(seconds, 1), "per_s": round(count / seconds)}
        )
    )


if __name__ == "__main__":
    host, port, count, conns, modality = sys.argv[1:6]
    start = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    asyncio.run(send(host, int(port), int(count), int(conns), modality, start=start))
