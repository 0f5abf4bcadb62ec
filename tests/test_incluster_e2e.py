"""The two halves together: the program's objects in a cluster, the listener running as the program's
ServiceAccount with only the program's Roles, registered in LangSmith by the program's provider.

For one stack layout:
1. run the program under mocks and take every Kubernetes object it declares;
2. apply them to fakekube as admin (Helm releases and the add-ons' custom resources aside: no Helm
   runs here; the listener's own Deployment aside: the test runs the listener in-process in its place);
3. register each listener with the program's registration provider against a control-plane emulator
   per workspace, so the listener id is the one registration produced;
4. start each listener from its Deployment's environment (secrets and downward-API values resolved
   from the cluster), authenticated with a token of the ServiceAccount the program created, so only
   the program's Roles authorize it (fakekube enforcing RBAC);
5. roll out an Agent Server to DEPLOYED, delete it in LangSmith and see it pruned.

A verb missing from the program's Roles must fail it (the last test).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from lightkube.codecs import from_dict
from pulumi.dynamic import Config, ConfigureRequest

from components.listener import DEPLOYMENT
from components.registration import ListenerRegistrationProvider
from listener import kube as listener_kube
from listener import naming
from listener.controlplane import ControlPlaneClient, ControlPlaneConfig, EmulatorStatusReporter
from listener.controlplane.builders import external_docker_deployment
from listener.emulator import BackgroundServer, Emulator
from listener.kube import AccessRule, Cluster
from listener.reconcile import Reconciler
from listener.service import HttpProber, reconciler_config
from listener.settings import Settings
from tests.kube_schemas import declared_objects
from tests.support import run_variant
from tools import fakekube
from tools.harness import PlanResult

API_KEY = "lsv2_pt_e2e_key_000000000000"
IMAGE = "registry.example.com/agents/support@sha256:" + "1" * 64
REGISTRATION = "pulumi-python:dynamic/langsmith:ListenerRegistration"
NOT_APPLIED_KINDS = {"GatewayClass", "Gateway", "EnvoyProxy"}
"""Custom resources of add-ons whose CRDs come with Helm charts, which do not run here."""

# Layouts under test: in-cluster stores (what this listener renders today), no external routing
# (no gateway runs in fakekube), so only what the listener needs from the program remains.
LAYOUT = {"stores": {"mode": "in-cluster"}, "routing": {"mode": "none"}}
SHARED_NAMESPACE = ("example-shared-namespace", LAYOUT)
MULTI_NAMESPACE = ("example-existing-cluster", LAYOUT)


class AgentServers:
    """Answers the listener's `GET /ok` health check, as a running Agent Server would."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if self.path.endswith("/ok") else 404)
                self.end_headers()
                self.wfile.write(b'{"ok":true}')

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.template = f"http://127.0.0.1:{self._server.server_address[1]}/{{namespace}}/{{service}}/ok"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class RunningListener:
    name: str
    namespaces: list[str]
    listener_id: str
    control_plane: ControlPlaneClient
    reconciler: Reconciler
    reports: list[Any] = field(default_factory=list)

    def cycle(self, now: datetime) -> Any:
        report = self.reconciler.run_once(now)
        self.reports.append(report)
        return report


def _secret_value(admin: Any, namespace: str, name: str, key: str) -> str:
    from lightkube.resources.core_v1 import Secret

    secret = admin.get(Secret, name, namespace=namespace)
    if secret.stringData and key in secret.stringData:
        return secret.stringData[key]
    return base64.b64decode(secret.data[key]).decode()


def _environment(deployment: Mapping[str, Any], admin: Any, pod_name: str) -> dict[str, str]:
    """The Deployment's env as the kubelet would resolve it for the listener's pod."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    namespace = deployment["metadata"]["namespace"]
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = _secret_value(admin, namespace, ref["name"], ref["key"])
        else:
            field_path = item["valueFrom"]["fieldRef"]["fieldPath"]
            env[item["name"]] = {"metadata.namespace": namespace, "metadata.name": pod_name}[field_path]
    return env


@dataclass
class World:
    kube: Any
    emulators: dict[str, BackgroundServer]
    """workspace id -> its control-plane emulator."""
    listeners: dict[str, RunningListener]
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def cycle_all(self, after: timedelta = timedelta(seconds=10)) -> dict[str, Any]:
        self.now += after
        return {name: running.cycle(self.now) for name, running in self.listeners.items()}

    def cluster_objects(self, namespace: str, listener_id: str) -> list[dict[str, Any]]:
        """Everything of this listener's in `namespace`, read as admin."""
        admin = Cluster(self.kube.admin_client(namespace), rules=_EVERYTHING)
        found = []
        for api_version, kind in (
            ("apps/v1", "Deployment"),
            ("apps/v1", "StatefulSet"),
            ("v1", "Secret"),
            ("v1", "Service"),
        ):
            found += admin.list(api_version, kind, namespace, naming.ownership_selector(listener_id))
        return found


_EVERYTHING = tuple(
    AccessRule(group, (resource,), ("get", "list"))
    for group, resource in (
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("", "secrets"),
        ("", "services"),
    )
)


def _apply_program(kube: Any, result: PlanResult) -> dict[str, dict[str, Any]]:
    """Apply the program's objects as the cluster admin; returns the listeners' Deployments by namespace."""
    objects = [o for o in declared_objects(result) if o["kind"] not in NOT_APPLIED_KINDS]
    deployments = {}
    with kube.admin_client() as admin:
        # Namespaces first, as Pulumi's dependencies order them.
        for manifest in sorted(objects, key=lambda o: o["kind"] != "Namespace"):
            if manifest["kind"] == "Deployment" and manifest["metadata"]["name"] == DEPLOYMENT:
                deployments[manifest["metadata"]["namespace"]] = manifest
                continue
            body = _masked_secrets_filled(manifest)
            admin.apply(from_dict(body), field_manager="pulumi-kubernetes", force=True)
    return deployments


def _masked_secrets_filled(manifest: dict[str, Any]) -> dict[str, Any]:
    # The mock run masks secret values; in the cluster the listener's Secret holds the API key.
    if manifest["kind"] == "Secret":
        return {**manifest, "stringData": dict.fromkeys(manifest.get("stringData", {}), API_KEY)}
    return manifest


def _listener_name(registration: Any) -> str:
    # `<stack name>-listener-<listener>-registration` (components.incluster, components.listener)
    return registration.name.removesuffix("-registration").split("-listener-", 1)[1]


def _register(result: PlanResult, emulators: Mapping[str, BackgroundServer]) -> dict[str, str]:
    """Run the program's registration provider for each listener; listener name -> listener id."""
    ids = {}
    for registration in [r for r in result.resources if r.type == REGISTRATION]:
        inputs = dict(registration.inputs)
        server = emulators[inputs["workspace_id"]]
        provider = ListenerRegistrationProvider()
        provider.configure(
            ConfigureRequest(Config({"langsmith-dataplane:api_key": API_KEY}, "langsmith-dataplane"))
        )
        created = provider.create(
            {**inputs, "api_key": API_KEY, "control_plane_url": server.url, "adopt_listener_id": None}
        )
        ids[_listener_name(registration)] = created.id
    return ids


@pytest.fixture
def servers() -> Iterator[AgentServers]:
    servers = AgentServers()
    yield servers
    servers.close()


@contextmanager
def build_world(tmp_path: Path, layout: tuple[str, dict[str, Any]], servers: AgentServers) -> Iterator[World]:
    stack, overrides = layout
    result = run_variant(tmp_path, stack, overrides)
    workspaces = {listener["workspace"] for listener in result.outputs["listeners"]}
    tenants = {r.inputs["workspace_id"] for r in result.resources if r.type == REGISTRATION}
    emulators = {
        tenant: BackgroundServer(Emulator(api_key=API_KEY, tenant_id=tenant)).start()
        for tenant in sorted(tenants)
    }
    assert len(emulators) == len(workspaces)
    # No namespace and no grant of fakekube's own: only what the program declares.
    # The listener lists HTTPRoutes and ScaledObjects whatever it renders (its inventory), so both CRDs
    # are installed, as on a cluster with the Gateway and KEDA add-ons.
    kube = fakekube.FakeKube((), crds=("keda", "gateway-api"), watched_rules=(), own_rules=()).start()
    # Agent namespaces enforce Pod Security `restricted` and the listener renders runAsNonRoot, so an
    # Agent Server image must run as a non-root user; this test's image does.
    kube.controller.set_image_user(IMAGE, "10001")
    try:
        deployments = _apply_program(kube, result)
        ids = _register(result, emulators)
        listeners = {}
        with kube.admin_client() as admin:
            for spec in result.outputs["listeners"]:
                deployment = deployments[spec["listenerNamespace"]]
                env = _environment(deployment, admin, pod_name=f"listener-{spec['name']}-0")
                tenant = env["LISTENER_WORKSPACE_ID"]
                # Stand-ins for what the real listener reaches over the network: the emulator instead
                # of LangSmith, the test's Agent Servers instead of cluster DNS, and the emulator's status
                # channel so DEPLOYED shows in LangSmith.
                env.pop("LISTENER_REGION", None)
                env.update(
                    LISTENER_CONTROL_PLANE_URL=emulators[tenant].url,
                    LISTENER_LISTENER_ID=ids[spec["name"]],
                    LISTENER_STATUS_REPORTING="emulator",
                    LISTENER_PROBE_URL_TEMPLATE=servers.template,
                )
                settings = Settings.model_validate(
                    {k.removeprefix("LISTENER_").lower(): v for k, v in env.items()}
                )
                identity = kube.identity_for_service_account(spec["listenerNamespace"], "listener")
                client = kube.client(spec["namespaces"][0], identity=identity, field_manager=None)
                control_plane = ControlPlaneClient(
                    ControlPlaneConfig(
                        base_url=settings.base_url, api_key=API_KEY, tenant_id=settings.workspace_id
                    )
                )
                reconciler = Reconciler(
                    reconciler_config(settings),
                    control_plane,
                    Cluster(client),
                    EmulatorStatusReporter(control_plane),
                    HttpProber(lambda ns, svc, s=settings: s.probe_url(ns, svc, 8000)),
                )
                listeners[spec["name"]] = RunningListener(
                    spec["name"], spec["namespaces"], str(settings.listener_id), control_plane, reconciler
                )
        yield World(kube, emulators, listeners)
    finally:
        kube.stop()
        for server in emulators.values():
            server.stop()


def deploy(running: RunningListener, name: str, namespace: str) -> str:
    request = external_docker_deployment(
        name=name, image_uri=IMAGE, listener_id=UUID(running.listener_id), k8s_namespace=namespace
    )
    return str(running.control_plane.create_deployment(request).id)


def status(running: RunningListener, deployment_id: str) -> str:
    deployment = running.control_plane.get_deployment(deployment_id)
    return str(running.control_plane.get_revision(deployment_id, deployment.latest_revision_id).status)


def roll_out_and_prune(world: World, running: RunningListener, namespace: str, name: str) -> None:
    # A second deployment stays: the listener never prunes the last of its deployments unless
    # LISTENER_PRUNE_ALLOW_EMPTY says so (listener/README.md, "Safety rules").
    deployment_id = deploy(running, name, namespace)
    keeper = deploy(running, f"{name}-keeper", namespace)
    for _ in range(10):  # bounded: a rollout takes a few cycles of the fake controller
        reports = world.cycle_all()
        assert not reports[running.name].errors, reports[running.name].errors
        if status(running, deployment_id) == status(running, keeper) == "DEPLOYED":
            break
    assert status(running, deployment_id) == "DEPLOYED"
    assert world.cluster_objects(namespace, running.listener_id)

    running.control_plane.delete_deployment(deployment_id)
    # Confirmed deleted in one cycle, pruned once that has held for the prune window (5 min).
    for after in (timedelta(seconds=10), timedelta(minutes=5, seconds=10)):
        report = world.cycle_all(after)[running.name]
        assert not report.errors, report.errors
    assert deployment_id in report.pruned
    workloads = [
        o
        for o in world.cluster_objects(namespace, running.listener_id)
        if o["kind"] in ("Deployment", "StatefulSet")
        and o["metadata"]["labels"].get(naming.LABEL_DEPLOYMENT_ID) == deployment_id
    ]
    assert workloads == []


def test_two_listeners_share_one_namespace(tmp_path: Path, servers: AgentServers) -> None:
    with build_world(tmp_path, SHARED_NAMESPACE, servers) as world:
        a, b = world.listeners["listener-a"], world.listeners["listener-b"]
        # b's Agent Server keeps running while a's comes and goes in the same namespace.
        kept = deploy(b, "kept", "agents")
        roll_out_and_prune(world, a, "agents", "support")
        for _ in range(10):  # bounded
            if status(b, kept) == "DEPLOYED":
                break
            world.cycle_all()
        assert status(b, kept) == "DEPLOYED"
        kinds = {o["kind"] for o in world.cluster_objects("agents", b.listener_id)}
        assert {"Deployment", "StatefulSet"} <= kinds


def test_a_listener_watching_several_namespaces(tmp_path: Path, servers: AgentServers) -> None:
    with build_world(tmp_path, MULTI_NAMESPACE, servers) as world:
        (running,) = world.listeners.values()
        assert running.namespaces == ["agents", "agents-batch"]
        roll_out_and_prune(world, running, "agents-batch", "nightly")
        roll_out_and_prune(world, running, "agents", "support")


def test_a_verb_missing_from_the_programs_roles_fails_the_rollout(
    tmp_path: Path, servers: AgentServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The program renders its Roles from listener.kube's table; take `delete` off Deployments there.
    # The listener itself still checks its calls against the full table (Cluster's default rules were
    # bound at import), so only the API server's RBAC stands between it and the missing verb.
    reduced = tuple(
        AccessRule(r.api_group, r.resources, tuple(v for v in r.verbs if v != "delete"))
        if "deployments" in r.resources
        else r
        for r in listener_kube.WATCHED_NAMESPACE_RULES
    )
    monkeypatch.setattr(listener_kube, "WATCHED_NAMESPACE_RULES", reduced)
    with build_world(tmp_path, MULTI_NAMESPACE, servers) as world:
        (running,) = world.listeners.values()
        # fakekube answers with the API server's RBAC message (a 403 Forbidden).
        with pytest.raises(AssertionError, match='cannot delete resource "deployments" in API group "apps"'):
            roll_out_and_prune(world, running, "agents", "support")
