"""The audio store's round trip: a clip put into the store and read back as a perception
worker does (`local_file`: downloaded, hash-checked, cached), on the local folder and on
an S3 server (SeaweedFS on 127.0.0.1, as the tests use), in the same run.

For each size: put, a first `local_file` (the download on S3) and a second one (the
cached copy), median of the repeats, and S3's time as a ratio of the local folder's.
Writes bench/results/audio_store.json. Run: .venv/bin/python bench/audio_store.py [--repeats N]
"""

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import write_result  # noqa: E402
from storage.audio_store import LocalAudioStore  # noqa: E402
from storage.s3_audio_store import S3AudioStore  # noqa: E402
from tests.s3_server import running_s3_server  # noqa: E402

SIZES_MIB = (1, 32)


def round_trip(store, staging: Path, size: int) -> dict:
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    staged = staging / digest
    staged.write_bytes(data)
    started = time.perf_counter()
    store.put(digest, staged)
    put = time.perf_counter() - started
    started = time.perf_counter()
    first = store.local_file(digest)
    fetch = time.perf_counter() - started
    started = time.perf_counter()
    store.local_file(digest)
    cached = time.perf_counter() - started
    assert first.read_bytes() == data
    store.delete(digest)
    return {"put_s": put, "first_read_s": fetch, "cached_read_s": cached}


def medians(store, staging: Path, size: int, repeats: int) -> dict:
    runs = [round_trip(store, staging, size) for _ in range(repeats)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        staging = tmp / "staging"
        staging.mkdir()
        local = LocalAudioStore(tmp / "local")
        with running_s3_server(tmp / "s3") as server:
            s3 = S3AudioStore(server.client(), server.bucket, "bench", tmp / "cache", 10 * 1024**3)
            results = {}
            for mib in SIZES_MIB:
                size = mib * 1024**2
                results[f"{mib} MiB"] = {"local": medians(local, staging, size, args.repeats),
                                         "s3": medians(s3, staging, size, args.repeats)}
    print(f"{'size':>7} {'store':>6} {'put ms':>8} {'first read ms':>14} {'cached read ms':>15}")
    for size, by_store in results.items():
        for name, figures in by_store.items():
            print(f"{size:>7} {name:>6} {figures['put_s'] * 1000:8.1f} {figures['first_read_s'] * 1000:14.1f} "
                  f"{figures['cached_read_s'] * 1000:15.2f}")
        ratio = sum(by_store["s3"].values()) / sum(by_store["local"].values())
        by_store["s3_over_local"] = ratio
        print(f"{size:>7}  S3 round trip / local round trip: {ratio:.1f}x")
    write_result("audio_store", results)


if __name__ == "__main__":
    main()
