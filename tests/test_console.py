"""The audit console in headless Chromium against the running stack: enter a key, see the
batch with its progress, open the batch and a job, read its iterations, and press play on
an evidence span. Each page's screenshot is saved under test-artifacts/console/."""

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from api.keys import create_key
from tests.stack import api_client

ARTIFACTS = Path(os.environ.get("AGR_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts")) / "console"
ITEMS = ("dev-city-00", "dev-tempo-00", "dev-beep_count-00")
RELISTEN = {"calls": [{"tool": "transcription", "args": {"start": 0.0, "end": 2.0}},
                      {"tool": "signal_facts", "args": {"start": 0.0, "end": 2.0}}]}
INSUFFICIENT = {"reason": "the start is unclear", "sufficient": False, "confidence": 0.3,
                "missing": ["what is said in the first two seconds"]}
# Chromium as the machine's kind is known to run it: no sandbox as root, nothing fetched.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]


@contextmanager
def console_page(playwright):
    """A headless Chromium page, and the list its script errors and refused resources land in."""
    browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # The API serves the console with a Content-Security-Policy: nothing it needs may be refused.
    page.on("console", lambda message: errors.append(message.text)
            if "Content Security Policy" in message.text else None)
    try:
        yield page, errors
    finally:
        browser.close()


def _chromium() -> str:
    path = os.environ.get("AGR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    return path


@pytest.fixture
def finished_batch(stack, scripted_llm, devset, tmp_path):
    """Three devset items through the whole stack over HTTP, each with a refinement round."""
    scripted_llm.default_replies.update(planner=INSUFFICIENT, interaction=RELISTEN)
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["signal_facts", "voice_activity", "transcription", "music"]')
    stack.start()
    api = stack.start_api()
    key = create_key(f"console-{os.urandom(3).hex()}", audio_root=devset)
    lines = [line for line in (devset / "meta.jsonl").read_text().splitlines() if json.loads(line)["id"] in ITEMS]
    client = api_client(api, key)
    created = client.post("/v1/batches", json={"input": "\n".join(lines), "input_format": "mmar",
                                               "name": "console-check", "max_iters": 1})
    assert created.status_code == 201, created.text
    batch_id = created.json()["id"]
    stack.wait_for_batch(batch_id, timeout=300)
    jobs = client.get(f"/v1/batches/{batch_id}/jobs").json()["data"]
    return api, key, batch_id, {j["custom_id"]: j for j in jobs}


def test_console_batches_batch_and_job_pages(finished_batch):
    from playwright.sync_api import expect, sync_playwright

    api, key, batch_id, jobs = finished_batch
    assert all(j["status"] == "succeeded" for j in jobs.values()), jobs
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright, console_page(playwright) as (page, errors):

        # A wrong key is refused; the right one is kept for the session.
        page.goto(f"{api}/console/")
        page.fill("input[name=key]", "agr_not-a-key")
        page.click("button[type=submit]")
        expect(page.locator("form.key .error")).to_contain_text("refused")
        page.fill("input[name=key]", key)
        page.click("button[type=submit]")

        # Batches: the batch with its live counts and a full progress bar.
        row = page.locator(f"tr[data-batch='{batch_id}']")
        expect(row).to_contain_text("console-check")
        expect(row).to_contain_text("3/3 ended")
        expect(row.locator(".progress > span")).to_have_attribute("style", "width: 100%;")
        page.screenshot(path=str(ARTIFACTS / "batches.png"), full_page=True)

        # Batch: every item, its answer against the reference, accuracy by modality.
        row.locator("a").click()
        expect(page.locator("#jobs tbody tr")).to_have_count(3)
        city = page.locator(f"tr[data-job='{jobs['dev-city-00']['id']}']")
        expect(city).to_contain_text("Paris")
        expect(city).to_contain_text("✓ correct")  # the scripted answerer picks the first choice
        expect(page.locator(f"tr[data-job='{jobs['dev-beep_count-00']['id']}']")).to_contain_text("✗ wrong")
        expect(page.locator("#accuracy-overall")).to_contain_text("2 correct of 3 answered")
        expect(page.locator("table.accuracy[data-group=modality]")).to_contain_text("music")
        page.select_option("select[name=correctness]", "false")
        expect(page.locator("#jobs tbody tr")).to_have_count(1)
        page.select_option("select[name=correctness]", "")
        page.screenshot(path=str(ARTIFACTS / "batch.png"), full_page=True)

        # Job: the answer against the reference, the iterations as a chain, the timeline.
        city.locator("a").click()
        expect(page.locator("#verdict")).to_contain_text("correct")
        iterations = page.locator("article.iteration")
        expect(iterations).to_have_count(2)
        round_one = iterations.nth(1)
        expect(round_one.locator(".diff .added").filter(has_text="transcription").first).to_be_visible()  # what the round added
        expect(round_one).to_contain_text("not sufficient")
        expect(round_one.locator("tr[data-tool=transcription]")).to_contain_text('"end":2')
        expect(iterations.nth(0).locator("details.llm-call[data-agent=planner]")).to_have_count(1)
        expect(page.locator("article.final")).to_contain_text("Paris")

        asr = page.locator(".lane[data-lane='speech (ASR)'] .span").first
        expect(asr).to_contain_text("Paris")
        start = float(asr.get_attribute("data-start"))
        asr.click()
        page.wait_for_function(f"() => !document.querySelector('audio').paused "
                               f"&& document.querySelector('audio').currentTime > {start}", timeout=15_000)
        expect(asr).to_have_class("span playing")
        page.screenshot(path=str(ARTIFACTS / "job.png"), full_page=True)
    assert errors == [], errors
    print(f"screenshots in {ARTIFACTS}")
