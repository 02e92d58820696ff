"""Write predictions in each benchmark's official results format.

The official evaluation scripts read the benchmark items back with our
prediction added under their own key, so an export is the items plus one or
two fields. Items we have no answer for are written WITHOUT the keys: that is
how the official scripts recognise (and drop) a missing prediction, and it
keeps ``evaluation.scoring.read_predictions`` mapping them back to None.

``predictions`` maps item id -> {"answer": str | None, "thinking": str | None};
a plain string is taken as the answer with no thinking.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from evaluation.trace_rubric import fit as fit_trace

# Keys the exports add; stripped from input items first so an item read back
# from an earlier export cannot carry a stale prediction into a new one.
_PREDICTION_KEYS = ("answer_prediction", "thinking_prediction", "model_output")


def _parts(value) -> tuple[str | None, str | None]:
    """(answer, thinking) from a prediction entry."""
    if value is None or isinstance(value, str):
        return value, None
    return value.get("answer"), value.get("thinking")


def _prediction(predictions: dict, item: dict) -> tuple[str | None, str | None]:
    return _parts(predictions.get(str(item.get("id"))))


def _bare(item: dict) -> dict:
    return {k: v for k, v in item.items() if k not in _PREDICTION_KEYS}


def _write_atomically(path, text: str) -> None:
    """Write the whole file or nothing, so a crash never leaves half an export."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json_list(records: list[dict], path) -> None:
    _write_atomically(path, json.dumps(records, ensure_ascii=False, indent=2) + "\n")


def _export_list(items: list[dict], predictions: dict[str, dict], path, prediction_fields) -> int:
    """Every item, with `prediction_fields(answer, thinking)` added where we have an
    answer (an item without one is left bare, so the official script drops it)."""
    records, written = [], 0
    for item in items:
        record = _bare(item)
        answer, thinking = _prediction(predictions, item)
        if answer is not None:
            record |= prediction_fields(answer, thinking)
            written += 1
        records.append(record)
    _write_json_list(records, path)
    return written


def export_mmar(items: list[dict], predictions: dict[str, dict], path) -> int:
    """MMAR results: a JSON list of every item, with "answer_prediction" and
    "thinking_prediction" (its rubric score reads the latter; "" when we have
    none) added where we have an answer. Returns how many items carry one."""
    return _export_list(items, predictions, path, lambda answer, thinking: {
        "thinking_prediction": thinking or "", "answer_prediction": answer})


def export_mmau(items: list[dict], predictions: dict[str, dict], path) -> int:
    """MMAU results: a JSON list of every item, with "model_output" added where
    we have an answer. Returns how many items carry one."""
    return _export_list(items, predictions, path, lambda answer, _: {"model_output": answer})


def export_mmar_challenge(items: list[dict], predictions: dict[str, dict], path) -> int:
    """The MMAR challenge submission: JSONL, one {"id", "thinking_prediction",
    "answer_prediction"} per item we have an answer for. Returns the line count.
    The challenge takes a thinking_prediction under 10,000 characters: a longer one has
    its middle cut out (its opening and its conclusion kept)."""
    lines = []
    for item in items:
        answer, thinking = _prediction(predictions, item)
        if answer is None:
            continue
        record = {"id": item.get("id"), "thinking_prediction": fit_trace(thinking or ""),
                  "answer_prediction": answer}
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    _write_atomically(path, "".join(lines))
    return len(lines)


EXPORT_FORMATS = {"mmar": export_mmar, "mmau": export_mmau, "mmar-challenge": export_mmar_challenge}
