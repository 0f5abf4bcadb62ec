"""The fault suite (issue 13, item 6): every fault of the control plane and of the Kubernetes API the
listener must ride out, each checked for the same three things:

1. no running Agent Server is deleted (no delete of a workload, Service, volume or its data by the
   listener, and the Agent Servers' Deployments still serve the revision that was running);
2. it converges within **two cycles** after the fault ends (cycles, not seconds: time is passed in);
3. the requests it makes during the fault are bounded (asserted counts per cycle).

Two running deployments (`alpha`, `bravo`); a new revision of `alpha` is waiting when the fault starts,
so the fault hits a rollout. A fault lasts three cycles, or a long outage twelve cycles of ten minutes
(past the resync interval and the prune window).

What other modules already cover, and is not repeated here: the client's retry schedule per status
(test_client_faults.py), pruning under bad answers (test_safety_e2e.py), the Lease under conflicts
and outages (test_leader.py), SIGTERM and release (test_process.py). Watch disconnects and 410 Gone
are not listed: the listener on this branch does not watch (its access table has no `watch` verb);
they belong with the watch-based drift detection of issue 13 item 4.

The process cases at the end run the real `python -m listener` (killed with SIGKILL mid-rollout and
restarted; a leader killed with a standby taking over) and count the restarted listener's polls.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from e2e import IMAGE_1, IMAGE_2, NS, OTHER_NS, World, make_reconciler

from listener.controlplane.builders import new_image_revision
from listener.naming import ObjectNames
from tools.fakekube import DROP

POLL = timedelta(seconds=10)
LONG = timedelta(minutes=10)
PROTECTED_KINDS = {"Deployment", "StatefulSet", "PersistentVolumeClaim", "Service", "Secret"}
"""What an Agent Server and its data are made of; the listener may delete none of it during a fault
(a superseded env Secret is removed only after a rollout has finished, which no fault lets happen)."""


@dataclass
class Fleet:
    world: World
    alpha: str
    bravo: str
    names: dict[str, ObjectNames]

    def images(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for deployment_id in (self.alpha, self.bravo):
            namespace = NS if deployment_id == self.alpha else OTHER_NS
            # Read from fakekube's store, not over its API: injected faults answer every client.
            kube = self.world.kube
            kube.settle()
            kind = kube.registry.by_kind("apps/v1", "Deployment")
            api = kube.store.find(kind, namespace, self.names[deployment_id].api)
            out[deployment_id] = api["spec"]["template"]["spec"]["containers"][0]["image"] if api else None
        return out

    def listener_deletes(self, *, rolled_out: bool = False) -> list[str]:
        """The listener's deletes of anything an Agent Server is made of; once `rolled_out`, the
        superseded env Secret of alpha's old revision is the one expected removal."""
        superseded = self.names[self.alpha].env_secret + "-"
        return [
            f"{r.kind}/{r.name}"
            for r in self.world.kube.log.records(verb={"delete", "deletecollection"})
            if r.user == self.world.kube.listener.name
            and r.kind in PROTECTED_KINDS
            and not (rolled_out and r.kind == "Secret" and (r.name or "").startswith(superseded))
        ]

    def kube_requests(self) -> int:
        return self.world.kube.log.count(user=self.world.kube.listener.name)

    def converged(self) -> bool:
        statuses = {d: self.world.revision_status(d)[1] for d in (self.alpha, self.bravo)}
        return statuses == {self.alpha: "DEPLOYED", self.bravo: "DEPLOYED"} and self.images() == {
            self.alpha: IMAGE_2,
            self.bravo: IMAGE_1,
        }


@pytest.fixture
def fleet(world: World, make_client: Callable[..., object]) -> Fleet:
    # A short read timeout, so a control plane that hangs costs this test 0.2 s per attempt.
    world.client = make_client(timeout=0.2)  # type: ignore[assignment]
    world.reconciler = make_reconciler(
        world.client, world.kube, world.listener_id, world.servers, (NS, OTHER_NS)
    )
    alpha, bravo = world.deploy("alpha"), world.deploy("bravo", namespace=OTHER_NS)
    assert sorted(world.cycle().deployed) == sorted([alpha, bravo])
    world.client.patch_deployment(alpha, new_image_revision(IMAGE_2))
    return Fleet(world, alpha, bravo, {d: world.names(d) for d in (alpha, bravo)})


def ride_out(
    fleet: Fleet,
    start: Callable[[World], None],
    *,
    cycles: int = 3,
    after: timedelta = POLL,
    max_cp_per_cycle: int,
    max_kube_per_cycle: int,
    outlives_the_rollout_timeout: bool = False,
) -> None:
    """Run `cycles` cycles under the fault `start` injects, then clear it and converge in two.

    `outlives_the_rollout_timeout`: the fault lasts longer than LISTENER_ROLLOUT_TIMEOUT_SECONDS, so
    alpha's pending revision has failed at its deadline (by design) with the old one still serving;
    convergence is then measured for the next revision."""
    world = fleet.world
    start(world)
    for _ in range(cycles):
        world.emulator.requests.clear()
        kube_before = fleet.kube_requests()
        world.cycle(after=after)
        assert len(world.emulator.requests) <= max_cp_per_cycle, [r.path for r in world.emulator.requests]
        assert fleet.kube_requests() - kube_before <= max_kube_per_cycle
        assert fleet.listener_deletes(rolled_out=fleet.images()[fleet.alpha] == IMAGE_2) == []
        assert fleet.images()[fleet.bravo] == IMAGE_1  # still running
        assert fleet.images()[fleet.alpha] in (IMAGE_1, IMAGE_2)  # old or new, never gone
    world.emulator.faults.clear()
    world.kube.faults.clear()
    if outlives_the_rollout_timeout:
        world.cycle(after=POLL)
        assert world.revision_status(fleet.alpha)[1] == "DEPLOY_FAILED"
        assert fleet.images()[fleet.alpha] == IMAGE_1
        world.client.patch_deployment(fleet.alpha, new_image_revision(IMAGE_2))
    for _ in range(2):
        world.cycle(after=POLL)
        if fleet.converged():
            break
    assert fleet.converged(), {d: world.revision_status(d)[1] for d in (fleet.alpha, fleet.bravo)}
    assert fleet.listener_deletes(rolled_out=True) == []


# --- the control plane --------------------------------------------------------------------------
# Bounds: a cycle lists deployments (one page here) and reads the listener's own record; each call
# is tried at most RetryPolicy.max_attempts = 4 times (conftest), and a failed list ends the cycle.
CP_FAULT_BOUND = 4 * 3

# A page fault still lists some deployments: those roll out as usual (about 80 calls for alpha's new
# revision), and the ones left off cost the prune rules' inventory reads, never a delete.
PAGE_FAULT_KUBE_BOUND = 100

CONTROL_PLANE: dict[str, Callable[[World], None]] = {
    "5xx": lambda w: w.emulator.faults.add(kind="error", status=503, path="/v2/deployments"),
    "429 with Retry-After": lambda w: w.emulator.faults.add(
        kind="rate_limit", retry_after=2, path="/v2/deployments"
    ),
    "timeouts": lambda w: w.emulator.faults.add(kind="latency", delay=1.0, path="/v2/deployments"),
    "malformed bodies": lambda w: w.emulator.faults.add(kind="malformed_json", path="/v2/deployments"),
    "truncated bodies": lambda w: w.emulator.faults.add(kind="truncated_body", path="/v2/deployments"),
    "dropped connections": lambda w: w.emulator.faults.add(kind="drop_connection", path="/v2/deployments"),
    "truncated pages": lambda w: w.emulator.faults.add(kind="short_page", drop=1, path="/v2/deployments"),
    "sudden empty lists": lambda w: w.emulator.faults.add(
        kind="short_page", drop=100, path="/v2/deployments"
    ),
}


@pytest.mark.parametrize("fault", list(CONTROL_PLANE.values()), ids=list(CONTROL_PLANE))
def test_control_plane_fault(
    fleet: Fleet, fault: Callable[[World], None], request: pytest.FixtureRequest
) -> None:
    # Without a list nothing happens in the cluster: at most the cycle's status Event.
    pages = "pages" in request.node.callspec.id or "empty" in request.node.callspec.id
    ride_out(
        fleet,
        fault,
        max_cp_per_cycle=CP_FAULT_BOUND,
        max_kube_per_cycle=PAGE_FAULT_KUBE_BOUND if pages else 2,
    )


def test_a_429_retry_after_is_waited_not_hammered(fleet: Fleet, sleeps: object) -> None:
    fleet.world.emulator.faults.add(kind="rate_limit", retry_after=7, path="/v2/deployments", times=2)
    fleet.world.emulator.requests.clear()
    fleet.world.cycle()
    assert [r.path for r in fleet.world.emulator.requests].count("/v2/deployments") == 3
    assert sleeps.calls[-2:] == [7.0, 7.0]  # type: ignore[attr-defined]


def test_a_long_control_plane_outage_past_the_resync_and_the_prune_window(fleet: Fleet) -> None:
    ride_out(
        fleet,
        lambda w: w.emulator.faults.add(kind="error", status=502, path="/v2/.*"),
        cycles=12,
        after=LONG,
        max_cp_per_cycle=CP_FAULT_BOUND,
        max_kube_per_cycle=2,
    )


# --- the Kubernetes API ---------------------------------------------------------------------------
# Bounds: a cycle that meets an error stops that deployment's apply at the first failed call, so a
# fault costs about one object's worth of calls per deployment, never a retry storm. A full rollout
# of one deployment (no fault) is about 30 calls; a quarter of the calls of a clean cycle is enough.
KUBE_FAULT_BOUND = 40


def on_alpha(status: int | str, verb: str = "apply") -> Callable[[World], None]:
    return lambda w: w.kube.faults.inject(rf"/namespaces/{NS}/", status, times=10_000, verb=verb)


KUBERNETES: dict[str, Callable[[World], None]] = {
    "409 conflict": on_alpha(409),
    "500": on_alpha(500),
    "dropped connections": on_alpha(DROP),
    "API-server outage": lambda w: w.kube.faults.inject(r".*", 503, times=10_000),
}


@pytest.mark.parametrize("fault", list(KUBERNETES.values()), ids=list(KUBERNETES))
def test_kubernetes_fault(fleet: Fleet, fault: Callable[[World], None]) -> None:
    ride_out(fleet, fault, max_cp_per_cycle=CP_FAULT_BOUND, max_kube_per_cycle=KUBE_FAULT_BOUND)


def test_a_422_on_the_new_revision_fails_it_and_keeps_the_running_one(fleet: Fleet) -> None:
    # The API server refusing the new revision's objects is permanent for that revision: it fails
    # at once, with the old revision still serving, and the next revision rolls out normally.
    world = fleet.world
    world.kube.faults.inject(rf"/namespaces/{NS}/", 422, times=1, verb="apply")
    report = world.cycle()
    assert fleet.alpha in report.failed
    assert world.revision_status(fleet.alpha)[1] == "DEPLOY_FAILED"
    assert fleet.images() == {fleet.alpha: IMAGE_1, fleet.bravo: IMAGE_1}
    assert fleet.listener_deletes() == []
    before = fleet.kube_requests()
    world.cycle()  # no retry storm on a failed revision
    assert fleet.kube_requests() - before <= 2
    world.client.patch_deployment(fleet.alpha, new_image_revision(IMAGE_2))
    world.cycle()
    assert fleet.converged()


def test_a_long_api_server_outage_past_the_resync_and_the_prune_window(fleet: Fleet) -> None:
    ride_out(
        fleet,
        lambda w: w.kube.faults.inject(r".*", 503, times=100_000),
        cycles=12,
        after=LONG,
        max_cp_per_cycle=CP_FAULT_BOUND,
        max_kube_per_cycle=KUBE_FAULT_BOUND,
        outlives_the_rollout_timeout=True,
    )


def test_a_restart_mid_rollout_finishes_that_rollout_and_leaves_the_others_alone(fleet: Fleet) -> None:
    # The process dies after applying alpha's new revision and before it is ready: a new reconciler
    # (nothing in memory) picks the rollout up from the cluster's status annotations.
    world = fleet.world
    api = fleet.names[fleet.alpha].api
    world.kube.controller.hold_rollout(NS, api, ready=0)
    report = world.cycle()
    assert report.applied == [fleet.alpha]
    assert report.deployed == []
    world.reconciler = make_reconciler(
        world.client, world.kube, world.listener_id, world.servers, (NS, OTHER_NS)
    )
    world.kube.controller.hold_rollout(NS, api, ready=None)
    seen = len(world.kube.log.records())
    for _ in range(2):
        world.cycle()
        if fleet.converged():
            break
    assert fleet.converged()
    assert fleet.listener_deletes(rolled_out=True) == []
    after = world.kube.log.records()[seen:]
    applies = [
        f"{r.kind}/{r.name}" for r in after if r.verb == "apply" and r.user == world.kube.listener.name
    ]
    assert not any(name.startswith(fleet.names[fleet.bravo].base) for name in applies)  # bravo untouched


# --- the process ----------------------------------------------------------------------------------


def _polls(stage: object) -> int:
    return sum(1 for r in list(stage.emulator.requests) if r.path == "/v2/deployments")  # type: ignore[attr-defined]


def test_the_listener_killed_mid_rollout_and_restarted_converges_in_two_polls(tmp_path: Path) -> None:
    from test_process import ListenerProcess, start  # the same process harness

    from tools.stage import AGENTS, Stage, wait_until

    processes: list[ListenerProcess] = []
    with Stage(tmp_path) as stage:
        try:
            deployment = stage.create_deployment("support-agent")
            assert stage.listener_id is not None
            names = ObjectNames.of("support-agent", str(deployment.id))
            stage.kube.controller.hold_rollout(AGENTS, names.api, ready=0)
            first = start(stage, processes, "first")
            wait_until(
                lambda: stage.kube.log.count(verb="apply", kind="Deployment", name=names.api) > 0,
                60,
                "the first apply of the Agent Server",
            )
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
            assert stage.revision_status(deployment.id) != "DEPLOYED"
            stage.kube.controller.hold_rollout(AGENTS, names.api, ready=None)
            stage.emulator.requests.clear()
            start(stage, processes, "second")
            stage.wait_for_status(deployment.id, "DEPLOYED", timeout=60)
            assert _polls(stage) <= 2
            deletes = [
                r
                for r in stage.kube.log.records(verb="delete")
                if r.user == stage.kube.listener.name and r.kind in PROTECTED_KINDS
            ]
            assert deletes == []
        finally:
            for process in processes:
                process.kill()


def test_the_leader_killed_a_standby_takes_over_within_a_lease_and_converges(tmp_path: Path) -> None:
    from test_process import ListenerProcess, elected, start

    from tools.stage import Stage, wait_until

    processes: list[ListenerProcess] = []
    with Stage(tmp_path) as stage:
        try:
            first = stage.create_deployment("first-agent")
            a = start(stage, processes, "a", **elected(pod_name="listener-a"))
            wait_until(lambda: a.ready_as("leader"), 60, "a to lead")
            b = start(stage, processes, "b", **elected(pod_name="listener-b"))
            wait_until(lambda: b.ready_as("standby"), 60, "b to stand by")
            stage.wait_for_status(first.id, "DEPLOYED", timeout=60)
            a.proc.send_signal(signal.SIGKILL)  # no release: b must wait out the 15 s lease
            a.proc.wait(10)
            second = stage.create_deployment("second-agent")
            wait_until(lambda: b.ready_as("leader"), 15 + 2 + 5, "b to lead within a lease and a retry")
            stage.emulator.requests.clear()
            stage.wait_for_status(second.id, "DEPLOYED", timeout=60)
            assert _polls(stage) <= 2
            assert stage.revision_status(first.id) == "DEPLOYED"
            deletes = [
                r
                for r in stage.kube.log.records(verb="delete")
                if r.user == stage.kube.listener.name and r.kind in PROTECTED_KINDS
            ]
            assert deletes == []
        finally:
            for process in processes:
                process.kill()
