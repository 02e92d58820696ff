"""The reasoner endpoint: any OpenAI-compatible server, through the `openai` package.

Structured output, with `llm_response_format="auto"`, is asked for in the standard
`json_schema` form. Servers that lack that form (llama.cpp's llama-server before it took
it, llama-cpp-python's `llama_cpp.server`) refuse it with HTTP 500 (or 400/422) and an
error that names the form, and accept their own `json_object` + `schema` extension
instead, which hosted APIs in turn reject. So the form is learned, once per process:

- Every call, the first ones included, gets the `openai` package's ordinary retries with
  backoff for timeouts, connection errors, 429 and 5xx. Only a *format refusal* is not
  retried (the same request would be refused again): an HTTP 400/422/500 whose error
  body names `response_format` or `json_schema`. llama-server says `response_format type
  must be one of "text" or "json_object", but got: json_schema` (a 500);
  llama-cpp-python's validation error names `('body', 'response_format', 'type')`
  (a 500 too). A hosted API's blip ("the server had an error") names neither.
- A `json_schema` call that succeeds teaches `json_schema`.
- A format refusal is confirmed before anything is learned: the same call is made in the
  `json_object` form, and only when that one is accepted is `json_object` learned. If it
  is refused as well (a schema neither form takes) or fails past its retries, nothing is
  learned and the error is raised; a later call probes again.
- A 429, a timeout, a connection error or a 5xx without that wording teaches nothing,
  however often it recurs: past the retries the call raises ReasonerUnavailable and the
  process stays in "auto". A blip can delay the learning, never decide it.
- The learned form is set at most once (compare-and-set under a lock) and never changes
  after that, so the reasoning worker's threads, which share one client and may all make
  their first call at once, each probe at most once and cannot flip the form back and
  forth. No lock is held over a request: a thread whose probe is refused makes its own
  confirming call, which is also its answer.
"""

import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import openai

from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

FORMAT_REFUSAL_STATUSES = (400, 422, 500)
FORMAT_REFUSAL_WORDS = ("response_format", "json_schema")


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float


class ReasonerUnavailable(RuntimeError):
    """The reasoner could not be reached or kept failing after retries."""


def is_format_refusal(status_code: int | None, body: str) -> bool:
    """Whether an HTTP error is a refusal of the response_format itself (see the module
    docstring), not a transient failure."""
    lowered = body.lower()
    return status_code in FORMAT_REFUSAL_STATUSES and any(word in lowered for word in FORMAT_REFUSAL_WORDS)


def _response_text(response) -> str:
    try:
        response.read()  # already read for a non-streamed call; a no-op then
        return response.text
    except Exception:  # noqa: BLE001 - an unreadable body is simply not a refusal
        return ""


def _refuses_format(exc: Exception) -> bool:
    if not isinstance(exc, openai.APIStatusError):
        return False
    return is_format_refusal(exc.status_code, f"{exc.message} {_response_text(exc.response)}")


class _OpenAI(openai.OpenAI):
    """openai.OpenAI that does not retry a format refusal (llama.cpp answers one with a
    500, which the package would otherwise retry, with backoff, as a server error).
    `_should_retry` is the package's own retry decision; should a later version stop
    consulting it, refusals are merely retried before they are recognised."""

    def _should_retry(self, response) -> bool:
        if is_format_refusal(response.status_code, _response_text(response)):
            return False
        return super()._should_retry(response)


class ReasonerClient:
    def __init__(self, settings: Settings):
        if not settings.llm_base_url:
            raise ReasonerUnavailable("AGR_LLM_BASE_URL is not set")
        self.settings = settings
        self.format = settings.llm_response_format  # "auto" until learned; then fixed
        self._format_lock = threading.Lock()
        self._client = _OpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key.get_secret_value(),
            timeout=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )

    def complete_json(self, messages: list[dict], schema: dict, name: str,
                      temperature: float | None = None) -> Completion:
        """`temperature`: this call's (a sampled answer), else AGR_LLM_TEMPERATURE."""
        fmt = self.format
        if fmt != "auto":
            return self._create(messages, _response_format(fmt, schema, name), temperature)
        try:
            completion = self._create(messages, _response_format("json_schema", schema, name), temperature)
        except openai.APIStatusError as exc:
            if not _refuses_format(exc) or self.format == "json_schema":
                # Not a refusal of the form; or another call has meanwhile found the form
                # taken, so this refusal is about this request (its schema, say).
                raise
            log.info("reasoner refused json_schema (%s: %s); trying json_object + schema",
                     exc.status_code, exc.message)
            return self._confirm_json_object(messages, schema, name, temperature)
        self._learn("json_schema")
        return completion

    def _confirm_json_object(self, messages, schema, name, temperature) -> Completion:
        completion = self._create(messages, _response_format("json_object", schema, name), temperature)
        self._learn("json_object")
        return completion

    def _learn(self, fmt: str) -> None:
        with self._format_lock:
            if self.format == "auto":
                self.format = fmt
                log.info("reasoner structured output: using the %s form for this process", fmt)

    def _create(self, messages, response_format, temperature: float | None = None) -> Completion:
        extra = {"response_format": response_format} if response_format else {}
        started = time.perf_counter()
        try:
            response = self._client.chat.completions.create(
                model=self.settings.llm_model,
                messages=messages,
                temperature=self.settings.llm_temperature if temperature is None else temperature,
                max_tokens=self.settings.llm_max_tokens,
                **extra,
            )
        except (
            openai.APIConnectionError,
            openai.APITimeoutError,
            openai.RateLimitError,
            openai.InternalServerError,
        ) as exc:
            if _refuses_format(exc):
                raise  # not the reasoner being down: the caller decides about the form
            raise ReasonerUnavailable(
                f"reasoner at {self.settings.llm_base_url} unavailable after "
                f"{self._client.max_retries} retries: {type(exc).__name__}: {exc}"
            ) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        usage = response.usage
        return Completion(
            text=response.choices[0].message.content or "",
            model=response.model or self.settings.llm_model,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_ms=latency_ms,
        )


def _response_format(fmt: str, schema: dict, name: str) -> dict | None:
    if fmt == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    if fmt == "json_object":
        return {"type": "json_object", "schema": schema}
    return None  # "none"


@lru_cache(maxsize=1)
def reasoner_client() -> ReasonerClient:
    """One client per process (keeps its HTTP connection pool and learned format)."""
    return ReasonerClient(get_settings())
