"""A simulated continuous-batching engine behind the OpenAI chat API, for the benches.

What vLLM or SGLang look like from outside at a fixed output length: up to `capacity`
requests are decoded together, each taking `latency_s` however many share the batch; a
request beyond that waits for a slot (the engine's queue) and its wait is not counted as
in flight. It lists `models` at GET /v1/models and answers every chat request with
`reply`, as a steered model would. It records the requests in flight over time, so a
bench can say how full the engine was kept.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SimulatedEngine:
    def __init__(self, capacity: int, latency_s: float, models: list[str], reply: str = "A tone",
                 refuse_containing: str | None = None):
        self.capacity, self.latency_s, self.models, self.reply = capacity, latency_s, models, reply
        self.refuse_containing = refuse_containing  # a request whose body holds it gets a 400
        self._slots = threading.BoundedSemaphore(capacity)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.answered = 0
        self._changes: list[tuple[float, int]] = []  # (monotonic time, in flight after it)
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        server.request_queue_size = 1024
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{server.server_port}/v1"

    def spec(self, model: str) -> str:
        return f"openai+{self.base_url}#{model}"

    def mean_in_flight(self, since: float, until: float) -> float:
        """Requests decoding, averaged over [since, until] (monotonic seconds)."""
        with self._lock:
            changes = list(self._changes)
        total, level, at = 0.0, 0, since
        for when, after in changes:
            if when <= since:
                level = after
                continue
            if when >= until:
                break
            total += level * (when - at)
            level, at = after, when
        total += level * (until - at)
        return total / (until - since)

    def busy_span(self, since: float, until: float) -> tuple[float, float]:
        """From the first request decoding to the last one ending, within [since, until]."""
        with self._lock:
            times = [when for when, _ in self._changes if since <= when <= until]
        return (times[0], times[-1]) if times else (since, until)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _decode(self) -> None:
        with self._slots:
            self._count(+1)
            time.sleep(self.latency_s)
            self._count(-1)

    def _count(self, step: int) -> None:
        with self._lock:
            self.in_flight += step
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.answered += step < 0
            self._changes.append((time.monotonic(), self.in_flight))

    def _handler(self):
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._send({"object": "list", "data": [{"id": m, "object": "model"} for m in engine.models]})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                if engine.refuse_containing and engine.refuse_containing.encode() in raw:
                    self._send({"error": {"message": "this request is refused", "type": "BadRequestError"}}, 400)
                    return
                engine._decode()
                self._send({"id": "sim", "object": "chat.completion", "created": 0, "model": body["model"],
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": engine.reply}}],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

            def _send(self, payload: dict, status: int = 200):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
