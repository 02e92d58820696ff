"""Turning a benchmark file into a batch of queued jobs.

The whole file is validated before anything is written: a submission with one bad line
is refused with every problem listed by line number, and nothing is queued. Then the
batch, its audio assets, jobs and first steps are committed in one transaction, and
only after that commit are the first messages sent.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import soundfile as sf
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from models import AudioAsset, Batch, BatchStatus, Job, Step, StepKind
from models.db import session_scope
from workers.perception.audio_io import file_sha256


class SubmissionInvalid(ValueError):
    def __init__(self, errors: list[str]):
        super().__init__(f"{len(errors)} problem(s) in the submission:\n" + "\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Item:
    custom_id: str
    audio: Path
    question: str
    choices: list[str]
    answer: str | None
    metadata: dict = field(default_factory=dict)


METADATA_FIELDS = ("modality", "category", "sub-category", "language", "difficulty", "task")


def read_mmar_file(path: Path, audio_dir: Path | None = None) -> list[Item]:
    """Items of an MMAR-format JSONL file; audio paths resolve inside `audio_dir`
    (default: the file's folder). Raises SubmissionInvalid listing every bad line."""
    audio_root = (audio_dir or path.parent).resolve()
    items, errors, seen = [], [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = _parse_line(line, audio_root)
        except ValueError as exc:
            errors.append(f"line {number}: {exc}")
            continue
        if item.custom_id in seen:
            errors.append(f"line {number}: duplicate id {item.custom_id!r}")
        seen.add(item.custom_id)
        items.append(item)
    if not items and not errors:
        errors.append(f"{path}: no items")
    if errors:
        raise SubmissionInvalid(errors)
    return items


def _parse_line(line: str, audio_root: Path) -> Item:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise ValueError("expected a JSON object")
    missing = [k for k in ("id", "audio_path", "question") if not raw.get(k)]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    choices = raw.get("choices") or []
    if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
        raise ValueError("choices must be a list of non-empty strings")
    if len(set(choices)) != len(choices):
        raise ValueError("choices must be distinct")
    return Item(
        custom_id=str(raw["id"]),
        audio=_resolve_audio(str(raw["audio_path"]), audio_root),
        question=str(raw["question"]),
        choices=choices,
        answer=raw.get("answer"),
        metadata={k: raw[k] for k in METADATA_FIELDS if k in raw},
    )


def _resolve_audio(reference: str, root: Path) -> Path:
    """A path inside the audio folder; absolute paths, '..' and URLs are refused."""
    if "://" in reference:
        raise ValueError(f"audio_path {reference!r}: URLs are not accepted")
    relative = Path(reference)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"audio_path {reference!r} must be relative to the audio folder, without '..'")
    resolved = (root / relative).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"audio_path {reference!r} leaves the audio folder")
    if not resolved.is_file():
        raise ValueError(f"audio file not found: {resolved}")
    return resolved


def create_batch(name: str, items: list[Item], options: dict, source: str | None = None) -> tuple[UUID, list[int]]:
    """Persist the batch with every job and its first step; returns (batch id, step ids)."""
    assets = {item.audio: _asset_values(item.audio) for item in items}
    with session_scope() as session:
        batch = Batch(name=name, options=options, source=source, status=BatchStatus.IN_PROGRESS)
        session.add(batch)
        session.flush()
        audio_ids = _upsert_assets(session, assets)
        jobs = [
            Job(batch_id=batch.id, custom_id=i.custom_id, audio_id=audio_ids[assets[i.audio]["sha256"]],
                question=i.question, choices=i.choices, options=options,
                item_metadata=i.metadata, reference_answer=i.answer)
            for i in items
        ]
        session.add_all(jobs)
        session.flush()
        steps = [Step(job_id=j.id, iteration=0, kind=StepKind.PERCEIVE_CPU) for j in jobs]
        session.add_all(steps)
        session.flush()
        return batch.id, [s.id for s in steps]


def _asset_values(path: Path) -> dict:
    values = {"sha256": file_sha256(path), "path": str(path), "bytes": path.stat().st_size,
              "format": None, "duration_s": None, "sample_rate": None, "channels": None}
    try:
        info = sf.info(str(path))
        values |= {"format": info.format, "duration_s": info.duration,
                   "sample_rate": info.samplerate, "channels": info.channels}
    except (sf.LibsndfileError, RuntimeError):
        pass  # unreadable header: perception will fail that job with the reason
    return values


def _upsert_assets(session, assets: dict) -> dict[str, int]:
    rows = list({v["sha256"]: v for v in assets.values()}.values())
    session.execute(insert(AudioAsset).values(rows).on_conflict_do_nothing(index_elements=["sha256"]))
    found = session.execute(
        select(AudioAsset.sha256, AudioAsset.id).where(AudioAsset.sha256.in_([r["sha256"] for r in rows]))
    )
    return dict(found.all())


def submit(name: str, items: list[Item], options: dict, source: str | None = None) -> UUID:
    """Create the batch, then send each job's first message (after the commit)."""
    from workers.step_runner import enqueue_step

    batch_id, step_ids = create_batch(name, items, options, source)
    for step_id in step_ids:
        enqueue_step(step_id, StepKind.PERCEIVE_CPU)
    return batch_id
