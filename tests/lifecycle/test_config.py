"""``[appointments]``: ``siu_match`` (which SCH id finds the record of an SIU from the RIS) and
``confirm_siu`` (a patient's "1" also queues an SIU^S14 to the EMRs)."""

from __future__ import annotations

import pytest

from radsched.errors import ConfigError
from radsched.scheduling.lifecycle_component import confirm_siu, siu_match


def test_default_is_filler_then_placer() -> None:
    assert siu_match({}) == ("filler", "placer")


@pytest.mark.parametrize("value", [["placer"], ["filler"], ["placer", "filler"]])
def test_site_choices(value: list[str]) -> None:
    assert siu_match({"siu_match": value}) == tuple(value)


@pytest.mark.parametrize(
    "table", [{"siu_match": "placer"}, {"siu_match": []}, {"siu_match": ["sch1"]}, {"match": 1}]
)
def test_bad_values_name_the_key(table: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"\[appointments\]"):
        siu_match(table)


def test_confirm_siu_is_off_unless_the_site_turns_it_on() -> None:
    assert confirm_siu({}) is False
    assert confirm_siu({"confirm_siu": True}) is True
    assert siu_match({"confirm_siu": True}) == ("filler", "placer")  # a known key of the table


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_confirm_siu_takes_only_a_boolean(value: object) -> None:
    with pytest.raises(ConfigError, match=r"\[appointments\] confirm_siu"):
        confirm_siu({"confirm_siu": value})
