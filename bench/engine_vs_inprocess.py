"""One audio-language model in process (static batches) against the same model behind a
serving engine (`transformers serve`), items per second at 1, 8 and 32 requests in flight.

    .venv/bin/python bench/engine_vs_inprocess.py [--items 64] [--new-tokens 16] [--continuous-batching]

The model is a tiny random Qwen2-Audio built here (no hub weights), saved once and used by
both sides, on the CPU. Random weights never emit an end token (tests/tiny_models.py), so
every item decodes exactly --new-tokens tokens on either side.

- in process: the worker's path, `generate_batch` on static batches of
  min(in flight, AGR_GPU_BATCH_SIZE) prompts, one batch after another;
- engine: `transformers serve` started here, asked by the project's engine client
  (workers/method/perception/alm/engine.py: one chat request per prompt, the clip as an
  `input_audio` part) from that many threads at once, as the thread-pool perception worker
  asks it. `--continuous-batching` asks it for continuous batching (paged attention),
  which is what makes an engine worth running. transformers serve (5.x) grants it to
  text-only models only: for an audio model it logs "Only LLMs support continuous batching.
  Falling back to sequential generation." and decodes one request at a time; the result
  records whether it did (`engine_decoded_sequentially`). Continuous batching itself is
  measured against a simulated engine by `bench/pipelining.py --profile engine`, and on
  vLLM where a GPU is lent.

Prints items/s and tokens/s on each side and their ratio (engine over in process) at each
level, and writes bench/results/engine_vs_inprocess.json. On a CPU with a tiny model the
ratio is the engine's HTTP and scheduling overhead, not a GPU's batching gain: the figures
that decide a deployment come from a GPU and a real-sized model.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import write_result  # noqa: E402

RATE = 16000
CLIP_S = 5.0
LEVELS = (1, 8, 32)
PROMPT = "Describe the audio."
_SEQUENTIAL = "Falling back to sequential generation"


def clips(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [(0.1 * rng.standard_normal(int(CLIP_S * RATE))).astype(np.float32) for _ in range(count)]


def in_process_seconds(model, waveforms: list, in_flight: int) -> float:
    """Static batches of min(in_flight, AGR_GPU_BATCH_SIZE), one after another."""
    from core.settings import get_settings

    size = min(in_flight, get_settings().gpu_batch_size)
    start = time.perf_counter()
    for at in range(0, len(waveforms), size):
        chunk = waveforms[at:at + size]
        _checked(model.generate_raw(chunk, [PROMPT] * len(chunk)))
    return time.perf_counter() - start


def engine_seconds(model, waveforms: list, in_flight: int) -> float:
    """Each waveform its own request, `in_flight` of them waiting on the engine at a time."""
    start = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        replies = list(pool.map(lambda w: model.generate_raw([w], [PROMPT])[0], waveforms))
    seconds = time.perf_counter() - start
    _checked(replies)
    return seconds


def _checked(replies: list) -> None:
    failed = [r for r in replies if isinstance(r, Exception) or not r]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(replies)} requests failed, e.g. {failed[0]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=64, help="items measured at each level, on each side")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens decoded per item")
    parser.add_argument("--continuous-batching", action="store_true",
                        help="start transformers serve with --continuous-batching")
    args = parser.parse_args()

    import torch

    from tests import children
    from tests.engines import start_transformers_serve
    from tests.tiny_models import build_tiny_qwen2_audio
    from workers.method.perception.alm.base import GenerationSettings
    from workers.method.perception.alm.loading import load_audio_language_model

    generation = GenerationSettings(max_new_tokens=args.new_tokens)
    waveforms = clips(args.items)
    with tempfile.TemporaryDirectory(prefix="agr-engine-vs-inprocess-") as tmp:
        folder = Path(tmp)
        path = build_tiny_qwen2_audio(folder / "qwen2-audio")
        local = load_audio_language_model(str(path), device="cpu", generation=generation)
        extra = ["--continuous-batching"] if args.continuous_batching else []
        served = start_transformers_serve(path, folder, extra_args=extra)
        try:
            remote = load_audio_language_model(served.spec(), generation=generation)
            in_process_seconds(local, waveforms[:8], 8)  # warm-up: first-call allocations on both sides
            engine_seconds(remote, waveforms[:8], 8)
            levels = {}
            for in_flight in LEVELS:
                here = args.items / in_process_seconds(local, waveforms, in_flight)
                there = args.items / engine_seconds(remote, waveforms, in_flight)
                levels[str(in_flight)] = {"in_process_items_per_s": round(here, 3),
                                          "engine_items_per_s": round(there, 3),
                                          "engine_over_in_process": round(there / here, 3)}
            said = served.log.read_text(errors="replace")
        finally:
            children.stop(served.process)

    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "device": "cpu", "threads": torch.get_num_threads()},
        "model": "tiny random Qwen2-Audio (tests/tiny_models.py)", "items": args.items, "clip_seconds": CLIP_S,
        "new_tokens_per_item": args.new_tokens, "continuous_batching": args.continuous_batching,
        "in_process_batch_size": min(max(LEVELS), _gpu_batch_size()), "levels": levels,
        # transformers serve batches only text-only models continuously; an audio model it
        # serves one request at a time, and says so in its log.
        "engine_decoded_sequentially": not args.continuous_batching or _SEQUENTIAL in said,
    }
    print(f"{'in flight':>10}{'in process items/s':>20}{'engine items/s':>16}{'ratio':>8}{'engine tokens/s':>17}")
    for level, row in levels.items():
        print(f"{level:>10}{row['in_process_items_per_s']:>20.2f}{row['engine_items_per_s']:>16.2f}"
              f"{row['engine_over_in_process']:>8.2f}{row['engine_items_per_s'] * args.new_tokens:>17.1f}")
    if result["engine_decoded_sequentially"]:
        print("the engine decoded one request at a time" + (f" (it said {_SEQUENTIAL!r})" if args.continuous_batching else ""))
    write_result("engine_vs_inprocess" + ("-continuous" if args.continuous_batching else ""), result)


def _gpu_batch_size() -> int:
    from core.settings import get_settings

    return get_settings().gpu_batch_size


if __name__ == "__main__":
    main()
