"""The HTTP API: the routes (routes/), what a request may cost (request_guard, rate_limit),
who calls (keys, deps), how rows are shown (schemas, presenters, batch_view,
evidence_chain), and the audit console's static pages (console/).

Submissions are read and brought in by intake/; the OpenAI-compatible chat completions and
Batch API live in front_door/. Errors in OpenAI's shape (openai_errors) serve both. May import core, models,
storage, evaluation, the runtime's senders (workers.runtime: the outbox, routing,
retention) and the method's light parts (pipelines, mechanisms, the tool catalogue); never
the CLI or the local stack, and no model library (tests/test_roles.py checks).
"""
