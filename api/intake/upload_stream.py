"""Receiving uploaded files: each `file` part streamed to its own staging file while it is
hashed, never held in memory, and refused (413) as soon as it is known to be too big: at
once from the Content-Length header, otherwise at the first byte past the limit. One
request may carry many files (`max_files`), so a tenant's rate limit, which counts
requests, does not cap how many files it can send a minute; small text fields (an OpenAI
File's `purpose`) are read alongside."""

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

if TYPE_CHECKING:  # defined for type checkers only
    from python_multipart.multipart import MultipartCallbacks

PART_OVERHEAD = 64 * 1024  # boundaries and part headers around each file
MAX_FIELD_BYTES = 1000


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

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class ReceivedParts:
    files: list[ReceivedFile] = field(default_factory=list)  # in the order they came
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        for received in self.files:
            received.discard()


async def receive_file(request: Request, dest_dir: Path, max_bytes: int) -> ReceivedFile:
    """The multipart part named `file`, stored under `dest_dir`."""
    return (await receive_parts(request, dest_dir, max_bytes, max_files=1)).files[0]


async def receive_parts(request: Request, dest_dir: Path, max_bytes: int, max_files: int) -> ReceivedParts:
    """Every part named `file` (at most `max_files`, each at most `max_bytes`), stored under
    `dest_dir`, and the other parts as short text fields. On any failure nothing is left
    in `dest_dir`."""
    boundary = _boundary(request.headers.get("content-type", ""))
    most = max_files * (max_bytes + PART_OVERHEAD)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > most:
        raise UploadTooLarge(f"upload of {int(length)} bytes is over the limit of {max_files} file(s) "
                             f"of {max_bytes} bytes")
    dest_dir.mkdir(parents=True, exist_ok=True)
    sink = _PartSink(dest_dir, max_bytes, max_files)
    parser = MultipartParser(boundary, callbacks=sink.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > most:
                raise UploadTooLarge(f"upload is over the limit of {max_files} file(s) of {max_bytes} bytes")
            parser.write(chunk)
        parser.finalize()
        return sink.finish()
    except FormParserError as exc:  # a broken boundary, a header line that never ends, ...
        sink.discard()
        raise UploadMalformed(f"not valid multipart/form-data: {exc}") from None
    except BaseException:
        sink.discard()
        raise


def _boundary(content_type: str) -> bytes:
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadMalformed("send the file(s) as multipart/form-data, each in a part named 'file'")
    return params[b"boundary"]


class _PartSink:
    """Collects part headers; writes each `file` part's bytes to its own temporary file."""

    def __init__(self, dest_dir: Path, max_bytes: int, max_files: int):
        self.dest_dir, self.max_bytes, self.max_files = dest_dir, max_bytes, max_files
        self.header_field, self.header_value = b"", b""
        self.headers: dict[bytes, bytes] = {}
        self.parts = ReceivedParts()
        self.writing: BinaryIO | None = None  # the open temporary file while inside a `file` part
        self.field_name: str | None = None  # while inside a text field
        self.field_value = b""
        self.tmp_path: Path | None = None
        self.filename = ""
        self.hash, self.size = hashlib.sha256(), 0

    def callbacks(self) -> "MultipartCallbacks":
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
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name != "file":
            self.field_name, self.field_value = name, b""
            return
        if len(self.parts.files) >= self.max_files:
            raise UploadTooLarge(f"at most {self.max_files} file(s) per request")
        self.filename = _printable((params.get(b"filename") or b"upload").decode("utf-8", "replace")) or "upload"
        handle, tmp = tempfile.mkstemp(dir=self.dest_dir, prefix=".partial-")
        self.writing, self.tmp_path = os.fdopen(handle, "wb"), Path(tmp)
        self.hash, self.size = hashlib.sha256(), 0

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.writing is None:
            if self.field_name is not None:
                self.field_value += data[start:end]
                if len(self.field_value) > MAX_FIELD_BYTES:
                    raise UploadMalformed(f"field {self.field_name!r} is over {MAX_FIELD_BYTES} bytes")
            return
        self.size += end - start
        if self.size > self.max_bytes:
            raise UploadTooLarge(f"{self.filename}: over the {self.max_bytes}-byte limit")
        self.hash.update(data[start:end])
        self.writing.write(data[start:end])

    def _part_end(self) -> None:
        if self.writing is None:
            if self.field_name is not None:
                self.parts.fields[self.field_name] = self.field_value.decode("utf-8", "replace")
                self.field_name = None
            return
        self.writing.close()
        self.writing = None
        assert self.tmp_path is not None  # set in _headers_finished together with self.writing
        received = ReceivedFile(self.tmp_path, self.filename, self.hash.hexdigest(), self.size)
        self.tmp_path = None
        self.parts.files.append(received)
        if received.bytes == 0:
            raise UploadMalformed(f"{received.filename}: the file is empty")

    def finish(self) -> ReceivedParts:
        if self.writing is not None or not self.parts.files:
            raise UploadMalformed("no complete part named 'file' in the upload")
        return self.parts

    def discard(self) -> None:
        if self.writing is not None:
            self.writing.close()
        if self.tmp_path is not None:
            self.tmp_path.unlink(missing_ok=True)
        self.parts.discard()


def _printable(name: str) -> str:
    """The name without control characters (a NUL cannot be stored in Postgres text)."""
    return "".join(c for c in name if c.isprintable())
