"""Run the fake API server on 127.0.0.1 in a background thread, and build lightkube clients for it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import uvicorn
from lightkube import AsyncClient, Client, KubeConfig

from tools.fakekube.app import Context, build_app
from tools.fakekube.controller import FakeController
from tools.fakekube.observe import Faults, RequestLog
from tools.fakekube.store import Store

DEFAULT_USER = "system:serviceaccount:langsmith:langsmith-listener"


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


class FakeKube:
    """A fake Kubernetes API server. ``with FakeKube(namespaces=["a"]) as kube: kube.client()``.

    ``namespaces`` are created and are the only namespaces requests may touch (like a namespace-scoped
    Role); pass ``restrict_namespaces=False`` to allow everything. ``auto`` picks the controller mode.
    """

    def __init__(
        self,
        namespaces: Iterable[str] = ("default",),
        *,
        auto: bool = True,
        restrict_namespaces: bool = True,
        user: str = DEFAULT_USER,
        max_watch_seconds: float = 30.0,
    ) -> None:
        self.namespaces = tuple(namespaces)
        self.store = Store(self.namespaces)
        self.controller = FakeController(self.store, auto=auto)
        self.log = RequestLog()
        self.faults = Faults()
        self.context = Context(
            store=self.store,
            log=self.log,
            faults=self.faults,
            controller=self.controller,
            namespaces=frozenset(self.namespaces) if restrict_namespaces else None,
            user=user,
            max_watch_seconds=max_watch_seconds,
        )
        self.app = build_app(self.context)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

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
            self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2, access_log=False
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

    # ------------------------------------------------------------------ clients

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("not started")
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig_dict(self, namespace: str | None = None) -> dict[str, Any]:
        """A kubeconfig (as a dict; dump it to YAML for kubectl) pointing at this server."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fakekube",
            "clusters": [{"name": "fakekube", "cluster": {"server": self.url}}],
            "users": [{"name": "listener", "user": {"token": "fakekube"}}],
            "contexts": [
                {
                    "name": "fakekube",
                    "context": {
                        "cluster": "fakekube",
                        "user": "listener",
                        "namespace": namespace or self.namespaces[0],
                    },
                }
            ],
        }

    def kubeconfig(self, namespace: str | None = None) -> KubeConfig:
        return KubeConfig.from_dict(self.kubeconfig_dict(namespace))

    def client(
        self, namespace: str | None = None, *, field_manager: str | None = "langsmith-listener", **kwargs: Any
    ) -> Client:
        """A real lightkube Client talking HTTP to this server; close it (or use ``with``) when done."""
        return Client(self.kubeconfig(namespace), field_manager=field_manager, trust_env=False, **kwargs)

    def async_client(
        self, namespace: str | None = None, *, field_manager: str | None = "langsmith-listener", **kwargs: Any
    ) -> AsyncClient:
        return AsyncClient(self.kubeconfig(namespace), field_manager=field_manager, trust_env=False, **kwargs)
