"""An audio-language model named by its serving endpoint instead of a checkpoint path.

Where AGR_ALMS or AGR_ALM_MODEL take a path, they also take

    openai+http://gpu-1:8000/v1#Qwen/Qwen2-Audio-7B-Instruct

the base URL of an OpenAI-compatible server (vLLM, SGLang, `transformers serve`) after
`openai+`, and after `#` the model name it serves (what `GET /v1/models` lists). The
server's API key, if it wants one, comes from AGR_ALM_API_KEY, never from the spec.
Kept free of torch: the settings check a spec at start-up.
"""

import re
from dataclasses import dataclass

PREFIX = "openai+"
_SPEC = re.compile(r"^openai\+(https?://[^\s#@]+)#(\S+)$")


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # up to and including /v1
    model: str  # the served model's name

    @property
    def spec(self) -> str:
        return f"{PREFIX}{self.base_url}#{self.model}"


def is_endpoint(path: str) -> bool:
    return path.startswith(PREFIX)


def parse_endpoint(path: str) -> Endpoint:
    """The endpoint a spec names; ValueError saying the expected form when it is malformed."""
    found = _SPEC.match(path.strip())
    if not found:
        raise ValueError(f"{path!r} is not an engine endpoint: write openai+http(s)://host:port/v1#served-model-name "
                         "(credentials go in AGR_ALM_API_KEY, not in the URL)")
    return Endpoint(found.group(1).rstrip("/"), found.group(2))
