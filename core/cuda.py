"""Whether this process sees an NVIDIA GPU, without loading torch: the settings, the API and
the CLI ask it too (where transcription runs, whether the GPU worker loads a model)."""

import ctypes
import os
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def cuda_visible() -> bool:
    """Whether this process sees an NVIDIA GPU, asked of the driver's NVML: no torch or
    CTranslate2 is loaded (the API and the CLI must stay slim) and no CUDA context is made
    before a worker forks. A process that has imported torch asks torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    torch = sys.modules.get("torch")
    if torch is not None:
        return bool(torch.cuda.is_available())
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False  # no NVIDIA driver here
    if nvml.nvmlInit_v2() != 0:
        return False
    try:
        count = ctypes.c_uint(0)
        return nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0 and count.value > 0
    finally:
        nvml.nvmlShutdown()
