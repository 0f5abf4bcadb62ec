"""The work queue: one work item per deployment, a few workers, never two workers on one deployment.

Like client-go's workqueue under controller-runtime (and Flux's `--concurrent`):

* an item is keyed by deployment id; submitting a key that is queued or running is a no-op, so a key
  is never processed by two workers at once (the running step re-reads everything next time);
* a small, fixed number of daemon worker threads (`LISTENER_WORKERS`), so one slow or failing
  deployment holds one worker while the others keep moving, and a new revision of any other
  deployment starts at the next poll;
* two lanes: work submitted `urgent` (a new revision, a new deployment) is taken before the rest
  (rollouts' follow-ups, resyncs), so a revision never waits behind a thousand resync items; an item
  already queued is moved to the urgent lane when it becomes urgent. Within a lane, first in, first out;
* `retry_delay` is the per-key retry schedule: exponential from a base, capped, with jitter, and
  never shorter than the server's `Retry-After`.

Workers are daemon threads (not `concurrent.futures`, whose workers the interpreter joins at exit):
a step stuck in a request must not keep a stopping process alive past its shutdown budget — the
leader fence refuses whatever an abandoned step still tries to write.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from listener import metrics

log = logging.getLogger(__name__)

_rng = random.Random()  # noqa: S311 - jitter, not security


def retry_delay(
    failures: int,
    base: timedelta,
    cap: timedelta,
    *,
    retry_after: float | None = None,
    rng: Callable[[], float] = _rng.random,
) -> timedelta:
    """The wait before retry number `failures` (1 for the first): uniform in [d/2, d] where
    d = min(cap, base * 2**(failures-1)) ("equal jitter": spread apart, never a hot loop), and at
    least the server's `Retry-After` (capped at `cap` too, so a bogus header cannot park a key)."""
    ceiling = min(base * 2 ** max(failures - 1, 0), cap)
    wait = ceiling / 2 + ceiling / 2 * rng()
    if retry_after is not None and retry_after > 0:
        # Compared as seconds first: a header too large for a timedelta (or infinite) is just "the cap".
        wait = max(wait, timedelta(seconds=min(retry_after, cap.total_seconds())))
    return wait


@dataclass(frozen=True)
class Done:
    """A finished work item: its key, what the work returned, or the exception it raised."""

    key: str
    value: Any = None
    error: BaseException | None = None


class WorkQueue:
    """Keyed, de-duplicated work on `workers` daemon threads; results are collected with `take`."""

    def __init__(self, workers: int, *, name: str = "reconcile"):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self._lock = threading.Condition()
        self._urgent: deque[tuple[str, Callable[[], Any]]] = deque()
        self._normal: deque[tuple[str, Callable[[], Any]]] = deque()
        self._pending: set[str] = set()
        """Keys queued or running."""
        self._running: set[str] = set()
        self._done: list[Done] = []
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, work: Callable[[], Any], *, urgent: bool = False) -> bool:
        """Queue `work` for `key`, in the urgent lane when `urgent`; False (and nothing queued) when
        `key` is already queued or running. A key waiting in the normal lane moves to the urgent
        lane (keeping its work) when submitted urgent, and still answers False."""
        with self._lock:
            if self._closed:
                return False
            if key in self._pending:
                if urgent and key not in self._running:
                    for item in self._normal:
                        if item[0] == key:
                            self._normal.remove(item)
                            self._urgent.append(item)
                            break
                return False
            self._pending.add(key)
            (self._urgent if urgent else self._normal).append((key, work))
            self._publish()
            self._lock.notify_all()  # `wait` callers share the condition: `notify` might wake one of them
        return True

    def busy(self, keys: Iterable[str] | None = None) -> set[str]:
        """The keys (of `keys`, or all) queued or running now."""
        with self._lock:
            return set(self._pending) if keys is None else self._pending.intersection(keys)

    @property
    def idle(self) -> bool:
        with self._lock:
            return not self._pending

    def wait(self, keys: Iterable[str], timeout: float | None) -> bool:
        """Block until none of `keys` is queued or running, or `timeout` seconds passed; True if done."""
        wanted = set(keys)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending & wanted:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def take(self) -> list[Done]:
        """The items finished since the last call, in the order they finished."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def close(self, timeout: float | None = None) -> bool:
        """Take no more work, drop what has not started, and wait up to `timeout` s for the running
        items; True when none is left running (False: they are abandoned to their daemon threads)."""
        with self._lock:
            self._closed = True
            for lane in (self._urgent, self._normal):
                for key, _work in lane:
                    self._pending.discard(key)
                lane.clear()
            self._publish()
            self._lock.notify_all()
        return self.wait(self.busy(), timeout)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not (self._urgent or self._normal or self._closed):
                    self._lock.wait()
                if self._closed:
                    return
                key, work = (self._urgent or self._normal).popleft()
                self._running.add(key)
                self._publish()
            try:
                done = Done(key, value=work())
            except BaseException as error:
                log.exception("work item %s failed", key)
                done = Done(key, error=error)
            with self._lock:
                self._running.discard(key)
                self._pending.discard(key)
                self._done.append(done)
                self._publish()
                self._lock.notify_all()

    def _publish(self) -> None:
        """`queue_depth`: items waiting for a worker (running ones are not waiting)."""
        metrics.QUEUE_DEPTH.set(len(self._pending) - len(self._running))
