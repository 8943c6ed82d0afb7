"""botocore errors at the adapter boundary: outages become BackendUnavailable, failed conditions a domain answer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from hexq.core.errors import BackendUnavailable

# Codes that mean "not now" (throttled, overloaded, not there yet) rather than a bug in the request.
_UNAVAILABLE = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "Throttling", "RequestLimitExceeded",
    "InternalServerError", "InternalFailure", "ServiceUnavailable", "LimitExceededException",
    "TransactionInProgressException", "ResourceNotFoundException", "ResourceInUseException",
    "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "KMS.ThrottlingException",
    "RequestThrottled", "AccessDenied", "AccessDeniedException", "UnrecognizedClientException",
    "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
})
_CONDITION_FAILED = "ConditionalCheckFailedException"


def code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def condition_failed(exc: ClientError) -> bool:
    """True when a conditional write lost: the fencing or compare-and-set said no."""
    return code(exc) == _CONDITION_FAILED


def cancellation_reasons(exc: ClientError) -> list[str]:
    """Per-item codes of a cancelled TransactWriteItems ('None' where that item was fine)."""
    if code(exc) != "TransactionCanceledException":
        return []
    return [str(reason.get("Code", "None")) for reason in exc.response.get("CancellationReasons", [])]


@contextmanager
def translated() -> Iterator[None]:
    """Raise BackendUnavailable("aws", ...) for connection errors, throttling, 5xx, missing resources and
    missing or refused credentials (the cause is kept); anything else (a malformed request) propagates."""
    try:
        yield
    except ClientError as exc:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code(exc) in _UNAVAILABLE or status >= 500:
            operation = getattr(exc, "operation_name", "call")
            raise BackendUnavailable("aws", f"{operation}: {code(exc)}: {exc}") from exc
        raise
    except BotoCoreError as exc:  # endpoint unreachable, timeouts, no credentials, no region
        raise BackendUnavailable("aws", f"{type(exc).__name__}: {exc}") from exc
