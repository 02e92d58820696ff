"""Intake: a submission read (batch_input; a chat request or Batch API line read as one
question about one clip: chat_request, prompt_choices, chat_audio), checked off the request
path (batch_intake), its audio brought into the store (audio_ingest, upload_stream,
tenant_audio), its tenant's limits checked (tenant_limits, item_limits), and its items
turned into queued jobs (submission). May import core, models, storage, the runtime's
outbox and api's shared modules; not the routes or the front door.
"""
