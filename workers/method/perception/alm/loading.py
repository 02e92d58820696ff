"""The one factory that loads any audio-language model: a checkpoint of a known family
(families.py), or a model behind a serving engine (engine.py).
"""

from core.alm_endpoint import is_endpoint, parse_endpoint
from workers.method.perception.alm.base import AudioLanguageModel, GenerationSettings, read_model_config
from workers.method.perception.alm.engine import EngineAudioLanguageModel
from workers.method.perception.alm.families import FAMILIES, choose_family


def load_audio_language_model(
    path: str, device: str = "auto", generation: GenerationSettings | None = None, family: str = "auto"
) -> AudioLanguageModel | EngineAudioLanguageModel:
    """Load the checkpoint at `path` (a directory or hub id) as its family's model, on `device`
    ("auto": CUDA when available) in bf16 on CUDA and float32 on CPU.

    `path` may instead name a serving engine (core/alm_endpoint.py): the model is then asked
    over HTTP (workers/method/perception/alm/engine.py) and nothing is loaded here.

    Raises RuntimeError("could not load audio-language model '<path>': <reason>") for anything
    that does not load.
    """
    if is_endpoint(path):
        return EngineAudioLanguageModel(parse_endpoint(path), family, generation or GenerationSettings())
    try:
        config = read_model_config(path)
        family = choose_family(path, config, family)
    except Exception as exc:  # OSError (no config), ValueError (unknown family): not a usable model
        raise RuntimeError(f"could not load audio-language model {path!r}: {exc}") from exc
    return FAMILIES[family].load(path, device=device, generation=generation, config=config)
