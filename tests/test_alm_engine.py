"""An audio-language model behind a serving engine: a real `transformers serve` on 127.0.0.1
with a tiny random Qwen2-Audio saved here (steered to reply "rain dog ..."), asked by the
stack's GPU perception worker over the OpenAI chat API with `input_audio` parts.

transformers serve is the engine that installs here (vLLM and SGLang need CUDA); it serves
Qwen2-Audio from its `input_audio` and `audio_url` parts, as vLLM does."""

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from bench.simulated_engine import SimulatedEngine
from local_stack import processes
from models import Step, ToolCall
from models.db import session_scope
from tests import children
from tests.engines import Served, start_transformers_serve
from tests.stack import question_item, tone_wav
from tests.tiny_models import build_tiny_qwen2_audio, steer_to_words

INSUFFICIENT = {"reason": "ask the model", "sufficient": False, "confidence": 0.3, "missing": ["is it rain"]}
ASK = {"calls": [{"tool": "audio_qa", "args": {"question": "Is it raining?"}, "purpose": "ask"},
                 {"tool": "re_caption", "args": {"focus": "the dog"}, "purpose": "listen again"}]}


def start_engine(folder: Path, words: list[str]) -> Served:
    """`transformers serve`, pinned to a tiny Qwen2-Audio that replies `words` over and over."""
    return start_transformers_serve(steer_to_words(build_tiny_qwen2_audio(folder / "qwen2-audio"), words), folder)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    engine = start_engine(tmp_path_factory.mktemp("engine"), ["rain", "dog"])
    yield engine
    children.stop(engine.process)


def _all_calls(job_id) -> list[ToolCall]:
    with session_scope() as session:
        return list(session.scalars(select(ToolCall).where(ToolCall.job_id == job_id).order_by(ToolCall.id)))


def _calls(job_id) -> dict[str, ToolCall]:
    """A job's tool calls by tool (the last of each)."""
    return {row.tool: row for row in _all_calls(job_id)}


def test_every_model_call_goes_to_the_engine_long_clips_in_windows_and_reruns_from_the_cache(
        engine, stack, scripted_llm, tmp_path):
    scripted_llm.default_replies.update(planner=INSUFFICIENT, interaction=ASK)
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["caption"]', alms=engine.spec(),
                    alm_max_new_tokens=6)
    stack.start()
    items = [question_item("short", tone_wav(tmp_path / "short.wav")),
             question_item("long", tone_wav(tmp_path / "long.wav", seconds=75.0))]
    asked_before = len(engine.requests())
    batch_id = stack.submit(items, max_iters=1)
    stack.wait_for_batch(batch_id, timeout=300)

    jobs = {j.custom_id: j for j in stack.jobs(batch_id)}
    assert all(j.status == "succeeded" for j in jobs.values()), stack.job_summary(batch_id)
    long = _calls(jobs["long"].id)
    # Descriptions cover the 75 s clip in three 25 s windows, each the engine's reply.
    for tool in ("caption", "re_caption"):
        windows = long[tool].output["windows"]
        assert [(w["start"], w["end"]) for w in windows] == [(0.0, 25.0), (25.0, 50.0), (50.0, 75.0)], tool
        assert all("rain" in w["text"] for w in windows), windows
    # A question wanting one answer hears the first 30 s, and its evidence says so.
    qa = long["audio_qa"]
    assert qa.output["heard"] == {"start": 0.0, "end": 30.0} and "rain" in qa.output["text"]
    assert "heard only 0.0-30.0 s of this 0.0-75.0 s clip" in qa.text
    short = _calls(jobs["short"].id)
    assert "windows" not in short["caption"].output and "heard" not in short["audio_qa"].output
    assert {row.model.split(" ")[0] for row in [*long.values(), *short.values()]} == {engine.spec()}
    # Every model call went to the engine, once: 3 + 3 + 1 for the long clip, 3 for the short.
    assert engine.requests()[asked_before:] == [200] * 10

    # The same questions again: answered from the cache, nothing asked of the engine.
    again = stack.submit(items, max_iters=1)
    stack.wait_for_batch(again, timeout=300)
    for job in stack.jobs(again):
        assert job.status == "succeeded" and all(row.cache_hit for row in _calls(job.id).values()), job.custom_id
    assert len(engine.requests()) == asked_before + 10


def test_a_worker_naming_a_model_its_engine_does_not_serve_refuses_to_start(engine, database_url, broker_url, tmp_path):
    env = {**os.environ, "AGR_DATABASE_URL": database_url, "AGR_BROKER_URL": broker_url,
           "AGR_ALMS": engine.spec("Qwen/Qwen2-Audio-7B-Instruct")}
    worker = processes.start_worker("perception", env, tmp_path / "worker.log")
    try:
        assert worker.wait(timeout=120) != 0
    finally:
        processes.stop(worker, 30)
    said = (tmp_path / "worker.log").read_text()
    assert "refusing to start" in said and "AGR_ALMS" in said and "Qwen/Qwen2-Audio-7B-Instruct" in said, said[-2000:]


def test_another_deployment_is_never_served_the_first_ones_cached_captions(engine, stack, scripted_llm, tmp_path):
    """The same clip captioned by the first engine, then by a second deployment (another
    server and model): the second's caption is its own, not the first's from the cache."""
    other = start_engine(tmp_path / "other", ["wind"])
    try:
        stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["caption"]', alms=engine.spec(),
                        alm_max_new_tokens=6)
        stack.start()
        clip = tone_wav(tmp_path / "clip.wav")
        captions = []
        for served in (engine, other):
            stack.configure(alms=served.spec())
            stack.kill("perception")
            stack.start_role("perception")
            batch_id = stack.submit([question_item("clip", clip)], max_iters=1)
            stack.wait_for_batch(batch_id, timeout=300)
            (job,) = stack.jobs(batch_id)
            assert job.status == "succeeded", stack.job_summary(batch_id)
            captions.append(_calls(job.id)["caption"])
        first, second = captions
        assert "rain" in first.text and not first.cache_hit
        assert "wind" in second.text and "rain" not in second.text and not second.cache_hit
        assert first.cache_key != second.cache_key and other.requests() == [200]
    finally:
        children.stop(other.process)


def test_an_engine_killed_mid_batch_and_restarted_is_waited_out_and_nothing_is_stored_twice(
        stack, scripted_llm, tmp_path):
    folder = tmp_path / "restarted"
    model = steer_to_words(build_tiny_qwen2_audio(folder / "qwen2-audio"), ["rain"])
    served = start_transformers_serve(model, folder)
    port = int(served.url.rsplit(":", 1)[1].split("/")[0])
    try:
        stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["caption"]', alms=served.spec(),
                        alm_max_new_tokens=6)
        stack.start()
        items = [question_item(f"long-{k}", tone_wav(tmp_path / f"long-{k}.wav", seconds=75.0, freq=300.0 + k))
                 for k in range(6)]
        batch_id = stack.submit(items, max_iters=1)
        deadline = time.monotonic() + 120
        while not served.requests() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert served.requests(), "the engine was never asked"
        assert children.stop(served.process, first=signal.SIGKILL) == "SIGKILL"
        time.sleep(3)  # down for longer than a step's retries would last (0.2 s, 0.4 s)
        served = start_transformers_serve(model, folder, port=port)
        stack.wait_for_batch(batch_id, timeout=300)
    finally:
        children.stop(served.process)

    for job in stack.jobs(batch_id):
        assert job.status == "succeeded", stack.job_summary(batch_id)
        captions = [row for row in _all_calls(job.id) if row.tool == "caption"]
        assert len(captions) == 1 and len(captions[0].output["windows"]) == 3  # stored once
        assert all("rain" in w["text"] for w in captions[0].output["windows"])
    assert "unreachable" in stack.log_of("perception")  # the outage was waited out, and said so


REASONER_REPLY = "<THINK>Falling water, steady.</THINK><CAPTION>Rain on a roof.</CAPTION><RESPONSE>rain</RESPONSE>"


def test_crosscheck_behind_two_engines_survives_its_perception_worker_killed_with_calls_in_flight(
        engine, stack, scripted_llm, tmp_path):
    """crosscheck with both audio models behind engines: the tiny Qwen2-Audio on `transformers
    serve` and an Audio-Reasoner (its <THINK>/<RESPONSE> replies from a stand-in engine, as a
    steered model cannot be made to write them). The perception worker is killed -9 while
    requests wait on the engines; a new one replays the step: every call stored once, the
    models' own answers read as in process, the attempt audited."""
    reasoner = SimulatedEngine(capacity=64, latency_s=1.5, models=["Audio-Reasoner-7B"], reply=REASONER_REPLY)
    try:
        stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["signal_facts"]', alm_max_new_tokens=6,
                        alms=f"{engine.spec()},{reasoner.spec('Audio-Reasoner-7B')}")
        stack.start()
        items = [question_item(f"clip-{k}", tone_wav(tmp_path / f"clip-{k}.wav", freq=500.0 + k),
                               choices=("rain", "silence"), answer="rain") for k in range(3)]
        batch_id = stack.submit(items, pipeline="crosscheck", max_iters=1)
        deadline = time.monotonic() + 120
        while reasoner.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reasoner.in_flight > 0, "the engines were never asked"
        stack.kill("perception")
        stack.start_role("perception")
        stack.wait_for_batch(batch_id, timeout=400)
    finally:
        reasoner.close()

    jobs = stack.jobs(batch_id)
    assert all(j.status == "succeeded" and j.answer == "rain" for j in jobs), stack.job_summary(batch_id)
    replayed = 0
    for job in jobs:
        calls = _all_calls(job.id)
        asked = [(c.iteration, c.tool, json.dumps(c.args, sort_keys=True)) for c in calls]
        assert len(asked) == len(set(asked)), sorted(asked)  # stored once, the replay included
        by_tool = _calls(job.id)
        assert by_tool["audio_answer"].output["answer"] == "rain"  # "rain dog ...": names rain
        reasoned = by_tool["audio_answer_2"]
        assert reasoned.output["answer"] == "rain" and "THINK" not in reasoned.text, reasoned.text
        assert "Caption: Rain on a roof." in by_tool["caption_2"].text
        with session_scope() as session:
            steps = session.scalars(select(Step).where(Step.job_id == job.id, Step.kind == "perceive_gpu")).all()
        replayed += sum(step.attempts > 1 for step in steps)
    assert replayed >= 1  # the killed attempt is audited, and the step ran again


pytestmark = pytest.mark.timeout(600)


def test_a_request_the_engine_refuses_fails_its_own_call_only(monkeypatch):
    """Three calls in one batch, the engine refusing one (400): that call's place holds the
    refusal, the other two hold their replies (their jobs' steps are not charged for it)."""
    from core.settings import get_settings
    from workers.method.perception.alm.engine import EngineUnavailable
    from workers.method.perception.audio_io import AudioClip
    from workers.method.perception.loaded_models import audio_language_model
    from workers.method.perception.tools.alm_tools import run_prompts

    engine = SimulatedEngine(capacity=4, latency_s=0.0, models=["sim"], reply="rain", refuse_containing="REFUSE ME")
    monkeypatch.setenv("AGR_ALMS", engine.spec("sim"))
    get_settings.cache_clear()
    audio_language_model.cache_clear()
    try:
        clip = AudioClip(np.zeros(16000, np.float32), 16000, "silence")
        results = run_prompts(1, [("audio_qa", clip, {"question": "What is heard?"}),
                                  ("audio_qa", clip, {"question": "REFUSE ME"}),
                                  ("caption", clip, {})])
    finally:
        engine.close()
        get_settings.cache_clear()
        audio_language_model.cache_clear()
    assert isinstance(results[1], EngineUnavailable) and "answered 400" in str(results[1])
    assert results[0].output["text"] == results[2].output["text"] == "rain"
