"""Leader election against fakekube over real HTTP, with injected clocks (no waiting, no sleeps).

The rules tested are client-go's (kubernetes/kubernetes staging/src/k8s.io/client-go/tools/
leaderelection/leaderelection.go): a candidate takes a held Lease only after the record has not
changed for leaseDurationSeconds on the candidate's own clock; the leader steps down when no renewal
succeeded for the renew deadline; release leaves an empty holder with leaseDurationSeconds 1; every
write is a PUT with the resourceVersion read, so racing candidates get 409 Conflict. Defaults are
controller-runtime's (pkg/manager/manager.go: 15 s / 10 s / 2 s).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lightkube import Client

from listener.controlplane import ControlPlaneError, LoggingStatusReporter
from listener.kube import OWN_NAMESPACE_RULES, Cluster, ClusterError, NotLeader, UndeclaredAccess
from listener.leader import FencedReporter, LeaderElector, LeaseConfig
from tools.fakekube import FakeKube

OWN = "langsmith"
WATCHED = "agents"
LEASE = "langsmith-listener-test"
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@dataclass
class Clock:
    """A monotonic clock shared by the candidates (same rate), with a per-candidate wall-clock skew."""

    now: float = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def monotonic(self) -> float:
        return self.now

    def wall(self, skew: timedelta = timedelta()) -> datetime:
        return datetime(2026, 11, 28, 12, 0, tzinfo=UTC) + timedelta(seconds=self.now) + skew


@dataclass
class Cluster_:
    kube: FakeKube
    clock: Clock
    clients: list[Client] = field(default_factory=list)

    def client(self, namespace: str = OWN) -> Client:
        client = self.kube.client(namespace)
        self.clients.append(client)
        return client

    def elector(
        self, identity: str, *, skew: timedelta = timedelta(), cluster: Cluster | None = None
    ) -> LeaderElector:
        return LeaderElector(
            cluster or Cluster(self.client(), rules=OWN_NAMESPACE_RULES),
            LeaseConfig(namespace=OWN, name=LEASE, identity=identity),
            monotonic=self.clock.monotonic,
            wall=lambda: self.clock.wall(skew),
        )

    def lease(self) -> dict[str, Any]:
        found = Cluster(self.client(), rules=OWN_NAMESPACE_RULES).get(
            "coordination.k8s.io/v1", "Lease", OWN, LEASE
        )
        assert found is not None
        return found


@pytest.fixture
def env() -> Iterator[Cluster_]:
    with FakeKube([OWN, WATCHED]) as kube:
        env = Cluster_(kube, Clock())
        yield env
        for client in env.clients:
            client.close()


def secret(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": WATCHED}}


def test_the_first_candidate_creates_the_lease_and_the_second_stands_by(env: Cluster_) -> None:
    a, b = env.elector("listener-a"), env.elector("listener-b")
    assert a.step() is True
    assert b.step() is False
    assert (a.is_leader(), b.is_leader()) == (True, False)
    assert b.holder() == "listener-a"
    spec = env.lease()["spec"]
    assert spec["holderIdentity"] == "listener-a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    # The API server's Lease validation: leaseDurationSeconds > 0, leaseTransitions >= 0, MicroTime.
    assert MICRO_TIME.match(spec["renewTime"])
    assert MICRO_TIME.match(spec["acquireTime"])
    assert a.term == 1
    assert b.term == 0


def test_a_standby_takes_over_one_lease_after_the_last_renewal_it_saw(env: Cluster_) -> None:
    a, b = env.elector("listener-a"), env.elector("listener-b")
    a.step()
    b.step()  # b first sees the record now
    env.clock.advance(9.9)
    assert a.may_write()  # within the renew deadline
    env.clock.advance(0.1)
    assert not a.may_write()  # 10 s without a renewal: a stopped writing before anyone may take over
    env.clock.advance(4.9)
    assert b.step() is False  # 14.9 s: the lease still counts
    env.clock.advance(0.1)
    assert b.step() is True  # 15 s after b saw the last change
    spec = env.lease()["spec"]
    assert spec["holderIdentity"] == "listener-b"
    assert spec["leaseTransitions"] == 1
    assert a.step() is False
    assert not a.is_leader()
    assert a.holder() == "listener-b"


@pytest.mark.parametrize(
    ("skew_a", "skew_b"),
    [
        (timedelta(), timedelta()),
        (timedelta(hours=-1), timedelta(hours=1)),  # b's wall clock two hours ahead of a's
        (timedelta(hours=1), timedelta(hours=-1)),
    ],
)
def test_wall_clock_skew_neither_deposes_a_renewing_leader_nor_delays_a_takeover(
    env: Cluster_, skew_a: timedelta, skew_b: timedelta
) -> None:
    a, b = env.elector("listener-a", skew=skew_a), env.elector("listener-b", skew=skew_b)
    assert a.step()
    for _ in range(30):  # a minute of renewals every 2 s
        env.clock.advance(2)
        assert a.step() is True
        assert b.step() is False
    # a dies: b takes over exactly one lease after the last change it saw, whatever renewTime says.
    env.clock.advance(14.9)
    assert b.step() is False
    env.clock.advance(0.1)
    assert b.step() is True


def test_an_api_server_outage_during_renewal_steps_the_leader_down_and_stops_its_writes(
    env: Cluster_,
) -> None:
    a = env.elector("listener-a")
    workloads = Cluster(env.client(WATCHED), fence=a.may_write)
    assert a.step()
    workloads.apply(secret("before"))
    env.kube.faults.inject(r"/leases", 503, times=1000)  # every Lease request fails from now on
    env.kube.log.clear()
    for _ in range(4):  # 8 s of failed renewals: still within the renew deadline
        env.clock.advance(2)
        assert a.step() is False
        assert a.is_leader()
    workloads.apply(secret("during"))
    env.clock.advance(2)  # 10 s since the last renewal
    assert a.step() is False
    assert not a.is_leader()
    writes_before = len(env.kube.log.writes())
    with pytest.raises(NotLeader, match="not the leader"):
        workloads.apply(secret("after"))
    with pytest.raises(NotLeader):
        workloads.delete("v1", "Secret", WATCHED, "before")
    assert len(env.kube.log.writes()) == writes_before  # refused before reaching the API server
    assert workloads.get("v1", "Secret", WATCHED, "before") is not None  # reads still work
    # The API server comes back: a re-acquires (a new term: its earlier state may be stale).
    env.kube.faults.clear()
    env.clock.advance(2)
    assert a.step() is True
    assert a.term == 2
    workloads.apply(secret("after"))


def test_release_on_shutdown_lets_a_standby_take_over_at_once(env: Cluster_) -> None:
    a, b = env.elector("listener-a"), env.elector("listener-b")
    a.step()
    b.step()
    assert a.release() is True
    spec = env.lease()["spec"]
    assert spec.get("holderIdentity") in (None, "")
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 0
    assert not a.may_write()
    assert b.step() is True  # no waiting: the holder is empty
    assert env.lease()["spec"]["leaseTransitions"] == 1
    env.clock.advance(30)
    assert a.step() is False  # a released leader never comes back in this process


def test_release_does_not_touch_a_lease_someone_else_holds(env: Cluster_) -> None:
    a, b = env.elector("listener-a"), env.elector("listener-b")
    a.step()
    b.step()
    env.clock.advance(15)
    assert b.step() is True
    # a never re-read the Lease: its release PUT carries a stale resourceVersion and is refused (409).
    assert a.release() is False
    assert env.lease()["spec"]["holderIdentity"] == "listener-b"


class Racing(Cluster):
    """Runs `before_write` just before this candidate's Lease write: a deterministic race."""

    def __init__(self, client: Client, before_write: Any) -> None:
        super().__init__(client, rules=OWN_NAMESPACE_RULES)
        self.before_write = before_write

    def create(self, manifest: Any) -> dict[str, Any]:
        self.before_write()
        return super().create(manifest)

    def replace(self, manifest: Any) -> dict[str, Any]:
        self.before_write()
        return super().replace(manifest)


def test_two_candidates_creating_the_lease_at_once_one_gets_409(env: Cluster_) -> None:
    a = env.elector("listener-a")
    b = env.elector("listener-b", cluster=Racing(env.client(), before_write=a.step))
    assert b.step() is False  # b saw no Lease, a created it first, b's create answered 409
    assert a.is_leader()
    assert not b.is_leader()
    creates = env.kube.log.records(verb="create", kind="Lease")
    assert [r.status for r in creates] == [201, 409]


def test_two_candidates_taking_an_expired_lease_at_once_one_gets_409(env: Cluster_) -> None:
    old = env.elector("listener-old")
    a = env.elector("listener-a")
    b = env.elector("listener-b", cluster=Racing(env.client(), before_write=a.step))
    old.step()
    a.step()
    b.step()  # held by old and not expired: b writes nothing, so its race hook does not run yet
    env.clock.advance(15)
    env.kube.log.clear()
    assert b.step() is False  # b read rv X; a took the lease (rv Y); b's PUT with rv X -> 409
    assert a.is_leader()
    assert not b.is_leader()
    assert env.lease()["spec"]["holderIdentity"] == "listener-a"
    updates = env.kube.log.records(verb="update", kind="Lease")
    assert [r.status for r in updates] == [200, 409]


def test_a_restarted_replica_with_the_same_identity_resumes_at_once(env: Cluster_) -> None:
    env.elector("listener-a").step()
    again = env.elector("listener-a")  # the container restarted; the pod (and its name) stayed
    assert again.step() is True
    assert env.lease()["spec"]["leaseTransitions"] == 0


def test_the_elector_needs_only_the_lease_rules_of_its_own_namespace(env: Cluster_) -> None:
    assert any(r.allows("coordination.k8s.io", "leases", "update") for r in OWN_NAMESPACE_RULES)
    workload_rules = env.elector("x", cluster=Cluster(env.client()))  # WATCHED_NAMESPACE_RULES only
    with pytest.raises(UndeclaredAccess, match="leases"):
        workload_rules.step()


def test_status_reports_are_fenced_too(env: Cluster_) -> None:
    a = env.elector("listener-a")
    fenced = FencedReporter(LoggingStatusReporter(), a.may_write)
    deployment, revision = "7d1f7a39-2c51-4b51-9a57-9df1b0a6f2a1", "0e3f0b3e-64a4-4a4b-8c36-5f3b1e9b7c11"
    with pytest.raises(ControlPlaneError, match="not the leader"):
        fenced.report(deployment, revision, "DEPLOYED")
    a.step()
    fenced.report(deployment, revision, "DEPLOYED")


def test_lease_timings_must_nest() -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        LeaseConfig(namespace=OWN, name=LEASE, identity="a", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="identity"):
        LeaseConfig(namespace=OWN, name=LEASE, identity="")


def test_cluster_errors_during_election_are_contained(env: Cluster_) -> None:
    a = env.elector("listener-a")
    env.kube.faults.inject(r"/leases", "drop", times=1)
    assert a.step() is False  # a dropped connection is one failed attempt, not an exception
    assert a.step() is True
    assert isinstance(NotLeader("apply", "x"), ClusterError)
