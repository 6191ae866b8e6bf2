"""One daemon against two on the same ports (``SO_REUSEPORT``): ``.venv/bin/python -m bench.twoproc
[--seconds S] [--connections N] [--clients M] [--pairs P] [--no-docs]`` (issue 16 item 4).

Real parts only: an embedded PostgreSQL, the Twilio double, one simulated RIS (``radsched sim-ris``)
and ``radsched run`` with ``RADSCHED_REUSE_PORT=true``. Rounds in one run, each measuring orders
over N MLLP connections (durable intake: an ACK counts only as AA with MSA-2 = the order's MSH-10)
and then slot queries over M HTTP keep-alive clients (``GET /api/ris/available-slots``, 200),
alternating between

- ``one``: daemon A alone, and
- ``two``: daemon B started on A's ``MLLP_LISTEN`` and ``HTTP_LISTEN`` (same database, same keys,
  its own ``DATA_DIR``), both serving; B is stopped again after the round,

``one``, then P times ``two``, ``one`` (so each ``two`` has a ``one`` on each side and drift of the
shared machine shows). Ratio = the mean rate of the ``two`` rounds ÷ that of the ``one`` rounds. Each load generator (``bench/twoproc/load.py``,
its own process) opens its connections first and counts per local port; the kernel's choice of
process for each connection is read from /proc (``bench/twoproc/share.py``). CPU of every party (the
daemons, PostgreSQL's processes, the load generator, the Twilio double, the RIS) and of the whole
machine is read from /proc over each measurement. Nothing is pinned: on two cores there is no core
to give each party, and a second daemon is only worth what the scheduler can give it.

Writes the ``## Two processes on one host`` section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import _docs, _results, _stack
from bench.gateway.__main__ import API_KEY, PAIRS, _get, machine, weekdays
from bench.intake.__main__ import cpu_seconds, phones
from bench.twoproc import share
from bench.webhooks.__main__ import start_double, wait_outbox_empty

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "performance.md"
SECTION = "## Two processes on one host (`SO_REUSEPORT`)"
#: Orders offered per second of a round: well above what two daemons take on this machine.
ORDERS_PER_SECOND = 2500
PHONES = 100_000


class Parties:
    """The processes whose CPU is read over each measurement."""

    def __init__(self, postmaster: int, double: int, ris: int) -> None:
        self.postmaster, self.double, self.ris = postmaster, double, ris
        self.daemons: dict[str, Any] = {}  # name -> tests.daemonproc.DaemonProcess

    def pids(self) -> dict[str, int]:
        return {name: d.proc.pid for name, d in self.daemons.items()}

    def snapshot(self) -> dict[str, float]:
        out = {f"daemon {n}": cpu_seconds(pid) for n, pid in self.pids().items()}
        out["PostgreSQL"] = share.tree_cpu_seconds(self.postmaster)
        out["Twilio double"] = cpu_seconds(self.double)
        out["RIS"] = cpu_seconds(self.ris)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out["this benchmark"] = usage.ru_utime + usage.ru_stime
        out |= {f"_{k}": float(v) for k, v in share.cpu_ticks().items()}
        out["_wall"] = time.perf_counter()
        return out


def cpu_use(before: dict[str, float], after: dict[str, float], load_cpu: float) -> dict[str, float]:
    """Cores each party used over the window (CPU s ÷ wall s), the load generator's from its own
    rusage; ``machine`` is every core's busy share × core count, of which ``irq`` went to
    interrupts and ``steal`` to the hypervisor; ``others`` is what none of these explains (other
    work on the machine)."""
    wall = after["_wall"] - before["_wall"]
    cores = os.cpu_count() or 1
    use = {k: (after[k] - before[k]) / wall for k in after if not k.startswith("_") and k in before}
    use["load generator"] = load_cpu / wall
    ticks = after["_total"] - before["_total"]
    for key in ("busy", "irq", "steal"):
        use[key] = (after[f"_{key}"] - before[f"_{key}"]) / ticks * cores
    use["machine"] = use.pop("busy")
    use["others"] = max(0.0, use["machine"] - sum(v for k, v in use.items() if k != "machine"))
    use["wall"] = wall
    return use


async def measure(parties: Parties, spec: dict[str, Any], work: Path, port: int) -> dict[str, Any]:
    """Run one load generator; read CPU around its load and who holds which connection during it."""
    path = work / f"load-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps(spec))
    errors = (work / f"{path.stem}.err").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.twoproc.load", str(path),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=errors,
    )  # fmt: skip
    errors.close()
    assert proc.stdout is not None
    if (await proc.stdout.readline()).strip() != b"START":
        await proc.wait()
        raise SystemExit(
            f"load generator failed:\n{(work / f'{path.stem}.err').read_text()[-3000:]}"
        )
    before = parties.snapshot()
    owner: dict[int, str] = {}
    rest = asyncio.create_task(proc.stdout.read())
    while not rest.done():
        owner.update(share.owners(parties.pids(), port))
        await asyncio.wait([rest], timeout=0.25)
    after = parties.snapshot()
    if await proc.wait() != 0:
        raise SystemExit(
            f"load generator failed:\n{(work / f'{path.stem}.err').read_text()[-3000:]}"
        )
    result: dict[str, Any] = json.loads(rest.result().decode().strip().splitlines()[-1])
    counts = {int(p): c for p, c in result.pop("ports").items()}
    result["spread"] = share.spread(counts, owner)
    result["cpu"] = cpu_use(before, after, result["cpu_s"])
    daemon_cpu = sum(v for k, v in result["cpu"].items() if k.startswith("daemon "))
    result["daemon_cpu_ms"] = daemon_cpu * result["cpu"]["wall"] * 1000 / max(1, result["requests"])
    for name in parties.daemons:
        served = result["spread"].get(name, {}).get("requests", 0)
        used = result["cpu"][f"daemon {name}"] * result["cpu"]["wall"]
        result["spread"].setdefault(name, {"connections": 0, "requests": 0})
        result["spread"][name]["cpu_ms"] = used * 1000 / served if served else 0.0
    return result


def start_ris() -> tuple[subprocess.Popen[bytes], str]:
    """``radsched sim-ris`` on a free port, and its MLLP address once it listens."""
    ris = subprocess.Popen(
        [sys.executable, "-m", "radsched", "sim-ris", "--listen", "127.0.0.1:0",
         "--control", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert ris.stdout is not None
    fields = dict(item.split("=", 1) for item in ris.stdout.readline().decode().split()[2:])
    return ris, fields["mllp"]


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from radsched.storage import embedded
    from tests.daemonproc import DaemonProcess

    os.sched_setaffinity(0, range(os.cpu_count() or 1))  # nothing pinned; children inherit
    pg = await embedded.start(work / "pg")
    admin = await asyncpg.connect(pg.dsn("postgres"))
    await admin.execute('CREATE DATABASE "bench"')
    await admin.close()
    dsn = pg.dsn("bench")
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    account_sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    parties: Parties | None = None
    started: list[subprocess.Popen[Any]] = []
    try:
        double, double_url = start_double(account_sid, token)
        started.append(double)
        ris, ris_addr = start_ris()
        started.append(ris)
        env = _stack.daemon_env(dsn, account_sid, token, double_url, secrets.token_hex(32)) | {
            "RADSCHED_REUSE_PORT": "true",
            "RADSCHED_API_KEYS": API_KEY,
            "RADSCHED_RIS_ADDR": ris_addr,
            # The per-key abuse limit (20/s by default) would measure the limiter.
            "RADSCHED_RATE_LIMIT_API_PER_S": "0",
        }
        parties = Parties(postmaster, double.pid, ris.pid)

        def start_daemon(name: str, extra: dict[str, str]) -> Any:
            data_dir = work / f"data-{name}"
            data_dir.mkdir(mode=0o711, exist_ok=True)  # B's again: its lock went with it
            daemon = DaemonProcess(data_dir, env=env | extra).start()
            assert parties is not None
            parties.daemons[name] = daemon
            return daemon

        a = start_daemon("A", {})
        (host, mllp_port), (_, http_port) = a.addresses["mllp"], a.addresses["http"]
        numbers = phones(PHONES)
        used = 0
        per_round = min(
            int(args.seconds * ORDERS_PER_SECOND),
            (PHONES - (args.pairs + 1) * args.warm_orders) // (2 * args.pairs + 1),
        )

        def orders(count: int) -> list[list[str]]:
            nonlocal used
            batch = [[f"O{i:07d}", f"M{i:07d}", numbers[i]] for i in range(used, used + count)]
            used += count
            return batch

        days = weekdays(datetime.now(UTC).date(), 20)
        slot_requests = [
            _get(host, http_port, f"/api/ris/available-slots?location={loc}&modality={mod}&date={d}")
            .decode("latin-1")
            for d in days
            for loc, mod in PAIRS
        ]  # fmt: skip

        async def round_of(seconds: float, count: int) -> dict[str, Any]:
            assert parties is not None
            base = {"host": host, "seconds": seconds}
            ordered = await measure(
                parties,
                base | {"kind": "mllp", "port": mllp_port, "connections": args.connections,
                        "orders": orders(count)},
                work, mllp_port,
            )  # fmt: skip
            await wait_outbox_empty(dsn, 600)
            slots = await measure(
                parties,
                base | {"kind": "http", "port": http_port, "connections": args.clients,
                        "requests": slot_requests},
                work, http_port,
            )  # fmt: skip
            return {"orders": ordered, "slots": slots}

        rounds: dict[str, Any] = {}
        await round_of(2, args.warm_orders)  # warm-up: pools, location cache, imports
        rounds["one 1"] = await round_of(args.seconds, per_round)
        for n in range(1, args.pairs + 1):
            start_daemon("B", {"RADSCHED_MLLP_LISTEN": f"{host}:{mllp_port}",
                               "RADSCHED_HTTP_LISTEN": f"{host}:{http_port}"})  # fmt: skip
            await round_of(2, args.warm_orders)
            rounds[f"two {n}"] = await round_of(args.seconds, per_round)
            parties.daemons.pop("B").stop()
            rounds[f"one {n + 1}"] = await round_of(args.seconds, per_round)
        return {"rounds": rounds, "orders_per_round": per_round}
    finally:
        if parties is not None:
            for daemon in parties.daemons.values():
                daemon.stop()
        for proc in reversed(started):
            proc.terminate()
            proc.wait(30)
        await embedded.stop(pg)


# ---- the figures ---------------------------------------------------------------------------------


def rates(rounds: dict[str, Any], kind: str, processes: str) -> list[float]:
    """The rates of the ``one`` or the ``two`` rounds, in order."""
    return [r[kind]["per_second"] for name, r in rounds.items() if name.split()[0] == processes]


def ratio(rounds: dict[str, Any], kind: str) -> tuple[float, float, float]:
    """(mean rate of the one-process rounds, of the two-process rounds, two ÷ one)."""
    one, two = (statistics.fmean(rates(rounds, kind, p)) for p in ("one", "two"))
    return one, two, two / one if one else 0.0


def pair_ratios(rounds: dict[str, Any], kind: str) -> str:
    """Each two-process round's rate ÷ the mean of the one-process rounds before and after it."""
    one, two = rates(rounds, kind, "one"), rates(rounds, kind, "two")
    return ", ".join(f"{t / ((one[i] + one[i + 1]) / 2):.2f}×" for i, t in enumerate(two))


def split(res: dict[str, Any], key: str) -> str:
    """``A / B`` of one spread figure (connections, requests or cpu_ms)."""
    names = [n for n in ("A", "B") if n in res["spread"]]
    fmt = "{:.2f}" if key == "cpu_ms" else "{:,}"
    cells = " / ".join(fmt.format(res["spread"][n][key]) for n in names)
    lost = res["spread"].get("?", {}).get(key)
    return cells + (f" (+{lost} unseen)" if lost else "")


def kind_rows(rounds: dict[str, Any], kind: str) -> list[str]:
    rows = []
    for name, res in ((n, r[kind]) for n, r in rounds.items()):
        codes = ", ".join(f"{k}: {v:,}" for k, v in sorted(res["codes"].items()))
        rows.append(
            f"| {name} | {res['requests']:,} | {res['per_second']:,.0f} | {res['p50_ms']:.1f} | "
            f"{res['p99_ms']:.1f} | {codes} | {res['daemon_cpu_ms']:.2f} | "
            f"{split(res, 'connections')} | {split(res, 'requests')} | {split(res, 'cpu_ms')} |"
        )
    return rows


CPU_COLUMNS = ("daemon A", "daemon B", "PostgreSQL", "load generator", "Twilio double", "RIS",
               "this benchmark", "irq", "steal")  # fmt: skip


def cpu_rows(rounds: dict[str, Any]) -> list[str]:
    rows = []
    for name in rounds:
        for kind in ("orders", "slots"):
            use = rounds[name][kind]["cpu"]
            cells = " | ".join(f"{use[c]:.2f}" if c in use else "—" for c in CPU_COLUMNS)
            rows.append(
                f"| {name}, {kind} | {cells} | {use['others']:.2f} | **{use['machine']:.2f}** |"
            )
    return rows


def daemon_cores(res: dict[str, Any]) -> float:
    return sum(v for c, v in res["cpu"].items() if c.startswith("daemon "))


def reading(rounds: dict[str, Any], cores: int) -> list[str]:
    """What the CPU table says about the ratio, per kind, from this run's figures."""
    lines = [
        "Reading it. A daemon is one Python process and uses one core at most, so a second one "
        "adds throughput only with CPU the first could not use. On this machine the load "
        f"generator, PostgreSQL, the Twilio double and the RIS run on the same {cores} cores as "
        "the daemons, and so does other work (*others*):",
        "",
    ]
    change = {}
    for kind, per in (("orders", "order"), ("slots", "query")):

        def mean(
            processes: str, figure: Callable[[dict[str, Any]], float], kind: str = kind
        ) -> float:
            return statistics.fmean(
                figure(r[kind]) for name, r in rounds.items() if name.split()[0] == processes
            )

        daemons, machine_busy, others, cpu = (
            [mean(p, f) for p in ("one", "two")]
            for f in (
                daemon_cores,
                lambda x: float(x["cpu"]["machine"]),
                lambda x: float(x["cpu"]["others"]),
                lambda x: float(x["daemon_cpu_ms"]),
            )
        )
        lines.append(
            f"- {kind}: the daemons got {daemons[0]:.2f} cores in the `one` rounds and "
            f"{daemons[1]:.2f} in the `two` rounds (means), with the machine {machine_busy[0]:.2f} "
            f"/ {machine_busy[1]:.2f} of {cores} cores busy and other work taking {others[0]:.2f} / "
            f"{others[1]:.2f}; daemon CPU per {per} {cpu[0]:.2f} / {cpu[1]:.2f} ms."
        )
        change[kind] = cpu[1] / cpu[0] - 1 if cpu[0] else 0.0
    lines += [
        "",
        "Where the machine is already busy with one daemon, a second has nothing to take, and the "
        "ratio says more about the machine than about radsched. The rate follows the daemons' "
        "cores ÷ their CPU per message. With two processes each order cost the daemons "
        f"{change['orders']:+.0%} CPU and each slot query {change['slots']:+.0%} against one. "
        "Not measured here, but a likely part of the orders' difference: every text queued "
        "NOTIFYs each daemon on the database (radsched/storage/sms_outbox.py), so both SMS "
        "senders wake for it and race for the row. On a host with a free core for each daemon "
        "(PostgreSQL and the RIS elsewhere, the load arriving over the network) the gain would be "
        "about the cores the daemons get ÷ that CPU per message; this 2-core machine cannot show "
        "it. The kernel spreads connections by a hash of their "
        "addresses, not by load: an uneven split (the *connections A / B* column) leaves one "
        "daemon with more of the work, which is why spreading needs several connections from the "
        "RIS (docs/deploy.md).",
    ]
    return lines


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    rounds = r["rounds"]
    cores = os.cpu_count() or 1
    head = (
        "| round | {what} | {unit}/s | p50 ms | p99 ms | {codes} | daemon CPU ms/{per} "
        "| connections A / B | {what} A / B | CPU ms/{per} A / B |"
    )
    sep = "|---|---|---|---|---|---|---|---|---|---|"
    _, two_orders, orders_ratio = ratio(rounds, "orders")
    _, two_slots, slots_ratio = ratio(rounds, "slots")
    return "\n".join(
        [
            SECTION,
            "",
            "Reproduce: `.venv/bin/python -m bench.twoproc` (options: `--seconds`, `--connections`, "
            "`--clients`, `--pairs`, `--no-docs`).",
            f"Measured {r['measured_at']} on {machine()}, a machine "
            "**shared with other engineers' work**; 1-minute load average "
            f"{r['load'][0]:.1f} before and {r['load'][1]:.1f} after. {args.seconds:g} s per "
            f"measurement; {args.connections} MLLP connections, {args.clients} HTTP clients.",
            "",
            "Daemon A runs `radsched run` with `RADSCHED_REUSE_PORT=true`; for each `two` round "
            "daemon B is started with the same settings on A's `MLLP_LISTEN` and `HTTP_LISTEN`, the "
            "same database and keys, its own `DATA_DIR`, and stopped after it, so the rounds "
            "alternate and each `two` lies between two `one` rounds (the drift of the shared "
            "machine shows in the `one` rows). Both talk "
            "to one simulated RIS (`radsched sim-ris`) and send their texts to the Twilio double. "
            "Each measurement is a fresh load generator process (closed loop, one request in "
            "flight per connection) that opens all its connections before the clock starts, so in "
            "`two` the kernel spreads them by hash (`SO_REUSEPORT`); which process holds which "
            "connection is read from /proc (`bench/twoproc/share.py`). Orders: unique ORM^O01, "
            "durable intake (an AA means committed; counted only with MSA-2 = MSH-10); the SMS "
            "outbox is drained between measurements. Slot queries: 60 distinct "
            "(location, modality, date) queries in turn, no slot cache. Nothing is pinned to a "
            "core.",
            "",
            f"**Orders over {args.connections} MLLP connections**",
            "",
            head.format(what="orders", unit="orders", codes="ACKs", per="order"),
            sep,
            *kind_rows(rounds, "orders"),
            "",
            f"**Slot queries over {args.clients} HTTP clients**",
            "",
            head.format(what="queries", unit="queries", codes="statuses", per="query"),
            sep,
            *kind_rows(rounds, "slots"),
            "",
            f"**Where the {cores} cores went**, in cores (CPU seconds ÷ wall seconds of the "
            "measurement, from /proc: each daemon, PostgreSQL's postmaster and backends, the load "
            "generator's own rusage, the double, the RIS, this benchmark's own process (it reads "
            "/proc four times a second); *irq* is interrupt time (loopback TCP's softirq among "
            "it, charged to no process), *steal* time the hypervisor gave to others; *others* is "
            "the machine's busy time that none of these explains: other work on the machine; "
            f"*machine* is all busy time, at most {cores}).",
            "",
            "| round, load | " + " | ".join(CPU_COLUMNS) + " | others | machine |",
            "|---" * (len(CPU_COLUMNS) + 3) + "|",
            *cpu_rows(rounds),
            "",
            f"Two processes against one (mean rate of the `two` rounds ÷ that of the `one` rounds): "
            f"orders {two_orders:,.0f}/s = **{orders_ratio:.2f}×** (each `two` against the `one` "
            f"on either side: {pair_ratios(rounds, 'orders')}), slot queries {two_slots:,.0f}/s = "
            f"**{slots_ratio:.2f}×** ({pair_ratios(rounds, 'slots')}) (target > 1×: "
            f"{'met' if orders_ratio > 1 else 'NOT met'} / {'met' if slots_ratio > 1 else 'NOT met'}).",
            "",
            *reading(rounds, cores),
            "",
        ]
    )


def record_targets(r: dict[str, Any], args: argparse.Namespace) -> None:
    rounds = r["rounds"]
    for kind, target, unit in (
        ("orders", "16.4-orders", "orders/s"),
        ("slots", "16.4-slots", "queries/s"),
    ):
        one, two, x = ratio(rounds, kind)
        twos = [r[kind] for name, r in rounds.items() if name.startswith("two")]
        n = args.connections if kind == "orders" else args.clients
        _results.record(
            target,
            f"{two:,.0f} vs {one:,.0f} {unit} (means of {len(twos)} and {len(twos) + 1} rounds; "
            f"{n} connections, split {', '.join(split(t, 'connections') for t in twos)}; machine "
            f"{statistics.fmean(t['cpu']['machine'] for t in twos):.2f} of "
            f"{os.cpu_count()} cores busy)",
            x,
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.twoproc")
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--connections", type=int, default=16, help="MLLP connections")
    parser.add_argument("--clients", type=int, default=16, help="HTTP clients (slot queries)")
    parser.add_argument(
        "--pairs",
        type=int,
        default=2,
        help="two-process rounds (each between two one-process rounds)",
    )
    parser.add_argument("--warm-orders", type=int, default=500, help=argparse.SUPPRESS)
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs alone")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(
        prefix="radsched-bench-twoproc-", ignore_cleanup_errors=True
    ) as tmp:
        Path(tmp).chmod(0o711)  # the embedded server may run as another user under root
        result = asyncio.run(bench(args, Path(tmp)))
    result["load"] = (load_before, os.getloadavg()[0])
    result["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(result, indent=1), file=sys.stderr)
    record_targets(result, args)
    _results.save("twoproc")
    text = render(result, args)
    print(text)
    if not args.no_docs:
        _docs.write_section(SECTION, text, DOC)
        print(f"written to {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
