"""The real `python -m listener` process: health port, metrics, JSON logs, SIGTERM, two replicas.

Each test runs the listener as a subprocess against the emulator and fakekube on 127.0.0.1
(`tools.stage`). Waits are bounded polls of what the process exposes (its health port, the Lease,
the emulator's revision status); none of them sleeps blindly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tools.stage import OWN, Stage, free_port, wait_until

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0


class ListenerProcess:
    def __init__(self, env: dict[str, str], workdir: Path, name: str, *args: str):
        self.log_path = workdir / f"{name}.log"
        self.port = int(env["LISTENER_HEALTH_PORT"])
        full = {
            "PYTHONPATH": f"{SRC}{os.pathsep}{ROOT}",
            "PATH": "/usr/bin:/bin",
            "HOME": str(workdir),
            "PYTHONDONTWRITEBYTECODE": "1",
            **env,
        }
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "listener", *args], env=full, cwd=workdir, stdout=log, stderr=log
            )

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except httpx.HTTPError:
            return None

    def ready_as(self, role: str) -> bool:
        response = self.get("/readyz")
        return response is not None and response.status_code == 200 and role in response.text

    def text(self) -> str:
        return self.log_path.read_text()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line.strip()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[Stage]:
    with Stage(tmp_path) as stage:
        yield stage


@pytest.fixture
def processes() -> Iterator[list[ListenerProcess]]:
    started: list[ListenerProcess] = []
    yield started
    for process in started:
        process.kill()


def start(
    stage: Stage, processes: list[ListenerProcess], name: str, *args: str, **settings: str
) -> ListenerProcess:
    settings.setdefault("health_port", str(free_port()))
    env = stage.listener_env(**settings)
    process = ListenerProcess(env, stage.workdir, name, *args)
    processes.append(process)
    return process


def elected(**settings: str) -> dict[str, str]:
    return {"leader_election": "true", "pod_namespace": OWN, "lease_name": "listener-lease", **settings}


def test_a_replica_rolls_out_reports_health_and_metrics_and_stops_cleanly_on_sigterm(
    stage: Stage, processes: list[ListenerProcess]
) -> None:
    deployment = stage.create_deployment("support-agent")
    listener = start(stage, processes, "a", **elected(pod_name="listener-a"))

    stage.wait_for_status(deployment.id, "DEPLOYED", timeout=WAIT)
    wait_until(lambda: listener.ready_as("leader"), WAIT, "/readyz of the leader")
    live = listener.get("/healthz")
    assert live is not None
    assert live.status_code == 200
    assert listener.get("/nope").status_code == 404  # type: ignore[union-attr]

    metrics = listener.get("/metrics")
    assert metrics is not None
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert "langsmith_listener_leader 1.0" in text
    assert 'langsmith_listener_reconciles_total{result="ok"}' in text
    assert 'langsmith_listener_control_plane_requests_total{code="200",method="GET"}' in text
    assert 'langsmith_listener_kubernetes_requests_total{code="2xx",verb="patch"}' in text
    assert 'langsmith_listener_rollout_duration_seconds_count{outcome="deployed"} 1.0' in text
    assert 'langsmith_listener_deployments{state="deployed"} 1.0' in text
    assert "langsmith_listener_last_successful_poll_timestamp_seconds" in text
    assert "process_resident_memory_bytes" in text

    assert stage.lease("listener-lease")["spec"]["holderIdentity"].startswith("listener-a_")  # type: ignore[index]
    started = time.monotonic()
    assert listener.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 20  # LISTENER_SHUTDOWN_TIMEOUT_SECONDS default
    lease = stage.lease("listener-lease")
    assert lease is not None
    assert not lease["spec"].get("holderIdentity")  # released: a standby may take over at once
    assert lease["spec"]["leaseDurationSeconds"] == 1

    lines = listener.lines()  # every line is JSON
    messages = [line["message"] for line in lines]
    assert "received SIGTERM" in messages
    assert any(m.startswith("leader election: released lease") for m in messages)
    deployed = [line for line in lines if line["message"].endswith("DEPLOYED") and "deployment_id" in line]
    assert deployed
    assert deployed[0]["deployment_id"] == str(deployment.id)
    assert deployed[0]["revision_id"] == str(deployment.latest_revision_id)
    assert stage.api_key not in listener.text()


def test_sigterm_mid_cycle_lets_the_cycle_finish_then_releases(
    stage: Stage, processes: list[ListenerProcess]
) -> None:
    stage.create_deployment("support-agent")
    listener = start(stage, processes, "a", **elected(pod_name="listener-a"))
    wait_until(lambda: listener.ready_as("leader"), WAIT, "the first cycle")
    # The next list of deployments takes 3 s: SIGTERM arrives while the cycle waits on it.
    stage.emulator.faults.add(kind="latency", method="GET", path="/v2/deployments", delay=3, times=1)
    stage.emulator.requests.clear()
    wait_until(
        lambda: any(r.path == "/v2/deployments" for r in list(stage.emulator.requests)),
        WAIT,
        "a cycle in flight",
    )
    started = time.monotonic()
    assert listener.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 15  # 3/4 of the 20 s budget, and the cycle needed ~3 s
    assert not stage.lease("listener-lease")["spec"].get("holderIdentity")  # type: ignore[index]
    assert "abandoning" not in listener.text()


def test_sigterm_abandons_a_cycle_that_outlives_the_budget_and_leaves_the_lease_to_expire(
    stage: Stage, processes: list[ListenerProcess]
) -> None:
    stage.create_deployment("support-agent")
    listener = start(stage, processes, "a", **elected(pod_name="listener-a", shutdown_timeout_seconds="2"))
    wait_until(lambda: listener.ready_as("leader"), WAIT, "the first cycle")
    stage.emulator.faults.add(kind="latency", method="GET", path="/v2/deployments", delay=6, times=1)
    stage.emulator.requests.clear()
    wait_until(
        lambda: any(r.path == "/v2/deployments" for r in list(stage.emulator.requests)),
        WAIT,
        "a cycle in flight",
    )
    started = time.monotonic()
    assert listener.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    # Not handed over while our request may still be in flight: the standby waits out the lease.
    assert stage.lease("listener-lease")["spec"]["holderIdentity"].startswith("listener-a_")  # type: ignore[index]
    assert "abandoning it" in listener.text()


def test_two_replicas_one_leads_the_other_stands_by_and_takes_over_on_release(
    stage: Stage, processes: list[ListenerProcess]
) -> None:
    first = stage.create_deployment("first-agent")
    a = start(stage, processes, "a", **elected(pod_name="listener-a"))
    wait_until(lambda: a.ready_as("leader"), WAIT, "a to lead")
    b = start(stage, processes, "b", **elected(pod_name="listener-b"))
    wait_until(lambda: b.ready_as("standby"), WAIT, "b to stand by")
    stage.wait_for_status(first.id, "DEPLOYED", timeout=WAIT)
    standby_metrics = b.get("/metrics").text  # type: ignore[union-attr]
    assert "langsmith_listener_leader 0.0" in standby_metrics
    assert "langsmith_listener_control_plane_requests_total{" not in standby_metrics  # a standby never polls

    assert a.stop(signal.SIGTERM) == 0
    wait_until(lambda: b.ready_as("leader"), 10, "b to lead within a retry period after the release")
    second = stage.create_deployment("second-agent")
    stage.wait_for_status(second.id, "DEPLOYED", timeout=WAIT)
    lease = stage.lease("listener-lease")
    assert lease is not None
    assert lease["spec"]["holderIdentity"].startswith("listener-b_")
    assert lease["spec"]["leaseTransitions"] == 1
    assert b.stop(signal.SIGTERM) == 0


def test_two_processes_with_the_same_pod_name_never_both_lead(
    stage: Stage, processes: list[ListenerProcess]
) -> None:
    # A fixed LISTENER_POD_NAME instead of the downward API: the random suffix keeps identities apart.
    a = start(stage, processes, "a", **elected(pod_name="listener"))
    wait_until(lambda: a.ready_as("leader"), WAIT, "a to lead")
    b = start(stage, processes, "b", **elected(pod_name="listener"))
    wait_until(lambda: b.ready_as("standby"), WAIT, "b to stand by")
    # One probe can time out on a loaded machine (2 s): ask until a answers; b still only stands by.
    wait_until(lambda: a.ready_as("leader"), WAIT, "a still to lead")
    wait_until(lambda: b.ready_as("standby"), WAIT, "b still to stand by")


def test_the_api_key_never_reaches_a_log_line_even_at_debug_through_faults(
    stage: Stage, processes: list[ListenerProcess]
) -> None:
    stage.create_deployment("support-agent")
    key = stage.api_key
    faults = stage.emulator.faults
    # A server that echoes the key back, errors, rate limits, garbage and cut connections.
    faults.add(kind="error", status=500, detail=f"bad key {key}", path="/v2/deployments", times=2)
    faults.add(kind="rate_limit", retry_after=0, path="/v2/deployments", times=1)
    faults.add(kind="malformed_json", path="/v2/deployments", times=1)
    faults.add(kind="drop_connection", path="/v2/deployments", times=1)
    once = start(stage, processes, "once", "--once", log_level="DEBUG")
    assert once.proc.wait(WAIT) in (0, 1)
    # Also the loop, with the key in its control-plane URL (logged at start): scrubbed as well.
    url_with_key = f"{stage.server.url}/?k={key}"
    loop = start(stage, processes, "loop", log_level="DEBUG", control_plane_url=url_with_key)
    wait_until(lambda: "polling" in loop.text(), WAIT, "the loop's first line")
    assert loop.stop() == 0
    for process in (once, loop):
        text = process.text()
        assert text
        assert key not in text
        for line in text.splitlines():
            json.loads(line)  # structured: one JSON object per line, tracebacks included
    assert "<redacted>" in loop.text()


def test_a_busy_health_port_is_a_settings_error(stage: Stage, processes: list[ListenerProcess]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start(stage, processes, "busy", health_port=str(port))
        assert process.proc.wait(WAIT) == 2
    assert f"LISTENER_HEALTH_PORT={port}: cannot listen" in process.text()
    assert "Traceback" not in process.text()


def test_a_standby_that_cannot_reach_the_api_server_is_not_ready(
    stage: Stage, processes: list[ListenerProcess], tmp_path: Path
) -> None:
    nowhere = tmp_path / "nowhere.yaml"
    nowhere.write_text(
        stage.kubeconfig.read_text().replace(stage.kube.url, f"http://127.0.0.1:{free_port()}")
    )
    process = start(stage, processes, "lost", kubeconfig=nowhere, **elected(pod_name="listener-lost"))
    wait_until(lambda: process.get("/readyz") is not None, WAIT, "the health port")
    assert process.get("/readyz").status_code == 503  # type: ignore[union-attr]
    assert "cannot reach the API server" in process.get("/readyz").text  # type: ignore[union-attr]
    assert process.get("/healthz").status_code == 200  # type: ignore[union-attr]  # alive, just not ready
    assert process.stop() == 0
    assert not any(r.path == "/v2/deployments" for r in stage.emulator.requests)  # never led, never polled
