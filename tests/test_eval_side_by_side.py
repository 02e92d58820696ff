"""`agr eval --batch A --batch B`: accuracy per pipeline (and per switched-off mechanism)
side by side, one column per batch, over the items the batches share; through the real
stack (API process, Celery workers, Postgres, Redis, the scripted OpenAI-compatible
reasoner)."""

import json
import os
import re
import threading
import time
from contextlib import contextmanager

import pytest

from cli.evaluate import column_label
from tests.stack import run_cli

ITEMS = {"item-1": "tones", "item-2": "tones", "item-3": "voices", "item-4": "voices"}


@contextmanager
def tone_service(services, tmp, llm):
    """A module's own stack on its `services` (conftest.ModuleServices; the broker emptied
    first), the scripted `llm` as reasoner, with the API, and a key whose audio root holds
    tone.wav; yields (API URL, key) and stops everything after."""
    from tests.conftest import fresh_broker
    from tests.stack import Stack, tone_wav

    stack = Stack(services.database_url, fresh_broker(services.broker_url), tmp)
    stack.configure(llm_base_url=llm.base_url, coarse_tools='["signal_facts", "voice_activity"]',
                    data_dir=str(tmp / "data"))
    try:
        stack.start()
        url = stack.start_api()
        root = tmp / "audio"
        root.mkdir()
        tone_wav(root / "tone.wav")
        yield url, make_key(root)
    finally:
        stack.stop_all()
        llm.close()


def make_key(audio_root) -> str:
    from api.keys import create_key

    return create_key(f"t-{os.urandom(4).hex()}", audio_root=audio_root, rate_limit_per_minute=100_000)


def wait_ended(http, batch_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = http.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] in ("completed", "cancelled", "expired", "failed"):
            assert batch["status"] == "completed", batch
            return batch
        time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} did not end: {batch}")


class _FirstTimeWrong:
    """The answerer: "A tone" (right) always, except the first time it is asked about
    item-2 ("A voice", wrong): the first batch gets item-2 wrong, the second right."""

    def __init__(self):
        self.asked, self.lock = set(), threading.Lock()

    def __call__(self, body: dict) -> dict:
        text = body["messages"][-1]["content"]
        with self.lock:
            first = "item-2" in text and "item-2" not in self.asked
            if "item-2" in text:
                self.asked.add("item-2")
        return {"reasoning": "scripted", "answer": "A voice" if first else "A tone", "confidence": 0.7}


@pytest.fixture(scope="module")
def two_batches(module_services, tmp_path_factory):
    """Batch A (pipeline agr) over items 1-3, then batch B (cascade) over items 1, 2 and 4;
    returns (the CLI's environment, A's id, B's id)."""
    from tests.scripted_llm import ScriptedLLM
    from tests.stack import api_client

    llm = ScriptedLLM()
    llm.default_replies["answerer"] = _FirstTimeWrong()
    with tone_service(module_services, tmp_path_factory.mktemp("side-by-side"), llm) as (url, key):
        ids = []
        with api_client(url, key) as http:
            for pipeline, items in (("agr", ["item-1", "item-2", "item-3"]), ("cascade", ["item-1", "item-2", "item-4"])):
                lines = [json.dumps({"custom_id": cid, "audio": "tone.wav", "question": f"What is heard in {cid}?",
                                     "choices": ["A tone", "A voice"], "answer": "A tone",
                                     "metadata": {"category": ITEMS[cid]}}) for cid in items]
                created = http.post("/v1/batches", json={"input": "\n".join(lines), "input_format": "jsonl",
                                                         "pipeline": pipeline, "max_iters": 1, "name": pipeline})
                assert created.status_code == 201, created.text
                ids.append(created.json()["id"])
                wait_ended(http, ids[-1])  # in turn: the first batch is the one that gets item-2 wrong
        env = {**os.environ, "AGR_API_URL": url, "AGR_API_KEY": key, "COLUMNS": "220"}
        yield env, ids[0], ids[1]




def test_two_batches_side_by_side_over_their_common_items(two_batches, tmp_path):
    env, a, b = two_batches
    report_path = tmp_path / "compare.json"
    run = run_cli(env, "eval", "--batch", a, "--batch", b, "--json", str(report_path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert (f"warning: the batches do not cover the same items ({a}: 3, {b}: 3): scored over the 2 item(s) "
            "they all have") in " ".join(out.split())
    assert "over 2 common item(s)" in out
    header = next(line for line in out.splitlines() if "agr" in line and "cascade" in line)
    assert header.index("agr") < header.index("cascade")  # a column per batch, in the order given
    assert re.search(r"items\W+2\W+2\W", out)
    assert re.search(r"official\W+50\.0% \(1/2\)\W+100\.0% \(2/2\)", out)  # not A's 2/3 over its own three
    assert re.search(r"strict\W+50\.0% \(1/2\)\W+100\.0% \(2/2\)", out)
    assert re.search(r"category\W+tones\W+50\.0% \(1/2\)\W+100\.0% \(2/2\)", out)
    assert "voices" not in out  # items 3 and 4 are each in one batch only

    report = json.loads(report_path.read_text())
    assert report["common_items"] == 2 and "do not cover the same items" in report["warning"]
    columns = {c["id"]: c for c in report["batches"]}
    assert (columns[a]["label"], columns[b]["label"]) == ("agr", "cascade")
    assert (columns[a]["items"], columns[b]["items"]) == (3, 3)
    assert columns[a]["report"]["overall"]["correct"] == 1 and columns[b]["report"]["overall"]["correct"] == 2
    assert columns[a]["report"]["overall"]["total"] == columns[b]["report"]["overall"]["total"] == 2


def test_one_batch_still_reports_as_before(two_batches):
    env, a, _ = two_batches
    run = run_cli(env, "eval", "--batch", a)
    assert run.returncode == 0, run.stderr
    assert "rule token: official 66.7% (items without a prediction dropped: 0), strict 66.7%" in run.stdout
    assert "warning" not in run.stdout and "common item" not in run.stdout


def test_the_same_batch_twice_is_refused(two_batches):
    env, a, _ = two_batches
    run = run_cli(env, "eval", "--batch", a, "--batch", a)
    assert run.returncode == 2 and "the same batch is given twice" in run.stdout


def test_columns_are_labelled_by_pipeline_and_the_mechanisms_switched_off():
    assert column_label({"pipeline": "agr", "options": {"pipeline": "agr"}}) == "agr"
    assert column_label({"pipeline": "crosscheck", "options": {"mechanisms": {"agreement_gate": False,
                                                                              "trust_weights": True}}}) \
        == "crosscheck -agreement_gate"
    assert column_label({"pipeline": "crosscheck", "options": {"mechanisms": {"b": False, "a": False}}}) \
        == "crosscheck -a -b"
    assert column_label({"options": {"pipeline": "cascade"}}) == "cascade"
