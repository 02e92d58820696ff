"""The API's read paths cost the same number of SQL statements whatever the size (issue 16):
listing a page of batches is one aggregate for all of them, not a GROUP BY per batch, and
/score reads columns, not one query per job. And the answers stay what they were: the
status counts, the output and error files (read in chunks) and the scores are checked
against the ORM presenters' own rendering of every job.

In-process (TestClient), rows written by SQL: no workers, no pipeline, a few seconds."""

import json
import os
import threading
import uuid
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select, text

from api.intake.batch_intake import INTAKE_THREAD
from api.keys import create_key
from api.presenters import benchmark_item, prediction_of, result_line
from evaluation.scoring import score
from models import Job, JobStatus
from models.db import get_engine, session_scope

STATUSES = ["succeeded", "succeeded", "errored", "queued", "in_progress", "cancelled", "expired", "succeeded"]


@pytest.fixture(scope="module")
def app_client(database_url):
    from api.app import create_app

    with TestClient(create_app()) as client:
        yield client


@pytest.fixture(scope="module")
def audio_id(database_url) -> int:
    with session_scope() as session:
        return session.execute(text(
            "INSERT INTO audio_assets (sha256, bytes, format) VALUES (:sha, 1, 'wav') RETURNING id"),
            {"sha": os.urandom(32).hex()}).scalar_one()


def _tenant(batches: int, jobs_each: int, audio: int) -> tuple[dict, list[str]]:
    """A new tenant with `batches` batches of `jobs_each` jobs in mixed states; its headers and batch ids."""
    name = f"shape-{os.urandom(4).hex()}"
    key = create_key(name, rate_limit_per_minute=1_000_000)
    ids = []
    with session_scope() as session:
        tenant = session.execute(text("SELECT id FROM tenants WHERE name = :n"), {"n": name}).scalar_one()
        for b in range(batches):
            batch_id = str(uuid.uuid4())
            ids.append(batch_id)
            session.execute(text(
                "INSERT INTO batches (id, tenant_id, name, status, options, batch_metadata, created_at) "
                "VALUES (:id, :tenant, :name, 'in_progress', '{\"pipeline\": \"agr\"}', '{}', "
                " now() - make_interval(secs => :age))"),
                {"id": batch_id, "tenant": tenant, "name": f"b{b}", "age": batches - b})
            session.execute(text(
                "INSERT INTO jobs (id, batch_id, custom_id, audio_id, question, choices, options, item_metadata, "
                " reference_answer, status, attempts, answer, raw_answer, normalisation, confidence, reasoning, error) "
                "SELECT gen_random_uuid(), :batch, 'q' || lpad(n::text, 4, '0'), :audio, 'Wh\u00e4t is heard?', "
                " '[\"A tone\", \"A voice\"]', '{}', "
                " CASE WHEN n % 3 = 0 THEN '{\"modality\": \"sound\", \"category\": \"c\u00e9\"}' ELSE '{}' END::json, "
                " CASE WHEN n % 4 = 0 THEN NULL ELSE 'A tone' END, (CAST(:statuses AS text[]))[1 + n % 8], 1, "
                " CASE WHEN n % 5 = 0 THEN NULL ELSE 'A tone' END, CASE WHEN n % 7 = 0 THEN NULL ELSE 'A tone!' END, "
                " 'exact', 0.5 + n / 1000.0, 'because \u2028 so', CASE WHEN n % 8 = 2 THEN 'it broke' END "
                "FROM generate_series(1, :size) AS n"),
                {"batch": batch_id, "audio": audio, "size": jobs_each, "statuses": STATUSES})
    return {"Authorization": f"Bearer {key}"}, ids


@contextmanager
def counted():
    """The SQL statements the requests send while inside, as a list. Not those of the app's
    intake thread, which polls on its own clock: on a slow machine a poll lands inside."""
    statements = []

    def note(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread().name != INTAKE_THREAD:
            statements.append(statement)

    event.listen(get_engine(), "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(get_engine(), "before_cursor_execute", note)


def _statements(client: TestClient, path: str, headers: dict) -> int:
    client.get(path, headers=headers).raise_for_status()  # warm: the key's first lookup, imports
    with counted() as statements:
        response = client.get(path, headers=headers)
    response.raise_for_status()
    return len(statements)


def test_listing_a_page_of_batches_costs_the_same_statements_for_2_and_20(app_client, audio_id):
    few, _ = _tenant(2, 3, audio_id)
    many, _ = _tenant(20, 3, audio_id)
    assert _statements(app_client, "/v1/batches?limit=100", few) == \
        _statements(app_client, "/v1/batches?limit=100", many)
    # And the next page (after=) likewise.
    first = app_client.get("/v1/batches?limit=5", headers=many).json()["data"]
    assert _statements(app_client, f"/v1/batches?limit=2&after={first[-1]['id']}", many) == \
        _statements(app_client, f"/v1/batches?limit=15&after={first[-1]['id']}", many)


def test_score_output_and_status_cost_the_same_statements_for_3_and_300_jobs(app_client, audio_id, monkeypatch):
    import api.front_door.result_files as routes

    monkeypatch.setattr(routes, "RESULT_CHUNK", 1000, raising=False)  # one chunk each: the chunking is tested below
    small, (small_batch,) = _tenant(1, 3, audio_id)
    big, (big_batch,) = _tenant(1, 300, audio_id)
    for suffix in ("/score", "/score?rule=letter", "", "/output", "/errors"):
        assert _statements(app_client, f"/v1/batches/{small_batch}{suffix}", small) == \
            _statements(app_client, f"/v1/batches/{big_batch}{suffix}", big), suffix


def _jobs(batch_id: str) -> list[Job]:
    with session_scope() as session:
        return list(session.scalars(select(Job).where(Job.batch_id == batch_id).order_by(Job.custom_id)))


def test_counts_files_and_scores_are_those_of_every_job_rendered_one_by_one(app_client, audio_id, monkeypatch):
    import api.front_door.result_files as routes

    monkeypatch.setattr(routes, "RESULT_CHUNK", 7, raising=False)  # many chunks, and a last one part full
    headers, batch_ids = _tenant(3, 61, audio_id)
    listing = app_client.get("/v1/batches?limit=100", headers=headers).json()["data"]
    assert [b["id"] for b in listing] == batch_ids[::-1]
    for batch_id, listed in zip(batch_ids[::-1], listing):
        jobs = _jobs(batch_id)
        by_status = {s: sum(j.status == s for j in jobs) for s in JobStatus}
        counts = {"total": len(jobs), "queued": by_status[JobStatus.QUEUED],
                  "in_progress": by_status[JobStatus.IN_PROGRESS], "completed": by_status[JobStatus.SUCCEEDED],
                  "failed": by_status[JobStatus.ERRORED], "cancelled": by_status[JobStatus.CANCELLED],
                  "expired": by_status[JobStatus.EXPIRED]}
        assert listed["request_counts"] == counts
        assert app_client.get(f"/v1/batches/{batch_id}", headers=headers).json() == listed

        for suffix, statuses in (("output", routes.OUTPUT_STATUSES), ("errors", routes.ERROR_STATUSES)):
            expected = "".join(json.dumps(result_line(j), ensure_ascii=False) + "\n"
                               for j in jobs if j.status in statuses)
            response = app_client.get(f"/v1/batches/{batch_id}/{suffix}", headers=headers)
            assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
            assert response.content == expected.encode()

        for rule in ("token", "letter"):
            expected = score([benchmark_item(j) for j in jobs], {j.custom_id: prediction_of(j) for j in jobs}, rule)
            response = app_client.get(f"/v1/batches/{batch_id}/score?rule={rule}", headers=headers)
            assert response.json() == json.loads(json.dumps(expected.as_json()))


def test_an_empty_batch_and_another_tenants_batch(app_client, audio_id):
    headers, (empty,) = _tenant(1, 0, audio_id)
    other, (theirs,) = _tenant(1, 2, audio_id)
    assert app_client.get(f"/v1/batches/{empty}/output", headers=headers).content == b""
    assert app_client.get(f"/v1/batches/{empty}", headers=headers).json()["request_counts"]["total"] == 0
    for suffix in ("", "/output", "/errors", "/score"):
        assert app_client.get(f"/v1/batches/{theirs}{suffix}", headers=headers).status_code == 404


def test_pages_of_batches_made_in_the_same_instant_skip_none(app_client, audio_id):
    headers, batch_ids = _tenant(3, 1, audio_id)
    with session_scope() as session:  # one created_at for all three, as batches made in one transaction have
        session.execute(text("UPDATE batches SET created_at = now() WHERE id = ANY(CAST(:ids AS uuid[]))"),
                        {"ids": batch_ids})
    seen, after = [], ""
    while True:
        page = app_client.get(f"/v1/batches?limit=1{after}", headers=headers).json()
        seen += [b["id"] for b in page["data"]]
        if not page["has_more"]:
            break
        after = f"&after={seen[-1]}"
    assert seen == sorted(batch_ids, reverse=True)
