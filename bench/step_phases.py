"""Where a step's time goes: the phases of run_step, measured in this one process.

Companion to bench/overhead.py, which measures the whole stack; this runs steps directly
(no Celery worker between them) so each phase can be timed: the claim, loading the job's
context, the LLM HTTP call, the stored-reply lookup, the step's fenced commit with its
successor, and the enqueue. Also counts SQL statements per step kind. Prints a table and
writes bench/results/step_phases.json. Run: .venv/bin/python bench/step_phases.py [--jobs N]
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


class PhaseClock:
    """Wraps named functions so every call adds its duration to that phase's total."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._patches = ExitStack()

    def time(self, phase: str, owner, attribute: str) -> None:
        original = getattr(owner, attribute)

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
    import workers.reasoning.agent_call as agent_call
    import workers.step_runner as step_runner
    from workers.steps import answer, interact, perception_round, plan

    clock.time("claim", step_runner, "claim_step")
    clock.time("commit (fenced, with successor)", step_runner, "_commit")
    clock.time("enqueue", step_runner, "send_step")
    clock.time("stored LLM reply lookup", agent_call, "_stored")
    clock.time("LLM HTTP call", agent_call.reasoner_client(), "complete_json")
    for module in (answer, interact, perception_round, plan):
        clock.time("load job context", module, "load_job")
        if hasattr(module, "load_iteration"):
            clock.time("load iteration", module, "load_iteration")


def pending(kind: str) -> list[int]:
    from sqlalchemy import select

    from models import Step
    from models.db import session_scope

    with session_scope() as session:
        return list(session.scalars(select(Step.id).where(Step.kind == kind, Step.status == "queued").order_by(Step.id)))


def measure(jobs: int, clip: Path) -> dict:
    from sqlalchemy import event

    from api.batch_input import Item
    from api.submission import submit
    from models.db import get_engine
    from workers.step_runner import run_step

    items = [Item(f"phase-{i}", clip, "What is heard?", ["A tone", "A voice"], "A tone") for i in range(jobs + 1)]
    submit("bench-step-phases", items, {"max_iters": 1})
    for kind in KINDS:  # warm-up: first connection, imports, schema validators
        run_step(pending(kind)[0])
    statements = {"count": 0}
    event.listen(get_engine(), "before_cursor_execute", lambda *_a, **_k: statements.__setitem__("count", statements["count"] + 1))
    clock, per_kind = PhaseClock(), {}
    instrument(clock)
    try:
        for kind in KINDS:
            ids, statements["count"] = pending(kind), 0
            started = time.perf_counter()
            for step_id in ids:
                run_step(step_id)
            per_kind[kind] = {"ms_per_step": (time.perf_counter() - started) * 1000 / len(ids),
                              "sql_statements_per_step": statements["count"] / len(ids)}
    finally:
        clock.close()
    steps = jobs * len(KINDS)
    return {"jobs": jobs, "per_kind": per_kind,
            "phase_ms_per_step": {k: v * 1000 / steps for k, v in sorted(clock.seconds.items(), key=lambda kv: -kv[1])}}


def report(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    kinds = Table("step", "ms per step", "SQL statements per step")
    for kind, row in result["per_kind"].items():
        kinds.add_row(kind, f"{row['ms_per_step']:.1f}", f"{row['sql_statements_per_step']:.1f}")
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
