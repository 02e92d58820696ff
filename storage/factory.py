"""Which audio store this process uses: the local folder or S3, from `AGR_AUDIO_STORE_URL`.

Apart from both back-ends so that neither imports the other, and so that boto3 is loaded
only where S3 is configured.
"""

from functools import lru_cache
from pathlib import Path

from core.settings import Settings, get_settings
from storage.audio_store import AudioStore, LocalAudioStore


def store_from(settings: Settings) -> AudioStore:
    url = settings.audio_store_url
    if url is None:
        return LocalAudioStore(settings.data_dir / "audio-store")
    if url.startswith("file://"):
        return LocalAudioStore(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        from storage.s3_audio_store import S3AudioStore  # boto3 only where S3 is used

        return S3AudioStore.from_settings(settings)
    raise ValueError(f"AGR_AUDIO_STORE_URL {url!r}: use file:///folder or s3://bucket[/prefix]")


@lru_cache
def audio_store() -> AudioStore:
    """This process's store, from its settings."""
    return store_from(get_settings())
