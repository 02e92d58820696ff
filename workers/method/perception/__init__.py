"""Perception: what the agents learn about a clip. Audio decoded into one form (audio_io),
the tools the agents may call (tools/: one module, or one package with a light spec and a
heavy backend, per tool), the audio-language models behind several tools (alm/), the models a
worker holds once loaded (loaded_models), a round's calls run and reused (executor), and the
evidence document they make (evidence, trust, agreement, catalogue)."""

from core.numba_cache import use_persistent_numba_cache

# Before any tool module imports librosa: numba reads its cache folder once, at import.
use_persistent_numba_cache()
