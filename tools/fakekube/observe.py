"""What tests observe and control at the HTTP layer: the request log and fault injection."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Verb = Literal[
    "get", "list", "watch", "create", "update", "patch", "apply", "delete", "deletecollection", "other"
]
WRITE_VERBS: frozenset[str] = frozenset({"create", "update", "patch", "apply", "delete", "deletecollection"})


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    verb: Verb
    kind: str | None
    namespace: str | None
    name: str | None
    subresource: str | None
    field_manager: str | None
    content_type: str | None
    status: int | None
    fault: str | None = None
    user: str | None = None  # the authenticated identity (None: no or an invalid token)
    warnings: tuple[str, ...] = ()  # Warning headers sent with the response
    at: float = field(default_factory=time.time)
    """Wall-clock time the response was decided (Unix seconds): the benchmark times reactions with it."""

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "is_write": self.is_write}


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def records(
        self,
        *,
        verb: str | Iterable[str] | None = None,
        kind: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        field_manager: str | None = None,
        user: str | None = None,
        status: int | None = None,
    ) -> list[RequestRecord]:
        verbs = {verb} if isinstance(verb, str) else set(verb) if verb is not None else None
        with self._lock:
            return [
                r
                for r in self._records
                if (verbs is None or r.verb in verbs)
                and (kind is None or r.kind == kind)
                and (namespace is None or r.namespace == namespace)
                and (name is None or r.name == name)
                and (field_manager is None or r.field_manager == field_manager)
                and (user is None or r.user == user)
                and (status is None or r.status == status)
            ]

    def writes(self, **filters: Any) -> list[RequestRecord]:
        return self.records(verb=WRITE_VERBS, **filters)

    def count(self, **filters: Any) -> int:
        return len(self.records(**filters))


DROP = "drop"


@dataclass
class Fault:
    """Fail the next ``times`` requests matching ``method`` and the regex ``path`` (searched in the URL path).

    ``response`` is an HTTP status (500, 503, 429, ...) answered with a Kubernetes Status body, or ``"drop"``
    to cut the connection in the middle of the response.
    """

    path: str
    response: int | str = 503
    times: int = 1
    method: str | None = None
    verb: str | None = None
    retry_after: int | None = None
    hits: int = field(default=0)

    def matches(self, method: str, path: str, verb: str) -> bool:
        return (
            self.hits < self.times
            and (self.method is None or self.method.upper() == method)
            and (self.verb is None or self.verb == verb)
            and re.search(self.path, path) is not None
        )


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def inject(
        self,
        path: str,
        response: int | str = 503,
        *,
        times: int = 1,
        method: str | None = None,
        verb: str | None = None,
        retry_after: int | None = None,
    ) -> Fault:
        if isinstance(response, str) and response != DROP:
            raise ValueError(f"response must be an HTTP status or {DROP!r}")
        return self.add(Fault(path, response, times, method, verb, retry_after))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str, verb: str) -> Fault | None:
        """The first armed fault matching this request, consuming one of its shots."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path, verb):
                    fault.hits += 1
                    return fault
        return None

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(f.times - f.hits for f in self._faults)
