"""A scripted OpenAI-compatible server: a real HTTP server whose replies a test chooses.

Each agent (recognised by its system prompt) has a queue of scripted replies; when the
queue is empty, the agent's default reply is used (a test may set its own). A reply is a dict (sent as JSON
content), a str (sent verbatim as content), an int (an HTTP error status), a tuple
(status, error payload): an HTTP error with that exact body, as a real server words it, or a
callable, called with the request body (it may block, holding the request open) for one of those.
A test may also make the server refuse a `response_format` type outright, the way a
server without that form does (see `refuse_response_format`).
Every request is recorded, so a test can count what the workers really asked, and the
server counts the requests it holds open at once (how many calls a worker keeps in flight).
"""

import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AGENT_MARKERS = {"planning agent": "planner", "interaction agent": "interaction", "answering agent": "answerer",
                 "the arbiter": "arbiter"}


def agent_of(body: dict) -> str:
    system = next((m["content"] for m in body.get("messages", []) if m["role"] == "system"), "")
    return next((name for marker, name in AGENT_MARKERS.items() if marker in system), "unknown")


def choices_of(body: dict) -> list[str]:
    user = body["messages"][1]["content"]
    block = user.split("Choices:\n", 1)[1].split("\n\n", 1)[0] if "Choices:\n" in user else ""
    return [line[2:] for line in block.splitlines() if line.startswith("- ")]


def default_reply(agent: str, body: dict):
    if agent == "planner":
        return {"reason": "the evidence answers it", "sufficient": True, "confidence": 0.9, "missing": []}
    if agent == "interaction":
        return {"calls": [{"tool": "signal_facts", "args": {}, "purpose": "check the level"}]}
    choices = choices_of(body)
    return {"reasoning": "scripted", "answer": choices[0] if choices else "something", "confidence": 0.6}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a reasoning worker opens 128 connections at once; 5 would stall them


class ScriptedLLM:
    def __init__(self):
        self.script: dict[str, list] = {}
        self.delays: dict[str, float] = {}
        self.default_replies: dict[str, object] = {}  # an agent's reply once its queue is empty
        self.requests: list[dict] = []  # {"agent", "body", "answered", "fault", "started", "ended"}
        self.in_flight = 0  # requests received and not yet answered
        self.peak_in_flight = 0
        self._holds: dict[str, tuple[int, float]] = {}
        self._refused_formats: dict[str, tuple[int, dict]] = {}
        self._faults = (0.0, random.Random(0), 0.0)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def queue(self, agent: str, *replies) -> None:
        with self._lock:
            self.script.setdefault(agent, []).extend(replies)

    def requests_of(self, agent: str) -> list[dict]:
        return [r for r in self.requests if r["agent"] == agent]

    def hold_until_in_flight(self, agent: str, count: int, timeout_s: float) -> None:
        """Answer no request of `agent` until `count` of them are open at once (or until one
        has waited `timeout_s`): a client that cannot keep that many calls in flight is
        seen, whatever the machine's speed."""
        with self._lock:
            self._holds[agent] = (count, timeout_s)

    def in_flight_seconds(self, since: float = 0.0) -> float:
        """Request-seconds spent open since `since` (time.monotonic()); over a wall time,
        the mean number of calls in flight."""
        now = time.monotonic()
        with self._lock:
            return sum((r["ended"] or now) - max(r["started"], since) for r in self.requests
                       if (r["ended"] or now) > since)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def inject_faults(self, rate: float, seed: int, hang_s: float) -> None:
        """From now on a share `rate` of requests fail: HTTP 500, HTTP 429, a reply only
        after `hang_s` (past the client's timeout), or garbage instead of JSON, in turn
        drawn from a seeded generator so a failing run can be replayed."""
        self._faults = (rate, random.Random(seed), hang_s)

    def refuse_response_format(self, format_type: str, status: int, payload: dict) -> None:
        """From now on every request whose response_format has type `format_type` gets
        HTTP `status` with `payload`, whatever is queued (the queue is left untouched)."""
        with self._lock:
            self._refused_formats[format_type] = (status, payload)

    def _next(self, body: dict):
        agent = agent_of(body)
        with self._lock:
            record = {"agent": agent, "body": body, "answered": False, "started": time.monotonic(), "ended": None}
            self.requests.append(record)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self._wait_for_hold(agent)
            refusal = self._refused_formats.get((body.get("response_format") or {}).get("type"))
            if refusal is not None:
                record["fault"] = None
                return record, refusal
            queued = self.script.get(agent)
            if queued:
                reply = queued.pop(0)
            else:
                reply = self.default_replies.get(agent) or default_reply(agent, body)
            fault = self._draw_fault()
        record["fault"] = fault
        time.sleep(self.delays.get(agent, 0.0) + (self._faults[2] if fault == "hang" else 0.0))
        if callable(reply):
            reply = reply(body)
        if fault in (500, 429):
            return record, fault
        if fault == "garbage":
            return record, "}{ this is not JSON <|endoftext|>"
        return record, reply

    def _wait_for_hold(self, agent: str) -> None:
        count, timeout_s = self._holds.get(agent, (0, 0.0))
        if count:
            waiting = sum(1 for r in self.requests if r["agent"] == agent and r["ended"] is None)
            if waiting >= count:
                self._holds.pop(agent)  # reached: every held request goes now
                self._changed.notify_all()
            else:
                self._changed.wait_for(lambda: agent not in self._holds, timeout=timeout_s)

    def _finished(self, record: dict) -> None:
        with self._lock:
            record["ended"] = time.monotonic()
            self.in_flight -= 1

    def _draw_fault(self):
        rate, rng, _ = self._faults
        if rng.random() >= rate:
            return None
        return rng.choice([500, 429, "hang", "garbage"])

    def _handler(self):
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                record, reply = scripted._next(body)
                try:
                    if isinstance(reply, int):
                        self._send(reply, {"error": {"message": f"scripted status {reply}"}})
                    elif isinstance(reply, tuple):
                        self._send(*reply)
                    else:
                        content = reply if isinstance(reply, str) else json.dumps(reply)
                        self._send(200, completion(body, content))
                    record["answered"] = True
                finally:
                    scripted._finished(record)

            def _send(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def completion(body: dict, content: str) -> dict:
    prompt_words = sum(len(re.findall(r"\S+", m["content"])) for m in body["messages"])
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "scripted"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_words, "completion_tokens": len(content.split()),
                  "total_tokens": prompt_words + len(content.split())},
    }
