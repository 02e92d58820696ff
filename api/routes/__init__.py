"""The HTTP routes, one module per resource (/v1/batches, /v1/jobs, /v1/files, /v1/audio,
/v1/chat/completions, /v1/models, health). Thin: they check the caller and hand the work
to intake/, front_door/ or the presenters.
"""
