"""Resident memory of each role after warm-up: does each process carry only what it needs?

The whole stack runs on private services (bench/harness.py): the HTTP API (uvicorn), the sweeper,
one reasoning worker (its thread pool at the deployment's AGR_REASONING_CONCURRENCY), a CPU
and a GPU perception worker. A warm-up batch goes in through the API (the devset from
../shared when present, with the default coarse tools, so the perception workers load their
real models; tone clips otherwise) with an instant scripted LLM, the planner asking for one
refinement round so every reasoning step kind runs. Then each process's resident memory is
read, and beside it, in the same run, that of a bare Celery worker of the same delivery
settings doing nothing (bench/raw_celery.py): the floor any worker process pays.

Targets: API, the sweeper and the reasoning worker <= 150 MiB each. Prints a table and writes
bench/results/role_memory.json. Run: .venv/bin/python bench/role_memory.py
"""

import json
import os
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_services, write_result  # noqa: E402
from core.settings import get_settings  # noqa: E402
from local_stack import processes  # noqa: E402

DEVSET = ROOT.parent / "shared" / "devset"
SLIM_TARGET_MIB = 150
TONE_ITEMS = 24


def main() -> None:
    from tests.scripted_llm import ScriptedLLM

    llm = ScriptedLLM()
    llm.queue("planner", *[{"reason": "look again", "sufficient": False, "confidence": 0.3,
                            "missing": ["the start"]}] * 1000)
    with bench_services("agr-bench-roles-", llm=llm) as tmp:
        os.environ.pop("AGR_COARSE_TOOLS", None)  # the deployment's coarse document
        get_settings.cache_clear()
        result = measure(tmp)
    report(result)
    write_result("role_memory", result)


def measure(tmp: Path) -> dict:
    from tests.stack import _free_port

    env, logs = dict(os.environ), tmp / "logs"
    api_port = _free_port()
    started = {
        "api": processes.start_api(env, logs / "api.log", api_port),
        "sweeper": processes.start_sweeper(env, logs / "sweeper.log"),
        "reasoning": processes.start_worker("reasoning", env, logs / "reasoning.log"),
        "perception-cpu": processes.start_worker("perception-cpu", env, logs / "cpu.log"),
        "perception": processes.start_worker("perception", env, logs / "gpu.log"),
        "bare celery worker": processes.start_worker("raw-perception", env, logs / "raw.log", app="bench.raw_celery"),
    }
    try:
        items = run_warmup_batch(f"http://127.0.0.1:{api_port}", tmp)
        time.sleep(2)  # let each process settle (freed buffers, idle pools) before reading it
        rss = {role: resident_mib(proc.pid) for role, proc in started.items()}
    finally:
        processes.stop_all(list(started.values()))
    floor = rss["bare celery worker"]["main_mib"]
    return {
        "warmup_items": items, "reasoning_concurrency": get_settings().reasoning_concurrency,
        "roles": rss, "slim_target_mib": SLIM_TARGET_MIB,
        "over_bare_celery_worker": {role: round(r["main_mib"] / floor, 2) for role, r in rss.items()},
    }


def run_warmup_batch(api: str, tmp: Path) -> int:
    from api.keys import create_key
    from tests.private_services import _wait_until as wait_until
    from tests.stack import api_client

    audio_root, lines = warmup_items(tmp / "clips")
    wait_until(lambda: api_client(api).get("/healthz").status_code == 200, "the API", timeout=300)
    client = api_client(api, create_key("bench", audio_root=audio_root))
    created = client.post("/v1/batches", json={"input": "\n".join(lines), "input_format": "auto", "max_iters": 1})
    created.raise_for_status()
    batch_id = created.json()["id"]
    wait_until(lambda: client.get(f"/v1/batches/{batch_id}").json()["status"] == "completed", "the warm-up batch",
               timeout=1800)
    counts = client.get(f"/v1/batches/{batch_id}").json()["request_counts"]
    if counts["completed"] != len(lines):
        raise RuntimeError(f"warm-up items did not all succeed: {counts}")
    client.get(f"/v1/batches/{batch_id}/output").raise_for_status()
    return len(lines)


def warmup_items(folder: Path) -> tuple[Path, list[str]]:
    """The devset's MMAR lines with their audio folder, or tone clips without it."""
    if (DEVSET / "meta.jsonl").is_file():
        return DEVSET, [line for line in (DEVSET / "meta.jsonl").read_text().splitlines() if line.strip()]
    from tests.stack import tone_wav

    folder.mkdir(parents=True)
    lines = []
    for i in range(TONE_ITEMS):
        tone_wav(folder / f"{i}.wav", seconds=1.0, freq=220 + 30 * i)
        lines.append(json.dumps({"custom_id": f"t{i}", "audio": f"{i}.wav", "question": "What is heard?",
                                 "choices": ["A tone", "A voice"], "answer": "A tone"}))
    return folder, lines


def resident_mib(pid: int) -> dict:
    """The process's own resident memory, its largest child's (a prefork worker's pool
    process, where the models live) and the tree's, in MiB."""
    main = psutil.Process(pid)
    children = [c.memory_info().rss / 2**20 for c in main.children(recursive=True)]
    own = main.memory_info().rss / 2**20
    return {"main_mib": round(own, 1), "largest_child_mib": round(max(children, default=0.0), 1),
            "tree_mib": round(own + sum(children), 1), "processes": 1 + len(children)}


def report(result: dict) -> None:
    print(f"resident memory after a {result['warmup_items']}-item warm-up "
          f"(reasoning worker: {result['reasoning_concurrency']} threads)")
    print(f"  {'role':<20}{'process MiB':>12}{'largest child':>15}{'tree MiB':>10}{'x bare':>8}")
    for role, r in result["roles"].items():
        print(f"  {role:<20}{r['main_mib']:>12.0f}{r['largest_child_mib']:>15.0f}{r['tree_mib']:>10.0f}"
              f"{result['over_bare_celery_worker'][role]:>8.2f}")
    slim = {role: result["roles"][role]["tree_mib"] for role in ("api", "sweeper", "reasoning")}
    verdict = "met" if max(slim.values()) <= SLIM_TARGET_MIB else "NOT met"
    print(f"  API, sweeper, reasoning <= {SLIM_TARGET_MIB} MiB each: {verdict} ({slim})")


if __name__ == "__main__":
    main()
