"""Perception tools: cold and warm latency per tool, and a CPU perception worker's peak memory.

Every tool in the registry when this runs is measured (unavailable ones, such as the ALM
tools without AGR_ALM_MODEL, are listed as skipped), on a devset speech clip and a devset
music clip:
- cold: the first call in a fresh Python process (model load, first numba compile), one
  subprocess per tool and clip so nothing is shared; once with an empty numba cache folder
  (the first worker on a new machine) and once with the folder that run filled (every later
  worker process);
- warm: the median of --repeats later calls in that second process;
- with --rounds N, each pair of fresh processes is run N times and medians are reported;
- memory: a fresh process that runs every available CPU-class tool on both clips, then all
  of them again (each model must be loaded once per process: the loaded_models caches are
  checked), its peak RSS against the 2 GiB target and each tool's RSS increment. Also once
  with a populated numba cache, and once with every available tool, as the single
  perception worker of `agr run` holds them.
Prints tables and writes bench/results/tool_latency.json.
Run: .venv/bin/python bench/tool_latency.py [--repeats 5] [--rounds 1] [--tools music,loudness]
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEVSET_AUDIO = ROOT.parent / "shared" / "devset" / "audio"
CLIPS = {"speech": DEVSET_AUDIO / "dev-city-00.wav", "music": DEVSET_AUDIO / "dev-tempo-00.wav"}
RSS_TARGET_MIB = 2048
CHILD_TIMEOUT_S = 900
# Tools with required arguments (audio_qa's question, re_caption's focus) get this text.
SAMPLE_TEXT_ARG = "What can be heard in this audio?"


# --- measured in the child processes -------------------------------------------------------

def sample_args(tool) -> dict:
    return {name: SAMPLE_TEXT_ARG for name in tool.required}


def current_rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def process_started() -> float:
    import psutil

    return psutil.Process().create_time()


def child_latency(tool_name: str, clip_path: str, repeats: int) -> dict:
    started = time.perf_counter()
    from workers.method.perception.audio_io import load_audio
    from workers.method.perception.tools import TOOLS

    imported = time.perf_counter()
    clip = load_audio(clip_path)
    tool = TOOLS[tool_name]
    args = sample_args(tool)
    decoded = time.perf_counter()
    tool.run(clip, args)
    first = time.perf_counter() - decoded
    # What a new worker's first request waits for: interpreter start, imports, decode, call.
    first_result_since_start = time.time() - process_started()
    warm = []
    for _ in range(repeats):
        t = time.perf_counter()
        tool.run(clip, args)
        warm.append(time.perf_counter() - t)
    return {"import_s": imported - started, "decode_s": decoded - imported, "first_call_s": first,
            "first_result_since_process_start_s": first_result_since_start, "warm_calls_s": warm,
            "peak_rss_mib": peak_rss_mib()}


def child_memory(device_class: str, clip_paths: list[str]) -> dict:
    from workers.method.perception import loaded_models
    from workers.method.perception.audio_io import load_audio
    from workers.method.perception.tools import TOOLS

    clips = [load_audio(p) for p in clip_paths]
    tools = [t for t in TOOLS.values() if t.available() and device_class in ("all", t.device)]
    baseline, per_tool = current_rss_mib(), {}
    for tool in tools:
        before = current_rss_mib()
        for clip in clips:
            tool.run(clip, sample_args(tool))
        per_tool[tool.name] = {"rss_increment_mib": current_rss_mib() - before, "peak_rss_mib_after": peak_rss_mib()}
    for tool in tools:  # a second pass must reuse every model, not load it again
        for clip in clips:
            tool.run(clip, sample_args(tool))
    caches = {name: fn.cache_info()._asdict() for name, fn in vars(loaded_models).items()
              if hasattr(fn, "cache_info") and fn.__module__ == loaded_models.__name__}  # not get_settings
    return {"device_class": device_class, "tools": [t.name for t in tools], "baseline_rss_mib": baseline,
            "per_tool": per_tool, "final_rss_mib": current_rss_mib(), "peak_rss_mib": peak_rss_mib(),
            "loaded_model_caches": caches, "each_model_loaded_once": all(c["misses"] <= 1 for c in caches.values())}


# --- the parent: one subprocess per measurement --------------------------------------------

def run_child(cache_dir: Path, *args: str) -> dict:
    """Runs this script in a fresh interpreter with numba caching into `cache_dir`."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child", *args, "--out", out.name], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
        return {**json.loads(Path(out.name).read_text()), "process_s": time.perf_counter() - started}


def cold_pair(tool_name: str, clip: Path, repeats: int, cache: Path) -> dict:
    """One fresh process on an empty numba cache folder, then one on the folder it filled."""
    empty = run_child(cache, "latency", tool_name, str(clip), "0")
    populated = run_child(cache, "latency", tool_name, str(clip), str(repeats))
    return {"cold_empty_cache": empty, "cold_populated_cache": populated,
            "numba_cache_files": sum(1 for _ in cache.rglob("*.nbi"))}


def measure_tool(tool_name: str, clip: Path, repeats: int, rounds: int, scratch: Path) -> dict:
    # Medians over rounds: on a shared machine one cold process can be slowed by a neighbour.
    runs = [cold_pair(tool_name, clip, repeats, scratch / f"numba-{tool_name}-{clip.stem}-{i}") for i in range(rounds)]

    def median_of(state: str, figure: str) -> float:
        return statistics.median(run[state][figure] for run in runs)

    return {
        "cold_empty_cache_s": median_of("cold_empty_cache", "first_call_s"),
        "cold_populated_cache_s": median_of("cold_populated_cache", "first_call_s"),
        "warm_median_s": statistics.median(t for run in runs for t in run["cold_populated_cache"]["warm_calls_s"]),
        "first_result_empty_cache_s": median_of("cold_empty_cache", "first_result_since_process_start_s"),
        "first_result_populated_cache_s": median_of("cold_populated_cache", "first_result_since_process_start_s"),
        "runs": runs,
    }


def measure_memory(scratch: Path) -> dict:
    clips = [str(p) for p in CLIPS.values()]
    cache = scratch / "numba-memory"
    return {
        "cpu_tools_empty_numba_cache": run_child(cache, "memory", "cpu", *clips),
        "cpu_tools_populated_numba_cache": run_child(cache, "memory", "cpu", *clips),
        "all_available_tools": run_child(cache, "memory", "all", *clips),
        # What numba could keep on disk once every tool had run: librosa's cache=True functions.
        "numba_cached_functions": sorted({p.name.removeprefix("guf-").split("-")[0] for p in cache.rglob("*.nbi")}),
    }


def machine() -> dict:
    import librosa
    import numba
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "cpu_model": model,
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "numba": numba.__version__, "librosa": librosa.__version__}


def clip_facts() -> dict:
    import soundfile as sf

    return {kind: {"path": str(p.relative_to(ROOT.parent)), "duration_s": round(sf.info(str(p)).duration, 3)}
            for kind, p in CLIPS.items()}


def measure(repeats: int, rounds: int, only: list[str] | None, scratch: Path) -> dict:
    # The parent imports the registry only to list tools; its own numba folder is scratch.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(scratch / "numba-parent"))
    from workers.method.perception.tools import TOOLS

    load_at_start = os.getloadavg()
    chosen = [t for t in TOOLS.values() if not only or t.name in only]
    skipped = {t.name: "available() is false here (ALM tools need AGR_ALM_MODEL)" for t in chosen if not t.available()}
    tools = {}
    for tool in (t for t in chosen if t.available()):
        print(f"measuring {tool.name} ...", flush=True)
        clips = {kind: measure_tool(tool.name, path, repeats, rounds, scratch) for kind, path in CLIPS.items()}
        tools[tool.name] = {"device_class": tool.device, "model": tool.model_name(), "clips": clips}
    print("measuring memory ...", flush=True)
    memory = measure_memory(scratch)
    # Other work on the machine slows cold processes most: the load says how quiet it was.
    facts = {**machine(), "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()}
    return {"machine": facts, "clips": clip_facts(), "repeats": repeats, "rounds": rounds,
            "rss_target_mib": RSS_TARGET_MIB, "tools": tools, "skipped": skipped, "memory": memory}


def seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def report(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 140))  # folded to 80 columns the table is unreadable
    durations = {k: c["duration_s"] for k, c in result["clips"].items()}
    latency = Table("tool", "class", "clip", "cold, empty cache", "cold, populated cache",
                    "warm", "warm / clip length", "new process to first result",
                    title="Tool latency: the first call in a fresh process (cold: model load, compile; numba cache "
                          "empty or populated) and later calls (warm). The last column adds interpreter start, "
                          f"imports and decoding (empty / populated cache). Medians of {result['rounds']} round(s) "
                          f"of fresh processes; warm: of {result['repeats']} calls in each")
    for name, tool in result["tools"].items():
        for kind, row in tool["clips"].items():
            warm = row["warm_median_s"]
            latency.add_row(name, tool["device_class"], f"{kind} ({durations[kind]:.1f} s)",
                            seconds(row["cold_empty_cache_s"]), seconds(row["cold_populated_cache_s"]),
                            seconds(warm), f"{warm / durations[kind]:.3f}",
                            f"{row['first_result_empty_cache_s']:.1f} s / {row['first_result_populated_cache_s']:.1f} s")
    console.print(latency)
    for name, why in result["skipped"].items():
        console.print(f"skipped {name}: {why}")
    report_memory(console, result["memory"], result["rss_target_mib"])


def report_memory(console, memory: dict, target: float) -> None:
    from rich.table import Table

    cpu = memory["cpu_tools_empty_numba_cache"]
    table = Table("tool", "RSS increment (MiB)", "peak RSS so far (MiB)",
                  title="A fresh process running every CPU-class tool (empty numba cache)")
    table.add_row("(python + imports)", f"{cpu['baseline_rss_mib']:.0f}", "")
    for name, row in cpu["per_tool"].items():
        table.add_row(name, f"{row['rss_increment_mib']:.0f}", f"{row['peak_rss_mib_after']:.0f}")
    console.print(table)
    for label, run in ((k, v) for k, v in memory.items() if k != "numba_cached_functions"):
        verdict = "within" if run["peak_rss_mib"] <= target else "OVER"
        console.print(f"{label}: peak RSS {run['peak_rss_mib']:.0f} MiB ({verdict} the {target:.0f} MiB target), "
                      f"each model loaded once: {run['each_model_loaded_once']}")


def child_main(args: list[str]) -> None:
    out = Path(args[args.index("--out") + 1])
    kind, rest = args[0], args[1:args.index("--out")]
    if kind == "latency":
        result = child_latency(rest[0], rest[1], int(rest[2]))
    else:
        result = child_memory(rest[0], rest[1:])
    out.write_text(json.dumps(result))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        return child_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="warm calls per tool and clip")
    parser.add_argument("--rounds", type=int, default=1, help="fresh-process pairs per tool and clip (medians)")
    parser.add_argument("--tools", help="comma-separated tool names (default: every tool in the registry)")
    args = parser.parse_args()
    if min(args.repeats, args.rounds) < 1:
        parser.error("--repeats and --rounds must be at least 1")

    with tempfile.TemporaryDirectory(prefix="agr-tool-latency-") as scratch:
        result = measure(args.repeats, args.rounds, args.tools.split(",") if args.tools else None, Path(scratch))
    report(result)
    from bench.harness import write_result  # here, not at the top: children time their own imports

    write_result("tool_latency", result)


if __name__ == "__main__":
    main()
