"""The crosscheck pipeline's decisions through the real stack: two audio-language models of
different families (tiny random Qwen2-Audio and Audio Flamingo 3 on the GPU-queue worker,
each steered to say chosen words, as the scripted LLM says chosen replies), the scripted
reasoner, and every decision read back from GET /v1/jobs/{id}/evidence.

The first model always says " rain dog rain dog ...", the second " rain rain ...", so:
- choices ["rain", "silence"]: both name "rain": agreement, one round, the gated answer;
- choices ["rain dog", "rain"]: the first names "rain dog", the second "rain": a conflict
  the interaction agent is told of and resolves with targeted calls; the answerer's three
  samples split 2:1 for "rain", the first model's final listening says "rain dog", and the
  arbiter decides;
- a 75 s clip: the 30 s Qwen2-Audio hears it in windows covering all of it.
The audit console (headless Chromium) shows the same decisions.
"""

import json
import os
import threading

import pytest

from api.keys import create_key
from tests.stack import api_client, run_cli, tone_wav
from tests.test_api_batches import ended, wait_for
from tests.test_console import ARTIFACTS, console_page
from tests.tiny_models import build_tiny_audio_flamingo3, build_tiny_qwen2_audio, steer_to_words

RESOLVING_CALLS = [{"tool": "re_caption_2", "args": {"focus": "the rain", "start": 0, "end": 0.5},
                    "purpose": "hear the rain again"},
                   {"tool": "loudness", "args": {}, "purpose": "is anything else as loud?"}]


def _user_text(body: dict) -> str:
    return body["messages"][1]["content"]


@pytest.fixture
def crosscheck_api(stack, scripted_llm, tmp_path):
    first = steer_to_words(build_tiny_qwen2_audio(tmp_path / "qwen2-audio"), ["rain", "dog"])
    second = steer_to_words(build_tiny_audio_flamingo3(tmp_path / "af3"), ["rain"])
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["signal_facts"]',
                    alms=f"qwen2_audio={first},audio_flamingo3={second}", alm_device="cpu",
                    alm_max_new_tokens=6, data_dir=str(tmp_path / "data"))
    stack.start()
    root = tmp_path / "root"
    root.mkdir()
    tone_wav(root / "short.wav")
    tone_wav(root / "long.wav", seconds=75.0)
    url, key = stack.start_api(), create_key(f"t-{os.urandom(4).hex()}", audio_root=root)
    return api_client(url, key), url, key


def _script(scripted_llm) -> None:
    """The interaction agent plans the resolving calls only when told of the conflict; the
    answerer's samples on the conflict split 2:1; the arbiter sides with the audio model."""
    def interaction(body):
        if "- rain\n- rain dog" in _user_text(body):
            return {"calls": []}  # nothing to ask for: the loop ends there
        if "DISAGREEMENT" in _user_text(body):
            return {"calls": RESOLVING_CALLS}
        return {"calls": [{"tool": "signal_facts", "args": {}, "purpose": "check the level"}]}

    lock, conflict_samples = threading.Lock(), []

    def answerer(body):
        choices = [line[2:] for line in _user_text(body).split("Choices:\n")[1].split("\n\n")[0].splitlines()]
        if choices == ["rain dog", "rain"]:
            with lock:
                conflict_samples.append(1)
                answer = "rain" if len(conflict_samples) <= 2 else "rain dog"
            return {"reasoning": "the text says rain", "answer": answer, "confidence": 0.7}
        return {"reasoning": "scripted", "answer": choices[0], "confidence": 0.6}

    scripted_llm.default_replies.update(
        interaction=interaction, answerer=answerer,
        arbiter={"reasoning": "the model heard a dog too", "answer": "rain dog", "confidence": 0.8})


def test_agreement_conflict_vote_arbitration_and_windows(crosscheck_api, scripted_llm):
    _script(scripted_llm)
    lines = [{"custom_id": "agree", "audio": "short.wav", "question": "What is heard?", "choices": ["rain", "silence"]},
             {"custom_id": "conflict", "audio": "short.wav", "question": "What is heard?",
              "choices": ["rain dog", "rain"]},
             {"custom_id": "conflict-unresolved", "audio": "short.wav", "question": "What is heard?",
              "choices": ["rain", "rain dog"]},
             {"custom_id": "long", "audio": "long.wav", "question": "What fills the recording?",
              "choices": ["silence", "speech"]}]
    http, url, key = crosscheck_api
    created = http.post("/v1/batches", json={"input": "\n".join(map(json.dumps, lines)), "pipeline": "crosscheck",
                                             "max_iters": 2, "mechanisms": {"round0_evidence": False}})
    assert created.status_code == 201, created.text
    batch = wait_for(http, created.json()["id"], ended, timeout=600)
    assert batch["status"] == "completed" and batch["options"]["mechanisms"]["round0_evidence"] is False
    jobs = {j["custom_id"]: j for j in http.get(f"/v1/batches/{batch['id']}/jobs").json()["data"]}
    assert all(j["status"] == "succeeded" for j in jobs.values()), jobs
    chains = {name: http.get(f"/v1/jobs/{j['id']}/evidence").json() for name, j in jobs.items()}

    # Agreement: one round, the models' answer, no answerer asked.
    agree = chains["agree"]
    assert [i["index"] for i in agree["iterations"]] == [0]
    first = agree["iterations"][0]
    assert first["verdict"]["gate"] == "agreement" and first["verdict"]["agreement"]["answers"] == {
        "audio_answer": "rain", "audio_answer_2": "rain"}
    assert "AGREEMENT: the 2 audio models" in first["document"]
    assert [c["agent"] for c in first["llm_calls"]] == ["planner"]
    assert agree["job"]["answer"] == "rain" and agree["job"]["decision"]["by"] == "agreement_gate"
    tools = [t["tool"] for t in first["tool_calls"]]
    for slot in ("", "_2"):  # each model: the whole clip, its thirds, its own answer
        assert tools.count(f"caption{slot}") == 4 and tools.count(f"audio_answer{slot}") == 1

    # Conflict: stated, resolved by targeted calls, then voted, heard again and arbitrated.
    conflict = chains["conflict"]
    zero, one, final = conflict["iterations"]
    assert zero["verdict"]["gate"] == "disagreement" and zero["verdict"]["sufficient"] is True
    assert "DISAGREEMENT" in zero["document"]
    (asked,) = [c for c in zero["llm_calls"] if c["agent"] == "interaction"]
    assert "DISAGREEMENT" in asked["messages"][1]["content"]
    assert [t["tool"] for t in one["tool_calls"]] == ["re_caption_2", "loudness"]
    assert all(t["error"] is None for t in one["tool_calls"])
    assert final["document"].startswith("## Final listening") or "## Final listening" in final["document"]
    (heard,) = final["tool_calls"]
    assert heard["tool"] == "audio_answer" and heard["args"]["evidence"]  # the neutral summary it was given
    assert "Answer: rain dog" in heard["text"]
    job = conflict["job"]
    assert job["vote"]["samples"] == 3 and job["vote"]["dissent"]
    assert job["decision"]["by"] == "arbiter"
    assert (job["decision"]["text_answer"], job["decision"]["audio_answer"]) == ("rain", "rain dog")
    assert job["answer"] == "rain dog"
    assert [c["agent"] for c in final["llm_calls"]].count("arbiter") == 1

    # A conflict the interaction agent finds nothing to ask about: final listening still comes.
    unresolved = chains["conflict-unresolved"]
    assert [i["index"] for i in unresolved["iterations"]] == [0, 1]
    assert [t["tool"] for t in unresolved["iterations"][1]["tool_calls"]] == ["audio_answer"]
    assert unresolved["job"]["decision"]["audio_answer"] == "rain dog"

    # The 75 s clip: the first model's caption covers it in windows, none cut off.
    long_zero = chains["long"]["iterations"][0]
    (whole,) = [t for t in long_zero["tool_calls"] if t["tool"] == "caption" and "part" not in t["args"]]
    windows = whole["output"]["windows"]
    assert windows[0]["start"] == 0.0 and windows[-1]["end"] == 75.0 and len(windows) == 3
    assert all(a["end"] == b["start"] for a, b in zip(windows, windows[1:]))
    thirds = [t["args"]["part"] for t in long_zero["tool_calls"] if t["tool"] == "caption" and "part" in t["args"]]
    assert thirds == [1, 2, 3]
    assert chains["long"]["job"]["decision"]["by"] == "text_side"  # the models named no choice

    _console_shows_the_decisions(url, key, agree["job"]["id"], conflict["job"]["id"])
    audited = run_cli({**os.environ, "AGR_API_URL": url, "AGR_API_KEY": key, "COLUMNS": "200"},
                      "audit", conflict["job"]["id"])
    assert audited.returncode == 0, audited.stderr
    assert "gate: disagreement" in audited.stdout and "vote of 3 samples: rain: 2, rain dog: 1" in audited.stdout
    assert "decided by arbiter · text side: rain · audio model: rain dog" in audited.stdout
    _an_ablation_pays_no_perception(http, lines)


def _an_ablation_pays_no_perception(http, lines: list[dict]) -> None:
    """The same items with the agreement gate off: round 0 comes from the result cache, and
    the agreeing job now goes through the answering agent instead of the gate."""
    created = http.post("/v1/batches", json={"input": "\n".join(map(json.dumps, lines)), "pipeline": "crosscheck",
                                             "max_iters": 2, "name": "without the gate",
                                             "mechanisms": {"round0_evidence": False, "agreement_gate": False}})
    assert created.status_code == 201, created.text
    batch = wait_for(http, created.json()["id"], ended, timeout=600)
    assert batch["options"]["mechanisms"]["agreement_gate"] is False
    jobs = {j["custom_id"]: j for j in http.get(f"/v1/batches/{batch['id']}/jobs").json()["data"]}
    assert all(j["status"] == "succeeded" for j in jobs.values()), jobs
    for job in [j for name, j in jobs.items() if name != "conflict-unresolved"]:
        zero = http.get(f"/v1/jobs/{job['id']}/evidence").json()["iterations"][0]
        assert zero["tool_calls"] and all(t["cache_hit"] for t in zero["tool_calls"]), zero["tool_calls"]
        assert "gate" not in zero["verdict"]
    assert jobs["agree"]["decision"]["by"] != "agreement_gate" and jobs["agree"]["vote"]["samples"] == 3


def _console_shows_the_decisions(url: str, key: str, agree_id: str, conflict_id: str) -> None:
    """What an auditor reads on the job pages: each item's source and trust, the gate, the
    vote and who decided."""
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright, console_page(playwright) as (page, errors):
        page.goto(f"{url}/console/")
        page.fill("input[name=key]", key)
        page.click("button[type=submit]")
        page.wait_for_selector("table")

        page.goto(f"{url}/console/#/job/{agree_id}")
        first = page.locator("article.iteration").first
        expect(first.locator("tr[data-tool=signal_facts] td.trust")).to_contain_text("analytic · 1.00")
        expect(first.locator("tr[data-tool=caption_2] td.trust").first).to_contain_text("audio_model · 0.40")
        expect(first.locator(".agreement[data-gate=agreement]")).to_contain_text("agree on “rain”")
        expect(page.locator("article.final .decision[data-by=agreement_gate]")).to_be_visible()

        page.goto(f"{url}/console/#/job/{conflict_id}")
        rounds = page.locator("article.iteration")
        expect(rounds).to_have_count(3)
        expect(rounds.nth(0).locator(".agreement[data-gate=disagreement]")).to_contain_text("disagree")
        expect(rounds.nth(2)).to_contain_text("final listening")
        final = page.locator("article.final")
        expect(final.locator(".vote")).to_contain_text("3 samples")
        expect(final.locator(".vote")).to_contain_text("rain: 2 vote(s)")
        expect(final.locator(".decision[data-by=arbiter]")).to_contain_text("Text side: rain")
        expect(final.locator(".decision")).to_contain_text("the model heard a dog too")
        page.screenshot(path=str(ARTIFACTS / "crosscheck-job.png"), full_page=True)
    assert errors == [], errors
