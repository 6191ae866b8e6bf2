"""Converting an SIU between v2.3 and v2.8, field by field (issue 15 item 5).

Used for relay (an SIU from the RIS forwarded in the EMR route's version) and for outbound SIU in a
route's version: :func:`channels.siu.build_siu` builds the canonical 2.3 or 2.5.1 form, this module
moves it to the version asked for. What differs, from hl7apy's tables (which the tests validate against):

* Timing: SCH-11 (TQ ``^^M<min>^<start>^<end>``) up to 2.4; TQ1 (TQ1-6 duration, TQ1-7/8 start/end)
  from 2.5, with SCH-11 kept for backward compatibility in 2.5/2.6 and gone from 2.7, where SCH-9
  (duration) is withdrawn too. Going down, TQ1 is folded back into SCH-11 and removed.
* Fields a version does not have are dropped (SCH-26/27 order numbers below 2.4, PID-31.. below 2.4,
  MSH-21.. below 2.6, ...); fields withdrawn in 2.7+ are emptied (PID-2/4/9/12/19/20; PID-2, a 2.3
  patient id, becomes PID-3 when PID-3 is empty).
* Phones (PID-13/14): XTN-1 (the formatted number) is withdrawn in 2.7, so it moves to XTN-12
  (unformatted) unless XTN-5..7 carry the number, and XTN-3 (equipment type, required) defaults to PH.
  Going below 2.5, XTN keeps its 9 components and XTN-1 is rebuilt from XTN-5..7/12 when empty.
* MSH: MSH-12, MSH-9 with the structure from 2.4, the truncation character only from 2.7.
* AIS/AIG/AIL/AIP keep their positions (and their SIU order AIS, AIG, AIL, AIP) in every version;
  AIL-4 (2.3.1-2.4) and AIP-4 (2.3-2.4) are required there only, so an empty one gets a generic value
  (``D^Department^HL70305``, ``RES^Resource^L``).

The message keeps its delimiters, character set and control id; only what must change does.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import charset as _charset
from .errors import ParseError
from .message import Message, parse
from .versions import rules_for, version_number

SIU_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8")

# Number of fields per segment and version (hl7apy 1.3.5 tables); a version not listed uses the
# nearest lower one.
_FIELDS: dict[str, dict[tuple[int, ...], int]] = {
    "MSH": {(2, 3): 19, (2, 3, 1): 20, (2, 4): 21, (2, 6): 25},
    "SCH": {(2, 3): 25, (2, 4): 27},
    "NTE": {(2, 3): 3, (2, 3, 1): 4, (2, 6): 8},
    "PID": {(2, 3): 30, (2, 4): 38, (2, 5): 39, (2, 7): 40},
    "PV1": {(2, 3): 52, (2, 7): 53},
    "AIS": {(2, 3): 10, (2, 4): 12},
    "AIG": {(2, 3): 14},
    "AIL": {(2, 3): 12},
    "AIP": {(2, 3): 12},
    "RGS": {(2, 3): 3},
    "TQ1": {(2, 5): 14},
}
_WITHDRAWN_27 = {"SCH": (9, 11), "PID": (2, 4, 9, 12, 19, 20)}


def canonical_version(version: str) -> str:
    """The version :func:`channels.siu.build_siu` builds natively for a route asking for ``version``:
    2.5.1 (TQ1 form) from 2.5 on, else 2.3 (SCH-11 form); :func:`convert_siu` does the rest."""
    return "2.5.1" if version_number(version) >= (2, 5) else "2.3"


def _field_count(segment: str, number: tuple[int, ...]) -> int | None:
    table = _FIELDS.get(segment)
    if table is None:
        return None
    best = None
    for since, count in sorted(table.items()):
        if number >= since:
            best = count
    return best


class _Fields:
    """One segment as a mutable list of raw (escaped) fields; index 0 is the segment name."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.values = list(fields)

    @property
    def name(self) -> str:
        return self.values[0]

    def get(self, n: int) -> str:
        return self.values[n] if n < len(self.values) else ""

    def set(self, n: int, value: str) -> None:
        while len(self.values) <= n:
            self.values.append("")
        self.values[n] = value

    def trim(self, count: int) -> None:
        del self.values[count + 1 :]


def convert_siu(data: bytes | Message, version: str) -> bytes:
    """The SIU ``data`` rewritten for ``version`` (2.3-2.8); unchanged fields keep their bytes."""
    msg = data if isinstance(data, Message) else parse(data)
    if msg.message_type != "SIU":
        raise ParseError("not an SIU message", hl7_error_code="200", location="MSH-9")
    target = version.strip()
    if target not in SIU_VERSIONS:
        raise ValueError(f"SIU conversion supports {', '.join(SIU_VERSIONS)}, not {version!r}")
    to = version_number(target)
    d = msg.delimiters
    segments = [_Fields(s.fields) for s in msg.segments]
    msh = segments[0]
    msh.set(12, target)
    comps = msh.get(9).split(d.component)
    trigger = comps[1] if len(comps) > 1 else ""
    structure = comps[2] if len(comps) > 2 and comps[2] else "SIU_S12"
    msh.set(9, d.component.join(["SIU", trigger, structure] if to >= (2, 4) else ["SIU", trigger]))
    if to < (2, 7):
        msh.set(2, d.encoding_characters)
    segments = _timing(segments, to, d.component, d.subcomponent, d.repetition)
    for seg in segments:
        if seg.name == "PID":
            _pid(seg, to, d.component, d.repetition)
        _required_defaults(seg, to, d.component)
        if to >= (2, 7):
            for n in _WITHDRAWN_27.get(seg.name, ()):
                seg.set(n, "")
        count = _field_count(seg.name, to)
        if count is not None:
            seg.trim(count)
        while len(seg.values) > 1 and seg.values[-1] == "":
            seg.values.pop()
    text = "".join(_text(s.values, d.field) + "\r" for s in segments)
    return _charset.encode(text, msg.charset if rules_for(target).has_charset_field else "")


def _text(values: list[str], fs: str) -> str:
    if values[0] == "MSH":
        return "MSH" + values[1] + values[2] + "".join(fs + v for v in values[3:])
    return fs.join(values)


def _timing(
    segments: list[_Fields], to: tuple[int, ...], cs: str, ss: str, rs: str
) -> list[_Fields]:
    """Move the appointment timing between SCH-11 and TQ1 as the target version wants it."""
    sch = next((s for s in segments if s.name == "SCH"), None)
    if sch is None:
        return segments
    tq1 = next((s for s in segments if s.name == "TQ1"), None)
    if to < (2, 5):
        if tq1 is not None and not sch.get(11):
            minutes = tq1.get(6).split(cs)[0] or sch.get(9)
            start = tq1.get(7).split(cs)[0]
            end = tq1.get(8).split(cs)[0]
            sch.set(11, cs.join(["", "", f"M{minutes}" if minutes else "", start, end]).rstrip(cs))
        if tq1 is not None and not sch.get(9) and tq1.get(6):
            sch.set(9, tq1.get(6).split(cs)[0])
            sch.set(10, sch.get(10) or "min")
        return [s for s in segments if s.name != "TQ1"]
    if tq1 is None and sch.get(11):
        tq = sch.get(11).split(rs)[0].split(cs) + [""] * 5
        minutes = tq[2][1:] if tq[2][:1] in ("M", "m") and tq[2][1:].isdigit() else sch.get(9)
        new = _Fields(["TQ1", "1"])
        if minutes:
            new.set(6, cs.join([minutes, ss.join(["min", "minute", "UCUM"])]))
        if tq[3]:
            new.set(7, tq[3])
        if tq[4]:
            new.set(8, tq[4])
        index = segments.index(sch)
        segments = [*segments[: index + 1], new, *segments[index + 1 :]]
        if to >= (2, 7) and minutes and not sch.get(10):
            sch.set(10, "min")
    return segments


# Fields required only in some versions that a source in another version may leave empty, with the
# generic value we put there (tables 0305 / local): 2.3.1-2.4 require AIL-4 (location type) and 2.3-2.4
# AIP-4 (resource role).
_DEFAULTS = {
    ("AIL", 4): (((2, 3, 1), (2, 5)), ("D", "Department", "HL70305")),
    ("AIP", 4): (((2, 3), (2, 5)), ("RES", "Resource", "L")),
}


def _required_defaults(seg: _Fields, to: tuple[int, ...], cs: str) -> None:
    for (name, field), ((low, high), value) in _DEFAULTS.items():
        if seg.name == name and low <= to < high and not seg.get(field):
            seg.set(field, cs.join(value))


def _pid(pid: _Fields, to: tuple[int, ...], cs: str, rs: str) -> None:
    if to >= (2, 7) and pid.get(2) and not pid.get(3):
        pid.set(3, pid.get(2))
    for n in (13, 14):
        raw = pid.get(n)
        if raw:
            pid.set(n, rs.join(_xtn(rep, to, cs) for rep in raw.split(rs)))


def _xtn(raw: str, to: tuple[int, ...], cs: str) -> str:
    comps = raw.split(cs) + [""] * 12
    if to >= (2, 7):
        if comps[0] and not (comps[6] or comps[11]):
            comps[11] = comps[0]
        comps[0] = ""
        if not comps[2]:
            comps[2] = "PH"
    elif to < (2, 5):
        if not comps[0]:
            local = comps[6]
            number = f"({comps[5]}){local[:3]}-{local[3:]}" if comps[5] and len(local) == 7 else ""
            comps[0] = number or comps[11] or local
        comps = comps[:9]
    out = cs.join(comps)
    while out.endswith(cs):
        out = out[: -len(cs)]
    return out


__all__ = ["SIU_VERSIONS", "canonical_version", "convert_siu"]
