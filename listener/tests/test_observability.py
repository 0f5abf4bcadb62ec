"""Logs, health answers and request metrics, in-process (the real process is in test_process.py)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import REGISTRY

from listener import logs
from listener.controlplane import ControlPlaneError
from listener.health import Health, HealthServer
from listener.kube import Cluster, ClusterError, NotLeader
from listener.service import control_plane_client
from listener.settings import load_settings
from tools.fakekube import FakeKube

KEY = "lsv2_sk_observability_key_0123456789"
NS = "agents"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- logs ------------------------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logs.configure(format="json", level="DEBUG", secrets=[KEY], stream=stream)
    yield logging.getLogger("listener.test"), stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_json_lines_carry_ids_as_fields_and_never_the_key(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured
    log.info("applied %s", "dep-1", extra=logs.ids("dep-1", "rev-9"))
    log.warning("the server said: %s", f"invalid key {KEY}")  # a secret in the arguments
    log.error(f"in the message {KEY}", extra={"namespace": "agents"})
    try:
        raise RuntimeError(f"in an exception {KEY}")
    except RuntimeError:
        log.exception("cycle failed")
    text = stream.getvalue()
    assert KEY not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 4
    assert lines[0]["deployment_id"] == "dep-1"
    assert lines[0]["revision_id"] == "rev-9"
    assert lines[0]["level"] == "INFO"
    assert lines[0]["logger"] == "listener.test"
    assert lines[0]["time"].endswith("Z")
    assert lines[1]["message"] == "the server said: invalid key <redacted>"
    assert lines[2]["namespace"] == "agents"
    assert "RuntimeError: in an exception <redacted>" in lines[3]["exception"]


def test_text_format_scrubs_too() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure(format="text", level="INFO", secrets=[KEY], stream=stream)
        logging.getLogger("listener.test").info("key=%s", KEY, extra=logs.ids("dep-1"))
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert stream.getvalue().rstrip().endswith("INFO listener.test: key=<redacted> deployment_id=dep-1")


def test_http_client_loggers_are_quiet_even_at_debug(captured: tuple[logging.Logger, io.StringIO]) -> None:
    for name in logs.QUIET_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING


# --- health ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Leadership:
    def __init__(self, leader: bool, healthy: bool) -> None:
        self.leader, self.ok = leader, healthy

    def is_leader(self) -> bool:
        return self.leader

    def healthy(self) -> bool:
        return self.ok


def test_liveness_fails_only_after_the_stall_bound_without_progress() -> None:
    clock = Clock()
    health = Health(stall_after=120, monotonic=clock)
    clock.now += 119
    assert health.live()[0] is True
    clock.now += 1
    ok, why = health.live()
    assert ok is False
    assert "no progress for 120 s" in why
    health.progressed("GET", "200")  # any request of the loop counts
    assert health.live()[0] is True


def test_readiness_without_leader_election_needs_one_good_poll() -> None:
    health = Health(stall_after=60, monotonic=Clock())
    assert health.ready() == (False, "leader: no successful control-plane poll yet")
    health.polled(False)  # the control plane was down: still not ready
    assert health.ready()[0] is False
    health.polled(True)
    assert health.ready() == (True, "leader: polling")
    health.polled(False)  # a later outage does not flap readiness (the process is fine)
    assert health.ready()[0] is True


def test_readiness_of_a_standby_follows_its_contact_with_the_api_server() -> None:
    leadership = Leadership(leader=False, healthy=True)
    health = Health(stall_after=60, leadership=leadership, monotonic=Clock())
    assert health.ready() == (True, "standby: following the leader Lease")
    leadership.ok = False
    assert health.ready()[0] is False
    leadership.leader = True  # elected: ready after this term's first good poll
    health.new_term()
    assert health.ready()[0] is False
    health.polled(True)
    assert health.ready()[0] is True


def test_the_health_server_answers_probes_and_scrapes() -> None:
    clock = Clock()
    health = Health(stall_after=60, monotonic=clock)
    server = HealthServer(health, 0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{base}/healthz").status_code == 200
        not_ready = httpx.get(f"{base}/readyz")
        assert not_ready.status_code == 503
        assert not_ready.text == "failed: leader: no successful control-plane poll yet\n"
        health.polled(True)
        assert httpx.get(f"{base}/readyz?verbose=1").status_code == 200
        clock.now += 61
        assert httpx.get(f"{base}/healthz").status_code == 503
        scrape = httpx.get(f"{base}/metrics")
        assert scrape.headers["content-type"].startswith("text/plain; version=")
        assert "# TYPE langsmith_listener_reconciles_total counter" in scrape.text
        open_metrics = httpx.get(f"{base}/metrics", headers={"Accept": "application/openmetrics-text"})
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert open_metrics.text.endswith("# EOF\n")
        assert httpx.get(f"{base}/").status_code == 404
        assert httpx.post(f"{base}/healthz").status_code == 501  # read-only
    finally:
        server.stop()


# --- request metrics -------------------------------------------------------------------------


def test_kubernetes_calls_are_counted_by_verb_and_code() -> None:
    name = "langsmith_listener_kubernetes_requests_total"
    leading = [True]
    with FakeKube([NS]) as kube, kube.client(NS) as client:
        cluster = Cluster(client, fence=lambda: leading[0])
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": NS}}
        before = {
            key: sample(name, verb=key[0], code=key[1])
            for key in [("patch", "2xx"), ("get", "404"), ("get", "unreachable"), ("delete", "fenced")]
        }
        cluster.apply(secret)
        assert cluster.get("v1", "Secret", NS, "missing") is None
        kube.faults.inject(r"/secrets/s$", "drop", verb="get")
        with pytest.raises(ClusterError):
            cluster.get("v1", "Secret", NS, "s")
        leading[0] = False
        with pytest.raises(NotLeader):
            cluster.delete("v1", "Secret", NS, "s")
        after = {key: sample(name, verb=key[0], code=key[1]) for key in before}
    assert {key: after[key] - before[key] for key in before} == dict.fromkeys(before, 1.0)


def test_control_plane_attempts_are_counted_by_method_and_code(server, emulator) -> None:
    settings = load_settings(
        {
            "LISTENER_API_KEY": emulator.api_key,
            "LISTENER_WORKSPACE_ID": str(emulator.tenant_id),
            "LISTENER_LISTENER_ID": "0b000000-0000-4000-8000-00000000000b",
            "LISTENER_CONTROL_PLANE_URL": server.url,
            "LISTENER_NAMESPACES": NS,
        }
    )
    name = "langsmith_listener_control_plane_requests_total"
    seen: list[tuple[str, str]] = []
    before = sample(name, method="GET", code="503"), sample(name, method="GET", code="200")
    emulator.faults.add(kind="rate_limit", status=503, retry_after=0, path="/v2/deployments", times=1)
    with control_plane_client(settings, observe=lambda m, c: seen.append((m, c))) as client:
        client.list_deployments()  # 503 then retried: two attempts, both counted
        emulator.faults.add(kind="error", status=401, path="/v2/deployments", times=1)
        with pytest.raises(ControlPlaneError):
            client.list_deployments()
    after = sample(name, method="GET", code="503"), sample(name, method="GET", code="200")
    assert (after[0] - before[0], after[1] - before[1]) == (1.0, 1.0)
    assert seen == [("GET", "503"), ("GET", "200"), ("GET", "401")]


def test_the_admin_uris_and_their_passwords_are_scrubbed_too() -> None:
    from listener.__main__ import _secrets

    settings = load_settings(
        {
            "LISTENER_API_KEY": KEY,
            "LISTENER_WORKSPACE_ID": "0a000000-0000-4000-8000-00000000000a",
            "LISTENER_LISTENER_ID": "0b000000-0000-4000-8000-00000000000b",
            "LISTENER_REGION": "us",
            "LISTENER_NAMESPACES": NS,
            "LISTENER_STORE_MODE": "managed",
            "LISTENER_POSTGRES_ADMIN_URI": "postgresql://admin:p%40ss-word-1@db:5432/postgres?sslmode=verify-full",
            "LISTENER_REDIS_ADMIN_URI": "rediss://:redis-token-2@cache:6379/0",
        }
    )
    secrets = _secrets(settings)
    assert {KEY, "p%40ss-word-1", "p@ss-word-1", "redis-token-2"} <= set(secrets)
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure(format="json", level="INFO", secrets=secrets, stream=stream)
        logging.getLogger("listener.test").warning("auth failed for admin with p@ss-word-1 / redis-token-2")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    line = json.loads(stream.getvalue())
    assert line["message"] == "auth failed for admin with <redacted> / <redacted>"
