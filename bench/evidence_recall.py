"""Does perception put the answer's evidence into the chain? Evidence recall over the
devset, and each tool's accuracy where the truth is known.

    .venv/bin/python bench/evidence_recall.py [--devset ../shared/devset]

1. Evidence recall. Every devset item runs through the real stack (a worker process per
   queue, private Postgres and Redis) with a coarse document of every offline tool, and the
   instant scripted LLM (its planner finds the document sufficient): what is measured is
   what perception stores, not which tool a weak embedded LLM happens to ask for. An item
   counts when its `evidence_regex` matches the stored chain (every tool call's text,
   case-insensitive). Recall is also given for the evidence of the default coarse tools only.
2. From the same stored outputs: tempo within 4% of the answer, exact beep (burst) counts,
   chord quality, which of two tones is higher.
3. Pure-tone pitch within 2%: generated sine tones through the music tool's pitch contour.
4. Speech-recognition word error rate on sentences spoken by espeak-ng (skipped, and said
   so, where espeak-ng is not installed: `apt-get install espeak-ng`).
Writes bench/results/evidence_recall.json.

With --pipeline NAME: instead, the devset through that pipeline's own round 0, beside
`agr`'s (the default coarse tools) in the same run: recall of each, and each's tool CPU
seconds per item (the sum of its round-0 tool calls' latencies) and their ratio. Writes
bench/results/evidence_recall-NAME.json.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, bench_services, write_result  # noqa: E402
from core.settings import Settings, get_settings  # noqa: E402
from storage.factory import audio_store  # noqa: E402

DEVSET = ROOT.parent / "shared" / "devset"
TONES_HZ = (220.0, 330.0, 440.0, 587.3, 880.0, 1200.0)
SENTENCES = (
    "The train to Boston leaves from platform seven at noon.",
    "Please call me back after the meeting tomorrow morning.",
    "She bought three green apples and a loaf of bread.",
    "The weather will be cold and windy all week.",
    "Turn left at the second light and park near the library.",
)


def offline_tools() -> list[str]:
    """Every registered tool but the audio-language models' tools and the benches'
    simulated GPU model. One that is not available here stops the bench, naming it: a
    recall measured over fewer tools than it claims is a wrong figure, not a smaller one
    (choosing by `run_batch` once dropped transcription when it gained batching, and the
    figure fell from 0.955 to 0.818 with no error)."""
    from workers.method.perception.tools import TOOLS, alm_tools, simulated_gpu

    excluded = {t.name for t in alm_tools.TOOLS} | {simulated_gpu.TOOL.name}
    names = [name for name in TOOLS if name not in excluded]
    missing = [name for name in names if not TOOLS[name].available()]
    if missing:
        raise SystemExit(f"offline tool(s) {missing} are not available here: install what they need "
                         "(pip install -e '.[embedded]') rather than measure recall without them")
    return names


def run_devset(devset: Path, tools: list[str] | None, pipeline: str = "agr") -> tuple[list[dict], float]:
    """The devset through the stack, round 0 only; `tools`: the coarse tools (None: as the
    pipeline plans them)."""
    from api.batch_view import batch_progress
    from api.intake.batch_input import read_batch_file
    from api.intake.submission import submit
    from local_stack.stack import LocalStack

    if tools is None:
        os.environ.pop("AGR_COARSE_TOOLS", None)
    else:
        os.environ["AGR_COARSE_TOOLS"] = json.dumps(tools)
    get_settings.cache_clear()
    items = read_batch_file(devset / "meta.jsonl", devset)
    started = time.perf_counter()
    with LocalStack(get_settings()):
        batch_id = submit("evidence-recall", items, {"max_iters": 0, "pipeline": pipeline})
        while batch_progress(batch_id).finished < len(items):
            time.sleep(1)
    return stored_chains(batch_id), time.perf_counter() - started


def stored_chains(batch_id) -> list[dict]:
    from sqlalchemy import select

    from models import Job, ToolCall
    from models.db import session_scope

    with session_scope() as session:
        jobs = session.scalars(select(Job).where(Job.batch_id == batch_id).order_by(Job.custom_id)).all()
        calls = session.scalars(select(ToolCall).join(Job).where(Job.batch_id == batch_id)).all()
        by_job: dict = {}
        for call in calls:
            by_job.setdefault(call.job_id, []).append(
                {"tool": call.tool, "text": call.text, "output": call.output, "latency_ms": call.latency_ms}
            )
        return [{"id": j.custom_id, "status": str(j.status), "error": j.error, "calls": by_job.get(j.id, [])}
                for j in jobs]


def recall(meta: dict[str, dict], chains: list[dict], tools: set[str] | None = None) -> tuple[float, dict]:
    found = {}
    for chain in chains:
        pattern = re.compile(meta[chain["id"]]["evidence_regex"], re.IGNORECASE)
        found[chain["id"]] = sorted({c["tool"] for c in chain["calls"]
                                     if (tools is None or c["tool"] in tools) and pattern.search(c["text"])})
    return sum(bool(v) for v in found.values()) / len(found), found


def music_output(chain: dict) -> dict:
    return next(c["output"] for c in chain["calls"] if c["tool"] == "music")


def tool_accuracy(meta: dict[str, dict], chains: list[dict]) -> dict:
    rows: dict[str, list] = {"tempo_within_4pct": [], "beep_count_exact": [], "chord_quality": [], "pitch_order": []}
    for chain in chains:
        item, kind = meta[chain["id"]], chain["id"].split("-")[1]
        if chain["status"] != "succeeded":
            continue
        music = music_output(chain)
        if kind == "tempo":
            truth = float(re.search(r"\d+", item["answer"]).group())
            bpm = music["tempo"]["bpm"] or 0.0
            rows["tempo_within_4pct"].append({"id": chain["id"], "truth": truth, "measured": bpm,
                                              "ok": abs(bpm - truth) <= 0.04 * truth})
        elif kind == "beep_count":
            truth, measured = int(item["answer"]), len(music["bursts"])
            rows["beep_count_exact"].append({"id": chain["id"], "truth": truth, "measured": measured, "ok": truth == measured})
        elif kind == "chord_quality":
            measured = (music["chord"] or {}).get("quality")
            rows["chord_quality"].append({"id": chain["id"], "truth": item["answer"].lower(), "measured": measured,
                                          "ok": measured == item["answer"].lower()})
        elif kind == "pitch_order":
            notes = music["pitch_contour"]
            measured = None if len(notes) < 2 else ("second" if notes[-1]["f0_hz"] > notes[0]["f0_hz"] else "first")
            rows["pitch_order"].append({"id": chain["id"], "truth": item["answer"], "measured": measured,
                                        "ok": measured is not None and measured in item["answer"].lower()})
    return {name: {"correct": sum(r["ok"] for r in items), "items": len(items), "detail": items}
            for name, items in rows.items()}


def pure_tone_pitch() -> dict:
    from workers.method.perception.audio_io import AudioClip
    from workers.method.perception.tools import TOOLS

    rate, detail = 16000, []
    for hz in TONES_HZ:
        t = np.arange(2 * rate) / rate
        clip = AudioClip((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate, f"{hz} Hz tone")
        notes = TOOLS["music"].run(clip, {}).output["pitch_contour"]
        measured = float(np.median([n["f0_hz"] for n in notes])) if notes else 0.0
        detail.append({"truth_hz": hz, "measured_hz": measured, "error_pct": round(100 * abs(measured - hz) / hz, 2),
                       "ok": abs(measured - hz) <= 0.02 * hz})
    return {"correct": sum(d["ok"] for d in detail), "items": len(detail), "detail": detail}


def asr_word_error_rate() -> dict:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return {"skipped": "espeak-ng is not installed (apt-get install espeak-ng)"}
    import jiwer

    from workers.method.perception.audio_io import load_audio
    from workers.method.perception.tools import TOOLS

    references, hypotheses = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, sentence in enumerate(SENTENCES):
            wav = Path(tmp) / f"s{i}.wav"
            subprocess.run([espeak, "-w", str(wav), sentence], check=True)
            out = TOOLS["transcription"].run(load_audio(wav), {}).output
            references.append(_words(sentence))
            hypotheses.append(_words(" ".join(s["text"] for s in out["segments"])))
    return {"word_error_rate": round(jiwer.wer(references, hypotheses), 3), "sentences": len(SENTENCES),
            "detail": [{"reference": r, "heard": h} for r, h in zip(references, hypotheses)]}


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devset", type=Path, default=DEVSET)
    parser.add_argument("--pipeline", help="measure this pipeline's own round 0 beside agr's instead")
    args = parser.parse_args()
    meta = {json.loads(line)["id"]: json.loads(line) for line in (args.devset / "meta.jsonl").read_text().splitlines() if line.strip()}
    if args.pipeline:
        compare_round_zero(args.devset, meta, args.pipeline)
        return

    with bench_services("agr-evidence-recall-") as tmp:
        os.environ["AGR_DATA_DIR"] = str(tmp)
        tools = offline_tools()
        default_coarse = set(Settings.model_fields["coarse_tools"].default)
        chains, seconds = run_devset(args.devset, tools)
    all_recall, matched = recall(meta, chains)
    coarse_recall, _ = recall(meta, chains, default_coarse)
    accuracy = tool_accuracy(meta, chains)
    accuracy["pure_tone_pitch_within_2pct"] = pure_tone_pitch()
    result = {
        "evidence_recall": round(all_recall, 3),
        "evidence_recall_default_coarse_tools": round(coarse_recall, 3),
        "items": len(chains), "succeeded": sum(c["status"] == "succeeded" for c in chains),
        "wall_seconds": round(seconds, 1), "tools_in_chain": tools, "default_coarse_tools": sorted(default_coarse),
        "matched_by_tool": matched, "tool_accuracy": accuracy, "asr": asr_word_error_rate(),
        "errors": {c["id"]: c["error"] for c in chains if c["error"]},
    }
    print(f"evidence recall: {all_recall:.3f} with every offline tool, {coarse_recall:.3f} with the default coarse "
          f"tools ({result['succeeded']}/{len(chains)} items succeeded, {seconds:.0f} s)")
    for item_id, tools_matched in matched.items():
        print(f"  {item_id:24} {', '.join(tools_matched) or '-- not found --'}")
    for name, figures in accuracy.items():
        print(f"{name:30} {figures['correct']}/{figures['items']}")
    print(f"{'ASR word error rate':30} {result['asr'].get('word_error_rate', result['asr'].get('skipped'))}")
    write_result("evidence_recall", result)


def compare_round_zero(devset: Path, meta: dict, pipeline: str) -> None:
    result = {}
    for name in ("agr", pipeline):
        # Each on fresh services: the perception cache must not answer the second from the first.
        with bench_services(f"agr-evidence-recall-{name}-") as tmp:
            os.environ["AGR_DATA_DIR"] = str(tmp)
            audio_store.cache_clear()  # this process's store is the new data folder's
            chains, seconds = run_devset(devset, None, name)
        found, matched = recall(meta, chains)
        cpu = [sum(c["latency_ms"] for c in chain["calls"]) / 1000 for chain in chains]
        result[name] = {"evidence_recall": round(found, 3), "tool_cpu_s_per_item": round(sum(cpu) / len(cpu), 3),
                        "tool_cpu_s_median": round(sorted(cpu)[len(cpu) // 2], 3),  # the first pays model loads
                        "tool_cpu_s_max": round(max(cpu), 3), "wall_seconds": round(seconds, 1),
                        "succeeded": sum(c["status"] == "succeeded" for c in chains), "items": len(chains),
                        "tools": sorted({c["tool"] for chain in chains for c in chain["calls"]}),
                        "not_found": [item for item, tools in matched.items() if not tools]}
        print(f"{name:12} round-0 evidence recall {found:.3f}, tool CPU {result[name]['tool_cpu_s_per_item']:.2f} s "
              f"per item (median {result[name]['tool_cpu_s_median']:.2f}, max {result[name]['tool_cpu_s_max']:.2f}), wall {seconds:.0f} s, "
              f"{result[name]['succeeded']}/{len(chains)} succeeded {[c['error'] for c in chains if c['error']][:1]}")
    result["tool_cpu_ratio"] = round(result[pipeline]["tool_cpu_s_per_item"] / result["agr"]["tool_cpu_s_per_item"], 2)
    print(f"tool CPU per item, {pipeline} / agr: {result['tool_cpu_ratio']}")
    write_result(f"evidence_recall-{pipeline}", result)


if __name__ == "__main__":
    main()
