"""The OpenAI-compatible front door: a chat completion's job made once per request
(chat_jobs), held open until the job ends (held_jobs, job_end_listener) and answered in
OpenAI's shapes (chat_completion, chat_progress, result_files). Reads requests through
api.intake; the routes call it.
"""
