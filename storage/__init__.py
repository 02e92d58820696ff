"""The service's audio store: content-addressed objects (sha256 of their bytes), in a local
folder (audio_store.py, which also holds the interface) or on S3 (s3_audio_store.py),
chosen from AGR_AUDIO_STORE_URL by factory.py; open_beneath.py opens a tenant's files
without following links out of their folder. Imports core only.
"""
