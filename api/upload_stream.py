"""Receiving an uploaded audio file: streamed to a staging file while it is hashed, never held in
memory, and refused (413) as soon as it is known to be too big: at once from the
Content-Length header, otherwise at the first byte past the limit."""

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file itself


class UploadTooLarge(Exception):
    pass


class UploadMalformed(ValueError):
    pass


@dataclass(frozen=True)
class ReceivedFile:
    path: Path  # a staging file with the part's bytes, hashed as they came
    filename: str
    sha256: str
    bytes: int


async def receive_file(request: Request, dest_dir: Path, max_bytes: int) -> ReceivedFile:
    """The multipart part named `file`, stored under `dest_dir`."""
    boundary = _boundary(request.headers.get("content-type", ""))
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + MULTIPART_OVERHEAD:
        raise UploadTooLarge(f"upload of {int(length)} bytes is over the {max_bytes}-byte limit")
    dest_dir.mkdir(parents=True, exist_ok=True)
    sink = _FileSink(dest_dir, max_bytes)
    parser = MultipartParser(boundary, callbacks=sink.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + MULTIPART_OVERHEAD:
                raise UploadTooLarge(f"upload is over the {max_bytes}-byte limit")
            parser.write(chunk)
        parser.finalize()
        return sink.finish()
    finally:
        sink.discard()


def _boundary(content_type: str) -> bytes:
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadMalformed("send the audio as multipart/form-data with a part named 'file'")
    return params[b"boundary"]


class _FileSink:
    """Collects part headers; writes the `file` part's bytes to a temporary file."""

    def __init__(self, dest_dir: Path, max_bytes: int):
        self.dest_dir, self.max_bytes = dest_dir, max_bytes
        self.header_field, self.header_value, self.headers = b"", b"", {}
        self.writing = None  # the open temporary file while inside the `file` part
        self.tmp_path: Path | None = None
        self.filename: str | None = None
        self.hash, self.size, self.done = hashlib.sha256(), 0, False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._add("header_field", d[s:e]),
            "on_header_value": lambda d, s, e: self._add("header_value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _add(self, name: str, data: bytes) -> None:
        setattr(self, name, getattr(self, name) + data)

    def _part_begin(self) -> None:
        self.headers = {}

    def _header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field, self.header_value = b"", b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        if params.get(b"name") == b"file" and not self.done and self.writing is None:
            self.filename = (params.get(b"filename") or b"upload").decode("utf-8", "replace")
            handle, name = tempfile.mkstemp(dir=self.dest_dir, prefix=".partial-")
            self.writing, self.tmp_path = os.fdopen(handle, "wb"), Path(name)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.writing is None:
            return
        self.size += end - start
        if self.size > self.max_bytes:
            raise UploadTooLarge(f"upload is over the {self.max_bytes}-byte limit")
        self.hash.update(data[start:end])
        self.writing.write(data[start:end])

    def _part_end(self) -> None:
        if self.writing is not None:
            self.writing.close()
            self.writing, self.done = None, True

    def finish(self) -> ReceivedFile:
        if not self.done:
            raise UploadMalformed("no complete part named 'file' in the upload")
        if self.size == 0:
            raise UploadMalformed(f"{self.filename}: the file is empty")
        received = ReceivedFile(self.tmp_path, self.filename, self.hash.hexdigest(), self.size)
        self.tmp_path = None  # the caller's now: it puts the file into the store
        return received

    def discard(self) -> None:
        if self.writing is not None:
            self.writing.close()
        if self.tmp_path is not None:
            self.tmp_path.unlink(missing_ok=True)
