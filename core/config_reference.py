"""docs/configuration.md, generated from the field descriptions of core/settings.py.

    python -m core.config_reference > docs/configuration.md

Sections are the ``# --- title ---`` comments in the body of ``Settings``: a field belongs to
the last one above it. Defaults are read from the class's fields, never from an instantiated
``Settings`` (which would read this machine's ``AGR_*`` variables and ``.env``).
tests/test_config_reference.py fails while the page differs from ``render()``.
"""

import ast
import inspect
import json
import re
from pathlib import Path

import core.settings
from core.settings import Settings

COMMAND = "python -m core.config_reference > docs/configuration.md"
PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
SECTION_COMMENT = re.compile(r"^\s*# --- (?P<title>.+?) ---\s*$")

INTRO = f"""\
# Configuration

Everything comes from `AGR_*` environment variables, or from a `.env` file in the working
directory (a variable set in the environment wins over the file). Each setting's variable is
its field name in `core/settings.py`, upper-cased, after `AGR_`. Lists and dicts are given as
JSON, e.g. `AGR_COARSE_TOOLS=["caption"]`. `.env.example` shows a production configuration of
`docker-compose.yml`.

A default of — means unset; the setting's meaning says what unset stands for (often an
embedded service, or a place under `AGR_DATA_DIR`). Secrets show only the placeholder the code
itself holds. "Allowed" gives the values pydantic accepts; any other value stops the process at
start-up with a validation error.

This page is generated from the field descriptions in `core/settings.py` by

    {COMMAND}

Edit the descriptions there and regenerate it, never this page by hand:
`tests/test_config_reference.py` fails while the page is stale.
"""


def sections() -> list[tuple[str, list[str]]]:
    """(title, field names) per ``# --- title ---`` comment in the body of Settings, in order."""
    source = inspect.getsource(core.settings)
    lines = source.splitlines()
    (cls,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Settings"]
    assert cls.end_lineno is not None  # ast.parse sets it on every statement
    headings = [(number, m["title"]) for number, line in enumerate(lines, 1)
                if cls.lineno <= number <= cls.end_lineno and (m := SECTION_COMMENT.match(line))]
    found: list[tuple[str, list[str]]] = [(title, []) for _, title in headings]
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above = [i for i, (number, _) in enumerate(headings) if number < node.lineno]
            if above:  # a field above every heading is in no section: the test names it
                found[above[-1]][1].append(node.target.id)
    return found


def default_of(name: str) -> object:
    return Settings.model_fields[name].get_default(call_default_factory=True)


def _number(value: object) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)


def _size_hint(value: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size and value % size == 0:
            return f" ({value // size} {unit})"
    return ""


def _duration_hint(value: float) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if value >= max(size, 600) and value % size == 0:
            count = int(value // size)
            return f" ({count} {unit}{'s' if unit == 'day' and count > 1 else ''})"
    return ""


def render_default(name: str) -> str:
    value = default_of(name)
    if value is None:
        return "—"
    if hasattr(value, "get_secret_value"):  # SecretStr: only the code's own placeholder is shown
        secret = value.get_secret_value()
        return f"`{secret}`" if secret in ("", "not-needed") else "set (secret)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)):
        text = _number(value)
        if name.endswith("_bytes"):
            text += _size_hint(int(value))
        elif name.endswith("_s"):
            text += _duration_hint(value)
        return text
    if isinstance(value, (list, dict)):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"  # str, Path


def constraints(name: str) -> str:
    """What pydantic allows beyond the type, e.g. "1–10", "> 0", "one of `a`, `b`"; "" if nothing."""
    bounds: dict[str, object] = {}
    for item in Settings.model_fields[name].metadata:
        for key in ("ge", "gt", "le", "lt", "multiple_of", "min_length", "max_length", "pattern"):
            if getattr(item, key, None) is not None:
                bounds[key] = getattr(item, key)
    parts = []
    if "ge" in bounds and "le" in bounds:
        parts.append(f"{_number(bounds.pop('ge'))}–{_number(bounds.pop('le'))}")
    for key, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        if key in bounds:
            parts.append(f"{sign} {_number(bounds.pop(key))}")
    if "pattern" in bounds:
        pattern = str(bounds.pop("pattern"))  # Field(pattern=...) is a str
        choices = re.fullmatch(r"\^\(([\w.|-]+)\)\$", pattern)
        parts.append("one of " + ", ".join(f"`{c}`" for c in choices[1].split("|")) if choices
                     else f"matching `{pattern}`")
    parts += [f"{key} {value}" for key, value in bounds.items()]
    return ", ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render() -> str:
    out = [INTRO]
    for title, names in sections():
        out += [f"## {title[0].upper()}{title[1:]}", "", "| Variable | Default | Meaning |", "|---|---|---|"]
        for name in names:
            meaning = (Settings.model_fields[name].description or "").strip()
            if allowed := constraints(name):
                meaning += f" Allowed: {allowed}."
            out.append(f"| `AGR_{name.upper()}` | {_cell(render_default(name))} | {_cell(meaning)} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
