"""Fault injection: rules matched per request, each optionally limited to N occurrences.

Kinds:
* `latency`         - wait `delay` seconds, then handle normally (combines with one other fault).
* `error`           - answer `status` (default 500) with `{"detail": ...}`, plus `Retry-After` if
`retry_after` is set.
* `rate_limit`      - answer 429 (or `status`, e.g. 503) with `Retry-After: retry_after` (default 1).
* `malformed_json`  - answer 200 with a body that is not JSON.
* `truncated_body`  - handle the request (side effects happen), announce the full Content-Length, send half
the body
                      and close the connection.
* `drop_connection` - close the connection before handling the request (no side effects), after the status
line.
* `short_page`      - list endpoints only: leave the last `drop` items off the page.
* `repeat_page`     - list endpoints only: ignore `offset` (always serve the first page), like a broken
server.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Fault", "FaultKind", "FaultRegistry"]

FaultKind = Literal[
    "latency",
    "error",
    "rate_limit",
    "malformed_json",
    "truncated_body",
    "drop_connection",
    "short_page",
    "repeat_page",
]
PAGE_FAULTS = frozenset({"short_page", "repeat_page"})


class Fault(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    method: str = "*"
    """HTTP method to match, or `*`."""
    path: str = ".*"
    """Regular expression that must match the whole request path, e.g. `/v2/deployments` or
    `/v2/listeners/.*`."""
    times: int | None = Field(default=None, ge=1)
    """Apply to the next N matching requests only; None = until removed."""
    status: int | None = Field(default=None, ge=400, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    delay: float = Field(default=0.0, ge=0, le=60)
    drop: int = Field(default=1, ge=1)
    detail: str = "Injected fault."
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])

    @field_validator("path")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"path must be a regular expression, got {value!r}: {exc}") from None
        return value

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method.upper()) and re.fullmatch(self.path, path) is not None


class FaultRegistry:
    """Thread-safe: tests add faults from their thread while the server consumes them on its loop."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault | None = None, /, **fields: object) -> Fault:
        fault = fault or Fault.model_validate(fields)
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, method: str, path: str, *, is_list: bool) -> list[Fault]:
        """The faults to apply to this request (consuming one occurrence of each): every matching latency
        fault,
        plus the first other matching fault. Page faults only match list endpoints."""
        chosen: list[Fault] = []
        with self._lock:
            decided = False
            for fault in self._faults:
                if not fault.matches(method, path) or (fault.kind in PAGE_FAULTS and not is_list):
                    continue
                if fault.kind != "latency":
                    if decided:
                        continue
                    decided = True
                chosen.append(fault)
                if fault.times is not None:
                    fault.times -= 1
            self._faults = [f for f in self._faults if f.times is None or f.times > 0]
        return chosen
