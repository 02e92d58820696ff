"""The README's main job, for real: `agr run` over the devset as a subprocess, against the
test Postgres and Redis, with the embedded llama.cpp server (SmolLM2) as the reasoner and
the CLI's own perception and reasoning workers and the sweeper.

One item of each of the devset's modalities (speech, sound, music, speech over
background sound), not the whole devset: the embedded reasoner answers one call at a time
on this machine's CPUs (about 20 s an item on 2 cores), and the flow is the same for the
other kinds (test_api_batches.py runs the whole devset through the real stack with a
scripted LLM)."""

import json
import os
import subprocess

import pytest
from sqlalchemy import func, select

from models import Batch, Iteration, Job, JobStatus, LLMCall, ToolCall
from models.db import session_scope
from tests.stack import count_rows, run_cli

E2E_TIMEOUT_S = 1800  # SmolLM2 reads a ~600-token coarse document per call, one call at a time


def _agr(*args: str, data_dir, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AGR_LLM_BASE_URL"}  # embedded reasoner
    env |= {"AGR_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    return run_cli(env, *args, timeout=timeout)


def _batch(name: str) -> Batch | None:
    with session_scope() as session:
        return session.scalar(select(Batch).where(Batch.name == name))


@pytest.mark.timeout(E2E_TIMEOUT_S + 60)
def test_devset_batch_through_the_real_stack(database_url, broker_url, devset, tmp_path):
    one_of_each = tmp_path / "one-of-each-kind.jsonl"
    one_of_each.write_text("".join(line + "\n" for line in _one_item_per_kind(devset)))
    run = _agr("run", str(one_of_each), "--audio-dir", str(devset), "--max-iters", "1", "--name", "e2e-devset",
               data_dir=tmp_path, timeout=E2E_TIMEOUT_S)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    batch = _batch("e2e-devset")
    assert batch.status == "completed"
    with session_scope() as session:
        jobs = list(session.scalars(select(Job).where(Job.batch_id == batch.id)))
    expected_ids = {json.loads(line)["id"] for line in _one_item_per_kind(devset)}
    assert len(expected_ids) == len(KINDS)
    assert {j.custom_id for j in jobs} == expected_ids
    assert all(j.status.is_terminal for j in jobs)
    succeeded = [j for j in jobs if j.status == JobStatus.SUCCEEDED]
    assert succeeded, "no devset job succeeded:\n" + "\n".join(f"{j.custom_id}: {j.error}" for j in jobs)
    for job in succeeded:
        _assert_complete_evidence_chain(job)
    # The user sees every item and the score.
    assert all(j.custom_id in run.stdout for j in jobs)
    assert f"/{len(jobs)} correct, accuracy " in run.stdout
    assert " steps done" in run.stdout  # progress moves while no job has finished yet


KINDS = ("dev-spoken_number", "dev-beep_count", "dev-chord_quality", "dev-background")  # one per modality


def _one_item_per_kind(devset) -> list[str]:
    """The devset's first item of each of KINDS (ids are `dev-<kind>-<n>`)."""
    chosen: dict[str, str] = {}
    for line in (devset / "meta.jsonl").read_text().splitlines():
        kind = json.loads(line)["id"].rsplit("-", 1)[0] if line.strip() else None
        if kind in KINDS:
            chosen.setdefault(kind, line)
    return list(chosen.values())


def _assert_complete_evidence_chain(job: Job) -> None:
    with session_scope() as session:
        indexes = list(session.scalars(
            select(Iteration.index).where(Iteration.job_id == job.id).order_by(Iteration.index)))
        agents = set(session.scalars(select(LLMCall.agent).where(LLMCall.job_id == job.id)))
        unmatched_tools = session.scalar(
            select(func.count()).select_from(ToolCall).where(ToolCall.job_id == job.id, ToolCall.iteration.not_in(indexes)))
    assert indexes == list(range(len(indexes))), (job.custom_id, indexes)
    assert 1 <= len(indexes) <= 2  # max_iters=1: the coarse document and at most one refinement
    assert count_rows(ToolCall, job_id=job.id, iteration=0) >= 1
    assert unmatched_tools == 0
    assert {"planner", "answerer"} <= agents
    if job.normalisation == "unmapped":
        assert job.answer is None and job.raw_answer is not None
    else:
        assert job.answer in job.choices, (job.custom_id, job.answer, job.choices)


def test_invalid_file_is_refused_whole_and_nothing_is_queued(database_url, broker_url, tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    lines = [
        {"id": "ok", "audio_path": "a.wav", "question": "q?", "choices": ["x", "y"]},
        {"id": "no-audio", "audio_path": "missing.wav", "question": "q?", "choices": ["x"]},
        {"id": "escape", "audio_path": "../etc/passwd", "question": "q?", "choices": ["x"]},
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{not json\n")

    run = _agr("run", str(path), "--name", "refused", data_dir=tmp_path, timeout=120)

    assert run.returncode == 2
    for expected in ("line 2: audio file not found", "line 3: audio '../etc/passwd' must be relative", "line 4: not valid JSON"):
        assert expected in run.stdout
    assert _batch("refused") is None
