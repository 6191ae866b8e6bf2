"""General acknowledgements: building ACKs for what we receive, reading ACKs (and MSAs) for what we send.

Rules (reference/hl7.md section 2, as HAPI and python-hl7 apply them):

* Header: our MSH-3/4 = their MSH-5/6 and vice versa; MSH-1/MSH-2, MSH-11, MSH-12 and MSH-18 copied, so the
  ACK is in the sender's version, delimiters and character set. MSH-10 is a new id; MSA-2 is their MSH-10.
* MSH-9: ``ACK^<trigger>`` up to 2.3.1, ``ACK^<trigger>^ACK`` from 2.4.
* ERR in the version's own form: 2.3-2.4 ``ERR-1`` = ``seg^seq^field^code&text&HL70357``; 2.5+ ``ERR-2`` location,
  ``ERR-3`` code (table 0357), ``ERR-4`` severity ``E``, ``ERR-8`` user message. MSA-3 also carries the text
  (deprecated in 2.5 but still read by most engines).
* Enhanced mode (MSH-15/MSH-16 valued): CA/CE/CR accept acknowledgements are built by the same function; use
  :func:`wants_accept_ack` / :func:`wants_application_ack` to decide whether to send each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, tzinfo

from . import charset as _charset
from .errors import ControlIdMismatch, ParseError
from .escaping import STANDARD, Delimiters
from .header import build, version_tuple
from .ids import Clock, ControlIdSource, random_control_ids, system_clock
from .limits import short_control_id
from .message import Message, SegmentBuilder, parse
from .model import Ack, AckCode, OutboundMessage, Party

# Table 0357 (message error condition codes) -> display text.
ERROR_TEXT: dict[str, str] = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}

# MSA-3 is ST(80); longer texts are cut so strict receivers do not reject our ACK.
_MSA_TEXT_MAX = 80


@dataclass(frozen=True, slots=True)
class ErrorLocation:
    segment: str = ""
    sequence: int = 1
    field: int = 0

    @classmethod
    def parse(cls, text: str) -> ErrorLocation:
        m = re.fullmatch(r"([A-Z][A-Z0-9]{2})(?:-(\d+))?.*", text.strip())
        if m is None:
            return cls()
        return cls(m[1], 1, int(m[2] or 0))


def build_ack(
    inbound: Message,
    code: AckCode | str,
    *,
    text: str = "",
    error_code: str = "",
    error_location: str = "",
    sender: Party | None = None,
    clock: Clock = system_clock,
    control_ids: ControlIdSource = random_control_ids,
    tz: tzinfo = UTC,
    with_offset: bool = True,
) -> OutboundMessage:
    """Acknowledge ``inbound``. ``sender`` defaults to the party the inbound message was addressed to."""
    ack_code = AckCode(code)
    me = sender or Party(inbound.receiving_application, inbound.receiving_facility)
    them = Party(inbound.sending_application, inbound.sending_facility)
    version = inbound.version or "2.3"
    charset = inbound.charset if _charset.is_known(inbound.charset) else ""
    return _ack_message(
        me,
        them,
        version=version,
        trigger=inbound.trigger,
        acked_control_id=inbound.control_id,
        code=ack_code,
        text=text,
        error_code=error_code,
        error_location=ErrorLocation.parse(error_location),
        processing_id=inbound.processing_id or "P",
        charset=charset,
        delims=inbound.delimiters,
        clock=clock,
        control_ids=control_ids,
        tz=tz,
        with_offset=with_offset,
    )


def _ack_message(
    me: Party,
    them: Party,
    *,
    version: str,
    trigger: str,
    acked_control_id: str,
    code: AckCode,
    text: str,
    error_code: str,
    error_location: ErrorLocation,
    processing_id: str,
    charset: str,
    delims: Delimiters,
    clock: Clock,
    control_ids: ControlIdSource,
    tz: tzinfo,
    with_offset: bool,
) -> OutboundMessage:
    segments = [msa_segment(code, acked_control_id, text)]
    if error_code or not code.is_success:
        segments.append(err_segment(version, error_code or "207", text, error_location))
    return build(
        sender=me,
        receiver=them,
        msg_type="ACK",
        trigger=trigger,
        structure="ACK",
        version=version,
        segments=segments,
        clock=clock,
        control_ids=control_ids,
        tz=tz,
        with_offset=with_offset,
        charset=charset,
        delims=delims,
        processing_id=processing_id,
    )


def msa_segment(code: AckCode, acked_control_id: str, text: str = "") -> SegmentBuilder:
    # A peer's over-long MSH-10 is not echoed in full (issue 11 item 3).
    msa = SegmentBuilder("MSA", code.value, short_control_id(acked_control_id))
    if text:
        msa.field(3, _one_line(text)[:_MSA_TEXT_MAX])
    return msa


def err_segment(
    version: str, error_code: str, text: str = "", location: ErrorLocation | None = None
) -> SegmentBuilder:
    """ERR in the form of ``version``."""
    loc = location or ErrorLocation()
    code_text = ERROR_TEXT.get(error_code, "Error")
    err = SegmentBuilder("ERR")
    if version_tuple(version) >= (2, 5):
        if loc.segment:
            err.field(2, (loc.segment, str(loc.sequence), str(loc.field) if loc.field else ""))
        err.field(3, (error_code, code_text, "HL70357"))
        err.field(4, "E")
        if text:
            err.field(8, _one_line(text))
    else:
        err.field(
            1,
            (
                loc.segment,
                str(loc.sequence) if loc.segment else "",
                str(loc.field) if loc.field else "",
                (error_code, code_text, "HL70357"),
            ),
        )
    return err


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_nak(
    data: bytes,
    reason: str,
    *,
    sender: Party,
    code: AckCode | str = AckCode.AR,
    error_code: str = "100",
    clock: Clock = system_clock,
    control_ids: ControlIdSource = random_control_ids,
    tz: tzinfo = UTC,
    default_version: str = "2.3",
) -> OutboundMessage:
    """Best-effort negative ACK for input we could not parse.

    Whatever can be salvaged from the first line (MSH-3/4, MSH-9.2, MSH-10, MSH-12) is used so the sender can
    correlate it; otherwise MSA-2 is empty. ``reason`` (e.g. :attr:`ParseError.reason`) goes into MSA-3 and ERR.
    Always written with the standard delimiters in ASCII, since the input's own may be what was broken.
    """
    salvaged = _salvage_msh(data)
    version = salvaged.get(12, "") or default_version
    if version_tuple(version) < (2, 3) or not re.fullmatch(r"2\.\d(\.\d)?", version):
        version = default_version
    them = Party(salvaged.get(3, ""), salvaged.get(4, ""))
    return _ack_message(
        sender,
        them,
        version=version,
        trigger=salvaged.get(9, ""),
        # MSA-2 is required; when no MSH-10 can be salvaged there is nothing to correlate with, say so.
        acked_control_id=salvaged.get(10, "") or "UNKNOWN",
        code=AckCode(code),
        text=reason,
        error_code=error_code,
        error_location=ErrorLocation("MSH", 1, 0),
        processing_id=salvaged.get(11, "") or "P",
        charset="",
        delims=STANDARD,
        clock=clock,
        control_ids=control_ids,
        tz=tz,
        with_offset=True,
    )


_SAFE = re.compile(r"[A-Za-z0-9 ._\-]{1,40}")


def _salvage_msh(data: bytes) -> dict[int, str]:
    """Pick MSH-3/4/9.2/10/11/12 out of a broken message, keeping only harmless characters."""
    raw = bytes(data).lstrip(b"\x00\x0b\x1c\r\n\t \xef\xbb\xbf")
    if not raw.startswith(b"MSH") or len(raw) < 8:
        return {}
    fs = raw[3:4]
    first = re.split(rb"[\r\n]", raw, maxsplit=1)[0]
    parts = first.split(fs)
    comp = raw[4:5]
    out: dict[int, str] = {}
    for number in (3, 4, 9, 10, 11, 12):
        index = number - 1
        if index >= len(parts):
            continue
        pieces = parts[index].split(comp) if comp and comp != fs else [parts[index]]
        # MSH-9: the trigger (component 2) is what the ACK echoes; elsewhere the first component.
        wanted = 1 if number == 9 else 0
        value = pieces[wanted] if wanted < len(pieces) else b""
        text = value.decode("ascii", errors="ignore").strip()
        if _SAFE.fullmatch(text):
            out[number] = text
    return out


def read_ack(msg: Message) -> Ack:
    """The MSA (+ERR) of any response message, without control id checking."""
    msa = msg.first("MSA")
    if msa is None:
        raise ParseError("response has no MSA segment", location="MSA")
    raw_code = msa.get(1).upper()
    try:
        code = AckCode(raw_code)
    except ValueError:
        raise ParseError(
            "MSA-1 is not a table 0008 acknowledgement code", hl7_error_code="103"
        ) from None
    text = msa.get(3)
    error_code = ""
    err = msg.first("ERR")
    if err is not None:
        error_code = err.get(3, 1) or err.get(1, 4, 1)
        text = text or err.get(8) or err.get(7) or err.get(3, 2) or err.get(1, 4, 2)
    return Ack(code=code, control_id=msa.get(2), text=text, error_code=error_code)


def check_control_id(ack: Ack, expected_control_id: str) -> None:
    if ack.control_id != expected_control_id:
        raise ControlIdMismatch(expected_control_id, ack.control_id)


def parse_ack(data: bytes, expected_control_id: str) -> Ack:
    """Read an acknowledgement of the message we sent as ``expected_control_id``.

    Raises :class:`ControlIdMismatch` when MSA-2 names another message (a late reply), :class:`ParseError`
    when there is no usable MSA.
    """
    ack = read_ack(parse(data))
    check_control_id(ack, expected_control_id)
    return ack


def is_enhanced_mode(msg: Message) -> bool:
    return bool(msg.accept_ack_type or msg.application_ack_type)


def _wanted(condition: str, success: bool) -> bool:
    # Table 0155. In enhanced mode an empty value is taken as AL (what most engines assume).
    cond = condition or "AL"
    return cond == "AL" or (cond == "SU" and success) or (cond == "ER" and not success)


def wants_accept_ack(msg: Message, success: bool) -> bool:
    """Enhanced mode: should a CA/CE/CR accept acknowledgement be sent now?"""
    return is_enhanced_mode(msg) and _wanted(msg.accept_ack_type, success)


def wants_application_ack(msg: Message, success: bool) -> bool:
    """Should an application acknowledgement (AA/AE/AR) be sent? Always true in original mode."""
    if not is_enhanced_mode(msg):
        return True
    return _wanted(msg.application_ack_type, success)
