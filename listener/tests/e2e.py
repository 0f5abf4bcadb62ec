"""The end-to-end world the listener's e2e tests share: the real reconciler and clients over real
HTTP against the control-plane emulator and the fake Kubernetes API (with its fake controller).

Time is passed in explicitly (`world.cycle(after=...)`), so deadlines and resyncs are tested without
waiting, and every scenario synchronises on state, never on sleeps. The fixtures are registered for
every test module by conftest.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID

import pytest
from lightkube.codecs import from_dict

from listener import naming
from listener.controlplane import ControlPlaneClient, EmulatorStatusReporter
from listener.controlplane.builders import external_docker_deployment
from listener.desired import Platform
from listener.emulator import Emulator
from listener.kube import FIELD_MANAGER, AccessRule, Cluster
from listener.reconcile import CycleReport, PrunePolicy, Reconciler, ReconcilerConfig
from listener.service import HttpProber
from listener.spec import RenderOptions, SecretValue
from tools.fakekube import FakeKube

NS = "agents"
# The tests' own look at the cluster may read what the listener never reads (Events, ConfigMaps).
READ_ANYTHING = tuple(
    AccessRule(group, (resource,), ("get", "list"))
    for group, resource in [
        ("", "events"),
        ("", "secrets"),
        ("", "services"),
        ("", "pods"),
        ("", "persistentvolumeclaims"),
        ("", "configmaps"),
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "replicasets"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("policy", "poddisruptionbudgets"),
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "networkpolicies"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("keda.sh", "scaledobjects"),
    ]
)
OTHER_NS = "agents-b"
PRUNE_WINDOW = PrunePolicy().window
ALLOW_EMPTY = PrunePolicy(allow_empty=True)
KIND_VERSIONS = {"NetworkPolicy": "networking.k8s.io/v1", "HorizontalPodAutoscaler": "autoscaling/v2"}
IMAGE_1 = "registry.example.com/agents/support@sha256:" + "1" * 64
IMAGE_2 = "registry.example.com/agents/support@sha256:" + "2" * 64
BAD_IMAGE = "registry.example.com/agents/support@sha256:" + "b" * 64


class AgentServers:
    """Stands in for the Agent Servers' `GET /ok`: a real HTTP server on loopback, per-service answers."""

    def __init__(self) -> None:
        self.unhealthy: set[str] = set()
        self.requests: list[str] = []
        servers = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                servers.requests.append(self.path)
                ok = self.path.endswith("/ok") and self.path.split("/")[2] not in servers.unhealthy
                self.send_response(200 if ok else 503)
                self.end_headers()
                self.wfile.write(b'{"ok":true}' if ok else b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url_for(self, namespace: str, service: str) -> str:
        return f"http://127.0.0.1:{self.port}/{namespace}/{service}/ok"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class World:
    emulator: Emulator
    kube: FakeKube
    client: ControlPlaneClient
    listener_id: str
    reconciler: Reconciler
    servers: AgentServers
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    """The reconciler's clock. It starts at the wall clock because the fake controller stamps pod
    conditions with it; from there the test moves it forward explicitly."""
    reports: list[CycleReport] = field(default_factory=list)

    def cycle(self, *, after: timedelta = timedelta(seconds=10), wait: float | None = None) -> CycleReport:
        """One cycle; `wait` overrides the reconciler's `cycle_wait` (a bound: it returns when the steps end)."""
        self.now += after
        report = self.reconciler.run_once(self.now, wait=wait)
        self.reports.append(report)
        return report

    def deploy(self, name: str, image: str = IMAGE_1, namespace: str = NS, **kwargs: Any) -> str:
        request = external_docker_deployment(
            name=name, image_uri=image, listener_id=self.listener_id, k8s_namespace=namespace, **kwargs
        )
        return str(self.client.create_deployment(request).id)

    def revision_status(self, deployment_id: str) -> tuple[str, str]:
        deployment = self.client.get_deployment(deployment_id)
        revision = self.client.get_revision(deployment_id, deployment.latest_revision_id)  # type: ignore[arg-type]
        return str(revision.id), str(revision.status)

    def names(self, deployment_id: str) -> naming.ObjectNames:
        return naming.ObjectNames.of(self.client.get_deployment(deployment_id).name, deployment_id)

    def get(self, kind: str, name: str, namespace: str = NS, api_version: str | None = None) -> dict | None:
        versions = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "PersistentVolumeClaim": "v1"}
        with self.kube.admin_client(namespace) as client:  # the test's own look, not the listener's
            return Cluster(client, rules=READ_ANYTHING).get(
                api_version or versions.get(kind, "v1"), kind, namespace, name
            )

    def env_secret(self, deployment_id: str, namespace: str = NS) -> dict | None:
        """The env Secret the API server Deployment reads (one per distinct environment)."""
        api = self.get("Deployment", self.names(deployment_id).api, namespace)
        if api is None:
            return None
        container = api["spec"]["template"]["spec"]["containers"][0]
        return self.get("Secret", container["envFrom"][0]["secretRef"]["name"], namespace)

    def env_secret_names(self, names: naming.ObjectNames, namespace: str = NS) -> list[str]:
        prefix = names.env_secret + "-"
        return sorted(
            s["metadata"]["name"]
            for s in self.list("v1", "Secret", namespace)
            if s["metadata"]["name"].startswith(prefix)
        )

    def list(self, api_version: str, kind: str, namespace: str = NS) -> list[dict]:
        with self.kube.admin_client(namespace) as client:
            return Cluster(client, rules=READ_ANYTHING).list(api_version, kind, namespace, {})

    def writes(self) -> int:
        return len(
            [
                r
                for r in self.kube.log.writes()
                if r.field_manager and r.field_manager.startswith(FIELD_MANAGER)
            ]
        )


def make_reconciler(
    emulator_client: ControlPlaneClient,
    kube: FakeKube,
    listener_id: str,
    servers: AgentServers,
    namespaces: tuple[str, ...] = (NS,),
    *,
    options: RenderOptions | None = None,
    password_prefix: str = "generated-password",  # noqa: S107 -- a test prefix, not a password
    prober: Any = None,
    watch: bool = False,
    stores: Any = None,
    fence: Any = None,
    **config: Any,
) -> Reconciler:
    cluster = Cluster(kube.client(namespaces[0]), fence=fence)
    settings = ReconcilerConfig(
        listener_id=UUID(listener_id),
        namespaces=namespaces,
        options=options or RenderOptions(run_as_non_root=True),
        platform=Platform(
            listener_id=listener_id,
            langsmith_endpoint="https://api.smith.langchain.com",
            api_key=SecretValue("lsv2_pt_platform_key_for_agents"),
        ),
        **config,
    )
    counter = iter(range(1000))
    return Reconciler(
        settings,
        emulator_client,
        cluster,
        EmulatorStatusReporter(emulator_client),
        prober or HttpProber(servers.url_for),
        new_password=lambda: f"{password_prefix}-{next(counter)}",
        watch=(lambda: kube.async_client(namespaces[0])) if watch else None,
        stores=stores,
    )


def gated_prober(world: World) -> set[str]:
    """Give `world` a reconciler whose `GET /ok` answers 200 only for the API Services added to the
    returned set: a rollout stays under way (ticks step it) until the test lets it finish."""
    ready: set[str] = set()
    world.reconciler = make_reconciler(
        world.client,
        world.kube,
        world.listener_id,
        world.servers,
        (NS,),
        prober=lambda namespace, service: service in ready,
    )
    return ready


@dataclass
class HeldProbe:
    """`GET /ok` that hangs for the API Services in `held` (as an Agent Server that does not answer
    until its timeout) until `release` is set, bounded at 30 s, then answers `answer`; `stuck` is set
    once one hangs. Every other service answers 200."""

    answer: bool = True
    held: set[str] = field(default_factory=set)
    stuck: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __call__(self, namespace: str, service: str) -> bool:
        if service in self.held:
            self.stuck.set()
            self.release.wait(30)
            return self.answer
        return True


def with_probe(world: World, prober: Any, **config: Any) -> None:
    """Replace `world`'s reconciler (closed first) with one watching both namespaces that probes with
    `prober`; `config` as for `make_reconciler` (e.g. the loop's `cycle_wait=1.0`)."""
    world.reconciler.close(5)
    world.reconciler = make_reconciler(
        world.client, world.kube, world.listener_id, world.servers, (NS, OTHER_NS), prober=prober, **config
    )


def foreign_service(kube: FakeKube, name: str) -> None:
    """Someone else's Service with one of our names (another field manager, none of our labels)."""
    theirs = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "labels": {"team": "theirs"}},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"name": "web", "port": 9999}]},
    }
    with kube.admin_client(NS) as client:
        client.create(from_dict(theirs), field_manager="someone-else")


@pytest.fixture
def servers() -> Iterator[AgentServers]:
    servers = AgentServers()
    yield servers
    servers.close()


CRDS = ("gateway-api", "keda")


def prepared_cluster(*namespaces: str, crds: tuple[str, ...] = CRDS) -> FakeKube:
    """A cluster prepared for the listener: the Gateway API and KEDA CRDs installed (unless `crds`
    says otherwise), and the test images declared to run as a non-root user (the listener sets
    runAsNonRoot without a runAsUser on Agent Server pods, and the fake kubelet checks it against the
    image's user, root by default)."""
    fake = FakeKube(namespaces, auto=True, crds=crds)
    for image in (IMAGE_1, IMAGE_2, BAD_IMAGE):
        fake.controller.set_image_user(image, 1000)
    return fake


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with prepared_cluster(NS, OTHER_NS) as fake:
        yield fake


@pytest.fixture
def world(emulator: Emulator, kube: FakeKube, servers: AgentServers, make_client: Any) -> Iterator[World]:
    client: ControlPlaneClient = make_client()
    listener = client.create_listener(compute_id="e2e-cluster", namespaces=[NS, OTHER_NS])
    reconciler = make_reconciler(client, kube, str(listener.id), servers, namespaces=(NS, OTHER_NS))
    world = World(emulator, kube, client, str(listener.id), reconciler, servers)
    yield world
    world.reconciler.close(5.0)  # its work queue's threads
