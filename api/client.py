"""The CLI's client of the HTTP API: one place that knows URLs, the key and error bodies."""

import json
from pathlib import Path

import httpx

from core.settings import get_settings


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
    def __init__(self, base_url: str | None = None, key: str | None = None, timeout_s: float = 300.0):
        settings = get_settings()
        key = key or (settings.api_key.get_secret_value() if settings.api_key else None)
        if not key:
            raise ApiError(401, "no API key: set AGR_API_KEY (make one with `agr keys create`)")
        self.http = httpx.Client(base_url=base_url or settings.api_url, timeout=timeout_s,
                                 headers={"Authorization": f"Bearer {key}"},
                                 transport=httpx.HTTPTransport(retries=3))  # connection failures only

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        return response

    def upload(self, path: Path) -> dict:
        with path.open("rb") as handle:
            return self._call("POST", "/v1/audio", files={"file": (path.name, handle)}).json()

    def create_batch(self, body: dict, idempotency_key: str | None = None) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/v1/batches", json=body, headers=headers).json()

    def batch(self, batch_id: str) -> dict:
        return self._call("GET", f"/v1/batches/{batch_id}").json()

    def delete(self, batch_id: str) -> dict:
        return self._call("DELETE", f"/v1/batches/{batch_id}").json()

    def cancel(self, batch_id: str) -> dict:
        return self._call("POST", f"/v1/batches/{batch_id}/cancel").json()

    def result_lines(self, batch_id: str, which: str) -> list[dict]:
        """`output` or `errors` file, parsed."""
        text = self._call("GET", f"/v1/batches/{batch_id}/{which}").text
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def score(self, batch_id: str, rule: str = "token") -> dict:
        return self._call("GET", f"/v1/batches/{batch_id}/score", params={"rule": rule}).json()

    def evidence(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}/evidence").json()
