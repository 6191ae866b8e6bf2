"""Issue 13 item 2: "1" confirms, and with ``[appointments] confirm_siu = true`` the EMRs that got the
S12 also get an SIU^S14 with the confirmation.

Through a real daemon, the simulated RIS on loopback, the Twilio double and an EMR peer; the S14 is
checked by the independent parser (hl7apy, strict).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from channels import parse, parse_siu
from mllp.testing import LoopbackPeer
from radsched.simris import SimRis
from tests.channels.hl7check import assert_valid_hl7
from tests.smsflow.conftest import Clock, Flow, Patient, start_flow_with_emr
from tests.smsflow.test_conversation import book_by_text, converse
from tests.twilio_double import TwilioDouble

Started = Callable[[bool], AbstractAsyncContextManager[tuple[Flow, LoopbackPeer]]]


@pytest.fixture
def daemon(
    database_url: str,
    data_dir: Path,
    twilio: TwilioDouble,
    clock: Clock,
    sim: SimRis,
    tmp_path: Path,
) -> Started:
    """``daemon(confirm_siu)``: a daemon with that ``[appointments]`` setting in RADSCHED_CONFIG."""

    @asynccontextmanager
    async def start(confirm_siu: bool) -> AsyncIterator[tuple[Flow, LoopbackPeer]]:
        config = tmp_path / "radsched.toml"
        config.write_text(f"[appointments]\nconfirm_siu = {str(confirm_siu).lower()}\n")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RADSCHED_CONFIG", str(config))
            async with start_flow_with_emr(database_url, data_dir, twilio, clock, sim) as started:
                yield started

    return start


async def _queued(flow: Flow) -> list[str]:
    rows = await flow.fetch("SELECT message_type FROM hl7_outbox ORDER BY id")
    return [r["message_type"] for r in rows]


async def test_1_tells_the_emr_with_an_s14_when_the_site_turns_it_on(daemon: Started) -> None:
    async with daemon(True) as (flow, emr):
        patient = Patient()
        await book_by_text(flow, patient)
        [s12] = await emr.wait_for_frames(1)
        assert (await converse(flow, patient, "1")).startswith("Thank you")
        # Queued in the reply's transaction: the row is there when the thank-you is.
        assert await _queued(flow) == ["SIU^S12", "SIU^S14"]
        s14 = (await emr.wait_for_frames(2))[1]
        assert_valid_hl7(s14)
        siu, booked = parse_siu(s14), parse_siu(s12)
        assert siu.trigger == "S14"
        assert (siu.placer_appointment_id, siu.filler_appointment_id, siu.mrn) == (
            booked.placer_appointment_id,
            booked.filler_appointment_id,
            patient.mrn,
        )
        assert siu.start == booked.start
        sch = parse(s14).require("SCH")
        assert (sch.get(6, 1), sch.get(6, 2)) == ("CONFIRMED", "Confirmed by the patient")
        assert sch.get(25) == "Booked"  # table 0278 has no "Confirmed"
        # A second "1" is thanked again and tells the EMR nothing new.
        assert (await converse(flow, patient, "1")).startswith("Thank you")
        assert await _queued(flow) == ["SIU^S12", "SIU^S14"]


async def test_1_queues_no_siu_by_default(daemon: Started) -> None:
    async with daemon(False) as (flow, emr):
        patient = Patient()
        await book_by_text(flow, patient)
        await emr.wait_for_frames(1)
        assert (await converse(flow, patient, "1")).startswith("Thank you")
        [row] = await flow.fetch("SELECT confirmed_at FROM appointments")
        assert row["confirmed_at"] is not None
        assert await _queued(flow) == ["SIU^S12"]
