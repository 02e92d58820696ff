"""Each role carries only what it needs, and the reasoning role keeps many LLM calls in flight.

The API, the CLI, the sweeper and a reasoning worker never load torch, librosa, transformers,
onnxruntime or faster-whisper: checked on what each role's code imports, and on the real
running processes after a batch went through them (their memory maps, which show every
native library a process has loaded). A perception worker that ran a model is the control:
the same check sees torch and onnxruntime in it.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from models import JobStatus
from tests.stack import post_tone_batch, tone_wav

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "librosa", "transformers", "onnxruntime", "faster_whisper")
# The native part each of them loads (librosa through numba's llvmlite, faster-whisper
# through ctranslate2; transformers imports torch before it can run any model).
HEAVY_NATIVE = {"torch": "/torch/lib/libtorch", "onnxruntime": "/onnxruntime/capi/",
                "librosa": "/llvmlite/binding/", "faster_whisper": "/ctranslate2/"}

# What each role runs at start and on its first work, as far as it can run without services.
ROLE_CODE = {
    "api": "from api.app import create_app; create_app()",
    "cli": "import cli.main, cli.remote, cli.admin",
    "sweeper": "import workers.runtime.sweeper_loop\nfrom workers.runtime.sweeper import Sweeper",
    "reasoning": (
        "from workers.runtime.celery_app import app; app.loader.import_default_modules()\n"
        "from models.status import StepKind\n"
        "from workers.method.steps import handler_for\n"
        "for kind in (StepKind.PLAN, StepKind.INTERACT, StepKind.ANSWER): handler_for(kind)\n"
        "from workers.method.perception.tools import available_tools\n"
        "from workers.method.reasoning import interaction, planner\n"
        "tools = available_tools()\n"
        "interaction.messages('q?', ['a', 'b'], 'doc', ['more'], tools); interaction.schema(tools)\n"
        "planner.schema([t.name for t in tools])\n"
    ),
}


def test_every_route_names_a_task_the_workers_register():
    from workers.runtime.celery_app import app
    from workers.runtime.routing import STEP_ROUTES

    app.loader.import_default_modules()
    for route in STEP_ROUTES.values():
        assert route.task in app.tasks, route
        assert app.amqp.router.route({}, route.task)["queue"].name == route.queue


def test_the_deployments_reasoning_concurrency_is_the_settings_default():
    from core.settings import Settings

    compose = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"-Q reasoning --pool threads\s+--concurrency \$\{AGR_REASONING_CONCURRENCY:-(\d+)\}", compose)
    declared = int(re.search(r"AGR_REASONING_CONCURRENCY:-(\d+)", compose).group(1))
    assert declared == Settings.model_fields["reasoning_concurrency"].default


@pytest.mark.parametrize("role", sorted(ROLE_CODE))
def test_a_slim_role_imports_none_of_the_heavy_libraries(role):
    code = ROLE_CODE[role] + f"\nimport sys, json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == [], f"the {role} role loaded them"


_CLI_AT_START = """
import os, sys
from pathlib import Path
import cli.main
print({"celery_app": "workers.runtime.celery_app" in sys.modules,
       "perception": "workers.method.perception" in sys.modules,
       "numba_cache_dir": "NUMBA_CACHE_DIR" in os.environ,
       "made": sorted(p.name for p in Path(".").iterdir())})
"""


def test_the_cli_at_start_builds_no_celery_app_and_writes_nothing(tmp_path):
    """`agr` loads its commands without the Celery app (built then, it would keep the broker
    URL of before `agr run` started its embedded Redis) and without perception (whose start
    sets numba's cache folder, making `.agr/` wherever `agr --help` is run)."""
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("AGR_", "NUMBA_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", _CLI_AT_START], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str({"celery_app": False, "perception": False, "numba_cache_dir": False,
                                       "made": []}), done.stdout + done.stderr


def test_the_reasoning_worker_keeps_many_calls_in_flight_and_no_role_loads_the_models(stack, scripted_llm, tmp_path):
    threads = 12
    stack.configure(llm_base_url=scripted_llm.base_url, reasoning_concurrency=threads,
                    coarse_tools='["signal_facts", "voice_activity"]',
                    llm_timeout_s=600)  # a held call waits for the last job's perception, however slow
    # No planner reply leaves until `threads` planner calls are open at once: one worker
    # process that ran them one at a time would never get there.
    scripted_llm.hold_until_in_flight("planner", threads, timeout_s=60)
    stack.start()
    api = stack.start_api()
    (tmp_path / "clips").mkdir()
    for i in range(threads):
        tone_wav(tmp_path / "clips" / f"{i}.wav", seconds=0.5, freq=300 + 20 * i)
    _, batch_id = post_tone_batch(api, "roles", tmp_path / "clips", threads)
    batch = stack.wait_for_batch(batch_id, timeout=300)

    assert {j.status for j in stack.jobs(batch.id)} == {JobStatus.SUCCEEDED}
    assert scripted_llm.peak_in_flight >= threads
    reasoning = psutil.Process(stack.workers["reasoning"].pid)
    assert reasoning.children() == []  # one process held them all
    for role in ("api", "sweeper", "reasoning"):
        assert loaded_heavy_libraries(stack.workers[role].pid) == [], role
    # The control: the CPU perception worker ran Silero VAD, and the check sees it.
    assert {"torch", "onnxruntime"} <= set(loaded_heavy_libraries(stack.workers["perception-cpu"].pid))


def loaded_heavy_libraries(pid: int) -> list[str]:
    """The heavy libraries whose native code is mapped into the process or its children."""
    process = psutil.Process(pid)
    maps = "".join(Path(f"/proc/{p.pid}/maps").read_text() for p in [process, *process.children(recursive=True)])
    return sorted(name for name, marker in HEAVY_NATIVE.items() if marker in maps)
