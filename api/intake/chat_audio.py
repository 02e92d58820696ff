"""A chat request's clip brought to staging (api/intake/audio_ingest.py), as a batch item's would be:
inline base64 decoded, an allowed URL fetched (size-limited, redirects not followed),
an upload id looked up among the tenant's uploads. A clip whose header soundfile cannot
read, in a format soundfile reads, is refused here (400): nothing is queued for it."""

import io
import tempfile
import time

import httpx
from sqlalchemy import select

from api.intake.audio_ingest import StagedAudio, stage_stream, stored_upload
from api.intake.audio_refs import InlineAudio, RemoteAudio, UploadRef
from api.intake.chat_request import ChatAudio, decode_inline, invalid
from core.settings import get_settings
from models import AudioAsset, Upload
from models.db import session_scope

HEADER_CHECKED = ("wav", "flac", "ogg", "aiff")  # the formats soundfile itself reads
FETCH_BLOCK = 1 << 20


def stage_chat_audio(audio: ChatAudio, tenant_id) -> StagedAudio:
    """The clip staged (or, for an upload, found stored); OpenAIError with the reason."""
    if isinstance(audio, UploadRef):
        return _upload(audio, tenant_id)
    if isinstance(audio, InlineAudio):
        staged = _stage(io.BytesIO(decode_inline(audio)), f"audio.{audio.format}")
        _check_header(staged, audio.format)
        return staged
    return _fetch(audio)


def _stage(source, name: str) -> StagedAudio:
    try:
        staged = stage_stream(source, name)
    except ValueError as exc:  # over AGR_MAX_AUDIO_BYTES
        raise invalid(str(exc), "messages", "audio_too_large", status=413) from None
    if staged.bytes == 0:
        staged.discard()
        raise invalid("the audio is empty (0 bytes)", "messages", "invalid_audio_data")
    return staged


def _check_header(staged: StagedAudio, fmt: str) -> None:
    if fmt in HEADER_CHECKED and not staged.header:
        staged.discard()
        raise invalid(f"the audio data is not readable {fmt} audio", "messages", "invalid_audio_data")


def _upload(ref: UploadRef, tenant_id) -> StagedAudio:
    with session_scope() as session:
        row = session.execute(select(Upload.filename, AudioAsset).join(AudioAsset, AudioAsset.id == Upload.audio_id)
                              .where(Upload.id == ref.upload_id, Upload.tenant_id == tenant_id)).one_or_none()
    if row is None:
        raise invalid(f"no uploaded audio {ref.upload_id} for this key's tenant", "messages", "file_not_found",
                      status=404)
    filename, asset = row
    return stored_upload(asset, filename)


def _fetch(audio: RemoteAudio) -> StagedAudio:
    """The URL's body (an allowed prefix: api/intake/chat_request.py), refused past the audio limit."""
    settings = get_settings()
    limit = settings.max_audio_bytes
    with tempfile.SpooledTemporaryFile(max_size=FETCH_BLOCK * 8) as body:
        try:
            # No redirects: one could lead out of the allowed prefix.
            with httpx.stream("GET", audio.url, timeout=settings.audio_url_timeout_s, follow_redirects=False) as reply:
                if reply.status_code != 200:
                    raise invalid(f"fetching {audio.url} answered HTTP {reply.status_code}", "messages",
                                  "remote_audio_unavailable")
                size, deadline = 0, time.monotonic() + settings.audio_url_timeout_s
                for block in reply.iter_bytes(FETCH_BLOCK):
                    size += len(block)
                    if size > limit:
                        raise invalid(f"{audio.url}: over the limit of {limit} bytes (AGR_MAX_AUDIO_BYTES)",
                                      "messages", "audio_too_large", status=413)
                    if time.monotonic() > deadline:  # a trickle would hold this thread for ever
                        raise invalid(f"fetching {audio.url} took over {settings.audio_url_timeout_s:g} s "
                                      "(AGR_AUDIO_URL_TIMEOUT_S)", "messages", "remote_audio_unavailable")
                    body.write(block)
        except httpx.HTTPError as exc:
            raise invalid(f"fetching {audio.url} failed: {exc}", "messages", "remote_audio_unavailable") from None
        body.seek(0)
        name = httpx.URL(audio.url).path.rsplit("/", 1)[-1][:200] or "audio"
        staged = _stage(body, name)
    _check_header(staged, name.rsplit(".", 1)[-1].lower())
    return staged
