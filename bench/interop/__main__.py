"""Corpus check (issue 15 item 6): replay ``../shared/hl7-corpus/`` against a daemon on embedded defaults.

``python -m bench.interop [--corpus DIR] [--doc]`` (``make interop``)

Starts ``radsched run`` as a subprocess with nothing configured but a fresh data directory (embedded
PostgreSQL, ports chosen by the daemon and read from its sd_notify STATUS), then sends every corpus file,
byte for byte, as one MLLP frame: first all on one connection, then each on a fresh connection. For each
answer it prints the file, MSA-1/MSA-2 (never message content) and whether it meets the manifest's
expectation and its general rules:

* MSA-1 in ``expect.msa1`` (for a batch answer: every MSA inside); a refusal says why (MSA-3 or ERR);
* MSA-2 equals MSH-10, or one of ``expect.msa2_any_of`` (batches);
* the ACK's MSH-12 equals the message's (surrounding spaces ignored) unless that is empty;
* the ACK validates with hl7apy strict in its version (``tests.channels.hl7check``);
* no answer only where ``no_ack_ok``; a repeat of an earlier (sender, MSH-10) may get the earlier ACK
  byte for byte; the connection and the daemon (``/healthz``) stay up.

Exit status 1 when any message does not match, other than the differences listed in ``DOCUMENTED``
(where radsched now answers on purpose otherwise than the manifest, written before, expects). ``--doc`` writes the result into docs/interop.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from channels import ParseError, parse, read_ack
from channels.batch import is_batch, parse_batch
from mllp import Frame, FrameDecoder

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CORPUS = ROOT.parent / "shared" / "hl7-corpus"
DOC = ROOT / "docs" / "interop.md"
SECTION = "## Corpus result"
#: Where the manifest's expectation predates what radsched now does on purpose: file -> (the MSA-1
#: radsched gives, why in a line). Such an answer is listed as a documented difference, not a
#: failure; any other answer to these files still fails. :data:`EXPLAINED` says why at length.
DOCUMENTED = {
    "SIU_fhirconverter_6.hl7": ("AA", "SIU^S17 taken since the appointment lifecycle (issue 12)"),
}
EXPLAINED = """\
The documented difference, `SIU_fhirconverter_6.hl7` (SIU^S17, v2.8), is where the manifest was
written for an earlier radsched: it expects AR or AE because radsched used to take no S17. Since the
appointment lifecycle (issue 12), an S17 from the RIS updates the appointment record and is relayed
to the EMRs, so it is answered AA. A deletion is a message the standard's scheduling chapter defines
(SIU^S17, "notification of appointment deletion"), and an engine that relays S12-S15 is expected to
take it. `bench.interop` lists it (and exits 0); any other answer to that file would fail.
"""
REPLY_TIMEOUT = 30.0
NO_ANSWER_WAIT = 5.0


@dataclass
class Result:
    file: str
    answer: str
    ok: bool
    why: str
    documented: bool = False
    """Not what the manifest expects, but a difference listed in :data:`DOCUMENTED`."""


class Connection:
    """One MLLP client connection: send a frame, read one frame back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder(lenient=True)
        self._pending: list[bytes] = []

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def exchange(self, payload: bytes, timeout: float) -> bytes | None:
        self._writer.write(b"\x0b" + payload + b"\x1c\r")
        await self._writer.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                chunk = await asyncio.wait_for(self._reader.read(65536), remaining)
            except TimeoutError:
                return None
            if not chunk:
                raise ConnectionError("connection closed by the daemon")
            self._pending += [e.payload for e in self._decoder.feed(chunk) if isinstance(e, Frame)]
        return self._pending.pop(0)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


def _acks_in(answer: bytes) -> list[bytes]:
    if is_batch(answer):
        return list(parse_batch(answer, allow_empty=True).messages)
    return [answer]


def check(
    entry: dict[str, Any], data: bytes, answer: bytes | None, earlier: bytes | None
) -> Result:
    """Judge one answer against its manifest entry."""
    from tests.channels.hl7check import assert_valid_hl7

    expect = entry["expect"]
    name = entry["file"].rsplit("/", 1)[-1]
    if answer is None:
        ok = bool(expect.get("no_ack_ok"))
        return Result(name, "(no answer)", ok, "" if ok else "no answer")
    if earlier is not None and answer == earlier:
        return Result(name, "earlier ACK repeated", True, "")
    problems: list[str] = []
    shown: list[str] = []
    try:
        acks = _acks_in(answer)
    except ParseError as exc:
        return Result(name, "(unreadable)", False, exc.reason)
    wanted_ids = set(expect.get("msa2_any_of") or [entry["msh10"]])
    documented = DOCUMENTED.get(name)
    differs = False
    version = entry.get("version", "").strip()
    for payload in acks:
        try:
            msg = parse(payload)
            ack = read_ack(msg)
        except ParseError as exc:
            problems.append(f"unreadable ACK: {exc.reason}")
            continue
        shown.append(f"{ack.code}|{ack.control_id}")
        if str(ack.code) not in expect["msa1"]:
            if documented is not None and str(ack.code) == documented[0]:
                differs = True
            else:
                problems.append(f"MSA-1 {ack.code} not in {expect['msa1']}")
        if ack.control_id not in wanted_ids and not (not entry["msh10"] and is_refusal(ack.code)):
            problems.append(f"MSA-2 {ack.control_id!r} is not the message's")
        if version and msg.version.strip() != version and not is_batch(data):
            problems.append(f"ACK in {msg.version} for a {version} message")
        if is_refusal(ack.code) and not ack.text:
            problems.append("refusal without a reason")
        try:
            assert_valid_hl7(payload)
        except AssertionError as exc:
            problems.append(str(exc)[:160])
    shown_text = ", ".join(shown) or "(empty batch)"
    if differs and not problems:
        assert documented is not None
        why = f"manifest expects {'/'.join(expect['msa1'])}: {documented[1]}"
        return Result(name, shown_text, False, why, documented=True)
    return Result(name, shown_text, not problems, "; ".join(problems))


def is_refusal(code: object) -> bool:
    return str(code) in ("AE", "AR", "CE", "CR")


def _healthy(http: tuple[str, int]) -> bool:
    url = f"http://{http[0]}:{http[1]}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:  # loopback: our own daemon
            return bool(reply.status == 200)
    except OSError:
        return False


async def replay(
    entries: list[dict[str, Any]], corpus: Path, mllp: tuple[str, int], http: tuple[str, int]
) -> dict[str, list[Result]]:
    runs: dict[str, list[Result]] = {}
    for mode in ("one connection", "fresh connection each"):
        results: list[Result] = []
        seen: dict[tuple[str, str], bytes] = {}
        conn = await Connection.open(*mllp) if mode == "one connection" else None
        for entry in entries:
            data = (corpus / entry["file"]).read_bytes()
            own = conn or await Connection.open(*mllp)
            try:
                # Where no answer is a right answer, do not wait the full reply timeout for it.
                wait = NO_ANSWER_WAIT if entry["expect"].get("no_ack_ok") else REPLY_TIMEOUT
                answer = await own.exchange(data, wait)
            except ConnectionError as exc:
                results.append(Result(entry["file"], "(connection lost)", False, str(exc)))
                conn = await Connection.open(*mllp) if conn is not None else None
                continue
            finally:
                if conn is None:
                    await own.close()
            key = (str(entry.get("sender")), entry["msh10"])
            same = entry["expect"].get("same_sender_and_msh10_as")
            earlier = seen.get(key) if same else None
            result = check(entry, data, answer, earlier)
            if answer is not None:
                seen.setdefault(key, answer)
            if not _healthy(http):
                result = Result(result.file, result.answer, False, "daemon /healthz not 200")
            results.append(result)
        if conn is not None:
            await conn.close()
        runs[mode] = results
    return runs


def report(runs: dict[str, list[Result]]) -> str:
    lines = [
        SECTION,
        "",
        "`make interop` (`python -m bench.interop --doc`): every file of `../shared/hl7-corpus/` sent byte",
        "for byte as one MLLP frame to `radsched run` on embedded defaults, first on one connection, then",
        "on a fresh connection each, and judged against its manifest entry.",
        "",
    ]
    for mode, results in runs.items():
        good = sum(r.ok for r in results)
        known = sum(r.documented for r in results)
        lines.append(
            f"- {mode}: **{good}/{len(results)}** answers as the manifest expects, {known} documented"
            f" difference(s), {len(results) - good - known} unexpected"
        )
    if any(r.documented for results in runs.values() for r in results):
        lines += ["", EXPLAINED.rstrip("\n")]
    lines += ["", "| file | answer (MSA-1\\|MSA-2) | matches | why not |", "|---|---|---|---|"]
    first = next(iter(runs.values()))
    for result in first:
        why = result.why.replace("|", "\\|")
        answer = result.answer.replace("|", "\\|")
        matches = "yes" if result.ok else "documented" if result.documented else "NO"
        lines.append(f"| {result.file} | {answer} | {matches} | {why} |")
    return "\n".join(lines) + "\n"


def _write_doc(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else "# Interoperability\n"
    start = doc.find(SECTION + "\n")
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + text + (doc[end:] if end >= 0 else "")
    DOC.write_text(doc.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--doc", action="store_true", help="write the result into docs/interop.md")
    args = ap.parse_args(argv)
    manifest = json.loads((args.corpus / "manifest.json").read_text())
    entries: list[dict[str, Any]] = manifest["messages"]
    # The daemon harness of the tests: it reads the bound ports from sd_notify, never guesses them.
    from tests.daemonproc import DaemonProcess

    work = Path(tempfile.mkdtemp(prefix="rs-interop-"))
    work.chmod(0o755)  # embedded PostgreSQL runs as 'nobody' under root and must enter it
    daemon = DaemonProcess(work / "data")
    try:
        daemon.start()
        runs = asyncio.run(
            replay(entries, args.corpus, daemon.addresses["mllp"], daemon.addresses["http"])
        )
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    for mode, results in runs.items():
        print(f"== {mode}")
        for r in results:
            mark = "ok " if r.ok else "doc" if r.documented else "NO "
            print(f"{mark} {r.file:34} {r.answer:40} {r.why}")
    text = report(runs)
    print("\n".join(line for line in text.splitlines() if line.startswith("- ")))
    if args.doc:
        _write_doc(text)
    return 0 if all(r.ok or r.documented for results in runs.values() for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
