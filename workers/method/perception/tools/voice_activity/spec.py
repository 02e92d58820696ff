"""The voice-activity model's name (part of the result-cache key), readable without loading it."""

MODEL_NAME = "silero-vad-6.2.3 (onnx)"
