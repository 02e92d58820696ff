"""Real serving engines for the tests: `transformers serve` pinned to a model saved at test
time, started as a child of the test (stopped with it) on a free port of 127.0.0.1."""

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests import children
from tests.stack import _free_port

_REQUEST = re.compile(r'"POST /v1/([a-z/]+) HTTP/1.1" (\d+)')


@dataclass
class Served:
    process: object
    url: str  # the base URL, up to /v1
    model: str  # the name it serves: the model's folder
    log: Path

    def spec(self, model: str | None = None) -> str:
        """The engine as an ALM spec (core/alm_endpoint.py)."""
        return f"openai+{self.url}#{model or self.model}"

    def requests(self, route: str = "chat/completions") -> list[int]:
        """The status of every request to `route` it answered so far (its access log)."""
        return [int(status) for path, status in _REQUEST.findall(self.log.read_text(errors="replace"))
                if path == route]


def start_transformers_serve(model: Path, folder: Path, port: int | None = None, within_s: float = 300,
                             extra_args: list[str] = ()) -> Served:
    """Started on `port` (default: a free one), once it lists `model`; its log appended to.
    `extra_args`: more of its command-line flags (--continuous-batching, ...)."""
    port, log = port or _free_port(), folder / "serve.log"
    serve = Path(sys.executable).parent / "transformers"
    with open(log, "a") as out:
        process = children.start([str(serve), "serve", str(model), "--device", "cpu", "--host", "127.0.0.1",
                                  "--port", str(port), *extra_args], stdout=out, stderr=out, start_new_session=True)
    served = Served(process, f"http://127.0.0.1:{port}/v1", str(model), log)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if any(m["id"] == served.model for m in httpx.get(f"{served.url}/models", timeout=5).json()["data"]):
                return served
        except (httpx.TransportError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    children.stop(process)
    raise AssertionError(f"transformers serve never listed {model}:\n{log.read_text()[-3000:]}")
