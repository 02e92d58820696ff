"""Benchmark-compatible scoring for multiple-choice audio QA.

Two rules, chosen per benchmark:

- ``token``: the official MMAR / MMAU ``string_match``. The prediction must
  contain every word of the reference answer and no word that only the wrong
  choices have. A bare letter ("B") therefore fails: emit the choice text.
- ``letter``: the AIR-Bench foundation track, where choices are labelled
  A, B, C, ... and the prediction is reduced to one letter.

The official MMAR / MMAU scripts silently drop items that have no prediction
from the denominator, which flatters a system that fails on hard items. So
every figure is reported twice: ``official`` (what their scripts print) and
``strict`` (every item counted, a missing prediction counts wrong).

Stdlib only, so the benches and the CLI can import it without the worker
stack.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

RULES = ("token", "letter")  # token = MMAR/MMAU official; letter = AIR-Bench

# Metadata fields reported as per-group breakdowns, in this order.
GROUP_FIELDS = ("modality", "task", "category", "sub-category", "difficulty", "language")
# MMAU names its modality "task"; reporting both benchmarks under "modality"
# lets one table compare them.
_GROUP_ALIASES = {"task": "modality"}

_WORD = re.compile(r"\b\w+\b")


# --- the token rule (MMAR / MMAU) -------------------------------------------


def tokenize(text: str) -> set[str]:
    """Lower-case word tokens, exactly as the official scripts split them."""
    return set(_WORD.findall(text.lower()))


def token_match(answer: str, prediction: str, choices: list[str]) -> bool:
    """The official MMAR / MMAU ``string_match``.

    Correct iff the prediction has tokens, contains every answer token, and
    contains none of the tokens that appear only in wrong choices. Tokens a
    wrong choice shares with the answer (e.g. "a", "speaking") stay allowed.
    """
    pred_tokens = tokenize(prediction or "")
    if not pred_tokens:
        return False
    ans_tokens = tokenize(answer)
    incorrect_tokens: set[str] = set()
    for choice in choices:
        choice_tokens = tokenize(choice)
        if choice_tokens != ans_tokens:
            incorrect_tokens |= choice_tokens - ans_tokens
    return ans_tokens <= pred_tokens and not (pred_tokens & incorrect_tokens)


# --- the letter rule (AIR-Bench) --------------------------------------------

# A letter label stands alone: "(B)", or "B" followed by ".", ")", ":" or ","
# or by the end of the text. "B" followed by a space and more words is NOT a
# label, because "A" is also the English article ("A woman speaking").
_LABEL = r"(?:\((?P<p>[A-Z])\)|(?P<l>[A-Z])(?=[.):,]|$))"
_LEADING_LABEL = re.compile(_LABEL)
# "Answer: B", "The answer is B", "the correct answer is (B)." ... The phrase
# is case-insensitive; the letter is not (a lower-case letter inside prose is
# too often a word).
_ANSWER_PHRASE = re.compile(r"(?i:\banswer(?:\s+is\s*:?|\s*:))\s*" + _LABEL)


def extract_choice_letter(prediction: str, n_choices: int) -> str | None:
    """Reduce a prediction to one upper-case choice letter, or None.

    Accepted (after stripping whitespace):
      - the bare letter "B", or "b" when the whole prediction is that letter;
      - a leading label: "B.", "B)", "(B)", "B: ...", "B. Dense Forest",
        "(B) Dense Forest";
      - an answer phrase anywhere, last one wins (models reason first, then
        conclude): "Answer: B", "The answer is B.", "... so the answer is (B)".
    The letter must be upper-case A..Z and within the first ``n_choices``
    letters; otherwise there is no letter (and the item is scored wrong).
    Not accepted: "answer: b", "The answer is A woman speaking" (ambiguous
    with the article), "E" when there are four choices.
    """
    text = (prediction or "").strip()
    if len(text) == 1 and text.isalpha():
        return _within(text.upper(), n_choices)
    phrases = list(_ANSWER_PHRASE.finditer(text))
    if phrases:
        return _within(_label_letter(phrases[-1]), n_choices)
    leading = _LEADING_LABEL.match(text)
    return _within(_label_letter(leading), n_choices) if leading else None


def _label_letter(match: re.Match) -> str:
    return match.group("p") or match.group("l")


def _within(letter: str, n_choices: int) -> str | None:
    """The letter if it labels one of the choices (A..Z only)."""
    if "A" <= letter <= "Z" and ord(letter) - ord("A") < min(n_choices, 26):
        return letter
    return None


def letter_match(answer: str, prediction: str, choices: list[str]) -> bool:
    """AIR-Bench: correct iff the extracted letter labels the reference answer.

    Raises ValueError when the reference answer is not among the choices:
    that is a broken item, not a wrong prediction.
    """
    try:
        answer_index = list(choices).index(answer)
    except ValueError:
        raise ValueError(f"reference answer {answer!r} is not one of the choices {choices!r}") from None
    letter = extract_choice_letter(prediction, len(choices))
    return letter is not None and ord(letter) - ord("A") == answer_index


_MATCHERS = {"token": token_match, "letter": letter_match}


# --- results ----------------------------------------------------------------


@dataclass(frozen=True)
class ScoredItem:
    id: str
    correct: bool | None  # None = no prediction
    groups: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"id": self.id, "correct": self.correct, "groups": self.groups}

    @classmethod
    def from_json(cls, record: dict) -> ScoredItem:
        return cls(id=str(record["id"]), correct=record.get("correct"), groups=dict(record.get("groups") or {}))


@dataclass(frozen=True)
class Accuracy:
    correct: int
    scored: int  # items with a prediction: the official denominator
    total: int  # every scoreable item: the strict denominator
    missing: int  # total - scored
    official: float | None  # correct / scored, as the official scripts print it
    strict: float | None  # correct / total, missing predictions counted wrong

    @classmethod
    def of(cls, items: list[ScoredItem]) -> Accuracy:
        correct = sum(1 for i in items if i.correct)
        scored = sum(1 for i in items if i.correct is not None)
        total = len(items)
        return cls(
            correct=correct,
            scored=scored,
            total=total,
            missing=total - scored,
            official=correct / scored if scored else None,
            strict=correct / total if total else None,
        )

    def as_json(self) -> dict:
        return {
            "correct": self.correct,
            "scored": self.scored,
            "total": self.total,
            "missing": self.missing,
            "official": self.official,
            "strict": self.strict,
        }


@dataclass(frozen=True)
class Report:
    overall: Accuracy
    by_group: dict[str, dict[str, Accuracy]]  # group field -> value -> Accuracy
    rule: str
    unscorable: int = 0  # items with no reference answer, left out of every figure

    def as_json(self) -> dict:
        return {
            "rule": self.rule,
            "overall": self.overall.as_json(),
            "by_group": {
                name: {value: acc.as_json() for value, acc in values.items()}
                for name, values in self.by_group.items()
            },
            "unscorable": self.unscorable,
        }


# --- scoring ----------------------------------------------------------------


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown scoring rule {rule!r}; expected one of {RULES}")


def item_groups(item: dict) -> dict[str, str]:
    """The item's breakdown fields; MMAU's "task" is reported as "modality".

    An item that has both keeps its own "modality" and reports "task" as is.
    """
    groups: dict[str, str] = {}
    for name in GROUP_FIELDS:
        value = item.get(name)
        if value is None:
            continue
        alias = _GROUP_ALIASES.get(name, name)
        key = name if alias in groups or item.get(alias) is not None else alias
        groups[key] = str(value)
    return groups


def score_item(item: dict, prediction: str | None, rule: str = "token") -> ScoredItem:
    """Score one benchmark item; ``prediction`` None means there is none.

    Raises ValueError for an item without a reference answer: ``score``
    counts those as unscorable instead of calling this.
    """
    _check_rule(rule)
    answer = item.get("answer")
    if answer is None:
        raise ValueError(f"item {item.get('id')!r} has no reference answer")
    if prediction is None:
        correct = None
    else:
        correct = _MATCHERS[rule](str(answer), str(prediction), list(item.get("choices") or []))
    return ScoredItem(id=str(item.get("id")), correct=correct, groups=item_groups(item))


def score(items: list[dict], predictions: dict[str, str | None], rule: str = "token") -> Report:
    """Score a benchmark; an item id absent from ``predictions`` has no prediction."""
    _check_rule(rule)
    scoreable = [i for i in items if i.get("answer") is not None]
    scored = [score_item(i, predictions.get(str(i.get("id"))), rule) for i in scoreable]
    return report_of(scored, rule, unscorable=len(items) - len(scoreable))


def report_of(scored: list[ScoredItem], rule: str, unscorable: int = 0) -> Report:
    """The report over items scored already (e.g. only those several batches share)."""
    return Report(overall=Accuracy.of(scored), by_group=_breakdown(scored), rule=rule, unscorable=unscorable)


def common_items(runs: list[list[ScoredItem]]) -> tuple[list[list[ScoredItem]], set[str]]:
    """Each run restricted to the item ids every run has, in its own order, and those ids."""
    shared = set.intersection(*({i.id for i in run} for run in runs)) if runs else set()
    return [[i for i in run if i.id in shared] for run in runs], shared


def _breakdown(scored: list[ScoredItem]) -> dict[str, dict[str, Accuracy]]:
    """Accuracy per value of each group field, fields and values in a stable order."""
    buckets: dict[str, dict[str, list[ScoredItem]]] = defaultdict(lambda: defaultdict(list))
    for item in scored:
        for name, value in item.groups.items():
            buckets[name][value].append(item)
    names = sorted(buckets, key=GROUP_FIELDS.index)  # group names are GROUP_FIELDS entries
    return {n: {v: Accuracy.of(buckets[n][v]) for v in sorted(buckets[n])} for n in names}


# --- reading files ----------------------------------------------------------


def _read_records(path) -> list[dict]:
    """JSON objects from a JSON array file or a JSONL file, told apart by content.

    Raises ValueError naming the file and line of the first bad record.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM from Windows editors
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from None
        numbered = [(None, r) for r in records]
    else:
        numbered = list(_jsonl(path, text))
    for number, record in numbered:
        if not isinstance(record, dict):
            where = f"line {number}" if number else "array element"
            raise ValueError(f"{path}: {where}: expected a JSON object, got {type(record).__name__}")
    return [r for _, r in numbered]


def _jsonl(path: Path, text: str):
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {number}: invalid JSON: {e.msg}") from None


def read_benchmark(path) -> list[dict]:
    """Benchmark items: MMAR JSONL (one object a line) or MMAU JSON (a list)."""
    return _read_records(path)


# Fields that carry the prediction in records keyed by "id", most specific first.
# "answer" is deliberately absent: in those records it is the reference answer.
_PREDICTION_FIELDS = ("answer_prediction", "model_output")


def read_predictions(path) -> dict[str, str | None]:
    """Predictions keyed by item id, from any format we export or produce.

    - MMAR results (JSON list or JSONL) with "id" and "answer_prediction";
    - MMAU results (JSON list) with "id" and "model_output";
    - the MMAR challenge JSONL {id, thinking_prediction, answer_prediction};
    - our own output JSONL with "custom_id" and "answer".
    A record without its prediction field maps to None (no prediction).
    """
    predictions: dict[str, str | None] = {}
    for record in _read_records(path):
        item_id, prediction = _prediction_of(record, path)
        if item_id in predictions:
            raise ValueError(f"{path}: duplicate id {item_id!r}")
        predictions[item_id] = prediction
    return predictions


def _prediction_of(record: dict, path) -> tuple[str, str | None]:
    if "custom_id" in record:
        return str(record["custom_id"]), _text_or_none(record.get("answer"))
    if "id" not in record:
        raise ValueError(f"{path}: a record has neither 'id' nor 'custom_id': {sorted(record)}")
    for name in _PREDICTION_FIELDS:
        if name in record:
            return str(record["id"]), _text_or_none(record[name])
    return str(record["id"]), None


def _text_or_none(value) -> str | None:
    return None if value is None else str(value)
