"""Where a step's time goes: the phases of run_step, measured in this one process.

Companion to bench/overhead.py, which measures the whole stack; this runs steps directly
(no Celery worker between them) so each phase can be timed: the claim, loading the job's
context, the LLM HTTP call, the stored-reply lookup, the step's fenced commit with its
successor, and the outbox top-up that sends the next messages. Also counts, per step kind,
SQL statements and transactions (each COMMIT or ROLLBACK ends one; a transaction is a
round trip to Postgres at least, and a COMMIT a WAL flush). Besides the coarse round of
the bench's one tool (`perceive_cpu`), it runs a CPU round of 6 tool calls
(`perceive_cpu_6_tools`: the signal-facts tool on six windows), the shape of a coarse round
in production. Prints a table and writes bench/results/step_phases.json.
Run: .venv/bin/python bench/step_phases.py [--jobs N]
"""

import argparse
import sys
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_services, tone_clip, write_result  # noqa: E402

KINDS = ("perceive_cpu", "plan", "answer")
SIX_TOOLS = "perceive_cpu_6_tools"
WINDOWS = [(0.0, 0.1), (0.0, 0.05), (0.05, 0.1), (0.0, 0.08), (0.02, 0.1), (0.01, 0.09)]


class PhaseClock:
    """Wraps named functions so every call adds its duration to that phase's total."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._patches = ExitStack()

    def time(self, phase: str, owner, attribute: str) -> None:
        original = getattr(owner, attribute, None)
        if original is None:
            return  # not in this version of the code (the bench also runs against older checkouts)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - started

        self._patches.enter_context(mock.patch.object(owner, attribute, timed))

    def close(self) -> None:
        self._patches.close()


def instrument(clock: PhaseClock) -> None:
    import workers.method.reasoning.agent_call as agent_call
    import workers.runtime.step_runner as step_runner
    from workers.method.steps import answer, interact, perception_round, plan

    clock.time("claim", step_runner, "_claim")
    clock.time("commit (fenced, with successor)", step_runner, "_commit")
    clock.time("outbox top-up (sending)", step_runner.outbox, "top_up")
    clock.time("stored LLM reply lookup", agent_call, "_stored")
    clock.time("LLM HTTP call", agent_call.reasoner_client(), "complete_json")
    from workers.method.perception.executor import RoundExecutor

    for module in (answer, interact, plan):
        clock.time("load job context", module, "load_job_and_iteration")
    clock.time("load job context", perception_round, "load_round")
    clock.time("tool results stored and cached (one read)", RoundExecutor, "pending")


def pending(kind: str, batch_id=None) -> list[int]:
    from sqlalchemy import select

    from models import Job, Step
    from models.db import session_scope

    query = select(Step.id).join(Job, Job.id == Step.job_id).where(Step.kind == kind, Step.status == "queued")
    if batch_id is not None:
        query = query.where(Job.batch_id == batch_id)
    with session_scope() as session:
        return list(session.scalars(query.order_by(Step.id)))


def six_tool_rounds(batch_id) -> None:
    """Give the batch's coarse rounds six calls each: signal facts on six windows."""
    from sqlalchemy import select, update

    from models import Job, Step
    from models.db import session_scope

    with session_scope() as session:
        steps = session.execute(select(Step.id, Step.calls).join(Job, Job.id == Step.job_id)
                                .where(Job.batch_id == batch_id, Step.kind == "perceive_cpu")).all()
        for step_id, calls in steps:
            model = calls[0]["model"]
            six = [{"index": i, "tool": "signal_facts", "args": {"start": a, "end": b}, "model": model,
                    "needs_speech": False} for i, (a, b) in enumerate(WINDOWS)]
            session.execute(update(Step).where(Step.id == step_id).values(calls=six))


def measure(jobs: int, clip: Path) -> dict:
    from sqlalchemy import event

    from api.intake.batch_input import Item
    from api.intake.submission import submit
    from models.db import get_engine
    from workers.runtime.step_runner import run_step

    def items(name, count):
        return [Item(f"{name}-{i}", clip, "What is heard?", ["A tone", "A voice"], "A tone") for i in range(count)]

    one_tool = submit("bench-step-phases", items("phase", jobs + 1), {"max_iters": 1})
    six_tools = submit("bench-step-phases-6", items("phase6", jobs + 1), {"max_iters": 1})
    six_tool_rounds(six_tools)
    for kind in KINDS:  # warm-up: first connection, imports, schema validators
        run_step(pending(kind, one_tool)[0])
    run_step(pending("perceive_cpu", six_tools)[0])
    counts = {"statements": 0, "transactions": 0, "commits": 0}

    def count(name):
        return lambda *_a, **_k: counts.__setitem__(name, counts[name] + 1)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", count("statements"))
    event.listen(engine, "commit", count("commits"))
    event.listen(engine, "commit", count("transactions"))
    event.listen(engine, "rollback", count("transactions"))
    clock, per_kind = PhaseClock(), {}
    instrument(clock)
    runs = [(kind, kind, one_tool) for kind in KINDS] + [(SIX_TOOLS, "perceive_cpu", six_tools)]
    try:
        for label, kind, batch_id in runs:
            ids = pending(kind, batch_id)
            counts.update(statements=0, transactions=0, commits=0)
            started = time.perf_counter()
            for step_id in ids:
                run_step(step_id)
            per_kind[label] = {"ms_per_step": (time.perf_counter() - started) * 1000 / len(ids),
                               "sql_statements_per_step": counts["statements"] / len(ids),
                               "transactions_per_step": counts["transactions"] / len(ids),
                               "commits_per_step": counts["commits"] / len(ids)}
    finally:
        clock.close()
    steps = jobs * len(runs)
    return {"jobs": jobs, "per_kind": per_kind,
            "phase_ms_per_step": {k: v * 1000 / steps for k, v in sorted(clock.seconds.items(), key=lambda kv: -kv[1])}}


def report(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    kinds = Table("step", "ms per step", "SQL statements per step", "transactions per step", "COMMITs per step")
    for kind, row in result["per_kind"].items():
        kinds.add_row(kind, f"{row['ms_per_step']:.1f}", f"{row['sql_statements_per_step']:.1f}",
                      f"{row['transactions_per_step']:.1f}", f"{row['commits_per_step']:.1f}")
    phases = Table("phase", "ms per step (averaged over all steps)")
    for phase, ms in result["phase_ms_per_step"].items():
        phases.add_row(phase, f"{ms:.2f}")
    Console().print(kinds, phases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    args = parser.parse_args()

    with bench_services("agr-phases-") as tmp:
        result = measure(args.jobs, tone_clip(tmp / "tone-0.1s.wav"))
    report(result)
    write_result("step_phases", result)


if __name__ == "__main__":
    main()
