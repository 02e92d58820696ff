"""Perception: model backends and the tools the agents call (see tools/)."""

from core.numba_cache import use_persistent_numba_cache

# Before any tool module imports librosa: numba reads its cache folder once, at import.
use_persistent_numba_cache()
