"""numba's on-disk cache in a persistent folder, so librosa's JIT compile is paid once per machine.

Without NUMBA_CACHE_DIR numba writes its cache beside librosa's own sources, which is lost
whenever the virtualenv or image is rebuilt and cannot be written at all in a read-only
install, so every new worker process compiles again. numba reads the variable once, when it
is first imported: this must run before anything imports librosa, which is why
workers/perception/__init__.py calls it.
"""

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def use_persistent_numba_cache() -> Path:
    """Point NUMBA_CACHE_DIR at AGR_NUMBA_CACHE_DIR, else <data_dir>/numba-cache, and create it.

    An explicit NUMBA_CACHE_DIR in the environment wins, so an operator can share one
    folder between installs.
    """
    if not os.environ.get("NUMBA_CACHE_DIR"):  # numba treats an empty value as unset too
        from core.settings import get_settings

        settings = get_settings()
        folder = settings.numba_cache_dir or Path(settings.data_dir) / "numba-cache"
        # Absolute: a worker that changes directory later must still find the same cache.
        os.environ["NUMBA_CACHE_DIR"] = str(Path(folder).resolve())
    folder = Path(os.environ["NUMBA_CACHE_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    if "numba" in sys.modules:
        log.warning("numba was imported before its cache folder was set; it may not use %s", folder)
    return folder
