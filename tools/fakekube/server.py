"""Run the fake API server on 127.0.0.1 in a background thread; identities, kubeconfigs and clients.

A new ``FakeKube`` looks like a freshly installed cluster: the built-in namespaces (``default``,
``kube-system``, ``kube-public``, ``kube-node-lease``), three nodes, a default StorageClass, the
bootstrap RBAC policy, and the namespaces you ask for. Requests authenticate with bearer tokens:

* the *admin* identity (group ``system:masters``) bypasses RBAC, for test setup;
* the *listener* identity, the default of ``client()``, is the ServiceAccount
  ``langsmith/langsmith-listener``; its access comes from real Role/RoleBinding objects created in
  every configured namespace from ``listener.kube.WATCHED_NAMESPACE_RULES`` (and a Role in its own
  namespace from ``OWN_NAMESPACE_RULES``), so a call outside the listener's declared table is a
  real 403;
* any other ServiceAccount that exists: ``token_for_service_account`` (like TokenRequest), and
  ``add_user`` for plain users/groups.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import uvicorn
from lightkube import AsyncClient, Client, KubeConfig

from tools.fakekube import crds as bundled_crds
from tools.fakekube.admission import KubeAdmission
from tools.fakekube.app import Context, build_app
from tools.fakekube.auth import (
    AUTHENTICATED,
    MASTERS,
    Authorizer,
    Tokens,
    UserInfo,
    bootstrap_policy,
    service_account_user,
)
from tools.fakekube.controller import FakeController
from tools.fakekube.kinds import (
    CLUSTERROLE,
    CLUSTERROLEBINDING,
    CRD,
    NAMESPACE,
    NODE,
    ROLE,
    ROLEBINDING,
    SERVICEACCOUNT,
    STORAGECLASS,
    KindRegistry,
)
from tools.fakekube.kubelet import DEFAULT_NODES, NodeSpec
from tools.fakekube.observe import Faults, RequestLog
from tools.fakekube.store import Store, WriteOptions

LISTENER_NAMESPACE = "langsmith"
LISTENER_SERVICE_ACCOUNT = "langsmith-listener"
LISTENER_ROLE = "langsmith-listener"
ADMIN_USER = "fakekube-admin"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
DEFAULT_STORAGE_CLASS = "standard"


@dataclass(frozen=True)
class Identity:
    """Who a client is: a bearer token and the user name RBAC sees."""

    name: str
    token: str

    def __repr__(self) -> str:  # never print the token
        return f"Identity({self.name!r})"


class _Server(uvicorn.Server):
    """uvicorn.Server that signals startup through an Event (waitable with a bound, unlike ``started``)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    def install_signal_handlers(self) -> None:
        # The test process owns its signals; a server in a thread must not take them.
        return


def _listener_rules() -> tuple[Sequence[Any], Sequence[Any]]:
    # The listener's declared access table is the one source of truth for its RBAC.
    from listener.kube import OWN_NAMESPACE_RULES, WATCHED_NAMESPACE_RULES

    return WATCHED_NAMESPACE_RULES, OWN_NAMESPACE_RULES


def role_rules(rules: Iterable[Any]) -> list[dict[str, Any]]:
    """``AccessRule``s (api_group, resources, verbs) as Role ``rules`` entries."""
    return [
        {"apiGroups": [r.api_group], "resources": list(r.resources), "verbs": list(r.verbs)} for r in rules
    ]


class FakeKube:
    """A fake Kubernetes API server. ``with FakeKube(["a"]) as kube: kube.client("a")``.

    ``namespaces`` are created and bound to the listener's Role. ``auto`` picks the controller mode.
    ``crds``: bundled CRDs to install at start ("gateway-api", "keda"); others come and go through the
    API. ``restrict_namespaces=False`` makes the default client the admin (no RBAC).
    """

    def __init__(
        self,
        namespaces: Iterable[str] = ("default",),
        *,
        auto: bool = True,
        restrict_namespaces: bool = True,
        max_watch_seconds: float = 30.0,
        crds: Iterable[str] = (),
        nodes: Iterable[NodeSpec] = DEFAULT_NODES,
        storage_classes: Iterable[str] = (DEFAULT_STORAGE_CLASS,),
        default_image_user: str = "0",
        listener_namespace: str = LISTENER_NAMESPACE,
        listener_service_account: str = LISTENER_SERVICE_ACCOUNT,
        watched_rules: Iterable[Any] | None = None,
        own_rules: Iterable[Any] | None = None,
    ) -> None:
        self.namespaces = tuple(namespaces)
        self.registry = KindRegistry()
        self.store = Store(self.registry)
        self.store.admission = KubeAdmission()
        self.tokens = Tokens()
        self.controller = FakeController(self.store, auto=False, default_image_user=default_image_user)
        self.controller.tokens = self.tokens
        self.authorizer = Authorizer(self.store)
        self.log = RequestLog()
        self.faults = Faults()
        self.listener_namespace = listener_namespace
        self.listener_service_account = listener_service_account
        self.admin = Identity(
            ADMIN_USER, self.tokens.add_user(UserInfo(ADMIN_USER, (MASTERS, AUTHENTICATED)), "fakekube-admin")
        )
        default_watched, default_own = _listener_rules()
        self._bootstrap(
            nodes,
            storage_classes,
            tuple(default_watched if watched_rules is None else watched_rules),
            tuple(default_own if own_rules is None else own_rules),
        )
        self.install_crds(*crds)
        self.controller.run_until_stable()
        self.controller.auto = auto
        self.store.read_hook = self.controller.settle
        self.listener = self.identity_for_service_account(listener_namespace, listener_service_account)
        self.default_identity = self.listener if restrict_namespaces else self.admin
        self.context = Context(
            store=self.store,
            log=self.log,
            faults=self.faults,
            controller=self.controller,
            tokens=self.tokens,
            authorizer=self.authorizer,
            max_watch_seconds=max_watch_seconds,
        )
        self.app = build_app(self.context)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ setup (as the cluster installer)

    def _admin_create(self, kind: Any, namespace: str | None, body: dict[str, Any]) -> None:
        self.store.create(kind, namespace, body, WriteOptions(manager="kube-apiserver", internal=True))

    def _bootstrap(
        self,
        nodes: Iterable[NodeSpec],
        storage_classes: Iterable[str],
        watched: Sequence[Any],
        own: Sequence[Any],
    ) -> None:
        for policy in bootstrap_policy():
            kind = CLUSTERROLE if policy["kind"] == "ClusterRole" else CLUSTERROLEBINDING
            self._admin_create(kind, None, policy)
        for node in nodes:
            self._admin_create(NODE, None, node.body())
        for i, name in enumerate(storage_classes):
            self._admin_create(
                STORAGECLASS,
                None,
                {
                    "metadata": {
                        "name": name,
                        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}
                        if i == 0
                        else {},
                    },
                    "provisioner": "fakekube.local/provisioner",
                    "reclaimPolicy": "Delete",
                    "volumeBindingMode": "Immediate",
                },
            )
        wanted = dict.fromkeys([*SYSTEM_NAMESPACES, self.listener_namespace, *self.namespaces])
        for ns in wanted:
            self._admin_create(NAMESPACE, None, {"metadata": {"name": ns}})
        self.controller.run_until_stable()  # default ServiceAccounts, root CA ConfigMaps
        self._admin_create(
            SERVICEACCOUNT, self.listener_namespace, {"metadata": {"name": self.listener_service_account}}
        )
        subject = {
            "kind": "ServiceAccount",
            "name": self.listener_service_account,
            "namespace": self.listener_namespace,
        }
        # One Role per namespace: the watched table, plus the own-namespace table in the listener's
        # namespace (both, when the listener also watches its own namespace).
        per_namespace: dict[str, list[Any]] = {}
        for n in self.namespaces:
            per_namespace.setdefault(n, []).extend(watched)
        per_namespace.setdefault(self.listener_namespace, []).extend(own)
        for ns, rules in per_namespace.items():
            if not rules:
                continue
            meta = {"name": LISTENER_ROLE, "labels": {"app.kubernetes.io/managed-by": "fakekube"}}
            self._admin_create(ROLE, ns, {"metadata": dict(meta), "rules": role_rules(rules)})
            self._admin_create(
                ROLEBINDING,
                ns,
                {
                    "metadata": dict(meta),
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Role",
                        "name": LISTENER_ROLE,
                    },
                    "subjects": [subject],
                },
            )

    def install_crd(self, manifest: Mapping[str, Any]) -> None:
        """Create a CustomResourceDefinition (as admin) and wait until its kinds are served."""
        with self.store.lock:
            self.store.create(CRD, None, dict(manifest), WriteOptions(manager="fakekube", user=None))
            self.controller.run_until_stable()

    def install_crds(self, *names: str) -> None:
        """Install bundled CRDs: ``"gateway-api"`` (HTTPRoute), ``"keda"`` (ScaledObject)."""
        for name in names:
            for manifest in bundled_crds.bundled(name):
                self.install_crd(manifest)

    # ------------------------------------------------------------------ identities

    def token_for_service_account(self, namespace: str, name: str) -> str:
        """A bearer token for an existing ServiceAccount, valid while it exists (like TokenRequest)."""
        with self.store.lock:
            sa = self.store.find(SERVICEACCOUNT, namespace, name)
            if sa is None:
                raise LookupError(f'serviceaccount "{name}" not found in namespace "{namespace}"')
            return self.tokens.add_service_account(namespace, name, sa["metadata"]["uid"])

    def identity_for_service_account(self, namespace: str, name: str) -> Identity:
        return Identity(
            service_account_user(namespace, name).name, self.token_for_service_account(namespace, name)
        )

    def settle(self) -> None:
        """In automatic mode, wait for the controllers' reaction to the last writes (no-op in manual mode)."""
        self.controller.settle()

    def add_user(self, name: str, groups: Iterable[str] = ()) -> Identity:
        """A plain user (RBAC ``User``/``Group`` subjects) with a static token."""
        return Identity(name, self.tokens.add_user(UserInfo(name, (*groups, AUTHENTICATED))))

    # ------------------------------------------------------------------ lifecycle

    def start(self, port: int = 0, *, host: str = "127.0.0.1", timeout: float = 10.0) -> FakeKube:
        if self._server is not None:
            raise RuntimeError("already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this. Without it, a keep-alive response written in two
        # segments waits out the client's delayed ACK: 40 ms per request instead of 1.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
            access_log=False,
            proxy_headers=False,
            # The C parser and libuv loop (uvicorn[standard]) when installed: a third of the per-request cost.
            http="httptools" if importlib.util.find_spec("httptools") else "h11",
            loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        )
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"fakekube:{self.port}", daemon=True
        )
        self._thread.start()
        if not self._server.ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"fakekube did not start within {timeout} s")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """End open watches, stop serving, join the thread (bounded)."""
        if self._server is None:
            return
        self.store.end_watches()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"fakekube did not stop within {timeout} s")
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeKube:
        return self.start() if self._server is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ kubeconfigs and clients

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("not started")
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig_dict(
        self, namespace: str | None = None, *, identity: Identity | None = None
    ) -> dict[str, Any]:
        """A kubeconfig (as a dict; dump it to YAML for kubectl) for ``identity`` (default: the listener)."""
        who = identity or self.default_identity
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fakekube",
            "clusters": [{"name": "fakekube", "cluster": {"server": self.url}}],
            "users": [{"name": who.name, "user": {"token": who.token}}],
            "contexts": [
                {
                    "name": "fakekube",
                    "context": {
                        "cluster": "fakekube",
                        "user": who.name,
                        "namespace": namespace or (self.namespaces or ("default",))[0],
                    },
                }
            ],
        }

    def kubeconfig(self, namespace: str | None = None, *, identity: Identity | None = None) -> KubeConfig:
        return KubeConfig.from_dict(self.kubeconfig_dict(namespace, identity=identity))

    def client(
        self,
        namespace: str | None = None,
        *,
        identity: Identity | None = None,
        field_manager: str | None = "langsmith-listener",
        **kwargs: Any,
    ) -> Client:
        """A real lightkube Client talking HTTP to this server as ``identity`` (default: the listener's
        ServiceAccount); close it (or use ``with``) when done."""
        return Client(
            self.kubeconfig(namespace, identity=identity),
            field_manager=field_manager,
            trust_env=False,
            **kwargs,
        )

    def admin_client(
        self, namespace: str | None = None, *, field_manager: str | None = "fakekube-admin", **kwargs: Any
    ) -> Client:
        """A client that bypasses RBAC (``system:masters``): for test setup and inspection."""
        return self.client(namespace, identity=self.admin, field_manager=field_manager, **kwargs)

    def async_client(
        self,
        namespace: str | None = None,
        *,
        identity: Identity | None = None,
        field_manager: str | None = "langsmith-listener",
        **kwargs: Any,
    ) -> AsyncClient:
        return AsyncClient(
            self.kubeconfig(namespace, identity=identity),
            field_manager=field_manager,
            trust_env=False,
            **kwargs,
        )
