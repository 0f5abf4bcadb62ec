"""`python -m listener` as an operator runs it: real subprocesses, an explicit environment, bounded runs.

The environment is built from scratch (never inherited), so a stray LISTENER_* variable on the
machine running the tests cannot change the outcome, and PYTHONPATH points at this checkout's code
(the virtualenv may hold an install of another checkout).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.codecs import from_dict

from listener import naming
from listener.controlplane import ControlPlaneClient
from listener.controlplane.builders import external_docker_deployment
from listener.emulator import BackgroundServer, Emulator
from listener.render.dump import REDACTED

SRC = Path(__file__).resolve().parents[1] / "src"
KEY = "lsv2_sk_cli_test_key_must_never_print_0123"
USER_SECRET = "sk-user-secret-must-never-print"
IMAGE = "registry.example.com/agents/support@sha256:" + "1" * 64
TIMEOUT = 60


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def run_listener(args: list[str], environ: dict[str, str], cwd: Path) -> Run:
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(environ)
    done = subprocess.run(
        [sys.executable, "-m", "listener", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def valid_env(tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    environ = {
        "LISTENER_API_KEY": KEY,
        "LISTENER_WORKSPACE_ID": "0a000000-0000-4000-8000-00000000000a",
        "LISTENER_LISTENER_ID": "0b000000-0000-4000-8000-00000000000b",
        "LISTENER_CONTROL_PLANE_URL": "http://127.0.0.1:9",
        "LISTENER_NAMESPACES": "agents",
        # Never read in these tests: a dry run must not touch Kubernetes, and bad settings stop earlier.
        "LISTENER_KUBECONFIG": str(tmp_path / "no-such-kubeconfig"),
    }
    for name, value in overrides.items():
        variable = f"LISTENER_{name.upper()}"
        if value is None:
            environ.pop(variable, None)
        else:
            environ[variable] = value
    return environ


BAD_SETTINGS: list[tuple[str, dict[str, str | None], list[str]]] = [
    # (case, overrides, what stderr must name)
    ("no API key", {"api_key": None}, ["LISTENER_API_KEY", "is required"]),
    ("empty API key", {"api_key": "  "}, ["LISTENER_API_KEY"]),
    ("no workspace", {"workspace_id": None}, ["LISTENER_WORKSPACE_ID", "is required"]),
    ("workspace not a UUID", {"workspace_id": "workspace-1"}, ["LISTENER_WORKSPACE_ID", "'workspace-1'"]),
    ("reserved namespace", {"namespaces": "agents,kube-system"}, ["LISTENER_NAMESPACES", "reserved"]),
    ("poll interval too short", {"poll_interval_seconds": "0.1"}, ["LISTENER_POLL_INTERVAL_SECONDS"]),
    ("no region and no URL", {"control_plane_url": None}, ["LISTENER_REGION", "LISTENER_CONTROL_PLANE_URL"]),
    ("region and URL", {"region": "eu"}, ["LISTENER_REGION", "LISTENER_CONTROL_PLANE_URL"]),
    ("unknown region", {"control_plane_url": None, "region": "mars"}, ["LISTENER_REGION", "'mars'"]),
    (
        "URL without scheme",
        {"control_plane_url": "api.example.com"},
        ["LISTENER_CONTROL_PLANE_URL", "api.example.com"],
    ),
    ("URL not http", {"control_plane_url": "ftp://api.example.com"}, ["LISTENER_CONTROL_PLANE_URL"]),
]


@pytest.mark.parametrize(
    ("overrides", "named"), [c[1:] for c in BAD_SETTINGS], ids=[c[0] for c in BAD_SETTINGS]
)
@pytest.mark.parametrize("mode", [["--once"], ["--once", "--dry-run"]], ids=["once", "dry-run"])
def test_bad_settings_exit_2_naming_the_variable(
    tmp_path: Path, overrides: dict[str, str | None], named: list[str], mode: list[str]
) -> None:
    result = run_listener(mode, valid_env(tmp_path, **overrides), tmp_path)

    assert result.code == 2, result
    assert "the listener's settings are invalid" in result.stderr
    for fragment in named:
        assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert KEY not in result.stderr + result.stdout
    assert result.stdout == ""


def test_a_missing_kubeconfig_is_a_settings_error_too(tmp_path: Path) -> None:
    # --once (not a dry run) does need Kubernetes: the operator gets the variable, not a traceback.
    result = run_listener(["--once"], valid_env(tmp_path), tmp_path)
    assert result.code == 2, result
    assert "LISTENER_KUBECONFIG" in result.stderr
    assert "no-such-kubeconfig" in result.stderr
    assert "Traceback" not in result.stderr
    assert KEY not in result.stderr + result.stdout


@pytest.mark.parametrize("args", [["--dry-run"], ["--dry-run", "--bogus"], ["--bogus"]])
def test_usage_errors(tmp_path: Path, args: list[str]) -> None:
    # Even with a complete, valid environment: the command line is checked first.
    result = run_listener(args, valid_env(tmp_path), tmp_path)
    assert result.code == 2
    assert result.stderr.startswith("usage: python -m listener")
    if args == ["--dry-run"]:
        assert "--dry-run goes with --once" in result.stderr
    assert result.stdout == ""


def test_dry_run_prints_redacted_yaml_and_writes_nothing(
    tmp_path: Path, server: BackgroundServer, emulator: Emulator, make_client: Any
) -> None:
    client: ControlPlaneClient = make_client()
    listener = client.create_listener(compute_id="cli-dry-run", namespaces=["agents", "elsewhere"])
    ours = client.create_deployment(
        external_docker_deployment(
            name="support-agent",
            image_uri=IMAGE,
            listener_id=listener.id,
            k8s_namespace="agents",
            secrets={"OPENAI_API_KEY": USER_SECRET},
        )
    )
    refused = client.create_deployment(
        external_docker_deployment(
            name="misplaced", image_uri=IMAGE, listener_id=listener.id, k8s_namespace="elsewhere"
        )
    )
    unreadable = client.create_deployment(
        external_docker_deployment(
            name="unreadable", image_uri=IMAGE, listener_id=listener.id, k8s_namespace="agents"
        )
    )
    # A record the listener cannot validate (a sidecar without an image): refused, the rest shown.
    patch = {"source_config": {"resource_spec": {"sidecars": [{"name": "proxy"}]}}}
    assert client.request("PATCH", f"/_emulator/deployments/{unreadable.id}", json=patch).status_code == 200
    emulator.requests.clear()
    environ = valid_env(
        tmp_path,
        api_key=emulator.api_key,
        workspace_id=emulator.tenant_id,
        listener_id=str(listener.id),
        control_plane_url=server.url,
        status_reporting="emulator",
    )

    result = run_listener(["--once", "--dry-run"], environ, tmp_path)

    assert result.code == 0, result
    assert "Traceback" not in result.stderr
    assert f"# refused {refused.id}: namespace 'elsewhere' is not watched" in result.stdout
    assert (
        f"# refused {unreadable.id}: the control plane's record of this deployment cannot be read: "
        "source_config.resource_spec.sidecars.0.image: Field required"
    ) in result.stdout
    documents = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    names = naming.ObjectNames.of("support-agent", str(ours.id))
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert {("Deployment", names.api), ("Service", names.api), ("Secret", names.postgres_secret)} <= kinds
    assert all(d["metadata"]["namespace"] == "agents" for d in documents)
    assert not any("misplaced" in d["metadata"]["name"] for d in documents)
    api = next(d for d in documents if (d["kind"], d["metadata"]["name"]) == ("Deployment", names.api))
    assert api["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE

    secrets = [d for d in documents if d["kind"] == "Secret"]
    env_secret = next(d for d in secrets if d["metadata"]["name"].startswith(names.env_secret + "-"))
    assert env_secret["data"]["OPENAI_API_KEY"] == REDACTED, "keys stay, values go"
    for secret in secrets:
        values = {**secret.get("stringData", {}), **secret.get("data", {})}
        assert values
        assert set(values.values()) == {REDACTED}
    for leaked in (USER_SECRET, emulator.api_key):
        assert leaked not in result.stdout
        assert leaked not in result.stderr

    # Reads only: the emulator saw GETs and nothing else (no heartbeat, no status report).
    methods = {(r.method, r.path) for r in emulator.requests}
    assert methods
    assert {m for m, _ in methods} == {"GET"}, methods


# --- issue 10: settings that passed and then crashed, and answers that printed tracebacks ---------


@pytest.mark.parametrize(
    "content",
    [
        "clusters: [unclosed",  # not YAML
        "just a string",  # YAML, not a mapping
        "apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n",  # a context that does not exist
        "apiVersion: v1\nkind: Config\nclusters: 7\n",  # the wrong shape
    ],
    ids=["not-yaml", "a-string", "no-such-context", "wrong-shape"],
)
def test_a_malformed_kubeconfig_names_the_variable(tmp_path: Path, content: str) -> None:
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(content)
    result = run_listener(["--once"], valid_env(tmp_path, kubeconfig=str(path)), tmp_path)
    assert result.code == 2, result
    assert f"LISTENER_KUBECONFIG='{path}'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_misspelt_variable_is_named_at_start(
    tmp_path: Path, server: BackgroundServer, emulator: Emulator
) -> None:
    environ = valid_env(
        tmp_path, api_key=emulator.api_key, workspace_id=emulator.tenant_id, control_plane_url=server.url
    )
    environ["LISTENER_ROLLOUT_TIMEOUT"] = "900"
    result = run_listener(["--once", "--dry-run"], environ, tmp_path)
    assert result.code == 0, result
    assert (
        "LISTENER_ROLLOUT_TIMEOUT is not a listener setting and is ignored "
        "(did you mean LISTENER_ROLLOUT_TIMEOUT_SECONDS?)" in result.stderr
    )


def test_a_misspelt_required_variable_is_named_with_the_error(tmp_path: Path) -> None:
    # `LISTENER_NAMESPACE` for `LISTENER_NAMESPACES`: the error said only "is required", and the
    # did-you-mean hint was printed only when the settings were valid, i.e. never in this case.
    environ = valid_env(tmp_path, namespaces=None)
    environ["LISTENER_NAMESPACE"] = "agents"
    result = run_listener(["--once"], environ, tmp_path)
    assert result.code == 2, result
    assert "LISTENER_NAMESPACES: is required" in result.stderr
    assert (
        "LISTENER_NAMESPACE is not a listener setting and is ignored (did you mean LISTENER_NAMESPACES?)"
        in (result.stderr)
    )
    assert "Traceback" not in result.stderr


class NotAnApiServer(BaseHTTPRequestHandler):
    """What a wrong server URL, or a proxy in front of the API server, answers: text, not Status JSON."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        self.wfile.write(b"404 page not found\n")

    do_PATCH = do_POST = do_DELETE = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_an_api_server() -> Any:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotAnApiServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def kubeconfig_for(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": url}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "agents"}}],
            }
        )
    )
    return path


def listener_kubeconfig(tmp_path: Path, kube: Any) -> Path:
    """The listener's own identity in the fake cluster (its ServiceAccount token and Role)."""
    path = tmp_path / "listener-kubeconfig.yaml"
    path.write_text(yaml.safe_dump(kube.kubeconfig_dict("agents")))
    return path


def test_once_never_prints_a_traceback_for_what_the_cluster_answers(
    tmp_path: Path, server: BackgroundServer, emulator: Emulator, make_client: Any, not_an_api_server: str
) -> None:
    # Before: an uncaught httpx2.HTTPStatusError traceback (a 404 that is not a Kubernetes Status).
    client: ControlPlaneClient = make_client()
    listener = client.create_listener(compute_id="cli-not-kube", namespaces=["agents"])
    client.create_deployment(
        external_docker_deployment(name="a", image_uri=IMAGE, listener_id=listener.id, k8s_namespace="agents")
    )
    environ = valid_env(
        tmp_path,
        api_key=emulator.api_key,
        workspace_id=emulator.tenant_id,
        listener_id=str(listener.id),
        control_plane_url=server.url,
        kubeconfig=str(kubeconfig_for(tmp_path, not_an_api_server)),
    )
    result = run_listener(["--once"], environ, tmp_path)
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    assert "discover" in result.stderr
    assert "404" in result.stderr


def test_once_exits_0_with_a_warning_for_a_label_that_is_not_a_uuid(
    tmp_path: Path, server: BackgroundServer, emulator: Emulator, make_client: Any
) -> None:
    # Before: ValueError on every cycle (resync never finished) and a traceback from --once.
    from listener.kube import FIELD_MANAGER
    from tools.fakekube import FakeKube

    client: ControlPlaneClient = make_client()
    listener = client.create_listener(compute_id="cli-odd-label", namespaces=["agents"])
    with FakeKube(["agents"]) as kube:  # without the Gateway API or KEDA CRDs
        labels = {
            naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
            naming.LABEL_LISTENER_ID: str(listener.id),
            naming.LABEL_DEPLOYMENT_ID: "not-a-uuid",
        }
        odd = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "odd", "namespace": "agents", "labels": labels},
            "spec": {"ports": [{"port": 80}]},
        }
        with kube.admin_client("agents") as admin:
            admin.apply(from_dict(odd), field_manager=FIELD_MANAGER)
        environ = valid_env(
            tmp_path,
            api_key=emulator.api_key,
            workspace_id=emulator.tenant_id,
            listener_id=str(listener.id),
            control_plane_url=server.url,
            kubeconfig=str(listener_kubeconfig(tmp_path, kube)),
        )
        result = run_listener(["--once"], environ, tmp_path)
    assert result.code == 0, result
    assert "Traceback" not in result.stderr
    assert "'not-a-uuid', which is not a UUID; skipped" in result.stderr


def test_a_managed_dry_run_shows_the_credentials_secret_and_contacts_no_store(
    tmp_path: Path, server: BackgroundServer, emulator: Emulator, make_client: Any
) -> None:
    client: ControlPlaneClient = make_client()
    listener = client.create_listener(compute_id="cli-managed-dry-run", namespaces=["agents"])
    ours = client.create_deployment(
        external_docker_deployment(
            name="support-agent", image_uri=IMAGE, listener_id=listener.id, k8s_namespace="agents"
        )
    )
    closed = "127.0.0.1:9"  # nothing listens: a dry run must not need the stores
    environ = valid_env(
        tmp_path,
        api_key=emulator.api_key,
        workspace_id=emulator.tenant_id,
        listener_id=str(listener.id),
        control_plane_url=server.url,
    )
    environ |= {
        "LISTENER_STORE_MODE": "managed",
        "LISTENER_POSTGRES_ADMIN_URI": f"postgresql://admin:admin-secret-pw@{closed}/postgres",
        "LISTENER_REDIS_ADMIN_URI": f"redis://:admin-secret-pw@{closed}/0",
    }

    result = run_listener(["--once", "--dry-run"], environ, tmp_path)

    assert result.code == 0, result
    documents = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    names = naming.ObjectNames.of("support-agent", str(ours.id))
    store = next(d for d in documents if (d["kind"], d["metadata"]["name"]) == ("Secret", names.store_secret))
    assert set(store["data"].values()) == {REDACTED}
    assert not any(d["kind"] == "StatefulSet" for d in documents)
    api = next(d for d in documents if (d["kind"], d["metadata"]["name"]) == ("Deployment", names.api))
    refs = {e["name"] for e in api["spec"]["template"]["spec"]["containers"][0]["env"] if "valueFrom" in e}
    assert {"POSTGRES_URI_CUSTOM", "REDIS_URI_CUSTOM", "REDIS_KEY_PREFIX"} <= refs
    assert "admin-secret-pw" not in result.stdout + result.stderr
