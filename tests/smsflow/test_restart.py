"""A conversation left waiting on the RIS by a crash is picked up again when the daemon restarts.

Found by the chaos soak (tests/chaos, "bug 3"): a patient who picked a time just before the daemon
died heard nothing for the busy timeout and, when the booking had in fact been made, was told to
call instead of getting the confirmation code.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from channels import AckCode
from radsched.simris import SimRis, default_calendar
from tests.smsflow.conftest import Clock, Patient, start_flow
from tests.smsflow.test_conversation import CODE, converse, new_order_id
from tests.twilio_double import TwilioDouble


async def test_booking_interrupted_by_a_crash_is_confirmed_after_restart(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock
) -> None:
    keys = {"phone_hash_key": secrets.token_hex(32), "phi_key": secrets.token_hex(32)}
    async with SimRis(default_calendar(clock=clock)) as sim:
        await sim.start()
        common = {"ris_addr": f"127.0.0.1:{sim.port}", "shutdown_grace_s": 0.2, **keys}
        patient = Patient()
        async with start_flow(database_url, data_dir, twilio, clock, **common) as flow:
            assert (await flow.order(new_order_id(), patient)).code is AckCode.AA
            await flow.texts(1)
            await converse(flow, patient, "yes")
            await converse(flow, patient, "1")
            # The RIS books the slot but its answer is held; the daemon stops before it arrives.
            sim.set_faults(stall=True)
            await flow.engine.on_inbound_text(patient.e164, "2", "SM" + secrets.token_hex(16), "t")
            assert (await flow.conversation(patient))["state"] == "booking"
        sim.set_faults(stall=False)
        texts_before = len(twilio.accepted)
        async with start_flow(database_url, data_dir, twilio, clock, **common) as flow:
            confirmation = (await flow.texts(texts_before + 1))[-1]
            assert confirmation.to == patient.e164
            assert "Booked" in confirmation.body and CODE.search(
                confirmation.body.split("Code")[-1]
            )
            conv = await flow.conversation(patient)
            assert conv["state"] == "booked"
        assert len(sim.bookings) == 1  # asked again with the same MSH-10: booked once
