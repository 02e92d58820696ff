"""Values Postgres takes, made from whatever a remote model wrote.

A reply is paid for before it is stored, so a value Postgres refuses must be made
storable here rather than refused there: a refused insert loses the reply and the step's
retry buys it again. What Postgres refuses, and what each becomes:

- NUL (U+0000) in text, and \\u0000 in json: U+FFFD, the replacement character;
- a lone surrogate (U+D800-U+DFFF; Python's JSON decoder makes one from "\\ud83d"), which
  UTF-8 cannot encode: U+FFFD;
- NaN and +-Infinity in json (Python's decoder accepts them; JSON and Postgres do not):
  null;
- nesting deeper than DEEPEST_NESTING (Postgres's json parser and Python's recursion both
  end somewhere): the part below it is replaced by a note saying so. The raw reply, kept
  whole beside the parsed value, still has it.
"""

import math
import re

REPLACEMENT = "\ufffd"
DEEPEST_NESTING = 64
TOO_DEEP = f"(nested deeper than {DEEPEST_NESTING} levels: see the raw reply)"
_UNSTORABLE_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    return _UNSTORABLE_CHARACTERS.sub(REPLACEMENT, text)


def storable_json(value, depth: int = 0):
    """`value` (what json.loads returns) with every part Postgres would refuse replaced."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict | list) and depth >= DEEPEST_NESTING:
        return TOO_DEEP
    if isinstance(value, dict):
        return {storable_text(str(k)): storable_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [storable_json(v, depth + 1) for v in value]
    return value


def storable_int(value, bits: int = 32) -> int | None:
    """An integer that fits a column of `bits` bits, else None (a server's usage counts)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if -(2 ** (bits - 1)) <= value < 2 ** (bits - 1) else None


def clipped(text: str | None, limit: int) -> str | None:
    """Storable `text` cut to a String(limit) column."""
    return None if text is None else storable_text(text)[:limit]
