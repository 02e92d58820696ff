"""The OpenAPI schema fuzzed with schemathesis against the running API: whatever a
client sends, with a valid key or without, the answer is never a 5xx. The schema says
only that a batch's `input` is a string, so the lines inside it are fuzzed on their own:
whatever they hold, the answer is a batch or a 422 whose every error names its line."""

import json
import os
import random
import re
import time
import uuid
from collections import Counter, defaultdict

import httpx
import hypothesis
import schemathesis
from hypothesis import strategies as st
from schemathesis import runner
from schemathesis.checks import not_a_server_error
from schemathesis.models import Status
from schemathesis.runner import events

from api.keys import create_key
from tests.stack import api_client, tone_wav

EXAMPLES_PER_OPERATION = 40


def test_no_request_gets_a_server_error(stack, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    tone_wav(root / "tone.wav")
    stack.configure(data_dir=str(tmp_path / "data"))
    url = stack.start_api()
    key = create_key(f"fuzz-{os.urandom(4).hex()}", audio_root=root, rate_limit_per_minute=1_000_000)
    real_ids = _a_batch_and_its_job(url, key)
    # Ids the fuzzer makes up are mostly unknown (404); mixing in real ones takes it past
    # the lookups into the handlers' own code.
    schemathesis.openapi.format("uuid", st.sampled_from(real_ids) | st.uuids().map(str))
    # FastAPI writes OpenAPI 3.1, which schemathesis 3 reads when told to treat it as 3.0.
    schema = schemathesis.from_uri(f"{url}/openapi.json", base_url=url, force_schema_version="30")
    run = runner.from_schema(
        schema, checks=[not_a_server_error], headers={"Authorization": f"Bearer {key}"},
        hypothesis_settings=hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
                                                database=None, derandomize=True),
    )
    failures, operations, statuses = [], 0, defaultdict(Counter)
    for event in run.execute():
        if isinstance(event, events.AfterExecution):
            operations += 1
            statuses[event.result.verbose_name].update(c.response.status_code for c in event.result.checks if c.response)
            for check in event.result.checks:
                if check.value == Status.failure:
                    failures.append(f"{event.result.verbose_name}: {check.message or check.name} "
                                    f"({check.example.method if check.example else ''})")
            failures += [f"{event.result.verbose_name}: {e.exception}" for e in event.result.errors]
        if isinstance(event, events.InternalError):
            failures.append(f"schemathesis internal error: {event.message}")
    assert operations >= 14, operations
    reached = {name: codes for name, codes in statuses.items() if 200 in codes or 201 in codes}
    for name in ("GET /v1/batches/{batch_id}", "GET /v1/batches/{batch_id}/jobs", "GET /v1/jobs/{job_id}/evidence",
                 "POST /v1/audio"):
        assert name in reached, f"the fuzzer never got past validation of {name}: {dict(statuses)}"
    assert not failures, "\n".join(failures[:20]) + "\n" + stack.logs()[-4000:]


def _a_batch_and_its_job(url: str, key: str) -> list[str]:
    http = api_client(url, key)
    line = '{"custom_id": "one", "audio": "tone.wav", "question": "What is heard?", "choices": ["a", "b"]}'
    batch = http.post("/v1/batches", json={"input": line})
    assert batch.status_code == 201, batch.text
    job = http.get(f"/v1/batches/{batch.json()['id']}/jobs").json()["data"][0]
    return [batch.json()["id"], job["id"]]


# Line fuzzing: seeded, so a failure is the same on every run.
LINE_FUZZ_SEED = 20251202
LINE_FUZZ_POSTS = 34  # of 5 lines each, plus 6 MMAU lists of 5 items: 200 random items
FIELDS = ("custom_id", "audio", "question", "choices", "answer", "metadata", "options",
          "id", "audio_path", "audio_id", "category", "modality", "sub-category")
# NUL, C0 and C1 controls, line separators JSON allows in strings, a BOM, lone
# surrogates (which JSON can spell as \ud800), astral characters, and ordinary text.
ALPHABETS = ("\x00", "\x00\x01\x07\x08\x1b\x1f\x7f\x85\x9f", "\u2028\u2029\x0b\x0c\x1c\r",
             "\ufeff\ufffe\uffff", "\ud800\udbff\udc00\udfff", "\U0001f50a\U0010ffff\u0301",
             "abc xyz./\\'\"{}[]:", "é漢字العربية")


class _Raw(str):
    """Number text that json.dumps cannot write (NaN, 1e400, a 5,000-digit int): spliced in."""


def _text(rng: random.Random) -> str:
    alphabet = "".join(rng.sample(ALPHABETS, rng.randint(1, 3)))
    return "".join(rng.choice(alphabet) for _ in range(rng.choice((0, 1, 3, 12, 60))))


def _value(rng: random.Random, good, chaos: float, depth: int = 0):
    """Mostly `good` when `chaos` is low; else anything JSON (or Python's json) can hold."""
    if rng.random() >= chaos:
        return good
    kind = rng.randrange(4, 14)
    if kind <= 6:
        return _text(rng)
    if kind == 7:
        return rng.choice(("x" * 199, "x" * 200, "x" * 201, "y" * 5_000, "z" * 250_000, " ", ""))
    if kind == 8:
        return rng.choice((0, -1, 7, 11, 2**63, 10**40, 1.5, -0.0, True, False, None))
    if kind == 9:
        return _Raw(rng.choice(("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 5_000)))
    if kind == 10 and depth < 3:
        return [_value(rng, good, 0.7, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == 11 and depth < 3:
        return {_text(rng) or "k": _value(rng, good, 0.7, depth + 1) for _ in range(rng.randint(0, 4))}
    if kind == 12:
        return rng.choice(("../x.wav", "/etc/passwd", "https://example.com/a.wav", "clips/" + "a" * 300 + ".wav",
                           "a/" * 2_000 + "x.wav", "clips", "tone.wav/", {"path": _text(rng)},
                           {"upload_id": str(uuid.uuid4())}, {"upload_id": _text(rng)}, {"path": 3, "x": 1}))
    return {"options": {"max_iters": rng.choice((0, 3, 10, 11, -1, "2", 2.0, None))}, "max_iters": 1}


def _good_values(upload_id: str, number: int) -> dict:
    """Each field's valid alternatives (ids unique to the item, so whole batches can pass)."""
    return {"custom_id": [f"q{number}"], "id": [f"q{number}"],
            "audio": ["clips/tone.wav", {"path": "clips/tone.wav"}, {"upload_id": upload_id}],
            "audio_path": ["clips/tone.wav"], "audio_id": ["clips/tone.wav"], "question": ["What is heard?", "ü 漢 🔊"],
            "choices": [["a", "b"], [], None], "answer": ["a", None], "metadata": [{"modality": "sound"}, {}],
            "options": [{"max_iters": 1}, {}], "category": ["c"], "modality": ["sound"], "sub-category": ["s"]}


def _item(rng: random.Random, upload_id: str, number: int, chaos: float) -> dict:
    good = _good_values(upload_id, number)
    names = [n for n in FIELDS if rng.random() >= chaos / 3]
    if rng.random() < chaos / 3:
        names.append(_text(rng) or "extra")
    return {name: _value(rng, rng.choice(good.get(name, ["x"])), chaos) for name in names}


def _dumps(value, rng: random.Random) -> str:
    raw: list[str] = []

    def splice(v):
        if isinstance(v, _Raw):
            raw.append(str(v))
            return f"@@RAW{len(raw) - 1}@@"
        if isinstance(v, dict):
            return {k: splice(x) for k, x in v.items()}
        if isinstance(v, list):
            return [splice(x) for x in v]
        return v

    text = json.dumps(splice(value), ensure_ascii=rng.random() < 0.6)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot be sent raw: JSON spells it escaped
        text = json.dumps(splice(value))
    return re.sub(r'"@@RAW(\d+)@@"', lambda m: raw[int(m.group(1))], text)


def test_random_batch_lines_get_a_batch_or_errors_naming_them(stack, tmp_path):
    root = tmp_path / "root"
    (root / "clips").mkdir(parents=True)
    tone_wav(root / "clips" / "tone.wav")
    url = stack.start_api()
    key = create_key(f"line-fuzz-{os.urandom(4).hex()}", audio_root=root, rate_limit_per_minute=1_000_000,
                     max_queued_items=1_000_000)
    http = api_client(url, key)
    uploaded = http.post("/v1/audio", files={"file": ("tone.wav", (root / "clips" / "tone.wav").read_bytes())})
    assert uploaded.status_code == 201, uploaded.text
    upload_id = uploaded.json()["id"]
    rng = random.Random(LINE_FUZZ_SEED)
    started, failures, answers = time.monotonic(), [], Counter()
    for post in range(LINE_FUZZ_POSTS + 6):
        mmau = post >= LINE_FUZZ_POSTS
        chaos = rng.choice((0.0, 0.03, 0.1, 0.3, 0.6, 0.9))  # how much of each item is random
        items = [_item(rng, upload_id, post * 10 + n, chaos) for n in range(5)]
        if mmau:
            text, fmt, unit = _dumps(items, rng), "mmau", "item"
        else:
            lines = [_dumps(item if rng.random() < 0.95 else rng.choice(([], "x", 5, None)), rng) for item in items]
            text, fmt, unit = "\n".join(lines), rng.choice(("auto", "auto", "jsonl", "mmar")), "line"
        body = json.dumps({"input": text, "input_format": fmt})  # escaped: what any client sends
        try:  # a connection of its own: one a 500 closed must not fail the next post
            with api_client(url, key) as client:
                response = client.post("/v1/batches", content=body, headers={"Content-Type": "application/json"})
        except httpx.TransportError as exc:
            failures.append(f"post {post}: {exc!r}\n{text[:300]}")
            continue
        answers[response.status_code] += 1
        if response.status_code == 201:
            continue
        detail = response.json().get("detail") if response.status_code == 422 else None
        errors = detail.get("errors") if isinstance(detail, dict) else None
        named = errors and all(re.match(rf"{unit} [1-5]: ", e) for e in errors)
        if not named:
            failures.append(f"post {post}: {response.status_code} {response.text[:300]}\n{text[:300]}")
    assert not failures, "\n".join(failures[:10]) + f"\n({len(failures)} failures)\n" + stack.logs()[-3000:]
    assert answers[201] and answers[422], answers  # the fuzz reached both outcomes
    assert time.monotonic() - started < 20
