"""Tenants that cannot see or starve each other (issue 15), against one running API:
bodies refused before they are read (a 2 GiB one costs the API no memory), rate limits for
callers without a valid key (per address) and per tenant (all its keys together), keys
listed and revoked by the operator, audio roots that cannot be moved silently or overlap,
/metrics only for its token, /readyz without exception text, the console's CSP."""

import json
import os
import time

import httpx
import psutil
import pytest
import redis
from typer.testing import CliRunner

from api.keys import create_key
from core.settings import Settings, get_settings
from models import Tenant
from models.db import session_scope
from tests.conftest import SHARED
from tests.stack import Stack, api_client, tone_wav

MiB = 1024 * 1024
REQUEST_LIMIT = 1 * MiB  # AGR_MAX_REQUEST_BYTES of this module's API
AUDIO_LIMIT = 3 * MiB  # AGR_MAX_AUDIO_BYTES: bigger than the JSON routes' limit
UNAUTHENTICATED_LIMIT = 6  # per address per minute
TENANT_LIMIT = 5  # per tenant per minute, for the shared-limit test
METRICS_TOKEN = "metrics-" + os.urandom(8).hex()
RSS_GROWTH_ALLOWED = 10 * MiB
RSS_GIVE_UP = 96 * MiB  # a body the API buffers is cut off here, so that the test fails, not the machine


@pytest.fixture(scope="module")
def api(module_services, tmp_path_factory):
    """One API process for the module, with tiny limits: (url, pid)."""
    tmp = tmp_path_factory.mktemp("isolation")
    stack = Stack(module_services.database_url, module_services.broker_url, tmp)
    stack.configure(max_request_bytes=REQUEST_LIMIT, max_audio_bytes=AUDIO_LIMIT,
                    unauthenticated_rate_limit_per_minute=UNAUTHENTICATED_LIMIT,
                    metrics_token=METRICS_TOKEN, data_dir=str(tmp / "data"))
    url = stack.start_api()
    yield url, stack.workers["api"].pid
    stack.stop_all()


def _forget_counts() -> None:
    """Every rate-limit window of this Redis db emptied: each test starts within its limits."""
    broker = redis.Redis.from_url(get_settings().broker_url)  # this module's
    for name in broker.scan_iter("agr:rate:*"):
        broker.delete(name)


def _tenant(tmp_path, **limits) -> tuple[str, str]:
    name = f"iso-{os.urandom(4).hex()}"
    root = tmp_path / name
    root.mkdir()
    tone_wav(root / "tone.wav")
    return name, create_key(name, audio_root=root, **limits)


def _within_one_window(burst):
    """`burst()`'s result, from a run that began and ended in one rate-limit minute (a run
    straddling a boundary would see two windows' counts): tried at most three times."""
    for _ in range(3):
        _forget_counts()
        window = int(time.time() // 60)
        result = burst()
        if int(time.time() // 60) == window:
            return result
    raise AssertionError("three bursts in a row straddled a minute boundary")


# --- bodies ---------------------------------------------------------------------------

class _Body:
    """2 GiB of a JSON batch body, made as it is sent (1 MiB chunks of one buffer); polls the
    API's RSS as it goes and stops early once it grew past RSS_GIVE_UP."""

    def __init__(self, pid: int, total: int = 2 * 1024 * MiB):
        self.process, self.total = psutil.Process(pid), total
        self.baseline = self.process.memory_info().rss
        self.peak, self.sent = 0, 0

    def rss_growth(self) -> int:
        self.peak = max(self.peak, self.process.memory_info().rss - self.baseline)
        return self.peak

    def __iter__(self):
        chunk = b'{"input": "' + b"x" * (MiB - 11)
        while self.sent < self.total:
            if self.sent % (8 * MiB) == 0 and self.rss_growth() > RSS_GIVE_UP:
                return  # the API is buffering it: enough to fail the test
            piece = chunk[: self.total - self.sent]
            self.sent += len(piece)
            yield piece


def _post_big(url: str, pid: int, key: str | None = None, declared: bool = False) -> tuple[object, _Body]:
    body = _Body(pid)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if declared:
        headers["Content-Length"] = str(body.total)
    try:
        with httpx.Client(timeout=120) as client:
            response = client.post(f"{url}/v1/batches", content=body, headers=headers)
    except httpx.TransportError as exc:
        response = exc
    time.sleep(0.2)  # the API's last reads land in its RSS, if it was reading
    body.rss_growth()
    return response, body


def test_a_2_gib_body_is_refused_before_it_is_read(api, tmp_path):
    url, pid = api
    _forget_counts()
    _, key = _tenant(tmp_path)
    http = api_client(url, key)
    for _ in range(3):  # warm: imports, the thread pool, a database connection
        assert http.get("/v1/batches").status_code == 200
        assert api_client(url).post("/v1/batches", json={"input": ""}).status_code == 401
        assert http.post("/v1/batches", content=b"x" * 1000, headers={"Content-Type": "application/json"}
                         ).status_code == 422
    _forget_counts()
    figures = {}
    cases = {  # what is sent: the answer expected
        "chunked, no key": (dict(), 401),
        "Content-Length 2 GiB, no key": (dict(declared=True), 413),
        "chunked, a valid key": (dict(key=key), 413),
        "Content-Length 2 GiB, a valid key": (dict(key=key, declared=True), 413),
    }
    for case, (how, status) in cases.items():
        response, body = _post_big(url, pid, **how)
        figures[case] = (body.peak / MiB, body.sent / MiB)
        print(f"{case}: API RSS grew by {body.peak / MiB:.1f} MiB; the client sent {body.sent / MiB:.0f} MiB "
              f"before the answer")
        assert isinstance(response, httpx.Response), f"{case}: no answer ({response!r}); RSS grew by " \
                                                     f"{body.peak / MiB:.1f} MiB"
        assert body.peak <= RSS_GROWTH_ALLOWED, f"{case}: the API's RSS grew by {body.peak / MiB:.1f} MiB"
        assert response.status_code == status, f"{case}: {response.status_code} {response.text[:300]}"
        assert "detail" in response.json()
        if status == 413:
            assert f"{REQUEST_LIMIT}-byte limit" in response.json()["detail"]
    # The API is still serving, and a batch under the limit still goes in.
    line = json.dumps({"custom_id": "ok", "audio": "tone.wav", "question": "What is heard?"})
    assert http.post("/v1/batches", json={"input": line}).status_code == 201


def test_the_upload_route_takes_bodies_past_the_json_limit_up_to_its_own(api, tmp_path):
    url, _ = api
    _forget_counts()
    _, key = _tenant(tmp_path)
    http = api_client(url, key)
    audio = tone_wav(tmp_path / "long.wav", seconds=120)  # 3.7 MiB of 16-bit 16 kHz: over the audio limit
    assert audio.stat().st_size > AUDIO_LIMIT
    assert http.post("/v1/audio", files={"file": ("long.wav", audio.read_bytes())}).status_code == 413
    middling = tone_wav(tmp_path / "mid.wav", seconds=45)  # 1.4 MiB: over the JSON limit, under the audio one
    assert REQUEST_LIMIT < middling.stat().st_size < AUDIO_LIMIT
    uploaded = http.post("/v1/audio", files={"file": ("mid.wav", middling.read_bytes())})
    assert uploaded.status_code == 201, uploaded.text
    big_json = json.dumps({"input": "x" * (REQUEST_LIMIT + 10)})
    refused = http.post("/v1/batches", content=big_json, headers={"Content-Type": "application/json"})
    assert refused.status_code == 413 and f"{REQUEST_LIMIT}-byte limit" in refused.json()["detail"]


def test_the_default_limit_admits_a_batch_of_the_most_items():
    """50,000 lines of MMAR's size (the real file's lines repeated) fit AGR_MAX_REQUEST_BYTES."""
    mmar = SHARED / "benchmarks" / "MMAR-meta.jsonl"
    lines = mmar.read_text().splitlines() if mmar.is_file() else [json.dumps({
        "id": "x" * 40, "audio_path": "audio/" + "y" * 60 + ".wav", "question": "q" * 400,
        "choices": ["c" * 80] * 4, "answer": "c" * 80, "modality": "sound", "category": "z" * 40,
        "sub-category": "z" * 40, "thinking": "t" * 1500})] * 1000
    settings = Settings()
    items = settings.batch_max_items
    per_line = sum(len(json.dumps(line)) - 2 + 2 for line in lines) / len(lines)  # escaped, plus "\n"
    body_bytes = int(per_line * items) + 100
    print(f"a body of {items} MMAR-sized items: {body_bytes / MiB:.0f} MiB; "
          f"the limit {settings.max_request_bytes / MiB:.0f} MiB")
    assert body_bytes < settings.max_request_bytes


# --- rate limits ----------------------------------------------------------------------

def test_a_wrong_key_hammered_from_one_address_gets_429(api, tmp_path):
    url, _ = api
    _, key = _tenant(tmp_path, rate_limit_per_minute=1000)
    wrong, missing, right = api_client(url, "agr_wrong-" + os.urandom(6).hex()), api_client(url), api_client(url, key)

    def burst():
        statuses = [wrong.get("/v1/batches").status_code for _ in range(UNAUTHENTICATED_LIMIT)]
        over_wrong, over_missing = wrong.get("/v1/batches"), missing.post("/v1/batches", json={"input": ""})
        return statuses, over_wrong, over_missing, right.get("/v1/batches").status_code

    statuses, over_wrong, over_missing, valid = _within_one_window(burst)
    assert statuses == [401] * UNAUTHENTICATED_LIMIT
    for over in (over_wrong, over_missing):
        assert over.status_code == 429, over.text
        assert 1 <= int(over.headers["Retry-After"]) <= 60
        assert "without a valid API key" in over.json()["detail"]
    assert valid == 200  # a valid key from the same address is not locked out
    _forget_counts()


def test_a_tenants_keys_share_its_rate_limit(api, tmp_path):
    url, _ = api
    name, first = _tenant(tmp_path, rate_limit_per_minute=TENANT_LIMIT)
    keys = [api_client(url, first), api_client(url, create_key(name, "second"))]
    other = api_client(url, _tenant(tmp_path, rate_limit_per_minute=TENANT_LIMIT)[1])

    def burst():  # the two keys in turn
        statuses = [keys[i % 2].get("/v1/batches").status_code for i in range(TENANT_LIMIT + 1)]
        return statuses, keys[1].get("/v1/batches"), other.get("/v1/batches").status_code

    statuses, limited, others = _within_one_window(burst)
    assert statuses == [200] * TENANT_LIMIT + [429], statuses
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert f"limit of {TENANT_LIMIT} requests per minute for this tenant" in limited.json()["detail"]
    assert others == 200  # another tenant is not starved by it
    _forget_counts()


# --- keys and audio roots (the operator's CLI) ------------------------------------------

class _Ran:
    def __init__(self, result):
        self.exit_code = result.exit_code
        self.output = " ".join(result.output.split())  # as said, not as wrapped at 80 columns


def _agr(*args: str) -> _Ran:
    from cli.main import app

    return _Ran(CliRunner().invoke(app, list(args)))


def test_keys_list_and_revoke(api, tmp_path):
    url, _ = api
    _forget_counts()
    name = f"ops-{os.urandom(4).hex()}"
    made = [_agr("keys", "create", "--tenant", name, "--name", label) for label in ("alpha", "beta", "gamma")]
    assert all(r.exit_code == 0 for r in made), [r.output for r in made]
    alpha, beta, gamma = (r.output for r in made)
    for key in (alpha, beta, gamma):
        assert api_client(url, key).get("/v1/batches").status_code == 200

    listed = _agr("keys", "list", "--tenant", name, "--json")
    assert listed.exit_code == 0, listed.output
    rows = _json_lines(listed.output)
    assert [(r["tenant"], r["name"], r["prefix"], r["revoked_at"]) for r in rows] == [
        (name, "alpha", alpha[:12], None), (name, "beta", beta[:12], None), (name, "gamma", gamma[:12], None)]
    assert all(r["created_at"] for r in rows)
    table = _agr("keys", "list")
    from api.keys import digest
    for key in (alpha, beta, gamma):
        for shown in (listed.output, table.output):
            assert key not in shown and digest(key) not in shown and key[12:20] not in shown

    by_prefix = _agr("keys", "revoke", alpha[:12])
    assert by_prefix.exit_code == 0 and "revoked" in by_prefix.output, by_prefix.output
    assert api_client(url, alpha).get("/v1/batches").status_code == 401  # at once
    beta_id = next(r["id"] for r in rows if r["name"] == "beta")
    assert _agr("keys", "revoke", beta_id).exit_code == 0
    assert api_client(url, beta).get("/v1/batches").status_code == 401
    assert api_client(url, gamma).get("/v1/batches").status_code == 200  # the tenant's other key still works
    again = _agr("keys", "revoke", alpha[:12])
    assert again.exit_code == 0 and "already revoked" in again.output
    unknown = _agr("keys", "revoke", "agr_nosuchkey")
    assert unknown.exit_code != 0 and "no API key" in unknown.output
    live = _agr("keys", "list", "--tenant", name, "--no-revoked", "--json")
    assert [row["name"] for row in _json_lines(live.output)] == ["gamma"]
    revoked = {row["name"]: row["revoked_at"] for row in _json_lines(_agr("keys", "list", "--tenant", name,
                                                                          "--json").output)}
    assert revoked["alpha"] and revoked["beta"] and revoked["gamma"] is None


def _json_lines(output: str) -> list[dict]:
    decoder, rows, at = json.JSONDecoder(), [], 0
    while at < len(output):
        row, at = decoder.raw_decode(output, at)
        rows.append(row)
        at += len(output[at:]) - len(output[at:].lstrip())
    return rows


def _root_of(tenant: str) -> str | None:
    from sqlalchemy import select

    with session_scope() as session:
        return session.scalar(select(Tenant.audio_root).where(Tenant.name == tenant))


def test_audio_roots_do_not_move_silently_or_overlap(tmp_path):
    first, second = f"roots-a-{os.urandom(3).hex()}", f"roots-b-{os.urandom(3).hex()}"
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "inner").mkdir(parents=True)
    b.mkdir()
    assert _agr("keys", "create", "--tenant", first, "--audio-root", str(a)).exit_code == 0
    assert _agr("keys", "create", "--tenant", first, "--audio-root", str(a)).exit_code == 0  # the same: fine

    moved = _agr("keys", "create", "--tenant", first, "--audio-root", str(b))
    assert moved.exit_code != 0 and "--move-audio-root" in moved.output, moved.output
    assert _root_of(first) == str(a.resolve())
    assert _agr("keys", "create", "--tenant", first, "--audio-root", str(b), "--move-audio-root").exit_code == 0
    assert _root_of(first) == str(b.resolve())

    (b / "sub").mkdir()
    for root, reason in ((b, "overlaps tenant"), (b / "sub", "overlaps tenant"), (tmp_path, "overlaps tenant"),
                         ("/", "system folder"), ("/etc", "system folder"), ("/usr/share", "system folder")):
        made = _agr("keys", "create", "--tenant", second, "--audio-root", str(root))
        assert made.exit_code != 0 and reason in made.output, (root, made.output)
        assert _root_of(second) is None
    assert _agr("keys", "create", "--tenant", second, "--audio-root", str(a)).exit_code == 0  # free again
    system = _agr("keys", "create", "--tenant", second, "--audio-root", "/", "--move-audio-root")
    assert system.exit_code != 0 and "system folder" in system.output
    assert _root_of(second) == str(a.resolve())


# --- the operator's endpoints and the console ---------------------------------------------

def test_metrics_only_for_the_token(api):
    url, _ = api
    _forget_counts()
    assert httpx.get(f"{url}/metrics").status_code == 401
    assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200 and 'agr_queue_depth{queue="perception"}' in scraped.text
    assert "/metrics" not in httpx.get(f"{url}/openapi.json").json()["paths"]


def test_metrics_are_not_served_without_a_token_configured():
    from fastapi.testclient import TestClient

    from api.app import create_app

    assert Settings().metrics_token is None  # as the test process is configured
    with TestClient(create_app()) as client:
        assert client.get("/metrics").status_code == 404


def test_readyz_names_no_exception(monkeypatch, caplog):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.routes import health

    class Down:
        def ping(self):
            raise redis.ConnectionError("Error 111 connecting to secret-broker.internal:6379. Connection refused.")

    monkeypatch.setattr(health, "broker_redis", lambda: Down())
    with TestClient(create_app()) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "checks": {"database": "ok", "broker": "unavailable"}}
    assert "secret-broker" in caplog.text  # for the operator's log only


def test_the_console_may_not_be_framed(api):
    url, _ = api
    for path in ("/console/", "/console/console.js", "/console/console.css"):
        response = httpx.get(f"{url}{path}")
        assert response.status_code == 200, path
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy, policy
        assert response.headers["X-Frame-Options"] == "DENY"
