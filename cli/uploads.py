"""The CLI's side of uploading a submission's audio: hash every file, ask the API which
of them this tenant holds already, and upload only the rest, many files a request and
several requests in flight, with progress shown for both.

What makes a re-run cheap and safe: files are named by their sha256, so a run that
failed half-way uploads only what is missing the next time; and the submission's JSONL
refers to uploads the API found by content, so the same files and options make the same
request, which the batch's Idempotency-Key (derived from it) turns into the same batch.
"""

import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from api.intake.batch_input import ParsedItem, UploadRef
from cli.client import ApiClient, ApiError

HASH_THREADS = 4
UPLOADS_IN_FLIGHT = 4
FILES_PER_REQUEST = 200
BYTES_PER_REQUEST = 64 * 1024**2
KNOWN_PER_REQUEST = 10_000
BLOCK = 1 << 20


@dataclass(frozen=True)
class LocalFile:
    path: Path
    sha256: str
    bytes: int


def hash_files(paths: list[Path], console: Console) -> list[LocalFile]:
    """Every file's sha256, several at a time (hashlib lets go of the GIL), with progress."""
    total = sum(p.stat().st_size for p in paths)
    started = time.monotonic()
    with _bar(console, "hashing", total) as bar, ThreadPoolExecutor(HASH_THREADS) as pool:
        task = bar.add_task("hashing", total=total)
        files = list(pool.map(lambda p: _hash(p, lambda n: bar.advance(task, n)), paths))
    _throughput(console, "hashed", len(files), total, time.monotonic() - started)
    return files


def _hash(path: Path, advance: Callable[[int], None]) -> LocalFile:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            size += len(block)
            advance(len(block))
    return LocalFile(path, digest.hexdigest(), size)


def upload_missing(client: ApiClient, files: list[LocalFile], console: Console) -> dict[str, str]:
    """{sha256: upload id} for every file: those the tenant holds already are looked up,
    the rest uploaded in requests of many files each."""
    by_digest = {f.sha256: f for f in files}
    uploads = {}
    digests = sorted(by_digest)
    for start in range(0, len(digests), KNOWN_PER_REQUEST):
        for row in client.known_audio(digests[start : start + KNOWN_PER_REQUEST]):
            uploads[row["sha256"]] = row["id"]
    missing = [by_digest[d] for d in digests if d not in uploads]
    console.print(f"{len(by_digest)} distinct audio file(s): {len(uploads)} held by the service already, "
                  f"{len(missing)} to upload")
    if missing:
        uploads |= _upload(client, missing, console)
    return uploads


def _upload(client: ApiClient, files: list[LocalFile], console: Console) -> dict[str, str]:
    total = sum(f.bytes for f in files)
    started = time.monotonic()
    uploads: dict[str, str] = {}
    with _bar(console, "uploading", total) as bar, ThreadPoolExecutor(UPLOADS_IN_FLIGHT) as pool:
        task = bar.add_task("uploading", total=total)

        def send(group: list[LocalFile]) -> list[dict]:
            rows = _send(client, group)
            bar.advance(task, sum(f.bytes for f in group))
            return rows

        for rows in pool.map(send, _groups(files)):
            uploads |= {row["sha256"]: row["id"] for row in rows}
    _throughput(console, "uploaded", len(files), total, time.monotonic() - started)
    return uploads


def _send(client: ApiClient, group: list[LocalFile]) -> list[dict]:
    """One request for the group; halved and sent again while the service answers 413 (its
    AGR_MAX_FILES_PER_UPLOAD or request size may be below ours). A file alone goes to
    POST /v1/audio, whose limit is a single file's."""
    if len(group) == 1:
        return [client.upload(group[0].path)]
    try:
        return client.upload_many([f.path for f in group])
    except ApiError as exc:
        if exc.status != 413:
            raise
    half = len(group) // 2
    return _send(client, group[:half]) + _send(client, group[half:])


def _groups(files: list[LocalFile]):
    """Requests of at most FILES_PER_REQUEST files and about BYTES_PER_REQUEST bytes."""
    group: list[LocalFile] = []
    size = 0
    for item in files:
        if group and (len(group) >= FILES_PER_REQUEST or size + item.bytes > BYTES_PER_REQUEST):
            yield group
            group, size = [], 0
        group.append(item)
        size += item.bytes
    if group:
        yield group


def as_jsonl(items: list[ParsedItem], paths: dict[str, Path], digests: dict[Path, str],
             uploads: dict[str, str]) -> str:
    """The submission as our JSONL, each audio path replaced by its upload."""
    lines = []
    for item in items:
        if isinstance(item.audio, UploadRef):
            audio = str(item.audio.upload_id)
        else:
            assert isinstance(item.audio, str)  # the caller (cli/remote.py) resolved every other audio as a path
            audio = uploads[digests[paths[item.audio]]]
        lines.append(json.dumps({"custom_id": item.custom_id, "audio": {"upload_id": audio},
                                 "question": item.question, "choices": item.choices, "answer": item.answer,
                                 "metadata": item.metadata, "options": item.options}, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def _bar(console: Console, what: str, total: int) -> Progress:
    return Progress(TextColumn(what), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _throughput(console: Console, verb: str, count: int, total: int, seconds: float) -> None:
    seconds = max(seconds, 1e-6)
    console.print(f"{verb} {count} file(s), {total / 1e6:.1f} MB in {seconds:.1f} s: "
                  f"{count / seconds:.0f} files/s, {total / 1e6 / seconds:.1f} MB/s")
