"""Classify an inbound SMS body into what the patient meant.

:func:`classify` never raises and never returns the body: callers may log the result class
(and ``Stop.keyword``, which is always one of our own constants), never the text.

Rules, in order of precedence (first match wins):

1. **Stop** - the whole message is an opt-out word or phrase (English or Spanish), or it
   *contains* an unambiguous revocation word or phrase anywhere ("please stop texting me",
   "1 STOP", "no mas mensajes"). The FCC treats stop, quit, end, revoke, opt out, cancel and
   unsubscribe as per-se revocation and any reasonable wording as presumed revocation
   (reference/sms.md section 3.2), so when in doubt we err towards Stop. Words that are also
   everyday words ("end", Spanish "para", "alto", "baja") count only as the whole message.
2. **Help** - HELP, INFO, AYUDA.
3. **Start** - START, UNSTOP (Twilio's re-subscribe words).
4. **Yes** - YES, Y, SI, SÍ, OK, … Twilio also treats YES as an opt-in word; the conversation
   decides what YES means in each state (consent, or re-subscribe after STOP).
5. **No** - NO, NOPE, NO THANKS, NO GRACIAS.
6. **More** - MORE, MAS, MÁS, NEXT, LATER, SIGUIENTE.
6a. **Places** - L, LOCATIONS, OTHER PLACES, LUGAR: the location menu (a change conversation
   offers it beside the times at the appointment's location).
7. **Choice(n)** - one number, written as ``1``, ``1.``, ``#1``, ``(1)``, ``one``, ``uno``,
   ``option 2``, ``2 please``; only with polite filler words around it.
8. **Unknown** - anything else.

Matching is case-, accent-, punctuation- and whitespace-insensitive: the body is NFKD
normalised, combining marks and invisible format characters dropped, and split into words
on anything that is not a letter or digit. The "whole message" tests also compare the body
with all separators removed, so ``S.T.O.P`` and ``opt-out`` still match.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "Choice",
    "Help",
    "Intent",
    "More",
    "No",
    "Places",
    "Start",
    "Stop",
    "Unknown",
    "Yes",
    "classify",
    "normalise_words",
]


@dataclass(frozen=True, slots=True)
class Stop:
    """Revoke consent. ``keyword`` is the matched constant (for the consent record's source)."""

    keyword: str


@dataclass(frozen=True, slots=True)
class Start:
    keyword: str


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Yes:
    keyword: str


@dataclass(frozen=True, slots=True)
class No:
    pass


@dataclass(frozen=True, slots=True)
class More:
    pass


@dataclass(frozen=True, slots=True)
class Choice:
    """A menu pick. ``n`` is as typed (1-based); range checks belong to the conversation."""

    n: int


@dataclass(frozen=True, slots=True)
class Unknown:
    pass


@dataclass(frozen=True, slots=True)
class Places:
    pass


Intent = Stop | Start | Help | Yes | No | More | Places | Choice | Unknown


# --- vocabulary ------------------------------------------------------------------------------
# All entries are already normalised (lower case, no accents) word tuples.


def _phrases(*texts: str) -> frozenset[tuple[str, ...]]:
    return frozenset(tuple(text.split()) for text in texts)


# Revocation words that are unambiguous wherever they appear in a reply to our texts.
_STOP_ANYWHERE_WORDS = frozenset(
    {
        "stop",
        "stopall",
        "unsubscribe",
        "revoke",
        "optout",
        "quit",
        "cancel",
        "cancelar",
        "detener",
        "parar",
        "desuscribir",
        "desuscribirme",
        "unsuscribe",  # the common misspelling
    }
)
_STOP_ANYWHERE_PHRASES = _phrases(
    "opt out",
    "end texts",
    "end messages",
    "no more texts",
    "no more messages",
    "no more text",
    "dont text",
    "don t text",
    "do not text",
    "dont message",
    "do not message",
    "do not contact",
    "dont contact",
    "leave me alone",
    "remove me",
    "take me off",
    "no mas mensajes",
    "no mas textos",
    "no me escriban",
    "no me escribas",
    "no me envien",
    "no me manden",
    "dejen de",
    "deja de",
    "de baja",
    "ya no quiero",
    "no quiero mensajes",
    "no quiero textos",
)
# Revocation when they are the whole message (plus filler), but everyday words otherwise.
_STOP_WHOLE = _phrases(
    "end",
    "alto",
    "para",
    "pare",
    "paren",
    "basta",
    "baja",
    "no mas",
    "no more",
    "detente",
    "terminar",
    "fin",
)
_HELP_WHOLE = _phrases("help", "info", "ayuda", "help me", "information", "informacion")
_START_WHOLE = _phrases("start", "unstop", "start again", "iniciar", "comenzar")
_YES_WHOLE = _phrases(
    "yes", "y", "yeah", "yea", "yep", "yup", "sure", "ok", "okay", "si", "s", "claro", "yes sure"
)
_NO_WHOLE = _phrases("no", "n", "nope", "nah", "no thanks", "no thank you", "no gracias")
_PLACES_WHOLE = _phrases(
    "l",
    "location",
    "locations",
    "other location",
    "other locations",
    "places",
    "other places",
    "lugar",
    "lugares",
    "otro lugar",
    "otros lugares",
)
_MORE_WHOLE = _phrases(
    "more",
    "mas",
    "next",
    "later",
    "more times",
    "later times",
    "other times",
    "siguiente",
    "otros",
    "otras",
    "mas horarios",
    "otros horarios",
    "mas tarde",
)

# Words a patient adds around an answer without changing it ("1 please", "yes thank you").
_FILLER = frozenset(
    [
        "please",
        "pls",
        "plz",
        "thanks",
        "thank",
        "thx",
        "you",
        "ty",
        "i",
        "ill",
        "take",
        "want",
        "choose",
        "pick",
        "the",
        "number",
        "num",
        "option",
        "opt",
        "choice",
        "go",
        "with",
        "for",
        "me",
        "por",
        "favor",
        "gracias",
        "quiero",
        "elijo",
        "el",
        "la",
        "numero",
        "opcion",
        "de",
        "ok",
        "okay",
    ]
)

_NUMBER_WORDS = {
    word: n
    for n, words in enumerate(
        [
            (),
            ("one", "uno", "una", "first", "primero", "primera"),
            ("two", "dos", "second", "segundo", "segunda"),
            ("three", "tres", "third", "tercero", "tercera"),
            ("four", "cuatro", "fourth", "cuarto", "cuarta"),
            ("five", "cinco", "fifth", "quinto", "quinta"),
            ("six", "seis"),
            ("seven", "siete"),
            ("eight", "ocho"),
            ("nine", "nueve"),
        ]
    )
    for word in words
}
# A menu never has 100 items; a longer number is a phone number or a date. Ordinal endings
# ("2nd", Spanish "2o") are allowed.
_ORDINAL = re.compile(r"([0-9]{1,2})(?:st|nd|rd|th|o|a|er)?")


# --- normalisation ---------------------------------------------------------------------------


def normalise_words(body: str) -> tuple[str, ...]:
    """Lower-case, accent-free words of ``body``; everything else is a separator."""
    chars: list[str] = []
    for char in unicodedata.normalize("NFKD", body):
        category = unicodedata.category(char)
        if category in ("Mn", "Me", "Cf"):
            # Accents, keycap marks (1️⃣) and zero-width characters vanish without a trace,
            # so "s\u200btop" is still "stop".
            continue
        if char in "'’":
            continue  # "don't" -> "dont", "i'll" -> "ill"
        chars.append(char.casefold() if char.isalnum() else " ")
    return tuple("".join(chars).split())


def _strip_filler(words: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(w for w in words if w not in _FILLER)


def _contains(words: tuple[str, ...], phrases: frozenset[tuple[str, ...]]) -> str | None:
    for phrase in phrases:
        size = len(phrase)
        for i in range(len(words) - size + 1):
            if words[i : i + size] == phrase:
                return " ".join(phrase)
    return None


def _whole(words: tuple[str, ...], phrases: frozenset[tuple[str, ...]]) -> str | None:
    """Match the message as a whole: exactly, without filler, or with separators removed."""
    for candidate in (words, _strip_filler(words)):
        if candidate in phrases:
            return " ".join(candidate)
    compact = "".join(words)
    for phrase in phrases:
        if "".join(phrase) == compact:
            return " ".join(phrase)
    return None


# --- classification --------------------------------------------------------------------------


def classify(body: str) -> Intent:
    """What an inbound SMS body means. Total: any string gives an :data:`Intent`."""
    words = normalise_words(body)
    if not words:
        return Unknown()

    stop = _stop_keyword(words)
    if stop is not None:
        return Stop(stop)
    if _whole(words, _HELP_WHOLE):
        return Help()
    start = _whole(words, _START_WHOLE)
    if start is not None:
        return Start(start)
    yes = _whole(words, _YES_WHOLE)
    if yes is not None:
        return Yes(yes)
    if _whole(words, _NO_WHOLE):
        return No()
    if _whole(words, _MORE_WHOLE):
        return More()
    if _whole(words, _PLACES_WHOLE):
        return Places()
    choice = _choice(words)
    if choice is not None:
        return Choice(choice)
    return Unknown()


def _stop_keyword(words: tuple[str, ...]) -> str | None:
    for word in words:
        if word in _STOP_ANYWHERE_WORDS:
            return word
    compact = "".join(words)
    if compact in _STOP_ANYWHERE_WORDS:
        return compact  # "S.T.O.P", "opt-out" -> "optout"
    return _contains(words, _STOP_ANYWHERE_PHRASES) or _whole(words, _STOP_WHOLE)


def _choice(words: tuple[str, ...]) -> int | None:
    numbers: set[int] = set()
    for word in words:
        digits = _ORDINAL.fullmatch(word)
        if digits is not None:
            numbers.add(int(digits[1]))
        elif word in _NUMBER_WORDS:
            numbers.add(_NUMBER_WORDS[word])
        elif word not in _FILLER:
            return None  # "2 is too early" is a sentence, not a pick
    # "the first one" names 1 twice; "1 or 2" is not a choice.
    return numbers.pop() if len(numbers) == 1 else None
