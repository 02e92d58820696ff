"""What chat calls held open cost the API process: bench/front_door.py --held N."""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

WINDOW_S = 10.0  # CPU is measured over this long, idle and while holding
HEALTH_PROBES = 300
PROBE_GAP_S = 0.05  # between probes: 300 span 15 s, thirty of the held-jobs loop's reads, not one
WARM_UP_CALLS = 20  # held and let go before "idle": the first call's imports are not a held call's cost


def measure_held_calls(tmp: Path, held: int, crowds: int = 2) -> dict:
    from api.keys import create_key
    from bench.front_door import _free_port, _request
    from local_stack import processes

    key = create_key("held", rate_limit_per_minute=10_000_000, max_queued_items=10_000_000)
    port = _free_port()
    api = processes.start_api(dict(os.environ), tmp / "api.log", port)
    try:
        url = f"http://127.0.0.1:{port}"
        assert processes.wait_until_serving(f"{url}/healthz", api, 120), "API down"
        bodies = [_request(tmp, f"held-{i}", seconds=0.2) for i in range(held * crowds + WARM_UP_CALLS)]
        crowd_bodies = [bodies[c * held:(c + 1) * held] for c in range(crowds)]
        return asyncio.run(_measure(psutil.Process(api.pid), url, key, bodies[held * crowds:], crowd_bodies))
    finally:
        processes.stop_all([api])


async def _measure(api: psutil.Process, url: str, key: str, warm_up: list[dict], crowds: list[list[dict]]) -> dict:
    """The first crowd is measured while held and after it left; each later crowd (distinct
    calls, as many) only after it left: what is kept growing crowd by crowd is memory held
    per call, what stays level is the heap's high-water mark."""
    bodies = crowds[0]
    async with httpx.AsyncClient(base_url=url, timeout=30) as probe:
        await _healthz(probe, 50)
        await _hold(url, key, warm_up, lambda: None)
        await asyncio.sleep(WINDOW_S)
        idle = {"cpu_share": await _cpu_share(api), "healthz": await _healthz(probe, HEALTH_PROBES),
                "rss_mib": _rss_mib(api)}
        holding = {}

        async def measure_while_held():
            holding.update(cpu_share=await _cpu_share(api), healthz=await _healthz(probe, HEALTH_PROBES),
                           rss_mib=_rss_mib(api), connections=len(api.net_connections("tcp")))

        await _hold(url, key, bodies, measure_while_held)
        await asyncio.sleep(WINDOW_S)  # the API notices its clients left
        after = {"cpu_share": await _cpu_share(api), "rss_mib": _rss_mib(api),
                 "connections": len(api.net_connections("tcp"))}
        kept_after_each = [after["rss_mib"]]
        for crowd in crowds[1:]:
            await _hold(url, key, crowd, lambda: None)
            await asyncio.sleep(WINDOW_S * 2)  # the API notices, and returns its memory
            kept_after_each.append(_rss_mib(api))
    per_call_kib = (holding["rss_mib"] - idle["rss_mib"]) * 1024 / len(bodies)
    return {
        "held_calls": len(bodies), "idle": idle, "holding": holding, "after_clients_left": after,
        "cpu_share_holding": holding["cpu_share"],
        "healthz_p99_ratio": round(holding["healthz"]["p99_ms"] / idle["healthz"]["p99_ms"], 2),
        "rss_kib_per_held_call": round(per_call_kib, 1),
        "rss_mib_kept_after_clients_left": round(after["rss_mib"] - idle["rss_mib"], 1),
        "rss_mib_kept_after_each_crowd": [round(r - idle["rss_mib"], 1) for r in kept_after_each],
        "rss_kib_kept_per_call_after_first_crowd": round(
            (kept_after_each[-1] - kept_after_each[0]) * 1024 / max(1, len(bodies) * (len(crowds) - 1)), 2),
    }


async def _hold(url: str, key: str, bodies: list[dict], while_held) -> None:
    """`bodies` sent as chat calls at once, held until every one made its job, then
    `while_held()` awaited, then every client gone."""
    limits = httpx.Limits(max_connections=len(bodies) + 10, max_keepalive_connections=0)
    jobs_before = _jobs()
    async with httpx.AsyncClient(base_url=url, timeout=None, limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as clients:
        calls = [asyncio.create_task(clients.post("/v1/chat/completions", json=b)) for b in bodies]
        began = time.monotonic()
        while (made := _jobs() - jobs_before) < len(bodies):
            assert time.monotonic() - began < 600, f"only {made} of {len(bodies)} calls made their job"
            done = [c for c in calls if c.done()]
            assert not done, f"a call ended while it should be held: {done[0].result().text[:300]}"
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # the last calls settle into their wait
        if (measured := while_held()) is not None:
            await measured
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)


async def _cpu_share(process: psutil.Process) -> float:
    """The process's CPU seconds per second over WINDOW_S (1.0: one core busy)."""
    before, began = process.cpu_times(), time.monotonic()
    await asyncio.sleep(WINDOW_S)
    after = process.cpu_times()
    return round((after.user + after.system - before.user - before.system) / (time.monotonic() - began), 3)


async def _healthz(client: httpx.AsyncClient, probes: int) -> dict:
    """/healthz timed from a process of its own: probed from this one, whose event loop
    also keeps the held calls' connections, the figures would include this side's waits."""
    url = str(client.base_url)
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", _PROBE, url, str(probes), str(PROBE_GAP_S)],
                                   capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


_PROBE = """
import json, statistics, sys, time
import httpx
times = []
with httpx.Client(base_url=sys.argv[1], timeout=30) as client:
    for _ in range(int(sys.argv[2])):
        began = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        times.append((time.perf_counter() - began) * 1000)
        time.sleep(float(sys.argv[3]))
times.sort()
print(json.dumps({"p50_ms": round(statistics.median(times), 2), "p99_ms": round(times[int(len(times) * 0.99) - 1], 2)}))
"""


def _rss_mib(process: psutil.Process) -> float:
    return round(process.memory_info().rss / 2**20, 1)


def _jobs() -> int:
    from bench.front_door import _job_count

    return _job_count()
