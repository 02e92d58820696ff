"""One tenant's large ingest into a slow S3 store, and what the other tenants feel.

The API runs as its own uvicorn process on private services (bench/harness.py) with its
audio store on a real S3 server (SeaweedFS, as the tests use) behind a proxy that makes
every request to it answer `--latency-ms` late (tests/latency_proxy.py; 200 ms by
default, a distant region). Tenant A submits `--items` clips (5,000 by default), each its
own object, with `agr submit` (hash, upload many files a request, 4 requests in flight,
queue the batch). Meanwhile tenant B submits small batches of its own new clips with
`agr submit`, one after another, and tenant C lists its batches and reads /healthz.

Figures, each as a ratio to the same thing measured idle in the same run: B's submit
time, C's listing and /healthz p50/p99; and A's ingest (objects a second), with every
HTTP status any of them saw. The target: B and C proceed (ratios near 1), and no 500.

Writes bench/results/ingest_isolation.json. Run:
  .venv/bin/python bench/ingest_isolation.py [--items N] [--latency-ms MS] [--puts-per-request K]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bulk_submit import _dataset, _submit, _wait_for  # noqa: E402
from bench.harness import bench_services, write_result  # noqa: E402

SMALL_BATCH = 10  # tenant B's clips a submit
IDLE_SUBMITS = 3
IDLE_PROBE_S = 15.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=5000, help="tenant A's clips, each its own object")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="added to every request to the store")
    parser.add_argument("--puts-per-request", type=int, default=None,
                        help="AGR_STORE_PUTS_PER_REQUEST for the API (default: the setting's own)")
    args = parser.parse_args()
    result = measure(args.items, args.latency_ms / 1000, args.puts_per_request)
    print(json.dumps(result, indent=2))
    write_result("ingest_isolation", result)


def measure(items: int, latency_s: float, puts_per_request: int | None) -> dict:
    from api.keys import create_key
    from local_stack import processes
    from tests.latency_proxy import LatencyProxy
    from tests.s3_server import running_s3_server
    from tests.stack import _free_port

    with bench_services("agr-bench-ingest-") as tmp, running_s3_server(tmp / "s3") as s3, \
            LatencyProxy(_port_of(s3.endpoint_url), latency_s) as proxy:
        env = {k: v for k, v in os.environ.items() if k.startswith("AGR_")} | s3.env()
        env["AGR_S3_ENDPOINT_URL"] = proxy.url
        if puts_per_request is not None:
            env["AGR_STORE_PUTS_PER_REQUEST"] = str(puts_per_request)
        port = _free_port()
        api = processes.start_api(env, tmp / "api.log", port=port)
        url = f"http://127.0.0.1:{port}"
        # A and B at a tenant's default limits (600 requests a minute); C's probe asks more often.
        keys = {tenant: create_key(f"bench-ingest-{tenant}") for tenant in "AB"}
        keys["C"] = create_key("bench-ingest-C", rate_limit_per_minute=1_000_000)
        try:
            _wait_for(url)
            return _run(tmp, url, keys, items) | {"latency_ms": latency_s * 1000,
                                                  "puts_per_request": puts_per_request or "default"}
        except Exception:
            print((tmp / "api.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            processes.stop_all([api])
            errors = [line for line in (tmp / "api.log").read_text().splitlines() if "Traceback" in line]
            if errors:
                print(f"the API logged {len(errors)} traceback(s): see above", file=sys.stderr)


def _run(tmp: Path, url: str, keys: dict, items: int) -> dict:
    small = iter(range(1_000_000, 10_000_000, SMALL_BATCH))  # B's clips, numbered apart from A's
    env_of = {t: {**os.environ, "AGR_API_URL": url, "AGR_API_KEY": k, "COLUMNS": "160"} for t, k in keys.items()}

    def submit_b() -> float:
        meta, _ = _dataset(tmp / f"b-{(first := next(small))}", SMALL_BATCH, first)
        return _submit_quietly(meta, env_of["B"])

    idle_b = [submit_b() for _ in range(IDLE_SUBMITS)]
    idle_probe = _Probe(url, keys["C"])
    time.sleep(IDLE_PROBE_S)
    idle_c = idle_probe.stop()

    meta_a, clip_bytes = _dataset(tmp / "a", items, 0)
    load_probe = _Probe(url, keys["C"])
    began = time.perf_counter()
    ingest = subprocess.Popen([sys.executable, "-m", "cli.main", "submit", str(meta_a), "--audio-dir", str(meta_a.parent)],
                              env=env_of["A"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = threading.Thread(target=lambda: setattr(ingest, "output", ingest.stdout.read()), daemon=True)
    out.start()
    loaded_b = []
    while ingest.poll() is None:
        loaded_b.append(submit_b())
    ingest_s = time.perf_counter() - began
    out.join()
    loaded_c = load_probe.stop()
    assert ingest.returncode == 0, f"tenant A's submit failed:\n{ingest.output[-3000:]}"
    return {
        "items": items, "clip_bytes": clip_bytes,
        "tenant_a": {"seconds": round(ingest_s, 1), "objects_per_s": round(items / ingest_s, 1)},
        "tenant_b_submit_s": {"idle": _median(idle_b), "during_a": _median(loaded_b), "submits_during_a": len(loaded_b)},
        "tenant_b_submit_ratio": round(_median(loaded_b) / _median(idle_b), 2),
        "tenant_c": {"idle": idle_c, "during_a": loaded_c},
        "tenant_c_p99_ratio": {what: round(loaded_c[what]["p99_ms"] / idle_c[what]["p99_ms"], 2)
                               for what in ("listing", "healthz")},
        "statuses_seen_by_c": dict(idle_c["statuses"] + loaded_c["statuses"]),
        "errors_5xx": sum(n for s, n in (idle_c["statuses"] + loaded_c["statuses"]).items() if s >= 500 or s == 0),
    }


def _submit_quietly(meta: Path, env: dict) -> float:
    """One `agr submit`'s seconds (a failed one raises, with what it printed)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return _submit(meta, env)["seconds"]


class _Probe:
    """Tenant C, from a thread: its batch listing and /healthz, one after the other, until stopped."""

    def __init__(self, url: str, key: str):
        import httpx

        self._client = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"})
        self._times: dict[str, list[float]] = {"listing": [], "healthz": []}
        self._statuses: Counter = Counter()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import httpx

        while not self._stopped.is_set():
            for what, path in (("listing", "/v1/batches?limit=20"), ("healthz", "/healthz")):
                began = time.perf_counter()
                try:
                    status = self._client.get(path).status_code
                except httpx.TransportError:
                    status = 0  # no answer at all: counted with the errors
                self._times[what].append((time.perf_counter() - began) * 1000)
                self._statuses[status] += 1
            time.sleep(0.05)

    def stop(self) -> dict:
        self._stopped.set()
        self._thread.join()
        self._client.close()
        return {what: _percentiles(times) for what, times in self._times.items()} | {"statuses": self._statuses}


def _percentiles(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"requests": len(ordered), "p50_ms": round(statistics.median(ordered), 2),
            "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 2)}


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def _port_of(endpoint_url: str) -> int:
    return int(endpoint_url.rsplit(":", 1)[1].split("/")[0])


if __name__ == "__main__":
    main()
