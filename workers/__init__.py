"""The workers: the durable runtime (runtime/: Celery tasks, claims and leases, the outbox,
the sweeper) runs the method (method/: pipelines, steps, the LLM agents, perception).
The runtime imports the method; the method never imports the runtime (a test checks).
"""
