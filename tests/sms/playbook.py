"""A small playbook DSL for the conversation step function (after mitmproxy's tutils.Playbook).

A test reads like the exchange it checks::

    play = Playbook()
    play.order().says("Reply YES to book by text")
    play.patient("yes").does(FetchLocations("CR")).silent()
    play.ris(LocationsLoaded(LOCATIONS)).says("1 Main Street Imaging")

Each feed runs ``step`` and then checks the invariants every transition must keep (one
segment per text, EndConversation last, no CANCEL advice, state survives the codec, …), so
every playbook is also a property test of those rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import count

from radsched.conversation import (
    Command,
    Conversation,
    ConversationConfig,
    EndConversation,
    Event,
    InboundText,
    MenuLocation,
    MenuSlot,
    OrderReceived,
    RecordConsent,
    ScheduleWake,
    SendText,
    State,
    TemplateId,
    Tick,
    dump_conversation,
    load_conversation,
    step,
)
from radsched.conversation.gsm import segment_info
from radsched.conversation.keywords import normalise_words
from radsched.conversation.model import TERMINAL_STATES

# 11:00 in New York on a Monday: outside quiet hours.
MORNING = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
PRACTICE = "Lakeside Imaging"
PHONE = "(555) 010-0200"

LOCATIONS = (
    MenuLocation("L1", "Main Street Imaging"),
    MenuLocation("L2", "Northside Clinic"),
    MenuLocation("L3", "Harbor View Center"),
)

# Texts an opted-out patient may still receive: the confirmation, HELP, the re-subscribe answer.
_ALLOWED_WHEN_OPTED_OUT = {TemplateId.OPTED_OUT, TemplateId.HELP, TemplateId.RESUBSCRIBED}


def config(**changes: object) -> ConversationConfig:
    return ConversationConfig(practice_name=PRACTICE, scheduling_phone=PHONE, **changes)  # type: ignore[arg-type]


def slots(
    n: int, *, location: str = "L2", first: datetime | None = None, prefix: str = "S"
) -> tuple[MenuSlot, ...]:
    """``n`` slots one hour apart, starting the next day at 09:00 New York time."""
    start = first or datetime(2026, 6, 2, 13, 0, tzinfo=UTC)
    return tuple(
        MenuSlot(f"{prefix}{i}", location, start + timedelta(hours=i), 30) for i in range(n)
    )


class Playbook:
    def __init__(
        self,
        cfg: ConversationConfig | None = None,
        now: datetime = MORNING,
        conv: Conversation | None = None,
    ) -> None:
        self.cfg = cfg or config()
        self.now = now
        self.conv = conv or Conversation.new("conv-1", now)
        self.last: list[Command] = []
        self.history: list[tuple[Event, list[Command]]] = []
        self._sid = count(1)

    # --- feeding ---------------------------------------------------------------------------

    def feed(self, event: Event) -> Playbook:
        before = self.conv
        self.conv, self.last = step(self.conv, event, self.now, self.cfg)
        self.history.append((event, self.last))
        _check_invariants(before, self.conv, self.last)
        return self

    def order(self, modality: str = "CR", **kw: object) -> Playbook:
        kw.setdefault("modality_enabled", True)
        return self.feed(OrderReceived(modality, **kw))  # type: ignore[arg-type]

    def patient(self, body: str, sid: str | None = None) -> Playbook:
        return self.feed(InboundText(body, sid or f"SM{next(self._sid):032d}"))

    def ris(self, event: Event) -> Playbook:
        return self.feed(event)

    def tick(self) -> Playbook:
        return self.feed(Tick())

    def advance(self, delta: timedelta) -> Playbook:
        self.now += delta
        return self

    def at(self, moment: datetime) -> Playbook:
        self.now = moment
        return self

    # --- looking ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.conv.state

    @property
    def texts(self) -> list[SendText]:
        return [c for c in self.last if isinstance(c, SendText)]

    def text(self) -> str:
        (only,) = self.texts
        return only.text

    # --- asserting on the last batch -------------------------------------------------------

    def says(self, *fragments: str, template: TemplateId | None = None) -> Playbook:
        """Exactly one text was sent and it contains every fragment."""
        texts = self.texts
        assert len(texts) == 1, f"expected one text, got {[t.text for t in texts]}"
        for fragment in fragments:
            assert fragment in texts[0].text, f"{fragment!r} not in {texts[0].text!r}"
        if template is not None:
            assert texts[0].template_id is template, texts[0].template_id
        return self

    def silent(self) -> Playbook:
        assert not self.texts, f"expected no text, got {[t.text for t in self.texts]}"
        return self

    def does(self, *commands: Command) -> Playbook:
        """The commands appear in the last batch, in this order (others may be between)."""
        rest = iter(self.last)
        for wanted in commands:
            assert any(c == wanted for c in rest), f"{wanted} not in order in {self.last}"
        return self

    def lacks(self, kind: type) -> Playbook:
        assert not any(isinstance(c, kind) for c in self.last), self.last
        return self

    def in_state(self, state: State) -> Playbook:
        assert self.conv.state is state, f"state {self.conv.state}, expected {state}"
        return self

    def ends(self, reason: str) -> Playbook:
        assert self.last and self.last[-1] == EndConversation(reason), self.last  # type: ignore[arg-type]
        return self


def _check_invariants(
    before: Conversation, after: Conversation, commands: Sequence[Command]
) -> None:
    for command in commands:
        if isinstance(command, SendText):
            info = segment_info(command.text)
            assert info.single_segment, f"{command.template_id} is {info}"
            assert not any(w.startswith("cancel") for w in normalise_words(command.text))
            if after.state is State.OPTED_OUT or before.state is State.OPTED_OUT:
                assert command.template_id in _ALLOWED_WHEN_OPTED_OUT, command
    ends = [i for i, c in enumerate(commands) if isinstance(c, EndConversation)]
    assert len(ends) <= 1 and (not ends or ends[0] == len(commands) - 1), commands
    if ends:
        assert after.state in TERMINAL_STATES
    if any(c == RecordConsent(False, c.source) for c in commands if isinstance(c, RecordConsent)):
        assert all(
            c.template_id is TemplateId.OPTED_OUT for c in commands if isinstance(c, SendText)
        )
    if after.state in TERMINAL_STATES:
        assert after.wake_at is None and after.expires_at is None
        assert not any(isinstance(c, ScheduleWake) for c in commands)
    elif after.state is not State.NEW:
        assert after.wake_at is not None and after.expires_at is not None
    # The state is what the driver stores: it must survive the codec unchanged.
    assert load_conversation(dump_conversation(after)) == after
    assert dataclasses.replace(after) == after
