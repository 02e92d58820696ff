"""A chat completion request (the OpenAI shape) read as one question about one clip.

The audio is one content part of a user message, in any position:
`{"type": "input_audio", "input_audio": {"data": <base64>, "format": "wav"}}` (OpenAI,
lmms-eval, UltraEval-Audio, VoiceBench), `{"type": "audio_url", "audio_url": {"url":
"data:audio/wav;base64,..."}}` (vLLM), or `{"type": "file", "file": {"file_id": <upload
id>}}` for audio uploaded with POST /v1/audio. An http(s) URL is fetched only under an
operator's allow-list (AGR_AUDIO_URL_ALLOWLIST). The user messages' text is the question,
its choices read out of it (api/intake/prompt_choices.py); system messages are kept as context.

Sampling fields (`temperature`, `top_p`, `max_tokens`, `seed`, ...) are accepted and do not
change the job: the pipeline's own settings decide how its agents sample. What cannot be
honoured (an audio reply, n > 1) is refused, not ignored.
"""

import base64
import binascii
import re
from dataclasses import dataclass
from uuid import UUID

import httpx

from api.intake import item_limits
from api.intake.audio_refs import InlineAudio, RemoteAudio, UploadRef
from api.intake.prompt_choices import parse_prompt
from api.openai_errors import OpenAIError
from core.settings import get_settings
from workers.method.pipelines import PIPELINES, Pipeline

# What the stored copy is named by, and read with (soundfile, else ffmpeg: workers/method/perception/audio_io.py).
AUDIO_FORMATS = {"wav": "wav", "wave": "wav", "x-wav": "wav", "mp3": "mp3", "mpeg": "mp3", "flac": "flac",
                 "x-flac": "flac", "ogg": "ogg", "opus": "opus", "webm": "webm", "m4a": "m4a", "mp4": "m4a",
                 "aac": "aac", "aiff": "aiff", "x-aiff": "aiff"}
OPEN_QUESTION = "Answer what is asked in the audio, or describe what is heard."
MAX_TEXT_CHARS = 2 * item_limits.MAX_QUESTION_CHARS  # a question, its choices and an instruction
MAX_ITERS_FIELD = "max_iters"  # our extension: refinement rounds for this question
ANSWER_SAMPLES_FIELD = "answer_samples"  # our extension: answers sampled and voted on
_DATA_URL = re.compile(r"^data:audio/([\w.+-]+)(?:;[\w=.-]+)*;base64,", re.IGNORECASE)


ChatAudio = InlineAudio | RemoteAudio | UploadRef


@dataclass(frozen=True)
class ChatQuestion:
    model: str  # as the client named it
    pipeline: str
    audio: ChatAudio
    question: str
    choices: list[str]
    context: str  # the system messages and any instruction after the choices
    max_iters: int | None
    answer_samples: int | None  # our extension: self-consistency (workers/method/reasoning/vote.py)
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with the usage

    def item_options(self) -> dict:
        """The job's own options: its pipeline, and the rounds and samples it asked for."""
        asked = {"pipeline": self.pipeline, "max_iters": self.max_iters, "answer_samples": self.answer_samples}
        return {name: value for name, value in asked.items() if value is not None}

    def item_metadata(self) -> dict:
        """What the job keeps of the request besides its question: the model it named, and
        the context (system messages, the instruction after the choices)."""
        return {"model": self.model} | ({"context": self.context[:4000]} if self.context else {})


def invalid(message: str, param: str | None = None, code: str = "invalid_request", status: int = 400):
    return OpenAIError(status, message, code=code, param=param)


def read_chat_request(body) -> ChatQuestion:
    """The question the body asks, or OpenAIError (400, 404 for an unknown model)."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("you must provide a model parameter", "model", "missing_required_parameter")
    pipeline = pipeline_of(model)
    if Pipeline(pipeline).why_unavailable():
        raise invalid("the direct model needs an audio-language model (AGR_ALM_MODEL) on this service", "model")
    _refuse_what_cannot_be_honoured(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages must be a non-empty list", "messages")
    texts, context, audio = _read_messages(messages)
    text = "\n".join(texts)
    if len(text) > MAX_TEXT_CHARS:  # also keeps the prompt's parsing short
        raise invalid(f"the user text is longer than {MAX_TEXT_CHARS} characters", "messages")
    prompt = parse_prompt(text) if texts else None
    # No text (VoiceBench sends a system prompt and the clip): the question is spoken in the clip.
    question = prompt.question if prompt and prompt.question else OPEN_QUESTION
    if prompt and prompt.instruction:
        context.append(prompt.instruction)
    try:
        question, choices = item_limits.question(question), item_limits.choices(prompt.choices if prompt else [])
    except ValueError as exc:
        raise invalid(str(exc), "messages") from None
    stream_options = body.get("stream_options") or {}
    return ChatQuestion(model, pipeline, audio, question, choices, "\n".join(context),
                        _bounded(body.get(MAX_ITERS_FIELD), MAX_ITERS_FIELD, 0, 10),
                        _bounded(body.get(ANSWER_SAMPLES_FIELD), ANSWER_SAMPLES_FIELD, 1, 15), body.get("stream") is True,
                        isinstance(stream_options, dict) and stream_options.get("include_usage") is True)


def pipeline_of(model: str) -> str:
    """The pipeline a model name runs; 404 `model_not_found` as OpenAI answers otherwise."""

    if model in PIPELINES:
        return model
    alias = get_settings().model_aliases.get(model)
    if alias is None:
        raise OpenAIError(404, f"The model `{model}` does not exist; GET /v1/models lists those served here",
                          code="model_not_found", param="model")
    return alias


def _refuse_what_cannot_be_honoured(body: dict) -> None:
    if body.get("n") not in (None, 1):
        raise invalid("n must be 1: one answer per question is made", "n")
    modalities = body.get("modalities")
    if modalities is not None and (not isinstance(modalities, list) or any(m != "text" for m in modalities)):
        raise invalid('only text replies are made: modalities must be ["text"]', "modalities")


def _read_messages(messages: list) -> tuple[list[str], list[str], ChatAudio]:
    texts: list[str] = []
    context: list[str] = []
    audio: list[ChatAudio] = []
    for at, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant"):
            raise invalid("each message is an object with a role: system, developer, user or assistant",
                          f"messages[{at}]")
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise invalid("content must be a string or a list of content parts", f"messages[{at}].content")
        for index, part in enumerate(parts):
            where = f"messages[{at}].content[{index}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                _check_storable(part["text"], f"{where}.text")
                # The user's text is the question; system messages and earlier replies are context.
                (texts if message["role"] == "user" else context).append(part["text"])
            elif kind in ("input_audio", "audio_url", "file") and message["role"] == "user":
                audio.append(_audio_part(part, kind, where))
            else:
                raise invalid("a content part is text, or (in a user message) input_audio, audio_url or "
                              "file", where)
    if not audio:
        raise invalid("no audio: a user message needs an input_audio, audio_url or file part", "messages",
                      "missing_audio")
    if len(audio) > 1:
        raise invalid(f"{len(audio)} audio parts: one clip per question", "messages", "too_many_audio_parts")
    return [t for t in texts if t.strip()], [c for c in context if c.strip()], audio[0]


def _check_storable(text: str, where: str) -> None:
    # Postgres stores no NUL in text, and no lone surrogate (not Unicode): refused here, not a 500.
    if "\x00" in text:
        raise invalid("text must not contain a NUL character (\\u0000)", where)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid("text contains a lone surrogate (\\ud800-\\udfff), which is not Unicode text", where) from None


def _audio_part(part: dict, kind: str, where: str) -> ChatAudio:
    value = part.get(kind)
    if not isinstance(value, dict):
        raise invalid(f"{kind} must be an object", where)
    if kind == "input_audio":
        return _inline(value.get("data"), value.get("format"), f"{where}.input_audio")
    if kind == "file":
        try:
            return UploadRef(UUID(str(value.get("file_id"))))
        except ValueError:
            raise invalid("file.file_id must be the id of audio uploaded with POST /v1/audio", where) from None
    url = value.get("url")
    if not isinstance(url, str):
        raise invalid("audio_url.url must be a string", f"{where}.audio_url.url")
    if (data_url := _DATA_URL.match(url)) is not None:
        return _inline(url[data_url.end():], data_url.group(1), f"{where}.audio_url.url")
    if url.lower().startswith(("http://", "https://")):
        return _remote(url, f"{where}.audio_url.url")
    raise invalid("audio_url.url must be a data:audio/...;base64, URL (or an allowed http(s) URL)",
                  f"{where}.audio_url.url", "invalid_audio_url")


def _inline(data, fmt, where: str) -> InlineAudio:
    if not isinstance(fmt, str) or fmt.lower() not in AUDIO_FORMATS:
        raise invalid(f"unsupported audio format {fmt!r}; use one of {', '.join(sorted(set(AUDIO_FORMATS.values())))}",
                      f"{where}.format", "unsupported_audio_format")
    if not isinstance(data, str) or not data:
        raise invalid("audio data must be a non-empty base64 string", f"{where}.data", "invalid_audio_data")
    audio = InlineAudio(data, AUDIO_FORMATS[fmt.lower()])
    limit = get_settings().max_audio_bytes
    if audio.decoded_size() > limit + 2:
        raise invalid(f"audio of about {audio.decoded_size()} bytes is over the limit of {limit} bytes "
                      "(AGR_MAX_AUDIO_BYTES)", f"{where}.data", "audio_too_large", status=413)
    return audio


def decode_inline(audio: InlineAudio) -> bytes:
    """The audio's bytes; OpenAIError 400 when the data is not base64."""
    try:
        return base64.b64decode(audio.data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("audio data is not valid base64", "input_audio.data", "invalid_audio_data") from None


def _remote(url: str, where: str) -> RemoteAudio:
    if not allowed_url(url, get_settings().audio_url_allowlist):
        raise invalid("remote audio URLs are not fetched: send the audio inline (input_audio, or a data: URL), "
                      "or upload it (POST /v1/audio) and name it as a file part; an operator may allow URL "
                      "prefixes with AGR_AUDIO_URL_ALLOWLIST", where, "remote_url_not_allowed")
    return RemoteAudio(url)


# Spelt in a path, these let a server walk out of the allowed folder (%2e%2e, %2f, %5c).
_ESCAPES = re.compile(r"%2e|%2f|%5c", re.IGNORECASE)


def allowed_url(url: str, prefixes: list[str]) -> bool:
    """Whether `url` lies inside one of the allowed folders: the same scheme, host and port,
    its path under the prefix's path, and nothing that could make the fetched resource
    another one (user info, a fragment, a backslash, '.' or '..' segments, escaped dots
    or slashes)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    raw_path = parsed.raw_path.decode("ascii", "replace").split("?", 1)[0]
    if parsed.userinfo or parsed.fragment or "#" in url or "\\" in url or _ESCAPES.search(raw_path):
        return False
    if any(segment in (".", "..") for segment in raw_path.split("/")):
        return False
    for prefix in prefixes:
        allowed = httpx.URL(prefix)
        if (parsed.scheme, parsed.host, parsed.port) == (allowed.scheme, allowed.host, allowed.port) and \
                raw_path.startswith(allowed.raw_path.decode("ascii", "replace")):
            return True
    return False


def _bounded(value, name: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise invalid(f"{name} must be an integer from {low} to {high}", name)
    return value
