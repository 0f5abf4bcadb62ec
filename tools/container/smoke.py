"""Run the listener image for real, locked down, until it rolls out an Agent Server.

    python -m tools.container.smoke [IMAGE]     # after tools/container/build (make image-smoke)

1. Exports the image as an OCI archive and checks it offline (tools/container/oci.py): user
   10001:10001, the entrypoint, no secrets in its config or history, no emulator, tests, pip or
   setuptools in its filesystem.
2. Starts the control-plane emulator, fakekube and an Agent Server `/ok` endpoint on 127.0.0.1
   (tools/stage.py), and creates a listener and one deployment.
3. Runs the container as a pod would run it: read-only root (no tmpfs either), user and group
   10001, every capability dropped, no-new-privileges, host network to reach the loopback stage,
   leader election on, the kubeconfig mounted read-only and the settings from an env file.
4. Waits (bounded) for the revision to become DEPLOYED, checks /readyz and /metrics from the host
   and the container's process status (uid, capabilities, NoNewPrivs) from /proc.
5. Stops it with SIGTERM and expects exit 0, the Lease released, and JSON log lines without the key.

Exits non-zero with the reason on the first failed check; prints what it measured.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tools.container import oci
from tools.stage import OWN, Stage, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
PODMAN = str(ROOT / "tools" / "container" / "podman")
DEFAULT_IMAGE = "localhost/langsmith-dataplane-listener:dev"
LEASE = "langsmith-listener-smoke"
DEPLOY_TIMEOUT = 120.0


class SmokeFailure(Exception):
    pass


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(  # noqa: S603 - our own podman wrapper, arguments built here
        [PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise SmokeFailure(f"podman {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def check(condition: object, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


def inspect_archive(image: str, workdir: Path) -> None:
    archive = workdir / "image.oci.tar"
    started = time.monotonic()
    podman("save", "--format", "oci-archive", "--output", str(archive), image)
    found = oci.problems(oci.read_archive(archive))
    check(not found, "the image fails its checks:\n  " + "\n  ".join(found))
    print(
        f"smoke: OCI archive checks passed ({archive.stat().st_size / 2**20:.0f} MiB, {time.monotonic() - started:.1f} s)"
    )


def run_container(image: str, workdir: Path) -> None:
    with Stage(workdir) as stage:
        deployment = stage.create_deployment("smoke-agent")
        health_port = free_port()
        kubeconfig = workdir / "kubeconfig.yaml"
        kubeconfig.chmod(0o644)  # read by uid 10001 inside the container
        env = stage.listener_env(
            kubeconfig=Path("/etc/listener/kubeconfig.yaml"),
            health_port=str(health_port),
            leader_election="true",
            pod_namespace=OWN,
            pod_name="smoke-listener-0",
            lease_name=LEASE,
        )
        env_file = workdir / "listener.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        env_file.chmod(0o600)
        name = f"listener-smoke-{secrets.token_hex(4)}"
        started = time.monotonic()
        podman(
            "run", "--detach", "--name", name,
            "--read-only", "--read-only-tmpfs=false",
            "--user", "10001:10001", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--network", "host",
            "--volume", f"{kubeconfig}:/etc/listener/kubeconfig.yaml:ro",
            "--env-file", str(env_file),
            image,
        )  # fmt: skip
        try:
            try:
                wait_until(
                    lambda: stage.revision_status(deployment.id) == "DEPLOYED" or _exited(name),
                    DEPLOY_TIMEOUT,
                    "DEPLOYED",
                    every=0.2,
                )
            except AssertionError as error:
                raise SmokeFailure(f"{error}; container logs:\n{_logs(name)}") from None
            check(not _exited(name), f"the container exited early:\n{_logs(name)}")
            check(stage.revision_status(deployment.id) == "DEPLOYED", "not DEPLOYED")
            deployed_after = time.monotonic() - started
            print(
                f"smoke: DEPLOYED {deployed_after:.1f} s after `podman run` (read-only, 10001:10001, no caps)"
            )

            base = f"http://127.0.0.1:{health_port}"
            ready = wait_until(lambda: _get(f"{base}/readyz"), 30, "/readyz 200")
            check("leader" in ready, f"/readyz: {ready!r}")
            metrics = _get(f"{base}/metrics") or ""
            check("langsmith_listener_leader 1.0" in metrics, "/metrics does not report leadership")
            check('langsmith_listener_reconciles_total{result="ok"}' in metrics, "/metrics: no ok reconcile")
            status = podman("exec", name, "cat", "/proc/1/status").stdout
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            check(fields["Uid"].split()[:2] == ["10001", "10001"], f"Uid: {fields['Uid'].strip()}")
            check(fields["Gid"].split()[:2] == ["10001", "10001"], f"Gid: {fields['Gid'].strip()}")
            check(int(fields["CapEff"], 16) == 0, f"CapEff: {fields['CapEff'].strip()}")
            check(fields["NoNewPrivs"].strip() == "1", "NoNewPrivs is not set")
            write = podman("exec", name, "/opt/listener/bin/python", "-c", "open('/probe', 'w')", check=False)
            check(write.returncode != 0 and "Read-only file system" in write.stderr, "the root is writable")
            lease = stage.lease(LEASE)
            holder = (lease or {}).get("spec", {}).get("holderIdentity", "")
            check(holder.startswith("smoke-listener-0_"), f"lease: {lease}")

            stopping = time.monotonic()
            podman("stop", "--time", "30", name, timeout=60)
            code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
            check(code == "0", f"exit code {code} after SIGTERM:\n{_logs(name)}")
            print(f"smoke: SIGTERM -> exit 0 in {time.monotonic() - stopping:.1f} s")
            lease = stage.lease(LEASE)
            check(lease and not lease["spec"].get("holderIdentity"), f"lease not released: {lease}")
            logs = _logs(name)
            check(stage.api_key not in logs, "the API key appears in the container's logs")
            for line in logs.splitlines():
                try:
                    json.loads(line)
                except ValueError:
                    raise SmokeFailure(f"a log line is not JSON: {line!r}") from None
            print(f"smoke: {len(logs.splitlines())} JSON log lines, no API key; lease released")
        finally:
            podman("rm", "--force", name, check=False)


def _exited(name: str) -> bool:
    state = podman("inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()
    return state in ("exited", "stopped", "")


def _logs(name: str) -> str:
    done = podman("logs", name, check=False)
    return done.stdout + done.stderr


def _get(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.container.smoke", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("image", nargs="?", default=DEFAULT_IMAGE)
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="listener-smoke-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # the kubeconfig inside is mounted for uid 10001
        try:
            inspect_archive(args.image, workdir)
            run_container(args.image, workdir)
        except SmokeFailure as failure:
            print(f"smoke: FAILED: {failure}", file=sys.stderr)
            return 1
    print(f"smoke: passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
