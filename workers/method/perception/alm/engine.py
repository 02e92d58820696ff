"""An audio-language model served by an engine behind the OpenAI chat API (vLLM, SGLang,
`transformers serve`), offered with the interface of the in-process families.

Named by an endpoint spec (core/alm_endpoint.py) where a checkpoint path would go. Its
family still decides what the in-process family decides: the system prompt, where the
audio goes in the user turn, and how a reply is read (Audio-Reasoner's structured
<THINK>...<RESPONSE> output), so one model answers the same whether it runs in a worker or
behind an engine. With the family "auto", a served name that says Audio-Reasoner is read
as one, any other as Qwen2-Audio (plain replies, no system prompt).

Each prompt is one chat-completions request carrying its clip as an `input_audio` part
(16 kHz WAV, base64), the shape vLLM documents for audio input. A generate_batch sends its
prompts at once, at most AGR_ALM_ENGINE_MAX_IN_FLIGHT per engine from this process: the
engine batches requests as they come (continuous batching) rather than us padding them.
"""

import base64
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from core.alm_endpoint import Endpoint, is_endpoint, parse_endpoint
from core.settings import get_settings
from workers.method.perception.alm.audio_reasoner import AudioReasonerModel
from workers.method.perception.alm.base import AudioPrompts, GenerationSettings
from workers.method.perception.alm.families import FAMILIES
from workers.method.perception.alm.qwen2_audio import Qwen2AudioModel
from workers.method.perception.audio_io import wav_bytes

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # what the served audio encoders take; the server resamples anything else
_AUDIO_REASONER_NAME = re.compile(r"audio[-_ ]?reasoner", re.IGNORECASE)
# The requests this process has in flight to each engine (by base URL): one pool of
# AGR_ALM_ENGINE_MAX_IN_FLIGHT threads per engine bounds both the requests and the threads.
_senders: dict[str, ThreadPoolExecutor] = {}
_senders_lock = threading.Lock()
OUTAGE_FIRST_WAIT_S, OUTAGE_MAX_WAIT_S = 0.5, 10.0


class EngineUnavailable(RuntimeError):
    """The engine refused a request, failed it, or could not be reached."""


class EngineAudioLanguageModel(AudioPrompts):
    def __init__(self, endpoint: Endpoint, family: str, generation: GenerationSettings):
        self.endpoint = endpoint
        self.family = _family_of(endpoint, family)
        self.behaves_as = FAMILIES[self.family]  # prompts and reply reading, not weights
        self.name = endpoint.spec
        self.sampling_rate = SAMPLE_RATE
        self.device = "engine"
        self.generation = generation
        self._client = _client(endpoint)

    def window_seconds(self) -> float:
        return get_settings().alm_engine_window_s

    def prompts_at_once(self) -> int:
        # All of them: the engine batches requests as they come; _sender bounds the flight.
        return get_settings().alm_engine_max_in_flight

    def generate_batch(self, waveforms: list, prompts: list[str],
                       temperature: float | None = None) -> list[str | EngineUnavailable]:
        """Each prompt's evidence, or in its place the EngineUnavailable that failed it alone
        (its batch-mates' replies stand)."""
        return [text if isinstance(text, Exception) else self.behaves_as.evidence(text)
                for text in self.generate_raw(waveforms, prompts, temperature)]

    def generate_raw(self, waveforms: list, prompts: list[str],
                     temperature: float | None = None) -> list[str | EngineUnavailable]:
        if len(waveforms) != len(prompts):
            raise ValueError(f"{len(waveforms)} waveforms but {len(prompts)} prompts")
        decoding = self._decoding(temperature)

        def ask(waveform, prompt) -> str | EngineUnavailable:
            try:
                return self._ask(waveform, prompt, decoding)
            except EngineUnavailable as exc:
                return exc

        sender = _sender(self.endpoint)
        return [f.result() for f in [sender.submit(ask, w, p) for w, p in zip(waveforms, prompts, strict=True)]]

    def _decoding(self, temperature: float | None) -> dict:
        g = self.generation
        if temperature is not None and temperature > 0:
            return {"temperature": temperature, "top_p": g.top_p}
        if g.do_sample:
            return {"temperature": g.temperature, "top_p": g.top_p}
        return {"temperature": 0.0}  # greedy, as the in-process default

    def _ask(self, waveform, prompt: str, decoding: dict) -> str:
        import openai

        audio = {"type": "input_audio", "input_audio": {"data": _wav_base64(waveform), "format": "wav"}}
        text = {"type": "text", "text": prompt}
        messages = [{"role": "user", "content": [audio, text] if self.behaves_as.audio_before_text else [text, audio]}]
        if self.behaves_as.system_prompt:
            messages.insert(0, {"role": "system", "content": self.behaves_as.system_prompt})
        try:
            reply = _through_outage(self.endpoint, lambda: self._client.chat.completions.create(
                model=self.endpoint.model, messages=messages, max_tokens=self.generation.max_new_tokens, **decoding))
        except openai.APIStatusError as exc:
            raise EngineUnavailable(f"{self.name} answered {exc.status_code}: {_said(exc)}") from exc
        except openai.APIError as exc:  # unreachable past the tolerance, timed out
            raise EngineUnavailable(f"{self.name} could not be asked: {exc}") from exc
        if not reply.choices:
            raise EngineUnavailable(f"{self.name} answered with no choices")
        return (reply.choices[0].message.content or "").strip()


def _through_outage(endpoint: Endpoint, ask):
    """`ask()`, asked again with backoff while the engine cannot be reached (connection
    refused or dropped: a restart) or says 503 (loading), for up to
    AGR_ALM_ENGINE_OUTAGE_TOLERANCE_S, the steps' leases renewed meanwhile by their batch. A
    timeout is not waited out: the engine is up, slow."""
    import openai

    deadline, wait = time.monotonic() + get_settings().alm_engine_outage_tolerance_s, OUTAGE_FIRST_WAIT_S
    while True:
        try:
            return ask()
        except (openai.APIConnectionError, openai.InternalServerError) as exc:
            down = not isinstance(exc, openai.APITimeoutError) and getattr(exc, "status_code", 503) == 503
            if not down or time.monotonic() + wait > deadline:
                raise
            log.warning("ALM engine %s unreachable (%s); asking again in %.1f s", endpoint.base_url, exc, wait)
        time.sleep(wait)
        wait = min(wait * 2, OUTAGE_MAX_WAIT_S)


def _family_of(endpoint: Endpoint, family: str) -> str:
    if family != "auto":
        return family
    return AudioReasonerModel.family if _AUDIO_REASONER_NAME.search(endpoint.model) else Qwen2AudioModel.family


def _client(endpoint: Endpoint):
    import openai

    settings = get_settings()
    # Retries are the step's (its attempts are audited); the client's own would hide them.
    return openai.OpenAI(base_url=endpoint.base_url, api_key=settings.alm_api_key.get_secret_value(),
                         timeout=settings.alm_engine_timeout_s, max_retries=0)


def _sender(endpoint: Endpoint) -> ThreadPoolExecutor:
    with _senders_lock:
        if endpoint.base_url not in _senders:
            _senders[endpoint.base_url] = ThreadPoolExecutor(get_settings().alm_engine_max_in_flight,
                                                             thread_name_prefix="alm-engine")
        return _senders[endpoint.base_url]


def _wav_base64(waveform) -> str:
    return base64.b64encode(wav_bytes(waveform, SAMPLE_RATE)).decode("ascii")


def _said(exc) -> str:
    body = exc.body
    if isinstance(body, dict):
        body = body.get("message") or body.get("error") or body
    return str(body or exc.message)[:300]


def misconfigured_endpoints() -> list[str]:
    """What is wrong with the configured engine endpoints, as far as their servers tell: one
    line per model that its server answers without listing. An engine that does not answer
    is not refused here (it may be starting); each call then fails its attempt with why."""
    import openai

    problems = []
    for _, path in get_settings().alm_specs:
        if not is_endpoint(path):
            continue
        endpoint = parse_endpoint(path)
        try:
            with _client(endpoint) as client:
                served = [m.id for m in client.with_options(timeout=10).models.list()]
        except openai.APIError as exc:
            log.warning("ALM engine %s does not answer yet (%s): its calls fail until it does", endpoint.base_url, exc)
            continue
        if endpoint.model not in served:
            problems.append(f"AGR_ALMS / AGR_ALM_MODEL name model {endpoint.model!r} at {endpoint.base_url}, "
                            f"which serves {served}")
    return problems
