"""The question and its choices, read back out of a multiple-choice prompt.

Harnesses send a benchmark item as one text: the question, its choices in one of a few
common layouts, often an instruction after them. The layouts read here:

- one labelled choice per line: "(A) ...", "A. ...", "A) ...", "A: ...", "[A] ...";
- labelled choices on one line: "(A) ... (B) ... (C) ...";
- a "Choices:" / "Options:" header (any case) followed by one choice per line ("- x",
  "* x", or a labelled line), by a list ("['x', 'y']"), or by "x, y, z" on its line.

Labels run A, B, C, ... in order (lower case too); two at least make a list. What comes
before the choices is the question; what follows (e.g. "Answer with the option's letter")
is kept apart as the instruction. No choices found: an open question, the text whole.
"""

import ast
import re
from dataclasses import dataclass

# No lazy group before a trailing \s*$: on a long run of spaces that backtracks in
# quadratic time. The captured text is stripped instead.
_LINE_LABEL = re.compile(r"^\s*(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Za-z])[.):])\s+(\S.*)$")
_INLINE_LABEL = re.compile(r"\(([A-Za-z])\)\s*")
_HEADER = re.compile(r"^\s*(?:the\s+)?(?:choices|options|candidates|answer choices)(?:\s+are)?\s*[:：](.*)$",
                     re.IGNORECASE)
_BULLET = re.compile(r"^\s*[-*•]\s+(\S.*)$")
MAX_LISTED_CHARS = 10_000  # a "Choices: [...]" list read by literal_eval, at most


@dataclass(frozen=True)
class ParsedPrompt:
    question: str
    choices: list[str]
    instruction: str = ""  # text after the choices, e.g. how to answer


def parse_prompt(text: str) -> ParsedPrompt:
    lines = text.strip().splitlines()
    for reader in (_labelled_lines, _header_block, _inline_labels):
        found = reader(lines)
        if found is not None:
            return found
    return ParsedPrompt(text.strip(), [])


def _labelled_lines(lines: list[str]) -> ParsedPrompt | None:
    """A run of lines labelled A, B, C, ... (a header line just before it is dropped)."""
    for start, line in enumerate(lines):
        if _label_and_text(line, "a") is None:
            continue
        choices: list[str] = []
        end = start
        while end < len(lines) and (found := _label_and_text(lines[end], chr(ord("a") + len(choices)))):
            choices.append(found)
            end += 1
        if len(choices) >= 2:
            before = lines[:start]
            if before and (header := _HEADER.match(before[-1])) and not header.group(1).strip():
                before = before[:-1]
            return _split(before, choices, lines[end:])
    return None


def _label_and_text(line: str, expected: str) -> str | None:
    match = _LINE_LABEL.match(line)
    if match is None:
        return None
    label = next(g for g in match.groups()[:3] if g)
    return match.group(4).rstrip() if label.lower() == expected else None


def _header_block(lines: list[str]) -> ParsedPrompt | None:
    """A "Choices:" header, then the choices on its line or the lines below it."""
    for at, line in enumerate(lines):
        match = _HEADER.match(line)
        if match is None:
            continue
        if rest := match.group(1).strip():
            choices = _listed(rest) or _inline_choices(rest)
            if choices and len(choices) >= 2:
                return _split(lines[:at], choices, lines[at + 1:])
            continue
        choices, end = [], at + 1
        while end < len(lines) and (choice := _choice_line(lines[end])):
            choices.append(choice)
            end += 1
        if len(choices) >= 2:
            return _split(lines[:at], choices, lines[end:])
    return None


def _choice_line(line: str) -> str | None:
    """A line under a header: "- x", or a bare line (a blank line ends the list)."""
    bullet = _BULLET.match(line)
    return bullet.group(1).rstrip() if bullet else (line.strip() or None)


def _listed(text: str) -> list[str] | None:
    """"['x', 'y']" or '["x", "y"]': a list as Python or JSON writes it."""
    if not text.startswith("[") or len(text) > MAX_LISTED_CHARS:
        return None
    try:
        value = ast.literal_eval(text)
    except Exception:  # noqa: BLE001 - any text that is not a plain list of strings is not one
        return None
    if isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
        return [v.strip() for v in value]
    return None


def _inline_choices(text: str) -> list[str] | None:
    labelled = _inline_labelled(text)
    if labelled is not None:
        return labelled[1]
    parts = [p.strip() for p in re.split(r"[,;|]", text) if p.strip()]
    return parts if len(parts) >= 2 else None


def _inline_labels(lines: list[str]) -> ParsedPrompt | None:
    """"(A) x (B) y" inside one line; the text before "(A)" on it belongs to the question."""
    for at, line in enumerate(lines):
        found = _inline_labelled(line)
        if found is not None:
            head, choices, tail = found
            return _split([*lines[:at], head], choices, [tail, *lines[at + 1:]])
    return None


def _inline_labelled(text: str) -> tuple[str, list[str], str] | None:
    """(text before, choices, text after) when `text` holds "(A) ... (B) ..." in order."""
    marks = [m for m in _INLINE_LABEL.finditer(text)]
    start = next((i for i, m in enumerate(marks) if m.group(1).lower() == "a"), None)
    if start is None:
        return None
    run = [marks[start]]
    for mark in marks[start + 1:]:
        if mark.group(1).lower() == chr(ord(run[-1].group(1).lower()) + 1):
            run.append(mark)
    if len(run) < 2:
        return None
    bounds = [m.start() for m in run] + [len(text)]
    choices = [text[run[i].end():bounds[i + 1]].strip().rstrip(",;") for i in range(len(run))]
    last, tail = choices[-1], ""
    if (sentence := re.search(r"(?<=[.?!])\s+(?=[A-Z])", last)) is not None:
        last, tail = last[:sentence.start()], last[sentence.end():]  # "(C) z. Answer with ..." splits
        choices[-1] = last.strip().removesuffix(".")
    if not all(choices):
        return None
    return text[:run[0].start()].strip(), choices, tail.strip()


def _split(before: list[str], choices: list[str], after: list[str]) -> ParsedPrompt:
    question = "\n".join(before).strip()
    instruction = "\n".join(after).strip()
    if not question:  # the choices came first: the question follows them
        question, instruction = instruction, ""
    return ParsedPrompt(question, [c.strip() for c in choices], instruction)
