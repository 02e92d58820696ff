"""What each pipeline plans for round 0, as stored on a job's first step."""

import pytest
from sqlalchemy import select

from api.intake.batch_input import Item
from api.intake.submission import BatchRequest, create_batch
from models import Step
from models.db import session_scope
from tests.stack import tone_wav
from workers.method.perception import catalogue
from workers.method.pipelines import CROSSCHECK_TOOLS, Pipeline

CHEAP = list(CROSSCHECK_TOOLS)  # no ALM is configured here: no audio-model calls


@pytest.mark.parametrize("question, choices, music", [
    ("What is the tempo of the click track?", [], True),
    ("Is the chord that is played major or minor?", ["major", "minor"], True),
    ("How many beeps are there in the recording?", [], True),
    ("Which of the two tones has the higher pitch?", ["the first", "the second"], True),
    ("Who is most likely speaking?", ["a man", "a woman"], False),
    ("What can be heard in the background?", ["rain", "traffic"], False),
    ("What is said?", ["the song is over", "hello"], True),  # a choice may call for it
])
def test_crosscheck_round_zero_runs_every_cheap_tool_and_music_where_the_question_needs_it(question, choices, music):
    calls = Pipeline("crosscheck").first_round_calls(question, choices, catalogue.current())
    names = [c.tool for c in calls]
    assert [n for n in names if n != "music"] == CHEAP
    assert ("music" in names) is music
    assert [c.tool for c in calls if c.needs_speech] == ["transcription"]  # only where speech was found


def test_a_batch_stores_each_jobs_own_round_zero(database_url, tmp_path):
    """Jobs of one batch with and without music in their questions get each their own calls,
    and an `agr` job beside them the configured coarse tools."""
    audio = tone_wav(tmp_path / "tone.wav")
    items = [Item("a-tempo", audio, "What is the tempo?", [], None, options={"pipeline": "crosscheck"}),
             Item("b-speaker", audio, "Who speaks?", [], None, options={"pipeline": "crosscheck"}),
             Item("c-agr", audio, "What is the tempo?", [], None, options={"pipeline": "agr"})]
    _, step_ids = create_batch(BatchRequest("round zero", items, {"max_iters": 0}))
    with session_scope() as session:
        steps = session.scalars(select(Step).where(Step.id.in_(step_ids)).order_by(Step.id)).all()
        calls = [[c["tool"] for c in step.calls] for step in steps]
    assert "music" in calls[0] and "music" not in calls[1]
    assert set(calls[1]) == set(CHEAP)
    assert "loudness" not in calls[2]  # agr keeps the paper's coarse document


def test_crosscheck_through_the_workers_shows_sources_and_votes(stack, scripted_llm, tmp_path):
    """A crosscheck job through real workers: its round 0 ran every cheap tool and the music
    analysis (the question asks for the tempo), its document opens with each tool's
    source, trust and limits and labels every item, and its answer is a vote of 3."""
    from sqlalchemy import select as select_

    from models import Iteration
    from workers.method.perception.trust import declared

    stack.configure(llm_base_url=scripted_llm.base_url)
    stack.start()
    item = Item("tempo", tone_wav(tmp_path / "tone.wav"), "What is the tempo?", ["60 BPM", "120 BPM"], None)
    batch_id = stack.submit([item], pipeline="crosscheck", max_iters=0)
    stack.wait_for_batch(batch_id, timeout=300)
    (job,) = stack.jobs(batch_id)
    assert job.status == "succeeded", job.error
    with session_scope() as session:
        (first,) = session.scalars(select_(Iteration).where(Iteration.job_id == job.id)).all()
    tools = [e["tool"] for e in first.evidence]
    assert set(tools) - {"transcription"} == (set(CHEAP) | {"music"}) - {"transcription"}  # (speech-only)
    assert first.document.startswith("## Sources\n")
    for tool in tools:
        assert f"- {tool}: {declared(tool).source}, trust {declared(tool).trust:.2f}; limits: " in first.document
    assert all(e["trust"] == declared(e["tool"]).trust for e in first.evidence)
    assert "[E0.1] signal_facts {analytic 1.00}:" in first.document
    assert job.vote["samples"] == 3 and job.vote["margin"] == 1.0  # the scripted answerer never dissents


def test_agr_is_offered_the_papers_tools_only(tmp_path, monkeypatch):
    """With several audio models configured, `agr`'s agents still see one ALM's caption,
    question and re-caption tools, with the paper's descriptions; crosscheck sees them all."""
    from core.settings import get_settings

    monkeypatch.setenv("AGR_ALMS", "qwen2_audio=/models/a,audio_flamingo3=/models/b")
    get_settings.cache_clear()
    try:
        tools = catalogue.current().tools
    finally:
        get_settings.cache_clear()
    offered = {t.name for t in Pipeline("agr").offered(tools)}
    assert {"caption", "audio_qa", "re_caption"} <= offered
    assert not offered & {"audio_answer", "caption_2", "audio_answer_2", "re_caption_2"}
    assert {"audio_answer", "caption_2", "audio_answer_2"} <= {t.name for t in Pipeline("crosscheck").offered(tools)}
    caption = next(t for t in tools if t.name == "caption")
    assert caption.description == "A detailed description of the whole audio from an audio-language model."


def test_an_agents_call_keeps_only_its_declared_arguments():
    """What only the pipeline sets (final listening's evidence, a sample's temperature, covering
    windows) an agent's call cannot: it would pass for the pipeline's own decision."""
    from workers.method.reasoning.interaction import accepted_calls, plan_from

    tools = catalogue.current()
    plan = plan_from({"calls": [{"tool": "signal_facts", "args": {"start": 1, "evidence": "x", "cover": True}}]},
                     list(tools.tools))
    (call,) = accepted_calls(plan, tools)
    assert call.args == {"start": 1}


def test_a_line_of_another_pipeline_drops_the_batch_switches():
    from api.intake.submission import item_options

    batch = {"pipeline": "crosscheck", "max_iters": 2, "mechanisms": {"agreement_gate": False}}
    assert item_options(batch, {"pipeline": "agr"}) == {"pipeline": "agr", "max_iters": 2}
    assert item_options(batch, {})["mechanisms"] == {"agreement_gate": False}
