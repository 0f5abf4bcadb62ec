"""`make demo`: the control-plane emulator, fakekube and the listener on 127.0.0.1, one Agent Server.

    python -m tools.demo                    # runs until Ctrl-C, then stops everything it started
    python -m tools.demo --until-deployed   # exits 0 once the sample deployment is DEPLOYED (the test)

Three processes, as in production: `python -m listener.emulator` (the LangSmith control plane),
`python -m tools.fakekube` (the Kubernetes API server, with its fake controllers and kubelet) and
`python -m listener`, plus the Agent Servers' `GET /ok` answered from this process (the listener
checks it before calling a revision DEPLOYED). The demo creates a deployment through the emulator's
API, prints each status of its revision until DEPLOYED, then the commands to look around.
"""

from __future__ import annotations

import argparse
import os
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "agents"
IMAGE = "registry.example.com/agents/support@sha256:" + "1" * 64
TERMINAL = {"DEPLOYED", "DEPLOY_FAILED", "BUILD_FAILED", "SKIPPED"}


class Process:
    """A child process whose output lines are kept (and optionally echoed) from a reader thread."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path):
        self.name = name
        self.lines: queue.Queue[str] = queue.Queue()
        self._log = log.open("w")
        self.proc = subprocess.Popen(  # noqa: S603 -- this interpreter and this repository's modules
            args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float) -> str:
        """The first output line containing `prefix`; RuntimeError if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}") from None
                continue
            if prefix in line:
                return line
        raise RuntimeError(f"{self.name} did not print {prefix!r} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(25)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@contextmanager
def _probe() -> Iterator[int]:
    from tools.stage import _Ok

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def run(workdir: Path, *, until_deployed: bool, timeout: float, poll: float) -> int:
    from listener.controlplane import ControlPlaneClient, ControlPlaneConfig
    from listener.controlplane.builders import external_docker_deployment
    from tools.stage import free_port

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "listener" / "src"), str(ROOT)]),
        "PYTHONUNBUFFERED": "1",
    }
    api_key = "lsv2_sk_demo_" + secrets.token_hex(16)
    tenant = str(uuid.uuid4())
    kubeconfig, admin_kubeconfig = workdir / "kubeconfig.yaml", workdir / "admin-kubeconfig.yaml"
    started: list[Process] = []
    # SIGTERM (e.g. from a test's timeout) cleans up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        print("starting the control-plane emulator, fakekube and the listener on 127.0.0.1 ...", flush=True)
        emulator = Process(
            "emulator",
            [
                sys.executable,
                "-m",
                "listener.emulator",
                "--port",
                "0",
                "--api-key",
                api_key,
                "--tenant-id",
                tenant,
            ],
            env,
            workdir / "emulator.log",
        )
        started.append(emulator)
        url = emulator.wait_for("LISTENER_CONTROL_PLANE_URL=", timeout).split("=", 1)[1].strip()
        kube = Process(
            "fakekube",
            [
                sys.executable,
                "-m",
                "tools.fakekube",
                "--port",
                str(free_port()),
                "--namespaces",
                NAMESPACE,
                "--crds",
                "gateway-api,keda",
                "--image-user",
                f"{IMAGE}=1000",
                "--kubeconfig",
                str(kubeconfig),
                "--admin-kubeconfig",
                str(admin_kubeconfig),
            ],
            env,
            workdir / "fakekube.log",
        )
        started.append(kube)
        kube_url = kube.wait_for("fakekube serving on", timeout).split()[3]
        with (
            _probe() as probe_port,
            ControlPlaneClient(ControlPlaneConfig(base_url=url, api_key=api_key, tenant_id=tenant)) as client,
        ):
            listener_id = client.create_listener("demo-cluster", [NAMESPACE]).id
            health_port = free_port()
            listener = Process(
                "listener",
                [sys.executable, "-m", "listener"],
                {
                    **env,
                    "LISTENER_API_KEY": api_key,
                    "LISTENER_WORKSPACE_ID": tenant,
                    "LISTENER_LISTENER_ID": str(listener_id),
                    "LISTENER_CONTROL_PLANE_URL": url,
                    "LISTENER_NAMESPACES": NAMESPACE,
                    "LISTENER_KUBECONFIG": str(kubeconfig),
                    "LISTENER_STATUS_REPORTING": "emulator",
                    "LISTENER_PROBE_URL_TEMPLATE": f"http://127.0.0.1:{probe_port}/ok?service={{service}}&namespace={{namespace}}",
                    "LISTENER_POLL_INTERVAL_SECONDS": str(poll),
                    "LISTENER_HEALTH_PORT": str(health_port),
                    "LISTENER_LOG_FORMAT": "text",
                },
                workdir / "listener.log",
            )
            started.append(listener)
            deployment = client.create_deployment(
                external_docker_deployment(
                    name="support-agent", image_uri=IMAGE, listener_id=listener_id, k8s_namespace=NAMESPACE
                )
            )
            print(
                f"created deployment support-agent ({deployment.id}) through {url}/v2/deployments", flush=True
            )
            status = _follow(client, str(deployment.id), listener, timeout)
            print(
                "\nLook around (in another shell):\n"
                f"  export LISTENER_CONTROL_PLANE_URL={url}\n"
                f"  export LISTENER_API_KEY={api_key}\n"
                f"  export LISTENER_WORKSPACE_ID={tenant}\n"
                f"  export LISTENER_LISTENER_ID={listener_id}\n"
                '  curl -s -H "X-Api-Key: $LISTENER_API_KEY" -H "X-Tenant-Id: $LISTENER_WORKSPACE_ID" '
                "$LISTENER_CONTROL_PLANE_URL/v2/deployments\n"
                f"  kubectl --kubeconfig {admin_kubeconfig} -n {NAMESPACE} get deployments,statefulsets,pods,services   # with kubectl\n"
                f"  curl -s {kube_url}/_fake/requests        # every request the listener made to Kubernetes\n"
                f"  curl -s http://127.0.0.1:{health_port}/metrics   # /healthz and /readyz too\n"
                f"  tail -f {workdir / 'listener.log'}",
                flush=True,
            )
            if status != "DEPLOYED":
                return 1
            if until_deployed:
                return 0
            print("\nCtrl-C stops everything.", flush=True)
            while all(p.proc.poll() is None for p in started):
                time.sleep(0.5)  # idle until Ctrl-C or a child exits
            print("a process exited; stopping", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except RuntimeError as error:
        print(f"demo failed: {error} (logs in {workdir})", file=sys.stderr)
        return 1
    finally:
        for process in reversed(started):
            process.stop()


def _follow(client: object, deployment_id: str, listener: Process, timeout: float) -> str:
    """Print each new status of the deployment's latest revision until a terminal one (or timeout)."""
    from listener.controlplane import ControlPlaneClient

    assert isinstance(client, ControlPlaneClient)
    began = time.monotonic()
    last = None
    while time.monotonic() - began < timeout:
        if listener.proc.poll() is not None:
            raise RuntimeError(f"the listener exited with {listener.proc.returncode}")
        deployment = client.get_deployment(deployment_id)
        status = client.get_revision(deployment_id, deployment.latest_revision_id).status.value  # type: ignore[arg-type]
        if status != last:
            print(
                f"  {time.monotonic() - began:5.1f} s  revision {deployment.latest_revision_id}: {status}",
                flush=True,
            )
            last = status
        if status in TERMINAL:
            return status
        time.sleep(0.5)  # polling the control plane as a user would, bounded by `timeout`
    raise RuntimeError(f"not DEPLOYED within {timeout:.0f} s (last status {last})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--until-deployed", action="store_true", help="exit 0 once DEPLOYED (no Ctrl-C wait)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds for each start and for DEPLOYED"
    )
    parser.add_argument("--poll", type=float, default=2.0, help="the listener's poll interval (default 2 s)")
    parser.add_argument(
        "--workdir", type=Path, help="where the logs and kubeconfigs go (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="listener-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    return run(workdir, until_deployed=args.until_deployed, timeout=args.timeout, poll=args.poll)


if __name__ == "__main__":
    sys.exit(main())
