"""Reading JSON out of what a language model actually wrote.

Small and local models wrap JSON in prose or code fences, leave trailing commas, or stop
mid-object. This takes the first balanced object it can parse, and validates it.
"""

import json
import re
from functools import lru_cache

import jsonschema

_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def parse_json_object(text: str) -> dict | None:
    """The first JSON object in `text`, tolerating fences, prose and trailing commas."""
    for candidate in _object_candidates(text):
        for variant in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
            try:
                value = json.loads(variant)
            except (json.JSONDecodeError, RecursionError):  # nested past the decoder's depth
                continue
            if isinstance(value, dict):
                return value
    return None


def schema_errors(value: dict, schema: dict) -> str | None:
    """None when `value` satisfies `schema`, else the first validation message."""
    error = jsonschema.exceptions.best_match(_validator(json.dumps(schema, sort_keys=True)).iter_errors(value))
    return None if error is None else error.message


@lru_cache(maxsize=256)
def _validator(schema_json: str):
    # jsonschema.validate re-checks the schema itself on every call (~7 ms for an agent's
    # schema); our schemas are few and fixed per agent and choice list, so check each once.
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def as_confidence(value) -> float:
    """A model's confidence as a number in [0, 1] (models say 0.9, "high" or 90)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return min(1.0, max(0.0, number / 100 if number > 1 else number))


def _object_candidates(text: str):
    """Substrings from each '{' to its matching '}' (string-aware brace counting)."""
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        depth, in_string, escaped = 0, False, False
        for end in range(start, len(text)):
            ch = text[end]
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
                continue
            if ch == '"':
                in_string = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    yield text[start : end + 1]
                    break
