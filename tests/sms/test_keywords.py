"""Keyword classification: opt-out is never missed, menus are forgiving, nothing raises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radsched.conversation.keywords import (
    Choice,
    Help,
    More,
    No,
    Start,
    Stop,
    Unknown,
    Yes,
    classify,
)

# Every per-se and common revocation, as patients type them.
STOP_WORDS = [
    "stop",
    "STOP",
    "Stop.",
    "stopall",
    "quit",
    "end",
    "revoke",
    "opt out",
    "opt-out",
    "optout",
    "cancel",
    "unsubscribe",
    "unsuscribe",
    "alto",
    "parar",
    "para",
    "pare",
    "cancelar",
    "detener",
    "baja",
    "darme de baja",
    "no más",
    "NO MAS",
    "basta",
]
STOP_PHRASES = [
    "stop texting me",
    "please stop",
    "Stop please!!",
    "STOP ALL",
    "don't text me anymore",
    "do not text this number",
    "no more texts",
    "leave me alone",
    "remove me from this list",
    "take me off your list",
    "I want to cancel",
    "1 stop",
    "yes stop",
    "help stop",
    "no más mensajes por favor",
    "ya no quiero mensajes",
    "dejen de escribirme",
    "S.T.O.P",
    "s t o p",
    "s\u200btop",
]

# Spanish everyday words that are only revocations on their own.
NOT_STOP = ["para el martes", "the end of the week works", "tengo la presion baja", "alto 2"]


@pytest.mark.parametrize("body", STOP_WORDS + STOP_PHRASES)
def test_revocations(body: str) -> None:
    assert isinstance(classify(body), Stop), body


@pytest.mark.parametrize("body", NOT_STOP)
def test_everyday_words_inside_sentences_are_not_revocations(body: str) -> None:
    assert not isinstance(classify(body), Stop), body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("HELP", Help()),
        ("info", Help()),
        ("Ayuda", Help()),
        ("help?", Help()),
        ("START", Start("start")),
        ("unstop", Start("unstop")),
        ("YES", Yes("yes")),
        ("y", Yes("y")),
        ("Yes!", Yes("yes")),
        ("yes please", Yes("yes")),
        ("SI", Yes("si")),
        ("Sí", Yes("si")),
        ("sí, por favor", Yes("si")),
        ("ok", Yes("ok")),
        ("no", No()),
        ("No thanks", No()),
        ("no gracias", No()),
        ("MORE", More()),
        ("more times", More()),
        ("Más", More()),
        ("mas", More()),
        ("next", More()),
        ("1", Choice(1)),
        ("1.", Choice(1)),
        ("#1", Choice(1)),
        (" 1 ", Choice(1)),
        ("(2)", Choice(2)),
        ("2)", Choice(2)),
        ("one", Choice(1)),
        ("uno", Choice(1)),
        ("Dos", Choice(2)),
        ("option 2", Choice(2)),
        ("opción 3", Choice(3)),
        ("number 3 please", Choice(3)),
        ("2nd", Choice(2)),
        ("the first one", Choice(1)),
        ("3️⃣", Choice(3)),
        ("１", Choice(1)),
        ("1 or 2", Unknown()),
        ("2125550123", Unknown()),
        ("2 is too early", Unknown()),
        ("hello", Unknown()),
        ("", Unknown()),
        ("   ", Unknown()),
        ("🙂", Unknown()),
    ],
)
def test_classification(body: str, expected: object) -> None:
    assert classify(body) == expected


def test_stop_wins_over_everything_else() -> None:
    for body in ("yes stop", "stop 1", "more? no, stop", "help me unsubscribe", "start stop"):
        assert isinstance(classify(body), Stop), body


@given(st.text())
def test_never_raises(body: str) -> None:
    classify(body)


_NOISE = st.text(alphabet=" \t\n.,!?¡¿-_*#\"'()[]…\u200b", max_size=6)


@st.composite
def disguised(draw: st.DrawFn, words: list[str]) -> str:
    word = draw(st.sampled_from(words))
    cased = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in word)
    return draw(_NOISE) + cased + draw(_NOISE)


@given(disguised(["stop", "stopall", "quit", "end", "revoke", "optout", "cancel", "unsubscribe"]))
def test_stop_words_in_any_case_and_punctuation(body: str) -> None:
    assert isinstance(classify(body), Stop), repr(body)


@given(
    st.lists(st.sampled_from(["please", "I", "want", "you", "to", "now", "ok", "1", "hi"])),
    disguised(["stop", "unsubscribe", "revoke", "cancel", "quit", "optout"]),
    st.lists(st.sampled_from(["please", "thanks", "now", "texting", "me", "2", "yes"])),
)
def test_strong_stop_words_anywhere_in_a_sentence(
    before: list[str], word: str, after: list[str]
) -> None:
    body = " ".join([*before, word, *after])
    assert isinstance(classify(body), Stop), repr(body)


@given(st.integers(min_value=1, max_value=9), _NOISE, _NOISE)
def test_numbers_with_noise_are_choices(n: int, left: str, right: str) -> None:
    assert classify(f"{left}{n}{right}") == Choice(n)
