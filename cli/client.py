"""The CLI's client of the HTTP API: one place that knows URLs, the key and error bodies."""

import hashlib
import json
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from core.settings import get_settings

RATE_LIMIT_RETRIES = 30


def _parts(opened: ExitStack, paths: list[Path]) -> list:
    return [("file", (p.name, opened.enter_context(p.open("rb")))) for p in paths]


class ApiError(RuntimeError):
    def __init__(self, status: int, detail):
        self.status, self.detail = status, detail
        errors = detail.get("errors") if isinstance(detail, dict) else None
        message = detail.get("message") if isinstance(detail, dict) else detail
        text = f"HTTP {status}: {message}"
        if errors:
            text += "\n" + "\n".join(f"  {e}" for e in errors[:50])
        super().__init__(text)


class ApiClient:
    def __init__(self, base_url: str | None = None, key: str | None = None, timeout_s: float = 300.0,
                 on_wait=lambda seconds: None):
        self.on_wait = on_wait  # told how long a rate-limited request waits before it is sent again
        settings = get_settings()
        key = key or (settings.api_key.get_secret_value() if settings.api_key else None)
        if not key:
            raise ApiError(401, "no API key: set AGR_API_KEY (make one with `agr keys create`)")
        self.http = httpx.Client(base_url=base_url or settings.api_url, timeout=timeout_s,
                                 headers={"Authorization": f"Bearer {key}"},
                                 transport=httpx.HTTPTransport(retries=3))  # connection failures only

    def _call(self, method: str, path: str, files_of=None, **kwargs) -> httpx.Response:
        """The request, sent again after each 429 that says when (Retry-After: the key's
        rate limit), up to RATE_LIMIT_RETRIES times. `files_of`: a function opening the
        files of a multipart body, so a retry sends them from the start."""
        for _ in range(RATE_LIMIT_RETRIES):
            with ExitStack() as opened:
                files = files_of(opened) if files_of else None
                response = self.http.request(method, path, files=files, **kwargs)
            wait = response.headers.get("retry-after", "")
            if response.status_code != 429 or not wait.isdigit():
                break
            self.on_wait(int(wait))
            time.sleep(int(wait))
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        return response

    def upload(self, path: Path) -> dict:
        return self._call("POST", "/v1/audio", files_of=lambda opened: _parts(opened, [path])).json()

    def upload_many(self, paths: list[Path]) -> list[dict]:
        """One request, one upload per file (in order)."""
        return self._call("POST", "/v1/audio/bulk", files_of=lambda opened: _parts(opened, paths)).json()["data"]

    def known_audio(self, digests: list[str]) -> list[dict]:
        """The tenant's uploads of these sha256 digests, where it has one."""
        return self._call("POST", "/v1/audio/known", json={"sha256": digests}).json()["data"]

    def input_file(self, text: str, filename: str) -> dict:
        """The tenant's submission file with this text: found by its sha256, else uploaded."""
        content = text.encode("utf-8")
        digest = hashlib.sha256(content).hexdigest()
        found = self._call("GET", "/v1/files", params={"purpose": "batch", "sha256": digest}).json()["data"]
        if found:
            return found[0]
        return self._call("POST", "/v1/files", data={"purpose": "batch"},
                          files_of=lambda _: {"file": (filename, content)}).json()

    def create_batch(self, body: dict, idempotency_key: str | None = None) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/v1/batches", json=body, headers=headers).json()

    def batch(self, batch_id: str) -> dict:
        # Our shape, whichever API made the batch (one made through the OpenAI Batch API shows its own).
        return self._call("GET", f"/v1/batches/{batch_id}", params={"view": "native"}).json()

    def delete(self, batch_id: str) -> dict:
        return self._call("DELETE", f"/v1/batches/{batch_id}").json()

    def cancel(self, batch_id: str) -> dict:
        return self._call("POST", f"/v1/batches/{batch_id}/cancel", params={"view": "native"}).json()

    def result_lines(self, batch_id: str, which: str) -> list[dict]:
        """`output` or `errors` file, parsed."""
        text = self._call("GET", f"/v1/batches/{batch_id}/{which}").text
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def score(self, batch_id: str, rule: str = "token", items: bool = False) -> dict:
        """The batch's accuracy report; `items`: with each scored item (id, job_id, correct, groups)."""
        params = {"rule": rule} | ({"items": "true"} if items else {})
        return self._call("GET", f"/v1/batches/{batch_id}/score", params=params).json()

    def evidence(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}/evidence").json()
