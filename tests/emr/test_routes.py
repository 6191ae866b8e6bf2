"""EMR_ROUTES grammar: facility -> destination(s), dialect, receiver; mistakes name the setting."""

from __future__ import annotations

import pytest

from channels import Party
from radsched.emr.routes import parse_routes
from radsched.errors import ConfigError
from radsched.settings import HostPort


def test_fan_out_default_and_options() -> None:
    routes = parse_routes(
        "HOSP=epic.internal:6661;ch10-2.5.1;receiver=EPIC^HOSP,\n"
        " HOSP=10.0.0.7:7000;qie-2.3;name=archive , *=athena:6661"
    )
    hosp = routes.for_facility("HOSP")
    assert [r.destination.name for r in hosp] == ["epic.internal:6661", "archive"]
    assert [r.siu_version for r in hosp] == ["2.5.1", "2.3"]
    assert hosp[0].receiver == Party("EPIC", "HOSP")
    assert hosp[1].receiver == Party("EMR", "HOSP")
    assert hosp[1].destination.address == HostPort("10.0.0.7", 7000)
    other = routes.for_facility("CLINIC")
    assert [(r.facility, r.destination.name, r.receiver) for r in other] == [
        ("*", "athena:6661", Party("EMR", "EMR"))
    ]
    assert routes.for_facility(None) == other
    assert [d.name for d in routes.destinations] == ["epic.internal:6661", "archive", "athena:6661"]


def test_no_default_means_unrouted() -> None:
    assert parse_routes("HOSP=h:1").for_facility("ELSEWHERE") == ()


def test_several_facilities_share_one_destination_queue() -> None:
    routes = parse_routes("A=h:1, B=h:1;qie-2.3")
    assert [d.name for d in routes.destinations] == ["h:1"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("HOSP", "must look like FACILITY=HOST:PORT"),
        ("HOSP=host", "HOST:PORT"),
        ("HOSP=h:0", "port 0"),
        ("HOSP=h:1;hl7-9", "unknown option"),
        ("HOSP=h:1;receiver=EPIC", "APP^FACILITY"),
        ("HOSP=h:1;name=bad name", "name may use"),
        ("HOSP=h:1;name=sink", "reserved"),
        ("A=h:1;name=x, B=g:2;name=x", "names two addresses"),
        ("HOSP=h:1,HOSP=h:1", "twice"),
        ("HO^SP=h:1", "invalid facility"),
        (" , ", "lists no route"),
    ],
)
def test_mistakes_name_the_setting(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match="RADSCHED_EMR_ROUTES") as info:
        parse_routes(text)
    assert why in str(info.value)


def test_version_option_overrides_the_dialects_siu_version() -> None:
    routes = parse_routes("HOSP=epic:6661;version=2.7, HOSP=old:6661;qie-2.3;version=2.4, *=a:1")
    assert [(r.siu_version, r.version) for r in routes.for_facility("HOSP")] == [
        ("2.7", "2.7"),
        ("2.4", "2.4"),
    ]
    assert routes.for_facility("X")[0].siu_version == "2.5.1"
    with pytest.raises(ConfigError, match="version must be one of"):
        parse_routes("*=a:1;version=2.9")
