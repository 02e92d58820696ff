"""numba's on-disk cache in a persistent folder, so librosa's JIT compile is paid once per machine.

Without NUMBA_CACHE_DIR numba writes its cache beside librosa's own sources, which is lost
whenever the virtualenv or image is rebuilt and cannot be written at all in a read-only
install, so every new worker process compiles again. numba reads the variable once, when it
is first imported: this must run before anything imports librosa, which is why
workers/method/perception/__init__.py calls it.
"""

import fcntl
import importlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.settings import get_settings

log = logging.getLogger(__name__)


def use_persistent_numba_cache() -> Path:
    """Point NUMBA_CACHE_DIR at AGR_NUMBA_CACHE_DIR, else <data_dir>/numba-cache, and create it.

    An explicit NUMBA_CACHE_DIR in the environment wins, so an operator can share one
    folder between installs.
    """
    if not os.environ.get("NUMBA_CACHE_DIR"):  # numba treats an empty value as unset too

        settings = get_settings()
        folder = settings.numba_cache_dir or Path(settings.data_dir) / "numba-cache"
        # Absolute: a worker that changes directory later must still find the same cache.
        os.environ["NUMBA_CACHE_DIR"] = str(Path(folder).resolve())
    folder = Path(os.environ["NUMBA_CACHE_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    if "numba" in sys.modules:
        log.warning("numba was imported before its cache folder was set; it may not use %s", folder)
    return folder


@contextmanager
def compiling_alone() -> Iterator[None]:
    """Hold the cache folder's lock: while it is held no other process of ours compiles into it.

    numba's on-disk cache is not safe when two processes compile and write the same function
    at once: a guvectorize'd function (librosa's onset peak picker is one) is cached in two
    files written one after the other, and a process that loads one from each writer
    segfaults, on that call and on every later one (numba issue #10128, open). Two perception
    workers on one machine share the folder, and so do the tests running side by side; seen
    here as a segfault in librosa.util.peak_pick. Code whose first run compiles runs it once
    per process under this lock (librosa_compiled, music.compile_once); later runs load
    what the first wrote, and need no lock."""
    folder = Path(os.environ.get("NUMBA_CACHE_DIR") or use_persistent_numba_cache())
    with (folder / ".compile.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# librosa's modules that compile (and write the cache) as they are imported: guvectorize and
# vectorize with their signatures given (peak_pick, localmax, ...) compile at decoration.
# librosa loads its submodules lazily, so the first librosa call, whichever, imports these.
LIBROSA_COMPILED_AT_IMPORT = ("librosa.util.utils", "librosa.beat", "librosa.onset", "librosa.sequence",
                              "librosa.feature", "librosa.effects", "librosa.core.pitch")
_librosa_ready = threading.Event()
_librosa_loading = threading.Lock()


def librosa_compiled():
    """librosa, its compiled-at-import functions compiled (or loaded from the cache) by this
    process alone: every module of ours that calls librosa takes it from here."""
    with _librosa_loading:
        if not _librosa_ready.is_set():
            with compiling_alone():
                for name in LIBROSA_COMPILED_AT_IMPORT:
                    importlib.import_module(name)
            _librosa_ready.set()
    return importlib.import_module("librosa")
