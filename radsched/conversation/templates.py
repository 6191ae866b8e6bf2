"""Message templates: load, check and render the texts the engine sends.

A :class:`TemplateSet` is built once at start-up (``TemplateSet.from_mapping`` with what the
daemon read from TOML) and every rule is checked there, so a bad translation stops start-up
instead of reaching a patient:

- only the placeholders in :data:`PLACEHOLDER_MAX_LEN`, and per template only those in
  :data:`ALLOWED`; names that could carry PHI (``name``, ``mrn``, ``dob``, ``diagnosis`` …) get
  a message that says so;
- no word starting with "cancel" (Twilio's CANCEL opts the patient out of *everything*; the
  FCC counts "cancelar" the same way);
- the texts DESIGN.md section 7 requires (practice name and phone in HELP, STOP in the consent
  request, ``{menu}`` in menus, code/time/location in the confirmation) are present;
- rendered with the longest value each placeholder may take, the text is one segment: at most
  160 GSM-7 septets, or 70 UCS-2 units if the template itself needs UCS-2.

Values are made GSM-safe and cut to their maximum length at render time (see
:func:`radsched.conversation.gsm.to_gsm_value`), which is what makes the start-up check a guarantee.
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from radsched.conversation.catalog import (
    DEFAULT_LANGUAGE,
    DEFAULT_PROCEDURE_TYPES,
    DEFAULT_TEXTS,
    TIME_FORMATS,
)
from radsched.conversation.gsm import SegmentInfo, segment_info, to_gsm_value
from radsched.conversation.keywords import normalise_words

__all__ = [
    "ALLOWED",
    "PHI_PLACEHOLDERS",
    "PLACEHOLDER_MAX_LEN",
    "Rendered",
    "TemplateError",
    "TemplateId",
    "TemplateSet",
    "format_local_time",
]


class TemplateId(enum.StrEnum):
    CONSENT_REQUEST = "consent_request"
    HELP = "help"
    OPTED_OUT = "opted_out"
    RESUBSCRIBED = "resubscribed"
    CALL_US = "call_us"
    DECLINED = "declined"
    NO_AVAILABILITY = "no_availability"
    ENDED = "ended"
    LOCATION_MENU = "location_menu"
    NO_SLOTS_AT_LOCATION = "no_slots_at_location"
    SLOT_MENU = "slot_menu"
    SLOT_TAKEN = "slot_taken"
    NO_MORE_SLOTS = "no_more_slots"
    CONFIRMATION = "confirmation"
    CHANGE_MENU = "change_menu"  # the slot menu of a change conversation ("2" after booking)
    RESCHEDULED = "rescheduled"  # the change conversation moved the appointment
    HINT_MORE_LOCATIONS = "hint_more_locations"
    HINT_MORE_TIMES = "hint_more_times"
    RIS_WAIT = "ris_wait"  # the RIS is down; the conversation waits for it (ris_wait.py)
    # After the booking: the RIS cancelled or moved an appointment booked by text (news.py).
    APPOINTMENT_CANCELLED = "appointment_cancelled"
    APPOINTMENT_MOVED = "appointment_moved"
    # Replies to an appointment booked by text, and staff's answer (after_booking.py).
    REPLY_CONFIRMED = "reply_confirmed"
    REQUEST_TAKEN = "request_taken"
    REQUEST_APPROVED = "request_approved"
    REQUEST_DENIED = "request_denied"
    REMINDER = "reminder"  # before the appointment (radsched/sms/reminders.py)
    # Earlier-slot offers (waitlist.py): the confirmation of a booking further out than
    # WAITLIST_MIN_DAYS offers the list; replies W (join/leave), and YES/NO to an offer.
    CONFIRMATION_WAITLIST = "confirmation_waitlist"
    WAITLIST_JOINED = "waitlist_joined"
    WAITLIST_LEFT = "waitlist_left"
    WAITLIST_OFFER = "waitlist_offer"
    WAITLIST_KEPT = "waitlist_kept"
    WAITLIST_GONE = "waitlist_gone"


# The allow-list, with the longest value each may take (characters; values are cut to this).
# ``menu`` and ``more`` are built by the engine from numbered items and a hint template.
PLACEHOLDER_MAX_LEN: Mapping[str, int] = {
    "practice_name": 30,
    "scheduling_phone": 16,
    "location_name": 24,
    "time": 18,
    "procedure_type": 18,
    "code": 16,
}
MENU_LABEL_MAX_LEN = 24  # a location name or a slot time on one menu line
MAX_MENU_ITEMS = 9  # single-digit numbers only: "10" is easy to mistype as "1"

_GLOBAL = frozenset({"practice_name", "scheduling_phone"})
_MENU = frozenset({"menu", "more"})
ALLOWED: Mapping[TemplateId, frozenset[str]] = {
    TemplateId.CONSENT_REQUEST: _GLOBAL,
    TemplateId.HELP: _GLOBAL,
    TemplateId.OPTED_OUT: _GLOBAL,
    TemplateId.RESUBSCRIBED: _GLOBAL,
    TemplateId.CALL_US: _GLOBAL,
    TemplateId.DECLINED: _GLOBAL,
    TemplateId.NO_AVAILABILITY: _GLOBAL,
    TemplateId.ENDED: _GLOBAL,
    TemplateId.LOCATION_MENU: _GLOBAL | _MENU,
    TemplateId.NO_SLOTS_AT_LOCATION: _GLOBAL | _MENU | {"location_name"},
    TemplateId.SLOT_MENU: _GLOBAL | _MENU | {"location_name"},
    TemplateId.SLOT_TAKEN: _GLOBAL | _MENU | {"location_name"},
    TemplateId.NO_MORE_SLOTS: _GLOBAL | {"location_name"},
    TemplateId.CONFIRMATION: _GLOBAL | {"procedure_type", "location_name", "time", "code"},
    TemplateId.CHANGE_MENU: _GLOBAL | _MENU | {"location_name"},
    TemplateId.RESCHEDULED: _GLOBAL | {"procedure_type", "location_name", "time", "code"},
    TemplateId.HINT_MORE_LOCATIONS: frozenset(),
    TemplateId.HINT_MORE_TIMES: frozenset(),
    TemplateId.RIS_WAIT: _GLOBAL,
    TemplateId.APPOINTMENT_CANCELLED: _GLOBAL | {"procedure_type", "time"},
    TemplateId.APPOINTMENT_MOVED: _GLOBAL | {"procedure_type", "time", "code"},
    TemplateId.REPLY_CONFIRMED: _GLOBAL | {"procedure_type", "time"},
    TemplateId.REQUEST_TAKEN: _GLOBAL,
    TemplateId.REQUEST_APPROVED: _GLOBAL | {"procedure_type", "time"},
    TemplateId.REQUEST_DENIED: _GLOBAL,
    TemplateId.REMINDER: _GLOBAL | {"procedure_type", "location_name", "time"},
    TemplateId.CONFIRMATION_WAITLIST: _GLOBAL | {"procedure_type", "location_name", "time", "code"},
    TemplateId.WAITLIST_JOINED: _GLOBAL | {"procedure_type"},
    TemplateId.WAITLIST_LEFT: _GLOBAL | {"procedure_type", "time"},
    TemplateId.WAITLIST_OFFER: _GLOBAL | {"procedure_type", "time"},
    TemplateId.WAITLIST_KEPT: _GLOBAL | {"procedure_type", "time"},
    TemplateId.WAITLIST_GONE: _GLOBAL | {"procedure_type", "time"},
}
# What each template must contain, as placeholders and as (normalised) words.
_REQUIRED_FIELDS: Mapping[TemplateId, frozenset[str]] = {
    TemplateId.CONSENT_REQUEST: frozenset({"practice_name"}),
    TemplateId.HELP: _GLOBAL,
    TemplateId.CALL_US: frozenset({"scheduling_phone"}),
    TemplateId.NO_AVAILABILITY: frozenset({"scheduling_phone"}),
    TemplateId.LOCATION_MENU: frozenset({"menu"}),
    TemplateId.NO_SLOTS_AT_LOCATION: frozenset({"menu"}),
    TemplateId.SLOT_MENU: frozenset({"menu"}),
    TemplateId.SLOT_TAKEN: frozenset({"menu"}),
    TemplateId.CONFIRMATION: frozenset({"location_name", "time", "code"}),
    TemplateId.CHANGE_MENU: frozenset({"menu"}),
    TemplateId.RESCHEDULED: frozenset({"time", "code"}),
    TemplateId.APPOINTMENT_CANCELLED: frozenset({"time", "scheduling_phone"}),
    TemplateId.APPOINTMENT_MOVED: frozenset({"time", "code"}),
    TemplateId.REQUEST_APPROVED: frozenset({"time"}),
    TemplateId.REQUEST_DENIED: frozenset({"scheduling_phone"}),
    TemplateId.REMINDER: frozenset({"location_name", "time"}),
    TemplateId.CONFIRMATION_WAITLIST: frozenset({"location_name", "time", "code"}),
    TemplateId.WAITLIST_OFFER: frozenset({"time"}),
}
_REQUIRED_WORDS: Mapping[TemplateId, str] = {
    TemplateId.CONSENT_REQUEST: "stop",
    TemplateId.HELP: "stop",
    TemplateId.CONFIRMATION_WAITLIST: "w",
    TemplateId.WAITLIST_JOINED: "w",
}
# The reminder's numbered replies may say what "3" does ("3 to cancel", "3 para cancelar"): the word is
# allowed there and only there, never as a reply word (reference/sms.md trap 1).
_NUMBERED_CANCEL = re.compile(r"\b[0-9]\s+(?:to|para)\s+cancel[a-z]*\b", re.IGNORECASE)
_NUMBERED_CANCEL_OK = frozenset({TemplateId.REMINDER})
_MENU_HINT = {
    TemplateId.LOCATION_MENU: TemplateId.HINT_MORE_LOCATIONS,
    TemplateId.NO_SLOTS_AT_LOCATION: TemplateId.HINT_MORE_LOCATIONS,
    TemplateId.SLOT_MENU: TemplateId.HINT_MORE_TIMES,
    TemplateId.CHANGE_MENU: TemplateId.HINT_MORE_TIMES,
    TemplateId.SLOT_TAKEN: TemplateId.HINT_MORE_TIMES,
}

# Refused with a specific message: these are the names someone would reach for to personalise
# a text, and every one of them is PHI or leads to it.
PHI_PLACEHOLDERS = frozenset(
    [
        "name",
        "first_name",
        "last_name",
        "patient",
        "patient_name",
        "full_name",
        "mrn",
        "dob",
        "birth",
        "birth_date",
        "date_of_birth",
        "age",
        "sex",
        "gender",
        "diagnosis",
        "indication",
        "reason",
        "icd",
        "icd10",
        "cpt",
        "procedure",
        "procedure_name",
        "procedure_code",
        "body_part",
        "order",
        "order_id",
        "accession",
        "address",
        "email",
        "phone",
        "ssn",
        "insurance",
        "physician",
        "doctor",
        "provider",
        "referring",
    ]
)


# PID-15 often carries three-letter codes; only languages we may ship need to be here.
_ISO_639_2 = {"eng": "en", "spa": "es", "fra": "fr", "fre": "fr", "por": "pt", "zho": "zh"}


class TemplateError(ValueError):
    """A template breaks a rule. The message names the language and template id."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """A text ready to send, with how many menu items made it in."""

    template_id: TemplateId
    text: str
    items_shown: int
    segment: SegmentInfo


def format_local_time(moment: datetime, language: str) -> str:
    """A slot start as the patient reads it, e.g. ``Tue Dec 1 9:30am`` / ``mar 1 dic 9:30``.

    ``moment`` must already be in the practice's time zone. No year: slots are weeks ahead.
    """
    weekdays, months, twelve_hour = TIME_FORMATS.get(language, TIME_FORMATS[DEFAULT_LANGUAGE])
    day, month = weekdays[moment.weekday()], months[moment.month - 1]
    if twelve_hour:
        hour = moment.hour % 12 or 12
        suffix = "am" if moment.hour < 12 else "pm"
        return f"{day} {month} {moment.day} {hour}:{moment.minute:02d}{suffix}"
    return f"{day} {moment.day} {month} {moment.hour}:{moment.minute:02d}"


@dataclass(frozen=True, slots=True)
class TemplateSet:
    """Checked templates for each language. Build with :meth:`default` or :meth:`from_mapping`."""

    default_language: str
    texts: Mapping[str, Mapping[TemplateId, str]]
    procedure_types: Mapping[str, Mapping[str, str]]

    @classmethod
    def default(cls) -> TemplateSet:
        return cls.from_mapping()

    @classmethod
    def from_mapping(
        cls,
        templates: Mapping[str, Mapping[str, str]] | None = None,
        procedure_types: Mapping[str, Mapping[str, str]] | None = None,
        *,
        default_language: str = DEFAULT_LANGUAGE,
    ) -> TemplateSet:
        """Overlay configured texts on the defaults and check every rule.

        ``templates`` is ``{language: {template_id: text}}``; a partial language falls back to
        the default language per template, so adding a language can be done one text at a time.
        ``procedure_types`` is ``{language: {DICOM modality: display name}}``, ``"*"`` the default.
        """
        merged = _overlay(DEFAULT_TEXTS, templates or {})
        if default_language not in merged:
            raise TemplateError(f"default language {default_language!r} has no templates")
        texts: dict[str, dict[TemplateId, str]] = {}
        for language, table in merged.items():
            unknown = set(table) - set(TemplateId)
            if unknown:
                raise TemplateError(f"{language}: unknown template id(s) {sorted(unknown)}")
            texts[language] = {
                tid: table.get(tid, merged[default_language].get(tid, "")) for tid in TemplateId
            }
        procedures = _overlay(DEFAULT_PROCEDURE_TYPES, procedure_types or {})
        for language, names in procedures.items():
            for code, name in names.items():
                if len(name) > PLACEHOLDER_MAX_LEN["procedure_type"] or not name.strip():
                    raise TemplateError(
                        f"procedure type {language}/{code}: must be 1-"
                        f"{PLACEHOLDER_MAX_LEN['procedure_type']} characters"
                    )
        result = cls(default_language, texts, procedures)
        for language in texts:
            for tid in TemplateId:
                result._check(language, tid)
        return result

    @property
    def languages(self) -> frozenset[str]:
        return frozenset(self.texts)

    def language(self, wanted: str | None) -> str:
        """The template language for ``wanted``, else the default language.

        Accepts what PID-15 and Accept-Language carry: ``es``, ``ES``, ``es-US``, ``es_MX`` and
        the ISO 639-2 codes ``spa``/``eng``, so the driver need not normalise.
        """
        if not wanted:
            return self.default_language
        code = wanted.strip().lower().replace("_", "-").split("-")[0]
        code = _ISO_639_2.get(code, code)
        return code if code in self.texts else self.default_language

    def procedure_type(self, language: str, modality: str) -> str:
        names = self.procedure_types.get(language) or self.procedure_types[self.default_language]
        return names.get(modality) or names.get("*") or "imaging exam"

    def render(
        self,
        language: str,
        template_id: TemplateId,
        params: Mapping[str, str],
        menu: Sequence[str] = (),
        *,
        more: bool = False,
    ) -> Rendered:
        """Fill a template. Menu templates show as many of ``menu`` as fit one segment.

        ``more`` says whether a further page exists beyond ``menu``; the hint is also shown
        when items had to be dropped. Raises :class:`TemplateError` for a placeholder the
        template may not use or a missing value - both are programming errors in the engine.
        """
        language = self.language(language)
        template = self.texts[language][template_id]
        values = {
            key: to_gsm_value(value, PLACEHOLDER_MAX_LEN[key])
            for key, value in params.items()
            if key in PLACEHOLDER_MAX_LEN
        }
        if template_id not in _MENU_HINT:
            text = _fill(template, values, language, template_id)
            return Rendered(template_id, text, 0, segment_info(text))
        labels = [to_gsm_value(label, MENU_LABEL_MAX_LEN) for label in menu[:MAX_MENU_ITEMS]]
        hint = self.texts[language][_MENU_HINT[template_id]]
        for count in range(len(labels), 0, -1):
            shown = labels[:count]
            text = _fill(
                template,
                {
                    **values,
                    "menu": "\n".join(f"{i} {label}" for i, label in enumerate(shown, 1)),
                    "more": hint if more or count < len(menu) else "",
                },
                language,
                template_id,
            )
            info = segment_info(text)
            if info.single_segment:
                return Rendered(template_id, text, count, info)
        raise TemplateError(f"{language}/{template_id}: not even one menu item fits")

    def menu_capacity(self, language: str, template_id: TemplateId, label_len: int) -> int:
        """How many menu items of ``label_len`` characters always fit, with worst-case values."""
        template = self.texts[language][template_id]
        hint = self.texts[language][_MENU_HINT[template_id]]
        label = "W" * min(label_len, MENU_LABEL_MAX_LEN)
        fits = 0
        for count in range(1, MAX_MENU_ITEMS + 1):
            menu = "\n".join(f"{i} {label}" for i in range(1, count + 1))
            text = _fill(template, {**_worst_values(), "menu": menu, "more": hint}, language, "")
            if not segment_info(text).single_segment:
                break
            fits = count
        return fits

    def _check(self, language: str, tid: TemplateId) -> None:
        template = self.texts[language][tid]
        where = f"template {language}/{tid}"
        if not template.strip():
            raise TemplateError(f"{where}: empty")
        fields = _fields(template, where)
        for field in sorted(fields - ALLOWED[tid]):
            if field in PHI_PLACEHOLDERS or any(p in field for p in ("name", "mrn", "dob")):
                raise TemplateError(f"{where}: placeholder {{{field}}} could carry PHI")
            raise TemplateError(
                f"{where}: placeholder {{{field}}} not allowed here; "
                f"allowed: {sorted(ALLOWED[tid])}"
            )
        missing = _REQUIRED_FIELDS.get(tid, frozenset()) - fields
        if missing:
            raise TemplateError(f"{where}: must contain {sorted('{' + m + '}' for m in missing)}")
        words = normalise_words(
            _NUMBERED_CANCEL.sub(" ", template) if tid in _NUMBERED_CANCEL_OK else template
        )
        if any(word.startswith("cancel") for word in words):
            raise TemplateError(
                f"{where}: must not mention CANCEL (Twilio opts the patient out of all texts)"
            )
        required_word = _REQUIRED_WORDS.get(tid)
        if required_word and required_word not in words:
            raise TemplateError(f"{where}: must tell the patient to reply {required_word.upper()}")
        if tid in _MENU_HINT:
            capacity = self.menu_capacity(language, tid, MENU_LABEL_MAX_LEN)
            if capacity < 1:
                raise TemplateError(f"{where}: no room for even one menu item in one segment")
            return
        text = _fill(template, _worst_values(), language, tid)
        info = segment_info(text)
        if not info.single_segment:
            raise TemplateError(
                f"{where}: {info.units} {info.encoding} units with the longest values; "
                f"one segment is {info.limit}"
            )


def _worst_values() -> dict[str, str]:
    # Sanitised values are GSM basic characters only, one septet (and one UCS-2 unit) each,
    # so length is the only thing that can make a value worse.
    return {key: "W" * size for key, size in PLACEHOLDER_MAX_LEN.items()}


def _fields(template: str, where: str) -> frozenset[str]:
    fields: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"{where}: {exc}") from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            # No attribute access, indexing or format specs: "{x.__class__}" and friends.
            raise TemplateError(f"{where}: placeholder {{{field}}} must be a plain name")
        fields.add(field)
    return frozenset(fields)


def _fill(template: str, values: Mapping[str, str], language: str, tid: str) -> str:
    try:
        return template.format_map(values).strip()
    except (KeyError, ValueError, IndexError) as exc:
        raise TemplateError(f"template {language}/{tid}: cannot fill ({exc})") from None


def _overlay(
    base: Mapping[str, Mapping[str, str]], extra: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, str]]:
    merged = {language: dict(table) for language, table in base.items()}
    for language, table in extra.items():
        merged.setdefault(language, {}).update(table)
    return merged
