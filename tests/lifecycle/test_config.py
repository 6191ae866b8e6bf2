"""``[appointments] siu_match``: which SCH id finds the record of an SIU from the RIS."""

from __future__ import annotations

import pytest

from radsched.errors import ConfigError
from radsched.scheduling.lifecycle_component import siu_match


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
