"""Errors in the OpenAI shape, beside our own.

Every refusal the API sends carries `{"error": {"message", "type", "param", "code"}}`, as
the OpenAI API words it (its SDK reads `error.message`; harnesses log it), next to our
`detail`, which native clients read. The front door's routes raise `OpenAIError` to
choose `type`, `param` and `code` themselves; other refusals get them from their status.
"""

from fastapi import HTTPException

# The OpenAI API's error types, by HTTP status.
TYPE_BY_STATUS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                  404: "not_found_error", 409: "conflict_error", 413: "invalid_request_error",
                  422: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable",
                  504: "timeout_error"}


class OpenAIError(HTTPException):
    """A refusal with the OpenAI error object's fields chosen by the route."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 error_type: str | None = None, headers: dict | None = None):
        super().__init__(status, message, headers=headers)
        self.error = error_object(status, message, code=code, param=param, error_type=error_type)


def error_object(status: int, message: str, *, code: str | None = None, param: str | None = None,
                 error_type: str | None = None) -> dict:
    return {"message": message, "type": error_type or TYPE_BY_STATUS.get(status, "server_error"),
            "param": param, "code": code}


def error_body(status: int, detail, error: dict | None = None) -> dict:
    """The body of a refusal: our `detail` and the OpenAI `error` (from the status when the
    route chose none)."""
    return {"detail": detail, "error": error or error_object(status, _message_of(detail))}


def _message_of(detail) -> str:
    if isinstance(detail, dict) and "message" in detail:
        errors = detail.get("errors") or []
        return "; ".join([str(detail["message"]), *map(str, errors[:5])])
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in detail[:5]
                         if isinstance(e, dict))
    return str(detail)
