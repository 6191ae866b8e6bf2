"""The reminder's text: the checked template, the prep line from ``[sms.prep]`` and when it takes a second text."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from radsched.conversation.gsm import segment_info
from radsched.conversation.reminders import PREP_TEMPLATE_ID, ReminderTexts, check_prep_lines
from radsched.conversation.templates import TemplateSet
from radsched.errors import ConfigError
from radsched.intake.component import conversation_config
from radsched.settings import Settings
from radsched.sms.reminders import reminder_texts

NY = ZoneInfo("America/New_York")
START = datetime(2026, 12, 8, 9, 30, tzinfo=NY)


def texts(prep: dict[str, str]) -> ReminderTexts:
    return ReminderTexts(TemplateSet.default(), "Lakeside Imaging", "(555) 010-0200", prep, NY)


def render(prep: dict[str, str], **kw: str) -> list[tuple[str, str]]:
    values = {"location_name": "Main Campus", "modality": "MR", "procedure_code": "70551"}
    values.update(kw)
    return texts(check_prep_lines(prep)).render(start=START, language=None, **values)


def test_the_reminder_says_what_where_when_and_the_numbered_replies() -> None:
    assert render({}) == [
        (
            "reminder",
            "Reminder: your MRI at Main Campus on Tue Dec 8 9:30am. Reply 1 to confirm, 2 to change,"
            " 3 to cancel.",
        )
    ]
    [(_, spanish)] = texts({}).render(
        start=START, location_name="Main Campus", modality="MR", procedure_code="", language="es"
    )
    assert spanish.startswith("Recordatorio: su resonancia en Main Campus el mar 8 dic 9:30.")


def test_a_short_prep_line_rides_along_in_the_same_segment() -> None:
    [(template_id, text)] = render({"MR": "Nothing to eat 4 hours before."})
    assert template_id == "reminder"
    assert text.endswith("3 to cancel.\nNothing to eat 4 hours before.")
    assert segment_info(text).single_segment


def test_a_long_prep_line_follows_as_its_own_text() -> None:
    line = (
        "Nothing to eat or drink 4 hours before. Take your usual medicines with a sip of water. "
        * 1
    )
    line += "Leave jewellery at home."
    sent = render({"MR": line}, location_name="W" * 24)
    assert [t for t, _ in sent] == ["reminder", PREP_TEMPLATE_ID]
    assert sent[1][1] == line
    assert all(segment_info(text).single_segment for _, text in sent)


def test_the_procedure_code_wins_over_the_modality() -> None:
    prep = {"MR": "Wear clothes without metal.", "70551": "Arrive 15 minutes early."}
    assert render(prep)[0][1].endswith("Arrive 15 minutes early.")
    assert render(prep, procedure_code="70553")[0][1].endswith("Wear clothes without metal.")
    assert render(prep, modality="CT", procedure_code="")[0][1].endswith("3 to cancel.")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Nothing to eat after {time}.", "placeholders"),
        ("Bring your card {", "placeholders"),
        ("Ne mangez rien à partir de minuit. ✆", "GSM-7"),
        ("Puede tomar agua, está bien.", "GSM-7"),
        ("x" * 161, "160"),
        ("Reply CANCEL if you cannot come.", "CANCEL"),
        ("   ", "non-empty"),
    ],
)
def test_bad_prep_lines_are_refused(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_prep_lines({"MR": line})


def test_a_bad_prep_line_stops_start_up_naming_it() -> None:
    settings = Settings(practice_name="P", scheduling_phone="1")
    cfg = conversation_config(settings, {})
    with pytest.raises(ConfigError, match=r"\[sms.prep\] CT: no placeholders"):
        reminder_texts(cfg, {"sms": {"prep": {"CT": "Hi {name}"}}})
    with pytest.raises(ConfigError, match=r"\[sms.prep\]: must be a table"):
        reminder_texts(cfg, {"sms": {"prep": "Nothing to eat"}})
    assert reminder_texts(cfg, {"sms": {"prep": {"ct": "Drink water."}}}).prep == {
        "CT": "Drink water."
    }


def test_settings_check_reminders_and_window() -> None:
    assert Settings(reminders=" 3d, 1d ").reminders == "3d,1d"
    assert Settings(reminders="OFF", reminder_window="off").reminders == "off"
    for bad in ({"reminders": "3 days"}, {"reminder_window": "18:00-09:00"}):
        with pytest.raises(ValueError):
            Settings(**bad)  # type: ignore[arg-type]
