"""Opening a file inside a folder without following any symbolic link below the folder.

Checking a resolved path and opening it later leaves a window in which a tenant can swap
a directory for a link to /etc. Here every component is opened relative to the one
before it with O_NOFOLLOW, and the final descriptor is checked to be a regular file, so
what is read is what lies under the root at the moment of opening. (A hard link inside
the root to a file elsewhere is not a path trick and is not caught: roots must live on
file systems the tenant cannot hard-link service files into.)
"""

import errno
import os
import stat
from pathlib import Path, PurePosixPath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted in the root must not hang the request.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class NotBeneath(ValueError):
    """The name does not lead to a regular file inside the root without a link."""


def open_beneath(root: Path, relative: str) -> int:
    """A read-only descriptor of `root/relative`; NotBeneath says why there is none."""
    parts = _parts(relative)
    folder = _walk(root, parts[:-1], relative)
    try:
        fd = _open_at(parts[-1], folder, _FILE_FLAGS, relative)
    finally:
        os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotBeneath(f"{relative}: not a regular file")
    os.set_blocking(fd, True)
    return fd


def check_dir_beneath(root: Path, relative: str) -> None:
    """NotBeneath unless `root/relative` is a folder reached without a link."""
    os.close(_walk(root, _parts(relative), relative))


def _parts(relative: str) -> tuple[str, ...]:
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        raise NotBeneath(f"{relative!r} is not a relative path inside the folder")
    return parts


def _walk(root: Path, folders: tuple[str, ...], relative: str) -> int:
    """A descriptor of the folder `folders` lead to from the root, each opened without following a link."""
    try:
        folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the root itself: set by an operator
    except OSError as exc:
        raise NotBeneath(f"the audio root cannot be opened ({exc.strerror}): ask the operator") from None
    try:
        for part in folders:
            inner = _open_at(part, folder, _DIR_FLAGS, relative)
            os.close(folder)
            folder = inner
    except BaseException:
        os.close(folder)
        raise
    return folder


def _open_at(name: str, folder: int, flags: int, relative: str) -> int:
    try:
        return os.open(name, flags, dir_fd=folder)
    except OSError as exc:
        raise NotBeneath(_reason(exc, name, folder, relative)) from None


def _reason(exc: OSError, name: str, folder: int, relative: str) -> str:
    # A link refused with O_DIRECTORY | O_NOFOLLOW reads ENOTDIR, not ELOOP: look at it.
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(name, folder):
        return f"{relative}: a symbolic link is on the way (links are not followed)"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return f"audio file not found: {relative}"
    return f"{relative}: {exc.strerror}"


def _is_link(name: str, folder: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False
