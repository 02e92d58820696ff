"""The service's own audio store: each object is the bytes of one audio file, named by the
sha256 of those bytes, written only by the service (at upload or submit) and never
changed afterwards.

Nothing downstream of submission opens a tenant's path again: jobs, decoding, the
perception cache and downloads all read the stored object, so what was analysed is what
was submitted, whatever happens to the tenant's files later. Which tenant may read an
object is the database's business (models/audio.py), not the store's.

Two back-ends share this small interface: a local directory (the embedded default) and an
S3-compatible object store (storage/s3_audio_store.py), chosen by `AGR_AUDIO_STORE_URL`
(storage/factory.py).
"""

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from core.settings import get_settings

DIGEST = re.compile(r"^[0-9a-f]{64}$")


class ObjectMissing(FileNotFoundError):
    """No object with this digest in the store (deleted by retention, or never stored)."""


class AudioStore(ABC):
    """Content-addressed objects; every method takes the object's sha256 hex digest."""

    @abstractmethod
    def put(self, digest: str, staged: Path) -> None:
        """Store the staged file's bytes (whose sha256 is `digest`) as the object; the staged
        file is consumed. A no-op when the object exists: same name, same bytes."""

    @abstractmethod
    def exists(self, digest: str) -> bool: ...

    @abstractmethod
    def local_file(self, digest: str) -> Path:
        """A file on this machine holding the object's bytes, for decoders that want a path
        (the object itself in a local store; a verified cached copy of a remote one)."""

    @abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """The object's bytes as a readable stream (downloads)."""

    @abstractmethod
    def delete(self, digest: str) -> None:
        """Remove the object (nothing happens when it is already gone)."""

    @abstractmethod
    def digests(self) -> Iterator[tuple[str, datetime]]:
        """Every stored object's digest and when it was stored (for collecting orphans)."""

    def staging_dir(self) -> Path:
        """Where files are hashed on their way in: local to this machine."""
        return _made(get_settings().data_dir / "audio-staging")


def checked(digest: str) -> str:
    """The digest, refused unless it is one: a digest becomes a file or key name."""
    if not DIGEST.match(digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return digest


class LocalAudioStore(AudioStore):
    """Objects as files `<root>/<2 hex>/<digest>`, made read-only, in a folder the service owns."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, digest: str) -> Path:
        digest = checked(digest)
        return self.root / digest[:2] / digest

    def put(self, digest: str, staged: Path) -> None:
        target = self._path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            staged.unlink(missing_ok=True)
            return
        staged.chmod(0o444)
        os.replace(staged, target)  # atomic: readers see the whole object or none

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def local_file(self, digest: str) -> Path:
        path = self._path(digest)
        if not path.is_file():
            raise ObjectMissing(f"audio object {digest} is not in the store")
        return path

    def open(self, digest: str) -> BinaryIO:
        try:
            return self._path(digest).open("rb")
        except FileNotFoundError:
            raise ObjectMissing(f"audio object {digest} is not in the store") from None

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[tuple[str, datetime]]:
        for path in self.root.glob("[0-9a-f][0-9a-f]/*"):
            if DIGEST.match(path.name):
                try:
                    yield path.name, datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
                except FileNotFoundError:  # deleted as it was listed
                    continue

    def staging_dir(self) -> Path:
        return _made(self.root / ".staging")  # inside the root: putting a file is a rename


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
