"""`/healthz`, `/readyz` and `/metrics` on one small HTTP port (`LISTENER_HEALTH_PORT`, default 8080).

* `GET /healthz` (liveness): 200 while the loop makes progress -- a cycle ended, a standby tick
  passed, or a control-plane or Kubernetes request of the loop completed -- within
  `LISTENER_HEALTH_STALL_SECONDS`; 503 when it is stuck, so the kubelet restarts it. Requests of
  the leader election thread do not count: a stuck loop must not be kept alive by its Lease renewals.
* `GET /readyz` (readiness): 200 once a cycle has listed the control plane successfully while
  leading (leader election off: the process always leads), or, on a standby, while it reaches the
  API server to follow the Lease ("healthy standby"), so a rolling update of the listener's own
  Deployment can proceed; 503 otherwise. The body says which.
* `GET /metrics`: Prometheus text format (OpenMetrics when asked), from `listener.metrics`.

The server is the standard library's threading HTTP server in a daemon thread: three read-only
routes need nothing more, and the image stays free of a web framework.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)


class Leadership(Protocol):
    def is_leader(self) -> bool: ...
    def healthy(self) -> bool: ...


class Health:
    """What the probes answer, from what the loop reports. Thread-safe; time is injected."""

    def __init__(
        self,
        *,
        stall_after: float,
        leadership: Leadership | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._stall_after = stall_after
        self.leadership = leadership
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._progress = monotonic()
        self._polled = False

    def progressed(self, *_: object) -> None:
        """The loop did something (accepts and ignores arguments, so it can be any callback)."""
        with self._lock:
            self._progress = self._monotonic()

    def polled(self, ok: bool) -> None:
        """A cycle ended; `ok` when its control-plane list succeeded."""
        with self._lock:
            self._progress = self._monotonic()
            self._polled = self._polled or ok

    def new_term(self) -> None:
        """Leadership was (re)gained: readiness waits for this term's first good cycle."""
        with self._lock:
            self._polled = False

    def live(self) -> tuple[bool, str]:
        with self._lock:
            idle = self._monotonic() - self._progress
        if idle >= self._stall_after:
            return False, f"no progress for {idle:.0f} s (limit {self._stall_after:.0f} s)"
        return True, f"progress {idle:.0f} s ago"

    def ready(self) -> tuple[bool, str]:
        with self._lock:
            polled = self._polled
        if self.leadership is not None and not self.leadership.is_leader():
            if self.leadership.healthy():
                return True, "standby: following the leader Lease"
            return False, "standby: cannot reach the API server to follow the leader Lease"
        if not polled:
            return False, "leader: no successful control-plane poll yet"
        return True, "leader: polling"


class HealthServer:
    def __init__(self, health: Health, port: int, *, registry: CollectorRegistry = REGISTRY):
        self.health = health
        self._registry = registry
        handler = _handler(health, registry)
        self._server = _server(port, handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="health", daemon=True
        )

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health and metrics on port %d (/healthz, /readyz, /metrics)", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _server(port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """Dual-stack `[::]:port` where IPv6 exists (pods may have only an IPv6 address), else `0.0.0.0`."""
    if socket.has_ipv6:
        try:
            return _DualStack(("::", port), handler)
        except OSError:
            pass
    return _IPv4(("0.0.0.0", port), handler)  # noqa: S104 - probes and scrapes come from outside the pod


class _IPv4(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _DualStack(_IPv4):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _handler(health: Health, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "langsmith-dataplane-listener"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(registry), content_type)
            elif path in ("/healthz", "/readyz"):
                ok, why = health.live() if path == "/healthz" else health.ready()
                self._send(200 if ok else 503, f"{'ok' if ok else 'failed'}: {why}\n".encode())
            else:
                self._send(404, b"not found: try /healthz, /readyz or /metrics\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return  # probes every few seconds would drown the listener's own lines

    return Handler
