"""The service loop: its schedule, its wiring from settings, and the live loop in a thread.

The live loop runs `Service.run(stop)` for real (wall clock, 1 s poll) against the emulator and the
fake cluster. The test synchronises only on what the loop reports (`on_cycle` into a queue, and a
clock hook that counts cycle starts), with a bounded wait on every step; it never sleeps.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from e2e import IMAGE_1, IMAGE_2, NS, AgentServers, prepared_cluster

from listener import __version__
from listener.controlplane import ControlPlaneClient, EmulatorStatusReporter, LoggingStatusReporter
from listener.controlplane.builders import external_docker_deployment, new_image_revision
from listener.emulator import BackgroundServer, Emulator
from listener.kube import Cluster
from listener.reconcile import CycleReport, Reconciler
from listener.service import (
    ROLLOUT_TICK_SECONDS,
    HttpProber,
    Service,
    control_plane_client,
    next_delay,
    platform,
    prober,
    reconciler_config,
    reporter,
)
from listener.settings import Settings, load_settings
from listener.spec import ExternalStores

API_KEY_FOR_SETTINGS = "lsv2_sk_service_test_key_0123456789"
WAIT = 30.0
"""Upper bound for any single wait on the loop thread: generous for a loaded 2-core runner, and a
hang fails the test instead of blocking the suite."""


def base_env(**overrides: str) -> dict[str, str]:
    environ = {
        "LISTENER_API_KEY": API_KEY_FOR_SETTINGS,
        "LISTENER_WORKSPACE_ID": "0a000000-0000-4000-8000-00000000000a",
        "LISTENER_LISTENER_ID": "0b000000-0000-4000-8000-00000000000b",
        "LISTENER_CONTROL_PLANE_URL": "http://127.0.0.1:9",
        "LISTENER_NAMESPACES": NS,
    }
    environ.update({f"LISTENER_{k.upper()}": v for k, v in overrides.items()})
    return environ


def rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - seeded jitter under test, not security


# --- next_delay --------------------------------------------------------------------------------


@pytest.mark.parametrize(("poll", "jitter"), [(10.0, 0.1), (1.0, 0.5), (300.0, 0.25)])
def test_next_delay_stays_within_poll_plus_minus_jitter(poll: float, jitter: float) -> None:
    settings = load_settings(base_env(poll_interval_seconds=str(poll), poll_jitter=str(jitter)))
    delays = [next_delay(settings, False, rng(seed)) for seed in range(500)]
    low, high = poll * (1 - jitter), poll * (1 + jitter)
    assert all(low <= d <= high for d in delays), (min(delays), max(delays))
    # The jitter is real (listeners started together drift apart) and spans most of the window.
    assert max(delays) - min(delays) > poll * jitter


def test_next_delay_is_reproducible_and_exact_without_jitter() -> None:
    settings = load_settings(base_env(poll_interval_seconds="7", poll_jitter="0.2"))
    assert next_delay(settings, False, rng(42)) == next_delay(settings, False, rng(42))
    flat = load_settings(base_env(poll_interval_seconds="7", poll_jitter="0"))
    assert {next_delay(flat, False, rng(seed)) for seed in range(50)} == {7.0}


@pytest.mark.parametrize(("poll", "expected"), [(10.0, ROLLOUT_TICK_SECONDS), (600.0, 2.0), (1.0, 1.0)])
def test_next_delay_ticks_short_while_a_rollout_is_in_progress(poll: float, expected: float) -> None:
    settings = load_settings(
        base_env(poll_interval_seconds=str(poll), prune_window_seconds=str(max(poll, 300)))
    )
    # No jitter on the tick, and never longer than the poll itself.
    assert {next_delay(settings, True, rng(seed)) for seed in range(50)} == {expected}


# --- wiring from settings ----------------------------------------------------------------------


def test_platform_from_settings(caplog: pytest.LogCaptureFixture) -> None:
    # An emulator/unknown URL has no known LangSmith API: tracing off and no key, never the public
    # default (issue 10), with a warning that says how to fix it.
    with caplog.at_level(logging.WARNING, logger="listener.service"):
        by_url = platform(load_settings(base_env()))
    assert by_url.listener_id == "0b000000-0000-4000-8000-00000000000b"
    assert by_url.langsmith_endpoint is None
    assert by_url.api_key is None
    assert not by_url.traced
    assert "LISTENER_LANGSMITH_ENDPOINT" in caplog.text
    assert by_url.external_stores is None

    environ = base_env(region="eu")
    del environ["LISTENER_CONTROL_PLANE_URL"]
    eu = platform(load_settings(environ))
    assert eu.langsmith_endpoint == "https://eu.api.smith.langchain.com"
    assert eu.api_key is not None
    assert eu.api_key.value == API_KEY_FOR_SETTINGS


@pytest.mark.parametrize(
    ("overrides", "endpoint"),
    [
        # docs.langchain.com/langsmith/self-host-usage: control plane at /api-host, API at /api/v1.
        (
            {"control_plane_url": "https://langsmith.example.com/api-host"},
            "https://langsmith.example.com/api/v1",
        ),
        ({"control_plane_url": "https://example.com/ls/api-host/"}, "https://example.com/ls/api/v1"),
        ({"control_plane_url": "https://api.host.langchain.com"}, "https://api.smith.langchain.com"),
        (
            {"control_plane_url": "http://127.0.0.1:9", "langsmith_endpoint": "https://ls.internal/api/v1/"},
            "https://ls.internal/api/v1",
        ),
    ],
)
def test_langsmith_endpoint_belongs_to_the_control_plane(overrides: dict[str, str], endpoint: str) -> None:
    from listener.desired import Placement, agent_server_spec

    environ = base_env(**overrides)
    settings = load_settings(environ)
    wired = platform(settings)
    assert wired.langsmith_endpoint == endpoint
    assert wired.traced
    from test_desired import deployment

    spec = agent_server_spec(Placement(deployment(), NS), wired, None)
    env = dict(spec.platform_env)
    assert env["LANGSMITH_ENDPOINT"] == env["LANGCHAIN_ENDPOINT"] == endpoint
    assert env["LANGSMITH_TRACING"] == "true"
    assert dict(spec.platform_secrets)["LANGSMITH_API_KEY"].value == API_KEY_FOR_SETTINGS


def test_a_self_hosted_url_without_a_known_api_turns_tracing_off() -> None:
    from test_desired import deployment

    from listener.desired import Placement, agent_server_spec

    settings = load_settings(base_env(control_plane_url="https://langsmith.example.com/other"))
    spec = agent_server_spec(Placement(deployment(), NS), platform(settings), None)
    env = dict(spec.platform_env)
    assert env["LANGSMITH_TRACING"] == env["LANGCHAIN_TRACING_V2"] == "false"
    assert "LANGSMITH_ENDPOINT" not in env
    assert spec.platform_secrets == (), "the key never goes to a service it does not belong to"


def test_external_store_mode_wires_the_stores_secret() -> None:
    # Without this every deployment fails to render ("store_mode 'external' needs spec.external_stores").
    settings = load_settings(base_env(store_mode="external", external_stores_secret="agent-stores"))
    assert platform(settings).external_stores == ExternalStores(secret_name="agent-stores")
    config = reconciler_config(settings)
    assert config.platform.external_stores == ExternalStores(secret_name="agent-stores")
    assert config.options.store_mode == "external"


def test_reporter_follows_status_reporting() -> None:
    with control_plane_client(load_settings(base_env())) as client:
        assert isinstance(
            reporter(load_settings(base_env(status_reporting="emulator")), client), EmulatorStatusReporter
        )
        for mode in ("heartbeat", "off"):
            assert isinstance(
                reporter(load_settings(base_env(status_reporting=mode)), client), LoggingStatusReporter
            )


# --- the live loop -----------------------------------------------------------------------------


class Loop:
    """`Service.run(stop)` in a thread, observed through `on_cycle` reports and counted cycle starts."""

    def __init__(self, service_of: Callable[..., Service]) -> None:
        self.reports: queue.Queue[CycleReport] = queue.Queue()
        self.started = 0
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.service = service_of(clock=self._clock, on_cycle=self.reports.put)
        self._thread = threading.Thread(target=self.service.run, args=(self.stop,), name="listener-loop")

    def _clock(self) -> datetime:
        # Service.cycle() reads the clock first thing, so this counts cycles as they *start*.
        with self._lock:
            self.started += 1
        return datetime.now(UTC)

    def cycles_started(self) -> int:
        with self._lock:
            return self.started

    def __enter__(self) -> Loop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self._thread.join(timeout=WAIT)
        assert not self._thread.is_alive(), "the loop did not stop within the bound after stop.set()"

    def next_report(self) -> CycleReport:
        try:
            return self.reports.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no cycle reported within {WAIT} s (is the loop thread alive?)") from None

    def until(self, predicate: Callable[[CycleReport], bool], *, max_cycles: int = 10) -> list[CycleReport]:
        """Reports up to and including the first that satisfies `predicate` (bounded in cycles and time)."""
        seen: list[CycleReport] = []
        for _ in range(max_cycles):
            seen.append(self.next_report())
            if predicate(seen[-1]):
                return seen
        raise AssertionError(f"not satisfied within {max_cycles} cycles: {seen}")


@pytest.fixture
def live(server: BackgroundServer, emulator: Emulator) -> Iterator[dict[str, Any]]:
    servers = AgentServers()
    with prepared_cluster(NS) as kube:
        environ = {
            "LISTENER_API_KEY": server.emulator.api_key,
            "LISTENER_WORKSPACE_ID": server.emulator.tenant_id,
            "LISTENER_CONTROL_PLANE_URL": server.url,
            "LISTENER_NAMESPACES": NS,
            "LISTENER_POLL_INTERVAL_SECONDS": "1",
            "LISTENER_STATUS_REPORTING": "emulator",
        }
        # The listener record must exist first: its id is part of the settings.
        with control_plane_client(
            load_settings({**environ, "LISTENER_LISTENER_ID": "00000000-0000-4000-8000-000000000000"})
        ) as admin:
            listener = admin.create_listener(compute_id="live-loop", namespaces=[NS])
        settings = load_settings({**environ, "LISTENER_LISTENER_ID": str(listener.id)})
        client = control_plane_client(settings)
        cluster = Cluster(kube.client(NS))
        prober = HttpProber(servers.url_for)
        reconciler = Reconciler(
            reconciler_config(settings), client, cluster, reporter(settings, client), prober
        )
        try:
            yield {"settings": settings, "client": client, "reconciler": reconciler, "emulator": emulator}
        finally:
            prober.close()
            client.close()
            servers.close()


def test_live_loop_applies_a_new_revision_within_one_poll_and_reports_it_deployed(
    live: dict[str, Any],
) -> None:
    settings: Settings = live["settings"]
    client: ControlPlaneClient = live["client"]
    emulator: Emulator = live["emulator"]
    listener_id = str(settings.listener_id)

    def service_of(**hooks: Any) -> Service:
        return Service(settings, live["reconciler"], client, rng=rng(7), **hooks)

    deployment_id = str(
        client.create_deployment(
            external_docker_deployment(
                name="looped", image_uri=IMAGE_1, listener_id=listener_id, k8s_namespace=NS
            )
        ).id
    )
    with Loop(service_of) as loop:
        first = loop.until(lambda r: deployment_id in r.deployed)
        assert all(not r.errors and not r.failed for r in first), first
        deployment = client.get_deployment(deployment_id)
        first_revision = client.get_revision(deployment_id, deployment.latest_revision_id)  # type: ignore[arg-type]
        assert str(first_revision.status) == "DEPLOYED"

        patched = client.patch_deployment(deployment_id, new_image_revision(IMAGE_2))
        assert patched.latest_revision_id != first_revision.id
        # Every cycle that starts after the PATCH returned sees the new revision; one may already be
        # under way (it sees it or not, depending on whether its list came before the PATCH).
        started_at_patch = loop.cycles_started()
        later = loop.until(lambda r: deployment_id in r.deployed)
        # Reports arrive one per cycle, in order, and `until` consumes them in order.
        cycle_of_deployed = len(first) + len(later)

    assert cycle_of_deployed <= started_at_patch + 1, (
        "the new revision must be applied and DEPLOYED by the first cycle that starts after the PATCH "
        f"(cycles started at PATCH: {started_at_patch}, DEPLOYED in cycle {cycle_of_deployed})"
    )
    assert later[-1].applied == [deployment_id]
    assert all(not r.errors and not r.failed for r in later), later
    revision = client.get_revision(deployment_id, patched.latest_revision_id)  # type: ignore[arg-type]
    assert str(revision.status) == "DEPLOYED"
    assert str(client.get_deployment(deployment_id).active_revision_id) == str(patched.latest_revision_id)

    # The heartbeat: once (it is due every 60 s, the test runs a few seconds), carrying our version.
    heartbeats = [
        r for r in emulator.requests if r.method == "PATCH" and r.path == f"/v2/listeners/{listener_id}"
    ]
    assert len(heartbeats) == 1
    assert client.get_listener(listener_id).version == __version__


class FlakyReconciler:
    """Duck-types the reconciler for `Service`: the first cycle raises, the following ones succeed."""

    in_progress = True  # ask for the short tick, so the test is not waiting on the full poll

    def __init__(self) -> None:
        self.calls = 0
        self.records: dict[str, Any] = {}  # the service reads it for the deployments-by-state metric

    def run_once(self, now: datetime, *, wait: float | None = None, poll: bool = True) -> CycleReport:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("boom: a bug in one cycle")
        return CycleReport(applied=[f"cycle-{self.calls}"])

    def close(self, timeout: float | None = None) -> bool:
        return True


def test_the_loop_survives_an_exception_inside_a_cycle(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(base_env(poll_interval_seconds="1", status_reporting="off"))
    flaky = FlakyReconciler()

    def service_of(**hooks: Any) -> Service:
        # status_reporting=off: no heartbeat, so the client is never used (nothing listens on :9).
        with control_plane_client(settings) as unused:
            return Service(settings, flaky, unused, **hooks)  # type: ignore[arg-type]

    with caplog.at_level(logging.ERROR, logger="listener.service"), Loop(service_of) as loop:
        after = [loop.next_report(), loop.next_report()]

    assert [r.applied for r in after] == [["cycle-2"], ["cycle-3"]]
    failures = [r for r in caplog.records if r.getMessage() == "reconcile cycle failed"]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert "boom" in str(failures[0].exc_info[1])


def test_a_failing_on_cycle_hook_does_not_stop_the_loop() -> None:
    settings = load_settings(base_env(poll_interval_seconds="1", status_reporting="off"))
    flaky = FlakyReconciler()
    flaky.calls = 1  # no exception from the reconciler itself
    seen: queue.Queue[CycleReport] = queue.Queue()

    def hook(report: CycleReport) -> None:
        seen.put(report)
        if len(report.applied) == 1 and report.applied[0] == "cycle-2":
            raise ValueError("a broken observer")

    stop = threading.Event()
    with control_plane_client(settings) as unused:
        service = Service(settings, flaky, unused, on_cycle=hook)  # type: ignore[arg-type]
    thread = threading.Thread(target=service.run, args=(stop,))
    thread.start()
    try:
        assert seen.get(timeout=WAIT).applied == ["cycle-2"]
        assert seen.get(timeout=WAIT).applied == ["cycle-3"]
    finally:
        stop.set()
        thread.join(timeout=WAIT)
    assert not thread.is_alive()


class RollingReconciler:
    """Duck-types the reconciler: a rollout is always under way; records whether each cycle polled."""

    in_progress = True

    def __init__(self, cycles: queue.Queue[bool]) -> None:
        self.records: dict[str, Any] = {}
        self._cycles = cycles

    def run_once(self, now: datetime, *, wait: float | None = None, poll: bool = True) -> CycleReport:
        self._cycles.put(poll)
        return CycleReport()

    def close(self, timeout: float | None = None) -> bool:
        return True


def test_rollouts_tick_between_polls_and_the_poll_keeps_its_rhythm() -> None:
    """Poll every 3 s, tick every 2 s while a rollout is under way: poll (0 s), tick (2 s), poll
    (3 s: the poll is not pushed back by the tick), tick (5 s). Only polls list the control plane."""
    settings = load_settings(base_env(poll_interval_seconds="3", poll_jitter="0", status_reporting="off"))
    cycles: queue.Queue[bool] = queue.Queue()
    stop = threading.Event()
    with control_plane_client(settings) as unused:
        service = Service(settings, RollingReconciler(cycles), unused)  # type: ignore[arg-type]
    thread = threading.Thread(target=service.run, args=(stop,))
    thread.start()
    try:
        seen = [cycles.get(timeout=WAIT) for _ in range(4)]
    finally:
        stop.set()
        thread.join(timeout=WAIT)
    assert seen == [True, False, True, False]


def test_stop_ends_the_loop_between_cycles_without_waiting_out_the_poll() -> None:
    settings = load_settings(
        base_env(poll_interval_seconds="3600", prune_window_seconds="3600", status_reporting="off")
    )
    flaky = FlakyReconciler()
    flaky.calls = 1
    flaky.in_progress = False  # the full hour-long poll
    seen: queue.Queue[CycleReport] = queue.Queue()
    stop = threading.Event()
    with control_plane_client(settings) as unused:
        service = Service(settings, flaky, unused, on_cycle=seen.put)  # type: ignore[arg-type]
    thread = threading.Thread(target=service.run, args=(stop,))
    thread.start()
    assert seen.get(timeout=WAIT).applied == ["cycle-2"]
    stop.set()
    thread.join(timeout=WAIT)
    assert not thread.is_alive(), "stop must interrupt the wait, not wait out the hour"
    assert flaky.calls == 2


def test_the_health_check_goes_where_the_settings_say() -> None:
    servers = AgentServers()
    try:
        template = f"http://127.0.0.1:{servers.port}/{{namespace}}/{{service}}/ok"
        check = prober(load_settings(base_env(probe_url_template=template)))
        assert check(NS, "web-api") is True
        servers.unhealthy.add("web-api")
        assert check(NS, "web-api") is False
        assert servers.requests == [f"/{NS}/web-api/ok", f"/{NS}/web-api/ok"]
        check.close()
    finally:
        servers.close()
