"""Retries with exponential backoff for cloud calls that were throttled or briefly unavailable.

The SDKs' own retries are switched off for action calls (AWS clients get one attempt each),
so this is the one retry policy, configured by `actions.retry_attempts` and
`actions.retry_backoff_s`. Anything else (access denied, not found, a bad request) fails
at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import ClientError
from google.api_core import exceptions as google_errors
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from finops.config import ActionSettings

T = TypeVar("T")

AWS_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
    }
)


def is_retryable(exc: BaseException) -> bool:
    """A throttled or temporarily failing call, worth trying again."""
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in AWS_THROTTLING_CODES
    return isinstance(
        exc,
        google_errors.TooManyRequests
        | google_errors.ServiceUnavailable
        | google_errors.InternalServerError,
    )


class Retry:
    """Call a function, retrying throttled or unavailable attempts with backoff."""

    def __init__(self, attempts: int = 5, backoff_s: float = 1.0) -> None:
        self.attempts = attempts
        self.backoff_s = backoff_s

    @classmethod
    def from_settings(cls, settings: ActionSettings) -> Retry:
        return cls(settings.retry_attempts, settings.retry_backoff_s)

    def __call__(self, call: Callable[..., T], *args: object, **kwargs: object) -> T:
        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            wait=wait_exponential(multiplier=self.backoff_s, max=60),
            stop=stop_after_attempt(self.attempts),
            reraise=True,
        )
        return retrying(call, *args, **kwargs)
