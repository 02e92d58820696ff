"""At-least-once delivery made harmless: duplicates and poison are bounded by Postgres."""

from sqlalchemy import select

from models import Iteration, LLMCall, Step, ToolCall
from models.db import session_scope
from models.status import StepKind
from tests.stack import count_rows, question_item, tone_wav
from workers.method.perception.tools import coarse_tools
from workers.runtime.dispatch import send_step


def test_the_same_message_delivered_twice_leaves_one_row_per_step(stack, scripted_llm, tmp_path):
    from api.intake.submission import BatchRequest, create_batch

    stack.configure(llm_base_url=scripted_llm.base_url)
    batch_id, (step_id,) = create_batch(BatchRequest("dup", [question_item("q1", tone_wav(tmp_path / "t.wav"))], {}))
    # Both copies sit in the queue before any worker starts, so both are delivered.
    send_step(step_id, StepKind.PERCEIVE_CPU)
    send_step(step_id, StepKind.PERCEIVE_CPU)
    stack.start()
    stack.wait_for_batch(batch_id)
    (job,) = stack.jobs(batch_id)

    assert job.status == "succeeded", job.error
    assert count_rows(Step, job_id=job.id, iteration=0, kind="perceive_cpu") == 1
    assert count_rows(Iteration, job_id=job.id) == 1
    assert count_rows(ToolCall, job_id=job.id) == len(coarse_tools())  # each coarse tool once
    with session_scope() as session:
        asr = session.scalar(select(ToolCall).where(ToolCall.job_id == job.id, ToolCall.tool == "transcription"))
    assert asr.output == {"skipped": "no speech detected by voice activity"}  # a tone: no ASR run
    assert count_rows(LLMCall, job_id=job.id) == 2  # planner + answerer, once each
    assert len(scripted_llm.requests) == 2
    with session_scope() as session:
        step = session.get(Step, step_id)
        assert (step.status, step.attempts) == ("done", 1)  # the duplicate did no work


def test_undecodable_audio_fails_its_own_job_after_max_attempts_and_the_rest_succeed(
    stack, scripted_llm, tmp_path
):
    poison = tmp_path / "poison.wav"
    poison.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage that is not audio" * 20)
    good = [question_item(f"good{i}", tone_wav(tmp_path / f"g{i}.wav", freq=300 + 100 * i)) for i in range(3)]
    stack.configure(llm_base_url=scripted_llm.base_url, max_attempts=3)
    stack.start()
    batch_id = stack.submit(good + [question_item("poison", poison)])
    stack.wait_for_batch(batch_id)

    jobs = {j.custom_id: j for j in stack.jobs(batch_id)}
    assert [jobs[f"good{i}"].status for i in range(3)] == ["succeeded"] * 3
    bad = jobs["poison"]
    assert bad.status == "errored"
    assert "perceive_cpu step (iteration 0) failed after 3 attempt(s)" in bad.error
    assert str(poison) in bad.error and "not decodable audio" in bad.error
    assert bad.attempts == 3
    assert count_rows(Iteration, job_id=bad.id) == 0


def test_a_message_lost_between_delivery_and_claim_is_sent_again_soon(stack, scripted_llm, tmp_path):
    """A worker killed after taking a message and before claiming its step leaves the step
    queued in Postgres with its message gone (Redis would hand it back only after its
    hour-long visibility timeout). Made directly: the message is sent, then taken away."""
    from api.intake.submission import BatchRequest, create_batch
    from core.broker_redis import broker_redis, queue_keys
    from workers.runtime import outbox

    stack.configure(llm_base_url=scripted_llm.base_url)
    batch_id, step_ids = create_batch(BatchRequest("lost", [question_item("q1", tone_wav(tmp_path / "t.wav"))], {}))
    assert outbox.send_now(step_ids) == 1
    broker_redis().delete(*queue_keys("perception-cpu"))
    stack.start()
    stack.wait_for_batch(batch_id, timeout=60)  # AGR_LOST_MESSAGE_AFTER_S is 3 s here

    (job,) = stack.jobs(batch_id)
    assert job.status == "succeeded", job.error
    assert "0 lapsed lease(s) taken back, 1 lost message(s) re-sent" in stack.log_of("sweeper")
    with session_scope() as session:
        assert session.get(Step, step_ids[0]).sends == 2
