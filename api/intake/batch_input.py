"""Reading a submission: our JSONL items, an MMAR JSONL file, an MMAU JSON file, or an
OpenAI Batch API file (each line a chat completion request: api/intake/chat_request.py).

Reading is two passes, so every problem is reported at once, by line, before anything is
queued: `parse_submission` checks each line's JSON and fields; `resolve_audio` then turns
each audio reference (a path inside an audio folder, or an upload id) into a file.
"""

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, cast
from uuid import UUID

from api.intake import item_limits
from api.intake.audio_refs import AudioRef, UploadRef
from api.intake.chat_request import read_chat_request
from api.openai_errors import OpenAIError

if TYPE_CHECKING:
    from api.intake.audio_ingest import StagedAudio

FORMATS = ("auto", "jsonl", "mmar", "mmau", "openai")
BATCH_API_ENDPOINT = "/v1/chat/completions"  # what an OpenAI Batch API line may ask
METADATA_FIELDS = ("modality", "task", "category", "sub-category", "language", "difficulty")
MAX_ID_CHARS = 200  # jobs.custom_id
MAX_AUDIO_REF_CHARS = 1000
MAX_AUDIO_PATH_CHARS = 2000
# Problems listed by line; past this many they are counted only: a file of a million bad
# lines must not become a million strings, nor a JSON value that every status poll reads.
MAX_LISTED_PROBLEMS = 1000
_UNLISTED = "... and {} more problem(s), not listed"


class SubmissionInvalid(ValueError):
    """The submission is refused whole; `errors` name every bad line."""

    def __init__(self, errors: list[str]):
        shown = errors[:50]
        more = f"\n... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        super().__init__(f"{len(errors)} problem(s) in the submission:\n" + "\n".join(shown) + more)
        self.errors = errors




@dataclass(frozen=True)
class ParsedItem:
    where: str  # "line 3" or "item 3": how errors point at it
    custom_id: str
    audio: AudioRef
    question: str
    choices: list[str]
    answer: str | None
    metadata: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # per-item overrides, e.g. max_iters


@dataclass(frozen=True)
class Item:
    custom_id: str
    audio: "Path | StagedAudio"  # a file on this machine, or audio staged by the API
    question: str
    choices: list[str]
    answer: str | None
    metadata: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


def detect_format(text: str) -> str:
    stripped = text.lstrip()
    if stripped.startswith("["):
        return "mmau"
    first = stripped.split("\n", 1)[0]
    if '"custom_id"' in first and '"body"' in first and '"url"' in first:
        return "openai"
    return "jsonl" if '"custom_id"' in first else "mmar"


def parse_submission(text: str, fmt: str = "auto", max_items: int | None = None) -> list[ParsedItem]:
    """Every item, or SubmissionInvalid naming every bad line."""
    items, errors = parse_lines(text, fmt, max_items)
    if errors:
        raise SubmissionInvalid(errors)
    return items


def parse_lines(text: str, fmt: str = "auto", max_items: int | None = None) -> tuple[list[ParsedItem], list[str]]:
    """The items that parse, and the problems of those that do not, in file order (the first
    MAX_LISTED_PROBLEMS of them, then a count). SubmissionInvalid at once when there are
    more than `max_items` items: nothing past them is read."""
    if fmt not in FORMATS:
        raise SubmissionInvalid([f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}"])
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
    fmt = detect_format(text) if fmt == "auto" else fmt
    records = _mmau_records(text) if fmt == "mmau" else _jsonl_records(text)
    parse = {"jsonl": _ours, "openai": _batch_api_line}.get(fmt, _benchmark)
    items, problems, seen = [], _Problems(), set()
    for where, raw in records:
        try:
            item = parse(where, raw)
        except ValueError as exc:
            problems.add(f"{where}: {exc}")
            continue
        if item.custom_id in seen:
            problems.add(f"{where}: duplicate id {item.custom_id!r}")
        seen.add(item.custom_id)
        items.append(item)
        if max_items is not None and len(items) > max_items:
            problems.add(f"{where}: more than {max_items} items; at most {max_items} per batch (AGR_BATCH_MAX_ITEMS)")
            raise SubmissionInvalid(problems.listed())
    if not items and not problems:
        problems.add("the submission has no items")
    return items, problems.listed()


def resolve_audio(items: list[ParsedItem], resolve: Callable[[AudioRef], "Path | StagedAudio"],
                  earlier_errors: tuple[str, ...] = ()) -> list[Item]:
    """Items with their audio files; SubmissionInvalid names every reference that fails,
    together with `earlier_errors` (the parse's), all in file order."""
    resolved, errors = [], list(earlier_errors)
    for item in items:
        try:
            audio = resolve(item.audio)
        except ValueError as exc:
            errors.append(f"{item.where}: {exc}")
            continue
        resolved.append(Item(item.custom_id, audio, item.question, item.choices, item.answer,
                             item.metadata, item.options))
    if errors:
        problems = _Problems()
        for error in sorted(errors, key=_position):
            problems.add(error)
        raise SubmissionInvalid(problems.listed())
    return resolved


class _Problems:
    """A submission's problems: the first MAX_LISTED_PROBLEMS kept, the rest counted."""

    def __init__(self) -> None:
        self._listed: list[str] = []
        self._unlisted = 0

    def add(self, problem: str) -> None:
        if problem.startswith(_UNLISTED.split("{}")[0]):  # a count from an earlier pass
            self._unlisted += int(problem.split()[2])
        elif len(self._listed) < MAX_LISTED_PROBLEMS:
            self._listed.append(problem)
        else:
            self._unlisted += 1

    def __bool__(self) -> bool:
        return bool(self._listed or self._unlisted)

    def listed(self) -> list[str]:
        return self._listed + ([_UNLISTED.format(self._unlisted)] if self._unlisted else [])


def _position(error: str) -> int:
    """Where an error points ("line 12: ..." -> 12); file-wide errors go last."""
    head = error.split(":", 1)[0].split()
    return int(head[1]) if len(head) == 2 and head[1].isdigit() else 1 << 62


@dataclass(frozen=True)
class _NotJSON:
    """A number Python's json reads but JSON and Postgres do not have (NaN, Infinity, 1e400),
    or an int too long to read: kept in its place, refused by `_unstorable` as its field's."""

    text: str


def _number(text: str):
    try:
        value = float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:  # an int of more than 4,300 digits
        return _NotJSON(f"an integer of {len(text)} digits")
    return value if not isinstance(value, float) or math.isfinite(value) else _NotJSON(text)


def _loads(text: str):
    return json.loads(text, parse_constant=_NotJSON, parse_float=_number, parse_int=_number)


def _jsonl_records(text: str):
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            yield where, _loads(line)
        except json.JSONDecodeError as exc:
            yield where, ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})")
        except RecursionError:
            yield where, ValueError(TOO_DEEP)


def _lines(text: str):
    """Lines ending at "\n" only (JSON strings may hold U+2028, form feeds, ...), as editors
    count them, one at a time: a 200 MiB file is not split into a list of copies."""
    start = 0
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        yield text[start:end]
        start = end + 1


TOO_DEEP = "not valid JSON (nested too deeply)"


def _mmau_records(text: str):
    try:
        data = _loads(text)
    except json.JSONDecodeError as exc:
        yield f"line {exc.lineno}", ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})")
        return
    except RecursionError:
        yield "line 1", ValueError(TOO_DEEP)
        return
    if not isinstance(data, list):
        yield "line 1", ValueError("an MMAU file is a JSON list of items")
        return
    for number, raw in enumerate(data, start=1):
        yield f"item {number}", raw


def _benchmark(where: str, raw) -> ParsedItem:
    """An MMAR line (audio_path) or an MMAU item (audio_id): the benchmarks' own fields."""
    raw = _object(raw)
    audio_field = "audio_path" if "audio_path" in raw else "audio_id"
    _require(raw, "id", audio_field, "question")
    return ParsedItem(
        where, _custom_id(raw["id"], "id"), _path_ref(raw[audio_field], audio_field), item_limits.question(raw["question"]),
        item_limits.choices(raw.get("choices")), _answer(raw.get("answer")),
        {k: raw[k] for k in METADATA_FIELDS if raw.get(k) is not None},
    )


def _ours(where: str, raw) -> ParsedItem:
    """Our JSONL: custom_id, audio ("path" or {"upload_id": ...}), question, choices, ..."""
    raw = _object(raw)
    _require(raw, "custom_id", "audio", "question")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be an object")
    return ParsedItem(
        where, _custom_id(raw["custom_id"], "custom_id"), _audio_ref(raw["audio"]), item_limits.question(raw["question"]),
        item_limits.choices(raw.get("choices")), _answer(raw.get("answer")), metadata, _item_options(raw.get("options")),
    )


def _batch_api_line(where: str, raw) -> ParsedItem:
    """An OpenAI Batch API line: custom_id, method POST, url, and a chat completion `body`."""
    raw = _object(raw)
    _require(raw, "custom_id", "method", "url", "body")
    if raw["method"] != "POST":
        raise ValueError(f"method must be POST, not {str(raw['method'])[:20]!r}")
    if raw["url"] != BATCH_API_ENDPOINT:
        raise ValueError(f"url must be {BATCH_API_ENDPOINT}, the batch's endpoint, not {str(raw['url'])[:100]!r}")
    try:
        asked = read_chat_request(raw["body"])
    except OpenAIError as exc:
        raise ValueError(f"body{'.' + exc.error['param'] if exc.error['param'] else ''}: {exc.detail}") from None
    return ParsedItem(where, _custom_id(raw["custom_id"], "custom_id"), asked.audio, item_limits.question(asked.question),
                      item_limits.choices(asked.choices), None, asked.item_metadata(), asked.item_options())


def _object(raw) -> dict:
    if isinstance(raw, Exception):
        raise raw
    if not isinstance(raw, dict):
        raise ValueError("expected a JSON object")
    for name, value in raw.items():
        if problem := _unstorable(name):
            raise ValueError(f"a field name {problem}")
        if problem := _unstorable(value):
            raise ValueError(f"{name if len(name) <= 40 else 'a field'} {problem}")
    return raw


def _unstorable(value) -> str | None:
    """Why Postgres could not store `value` (any string, key or number in it), or None.
    Checked on every field, even those ignored, so the reason never depends on which are read."""
    if isinstance(value, _NotJSON):
        return f"holds {value.text if len(value.text) <= 40 else 'a number'}, which is not a JSON number"
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character (\\u0000)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (\\ud800-\\udfff), which is not Unicode text"
        return None
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list):
        return next((problem for v in value if (problem := _unstorable(v))), None)
    return None


def _custom_id(value, name: str) -> str:
    custom_id = str(value)
    if len(custom_id) > MAX_ID_CHARS:
        raise ValueError(f"{name} longer than {MAX_ID_CHARS} characters")
    return custom_id


def _require(raw: dict, *names: str) -> None:
    missing = [k for k in names if raw.get(k) in (None, "")]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")




def _answer(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("answer must be a string")
    return value


def _path_ref(value, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    if len(value) > MAX_AUDIO_REF_CHARS:
        raise ValueError(f"{name} longer than {MAX_AUDIO_REF_CHARS} characters")
    return value


def _audio_ref(value) -> AudioRef:
    if isinstance(value, str):
        return _path_ref(value, "audio")
    if isinstance(value, dict) and set(value) == {"upload_id"}:
        try:
            return UploadRef(UUID(str(value["upload_id"])))
        except ValueError:
            raise ValueError(f"audio.upload_id {value['upload_id']!r} is not an upload id") from None
    if isinstance(value, dict) and set(value) == {"path"}:
        return _path_ref(value["path"], "audio.path")
    raise ValueError('audio must be a path string, {"path": ...} or {"upload_id": ...}')


ITEM_OPTIONS = {"max_iters": (0, 10), "answer_samples": (1, 15)}  # what one item may set, and its range


def _item_options(value) -> dict:
    options = value or {}
    if not isinstance(options, dict) or set(options) - set(ITEM_OPTIONS):
        raise ValueError(f"options may only set {' and '.join(ITEM_OPTIONS)}")
    for name, (low, high) in ITEM_OPTIONS.items():
        found = options.get(name)
        if name in options and not (isinstance(found, int) and not isinstance(found, bool) and low <= found <= high):
            raise ValueError(f"options.{name} must be an integer from {low} to {high}")
    return options


def check_relative(reference: str, what: str = "audio", folder: str = "the audio folder") -> None:
    """Refuse URLs, absolute paths and '..': references are relative to a folder."""
    if "://" in reference or reference.startswith(("http:", "https:", "file:")):
        raise ValueError(f"{what} {reference!r}: URLs are not accepted")
    relative = Path(reference)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"{what} {reference!r} must be relative to {folder}, without '..'")
    if len(reference) > MAX_AUDIO_PATH_CHARS:
        raise ValueError(f"{what} {reference!r}: longer than {MAX_AUDIO_PATH_CHARS} characters")


def resolve_in_root(reference: str, root: Path) -> Path:
    """A file inside `root` on this machine (the CLI's batch files). URLs, absolute paths,
    '..' and symlinks leading out are refused. MMAR names its files `./audio/<id>.wav` from
    the dataset's folder: they are found whether `root` is that folder or its `audio/`
    folder; the path as written, under `root`, wins when both exist."""
    check_relative(reference)
    root = root.resolve()
    candidates = [reference]
    parts = PurePosixPath(reference).parts
    if len(parts) > 1 and parts[0] == root.name:
        candidates.append(str(PurePosixPath(*parts[1:])))  # `audio/x.wav` under a folder named `audio`
    for candidate in candidates:
        try:
            resolved = (root / candidate).resolve()  # follows symlinks, so one pointing out is caught here
            if not resolved.is_relative_to(root):
                raise ValueError(f"audio {reference!r} leaves the audio folder")
            if resolved.is_file():
                return resolved
        except OSError as exc:  # e.g. a name longer than the file system allows
            raise ValueError(f"audio {reference!r}: {exc.strerror}") from None
    raise ValueError(f"audio file not found: {reference}")


def read_batch_file(path: Path, audio_dir: Path | None = None, fmt: str = "auto") -> list[Item]:
    """A benchmark or JSONL file on this machine, its audio paths inside `audio_dir`
    (default: the file's folder); upload references need the API."""
    root = (audio_dir or path.parent).resolve()

    def resolve(ref: AudioRef) -> Path:
        if isinstance(ref, UploadRef):
            raise ValueError("upload ids can only be used through the HTTP API")
        # Meant to be a path: an inline or URL audio (an OpenAI batch file) fails in check_relative
        # with a TypeError, as it always has.
        return resolve_in_root(cast(str, ref), root)

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SubmissionInvalid([f"{path}: not UTF-8 text"]) from None
    items, errors = parse_lines(text, fmt)
    return resolve_audio(items, resolve, tuple(errors))
