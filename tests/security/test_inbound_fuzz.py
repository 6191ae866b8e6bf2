"""The inbound router end to end, fuzzed: bytes from anyone who can reach the MLLP port.

A real ``radsched run`` subprocess (real PostgreSQL, in-process simulated RIS, console SMS) takes
hypothesis-generated input on one long-lived connection:

* well-framed payloads, from raw bytes to mutated real HL7 (delimiters, escapes, CR/LF, NULs,
  8-bit and SQL-looking text spliced into fixture messages), and
* raw streams with MLLP control bytes anywhere (broken framing),

each followed by a clean probe message. Every frame gets exactly one reply (none only where the
message itself asked for no accept acknowledgement), every reply is an HL7 acknowledgement that
parses and validates, every negative one says why, the probe is always answered (no hang, no dead
connection), the daemon stays up and ready, and its resident memory stays bounded, including
under a stream far larger than the frame limit.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels import Ack, AckCode, ParseError, parse, read_ack
from channels.ack import is_enhanced_mode
from channels.versions import KNOWN_VERSIONS
from mllp import Client, Frame, FrameDecoder, FramingError, encode_frame
from tests.channels.hl7check import assert_valid_hl7
from tests.daemonproc import DaemonProcess

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
MAX_FRAME = 64 * 1024
# make test: a bounded deterministic run; make fuzz sets SECURITY_FUZZ_EXAMPLES for a long random one.
EXAMPLES = int(os.environ.get("SECURITY_FUZZ_EXAMPLES", "100"))
DETERMINISTIC = "SECURITY_FUZZ_EXAMPLES" not in os.environ
REPLY_TIMEOUT = 10.0
MiB = 1024 * 1024

SEEDS = [
    p.read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    for folder in ("orders", "negative", "siu", "ack")
    for p in sorted((FIXTURES / folder).glob("*.hl7"))
]
SPLICES = [
    b"|",
    b"^",
    b"~",
    b"\\",
    b"&",
    b"\r",
    b"\n",
    b"\r\n",
    b"\\F\\",
    b"\\S\\",
    b"\\E\\",
    b"\\X0D\\",
    b"\\.br\\",
    b"\\Zxx\\",
    b"MSH|^~\\&|",
    b"\rMSH|",
    b"\rPID|",
    b"\x00",
    b"\xff\xfe",
    "é".encode(),
    b"'; DROP TABLE orders; --",
    b"A" * 2000,
    b"|" * 300,
    b"^" * 300,
    b"2.5.1",
    b"ORM^O01",
    b"NE",
    b"AL",
    b"||||||||||||||||",
]


def _clean(payload: bytes) -> bytes:
    """Make ``payload`` legal inside one MLLP frame (SB and EB are framing, not content)."""
    return payload.replace(b"\x0b", b"?").replace(b"\x1c", b"?")


@st.composite
def mutated_hl7(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 8))
        data[at : at + cut] = draw(st.sampled_from(SPLICES) | st.binary(min_size=1, max_size=8))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


payloads = st.one_of(st.binary(max_size=600), mutated_hl7()).map(_clean)
streams = st.lists(
    st.one_of(st.binary(max_size=200), st.sampled_from([b"\x0b", b"\x1c", b"\r", b"\x1c\r"])),
    max_size=12,
).map(b"".join)


@dataclass
class Wire:
    """A blocking MLLP connection driven from the test thread."""

    host: str
    port: int
    sock: socket.socket | None = None
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    probes: int = 0

    def connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=REPLY_TIMEOUT)
        self.decoder = FrameDecoder()

    def send(self, data: bytes) -> None:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self.sock.sendall(data)

    def frames(self) -> Iterator[bytes]:
        assert self.sock is not None
        while True:
            chunk = self.sock.recv(65536)
            assert chunk, "the daemon closed the connection"
            for event in self.decoder.feed(chunk):
                assert not isinstance(event, FramingError), f"bad framing from the daemon: {event}"
                if isinstance(event, Frame):
                    yield event.payload

    def probe(self) -> list[bytes]:
        """Send a clean message; return the replies that came before its own (in order)."""
        self.probes += 1
        cid = f"PROBE{self.probes}"
        self.send(encode_frame(probe_message(cid)))
        before: list[bytes] = []
        for reply in self.frames():
            ack = check_reply(reply)
            if ack.control_id == cid:
                assert ack.code is AckCode.AR  # ADT is not a message type the daemon takes
                return before
            before.append(reply)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def probe_message(control_id: str) -> bytes:
    return (
        f"MSH|^~\\&|FUZZ|LAB|RADSCHED|RADSCHED|20260601100000||ADT^A01|{control_id}|P|2.5.1\r"
    ).encode()


def check_reply(reply: bytes) -> Ack:
    msg = parse(reply)
    ack = read_ack(msg)
    assert msg.message_type == "ACK", reply
    if ack.code not in (AckCode.AA, AckCode.CA):
        assert ack.text.strip(), f"negative acknowledgement without a reason: {reply!r}"
    assert msg.version in KNOWN_VERSIONS and ack.control_id, reply
    try:
        assert_valid_hl7(reply)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nreply: {reply!r}") from None
    return ack


def asked_for_no_reply(payload: bytes) -> bool:
    if payload in (b"\x06", b"\x15"):
        return True  # an MLLP Release 2 commit ACK/NAK block: no work, no reply
    try:
        return is_enhanced_mode(parse(payload))
    except ParseError:
        return False


def rss(daemon: DaemonProcess) -> int:
    assert daemon.proc is not None
    for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def ready(daemon: DaemonProcess) -> bool:
    assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon died"
    with urllib.request.urlopen(daemon.url("/readyz"), timeout=10) as response:
        return bool(response.status == 200)


def fuzz(daemon: DaemonProcess) -> dict[str, int]:
    host, port = daemon.addresses["mllp"]
    wire = Wire(host, port)
    stats = {"frames": 0, "streams": 0, "replies": 0}

    # Warm-up with the seeds themselves, so the memory baseline includes caches and pools.
    for seed in SEEDS:
        wire.send(encode_frame(_clean(seed)))
        wire.probe()
    baseline = rss(daemon)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=DETERMINISTIC,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(payload=payloads, stream=streams)
    def one(payload: bytes, stream: bytes) -> None:
        try:
            wire.send(encode_frame(payload))
            replies = wire.probe()
            assert len(replies) == 1 or (not replies and asked_for_no_reply(payload)), replies
            # Broken framing: whatever the bytes, a stray EB/CR closes any frame they left open,
            # and the connection must still answer the probe that follows.
            wire.send(stream + b"\x1c\r")
            wire.probe()
        except BaseException:
            wire.close()  # start the next example on a clean connection, not on stale replies
            raise
        stats["frames"] += 1
        stats["streams"] += 1
        stats["replies"] += len(replies)

    try:
        one()
    finally:
        wire.close()
    stats["growth"] = rss(daemon) - baseline
    return stats


def oversize(daemon: DaemonProcess, total: int) -> int:
    """Stream ``total`` bytes as one frame (far over the limit); return the RSS growth seen."""
    host, port = daemon.addresses["mllp"]
    wire = Wire(host, port)
    before = rss(daemon)
    chunk = b"MSH|" + b"x" * (MiB - 4)
    wire.send(b"\x0b")
    peak = before
    for _ in range(total // MiB):
        wire.send(chunk)
        peak = max(peak, rss(daemon))
    wire.send(b"\x1c\r")
    [nak] = wire.probe()
    assert read_ack(parse(nak)).code is AckCode.AR and b"oversize" in nak
    wire.close()
    return peak - before


async def test_arbitrary_bytes_always_get_an_ack_or_a_nak(
    database_url: str, data_dir: Path
) -> None:
    env = {
        "RADSCHED_DATABASE_URL": database_url,
        "RADSCHED_PHONE_HASH_KEY": secrets.token_hex(32),
        "RADSCHED_PHI_KEY": secrets.token_hex(32),
        "RADSCHED_MLLP_MAX_FRAME_BYTES": str(MAX_FRAME),
        # One long-lived connection takes every example, some of them nothing but broken framing:
        # the daemon's close-after-N-framing-errors defence (test_mllp_exposure.py) is off here.
        "RADSCHED_MLLP_MAX_FRAMING_ERRORS": "1000000",
        "RADSCHED_LOG_FORMAT": "json",
    }
    daemon = await asyncio.to_thread(DaemonProcess(data_dir, env=env).start)
    try:
        stats = await asyncio.to_thread(fuzz, daemon)
        assert stats["frames"] == EXAMPLES
        assert stats["growth"] < 32 * MiB, f"resident memory grew {stats['growth'] / MiB:.1f} MiB"
        growth = await asyncio.to_thread(oversize, daemon, 64 * MiB)
        assert growth < 16 * MiB, f"a 64 MiB frame grew memory {growth / MiB:.1f} MiB"
        assert await asyncio.to_thread(ready, daemon)
    finally:
        await asyncio.to_thread(daemon.stop)
    log = daemon.log()
    at = log.find("Traceback")
    # Show the record that carries it: pytest would cut the whole log down to its first line.
    assert at < 0, (
        f"the daemon logged an unexpected exception: {log[max(0, at - 1500) : at + 1500]}"
    )


async def one_reply(database_url: str, data_dir: Path, message: bytes) -> bytes:
    """The daemon's (in process) answer to one message; raises if the connection is dropped."""
    from radsched.daemon import running
    from radsched.settings import Settings

    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        http_listen="127.0.0.1:0",
        mllp_listen="127.0.0.1:0",
        phone_hash_key=secrets.token_hex(32),
        phi_key=secrets.token_hex(32),
    )
    async with running(settings) as daemon:
        addr = daemon.listening["mllp"]
        async with Client(addr.host, addr.port) as client:
            return await client.request(message, timeout=5)


# Regressions for what the fuzzing found (docs/security.md, section 6): refusals of broken
# headers must themselves be valid HL7, and an MSH-12 with non-ASCII digits ("2.¹", for which
# str.isdigit() is true) must be refused, not crash the reply and drop the connection.
@pytest.mark.parametrize(
    "message",
    [
        # 2.1-2.8.2 are taken since issue 15; 2.9 is not a version.
        b"MSH|^~\\&|RIS|HOSP|RADSCHED|RADSCHED|20260601100000||ORM^O01|C1|P|2.9\r",
        b"MSH|^~\\&|RIS|HOSP|RADSCHED|RADSCHED|20260601100000||ORM^O01||P|2.3\r",
        "MSH|^~\\&|RIS|HOSP|RADSCHED|RADSCHED|20260601100000||ORM^O01|C1|P|2.\u00b9\r".encode(
            "latin-1"
        ),
        # Found by this fuzz test: a NUL in MSH-10 reached PostgreSQL and came back as
        # "temporary failure, resend later" with a traceback, for a message that never can pass.
        b"MSH|^~\\&|RIS|HOSP|RADSCHED|RADSCHED|20260601100000||ORM^O01|R\x009|P|2.3\r",
    ],
    ids=["unsupported-version", "empty-control-id", "non-ascii-digit-version", "nul-control-id"],
)
async def test_refusals_of_broken_headers_are_valid_hl7(
    database_url: str, data_dir: Path, message: bytes
) -> None:
    reply = await one_reply(database_url, data_dir, message)
    ack = read_ack(parse(reply))
    assert ack.code is AckCode.AR and ack.text
    assert "resend later" not in ack.text  # permanent: a resend would fail the same way
    assert_valid_hl7(reply)
