"""Which failures are the infrastructure blinking rather than the work being wrong.

Worth trying again after a wait, without counting against the work's attempts: the
database away (core/database_outage.py), the machine short of space or memory, a
connection reset or timed out, an object store answering 5xx or throttling (after
botocore's own retries). Anything else (a bug, bad input) is not: it fails its attempt.
"""

import errno

from core.database_outage import database_unreachable


class RetryLater(RuntimeError):
    """The work met a race it cannot finish through (stored bytes deleted while a submit
    was storing them): the same request again succeeds. The API answers 503."""

_TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EAGAIN, errno.EBUSY,
                     errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE,
                     errno.EHOSTUNREACH, errno.ENETUNREACH}


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, RetryLater) or database_unreachable(exc):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _TRANSIENT_ERRNOS
    return _object_store_unavailable(exc)


def _object_store_unavailable(exc: BaseException) -> bool:
    try:
        from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
    except ImportError:  # no S3 store in this installation
        return False
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError)):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or status == 429
    return False
