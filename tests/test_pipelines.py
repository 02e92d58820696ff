"""What each pipeline plans for round 0, as stored on a job's first step."""

import pytest

from api.batch_input import Item
from api.submission import BatchRequest, create_batch
from models import Step
from models.db import session_scope
from sqlalchemy import select
from tests.stack import tone_wav
from workers.perception import catalogue
from workers.pipelines import CROSSCHECK_TOOLS, first_round_calls

CHEAP = [t for t in CROSSCHECK_TOOLS if t != "caption"]  # caption needs an ALM, not configured here


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
    calls = first_round_calls("crosscheck", question, choices, catalogue.current())
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
