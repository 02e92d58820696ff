"""The whole stack on one machine, as `agr run` and `agr up` use it.

Services come from the environment when configured and are started embedded otherwise
(local_stack.embedded); the schema is brought to head; then one Celery worker per queue and the
sweeper run as real processes, exactly as docker-compose runs them in production (and,
for `agr up`, the HTTP API). A worker that dies is restarted: its unfinished step is
re-queued by the sweeper once its lease lapses.
"""

import logging
import os
import subprocess
from contextlib import ExitStack
from pathlib import Path

from core.migrate import upgrade_to_head
from core.settings import Settings, get_settings
from local_stack import processes
from local_stack.embedded import EmbeddedStack
from models.db import reset_after_fork

log = logging.getLogger(__name__)

ROLES = ("perception-cpu", "perception", "reasoning", "sweeper")
# The embedded llama.cpp server answers one request at a time: more reasoning threads than
# this would only queue at its door, each waiting towards its client timeout.
EMBEDDED_LLM_CONCURRENCY = 2


class LocalStack:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.log_dir = Path(settings.data_dir) / "logs"
        self.workers: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {role: 0 for role in ROLES}
        self._exit = ExitStack()
        self.api_address: tuple[str, int] | None = None

    def __enter__(self) -> "LocalStack":
        try:
            services = self._exit.enter_context(EmbeddedStack(
                self.settings.data_dir, self.settings.database_url,
                self.settings.broker_url, self.settings.llm_base_url,
            ))
            self._adopt(services.env())
            if not self.settings.llm_base_url:
                os.environ["AGR_REASONING_CONCURRENCY"] = str(
                    min(self.settings.reasoning_concurrency, EMBEDDED_LLM_CONCURRENCY))
            assert services.database_url is not None  # entering the stack started one if unset
            upgrade_to_head(services.database_url)
            self._exit.callback(self._stop_workers)
            for role in ROLES:
                self._start(role)
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self._exit.close()

    def _adopt(self, service_env: dict[str, str]) -> None:
        # This process submits and watches too, so it must read the same URLs as the
        # workers it starts: they inherit os.environ.
        os.environ.update(service_env)
        get_settings.cache_clear()

        reset_after_fork()  # forget an engine built before the URL was known

    def serve_api(self, host: str, port: int, ready_within_s: float = 120) -> str:
        """Start the HTTP API (restarted like a worker if it dies); its URL once it answers."""
        self.api_address = (host, port)
        self.restarts["api"] = 0
        self._start("api")
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        if processes.wait_until_serving(f"{url}/healthz", self.workers["api"], ready_within_s):
            return url
        state = f"exited with {self.workers['api'].returncode} (is port {port} taken?)" \
            if self.workers["api"].poll() is not None else f"did not answer within {ready_within_s:g} s"
        raise RuntimeError(f"the API {state}; log: {self.log_dir / 'api.log'}")

    def _start(self, role: str) -> None:
        env = dict(os.environ)
        log_path = self.log_dir / f"{role}.log"
        if role == "api":
            assert self.api_address is not None  # set by serve_api, the only starter of the "api" role
            host, port = self.api_address
            self.workers[role] = processes.start_api(env, log_path, port, host)
        elif role == "sweeper":
            self.workers[role] = processes.start_sweeper(env, log_path)
        else:
            self.workers[role] = processes.start_worker(role, env, log_path)

    def revive_dead_workers(self) -> list[str]:
        """Restart any worker process that exited; returns the roles restarted."""
        dead = [role for role, proc in self.workers.items() if proc.poll() is not None]
        for role in dead:
            log.warning("%s worker exited with %s; restarting it (log: %s)",
                        role, self.workers[role].returncode, self.log_dir / f"{role}.log")
            self.restarts[role] += 1
            self._start(role)
        return dead

    def _stop_workers(self) -> None:
        processes.stop_all(list(self.workers.values()))
