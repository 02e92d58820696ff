"""Where a tenant's audio references point: its uploads, or files inside its server-side
audio root. Nothing outside those two is reachable through the API."""

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.batch_input import AudioRef, ParsedItem, UploadRef, resolve_in_root
from api.keys import Caller
from models import AudioAsset, Upload


def resolver_for(session: Session, caller: Caller, items: list[ParsedItem], audio_dir: str | None):
    """A function from an item's audio reference to its file, raising ValueError with the reason."""
    uploads = _uploads(session, caller, {i.audio.upload_id for i in items if isinstance(i.audio, UploadRef)})
    folder = _folder(caller, audio_dir) if audio_dir or any(isinstance(i.audio, str) for i in items) else None

    def resolve(ref: AudioRef) -> Path:
        if isinstance(ref, UploadRef):
            if ref.upload_id not in uploads:
                raise ValueError(f"upload {ref.upload_id} not found")
            return uploads[ref.upload_id]
        if folder is None or isinstance(folder, ValueError):
            raise folder or ValueError("no audio folder")
        return resolve_in_root(ref, folder)

    return resolve


def _uploads(session: Session, caller: Caller, ids: set) -> dict:
    if not ids:
        return {}
    rows = session.execute(
        select(Upload.id, AudioAsset.path).join(AudioAsset, AudioAsset.id == Upload.audio_id)
        .where(Upload.tenant_id == caller.tenant_id, Upload.id.in_(ids))
    ).all()
    return {upload_id: Path(path) for upload_id, path in rows}


def _folder(caller: Caller, audio_dir: str | None) -> Path | ValueError:
    """The folder paths are relative to (the error, to report per line, when there is none)."""
    if caller.audio_root is None:
        return ValueError("audio paths need a server audio root for this tenant "
                          "(`agr keys create --audio-root`); otherwise upload the files")
    if not audio_dir:
        return caller.audio_root
    try:
        return _dir_in_root(audio_dir, caller.audio_root)
    except ValueError as exc:
        return exc
    except OSError as exc:  # e.g. a name longer than the file system allows
        return ValueError(f"audio_dir {audio_dir!r}: {exc.strerror}")


def _dir_in_root(audio_dir: str, root: Path) -> Path:
    if "://" in audio_dir:
        raise ValueError(f"audio_dir {audio_dir!r}: URLs are not accepted")
    relative = Path(audio_dir)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"audio_dir {audio_dir!r} must be relative to the audio root, without '..'")
    folder = (root.resolve() / relative).resolve()
    if not folder.is_relative_to(root.resolve()):
        raise ValueError(f"audio_dir {audio_dir!r} leaves the audio root")
    if not folder.is_dir():
        raise ValueError(f"audio_dir {audio_dir!r} is not a folder in the audio root")
    return folder
