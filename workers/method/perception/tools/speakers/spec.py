"""What the speakers tool's model is, readable without loading it: its name (part of the
result-cache key) and whether its package is installed."""

import importlib.util

# Kept equal to the backend's window and threshold (a test checks).
MODEL_NAME = "resemblyzer-0.1.4 (1.5 s windows, cosine threshold 0.35)"


def installed() -> bool:
    return importlib.util.find_spec("resemblyzer") is not None
