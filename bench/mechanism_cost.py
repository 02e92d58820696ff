"""What each crosscheck mechanism costs: GPU calls and LLM calls per item, against `agr`.

    .venv/bin/python bench/mechanism_cost.py [--items 8] [--max-iters 2] [--json PATH]
                                            [--llm-base-url URL --llm-model NAME]

A batch of devset items (../shared/devset, spread over its categories) goes through the real
stack (private Postgres and Redis, one Celery worker process per queue and the sweeper, as
`agr run` starts them) once per configuration: `agr`, `crosscheck` with every mechanism on,
and `crosscheck` with each mechanism of workers/method/mechanisms.py switched off in turn (the batch
option `mechanisms`, resolved as `agr run --without` resolves it). All in one run, one
configuration at a time.

The GPU-queue worker has two audio-language models: tiny random Qwen2-Audio and Audio
Flamingo 3 built here (tests/tiny_models.py), on the CPU (AGR_ALM_DEVICE=cpu,
AGR_ALM_MAX_NEW_TOKENS=8). The reasoner is the scripted OpenAI-compatible server of
tests/scripted_llm.py: its planner always finds the evidence sufficient, its answerer (and
arbiter) picks the first choice, its interaction agent asks for signal facts. So the counts
are the pipeline's structure, not a model's whims: no planner-driven refinement round
happens, and random audio models rarely name a choice, so the agreement gate (which needs
the models to agree or conflict on a choice) and the arbiter (which needs the final
listening to name a choice the text side did not pick) seldom fire. `--llm-base-url` points
the reasoner at a real OpenAI-compatible endpoint instead (AGR_LLM_API_KEY from the
environment).

Counted per job from Postgres once its batch completed:
- tool calls (rows of tool_calls): "asked" is every row; "computed" leaves out cache hits
  and the no-speech skips. GPU calls are rows of device 'gpu' (the tool registry's device,
  stored on each row): the audio models' tools, and transcription where the ASR runs on
  CUDA (here it runs on the CPU: AGR_ASR_DEVICE=auto without a GPU).
- LLM calls (rows of llm_calls), by agent: planner, interaction, answerer, answerer#2...,
  arbiter; and, as a cross-check, the HTTP requests the scripted server received.
- iterations: rows of iterations (round 0, refinement rounds, crosscheck's final listening).

The perception result cache reuses identical tool calls (same audio, tool, model, args)
across batches of one tenant. Each configuration's batch is therefore submitted under a
tenant of its own (the cache key names the tenant), so each starts with an empty cache as
on a fresh database, and the order of configurations does not matter; cache hits left are
a job's own repeats. The comparison against `agr` is made on calls asked (rows), which do
not depend on the cache at all. Writes bench/results/mechanism_cost.json.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import DEVSET, ROOT  # noqa: E402

DEFAULT_JSON = ROOT / "bench" / "results" / "mechanism_cost.json"
BATCH_TIMEOUT_S = 900


def pick_items(devset: Path, count: int) -> list:
    """`count` devset items, round-robin over its categories (the id's middle part)."""
    from api.intake.batch_input import read_batch_file

    items = read_batch_file(devset / "meta.jsonl", devset)
    by_kind: dict[str, list] = defaultdict(list)
    for item in items:
        by_kind[item.custom_id.split("-")[1]].append(item)
    picked, depth = [], 0
    while len(picked) < min(count, len(items)):
        for kind_items in by_kind.values():
            if depth < len(kind_items) and len(picked) < count:
                picked.append(kind_items[depth])
        depth += 1
    return picked


def configurations(max_iters: int) -> list[tuple[str, dict]]:
    from workers.method.mechanisms import MECHANISMS, resolved

    configs = [("agr", {"pipeline": "agr", "max_iters": max_iters}),
               ("crosscheck", {"pipeline": "crosscheck", "max_iters": max_iters,
                               "mechanisms": resolved("crosscheck", {})})]
    for name in MECHANISMS:
        configs.append((f"crosscheck -{name}", {"pipeline": "crosscheck", "max_iters": max_iters,
                                                 "mechanisms": resolved("crosscheck", {name: False})}))
    return configs


def submit_as_new_tenant(config: str, items: list, options: dict):
    """The batch as api.intake.submission.submit makes it, under a tenant of its own: its own cache scope."""
    from api.intake.submission import BatchRequest, create_batch, enqueue_first_steps
    from models import Tenant
    from models.db import session_scope

    with session_scope() as session:
        tenant = Tenant(name=f"mechanism-cost {config} {uuid4().hex[:8]}")
        session.add(tenant)
        session.flush()
        tenant_id = tenant.id
    batch_id, step_ids = create_batch(BatchRequest(f"mechanism-cost {config}", items, options, tenant_id=tenant_id))
    enqueue_first_steps(step_ids)
    return batch_id


def wait_for(batch_id, stack, timeout_s: float) -> bool:
    from models import Batch, BatchStatus
    from models.db import session_scope

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.revive_dead_workers()
        with session_scope() as session:
            if session.get(Batch, batch_id).status == BatchStatus.COMPLETED:
                return True
        time.sleep(0.5)
    return False


def counts_of(batch_id) -> list[dict]:
    """Per job: its tool calls, LLM calls and iterations, from Postgres."""
    from sqlalchemy import select

    from models import Iteration, Job, LLMCall, ToolCall
    from models.db import session_scope

    with session_scope() as session:
        jobs = session.scalars(select(Job).where(Job.batch_id == batch_id).order_by(Job.custom_id)).all()
        per_job = {j.id: {"id": j.custom_id, "status": str(j.status), "error": j.error, "answer": j.answer,
                          "reference": j.reference_answer, "decision_by": (j.decision or {}).get("by"),
                          "vote_samples": (j.vote or {}).get("samples"),
                          "tool_calls": 0, "cache_hits": 0, "skipped": 0, "tool_errors": 0,
                          "gpu_asked": 0, "gpu_computed": 0, "gpu_cache_hits": 0,
                          "gpu_by_tool": Counter(), "cpu_by_tool": Counter(),
                          "llm_calls": 0, "llm_by_agent": Counter(), "iterations": 0, "gates": []}
                   for j in jobs}
        for call in session.scalars(select(ToolCall).join(Job).where(Job.batch_id == batch_id)):
            row = per_job[call.job_id]
            skipped = isinstance(call.output, dict) and call.output.get("skipped") is not None
            row["tool_calls"] += 1
            row["cache_hits"] += call.cache_hit
            row["skipped"] += skipped
            row["tool_errors"] += call.error is not None
            if call.device == "gpu":
                row["gpu_asked"] += 1
                row["gpu_cache_hits"] += call.cache_hit
                row["gpu_computed"] += not call.cache_hit and not skipped
                row["gpu_by_tool"][call.tool] += 1
            else:
                row["cpu_by_tool"][call.tool] += 1
        for agent, job_id in session.execute(select(LLMCall.agent, LLMCall.job_id).join(Job, Job.id == LLMCall.job_id)
                                             .where(Job.batch_id == batch_id)):
            per_job[job_id]["llm_calls"] += 1
            per_job[job_id]["llm_by_agent"][agent] += 1
        for job_id, verdict in session.execute(select(Iteration.job_id, Iteration.verdict).join(Job, Job.id == Iteration.job_id)
                                               .where(Job.batch_id == batch_id).order_by(Iteration.index)):
            per_job[job_id]["iterations"] += 1
            if verdict and verdict.get("gate"):
                per_job[job_id]["gates"].append(verdict["gate"])
        return list(per_job.values())


def summarise(jobs: list[dict], wall_s: float, llm_requests: int | None, options: dict) -> dict:
    n = len(jobs) or 1

    def per_item(key: str) -> float:
        return round(sum(j[key] for j in jobs) / n, 3)

    def summed(key: str) -> dict:
        total = Counter()
        for j in jobs:
            total.update(j[key])
        return {k: round(v / n, 3) for k, v in sorted(total.items())}

    return {
        "options": options, "items": len(jobs), "succeeded": sum(j["status"] == "succeeded" for j in jobs),
        "wall_seconds": round(wall_s, 1),
        "gpu_calls_asked_per_item": per_item("gpu_asked"), "gpu_calls_computed_per_item": per_item("gpu_computed"),
        "gpu_cache_hits_per_item": per_item("gpu_cache_hits"),
        "tool_calls_asked_per_item": per_item("tool_calls"), "tool_cache_hits_per_item": per_item("cache_hits"),
        "tool_calls_computed_per_item": round(per_item("tool_calls") - per_item("cache_hits") - per_item("skipped"), 3),
        "no_speech_skips_per_item": per_item("skipped"), "tool_errors_per_item": per_item("tool_errors"),
        "llm_calls_per_item": per_item("llm_calls"), "llm_calls_by_agent_per_item": summed("llm_by_agent"),
        "llm_http_requests_per_item": None if llm_requests is None else round(llm_requests / n, 3),
        "iterations_per_item": per_item("iterations"),
        "gpu_calls_by_tool_per_item": summed("gpu_by_tool"), "cpu_calls_by_tool_per_item": summed("cpu_by_tool"),
        "gates": dict(Counter(g for j in jobs for g in j["gates"])),
        "decided_by": dict(Counter(str(j["decision_by"]) for j in jobs)),
        "correct": sum(j["answer"] is not None and j["answer"] == j["reference"] for j in jobs),
        "errors": {j["id"]: j["error"] for j in jobs if j["error"]},
        "jobs": [{**j, "gpu_by_tool": dict(j["gpu_by_tool"]), "cpu_by_tool": dict(j["cpu_by_tool"]),
                  "llm_by_agent": dict(j["llm_by_agent"])} for j in jobs],
    }


def ratio(value: float, base: float) -> float | None:
    return round(value / base, 2) if base else None


def print_table(result: dict, llm_label: str) -> None:
    configs = result["configs"]
    print()
    print(f"Calls per item, {result['items']} devset items, max_iters={result['max_iters']}; reasoner: {llm_label}.")
    print("GPU = tool calls on the GPU queue (device 'gpu'): asked = rows, computed = not cache hits; "
          "ratios are on calls asked, against agr in this run.")
    header = (f"{'config':30} {'items':>5} {'ok':>3} {'GPU ask':>8} {'GPU comp':>8} {'hits':>5} {'tools':>6} "
              f"{'LLM':>6} {'iters':>6} {'GPU x':>6} {'LLM x':>6} {'wall s':>7}")
    print(header)
    print("-" * len(header))
    for name, c in configs.items():
        print(f"{name:30} {c['items']:5d} {c['succeeded']:3d} {c['gpu_calls_asked_per_item']:8.2f} "
              f"{c['gpu_calls_computed_per_item']:8.2f} {c['tool_cache_hits_per_item']:5.2f} "
              f"{c['tool_calls_asked_per_item']:6.2f} {c['llm_calls_per_item']:6.2f} {c['iterations_per_item']:6.2f} "
              f"{_x(c['gpu_ratio_vs_agr']):>6} {_x(c['llm_ratio_vs_agr']):>6} {c['wall_seconds']:7.1f}")
    print("(wall s: the first configuration also waits for the workers to start and load their models)")
    print()
    print("LLM calls per item by agent; GPU calls asked per item by tool:")
    for name, c in configs.items():
        agents = ", ".join(f"{a} {v:g}" for a, v in c["llm_calls_by_agent_per_item"].items())
        tools = ", ".join(f"{t} {v:g}" for t, v in c["gpu_calls_by_tool_per_item"].items())
        print(f"  {name:30} LLM: {agents or '-'}")
        print(f"  {'':30} GPU: {tools or '-'}")
        extra = []
        if c["gates"]:
            extra.append(f"gates {c['gates']}")
        extra.append(f"decided by {c['decided_by']}")
        if c["llm_http_requests_per_item"] is not None and c["llm_http_requests_per_item"] != c["llm_calls_per_item"]:
            extra.append(f"HTTP requests to the reasoner {c['llm_http_requests_per_item']:g}/item")
        print(f"  {'':30} {'; '.join(extra)}")
    failed = {name: c["errors"] for name, c in configs.items() if c["errors"]}
    for name, errors in failed.items():
        for item, error in errors.items():
            print(f"FAILED {name} {item}:\n{error}")


def _x(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=8, help="devset items, spread over its categories (default 8)")
    parser.add_argument("--max-iters", type=int, default=2)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--devset", type=Path, default=DEVSET)
    parser.add_argument("--llm-base-url", help="a real OpenAI-compatible reasoner instead of the scripted one")
    parser.add_argument("--llm-model", help="the model it serves (AGR_LLM_MODEL)")
    parser.add_argument("--only", action="append", default=[], help="run only this configuration (repeatable)")
    args = parser.parse_args()

    from core.migrate import upgrade_to_head
    from core.settings import get_settings
    from local_stack.embedded import EmbeddedStack
    from storage.factory import audio_store
    from tests.scripted_llm import ScriptedLLM
    from tests.tiny_models import build_tiny_audio_flamingo3, build_tiny_qwen2_audio

    configs = configurations(args.max_iters)
    if args.only:
        configs = [c for c in configs if c[0] in args.only]
    llm = None if args.llm_base_url else ScriptedLLM()
    llm_label = (f"{args.llm_base_url} ({args.llm_model or 'AGR_LLM_MODEL'})" if args.llm_base_url else
                 "scripted (tests/scripted_llm.py: planner says sufficient, answerer picks the first choice)")
    started = time.perf_counter()
    result = {"items": 0, "max_iters": args.max_iters, "reasoner": llm_label, "configs": {},
              "alms": "tiny random qwen2_audio + audio_flamingo3 (tests/tiny_models.py), cpu, 8 new tokens",
              "cache": "each configuration under its own tenant: an empty perception cache each, order-free; "
                       "ratios on calls asked (rows)"}
    try:
        with tempfile.TemporaryDirectory(prefix="agr-mechanism-cost-") as tmp_name:
            tmp = Path(tmp_name)
            built = time.perf_counter()
            qwen = build_tiny_qwen2_audio(tmp / "tiny-qwen2-audio")
            flamingo = build_tiny_audio_flamingo3(tmp / "tiny-af3")
            print(f"built the tiny audio models in {time.perf_counter() - built:.1f} s")
            os.environ.pop("AGR_COARSE_TOOLS", None)  # agr's default coarse tools
            os.environ.update(AGR_ALMS=f"qwen2_audio={qwen},audio_flamingo3={flamingo}", AGR_ALM_DEVICE="cpu",
                              AGR_ALM_MAX_NEW_TOKENS="8", AGR_DATA_DIR=str(tmp / "data"))
            if args.llm_model:
                os.environ["AGR_LLM_MODEL"] = args.llm_model
            with EmbeddedStack(tmp / "services", None, None, args.llm_base_url or llm.base_url) as services:
                os.environ.update(services.env())
                get_settings.cache_clear()
                audio_store.cache_clear()
                upgrade_to_head(services.database_url)
                run_configs(args, configs, llm, result)
    finally:
        if llm is not None:
            llm.close()
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    print_table(result, llm_label)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.json} ({result['wall_seconds']:.0f} s in all)")


def run_configs(args, configs: list, llm, result: dict) -> None:
    from core.settings import get_settings
    from local_stack.stack import LocalStack

    items = pick_items(args.devset, args.items)
    result["items"] = len(items)
    result["item_ids"] = [i.custom_id for i in items]
    up = time.perf_counter()
    with LocalStack(get_settings()) as stack:
        print(f"stack up in {time.perf_counter() - up:.1f} s; {len(items)} items: {', '.join(result['item_ids'])}")
        for name, options in configs:
            requests_before = len(llm.requests) if llm is not None else None
            began = time.perf_counter()
            batch_id = submit_as_new_tenant(name, items, options)
            done = wait_for(batch_id, stack, BATCH_TIMEOUT_S)
            wall = time.perf_counter() - began
            requests = None if llm is None else len(llm.requests) - requests_before
            summary = summarise(counts_of(batch_id), wall, requests, options)
            summary["batch_id"] = str(batch_id)
            summary["completed"] = done
            result["configs"][name] = summary
            print(f"{name:30} {summary['succeeded']}/{summary['items']} succeeded in {wall:.0f} s: "
                  f"GPU {summary['gpu_calls_asked_per_item']:g} asked ({summary['gpu_calls_computed_per_item']:g} "
                  f"computed), LLM {summary['llm_calls_per_item']:g} per item"
                  + ("" if done else f"; NOT COMPLETED in {BATCH_TIMEOUT_S} s"), flush=True)
        result["restarts"] = dict(stack.restarts)
    base = result["configs"].get("agr")
    for c in result["configs"].values():
        c["gpu_ratio_vs_agr"] = ratio(c["gpu_calls_asked_per_item"], base["gpu_calls_asked_per_item"]) if base else None
        c["llm_ratio_vs_agr"] = ratio(c["llm_calls_per_item"], base["llm_calls_per_item"]) if base else None
        c["tool_calls_ratio_vs_agr"] = ratio(c["tool_calls_asked_per_item"],
                                             base["tool_calls_asked_per_item"]) if base else None


if __name__ == "__main__":
    main()
