"""The durable runtime: what makes each step run at least once and count once, whatever
dies. A step is claimed under a lease (step_claim, lease), run and committed with its
successor in one transaction (step_runner), its message sent from the outbox within its
queue's dispatch window in a fair order (outbox, fair_dispatch, dispatch, routing), and
taken back by the sweeper when its worker is lost (sweeper, sweeper_loop). Also: the
Celery app and tasks, GPU steps run together (gpu_batch), a broker lost and found
(broker_watchdog), ending jobs and batches (job_state, batch_lifecycle), retention and
object deletions, and each attempt's record (attempt_log).
"""
