"""Retry policy: pure functions deciding whether and how long to wait before the next attempt.

Full-jitter exponential backoff (AWS Architecture Blog, "Exponential Backoff And Jitter"): the wait before
retry *n*
is uniform in [0, min(cap, base * 2**n)], which spreads synchronized clients apart. A `Retry-After` from the
server
wins over the computed backoff because the server knows when it will accept work again.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "IDEMPOTENT_METHODS",
    "RetryPolicy",
    "backoff_delay",
    "parse_retry_after",
    "retryable_status",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    """Total attempts including the first; 1 disables retries."""
    base_delay: float = 1.0
    max_delay: float = 60.0
    """Cap of one computed backoff wait."""
    max_retry_after: float = 120.0
    """A `Retry-After` longer than this is not waited out inside one call: the call fails with
    RateLimitedError and
    the caller (the poll loop) decides when to come back."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts!r}")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError(
                "RetryPolicy delays must be >= 0, got "
                f"base_delay={self.base_delay!r}, max_delay={self.max_delay!r}, "
                f"max_retry_after={self.max_retry_after!r}"
            )


def backoff_delay(retry_number: int, policy: RetryPolicy, random: Callable[[], float]) -> float:
    """Wait before retry number `retry_number` (0 for the first retry): full jitter over a capped
    exponential."""
    ceiling = min(policy.max_delay, policy.base_delay * (2**retry_number))
    return ceiling * random()


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date, RFC 9110 §10.2.3); None if
    unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retryable_status(status_code: int, method: str, *, idempotent: bool | None = None) -> bool:
    """Whether a response status is worth retrying for this request.

    429 and 503 mean "not processed, come back later", so any request may be retried. Other 5xx may have
    happened
    after the server acted; a non-idempotent request (POST creating a deployment, PATCH creating a revision)
    is then
    not retried, because a retry could create a second deployment or revision. 4xx are never retried.
    """
    if status_code in (429, 503):
        return True
    if status_code >= 500:
        return _is_idempotent(method, idempotent)
    return False


def _is_idempotent(method: str, idempotent: bool | None) -> bool:
    return idempotent if idempotent is not None else method.upper() in IDEMPOTENT_METHODS
