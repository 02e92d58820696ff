"""Benchmark scoring: the official MMAR/MMAU token rule, the AIR-Bench letter
rule, official-vs-strict accuracy, file formats and exports. Pure unit tests."""

import json
from pathlib import Path

import pytest

from evaluation.benchmark_exports import EXPORT_FORMATS
from evaluation.scoring import (
    Accuracy,
    extract_choice_letter,
    letter_match,
    read_benchmark,
    read_predictions,
    score,
    score_item,
    token_match,
    tokenize,
)

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
MMAR_FILE = BENCHMARKS / "MMAR-meta.jsonl"
MMAU_FILE = BENCHMARKS / "mmau-test-mini.json"

ENVIRONMENTS = ["Mountain Canyon", "Dense Forest", "Open Grassland", "City Streets"]
VOICES = ["A man speaking", "A woman speaking"]


def _real(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is only on the project machines)")
    return path


# --- token rule -------------------------------------------------------------


def test_tokenize_lowercases_and_splits_words():
    assert tokenize("The answer is: Open-Grassland!") == {"the", "answer", "is", "open", "grassland"}


@pytest.mark.parametrize(
    "prediction, correct",
    [
        ("Open Grassland", True),
        ("open grassland.", True),
        ("OPEN GRASSLAND", True),
        ("The answer is Open Grassland", True),
        ("Grassland, open.", True),  # a set of tokens: order does not matter
        ("C", False),  # a bare letter has none of the answer's words
        ("C. Open Grassland", True),  # "c" is no wrong choice's word
        ("Open Grassland or Dense Forest", False),  # names a distractor
        ("Open Grassland, not the city", False),  # "city" belongs only to a wrong choice
        ("Grassland", False),  # "open" missing
        ("", False),
        ("   ...  ", False),  # no word tokens at all
    ],
)
def test_token_rule_verdicts(prediction, correct):
    assert token_match("Open Grassland", prediction, ENVIRONMENTS) is correct


@pytest.mark.parametrize(
    "prediction, correct",
    [
        ("a woman speaking", True),
        ("A woman is speaking.", True),
        ("woman", False),  # "a" and "speaking" are answer tokens too, and missing
        ("a man speaking", False),  # "man" is only in the wrong choice
        ("a woman speaking, not a man", False),
    ],
)
def test_token_rule_with_choices_sharing_words(prediction, correct):
    assert token_match("A woman speaking", prediction, VOICES) is correct


def test_token_rule_allows_words_a_wrong_choice_shares_with_the_answer():
    # "speaking" is in both choices, so it is not an incorrect token.
    assert token_match("A woman speaking", "speaking: a woman", VOICES)


# --- letter rule ------------------------------------------------------------


@pytest.mark.parametrize(
    "prediction, letter",
    [
        ("B", "B"),
        (" B \n", "B"),
        ("b", "B"),  # a lone lower-case letter is unambiguous
        ("B.", "B"),
        ("B)", "B"),
        ("(B)", "B"),
        ("B. Dense Forest", "B"),
        ("(B) Dense Forest", "B"),
        ("Answer: B", "B"),
        ("answer:B", "B"),
        ("The answer is B", "B"),
        ("THE ANSWER IS (B).", "B"),
        ("Forest sounds dominate, so the answer is B.", "B"),
        ("The answer is A? No: the answer is C.", "C"),  # the last conclusion wins
        ("answer: b", None),  # a lower-case letter inside text is not taken
        ("E", None),  # only four choices
        ("(E) Somewhere else", None),
        ("Dense Forest", None),
        ("A woman speaking", None),  # "A" as the article, not a label
        ("The answer is A woman speaking", None),
        ("", None),
    ],
)
def test_extract_choice_letter(prediction, letter):
    assert extract_choice_letter(prediction, 4) == letter


@pytest.mark.parametrize(
    "prediction, correct",
    [
        ("B", True),
        ("(B)", True),
        ("B. Dense Forest", True),
        ("The answer is B", True),
        ("C", False),
        ("answer: b", False),  # no letter -> wrong
        ("E", False),  # out of range -> no letter -> wrong
        ("Dense Forest", False),  # the letter rule wants a letter
    ],
)
def test_letter_rule_verdicts(prediction, correct):
    assert letter_match("Dense Forest", prediction, ENVIRONMENTS) is correct


def test_letter_rule_rejects_an_answer_outside_the_choices():
    with pytest.raises(ValueError, match="not one of the choices"):
        letter_match("Desert", "A", ENVIRONMENTS)


# --- items, accuracy and breakdowns -----------------------------------------


def _mmau_item(i, task, difficulty, answer="Man"):
    return {
        "id": f"q{i}",
        "question": "Who is speaking?",
        "choices": ["Man", "Woman", "Child", "Robot"],
        "answer": answer,
        "task": task,
        "category": "Reasoning",
        "difficulty": difficulty,
    }


def test_score_item_maps_mmau_task_to_modality_and_none_to_no_prediction():
    scored = score_item(_mmau_item(1, "speech", "easy"), None)
    assert scored.correct is None
    assert scored.groups == {"modality": "speech", "category": "Reasoning", "difficulty": "easy"}
    mmar = {"id": "m", "choices": ["x", "y"], "answer": "x", "modality": "music", "language": None}
    assert score_item(mmar, "x").groups == {"modality": "music"}  # None-valued fields left out


def test_breakdown_official_versus_strict():
    items = [
        _mmau_item(1, "speech", "easy"),
        _mmau_item(2, "speech", "hard"),
        _mmau_item(3, "speech", "hard"),
        _mmau_item(4, "music", "easy"),
        _mmau_item(5, "music", "hard"),
    ]
    predictions = {
        "q1": "Man",  # right
        "q2": "Woman",  # wrong
        # q3: no prediction at all
        "q4": "The speaker is a man",  # right
        "q5": "",  # empty: scored, wrong (not dropped)
    }
    report = score(items, predictions)
    assert report.rule == "token" and report.unscorable == 0
    assert report.overall == Accuracy(correct=2, scored=4, total=5, missing=1, official=0.5, strict=0.4)
    speech = report.by_group["modality"]["speech"]
    assert (speech.correct, speech.scored, speech.total, speech.missing) == (1, 2, 3, 1)
    assert speech.official == pytest.approx(1 / 2) and speech.strict == pytest.approx(1 / 3)
    music = report.by_group["modality"]["music"]
    assert (music.official, music.strict) == (0.5, 0.5)
    hard = report.by_group["difficulty"]["hard"]
    assert (hard.correct, hard.scored, hard.total) == (0, 2, 3)
    assert (hard.official, hard.strict) == (0.0, 0.0)
    easy = report.by_group["difficulty"]["easy"]
    assert (easy.official, easy.strict) == (1.0, 1.0)
    assert list(report.by_group) == ["modality", "category", "difficulty"]
    assert json.loads(json.dumps(report.as_json()))["overall"]["strict"] == 0.4


def test_items_without_a_reference_are_unscorable():
    items = [_mmau_item(1, "sound", "easy"), _mmau_item(2, "sound", "easy", answer=None)]
    report = score(items, {"q1": "Man", "q2": "Man"})
    assert report.unscorable == 1
    assert (report.overall.total, report.overall.official) == (1, 1.0)
    with pytest.raises(ValueError, match="no reference answer"):
        score_item(items[1], "Man")


def test_empty_and_unpredicted_benchmarks_have_no_figure():
    assert score([], {}).overall.official is None
    assert score([], {}).overall.strict is None
    nothing = score([_mmau_item(1, "sound", "easy")], {})
    assert (nothing.overall.official, nothing.overall.strict, nothing.overall.missing) == (None, 0.0, 1)


def test_letter_rule_through_score():
    items = [_mmau_item(1, "sound", "easy"), _mmau_item(2, "sound", "easy", answer="Child")]
    report = score(items, {"q1": "A", "q2": "(B)"}, rule="letter")
    assert (report.rule, report.overall.correct, report.overall.scored) == ("letter", 1, 2)


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown scoring rule"):
        score([], {}, rule="exact")


# --- files ------------------------------------------------------------------


def test_read_benchmark_detects_jsonl_and_json(tmp_path):
    items = [{"id": "a", "answer": "x", "choices": ["x", "y"]}, {"id": "b", "answer": "y", "choices": ["x", "y"]}]
    jsonl = tmp_path / "meta.jsonl"
    jsonl.write_text("\n" + json.dumps(items[0]) + "\n\n" + json.dumps(items[1]) + "\n", encoding="utf-8")
    as_json = tmp_path / "meta.json"
    as_json.write_text("  \n" + json.dumps(items, indent=2), encoding="utf-8")
    assert read_benchmark(jsonl) == items
    assert read_benchmark(as_json) == items


def test_read_benchmark_names_the_bad_line(tmp_path):
    bad = tmp_path / "meta.jsonl"
    bad.write_text('{"id": "a"}\n{"id": "b",,}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"meta\.jsonl: line 2"):
        read_benchmark(bad)
    bad_array = tmp_path / "meta.json"
    bad_array.write_text('[\n  {"id": "a"},\n  {"id": \n]', encoding="utf-8")
    with pytest.raises(ValueError, match=r"meta\.json: line 4"):
        read_benchmark(bad_array)


def test_read_predictions_accepts_every_format(tmp_path):
    mmar = tmp_path / "mmar.json"
    mmar.write_text(json.dumps([{"id": "a", "answer": "ref", "answer_prediction": "x"}, {"id": "b", "answer": "ref"}]))
    assert read_predictions(mmar) == {"a": "x", "b": None}  # never the reference "answer"
    mmau = tmp_path / "mmau.json"
    mmau.write_text(json.dumps([{"id": "a", "answer": "ref", "model_output": "x"}, {"id": "b", "model_output": None}]))
    assert read_predictions(mmau) == {"a": "x", "b": None}
    challenge = tmp_path / "challenge.jsonl"
    challenge.write_text('{"id": "a", "thinking_prediction": "t", "answer_prediction": "x"}\n')
    assert read_predictions(challenge) == {"a": "x"}
    ours = tmp_path / "results.jsonl"
    ours.write_text('{"custom_id": "a", "answer": "x"}\n{"custom_id": 7, "status": "failed"}\n')
    assert read_predictions(ours) == {"a": "x", "7": None}


def test_read_predictions_refuses_duplicates(tmp_path):
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"custom_id": "a", "answer": "x"}\n{"custom_id": "a", "answer": "y"}\n')
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        read_predictions(dup)


@pytest.mark.parametrize("fmt", sorted(EXPORT_FORMATS))
def test_export_round_trip(tmp_path, fmt):
    items = [
        {"id": "a", "answer": "Open Grassland", "choices": ENVIRONMENTS, "modality": "music"},
        {"id": "b", "answer": "Dense Forest", "choices": ENVIRONMENTS, "answer_prediction": "stale"},
        {"id": "c", "answer": "City Streets", "choices": ENVIRONMENTS},
    ]
    predictions = {
        "a": {"answer": "Open Grassland — 草原", "thinking": "throat singing carries far"},
        "c": {"answer": "", "thinking": None},  # an empty answer is a prediction
        # b: none
    }
    path = tmp_path / f"out.{fmt}"
    written = EXPORT_FORMATS[fmt](items, predictions, path)
    assert written == 2
    assert "草原" in path.read_text(encoding="utf-8")  # UTF-8, not \u escapes
    read_back = read_predictions(path)
    assert read_back["a"] == "Open Grassland — 草原" and read_back["c"] == ""
    assert read_back.get("b") is None  # absent (challenge) or keyless (mmar/mmau): dropped officially
    report = score(items, read_back)
    assert (report.overall.correct, report.overall.scored, report.overall.total) == (1, 2, 3)


def test_mmar_export_shape(tmp_path):
    items = [{"id": "a", "answer": "x", "choices": ["x", "y"]}, {"id": "b", "answer": "y", "choices": ["x", "y"]}]
    path = tmp_path / "mmar.json"
    EXPORT_FORMATS["mmar"](items, {"a": {"answer": "x", "thinking": None}}, path)
    first, second = json.loads(path.read_text(encoding="utf-8"))
    assert first["answer_prediction"] == "x" and first["thinking_prediction"] == ""
    assert "answer_prediction" not in second and "thinking_prediction" not in second


# --- the real benchmark files -----------------------------------------------


def test_read_real_mmar():
    items = read_benchmark(_real(MMAR_FILE))
    assert len(items) == 1000  # 999 newlines: the last line has none
    assert all(i["answer"] in i["choices"] for i in items)
    assert {"speech", "music", "sound"} <= {i["modality"] for i in items}


def test_read_real_mmau():
    items = read_benchmark(_real(MMAU_FILE))
    assert len(items) == 1000
    assert {i["task"] for i in items} == {"sound", "music", "speech"}


def test_real_mmau_reference_answers_score_perfectly():
    items = read_benchmark(_real(MMAU_FILE))
    report = score(items, {i["id"]: i["answer"] for i in items})
    assert report.overall.official == report.overall.strict == 1.0
    assert set(report.by_group["modality"]) == {"sound", "music", "speech"}
    assert sum(a.total for a in report.by_group["modality"].values()) == 1000


def test_real_mmau_first_choice_matches_a_direct_loop():
    items = read_benchmark(_real(MMAU_FILE))
    report = score(items, {i["id"]: i["choices"][0] for i in items})
    direct = sum(token_match(i["answer"], i["choices"][0], i["choices"]) for i in items)
    assert report.overall.correct == direct
    assert report.overall.official == report.overall.strict == direct / len(items)
