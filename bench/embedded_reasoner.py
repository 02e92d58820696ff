"""Which embedded reasoner: each model through the real `agr run` on the devset.

For every name in --models (the embedded models of local_stack/embedded.py, chosen through
AGR_LLM_MODEL), `agr run` runs the devset (or --items of it, spread evenly: 8 is one per
category) on fresh embedded services
in a fresh data folder under --data-dir, so nothing is reused between runs: perception is
computed anew in each, and its cost is the same for every model. Measured per model:
accuracy, wall seconds per item (the whole run: start-up, perception, reasoning), the
llama.cpp server's busy seconds per item (its per-request "total time" lines in llm.log),
and the peak resident memory of the llama.cpp server process (psutil, polled every 0.2 s).

Prints a table and writes bench/results/embedded_reasoner.json. Run:
    .venv/bin/python bench/embedded_reasoner.py [--models smollm2-135m-instruct gemma3-270m]
        [--items N] [--data-dir DIR]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import DEVSET, write_result  # noqa: E402
from local_stack.embedded import EMBEDDED_LLMS  # noqa: E402

META = DEVSET / "meta.jsonl"
RESULT = ROOT / "bench" / "results" / "embedded_reasoner.json"
POLL_S = 0.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(EMBEDDED_LLMS), choices=list(EMBEDDED_LLMS))
    parser.add_argument("--items", type=int, default=None, help="N devset items, evenly spread [default: all 24]")
    parser.add_argument("--data-dir", type=Path, default=None, help="each run gets a fresh folder in it [default: a temp folder]")
    args = parser.parse_args()
    base = args.data_dir or Path(tempfile.mkdtemp(prefix="agr-bench-reasoner-"))
    base.mkdir(parents=True, exist_ok=True)
    lines = META.read_text().splitlines()
    if args.items:
        lines = lines[::max(1, len(lines) // args.items)][:args.items]
    batch = base / f"devset-{len(lines)}.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    runs = [measure(model, batch, base) for model in args.models]
    report(runs)
    # Runs of other models already in the file are kept: models can be measured one at a time.
    kept = [r for r in (json.loads(RESULT.read_text())["runs"] if RESULT.is_file() else [])
            if r["model"] not in args.models]
    write_result("embedded_reasoner", {"devset": os.path.relpath(META, ROOT), "cpus": len(os.sched_getaffinity(0)), "runs": kept + runs})


def measure(model: str, batch: Path, base: Path) -> dict:
    data_dir = base / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    data_dir.mkdir(parents=True)  # fresh: its Postgres holds no perception or LLM rows yet
    env = {k: v for k, v in os.environ.items()
           if k not in ("AGR_LLM_BASE_URL", "AGR_DATABASE_URL", "AGR_BROKER_URL")}  # all embedded
    env.update(AGR_LLM_MODEL=model, AGR_DATA_DIR=str(data_dir), COLUMNS="250")  # COLUMNS: rows unwrapped
    command = [str(Path(sys.executable).with_name("agr")), "run", str(batch), "--audio-dir", str(DEVSET)]
    print(f"{model}: {' '.join(command)} (AGR_DATA_DIR={data_dir})", flush=True)
    started = time.monotonic()
    with (data_dir / "agr-run.log").open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        peak_llm, peak_tree = 0, 0
        while proc.poll() is None:
            llm, tree = _rss(proc.pid)
            peak_llm, peak_tree = max(peak_llm, llm), max(peak_tree, tree)
            time.sleep(POLL_S)
    wall = time.monotonic() - started
    output = (data_dir / "agr-run.log").read_text(errors="replace")
    score = re.search(r"(\d+)/(\d+) correct", output)
    if proc.returncode != 0 or score is None:
        raise SystemExit(f"{model}: agr run exited with {proc.returncode}; see {data_dir / 'agr-run.log'}\n{output[-2000:]}")
    correct, total = int(score[1]), int(score[2])
    llm_ms = [float(ms) for ms in re.findall(r"llama_perf_context_print:\s+total time =\s+([\d.]+) ms",
                                             (data_dir / "llm.log").read_text(errors="replace"))]
    return {
        "model": model, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - wall)),
        "correct": correct, "items": total, "accuracy": round(correct / total, 3),
        "wall_s": round(wall, 1), "s_per_item": round(wall / total, 1),
        "llm_requests": len(llm_ms), "llm_busy_s_per_item": round(sum(llm_ms) / 1000 / total, 1),
        "llm_server_peak_rss_mib": round(peak_llm / 2**20, 1), "run_tree_peak_rss_mib": round(peak_tree / 2**20, 1),
        "per_item_ok": _per_item(output), "data_dir": str(data_dir),
    }


def _rss(pid: int) -> tuple[int, int]:
    """(the llama.cpp server's RSS, the whole `agr run` process tree's RSS), in bytes."""
    llm = tree = 0
    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    for p in processes:
        try:
            rss = p.memory_info().rss
            tree += rss
            if "llama_cpp.server" in " ".join(p.cmdline()):
                llm = max(llm, rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return llm, tree


def _per_item(output: str) -> dict[str, bool]:
    # The result table's rows: │ id │ status │ answer │ expected │ ok │ iterations │ note │
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 7 and cells[4] in ("yes", "no"):
            rows[cells[0]] = cells[4] == "yes"
    return rows


def report(runs: list[dict]) -> None:
    print(f"\n{'model':<24}{'correct':>9}{'s/item':>8}{'llm s/item':>12}{'llm calls':>11}{'llm RSS MiB':>13}{'tree MiB':>10}")
    for r in runs:
        print(f"{r['model']:<24}{r['correct']:>5}/{r['items']:<3}{r['s_per_item']:>8}{r['llm_busy_s_per_item']:>12}"
              f"{r['llm_requests']:>11}{r['llm_server_peak_rss_mib']:>13}{r['run_tree_peak_rss_mib']:>10}")


if __name__ == "__main__":
    main()
