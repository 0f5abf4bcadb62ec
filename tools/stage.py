"""A stage for running the real listener process: the control-plane emulator, fakekube and an Agent
Server health endpoint, all on 127.0.0.1, plus the environment that points a listener at them.

    with Stage(tmp_path) as stage:
        deployment = stage.create_deployment("support-agent")
        env = stage.listener_env(health_port=free_port())   # LISTENER_* for `python -m listener`
        ... run the listener (a subprocess, or the image with --network host) ...
        stage.wait_for_status(deployment.id, "DEPLOYED", timeout=60)

Used by the listener's process tests and by the image smoke test (tools/container/smoke.py).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from uuid import UUID

import yaml

from listener.controlplane import ControlPlaneClient, ControlPlaneConfig
from listener.controlplane.builders import external_docker_deployment
from listener.controlplane.models import Deployment
from listener.emulator import BackgroundServer, Emulator
from tools.fakekube import FakeKube

AGENTS = "agents"
OWN = "langsmith"
IMAGE = "registry.example.com/agents/support@sha256:" + "1" * 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, *, every: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class _Ok(BaseHTTPRequestHandler):
    """An Agent Server's `GET /ok`, for every deployment (the listener's probe URL points here)."""

    def do_GET(self) -> None:
        body = b'{"ok":true}'
        self.send_response(200 if self.path.startswith("/ok") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


class Stage:
    def __init__(self, workdir: Path, *, api_key: str = "lsv2_sk_stage_key_never_logged_0123456789"):
        self.workdir = workdir
        self.api_key = api_key
        self.emulator = Emulator(api_key=api_key)
        self.server = BackgroundServer(self.emulator)
        self.kube = FakeKube([AGENTS, OWN])
        self.probe = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
        self.probe.daemon_threads = True
        self._probe_thread = threading.Thread(target=self.probe.serve_forever, daemon=True)
        self.client: ControlPlaneClient | None = None
        self.listener_id: UUID | None = None
        self.kubeconfig = workdir / "kubeconfig.yaml"

    def __enter__(self) -> Stage:
        self.server.start()
        self.kube.start()
        self._probe_thread.start()
        self.kubeconfig.write_text(yaml.safe_dump(self.kube.kubeconfig_dict(AGENTS)))
        self.client = ControlPlaneClient(
            ControlPlaneConfig(
                base_url=self.server.url, api_key=self.api_key, tenant_id=self.emulator.tenant_id
            )
        )
        self.listener_id = self.client.create_listener("stage", [AGENTS]).id
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.client is not None:
            self.client.close()
        self.probe.shutdown()
        self.probe.server_close()
        self.kube.stop()
        self.server.stop()

    def create_deployment(self, name: str, image: str = IMAGE) -> Deployment:
        assert self.client is not None
        assert self.listener_id is not None
        return self.client.create_deployment(
            external_docker_deployment(
                name=name, image_uri=image, listener_id=self.listener_id, k8s_namespace=AGENTS
            )
        )

    def revision_status(self, deployment_id: UUID | str) -> str:
        assert self.client is not None
        deployment = self.client.get_deployment(deployment_id)
        revision = self.client.get_revision(deployment_id, deployment.latest_revision_id)
        return revision.status.value

    def wait_for_status(self, deployment_id: UUID | str, status: str, *, timeout: float) -> None:
        wait_until(
            lambda: self.revision_status(deployment_id) == status, timeout, f"{status} of {deployment_id}"
        )

    def lease(self, name: str) -> dict[str, Any] | None:
        with self.kube.client(OWN) as client:
            from lightkube import ApiError
            from lightkube.resources.coordination_v1 import Lease

            try:
                return client.get(Lease, name, namespace=OWN).to_dict()
            except ApiError as error:
                if error.status.code == 404:
                    return None
                raise

    def listener_env(self, *, kubeconfig: Path | None = None, **settings: str) -> dict[str, str]:
        """LISTENER_* for a listener on this stage; keyword arguments add or override settings."""
        probe_port = self.probe.server_address[1]
        env = {
            "LISTENER_API_KEY": self.api_key,
            "LISTENER_WORKSPACE_ID": str(self.emulator.tenant_id),
            "LISTENER_LISTENER_ID": str(self.listener_id),
            "LISTENER_CONTROL_PLANE_URL": self.server.url,
            "LISTENER_NAMESPACES": AGENTS,
            "LISTENER_KUBECONFIG": str(kubeconfig or self.kubeconfig),
            "LISTENER_STATUS_REPORTING": "emulator",
            "LISTENER_PROBE_URL_TEMPLATE": f"http://127.0.0.1:{probe_port}/ok?service={{service}}&namespace={{namespace}}",
            "LISTENER_POLL_INTERVAL_SECONDS": "1",
        }
        env.update({f"LISTENER_{key.upper()}": value for key, value in settings.items()})
        return env
