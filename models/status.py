"""Status vocabularies. Names follow the OpenAI Batch API where they fit, so clients
that already speak it read ours without a table of differences."""

import enum


class BatchStatus(enum.StrEnum):
    VALIDATING = "validating"  # the submission is being checked; nothing queued yet
    IN_PROGRESS = "in_progress"  # at least one job is still queued or running
    FINALIZING = "finalizing"  # every job ended; output is being assembled
    COMPLETED = "completed"  # every job ended (each succeeded or errored)
    FAILED = "failed"  # the submission was refused whole; no job ran
    EXPIRED = "expired"  # the expiry window passed; finished results are kept
    CANCELLING = "cancelling"  # cancel asked; running steps are finishing
    CANCELLED = "cancelled"  # cancelled; finished results are kept


class JobStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for its first step to start
    IN_PROGRESS = "in_progress"  # some step has started
    SUCCEEDED = "succeeded"  # answered (the answer may be explicitly unmapped)
    ERRORED = "errored"  # a step failed for good; `error` says why
    CANCELLED = "cancelled"  # stopped by the user before it ended
    EXPIRED = "expired"  # the batch expired before it ended

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_JOB_STATUSES


TERMINAL_JOB_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.ERRORED, JobStatus.CANCELLED, JobStatus.EXPIRED}
)


class StepKind(enum.StrEnum):
    # A perception round (iteration 0: the coarse document; later: the agents' tool plan)
    # runs its CPU tools first, then its GPU tools, which also merge the round's evidence.
    # A round without GPU calls is merged by the CPU step and has no GPU step.
    PERCEIVE_CPU = "perceive_cpu"
    PERCEIVE_GPU = "perceive_gpu"
    PLAN = "plan"  # planning agent judges whether the evidence suffices
    INTERACT = "interact"  # interaction agent turns what is missing into tool calls
    ANSWER = "answer"  # answering agent picks a choice; normalisation maps it


class StepStatus(enum.StrEnum):
    QUEUED = "queued"  # persisted and (re)enqueued; not yet claimed
    RUNNING = "running"  # claimed by a worker holding a lease it keeps renewing
    DONE = "done"  # its output is committed and its successor persisted
    FAILED = "failed"  # gave up after max attempts (the job errored), or never run: its job was cancelled or expired
