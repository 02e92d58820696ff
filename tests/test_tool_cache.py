"""The tool-call cache serves only real results: a coarse round's "no speech" skip of a
speech tool is recorded (the audit shows it), but it is never copied to a later call of
that tool on the same audio, which must then run the tool for real."""

import uuid

from models import AudioAsset, Batch, BatchStatus, Job, JobStatus
from models.db import session_scope
from workers.method.perception.executor import NO_SPEECH, RoundExecutor
from workers.method.perception.tools import PlannedCall, ToolResult

VOICE_ACTIVITY = PlannedCall("voice_activity", {})


def _jobs_on_one_audio(count: int) -> tuple[str, list[uuid.UUID]]:
    sha = uuid.uuid4().hex * 2  # a content hash no earlier test has cached results for
    with session_scope() as session:
        audio = AudioAsset(sha256=sha, bytes=1, format="wav",
                           duration_s=1.0, sample_rate=16000, channels=1)
        batch = Batch(name="tool-cache", status=BatchStatus.COMPLETED)
        session.add_all([audio, batch])
        session.flush()
        jobs = [Job(batch_id=batch.id, custom_id=f"item-{n}", audio_id=audio.id, question="what is said?",
                    status=JobStatus.SUCCEEDED) for n in range(count)]
        session.add_all(jobs)
        session.flush()
        return sha, [job.id for job in jobs]


def _executor(job_id, iteration: int, sha: str) -> RoundExecutor:
    return RoundExecutor(job_id, iteration, "clip.wav", sha)


def test_a_no_speech_skip_is_recorded_but_never_served_from_cache(database_url):
    sha, (coarse_job, asking_job, later_job) = _jobs_on_one_audio(3)

    # The coarse round: voice activity found no speech, so transcription is skipped.
    coarse = _executor(coarse_job, 0, sha)
    coarse.save(0, VOICE_ACTIVITY, ToolResult({"segments": []}, "no speech"), None, 1.0)
    coarse_plan = [VOICE_ACTIVITY, PlannedCall("transcription", {}, needs_speech=True)]
    assert coarse.pending(coarse_plan) == []
    skip = coarse.outcomes(coarse_plan)[1]
    assert skip.text == NO_SPEECH.text  # the skip stays in the audit

    # Another job's agents explicitly ask for transcription of the same audio: the skip
    # marker is no result, so the tool must run.
    asked = PlannedCall("transcription", {})
    asking = _executor(asking_job, 1, sha)
    assert asking.pending([asked]) == [(0, asked)]
    assert asking._stored(0) is None

    # A real transcription, once computed, is a cache source as before.
    asking.save(0, asked, ToolResult({"segments": [{"start": 0.0, "end": 1.0, "text": "hello"}]},
                                     "[0.0-1.0s] hello"), None, 5.0)
    later = _executor(later_job, 1, sha)
    assert later.pending([asked]) == []
    hit = later._stored(0)
    assert hit.cache_hit and hit.text == "[0.0-1.0s] hello"
