"""``radsched replay PATH... --to HOST:PORT``: send HL7 fixture files over MLLP and check the ACKs.

Input: files (or directories, read recursively for ``*.hl7``, in name order) holding one message, several
separated by blank lines, or MLLP frames. Segment separators ``\\n``, ``\\r\\n`` or ``\\r`` are normalised to
``\\r`` (a message that has CRs keeps its lone LFs as data, reference/hl7.md 4.3). Each message is sent on
one persistent connection, one at a time; the answer's MSA-1 and the latency are printed. An HL7
batch file (FHS/BHS) is sent as one frame and its response batch summarised, or with ``--batches split``
each of its messages alone. With
``--expect CODE`` the exit status is 1 when any answer differs (or none came); the summary gives counts
by code and p50/p99 latency. ``--rate N`` paces to N messages per second. ``--tls`` verifies the peer with
the system trust store (``--ca FILE`` instead), ``--cert FILE --key FILE`` adds a client certificate.

Only control ids, codes and timings are printed, never message content.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

DESCRIPTION = "send HL7 fixture files over MLLP and check each ACK"
PROGRESS_EVERY_S = 5.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("replay", help=DESCRIPTION, description=DESCRIPTION)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or directories")
    p.add_argument("--to", required=True, metavar="HOST:PORT", help="MLLP peer")
    p.add_argument("--rate", type=float, metavar="N", help="at most N messages per second")
    p.add_argument("--expect", metavar="CODE", help="exit 1 unless every answer has MSA-1 = CODE")
    p.add_argument("--timeout", type=float, default=15.0, metavar="S", help="reply timeout")
    p.add_argument("--tls", action="store_true", help="TLS, verified with the system trust store")
    p.add_argument("--ca", type=Path, metavar="FILE", help="CA certificates to verify the peer")
    p.add_argument("--cert", type=Path, metavar="FILE", help="client certificate (mutual TLS)")
    p.add_argument("--key", type=Path, metavar="FILE", help="client private key (mutual TLS)")
    p.add_argument(
        "--batches",
        choices=("whole", "split"),
        default="whole",
        help="HL7 batch files (FHS/BHS): send as one batch frame (default) or each message alone",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="summary only")
    p.set_defaults(func=cmd_replay)


# ---- reading fixtures ------------------------------------------------------------------------------


def normalise(message: bytes) -> bytes:
    """Segments end in CR: LF-only files are converted, CRLF becomes CR, a final CR is added."""
    text = message.strip(b"\r\n\t \x00")
    text = text.replace(b"\n", b"\r") if b"\r" not in text else text.replace(b"\r\n", b"\r")
    return text + b"\r"


def split_payloads(data: bytes, *, batches: str = "whole") -> list[bytes]:
    """Messages in one file: MLLP frames when it has start blocks; an HL7 batch file (FHS/BHS) whole
    or, with ``batches="split"``, its messages; else blank-line separated."""
    if data.lstrip(b"\xef\xbb\xbf\r\n\t ")[:3] in (b"FHS", b"BHS"):
        from channels.batch import parse_batch

        if batches == "whole":
            return [normalise(data.lstrip(b"\xef\xbb\xbf"))]
        return [normalise(m) for m in parse_batch(data).messages]
    if b"\x0b" in data:
        from mllp import Frame, FrameDecoder

        decoder = FrameDecoder(lenient=True)
        events = [*decoder.feed(data), *decoder.feed(b"")]  # b"" = end of input
        return [normalise(e.payload) for e in events if isinstance(e, Frame)]
    from channels.batch import split_messages

    return [normalise(m) for m in split_messages(data)]


def iter_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.hl7") if p.is_file())
        else:
            yield path


def load(paths: list[Path], *, batches: str = "whole") -> list[tuple[str, bytes]]:
    """``(label, payload)`` for every message; the label is ``file`` or ``file#n``."""
    out: list[tuple[str, bytes]] = []
    for path in iter_files(paths):
        messages = split_payloads(path.read_bytes(), batches=batches)
        for i, payload in enumerate(messages, start=1):
            out.append((str(path) if len(messages) == 1 else f"{path}#{i}", payload))
    return out


# ---- sending ---------------------------------------------------------------------------------------


@dataclass
class Summary:
    codes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    mismatches: int = 0

    @property
    def sent(self) -> int:
        return sum(self.codes.values())

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def render(self) -> str:
        codes = " ".join(f"{code}={n}" for code, n in sorted(self.codes.items()))
        return (
            f"sent {self.sent}: {codes or 'nothing'}; latency p50 {self.percentile(0.5) * 1000:.2f} ms"
            f" p99 {self.percentile(0.99) * 1000:.2f} ms"
        )


def _control_id(payload: bytes) -> str:
    """MSH-10; for a batch, BHS-11 (else FHS-11)."""
    from channels import sniff

    first = payload.split(b"\r", 1)[0]
    if first[:3] in (b"FHS", b"BHS"):
        lines = payload.split(b"\r")
        header = next((line for line in lines if line.startswith(b"BHS")), first)
        fields = header.split(header[3:4])
        return fields[10].decode("ascii", "replace") if len(fields) > 10 else ""
    return sniff.control_id(payload).decode("ascii", "replace") or "?"


def _answer_code(reply: bytes, control_id: str) -> tuple[str, str]:
    """(MSA-1 or a word for what went wrong, the reason text for a NAK)."""
    from channels import ChannelError, parse
    from channels.ack import read_ack
    from channels.batch import is_batch, parse_batch

    if is_batch(reply):
        try:
            answers = parse_batch(reply, allow_empty=True).messages
            codes = [read_ack(parse(m)).code.value for m in answers]
        except ChannelError:
            return "unreadable", ""
        # A response batch: its worst code (an empty one means every message was accepted).
        worst = next((c for c in ("AR", "CR", "AE", "CE") if c in codes), "AA")
        return worst, f"response batch of {len(codes)} ACK(s): {' '.join(codes)}"
    try:
        ack = read_ack(parse(reply))
    except ChannelError:
        return "unreadable", ""
    if ack.control_id != control_id:
        return "wrong-id", f"acknowledges {ack.control_id!r}"
    return ack.code.value, ack.text


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not (args.tls or args.ca or args.cert):
        return None
    context = ssl.create_default_context(cafile=str(args.ca) if args.ca else None)
    if args.cert or args.key:
        if not (args.cert and args.key):
            raise ValueError("--cert and --key go together")
        context.load_cert_chain(args.cert, args.key)
    return context


async def replay(
    messages: list[tuple[str, bytes]],
    host: str,
    port: int,
    *,
    expect: str | None,
    rate: float | None,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
    out: TextIO,
    quiet: bool = False,
) -> Summary:
    import mllp

    summary = Summary()
    client = mllp.Client(host, port, ssl=ssl_context, server_hostname=host if ssl_context else None)
    interval = 1.0 / rate if rate else 0.0
    loop = asyncio.get_running_loop()
    began = last_progress = loop.time()
    try:
        for index, (label, payload) in enumerate(messages):
            if interval:
                await asyncio.sleep(max(0.0, began + index * interval - loop.time()))
            cid = _control_id(payload)
            started = time.perf_counter()
            reason = ""
            try:
                reply = await client.request(payload, timeout=timeout)
                code, reason = _answer_code(reply, cid)
            except mllp.ReplyTimeout:
                code = "timeout"
            except mllp.MLLPError as exc:
                code, reason = "error", str(exc)
            elapsed = time.perf_counter() - started
            summary.codes[code] += 1
            if code not in ("timeout", "error"):
                summary.latencies.append(elapsed)
            if expect is not None and code != expect:
                summary.mismatches += 1
            if not quiet:
                line = f"{label} {cid} {code} {elapsed * 1000:.2f} ms"
                print(line + (f" ({reason})" if reason and code != "AA" else ""), file=out)
            now = loop.time()
            if now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                print(f"... {index + 1}/{len(messages)} sent", file=sys.stderr, flush=True)
    finally:
        await client.aclose()
    return summary


def cmd_replay(args: argparse.Namespace) -> int:
    from radsched.settings import HostPort

    try:
        target = HostPort.parse(args.to, setting="--to")
        context = tls_context(args)
        messages = load(args.paths, batches=args.batches)
    except (ValueError, OSError, ssl.SSLError) as exc:
        print(f"radsched replay: {exc}", file=sys.stderr)
        return 2
    if not messages:
        print("radsched replay: no messages in the given paths", file=sys.stderr)
        return 2
    summary = asyncio.run(
        replay(
            messages,
            target.host,
            target.port,
            expect=args.expect.upper() if args.expect else None,
            rate=args.rate,
            timeout=args.timeout,
            ssl_context=context,
            out=sys.stdout,
            quiet=args.quiet,
        )
    )
    print(summary.render())
    failed = summary.codes["timeout"] + summary.codes["error"]
    if summary.mismatches or (args.expect is None and failed):
        if args.expect:
            print(
                f"{summary.mismatches} answer(s) differ from {args.expect.upper()}", file=sys.stderr
            )
        return 1
    return 0
