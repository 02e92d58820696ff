"""Where a tenant's audio references point: its uploads, or files inside its server-side
audio root. Nothing outside those two is reachable through the API, and a root's files
are read once, at submit, into the service's store (api/intake/audio_ingest.py)."""

from pathlib import Path, PurePosixPath
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.intake.audio_ingest import StagedAudio, stage_beneath, stored_upload
from api.intake.audio_refs import InlineAudio, RemoteAudio
from api.intake.batch_input import AudioRef, ParsedItem, UploadRef, check_relative
from api.intake.chat_audio import stage_chat_audio
from api.keys import Caller
from api.openai_errors import OpenAIError
from models import AudioAsset, AudioGrant, Tenant, Upload
from storage.open_beneath import NotBeneath, check_dir_beneath

IDS_PER_STATEMENT = 10_000


class Resolver:
    """From an item's audio reference to its staged audio, raising ValueError with the
    reason; each distinct reference is read once. `discard()` drops what was staged when
    the submission is refused."""

    def __init__(self, uploads: dict, root: Path | None, folder: PurePosixPath | ValueError | None,
                 quota_bytes: int | None = None):
        self.uploads, self.root, self.folder = uploads, root, folder
        self.staged: dict[str, StagedAudio] = {}
        # Staging stops at the tenant's whole quota: a submit can never fill the disk that
        # every tenant's staging shares (what counts against the quota is checked later).
        self.quota_bytes, self.staged_bytes = quota_bytes, 0

    def __call__(self, ref: AudioRef) -> StagedAudio:
        if isinstance(ref, UploadRef):
            if ref.upload_id not in self.uploads:
                raise ValueError(f"upload {ref.upload_id} not found")
            return self.uploads[ref.upload_id]
        if isinstance(ref, (InlineAudio, RemoteAudio)):
            return self._count(ref, lambda: sent_audio(ref))
        if self.folder is None or isinstance(self.folder, ValueError):
            raise self.folder or ValueError("no audio folder")
        check_relative(ref, "audio")
        assert self.root is not None  # resolver_for gives a folder only with the tenant's audio root (_folder)
        return self._count(ref, lambda: stage_beneath(self.root, str(self.folder / ref)))

    def _count(self, ref, stage) -> StagedAudio:
        """`ref` staged once (by `stage`), and counted against the tenant's quota."""
        if ref not in self.staged:
            staged = stage()
            self.staged_bytes += staged.bytes
            if self.quota_bytes is not None and self.staged_bytes > self.quota_bytes:
                staged.discard()
                self.staged_bytes -= staged.bytes
                raise ValueError(f"audio {_named(ref)}: the submission's files pass this tenant's storage quota "
                                 f"of {self.quota_bytes} bytes")
            self.staged[ref] = staged
        return self.staged[ref]

    def discard(self) -> None:
        for audio in self.staged.values():
            audio.discard()


def _named(ref) -> str:
    return repr(ref) if isinstance(ref, str) else ref.url if isinstance(ref, RemoteAudio) else "sent inline"


def sent_audio(ref: "InlineAudio | RemoteAudio") -> StagedAudio:
    """A Batch API line's clip, staged as a chat request's is; ValueError with the reason."""
    try:
        return stage_chat_audio(ref, None)
    except OpenAIError as exc:
        raise ValueError(str(exc.detail)) from None


def resolver_for(session: Session, caller: Caller, items: list[ParsedItem], audio_dir: str | None) -> Resolver:
    uploads = _uploads(session, caller, {i.audio.upload_id for i in items if isinstance(i.audio, UploadRef)})
    folder = _folder(caller, audio_dir) if audio_dir or any(isinstance(i.audio, str) for i in items) else None
    quota = session.scalar(select(Tenant.max_stored_bytes).where(Tenant.id == caller.tenant_id))
    return Resolver(uploads, caller.audio_root, folder, quota)


def _uploads(session: Session, caller: Caller, ids: set) -> dict:
    found: dict[UUID, StagedAudio] = {}
    listed = list(ids)
    for start in range(0, len(listed), IDS_PER_STATEMENT):  # a statement takes at most 65,535 parameters
        rows = session.execute(
            select(Upload.id, Upload.filename, AudioAsset).join(AudioAsset, AudioAsset.id == Upload.audio_id)
            .where(Upload.tenant_id == caller.tenant_id, Upload.id.in_(listed[start : start + IDS_PER_STATEMENT]))
        ).all()
        found |= {upload_id: stored_upload(asset, filename) for upload_id, filename, asset in rows}
    return found


def gone_since_resolved(session: Session, tenant_id, stored: list[StagedAudio]) -> list[StagedAudio]:
    """Of these stored uploads (resolved earlier, outside the tenant's lock), those whose
    object retention has deleted since; call under the tenant's lock, which retention takes."""
    digests = sorted({s.sha256 for s in stored})
    held = set()
    for start in range(0, len(digests), IDS_PER_STATEMENT):
        held |= set(session.scalars(
            select(AudioAsset.sha256).join(AudioGrant, AudioGrant.audio_id == AudioAsset.id)
            .where(AudioGrant.tenant_id == tenant_id, AudioAsset.sha256.in_(digests[start : start + IDS_PER_STATEMENT]))))
    return [s for s in stored if s.sha256 not in held]


def _folder(caller: Caller, audio_dir: str | None) -> PurePosixPath | ValueError:
    """The folder under the root that paths are relative to (the error, to report per
    line, when there is none)."""
    if caller.audio_root is None:
        return ValueError("audio paths need a server audio root for this tenant "
                          "(`agr keys create --audio-root`); otherwise upload the files")
    if not audio_dir:
        return PurePosixPath(".")
    try:
        check_relative(audio_dir, "audio_dir", "the audio root")
        check_dir_beneath(caller.audio_root, audio_dir)
    except NotBeneath as exc:
        return ValueError(f"audio_dir {audio_dir!r} is not a folder in the audio root ({exc})")
    except ValueError as exc:
        return exc
    return PurePosixPath(audio_dir)
