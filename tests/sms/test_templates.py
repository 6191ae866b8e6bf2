"""Templates: every default obeys the rules, bad configuration is refused, rendering is safe."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radsched.conversation.config import ConversationConfig
from radsched.conversation.gsm import Encoding, segment_info, to_gsm_value
from radsched.conversation.keywords import normalise_words
from radsched.conversation.templates import (
    ALLOWED,
    PLACEHOLDER_MAX_LEN,
    TemplateError,
    TemplateId,
    TemplateSet,
    format_local_time,
)

DEFAULTS = TemplateSet.default()
MENUS = [
    TemplateId.LOCATION_MENU,
    TemplateId.NO_SLOTS_AT_LOCATION,
    TemplateId.SLOT_MENU,
    TemplateId.SLOT_TAKEN,
    TemplateId.CHANGE_MENU,
]


def worst(tid: TemplateId) -> dict[str, str]:
    return {k: "W" * n for k, n in PLACEHOLDER_MAX_LEN.items() if k in ALLOWED[tid]}


@pytest.mark.parametrize("language", sorted(DEFAULTS.languages))
@pytest.mark.parametrize("tid", list(TemplateId))
def test_every_default_template_keeps_every_rule(language: str, tid: TemplateId) -> None:
    template = DEFAULTS.texts[language][tid]
    # Checked again here, independently of TemplateSet._check, so a bug there cannot hide one.
    # Only the reminder may say what its numbered reply 3 does ("3 to cancel"), nothing else.
    if tid is TemplateId.REMINDER:
        template_words = template.replace("3 to cancel", "").replace("3 para cancelar", "")
    else:
        template_words = template
    words = normalise_words(template_words)
    assert not any(w.startswith("cancel") for w in words)
    for phi in ("name}", "mrn", "dob", "diagnos", "indication", "icd", "cpt"):
        assert (
            phi
            not in template.replace("{practice_name}", "").replace("{location_name}", "").lower()
        )
    assert segment_info(template).encoding is Encoding.GSM7, "defaults must be GSM-7"
    labels = ["W" * 18] * 3 if tid in MENUS else []
    rendered = DEFAULTS.render(language, tid, worst(tid), labels, more=True)
    assert rendered.segment.single_segment
    if tid in MENUS:
        times = "slot" in tid or tid is TemplateId.CHANGE_MENU
        assert rendered.items_shown >= 2 if times else rendered.items_shown >= 1


def test_texts_design_md_requires() -> None:
    for language in DEFAULTS.languages:
        texts = DEFAULTS.texts[language]
        assert "{practice_name}" in texts[TemplateId.CONSENT_REQUEST]
        assert "STOP" in texts[TemplateId.CONSENT_REQUEST]
        assert "{practice_name}" in texts[TemplateId.HELP]
        assert "{scheduling_phone}" in texts[TemplateId.HELP]
        assert "{scheduling_phone}" in texts[TemplateId.CALL_US]
    en = DEFAULTS.texts["en"]
    assert "Reply YES" in en[TemplateId.CONSENT_REQUEST]
    assert "rates may apply" in en[TemplateId.CONSENT_REQUEST]
    for field in ("{procedure_type}", "{location_name}", "{time}", "{code}"):
        assert field in en[TemplateId.CONFIRMATION]


def test_three_slots_fit_by_default() -> None:
    cfg = ConversationConfig("W" * 30, "W" * 16)
    assert cfg.slot_page_size == 3
    assert ConversationConfig("X", "1", slots_per_page=9).slot_page_size < 9


def override(tid: str, text: str, language: str = "en") -> TemplateSet:
    return TemplateSet.from_mapping({language: {tid: text}})


@pytest.mark.parametrize(
    ("tid", "text", "message"),
    [
        ("help", "Hi {patient_name}, call {scheduling_phone} {practice_name} STOP", "PHI"),
        ("call_us", "{mrn}: call {scheduling_phone}", "PHI"),
        ("call_us", "Your {diagnosis} needs imaging, call {scheduling_phone}", "PHI"),
        ("call_us", "About your {dob}: call {scheduling_phone}", "PHI"),
        ("confirmation", "{indication} {code} {time} {location_name}", "PHI"),
        ("call_us", "Call {scheduling_phone} about {procedure_type}", "not allowed here"),
        ("call_us", "Call {scheduling_phone} or {foo}", "not allowed here"),
        ("call_us", "Call {scheduling_phone.__class__}", "plain name"),
        ("call_us", "Call {scheduling_phone!r}", "plain name"),
        ("call_us", "Call {scheduling_phone:>40}", "plain name"),
        ("call_us", "Call {scheduling_phone", "call_us"),
        ("call_us", "Please call us", "scheduling_phone"),
        ("slot_menu", "Pick a time at {location_name}", "menu"),
        ("consent_request", "{practice_name}: reply YES to book.", "STOP"),
        ("call_us", "Reply CANCEL to stop, or call {scheduling_phone}", "CANCEL"),
        ("call_us", "Para cancelar llame al {scheduling_phone}", "CANCEL"),
        ("call_us", "Reply 3 to cancel, or call {scheduling_phone}", "CANCEL"),
        ("reminder", "Your exam at {location_name} {time}. Reply CANCEL to cancel.", "CANCEL"),
        ("reminder", "Your exam at {location_name} {time}. 3 to cancel, or CANCEL", "CANCEL"),
        ("reminder", "Hi {first_name}, your exam at {location_name} {time}.", "PHI"),
        ("reminder", "Your exam at {location_name}. Reply 1 to confirm.", "time"),
        (
            "reminder",
            "Your {procedure_type} {time} at {location_name}. " + "x" * 100,
            "one segment",
        ),
        ("call_us", "Call {scheduling_phone}. " + "x" * 140, "one segment"),
        ("call_us", "Llámenos al {scheduling_phone}, " + "ó" * 50, "one segment"),
        ("call_us", "  ", "empty"),
        ("no_such_template", "hello", "unknown template"),
    ],
)
def test_bad_templates_are_refused(tid: str, text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        override(tid, text)


def test_ucs2_template_is_allowed_when_it_fits_70() -> None:
    ts = override("call_us", "Llame al {scheduling_phone} ✆", "es")
    rendered = ts.render(
        "es", TemplateId.CALL_US, {"scheduling_phone": "555", "practice_name": "P"}
    )
    assert rendered.segment.encoding is Encoding.UCS2 and rendered.segment.single_segment


def test_a_new_language_can_be_added_one_text_at_a_time() -> None:
    ts = TemplateSet.from_mapping({"fr": {"call_us": "Appelez le {scheduling_phone}."}})
    values = {"scheduling_phone": "555", "practice_name": "P"}
    assert ts.render("fr", TemplateId.CALL_US, values).text == "Appelez le 555."
    assert ts.render("fr", TemplateId.HELP, values).text.startswith("P scheduling texts")
    assert ts.language("de") == "en"
    for code in ("es", "ES", "es-US", "es_MX", "spa", " SPA "):
        assert DEFAULTS.language(code) == "es", code
    for other in (None, "", "eng", "en-GB", "xx", "-"):
        assert DEFAULTS.language(other) == "en", other


def test_procedure_types_are_configurable_and_bounded() -> None:
    ts = TemplateSet.from_mapping(procedure_types={"en": {"MG": "imaging exam"}})
    assert ts.procedure_type("en", "MG") == "imaging exam"
    assert ts.procedure_type("en", "CR") == "X-ray"
    assert ts.procedure_type("es", "ZZ") == "examen de imagen"
    with pytest.raises(TemplateError, match="procedure type"):
        TemplateSet.from_mapping(procedure_types={"en": {"CT": "x" * 40}})


def test_config_refuses_practice_values_that_would_be_cut_or_go_ucs2() -> None:
    with pytest.raises(ValueError, match="PRACTICE_NAME"):
        ConversationConfig("A" * 31, "555")
    with pytest.raises(ValueError, match="PRACTICE_NAME"):
        ConversationConfig("Clínica Sur", "555")  # í is not GSM-7
    with pytest.raises(ValueError, match="SCHEDULING_PHONE"):
        ConversationConfig("Lakeside", "")


def test_values_cannot_forge_menu_lines_or_break_gsm() -> None:
    rendered = DEFAULTS.render(
        "en",
        TemplateId.SLOT_MENU,
        {"practice_name": "P", "scheduling_phone": "1", "location_name": "A\n9 Fake {x} ~ €"},
        ["Tue\n2 fake"],
    )
    assert rendered.text.count("\n") == 1
    assert "A 9 Fake (x) - E" in rendered.text
    assert rendered.segment.encoding is Encoding.GSM7


def test_menus_show_only_what_fits() -> None:
    labels = [f"Imaging Center Number {i}" for i in range(1, 10)]
    rendered = DEFAULTS.render(
        "en", TemplateId.LOCATION_MENU, {"practice_name": "P", "scheduling_phone": "1"}, labels
    )
    assert 1 <= rendered.items_shown < 9
    assert rendered.segment.single_segment
    assert rendered.text.endswith("MORE for others")


def test_local_time_formats() -> None:
    moment = datetime(2026, 12, 5, 0, 5)
    assert format_local_time(moment, "en") == "Sat Dec 5 12:05am"
    assert format_local_time(moment.replace(hour=13), "es") == "sab 5 dic 13:05"
    assert format_local_time(moment, "xx") == "Sat Dec 5 12:05am"
    longest = format_local_time(datetime(2026, 9, 30, 12, 45), "en")
    assert len(longest) <= PLACEHOLDER_MAX_LEN["time"]


_VALUE = st.text(max_size=60)


@given(
    st.sampled_from(sorted(DEFAULTS.languages)),
    st.sampled_from(list(TemplateId)),
    st.fixed_dictionaries({k: _VALUE for k in PLACEHOLDER_MAX_LEN}),
    st.lists(_VALUE, max_size=12),
    st.booleans(),
)
def test_any_values_render_in_one_segment_or_are_refused(
    language: str, tid: TemplateId, values: dict[str, str], menu: list[str], more: bool
) -> None:
    params = {k: v for k, v in values.items() if k in ALLOWED[tid]}
    try:
        first = DEFAULTS.render(language, tid, params, menu, more=more)
    except TemplateError:
        # Refusal must be deterministic, never a coin toss.
        with pytest.raises(TemplateError):
            DEFAULTS.render(language, tid, params, menu, more=more)
        return
    assert first.segment.single_segment
    assert first == DEFAULTS.render(language, tid, params, menu, more=more)


@given(st.text(max_size=200))
def test_any_configured_text_is_accepted_only_if_it_fits(text: str) -> None:
    try:
        ts = override("call_us", text)
    except TemplateError:
        return
    rendered = ts.render(
        "en",
        TemplateId.CALL_US,
        {k: "W" * PLACEHOLDER_MAX_LEN[k] for k in ALLOWED[TemplateId.CALL_US]},
    )
    assert rendered.segment.single_segment


@given(st.text(max_size=80), st.integers(min_value=1, max_value=40))
def test_gsm_values_are_basic_gsm_and_bounded(value: str, limit: int) -> None:
    clean = to_gsm_value(value, limit)
    info = segment_info(clean)
    assert info.encoding is Encoding.GSM7 and info.units == len(clean) <= limit
    assert "\n" not in clean
