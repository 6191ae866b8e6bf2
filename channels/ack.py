"""General acknowledgements: building ACKs for what we receive, reading ACKs (and MSAs) for what we send.

Rules (reference/hl7.md section 2, as HAPI and python-hl7 apply them), in the sender's own version from 2.1
to 2.8 (the per-version differences are in :mod:`channels.versions`):

* Header: our MSH-3/4 = their MSH-5/6 and vice versa (whole HD values); MSH-1/MSH-2 (with the 2.7+
  truncation character), MSH-11, MSH-12 and MSH-18 copied, so the ACK is in the sender's version,
  delimiters and character set. MSH-10 is a new id; MSA-2 is their MSH-10.
* MSH-9: ``ACK^<trigger>`` up to 2.3.1, ``ACK^<trigger>^ACK`` from 2.4.
* MSA-3 carries the text up to 2.6 (ST 80); it is withdrawn in 2.7, so from 2.7 the text is in ERR-8 only.
* ERR in the version's own form: none in 2.1 (its ERR-1 cannot hold a code), 2.2-2.4 ``ERR-1`` =
  ``seg^seq^field^code&text&HL70357``; 2.5+ ``ERR-2`` location, ``ERR-3`` code (table 0357), ``ERR-4``
  severity, ``ERR-8`` user message.
* Defensive: a value longer than the version allows (MSH-3..6 namespace, MSH-10) is cut to the limit
  (ending in the truncation character where the sender declared one) and the ACK says so (ERR severity W).
* Enhanced mode (MSH-15/MSH-16 valued): CA/CE/CR accept acknowledgements are built by the same function; use
  :func:`wants_accept_ack` / :func:`wants_application_ack` to decide whether to send each.

Speed (issue 16): an ACK is on the path of every message, so it is written as text directly from the
inbound MSH's raw (already escaped) fields. Everything that depends only on the sender's header
(MSH-3..6, 9, 11, 12, 18 and ours) is rendered once per sender and cached, so a message costs the
MSH-7 of the current second (formatted once a second), a control id and one f-string; it costs less
than parsing the message it answers (``python -m bench.ack``).
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import NamedTuple

from . import charset as _charset
from .errors import ControlIdMismatch, ParseError
from .escaping import STANDARD, Delimiters, escape
from .ids import Clock, ControlIdSource, random_control_ids, system_clock
from .limits import short_control_id
from .message import Message, SegmentBuilder, parse, truncation_character
from .model import Ack, AckCode, OutboundMessage, Party
from .timestamps import format_ts
from .versions import MSA_TEXT_MAX, ST_MAX, ErrForm, VersionRules, is_known, rules_for

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

_MSA_TEXT_MAX = MSA_TEXT_MAX


@dataclass(frozen=True, slots=True)
class ErrorLocation:
    segment: str = ""
    sequence: int = 1
    field: int = 0

    @classmethod
    def parse(cls, text: str) -> ErrorLocation:
        return _location(text)


@functools.lru_cache(maxsize=256)
def _location(text: str) -> ErrorLocation:
    m = _LOCATION.fullmatch(text.strip())
    if m is None:
        return ErrorLocation()
    return ErrorLocation(m[1], 1, int(m[2] or 0))


_LOCATION = re.compile(r"([A-Z][A-Z0-9]{2})(?:-(\d+))?.*")


class _Header(NamedTuple):
    """The fields an ACK copies from the message it answers, escaped in that message's delimiters.

    A NamedTuple rather than a frozen dataclass: it is built once per ACK and a tuple is cheaper."""

    delims: Delimiters
    encoding: str
    ours: tuple[str, str]
    theirs: tuple[str, str]
    trigger: str
    control_id: str
    processing_id: str
    charset: str


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
    """Acknowledge ``inbound`` in its version. ``sender`` defaults to the party it was addressed to."""
    fields = inbound.msh.fields
    # Everything but MSH-7 and MSH-10 comes from the header fields a sender repeats on every message.
    ours = None if sender is None else (sender.application, sender.facility)  # cheaper to hash
    key = (ours, inbound.charset, fields[1:7], fields[9:10], fields[11:13])
    prepared = _prepared.get(key)
    if prepared is None:
        prepared = _prepare_inbound(inbound, sender)
        if len(_prepared) >= _PREPARED_MAX:
            _prepared.clear()
        _prepared[key] = prepared
    if clock is system_clock:
        ts = _timestamps.now(tz, with_offset)
    else:
        ts = _timestamps.text(clock(), tz, with_offset)
    acked = fields[10] if len(fields) > 10 else ""
    ack_code = code if code.__class__ is AckCode else AckCode(code)
    cid = control_ids()
    if (
        not text
        and not error_code
        and not prepared.notes
        and len(acked) <= ST_MAX
        and (ack_code is AckCode.AA or ack_code is AckCode.CA)
    ):
        # The common answer: no MSA-3, no ERR (what _finish writes for it, without the checks).
        fs = prepared.delims.field
        out = (
            f"{prepared.prefix}{ts}{prepared.middle}{cid}{prepared.suffix}\r"
            f"MSA{fs}{ack_code.value}{fs}{acked}\r"
        )
        if prepared.charset:
            return OutboundMessage(cid, _charset.encode(out, prepared.charset))
        try:
            return OutboundMessage(cid, out.encode("ascii"))
        except UnicodeEncodeError:
            return OutboundMessage(cid, _charset.encode(out, ""))
    return _finish(
        prepared,
        ack_code,
        text=text,
        error_code=error_code,
        location=_location(error_location) if error_location else _NO_LOCATION,
        ts=ts,
        control_id=cid,
        acked=acked,
    )


_NO_LOCATION = ErrorLocation()


class _Prepared(NamedTuple):
    """The parts of an ACK that depend only on the header of the message it answers (and on us).

    ``prefix`` is MSH up to MSH-7, ``middle`` from after MSH-7 to MSH-10, ``suffix`` after MSH-10;
    ``notes`` are the truncation notes of MSH-3..6."""

    rules: VersionRules
    delims: Delimiters
    trunc: str
    charset: str
    prefix: str
    middle: str
    suffix: str
    notes: tuple[str, ...]


# Per-sender header parts (issue 16): a feed repeats its MSH-3..6/9/11/12 on every message.
_prepared: dict[object, _Prepared] = {}
_PREPARED_MAX = 1024


def _prepare_inbound(inbound: Message, sender: Party | None) -> _Prepared:
    delims = inbound.delimiters
    fields = inbound.msh.fields
    nfields = len(fields)
    rules = rules_for(fields[12] if nfields > 12 else "")
    ours = (
        _escaped_party(sender, delims)
        if sender is not None
        else (_first(fields, 5), _first(fields, 6))
    )
    charset = inbound.charset if _charset.is_known(inbound.charset) else ""
    header = _Header(
        delims=delims,
        encoding=inbound.encoding_characters if rules.has_truncation_character else "",
        ours=ours,
        theirs=(_first(fields, 3), _first(fields, 4)),
        trigger=_echoable_trigger(_component(fields[9], delims, 1) if nfields > 9 else ""),
        control_id="",
        processing_id=_echoable_processing_id(fields[11] if nfields > 11 else "", delims),
        charset=charset if rules.has_charset_field else "",
    )
    return _prepare(header, rules)


def _echoable_trigger(raw: str) -> str:
    """MSH-9.2 as the ACK may repeat it: a table 0003 code, never a stray delimiter (a raw ``~`` or ``&``
    would turn our MSH-9 into repetitions or subcomponents, which strict parsers refuse)."""
    return raw if _TRIGGER.fullmatch(raw) else ""


def _echoable_processing_id(raw: str, delims: Delimiters) -> str:
    """MSH-11 as the ACK may repeat it: ``P``, ``D`` or ``T`` with an optional mode component; else ``P``."""
    if raw in ("P", "D", "T"):  # the common case, without building a pattern
        return raw
    first, _, mode = raw.partition(delims.component)
    if first in ("P", "D", "T") and (not mode or (len(mode) == 1 and mode.isalpha())):
        return raw
    return "P"


def _first(fields: tuple[str, ...], number: int) -> str:
    return fields[number] if number < len(fields) else ""


def _component(raw: str, delims: Delimiters, index: int) -> str:
    parts = raw.split(delims.component)
    return parts[index] if index < len(parts) else ""


@functools.lru_cache(maxsize=256)
def _escaped_party(party: Party, delims: Delimiters) -> tuple[str, str]:
    return escape(party.application, delims), escape(party.facility, delims)


class _SecondCache:
    """MSH-7 text for the current second: formatting (and the zoneinfo look-up) happens once a second."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[tuple[int, tzinfo, bool], str] | None = None

    def text(self, moment: datetime, tz: tzinfo, with_offset: bool) -> str:
        key = (int(moment.timestamp()), tz, with_offset)
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        value = format_ts(moment, tz, with_offset=with_offset)
        self._last = (key, value)  # one assignment: safe if threads ever share it
        return value

    def now(self, tz: tzinfo, with_offset: bool) -> str:
        """As :meth:`text` for the :func:`~channels.ids.system_clock` time, without building a datetime
        unless the second changed."""
        key = (int(time.time()), tz, with_offset)
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        value = format_ts(datetime.fromtimestamp(key[0], UTC), tz, with_offset=with_offset)
        self._last = (key, value)
        return value


_timestamps = _SecondCache()


def _prepare(h: _Header, rules: VersionRules) -> _Prepared:
    d = h.delims
    fs, cs = d.field, d.component
    trunc = h.encoding[4:]
    notes: list[str] = []
    limit = rules.party_limit
    them_app = _fit(h.theirs[0], limit, d=d, trunc=trunc, name="MSH-3", notes=notes)
    them_fac = _fit(h.theirs[1], limit, d=d, trunc=trunc, name="MSH-4", notes=notes)
    our_app = _fit(h.ours[0], limit, d=d, trunc=trunc, name="MSH-5", notes=notes)
    our_fac = _fit(h.ours[1], limit, d=d, trunc=trunc, name="MSH-6", notes=notes)
    if rules.msh9_structure:
        msh9 = f"ACK{cs}{h.trigger}{cs}ACK"
    else:
        msh9 = f"ACK{cs}{h.trigger}" if h.trigger else "ACK"
    prefix = (
        f"MSH{fs}{h.encoding or d.encoding_characters}{fs}{our_app}{fs}{our_fac}{fs}{them_app}{fs}"
        f"{them_fac}{fs}"
    )
    middle = (cs + "S" if rules.ts_precision else "") + f"{fs}{fs}{msh9}{fs}"
    suffix = f"{fs}{h.processing_id}{fs}{rules.version}"
    if h.charset:
        suffix += fs * 6 + escape(h.charset, d)
    return _Prepared(rules, d, trunc, h.charset, prefix, middle, suffix, tuple(notes))


def _finish(
    p: _Prepared,
    code: AckCode,
    *,
    text: str,
    error_code: str,
    location: ErrorLocation,
    ts: str,
    control_id: str,
    acked: str,
) -> OutboundMessage:
    d, trunc, rules = p.delims, p.trunc, p.rules
    fs = d.field
    notes = list(p.notes)
    acked = _fit(acked, ST_MAX, d=d, trunc=trunc, name="MSH-10", notes=notes, whole=True)
    msh = f"{p.prefix}{ts}{p.middle}{control_id}{p.suffix}"
    line = _one_line(text)
    if notes:
        line = "; ".join([line, *notes]) if line else "; ".join(notes)
    failed = not code.is_success
    msa = f"MSA{fs}{code.value}{fs}{acked}"
    if rules.msa_text and (line or (failed and rules.err_form is ErrForm.NONE)):
        msa_text = line or ERROR_TEXT.get(error_code or "207", "Error")
        msa += fs + _escape_text(msa_text[:_MSA_TEXT_MAX], d, trunc)
    out = msh + "\r" + msa + "\r"
    if rules.err_form is not ErrForm.NONE and (
        error_code or failed or notes or (line and not rules.msa_text)
    ):
        if failed:
            severity, err_code = "E", error_code or "207"
        elif error_code:
            severity, err_code = "W", error_code
        else:
            severity, err_code = ("W" if notes else "I"), "0"
        err = _err_text(
            rules, err_code, severity=severity, text=line, loc=location, d=d, trunc=trunc
        )
        out += err + "\r"
    return OutboundMessage(control_id=control_id, payload=_charset.encode(out, p.charset))


def _fit(
    raw: str,
    limit: int,
    *,
    d: Delimiters,
    trunc: str,
    name: str,
    notes: list[str],
    whole: bool = False,
) -> str:
    """``raw`` (escaped text of one field) with its first component cut to ``limit`` characters."""
    if len(raw) <= limit:
        return raw
    head, sep, rest = (raw, "", "") if whole else raw.partition(d.component)
    if len(head) <= limit:
        return raw
    cut = head[: limit - len(trunc)]
    # Never leave half an escape sequence at the end.
    if cut.count(d.escape) % 2:
        cut = cut[: cut.rfind(d.escape)]
    notes.append(f"{name} longer than {limit} characters, truncated in this ACK")
    return cut + trunc + sep + rest


@functools.lru_cache(maxsize=512)
def _escape_text(text: str, d: Delimiters, trunc: str) -> str:
    # Cached: refusal reasons are a small set of fixed texts (never PHI), repeated on every NAK.
    escaped = escape(text, d)
    if trunc and trunc in escaped:
        escaped = escaped.replace(trunc, f"{d.escape}P{d.escape}")
    return escaped


def _err_text(
    rules: VersionRules,
    error_code: str,
    *,
    severity: str,
    text: str,
    loc: ErrorLocation,
    d: Delimiters,
    trunc: str,
) -> str:
    fs, cs, ss = d.field, d.component, d.subcomponent
    code_text = ERROR_TEXT.get(error_code, "Error")
    if rules.err_form is ErrForm.ERL:
        location = (
            cs.join([loc.segment, str(loc.sequence), str(loc.field) if loc.field else ""]).rstrip(
                cs
            )
            if loc.segment
            else ""
        )
        err = f"ERR{fs}{fs}{location}{fs}{error_code}{cs}{code_text}{cs}HL70357{fs}{severity}"
        if text:
            err += fs * 4 + _escape_text(text, d, trunc)
        return err
    eld = [
        loc.segment,
        str(loc.sequence) if loc.segment else "",
        str(loc.field) if loc.field else "",
        ss.join([error_code, code_text, "HL70357"]),
    ]
    return f"ERR{fs}{cs.join(eld)}"


def msa_segment(code: AckCode, acked_control_id: str, text: str = "") -> SegmentBuilder:
    # A peer's over-long MSH-10 is not echoed in full (issue 11 item 3).
    msa = SegmentBuilder("MSA", code.value, short_control_id(acked_control_id))
    if text:
        msa.field(3, _one_line(text)[:_MSA_TEXT_MAX])
    return msa


def err_segment(
    version: str, error_code: str, text: str = "", location: ErrorLocation | None = None
) -> SegmentBuilder:
    """ERR in the form of ``version`` (for builders other than the ACK's, e.g. SRR/DSR answers)."""
    loc = location or ErrorLocation()
    code_text = ERROR_TEXT.get(error_code, "Error")
    err = SegmentBuilder("ERR")
    if rules_for(version).err_form is ErrForm.ERL:
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
    if not text:
        return ""
    # Most reasons are already one clean line: skip the split/join for them.
    clean = text.isprintable() and "  " not in text and text[0] != " " and text[-1] != " "
    return text if clean else " ".join(text.split())


def header_refusal(msg: Message) -> tuple[str, str] | None:
    """Why a message's header makes it unanswerable as sent (reason, table 0357 code), or None.

    Empty MSH-10 (nothing to correlate with), MSH-10 past 199 characters, with control characters or
    with separators (it must come back unchanged in MSA-2, an ST),
    a NUL in MSH-3/MSH-4, a version outside 2.1-2.8.2.
    """
    cid = msg.control_id
    if not cid.strip():
        return "MSH-10 message control id is empty", "101"
    if len(cid) > ST_MAX:
        return f"MSH-10 is {len(cid)} characters; at most {ST_MAX} are accepted", "102"
    # ST holds no control characters; a NUL could not even be stored for de-duplication.
    if any(ch < " " or ch == "\x7f" for ch in cid):
        return "MSH-10 holds control characters", "102"
    raw_cid, d = msg.msh.raw(10), msg.delimiters
    if d.component in raw_cid or d.repetition in raw_cid or d.subcomponent in raw_cid:
        # MSA-2 must repeat MSH-10 exactly; a structured value cannot be repeated in an ST field.
        return "MSH-10 holds a component, repetition or subcomponent separator", "102"
    if "\x00" in msg.sending_application + msg.sending_facility:
        return "MSH-3/MSH-4 hold a NUL character", "102"
    if not is_known(msg.version):
        shown = msg.version.strip() or "(empty)"
        return f"unsupported HL7 version {shown[:20]}; accepted: 2.1-2.8.2", "203"
    return None


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
    """Best-effort negative ACK for input we could not parse (or whose header we cannot answer as is).

    Whatever can be salvaged from the first line is used so the sender can correlate it: its delimiters
    when MSH-1/MSH-2 are usable, MSH-3/4, MSH-9.2, MSH-10, MSH-11 and MSH-12 when it is a known version
    (else ``default_version``). With no MSH-10 MSA-2 says ``UNKNOWN``. ``reason`` (e.g.
    :attr:`ParseError.reason`) goes into MSA-3 and/or ERR as the version has them. Written in ASCII,
    since the input's character set may be what was broken.
    """
    delims, encoding, salvaged = _salvage_msh(data)
    version = salvaged.get(12, "")
    rules = rules_for(version if is_known(version) else default_version)
    header = _Header(
        delims=delims,
        encoding=encoding if rules.has_truncation_character else "",
        ours=_escaped_party(sender, delims),
        theirs=(escape(salvaged.get(3, ""), delims), escape(salvaged.get(4, ""), delims)),
        trigger=escape(salvaged.get(9, ""), delims),
        # MSA-2 is required; when no MSH-10 can be salvaged there is nothing to correlate with, say so.
        control_id=escape(salvaged.get(10, ""), delims) or "UNKNOWN",
        processing_id=escape(salvaged.get(11, ""), delims) or "P",
        charset="",
    )
    return _finish(
        _prepare(header, rules),
        AckCode(code),
        text=reason,
        error_code=error_code,
        location=ErrorLocation("MSH", 1, 0),
        ts=_timestamps.text(clock(), tz, True),
        control_id=control_ids(),
        acked=header.control_id,
    )


# What may be echoed from a message we could not parse: harmless characters only.
_SAFE = re.compile(r"[A-Za-z0-9 ._\-:/+=@]{1,199}")
_TRIGGER = re.compile(r"[A-Z0-9]{3}")


def _salvage_msh(data: bytes) -> tuple[Delimiters, str, dict[int, str]]:
    """Delimiters, MSH-2 and MSH-3/4/9.2/10/11/12 of a broken message, keeping harmless characters."""
    raw = bytes(data).lstrip(b"\x00\x0b\x1c\r\n\t ")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if raw[:3] in (b"FHS", b"BHS"):
        # A batch refused whole: name its first message, which the sender can correlate.
        inner = re.search(rb"[\r\n]MSH", raw)
        raw = raw[inner.start() + 1 :] if inner else raw
    if not raw.startswith(b"MSH") or len(raw) < 8:
        return STANDARD, STANDARD.encoding_characters, {}
    fs = raw[3:4]
    first = re.split(rb"[\r\n]", raw, maxsplit=1)[0]
    parts = first.split(fs)
    try:
        enc = parts[1].decode("ascii")
        delims = Delimiters.from_msh(fs.decode("ascii"), enc[:4])
    except (ValueError, UnicodeDecodeError, IndexError):
        delims, enc = STANDARD, ""
    encoding = delims.encoding_characters + truncation_character(enc, delims)
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
        if number == 9 and not _TRIGGER.fullmatch(text):
            continue
        if _SAFE.fullmatch(text):
            out[number] = text
    return delims, encoding, out


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
