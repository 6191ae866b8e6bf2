"""A day at a large department, then a burst: ``.venv/bin/python -m bench.day [--mix-seconds S]
[--burst-seconds S] [--no-docs]``.

Real parts only, as in bench.intake: ``radsched run`` pinned to core 0 on an embedded PostgreSQL,
texts through its outbox and the Twilio SDK to the Twilio double, load generators on core 1.

1. *The day's mix, compressed*: orders (ORM^O01) and relayed appointments (SIU^S12 from the RIS,
   forwarded to the EMR) over MLLP, open loop at fixed rates on 8 connections, while patients
   answer their consent request (signed ``/sms/inbound`` webhooks, open loop). A large department's
   1,000,000 messages a day would need these rates for the time printed; the run covers a slice.
2. *The burst*: 100 orders/s for 60 s over 8 connections. ACK latency is counted from when each
   order was due (queueing included); the daemon's RSS and the SMS outbox's oldest-text age are
   sampled every second, so growth over the burst shows.

Writes the ``## A day and a burst`` section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import _docs, _results, _stack
from bench._stack import DAEMON_CPU, LOAD_CPU
from bench.intake.__main__ import AREAS, phones, run_pinned
from bench.intake.loadgen import order_message
from bench.webhooks.__main__ import PUBLIC_URL, TWILIO_FROM, loadgen

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## A day and a burst"
DAY_MESSAGES = 1_000_000
SIU_TEMPLATE = (ROOT / "fixtures" / "siu" / "SIU_S12.relay-from-ris.2.3.hl7").read_bytes().decode()


def siu_message(n: int) -> str:
    """The fixture's relayed SIU^S12 with its own MSH-10 and appointment ids."""
    return (
        SIU_TEMPLATE.replace("|RIS000200|", f"|DAY{n:07d}|")
        .replace("RIS-APT-0001", f"DAY-APT-{n:07d}")
        .replace("FIL-APT-9101", f"DAY-FIL-{n:07d}")
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def sample(url: str, pid: int, stop: asyncio.Event) -> list[dict[str, float]]:
    """Once a second: the daemon's RSS and its outboxes' oldest-waiting ages from /metrics."""
    out: list[dict[str, float]] = []
    wanted = ("radsched_sms_outbox_oldest_seconds", "radsched_emr_oldest_pending_age_seconds")
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            row = {"rss_mib": rss_kib(pid) / 1024}
            async with http.get(url) as resp:
                for line in (await resp.text()).splitlines():
                    name = line.split("{", 1)[0].split(" ", 1)[0]
                    if name in wanted:
                        row[name] = max(row.get(name, 0.0), float(line.rsplit(" ", 1)[1]))
            out.append(row)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    return out


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    stack = await _stack.start(work, "day")
    token, account_sid = stack.token, stack.account_sid
    try:
        daemon = stack.daemon
        assert daemon.proc is not None
        host, port = daemon.addresses["mllp"]
        numbers = phones(len(AREAS) * 10_000)
        used = 0

        def orders(count: int) -> list[str]:
            nonlocal used
            batch = [
                order_message(
                    f"CD{used + i:07d}", f"D{used + i:07d}", f"M{used + i:07d}", n
                ).decode()
                for i, n in enumerate(numbers[used : used + count])
            ]
            used += count
            return batch

        def paced(messages: list[str], rate: float) -> dict[str, Any]:
            spec = {"host": host, "port": port, "connections": 8, "rate": rate}
            return run_pinned("bench.day.paced", {**spec, "messages": messages}, work, LOAD_CPU)

        # Patients who will answer during the mix: their orders first (closed loop, not measured).
        texting = int(args.texts_rate * args.mix_seconds)
        first = used
        paced(orders(texting), 400)
        patients = ["+1" + n for n in numbers[first : first + texting]]

        # 1. The mix: orders and SIU interleaved by their rates in one MLLP stream; texts beside.
        n_orders = int(args.orders_rate * args.mix_seconds)
        n_siu = int(args.siu_rate * args.mix_seconds)
        order_msgs, siu_msgs = orders(n_orders), [siu_message(i) for i in range(n_siu)]
        stream: list[str] = []
        for i in range(n_orders + n_siu):
            take_order = i * n_orders // (n_orders + n_siu) != (i + 1) * n_orders // (
                n_orders + n_siu
            )
            stream.append(order_msgs.pop() if take_order and order_msgs else siu_msgs.pop())
        texts_spec = {
            "url": daemon.url(),
            "public_url": PUBLIC_URL,
            "auth_token": token,
            "account_sid": account_sid,
            "to": TWILIO_FROM,
            "rate": args.texts_rate,
            "messages": [(p, "YES") for p in patients],
        }
        mix_started = time.perf_counter()
        mllp_mix, texts = await asyncio.gather(
            asyncio.to_thread(paced, stream, args.orders_rate + args.siu_rate),
            asyncio.to_thread(loadgen, texts_spec, work),
        )
        mix_seconds = time.perf_counter() - mix_started

        # 2. The burst, with the daemon sampled every second.
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample(daemon.url("/metrics"), daemon.proc.pid, stop))
        burst = await asyncio.to_thread(paced, orders(int(100 * args.burst_seconds)), 100.0)
        stop.set()
        samples = await sampler
        return {
            "mix": mllp_mix,
            "texts": texts,
            "mix_seconds": mix_seconds,
            "burst": burst,
            "samples": samples,
        }
    finally:
        await _stack.stop(stack)


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return statistics.fmean(r.get(key, 0.0) for r in rows) if rows else 0.0


def burst_figures(r: dict[str, Any]) -> dict[str, float]:
    """The burst's first and last 10 s: RSS, oldest text waiting, per-second ACK p99."""
    samples, by_second = r["samples"], r["burst"]["p99_by_second_ms"]
    ten = max(1, min(10, len(samples) // 3))
    head, tail = samples[:ten], samples[-ten:]
    age = "radsched_sms_outbox_oldest_seconds"
    return {
        "rss0": _mean(head, "rss_mib"),
        "rss1": _mean(tail, "rss_mib"),
        "age0": _mean(head, age),
        "age1": _mean(tail, age),
        "lat0": statistics.fmean(by_second[:10]) if by_second else 0.0,
        "lat1": statistics.fmean(by_second[-10:]) if by_second else 0.0,
    }


def record_targets(r: dict[str, Any], args: argparse.Namespace) -> None:
    """The targets' figures for the summary (bench/_results.py)."""
    burst, f = r["burst"], burst_figures(r)
    _results.record(
        "16.6-p99",
        f"{burst['p99_ms']:.1f} ms ({burst['messages']} orders in {args.burst_seconds:g} s, "
        f"after a {args.mix_seconds:g} s mix)",
        burst["p99_ms"] / 1000,
    )
    _results.record(
        "16.6-rss", f"{f['rss0']:.1f} → {f['rss1']:.1f} MiB", f["rss1"] / max(f["rss0"], 1e-9)
    )
    # The allowance is render()'s rule: the last 10 s within twice the first (floors 2 s, 50 ms).
    _results.record(
        "16.6-queue",
        f"oldest text {f['age0']:.2f} → {f['age1']:.2f} s, ACK p99 {f['lat0']:.1f} → "
        f"{f['lat1']:.1f} ms",
        max(f["age1"] / max(2.0, 2 * f["age0"]), f["lat1"] / max(50.0, 2 * f["lat0"])),
    )


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    from bench.mllp.__main__ import machine

    mix, texts, burst = r["mix"], r["texts"], r["burst"]
    handled = mix["messages"] + texts["requests"]
    rate = handled / r["mix_seconds"]
    day_minutes = DAY_MESSAGES / rate / 60
    f = burst_figures(r)
    rss0, rss1, age0, age1 = f["rss0"], f["rss1"], f["age0"], f["age1"]
    lat0, lat1 = f["lat0"], f["lat1"]
    p99_ok = burst["p99_ms"] < 1000
    rss_ok = rss1 <= rss0 * 1.05
    queue_ok = age1 <= max(2.0, 2 * age0) and lat1 <= max(50.0, 2 * lat0)

    def codes(res: dict[str, Any], key: str = "codes") -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(res[key].items()))

    return "\n".join(
        [
            SECTION,
            "",
            "Reproduce: `.venv/bin/python -m bench.day` (options: `--mix-seconds`, "
            "`--orders-rate`, `--siu-rate`, `--texts-rate`, `--burst-seconds`, `--no-docs`).",
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; "
            f"1-minute load average {r['load'][0]:.1f} before and {r['load'][1]:.1f} after (the "
            "machine is shared with other work: compare within the run).",
            f"`radsched run` pinned to core {DAEMON_CPU}, load generators and the Twilio double to "
            f"core {LOAD_CPU}, embedded PostgreSQL unpinned. Open loop: each message is due at a "
            "fixed time and its latency counts from then, so queueing shows.",
            "",
            f"**The day's mix**, {args.mix_seconds:g} s: orders at {args.orders_rate:g}/s and "
            f"relayed SIU^S12 at {args.siu_rate:g}/s interleaved on 8 MLLP connections, consent "
            f"answers (YES, then the RIS location query and the menu text) at {args.texts_rate:g}/s "
            "as signed webhooks.",
            "",
            "| stream | messages | achieved/s | p50 ms | p99 ms | max ms | answers |",
            "|---|---|---|---|---|---|---|",
            f"| MLLP orders + SIU | {mix['messages']} | {mix['per_second']:.0f} | "
            f"{mix['p50_ms']:.1f} | {mix['p99_ms']:.1f} | {mix['max_ms']:.1f} | {codes(mix)} |",
            f"| texts (webhooks) | {texts['requests']} | {texts['per_second']:.0f} | "
            f"{texts['p50_ms']:.1f} | {texts['p99_ms']:.1f} | {texts['max_ms']:.1f} | "
            f"{codes(texts, 'statuses')} |",
            "",
            f"{handled:,} messages in {r['mix_seconds']:.0f} s ({rate:,.0f}/s): a day's "
            f"{DAY_MESSAGES:,} at this rate would take {day_minutes:.0f} minutes, i.e. the mix ran "
            f"{86400 / (day_minutes * 60):.0f}x faster than a large department's day on average; "
            f"this run covered {handled / DAY_MESSAGES:.1%} of one.",
            "",
            f"**The burst**: 100 orders/s for {args.burst_seconds:g} s over 8 connections: "
            f"{burst['messages']} orders ({codes(burst)}), achieved {burst['per_second']:.0f}/s, "
            f"ACK p50 {burst['p50_ms']:.1f} ms, p99 {burst['p99_ms']:.1f} ms, max "
            f"{burst['max_ms']:.1f} ms (target p99 < 1 s: {'met' if p99_ok else 'NOT met'}).",
            f"Per-second ACK p99, first 10 s vs last 10 s: {lat0:.1f} / {lat1:.1f} ms; daemon "
            f"RSS {rss0:.1f} / {rss1:.1f} MiB (target: no growth > 5%: "
            f"{'met' if rss_ok else 'NOT met'}); oldest text waiting in the SMS outbox "
            f"{age0:.2f} / {age1:.2f} s (target: no queue-latency growth: "
            f"{'met' if queue_ok else 'NOT met'}).",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.day")
    parser.add_argument("--mix-seconds", type=float, default=60.0)
    parser.add_argument("--orders-rate", type=float, default=120.0)
    parser.add_argument("--siu-rate", type=float, default=120.0)
    parser.add_argument("--texts-rate", type=float, default=60.0)
    parser.add_argument("--burst-seconds", type=float, default=60.0)
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs alone")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores (daemon and load generators are pinned apart)")
    work = Path(tempfile.mkdtemp(prefix="radsched-bench-day-"))
    work.chmod(0o711)  # the embedded server may run as another user under root
    try:
        load_before = os.getloadavg()[0]
        result = asyncio.run(bench(args, work))
        result["load"] = (load_before, os.getloadavg()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1), file=sys.stderr
    )
    record_targets(result, args)
    _results.save("day")
    text = render(result, args)
    print(text)
    if not args.no_docs:
        _docs.write_section(SECTION, text)
        print("written to docs/performance.md", file=sys.stderr)


if __name__ == "__main__":
    main()
