"""`agr up` on embedded services, the one-machine service, as a supervisor runs it: started
with SIGINT ignored (nohup, a CI runner, a script's background job) and stopped with
SIGTERM (docker, systemd). Beside it, an operator makes a second tenant's key with
`agr keys create` pointed only at its data folder, and that tenant is served."""

import os
import re
import signal
import subprocess

import httpx
import pytest

from tests import children
from tests.conftest import SESSION_ID
from tests.stack import FAST_DURABILITY, _free_port, agr_command, run_cli

SERVICE_URLS = ("AGR_DATABASE_URL", "AGR_BROKER_URL")  # unset: agr up starts Postgres and Redis itself


@pytest.fixture
def up_env(scripted_llm, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_URLS}
    return env | FAST_DURABILITY | {"AGR_LLM_BASE_URL": scripted_llm.base_url, "AGR_DATA_DIR": str(tmp_path / "data"),
                                    "AGR_COARSE_TOOLS": '["signal_facts"]', "COLUMNS": "300"}


def test_agr_up_stops_on_sigterm_with_sigint_ignored_and_serves_a_tenant_made_beside_it(up_env, request):
    port = _free_port()
    up = children.start(agr_command("up", "--port", str(port)), up_env, sigint="ignore",
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        printed = children.read_until(up, "OPENAI_API_KEY=", timeout=300)
        base_url = re.search(r"OPENAI_BASE_URL=(\S+) ", printed).group(1)

        made = run_cli(up_env, "keys", "create", "--tenant", "b", timeout=120)  # no AGR_DATABASE_URL: the data folder's
        assert made.returncode == 0, made.stdout + made.stderr
        key_b = made.stdout.strip().splitlines()[-1]
        models = httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {key_b}"}, timeout=60)
        assert models.status_code == 200, models.text
        listed = run_cli(up_env, "keys", "list", "--tenant", "b", "--json", timeout=120)
        assert '"tenant": "b"' in listed.stdout, listed.stdout + listed.stderr

        up.send_signal(signal.SIGINT)  # ignored, as its starter meant: it keeps serving
        assert httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {key_b}"}, timeout=60).status_code == 200
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=180)
    finally:
        how = children.stop(up)
    assert how == "exited", f"SIGTERM did not stop agr up: it took {how}"
    assert up.returncode == 0, output
    assert "stopped; unfinished jobs continue" in output
    left = [p for p in children.marked_processes(SESSION_ID) if p.module == request.module.__name__]
    assert not left, "agr up's SIGTERM left these running:\n" + "\n".join(map(str, left))


def test_keys_create_without_a_database_or_an_agr_up_names_the_setting(up_env):
    made = run_cli(up_env, "keys", "create", "--tenant", "b", timeout=120)
    assert made.returncode != 0
    assert "AGR_DATABASE_URL is not set" in made.stdout + made.stderr
    assert "AGR_DATA_DIR" in made.stdout + made.stderr

