"""Mapping the answering agent's words to the verbatim text of one choice.

Benchmarks score the choice text (a bare letter scores zero), so the stored answer is
always a choice copied exactly, or None with the rule "unmapped". Never a silent guess.
"""

import re
from dataclasses import dataclass

_WORD = re.compile(r"\b\w+\b")
_LETTER = re.compile(r"^\(?([A-Za-z])[\).:]?$")


@dataclass(frozen=True)
class Normalised:
    answer: str | None
    rule: str  # exact | casefold | letter | contains | tokens | free | unmapped


def normalise(raw: str, choices: list[str]) -> Normalised:
    text = (raw or "").strip()
    if not choices:
        return Normalised(text or None, "free" if text else "unmapped")
    for rule, match in (
        ("exact", _exact), ("casefold", _casefold), ("letter", _letter),
        ("contains", _contains), ("tokens", _tokens),
    ):
        choice = match(text, choices)
        if choice is not None:
            return Normalised(choice, rule)
    return Normalised(None, "unmapped")


def _words(s: str) -> list[str]:
    return _WORD.findall(s.lower())


def _unique(candidates: list[str]) -> str | None:
    return candidates[0] if len(set(candidates)) == 1 else None


def _exact(text, choices):
    return _unique([c for c in choices if c == text])


def _casefold(text, choices):
    return _unique([c for c in choices if _words(c) == _words(text) and _words(c)])


def _letter(text, choices):
    m = _LETTER.match(text)
    if m and len(choices) <= 26:
        i = ord(m.group(1).upper()) - ord("A")
        return choices[i] if i < len(choices) else None
    return None


def _contains(text, choices):
    """Exactly one choice appears in the text as a whole phrase; the longest wins when one
    choice is part of another ("major" inside "major seventh")."""
    low = f" {' '.join(_words(text))} "
    found = [c for c in choices if _words(c) and f" {' '.join(_words(c))} " in low]
    found = [c for c in found if not any(c != o and c.lower() in o.lower() for o in found)]
    return _unique(found)


def _tokens(text, choices):
    words = set(_words(text))
    return _unique([c for c in choices if _words(c) and set(_words(c)) <= words])
