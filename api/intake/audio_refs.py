"""How a submission names its audio, before the audio is read: a path inside the
tenant's audio folder (a str), an upload, bytes sent inline, or an allowed URL."""

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True)
class UploadRef:
    upload_id: UUID


@dataclass(frozen=True)
class InlineAudio:
    """Audio sent in the request (a chat content part), base64 as it came; decoded when staged."""

    data: str
    format: str

    def decoded_size(self) -> int:
        return len(self.data) * 3 // 4


@dataclass(frozen=True)
class RemoteAudio:
    url: str  # under a prefix of AGR_AUDIO_URL_ALLOWLIST, checked when it was read


AudioRef = str | UploadRef | InlineAudio | RemoteAudio
