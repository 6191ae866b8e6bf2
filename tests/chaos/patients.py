"""Patients: read the texts the Twilio double accepted and reply the way a person would.

A patient answers the consent request YES, picks a location and a time by number (at random, so
some pick a time another patient just took), and stops at the confirmation or a call-us text.
Replies go through the double as signed inbound webhooks to the daemon's current HTTP address.
A reply that does not get a 200 (daemon killed, database restarting) is delivered again with the
SAME MessageSid, as Twilio does, until it is answered; the daemon must act on it once.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from tests.twilio_double import Message, TwilioDouble, new_sid

_MENU_LINE = re.compile(r"^(\d+) ", re.MULTILINE)


@dataclass
class Patient:
    phone: str
    replies: int = 0
    """Replies sent so far: the conversation step a text belongs to."""
    finished: str = ""


@dataclass
class Texted:
    to: str
    body: str
    step: int


@dataclass
class Patients:
    twilio: TwilioDouble
    public_url: str
    address: Callable[[], str | None]
    rng: random.Random
    by_phone: dict[str, Patient] = field(default_factory=dict)
    texts: list[Texted] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    webhook_retries: int = 0
    pending: int = 0
    _seen: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def expect(self, phone: str) -> None:
        self.by_phone[phone] = Patient(phone)

    @property
    def idle(self) -> bool:
        return self.pending == 0 and self._seen == len(self.twilio.accepted)

    async def run(self) -> None:
        while True:
            await self.twilio.wait_accepted(self._seen + 1, timeout=3600)
            for message in self.twilio.accepted[self._seen :]:
                self._seen += 1
                self._on_text(message)

    def _on_text(self, message: Message) -> None:
        patient = self.by_phone.get(message.to)
        if patient is None:
            self.outcomes["text_to_unknown_number"] += 1
            return
        self.texts.append(Texted(message.to, message.body, patient.replies))
        answer = self._answer(patient, message.body)
        if answer is None:
            return
        patient.replies += 1
        self.pending += 1
        task = asyncio.create_task(self._reply(patient, answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _answer(self, patient: Patient, body: str) -> str | None:
        if patient.finished:
            self.outcomes["text_after_end"] += 1
            return None
        if "Reply YES" in body:
            return "YES"
        if body.startswith("Booked:"):
            patient.finished = "booked"
        elif numbers := _MENU_LINE.findall(body):
            return str(self.rng.choice(numbers))
        elif "call" in body.lower():
            patient.finished = "call_us"
        else:
            patient.finished = "other"
        self.outcomes[patient.finished] += 1
        return None

    async def _reply(self, patient: Patient, body: str) -> None:
        sid = new_sid()
        await asyncio.sleep(self.rng.uniform(0.0, 0.3))  # a person takes a moment to type
        try:
            while True:
                base = self.address()
                if base is not None:
                    try:
                        # A daemon stuck behind a restarting database must not hold us forever.
                        async with asyncio.timeout(10):
                            status, _ = await self.twilio.post_inbound(
                                base, self.public_url, from_=patient.phone, body=body, sid=sid
                            )
                        if status == 200:
                            return
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                self.webhook_retries += 1
                await asyncio.sleep(0.2)
        finally:
            self.pending -= 1

    def duplicate_texts(self) -> int:
        """Texts a patient received twice: same number, same body, same conversation step."""
        counts = Counter((t.to, t.body, t.step) for t in self.texts)
        return sum(n - 1 for n in counts.values() if n > 1)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
