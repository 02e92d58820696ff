"""The reasoner endpoint: any OpenAI-compatible server, through the `openai` package.

Structured output is asked for in the standard `json_schema` form first. llama.cpp's
server rejects that form (HTTP 500) but accepts its own `json_object` + `schema`
extension, so on the first such refusal the client switches form for the rest of the
process. The `openai` package itself retries timeouts, 429 and 5xx with backoff.
"""

import logging
import time
from dataclasses import dataclass
from functools import lru_cache

import openai

from core.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float


class ReasonerUnavailable(RuntimeError):
    """The reasoner could not be reached or kept failing after retries."""


class ReasonerClient:
    def __init__(self, settings: Settings):
        if not settings.llm_base_url:
            raise ReasonerUnavailable("AGR_LLM_BASE_URL is not set")
        self.settings = settings
        self.format = settings.llm_response_format
        self._client = openai.OpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key.get_secret_value(),
            timeout=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )

    def complete_json(self, messages: list[dict], schema: dict, name: str) -> Completion:
        if self.format == "auto":
            try:
                completion = self._create(messages, _json_schema_format(schema, name), retries=0)
                self.format = "json_schema"
                return completion
            except (openai.InternalServerError, openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                log.info("reasoner refused json_schema (%s); using json_object + schema", exc.status_code)
                self.format = "json_object"
        response_format = {
            "json_schema": _json_schema_format(schema, name),
            "json_object": {"type": "json_object", "schema": schema},
            "none": None,
        }[self.format]
        return self._create(messages, response_format)

    def _create(self, messages, response_format, retries: int | None = None) -> Completion:
        client = self._client if retries is None else self._client.with_options(max_retries=retries)
        extra = {"response_format": response_format} if response_format else {}
        started = time.perf_counter()
        try:
            response = client.chat.completions.create(
                model=self.settings.llm_model,
                messages=messages,
                temperature=self.settings.llm_temperature,
                max_tokens=self.settings.llm_max_tokens,
                **extra,
            )
        except (
            openai.APIConnectionError,
            openai.APITimeoutError,
            openai.RateLimitError,
            openai.InternalServerError,
        ) as exc:
            if retries == 0 and isinstance(exc, openai.InternalServerError):
                raise  # the format probe: llama.cpp refuses json_schema with a 500
            raise ReasonerUnavailable(
                f"reasoner at {self.settings.llm_base_url} unavailable after "
                f"{client.max_retries} retries: {type(exc).__name__}: {exc}"
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


def _json_schema_format(schema: dict, name: str) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


@lru_cache(maxsize=1)
def reasoner_client() -> ReasonerClient:
    """One client per process (keeps its HTTP connection pool and learned format)."""
    return ReasonerClient(get_settings())
