"""MLLP transport benchmark: ``.venv/bin/python -m bench.mllp [--seconds S] [--rounds N] [--no-docs]``.

1. Strict request/ACK throughput and latency. Each server runs in its own process pinned to core 0;
   the C load generator (bench/mllp/loadgen.c, built here with ``cc -O2``) runs pinned to core 1 and
   gives every frame its own control id, counting a reply good only when its MSA-2 echoes it.
   Servers (bench/mllp/servers.py): radsched's per-frame path before storage (``mllp`` +
   ``channels.parse`` + ``build_ack``), this package's ``mllp`` with an ACK built by hand, python-hl7's
   ``hl7.mllp`` (``create_ack()``), and a bare ``asyncio.Protocol`` building its ACK by hand (the
   ceiling), each on the default asyncio loop and on uvloop; and node's ``simple-hl7`` server
   (bench/node, installed there with ``npm install`` when missing). Rounds are interleaved so
   background load spreads evenly; the table shows the median round and the min-max spread of msgs/s.
2. Large frames 1 KiB .. 16 MiB through this package's server (time per frame, peak RSS growth of a
   fresh server process for the 16 MiB frame).

The result is printed as markdown and written into the ``## MLLP transport`` section of
docs/performance.md (other sections are left alone).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import _docs, _results
from bench.mllp.messages import ORM_O01

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "performance.md"
SECTION = "## MLLP transport"
SERVER_CPU, LOADGEN_CPU = 0, 1
NODE_DIR = ROOT / "bench" / "node"
KINDS = [
    ("radsched", "radsched: mllp + channels parse + build_ack"),
    ("mllp", "radsched mllp, ACK by hand"),
    ("node", "node simple-hl7 server"),
    ("hl7", "python-hl7 hl7.mllp + create_ack"),
    ("bare", "bare asyncio.Protocol, ACK by hand"),
]
#: node has its own event loop (libuv); it runs once per round, under this label.
NODE_LOOP = "libuv"


@dataclass
class Run:
    msgs_per_s: float
    p50_us: int
    p99_us: int
    max_us: int
    errors: int
    #: Server CPU time per message (user + system, all threads): the figure background load
    #: disturbs least, because it does not count time the server spent waiting for a core.
    cpu_us: float


def build_loadgen() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    exe = OUT / "loadgen"
    src = ROOT / "bench" / "mllp" / "loadgen.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["cc", "-O2", "-pthread", "-o", str(exe), str(src)], check=True)
    return exe


def ensure_node() -> bool:
    """simple-hl7 in bench/node/node_modules, installed with npm when missing; False without node."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        print("node/npm not found: skipping the simple-hl7 row", file=sys.stderr)
        return False
    if not (NODE_DIR / "node_modules" / "simple-hl7").is_dir():
        print("simple-hl7 missing: running npm install in bench/node", file=sys.stderr)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)
    return True


class ServerProcess:
    """A server subprocess pinned to SERVER_CPU; ``port`` is read from a file it writes."""

    def __init__(self, kind: str, uvloop: bool) -> None:
        self._dir = tempfile.TemporaryDirectory()
        port_file = Path(self._dir.name) / "port"
        if kind == "node":
            cmd = ["node", str(NODE_DIR / "server.js"), str(port_file)]
        else:
            cmd = [sys.executable, "-m", "bench.mllp.servers", kind, str(port_file)]
            cmd += ["--uvloop"] if uvloop else []
        self.proc = subprocess.Popen(cmd, cwd=ROOT)
        # Pinned before it has bound its port, i.e. before any measured work.
        os.sched_setaffinity(self.proc.pid, {SERVER_CPU})
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server {kind} did not start")
            time.sleep(0.05)  # polling a child process's file; there is no event to await
        self.port = int(port_file.read_text())

    def cpu_ns(self) -> int:
        total = 0
        for stat in Path(f"/proc/{self.proc.pid}/task").glob("*/schedstat"):
            total += int(stat.read_text().split()[0])
        return total

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._dir.cleanup()


def loadgen(exe: Path, server: ServerProcess, conns: int, seconds: float, msg_file: Path) -> Run:
    port = server.port
    cpu_before = server.cpu_ns()
    out = subprocess.run(
        [str(exe), "127.0.0.1", str(port), str(conns), str(seconds), str(msg_file), "1"],
        check=True,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {LOADGEN_CPU}),
    ).stdout
    cpu = server.cpu_ns() - cpu_before
    data = json.loads(out)
    return Run(
        data["msgs_per_s"],
        data["p50_us"],
        data["p99_us"],
        data["max_us"],
        data["errors"],
        cpu / 1000 / max(1, data["all_msgs"]),
    )


def throughput(
    seconds: float, rounds: int, kinds: list[str]
) -> dict[tuple[str, bool, int], list[Run]]:
    exe = build_loadgen()
    msg_file = OUT / "orm_o01.hl7"
    msg_file.write_bytes(ORM_O01)
    loops = [False]
    if _have_uvloop():
        loops.append(True)
    if "node" in kinds and not ensure_node():
        kinds = [k for k in kinds if k != "node"]
    results: dict[tuple[str, bool, int], list[Run]] = {}
    for r in range(rounds):
        for kind in kinds:
            for uv in [False] if kind == "node" else loops:
                server = ServerProcess(kind, uv)
                try:
                    for conns in (1, 8):
                        run = loadgen(exe, server, conns, seconds, msg_file)
                        results.setdefault((kind, uv, conns), []).append(run)
                        print(
                            f"round {r + 1} {kind:8} {_loop(kind, uv):7} "
                            f"{conns} conn: {run.msgs_per_s:9,.0f} msg/s  p50 {run.p50_us} us  "
                            f"p99 {run.p99_us} us  cpu {run.cpu_us:.1f} us/msg",
                            file=sys.stderr,
                        )
                finally:
                    server.stop()
    return results


def _loop(kind: str, uv: bool) -> str:
    return NODE_LOOP if kind == "node" else "uvloop" if uv else "asyncio"


def _have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _big_message(size: int) -> bytes:
    head = b"MSH|^~\\&|RIS|RADCO|SMS|VENDOR|20250114101500||ORU^R01|BIG1|P|2.5.1\rOBX|1|ED|PDF||"
    return head + b"A" * max(0, size - len(head) - 1) + b"\r"


def _round_trip(sock: socket.socket, frame: bytes) -> None:
    sock.sendall(frame)
    buf = bytearray()
    while not buf.endswith(b"\x1c\r"):
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("server closed the connection")
        buf += chunk


#: (payload size, wall seconds per round trip, server CPU seconds per frame)
Timing = tuple[int, float, float]


def large_frames() -> tuple[list[Timing], int, int]:
    """Cost per frame for 1 KiB .. 16 MiB, then RSS growth of a fresh server for one 16 MiB frame."""
    sizes = [1 << k for k in range(10, 25, 2)]  # 1 KiB, 4 KiB, ... 16 MiB
    timings = []
    server = ServerProcess("mllp", False)
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            for size in sizes:
                frame = b"\x0b" + _big_message(size) + b"\x1c\r"
                repeat = max(10, min(200, (256 << 20) // size))
                _round_trip(sock, frame)  # warm up
                start, cpu = time.perf_counter(), server.cpu_ns()
                for _ in range(repeat):
                    _round_trip(sock, frame)
                wall = (time.perf_counter() - start) / repeat
                timings.append((size, wall, (server.cpu_ns() - cpu) / 1e9 / repeat))
    finally:
        server.stop()
    server = ServerProcess("mllp", False)
    try:
        frame = b"\x0b" + _big_message(16 << 20) + b"\x1c\r"
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            _round_trip(sock, b"\x0b" + ORM_O01 + b"\x1c\r")
            before = server.peak_rss_kib()
            _round_trip(sock, frame)
            after = server.peak_rss_kib()
    finally:
        server.stop()
    return timings, before, after


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        import uvloop

        uv = f"uvloop {uvloop.__version__}"
    except ImportError:
        uv = "no uvloop"
    return (
        f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python "
        f"{platform.python_version()}, {uv}, {shutil.which('cc') and _cc_version()}"
    )


def _cc_version() -> str:
    out = subprocess.run(["cc", "--version"], check=False, capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "cc"


def render(
    results: dict[tuple[str, bool, int], list[Run]],
    large: tuple[list[Timing], int, int] | None,
    seconds: float,
    rounds: int,
    loads: tuple[str, str],
) -> str:
    lines = [
        SECTION,
        "",
        "Reproduce: `.venv/bin/python -m bench.mllp` (options: `--seconds`, `--rounds`, `--no-docs`).",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
        f"Server pinned to core {SERVER_CPU}, C load generator to core {LOADGEN_CPU}; strict "
        f"request/ACK (one frame in flight per connection), {len(ORM_O01)}-byte ORM^O01, "
        f"{seconds:g} s per run after 1 s warm-up, {rounds} interleaved rounds; the table shows the "
        "median round (msgs/s range over all rounds in brackets). The ratios to the bare protocol "
        "are medians of per-round pairs. Server CPU per message (from /proc schedstat, warm-up "
        "included) is the figure least disturbed by other load: it does not count time spent "
        "waiting for a core.",
        f"Load average before/after: {loads[0]} / {loads[1]}. The machine is shared with other test "
        "runs, so absolute figures are noisy; compare rows measured in the same round.",
        "",
        "| server | loop | conns | msgs/s (min-max) | p50 | p99 | max | server CPU/msg | "
        "msgs/s vs bare | CPU/msg vs bare |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, label in KINDS:
        for uv in (False, True):
            for conns in (1, 8):
                runs = results.get((kind, uv, conns))
                if not runs:
                    continue
                med = sorted(runs, key=lambda r: r.msgs_per_s)[len(runs) // 2]
                bare = results.get(("bare", uv, conns))
                ratio = cpu_ratio = ""
                if bare and kind not in ("bare", "node"):
                    ratio = f"{_paired(runs, bare):.0%}"
                    cpu_ratio = f"{_paired_cpu(runs, bare):.0%}"
                errs = (
                    f" ({sum(r.errors for r in runs)} bad ACKs)"
                    if any(r.errors for r in runs)
                    else ""
                )
                lines.append(
                    f"| {label}{errs} | {_loop(kind, uv)} | {conns} | "
                    f"{med.msgs_per_s:,.0f} ({min(r.msgs_per_s for r in runs):,.0f}-"
                    f"{max(r.msgs_per_s for r in runs):,.0f}) | {_ms(med.p50_us)} | "
                    f"{_ms(med.p99_us)} | {_ms(med.max_us)} | {_median_cpu(runs):.1f} us | "
                    f"{ratio} | {cpu_ratio} |"
                )
    lines += ["", *_targets(results)]
    lines += [
        "",
        "Reading the numbers: every server answers each frame with an ACK whose MSA-2 is that "
        "frame's MSH-10, and the load generator checks it. The *radsched* row is the daemon's "
        "per-frame path before storage: the `mllp` server, `channels.parse` of the ORM and "
        "`channels.ack.build_ack`. *ACK by hand* slices MSH and joins bytes (what an ACK costs at "
        "the least), so the `mllp` row is the transport's own cost and the bare protocol (answering "
        "inside `data_received`: no size limit, no resync, no ordering guarantee, no async handler) "
        "the ceiling. node's `simple-hl7` parses the message and builds its ACK with its own "
        "`Message` classes (its documented `app.use(...)` / `res.end()` server); python-hl7 parses "
        "with `hl7.parse` and answers `create_ack()`.",
    ]
    if large is None:
        return "\n".join(lines)
    timings, before, after = large
    lines += [
        "",
        "Large frames through this package's server (asyncio loop, one connection, a Python "
        "client sending the frame and waiting for the ACK). Wall time is the whole round trip; "
        "server CPU is what the server process spent per frame (reading, framing, the ACK):",
        "",
        "| payload | wall per frame | server CPU per frame | server CPU per MiB |",
        "|---|---|---|---|",
    ]
    for size, wall, cpu in timings:
        lines.append(
            f"| {_size(size)} | {wall * 1000:.3f} ms | {cpu * 1000:.3f} ms | "
            f"{cpu / size * (1 << 20) * 1000:.2f} ms |"
        )
    per_mib = {size: cpu / size for size, _, cpu in timings}
    lines += [
        "",
        f"Small frames are dominated by the fixed per-message cost. From 1 MiB to 16 MiB the server "
        f"CPU per MiB changes by {per_mib[16 << 20] / per_mib[1 << 20]:.2f}x (linear cost keeps it "
        "near 1x; a scanner that re-reads its buffer on every read would make it about 16x).",
    ]
    growth = (after - before) * 1024
    lines += [
        "",
        f"16 MiB frame, fresh server process: peak RSS {before / 1024:.1f} MiB before, "
        f"{after / 1024:.1f} MiB after, growth {growth / (1 << 20):.1f} MiB = "
        f"{growth / (16 << 20):.2f}x the frame (target < 3x).",
        "",
    ]
    return "\n".join(lines)


def _median(runs: list[Run]) -> float:
    return statistics.median(r.msgs_per_s for r in runs)


def _paired(ours: list[Run], peer: list[Run]) -> float:
    """Median of per-round msgs/s ratios: both ran minutes apart at most, under similar load."""
    return statistics.median(a.msgs_per_s / b.msgs_per_s for a, b in zip(ours, peer, strict=True))


def _paired_cpu(ours: list[Run], peer: list[Run]) -> float:
    """Median of per-round CPU-per-message ratios, peer / ours (above 100%: ours is cheaper)."""
    return statistics.median(b.cpu_us / a.cpu_us for a, b in zip(ours, peer, strict=True))


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _targets(results: dict[tuple[str, bool, int], list[Run]]) -> list[str]:
    """The issues' targets, checked against this run (ratios paired by round)."""
    out = ["Against the targets (ratios of msgs/s, paired by round):", ""]
    for uv in (False, True):
        loop = "uvloop" if uv else "asyncio"
        for conns in (1, 8):
            ours = results.get(("radsched", uv, conns))
            node = results.get(("node", False, conns))
            hl7 = results.get(("hl7", uv, conns))
            if ours and node:
                r = _paired(ours, node)
                out.append(
                    f"- radsched vs node simple-hl7, {loop}, {conns} conn: {r:.2f}x "
                    f"(target > 1x, issue 16: {_met(r > 1)}); CPU/msg "
                    f"{_median_cpu(ours):.1f} us vs {_median_cpu(node):.1f} us"
                )
            if ours and hl7:
                r = _paired(ours, hl7)
                out.append(
                    f"- radsched vs python-hl7, {loop}, {conns} conn: {r:.1f}x "
                    f"(target >= 8x, issue 16: {_met(r >= 8)})"
                )
    for uv in (False, True):
        loop = "uvloop" if uv else "asyncio"
        for conns in (1, 8):
            transport, bare = results.get(("mllp", uv, conns)), results.get(("bare", uv, conns))
            if not transport or not bare:
                continue
            tput, cpu = _paired(transport, bare), _paired_cpu(transport, bare)
            p99 = statistics.median(r.p99_us for r in transport) / 1000
            line = (
                f"- mllp transport vs bare, {loop}, {conns} conn: msgs/s {tput:.0%}, CPU "
                f"efficiency {cpu:.0%} (target >= 90%, issue 3: {_met(min(tput, cpu) >= 0.9)})"
            )
            if conns == 1:
                line += f"; p99 {p99:.2f} ms (target < 1 ms: {_met(p99 < 1)})"
            out.append(line)
    return out


def record_targets(
    results: dict[tuple[str, bool, int], list[Run]],
    large: tuple[list[Timing], int, int] | None,
    costs: tuple[float, float] | None = None,
) -> None:
    """The targets' figures for the summary (bench/_results.py), on the daemon's loop (uvloop
    when installed), the other loop beside in the text."""
    uv = _have_uvloop()
    loops = [uv, not uv] if uv else [False]

    def pair(ours: str, peer: str, conns: int) -> list[tuple[str, float]]:
        """(loop, paired msgs/s ratio) on the daemon's loop, then the other; [] without the first."""
        out = []
        for loop in loops:
            a = results.get((ours, loop, conns))
            b = results.get((peer, False if peer == "node" else loop, conns))
            if a and b:
                out.append((_loop(ours, loop), _paired(a, b)))
            elif loop == uv:
                return []
        return out

    def also(found: list[tuple[str, float]], fmt: str) -> str:
        return "".join(f" ({loop} {format(r, fmt)}×)" for loop, r in found[1:])

    for conns in (1, 8):
        node = pair("radsched", "node", conns)
        if node and (theirs := results.get(("node", False, conns))):
            ours = results[("radsched", uv, conns)]
            _results.record(
                f"16.1-node-{conns}",
                f"{node[0][0]} {_median(ours):,.0f} vs node {_median(theirs):,.0f} msgs/s"
                + also(node, ".2f"),
                node[0][1],
            )
        for ours, target in (("radsched", "16.1"), ("mllp", "3")):
            hl7 = pair(ours, "hl7", conns)
            if hl7:
                med = _median(results[(ours, uv, conns)])
                peer = _median(results[("hl7", uv, conns)])
                bound = ""
                bare_runs = results.get(("bare", uv, conns))
                if target == "16.1" and conns == 1 and costs is not None and bare_runs:
                    # The ratio follows python-hl7's own latency, which varies from run to run.
                    rate, ratio = at_most(bare_runs, results[("hl7", uv, conns)], costs)
                    bound = (
                        f"; at most {ratio:.1f}× on this transport: the bare protocol's "
                        f"{_median(bare_runs):,.0f} msgs/s with parse + `build_ack` "
                        f"({costs[0]:.1f} µs) for its hand-made ACK ({costs[1]:.1f} µs) "
                        f"= {rate:,.0f} msgs/s"
                    )
                _results.record(
                    f"{target}-hl7-{conns}",
                    f"{hl7[0][0]} {med:,.0f} vs {peer:,.0f} msgs/s" + also(hl7, ".1f") + bound,
                    hl7[0][1],
                )
        bare = [
            (loop, _paired(a, b), _paired_cpu(a, b))
            for loop in loops
            if (a := results.get(("mllp", loop, conns)))
            and (b := results.get(("bare", loop, conns)))
        ]
        if bare and bare[0][0] == uv:
            _results.record(
                f"3-bare-{conns}",
                "; ".join(
                    f"{_loop('mllp', loop)} msgs/s {t:.0%}, CPU efficiency {c:.0%}"
                    for loop, t, c in bare
                ),
                min(bare[0][1], bare[0][2]),
            )
        if uv and (runs := results.get(("mllp", True, conns))):
            floor = 20_000 if conns == 1 else 50_000
            _results.record(
                f"3-uvloop-{conns}", f"{_median(runs):,.0f} msgs/s", _median(runs) / floor
            )
    if runs := results.get(("mllp", uv, 1)):
        p99 = statistics.median(r.p99_us for r in runs) / 1000
        _results.record("3-p99", f"{p99:.2f} ms ({_loop('mllp', uv)})", p99 / 1)
    if large is not None:
        timings, before, after = large
        growth = (after - before) * 1024 / (16 << 20)
        _results.record("3-rss", f"{(after - before) / 1024:.1f} MiB for 16 MiB", growth)
        per_mib = {size: cpu / size for size, _, cpu in timings}
        r = per_mib[16 << 20] / per_mib[1 << 20]
        _results.record(
            "3-linear",
            f"{per_mib[1 << 20] * (1 << 20) * 1000:.2f} → {per_mib[16 << 20] * (1 << 20) * 1000:.2f} ms/MiB",
            r,
        )


def handler_costs() -> tuple[float, float]:
    """µs per call, best of 5 x 2000 in this process: ``build_ack(parse(ORM))`` (the radsched row's
    handler) and ``ack_by_hand(ORM)`` (the bare row's)."""
    from bench.mllp.servers import ack_by_hand
    from channels import parse
    from channels.ack import build_ack
    from channels.model import AckCode

    def best(call: Callable[[], object]) -> float:
        return min(timeit.repeat(call, number=2000, repeat=5)) / 2000 * 1e6  # as bench.ack times

    return best(lambda: build_ack(parse(ORM_O01), AckCode.AA)), best(lambda: ack_by_hand(ORM_O01))


def at_most(bare: list[Run], peer: list[Run], costs: tuple[float, float]) -> tuple[float, float]:
    """The most any server could reach on one connection, as msgs/s and as a ratio to ``peer``.

    With one message in flight, the server's work is on every round trip's path: the bare
    protocol's round trip with our handler's work in place of its hand-made ACK is the fastest a
    server that parses and builds a real ACK can answer, on this transport and load generator.
    """
    ours_us, hand_us = costs
    rate = 1e6 / (1e6 / _median(bare) + ours_us - hand_us)
    return rate, rate / _median(peer)


def _median_cpu(runs: list[Run]) -> float:
    return statistics.median(r.cpu_us for r in runs)


def _ms(us: int) -> str:
    return f"{us / 1000:.2f} ms"


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def write_section(text: str) -> None:
    _docs.write_section(SECTION, text, DOC)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mllp")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs alone")
    parser.add_argument(
        "--servers", default=",".join(k for k, _ in KINDS), help="comma-separated subset"
    )
    parser.add_argument("--no-large", action="store_true", help="skip the large-frame runs")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores (server and load generator are pinned apart)")
    load_before = f"{os.getloadavg()[0]:.2f}"
    results = throughput(args.seconds, args.rounds, args.servers.split(","))
    large = None if args.no_large else large_frames()
    load_after = f"{os.getloadavg()[0]:.2f}"
    costs = handler_costs() if "radsched" in args.servers.split(",") else None
    record_targets(results, large, costs)
    _results.save("mllp")
    text = render(results, large, args.seconds, args.rounds, (load_before, load_after))
    print(text)
    if not args.no_docs:
        write_section(text)
        print(f"written to {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
