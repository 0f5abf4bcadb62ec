"""Leader election over a Kubernetes Lease (coordination.k8s.io/v1), the way client-go does it.

Several listener replicas may run; one leads (polls and writes), the others stand by and take over
within one lease duration when the leader stops renewing. The algorithm is client-go's
`tools/leaderelection` (kubernetes/kubernetes `staging/src/k8s.io/client-go/tools/leaderelection/
leaderelection.go`, `tryAcquireOrRenew`, `renew`, `release`) with controller-runtime's defaults
(`pkg/manager/manager.go`: LeaseDuration 15 s, RenewDeadline 10 s, RetryPeriod 2 s):

* A candidate reads the Lease. It may take it when nobody holds it (`holderIdentity` empty, as a
  release leaves it) or when the record has not changed for `leaseDurationSeconds` **as measured
  on the candidate's own clock since it last saw the record change** -- never by comparing the
  record's `renewTime` with its own wall clock, so clock skew between nodes does not matter
  (client-go `doc.go`: "tolerant to arbitrary clock skew, but not to arbitrary clock skew rate").
* Every write of the Lease is a PUT carrying the `resourceVersion` that was read: when two
  candidates race, the API server accepts one and answers 409 Conflict to the other.
* The leader renews every `retry_period`. If no renewal succeeds for `renew_deadline` it steps
  down: `may_write()` turns false, so `listener.kube.Cluster` (given it as its fence) refuses every
  write before sending it. A standby can take over only `lease_duration` after the last renewal
  it saw, which is after our last successful renewal was sent; the 5 s between the two deadlines
  bound how long a write already in flight may still land (the service sets the Kubernetes
  client's timeout to that gap).
* On shutdown the leader releases the Lease (empty holder, `leaseDurationSeconds: 1`), so a
  standby takes over at its next retry instead of waiting out the lease.

Time is injected (`monotonic` for deadlines, `wall` for the record's timestamps) and `step()` runs
one attempt, so tests drive elections deterministically; `start()` runs the loop in a thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from listener.controlplane import ControlPlaneError, StatusReporter
from listener.controlplane.status import DataPlaneStatus
from listener.kube import Cluster, ClusterError

log = logging.getLogger(__name__)

LEASE_API_VERSION = "coordination.k8s.io/v1"
JITTER_FACTOR = 1.2
"""client-go's `JitterFactor`: a candidate waits retry_period * (1 + U[0, 1.2)) between attempts."""


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    """This process's holder identity (the pod name and a random suffix, as controller-runtime)."""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration")
        if not self.identity:
            raise ValueError("the holder identity must not be empty")


def micro_time(moment: datetime) -> str:
    """Kubernetes MicroTime (RFC 3339, six fractional digits, UTC) that survives lightkube.

    The API server parses MicroTime with exactly six fractional digits (apimachinery
    `pkg/apis/meta/v1/micro_time.go`, RFC3339Micro), but lightkube serialises a datetime whose
    microsecond is 0 without a fraction ("...:40Z"), which the server rejects. One microsecond
    later is the same instant for a Lease."""
    moment = moment.astimezone(UTC)
    if not moment.microsecond:
        moment = moment.replace(microsecond=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        cluster: Cluster,
        config: LeaseConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ):
        self.config = config
        self._cluster = cluster
        self._monotonic = monotonic
        self._wall = wall
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._lock = threading.Lock()
        self._observed_spec: dict[str, Any] | None = None
        self._observed_at: float | None = None
        self._lease: dict[str, Any] | None = None
        """The Lease as last read or written: its resourceVersion makes our next PUT a compare-and-swap."""
        self._renewed_at: float | None = None
        """When the request of our last successful acquire/renew was sent; None while not leading."""
        self._last_contact: float | None = None
        self._resigned = False
        self.term = 0
        """Counts acquisitions: a new term means state from an earlier term may be stale."""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- what the rest of the listener asks -------------------------------------------------

    def is_leader(self) -> bool:
        with self._lock:
            return self._leading(self._monotonic())

    may_write = is_leader
    """The fence for `listener.kube.Cluster`: writes are allowed exactly while we lead."""

    def healthy(self) -> bool:
        """The API server answered an election request within the renew deadline (leader or standby)."""
        with self._lock:
            return (
                self._last_contact is not None
                and self._monotonic() - self._last_contact < self.config.renew_deadline
            )

    def holder(self) -> str:
        """The holder identity last observed ('' when released or unknown)."""
        with self._lock:
            return str((self._observed_spec or {}).get("holderIdentity") or "")

    # --- one attempt ------------------------------------------------------------------------

    def step(self) -> bool:
        """One tryAcquireOrRenew: True when we hold the Lease afterwards."""
        sent = self._monotonic()
        try:
            leading = self._try_acquire_or_renew(sent)
        except ClusterError as error:
            log.warning("leader election: %s", error)
            leading = False
        with self._lock:
            now = self._monotonic()
            if self._renewed_at is not None and not self._leading(now):
                log.warning(
                    "leader election: no renewal of lease %s/%s for %.0f s; stepping down",
                    self.config.namespace,
                    self.config.name,
                    now - self._renewed_at,
                )
                self._renewed_at = None
        return leading

    def _leading(self, now: float) -> bool:
        return (
            not self._resigned
            and self._renewed_at is not None
            and now - self._renewed_at < self.config.renew_deadline
        )

    def _record(self, now: datetime, acquire: datetime, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": int(self.config.lease_duration),
            "acquireTime": micro_time(acquire),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        }

    def _try_acquire_or_renew(self, sent: float) -> bool:
        if self._resigned:
            return False
        now = self._wall()
        lease = self._cluster.get(LEASE_API_VERSION, "Lease", self.config.namespace, self.config.name)
        with self._lock:
            self._last_contact = self._monotonic()
        if lease is None:
            created = self._cluster.create(
                {
                    "apiVersion": LEASE_API_VERSION,
                    "kind": "Lease",
                    "metadata": {"name": self.config.name, "namespace": self.config.namespace},
                    "spec": self._record(now, now, 0),
                }
            )
            return self._won(created, sent)

        spec = lease.get("spec") or {}
        with self._lock:
            self._lease = lease
            if spec != self._observed_spec:
                self._observed_spec = spec
                self._observed_at = self._monotonic()
            ours = spec.get("holderIdentity") == self.config.identity
            expired = self._observed_at is not None and (
                self._monotonic() - self._observed_at >= float(spec.get("leaseDurationSeconds") or 0)
            )
            if not ours and self._renewed_at is not None:
                # Someone else wrote the Lease: they lead now, whatever our deadline says.
                log.warning("leader election: lease taken by %r; stepping down", spec.get("holderIdentity"))
                self._renewed_at = None
            renewing = ours and self._renewed_at is not None
        if spec.get("holderIdentity") and not ours and not expired:
            return False
        if renewing:
            record = self._record(now, _parse_time(spec.get("acquireTime")) or now, _transitions(spec))
        else:
            # Acquiring: a new term, even when the record still names us (we had stepped down).
            record = self._record(now, now, _transitions(spec) + (0 if ours else 1))
        replaced = self._cluster.replace(
            {
                "apiVersion": LEASE_API_VERSION,
                "kind": "Lease",
                "metadata": {
                    "name": self.config.name,
                    "namespace": self.config.namespace,
                    "resourceVersion": lease["metadata"]["resourceVersion"],
                },
                "spec": record,
            }
        )
        return self._won(replaced, sent)

    def _won(self, lease: dict[str, Any], sent: float) -> bool:
        with self._lock:
            if self._resigned:
                return False
            if self._renewed_at is None:
                self.term += 1
                log.info(
                    "leader election: %s now leads (lease %s/%s, term %d)",
                    self.config.identity,
                    self.config.namespace,
                    self.config.name,
                    self.term,
                )
            self._renewed_at = sent
            self._lease = lease
            self._observed_spec = lease.get("spec") or {}
            self._observed_at = self._monotonic()
            self._last_contact = self._observed_at
        return True

    # --- giving it up -----------------------------------------------------------------------

    def resign(self) -> None:
        """Stop leading at once (no more writes) without touching the Lease; never leads again."""
        with self._lock:
            self._resigned = True
            self._renewed_at = None

    def release(self) -> bool:
        """Resign, then hand the Lease back (empty holder) if we still hold it, so a standby takes
        over at its next attempt. Call it only once nothing of ours can still write."""
        with self._lock:
            held = self._lease
            self._resigned = True
            self._renewed_at = None
        if held is None or (held.get("spec") or {}).get("holderIdentity") != self.config.identity:
            return True
        now = self._wall()
        spec = held.get("spec") or {}
        try:
            self._cluster.replace(
                {
                    "apiVersion": LEASE_API_VERSION,
                    "kind": "Lease",
                    "metadata": {
                        "name": self.config.name,
                        "namespace": self.config.namespace,
                        "resourceVersion": held["metadata"]["resourceVersion"],
                    },
                    # client-go's release(): no holder, 1 s duration, transitions kept.
                    "spec": {
                        "leaseDurationSeconds": 1,
                        "acquireTime": micro_time(now),
                        "renewTime": micro_time(now),
                        "leaseTransitions": _transitions(spec),
                    },
                }
            )
        except ClusterError as error:
            # 409: someone else wrote it since our last renewal -- it is not ours to release.
            log.warning("leader election: could not release the lease: %s", error)
            return False
        log.info("leader election: released lease %s/%s", self.config.namespace, self.config.name)
        return True

    # --- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Attempt every retry period (jittered while standing by, like client-go) until `stop`."""
        while not stop.is_set() and not self._resigned:
            try:
                leading = self.step()
            except Exception:  # a bug in one attempt must not end elections for this process
                log.exception("leader election: attempt failed")
                leading = False
            period = self.config.retry_period
            stop.wait(period if leading else period * (1 + self._rng.random() * JITTER_FACTOR))

    def acquire(self, stop: threading.Event, timeout: float) -> bool:
        """Attempt until we lead, `stop` is set or `timeout` seconds pass (for one-shot runs)."""
        deadline = self._monotonic() + timeout
        while not stop.is_set():
            if self.step():
                return True
            if self._monotonic() >= deadline:
                return False
            stop.wait(self.config.retry_period)
        return False

    def start(self) -> LeaderElector:
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name="leader-election", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, *, release: bool, timeout: float = 5.0) -> None:
        """End the loop; with `release`, hand the Lease back (see `release`), else just resign."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if release:
            self.release()
        else:
            self.resign()


def _transitions(spec: dict[str, Any]) -> int:
    value = spec.get("leaseTransitions")
    return value if isinstance(value, int) and value >= 0 else 0


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class FencedReporter:
    """Status reports to the control plane are writes too: a replica that does not lead withholds
    them (as a `ControlPlaneError`, so the reconciler keeps them for a later attempt)."""

    def __init__(self, inner: StatusReporter, may_write: Callable[[], bool]):
        self._inner = inner
        self._may_write = may_write

    def report(
        self,
        deployment_id: UUID | str,
        revision_id: UUID | str,
        status: DataPlaneStatus,
        reason: str | None = None,
    ) -> None:
        if not self._may_write():
            raise ControlPlaneError(f"not the leader: {status} for {deployment_id} withheld")
        self._inner.report(deployment_id, revision_id, status, reason)
