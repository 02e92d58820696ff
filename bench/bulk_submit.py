"""A bulk submission from the CLI, end to end: N items (default 50,000), each its own
one-second clip, submitted with `agr submit` against the API as its own uvicorn process
at a tenant's default limits (600 requests a minute), on private services
(bench/harness.py), no workers (nothing drains the queue while it is measured).

Figures: the wall time of the first submit (hash, upload only what is missing, send the
JSONL as a file, the service checks it off the request path, queued), its hashing and
upload throughput as the CLI prints them, and the same command again: it must upload
nothing and return the same batch (its time as a ratio to the first).

Writes bench/results/bulk_submit.json. Run: .venv/bin/python bench/bulk_submit.py [--items N]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_services, write_result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=50_000, help="items, each its own clip")
    args = parser.parse_args()
    with bench_services("agr-bench-bulk-") as tmp:
        from api.keys import create_key
        from local_stack import processes
        from tests.stack import _free_port

        meta, clip_bytes = _dataset(tmp / "mmar", args.items)
        key = create_key("bench-bulk")  # the default limits: 600 requests a minute
        port = _free_port()
        api = processes.start_api({k: v for k, v in os.environ.items() if k.startswith("AGR_")},
                                  tmp / "api.log", port=port)
        env = {**os.environ, "AGR_API_URL": f"http://127.0.0.1:{port}", "AGR_API_KEY": key, "COLUMNS": "160"}
        try:
            _wait_for(env["AGR_API_URL"])
            first = _submit(meta, env)
            again = _submit(meta, env)
        except Exception:
            print((tmp / "api.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            processes.stop(api)
    assert again["batch"] == first["batch"], "a re-run made a second batch"
    assert again["to_upload"] == 0, "a re-run uploaded files again"
    result = {"items": args.items, "clip_bytes": clip_bytes, "cpu_count": os.cpu_count(),
              "first": first, "again": again,
              "again_vs_first_ratio": round(again["seconds"] / first["seconds"], 3)}
    print(json.dumps(result, indent=2))
    write_result("bulk_submit", result)


def _dataset(folder: Path, items: int, first: int = 0) -> tuple[Path, int]:
    """MMAR's layout: MMAR-meta.jsonl beside audio/<id>.wav, each clip's bytes its own
    (numbered from `first`: datasets numbered apart share no clip)."""
    import numpy as np
    import soundfile as sf

    (folder / "audio").mkdir(parents=True)
    rng = np.random.default_rng(7)
    t = np.arange(16000) / 16000
    lines = []
    for i in range(first, first + items):
        wave = 0.3 * np.sin(2 * np.pi * 440 * t + rng.uniform(0, 2 * np.pi))
        wave[:2] = divmod(i, 30_000)  # the item's number in its first samples: every clip's bytes differ
        wave[:2] /= 32_768
        sf.write(str(folder / "audio" / f"id{i}.wav"), wave.astype(np.float32), 16000, subtype="PCM_16")
        lines.append(json.dumps({"id": f"id{i}", "audio_path": f"./audio/id{i}.wav", "question": "What is heard?",
                                 "choices": ["A tone", "A voice"], "answer": "A tone", "modality": "sound"}))
    meta = folder / "MMAR-meta.jsonl"
    meta.write_text("\n".join(lines) + "\n")
    return meta, (folder / "audio" / f"id{first}.wav").stat().st_size


def _submit(meta: Path, env: dict) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cli.main", "submit", str(meta), "--audio-dir", str(meta.parent)],
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    out = done.stdout
    print(out)
    figures = {"seconds": round(seconds, 1), "batch": re.search(r"batch (\S+) queued", out).group(1),
               "to_upload": int(re.search(r"(\d+) to upload", out).group(1)),
               "rate_limited_waits": out.count("rate limited by the API")}
    for verb in ("hashed", "uploaded"):
        found = re.search(rf"{verb} (\d+) file\(s\), ([\d.]+) MB in ([\d.]+) s: (\d+) files/s, ([\d.]+) MB/s", out)
        if found:
            figures[verb] = {"files": int(found[1]), "mb": float(found[2]), "seconds": float(found[3]),
                             "files_per_s": int(found[4]), "mb_per_s": float(found[5])}
    return figures


def _wait_for(url: str) -> None:
    import httpx

    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the API did not start")


if __name__ == "__main__":
    main()
