"""Keep the inventory current with watches: list, then watch from the list's resourceVersion.

One watch per (namespace, kind) the listener writes, all on one asyncio thread with lightkube's
`AsyncClient` — one connection each, none taken from the workers' connection pool, and a client per
`WATCHES_PER_CLIENT` watches (an httpx client's pool holds 100 connections; 20 namespaces and 11 kinds
need 220):

* a stream the API server ends (its timeout, a restart) is resumed by lightkube from the last
  resourceVersion seen, so nothing is missed and nothing is listed again;
* `410 Gone` (the resourceVersion is older than the server's history) → list again, then watch;
* any other failure (the connection dropped, the server unreachable) → the table goes back to a
  list per cycle (`Inventory.unwatched`) and, after a jittered backoff, list again and watch.

While a table is watched, lookups answer from it without a request; a resync then costs no
Kubernetes request at all for its drift check.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Iterable
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.codecs import resource_registry

from listener import metrics
from listener.kube import Cluster
from listener.reconcile.inventory import Inventory

log = logging.getLogger(__name__)

WATCHES_PER_CLIENT = 80
BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0
_rng = random.Random()  # noqa: S311 - jitter, not security


def gone(error: BaseException) -> bool:
    """Is this the API server's 410 Gone (the resourceVersion is too old to watch from)?"""
    if isinstance(error, ApiError):
        return error.status.code == 410
    return isinstance(error, httpx2.HTTPStatusError) and error.response.status_code == 410


class Watcher:
    """Watches for `Inventory` on a daemon thread; `start` adds tables, `stop` ends them all."""

    def __init__(self, inventory: Inventory, cluster: Cluster, client: Callable[[], AsyncClient]):
        self._inventory = inventory
        self._cluster = cluster
        self._make_client = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: dict[tuple[str, str, str], asyncio.Task[None]] = {}
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._clients: list[AsyncClient] = []
        self.relists = 0
        """Lists after a 410 Gone or a broken watch (tests read it)."""

    def start(self, namespaces: Iterable[str], kinds: Iterable[tuple[str, str]]) -> None:
        """Watch every (namespace, kind) not watched yet (the kinds must be served and declared)."""
        wanted = [(ns, api_version, kind) for ns in namespaces for api_version, kind in kinds]
        for _, api_version, kind in wanted:
            self._cluster.check("list", api_version, kind)
            self._cluster.check("watch", api_version, kind)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inventory-watch", daemon=True)
            self._thread.start()
            self._started.wait(10)
        loop = self._loop
        if loop is None:
            return
        for key in wanted:
            loop.call_soon_threadsafe(self._follow_once, key)

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(self._cancel_all)
        thread.join(timeout)

    # --- on the watch thread ---------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._started.set()
        try:
            loop.run_forever()
        finally:
            for client in self._clients:
                loop.run_until_complete(client.close())
            loop.close()

    def _follow_once(self, key: tuple[str, str, str]) -> None:
        if key in self._tasks:
            return
        if len(self._tasks) >= len(self._clients) * WATCHES_PER_CLIENT:
            self._clients.append(self._make_client())
        client = self._clients[len(self._tasks) // WATCHES_PER_CLIENT]
        self._tasks[key] = asyncio.get_running_loop().create_task(self._follow(client, *key))

    def _cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()

        async def stopped() -> None:
            await asyncio.gather(*tasks, return_exceptions=True)
            asyncio.get_running_loop().stop()

        asyncio.get_running_loop().create_task(stopped())

    async def _follow(self, client: AsyncClient, namespace: str, api_version: str, kind: str) -> None:
        resource = resource_registry.load(api_version, kind)
        version: str | None = None
        failures = 0
        while True:
            try:
                if version is None:
                    version = await self._list(client, resource, namespace, api_version, kind)
                async for change, obj in client.watch(
                    resource, namespace=namespace, resource_version=version
                ):
                    metadata = obj.metadata
                    version = metadata.resourceVersion if metadata is not None else version
                    if change in ("ADDED", "MODIFIED", "DELETED"):
                        self._inventory.event(namespace, api_version, kind, change, _as_dict(obj))
                    failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                code = "410" if gone(error) else type(error).__name__
                metrics.KUBERNETES_REQUESTS.labels(verb="watch", code=code).inc()
                version = None
                self.relists += 1
                if gone(error):
                    log.info("watch %s in %s: 410 Gone; listing again", kind, namespace)
                    continue
                self._inventory.unwatched(namespace, api_version, kind)
                failures += 1
                wait = min(BACKOFF_BASE * 2 ** (failures - 1), BACKOFF_MAX) * (0.5 + _rng.random() / 2)
                log.warning(
                    "watch %s in %s failed (%r); listing again in %.1f s", kind, namespace, error, wait
                )
                await asyncio.sleep(wait)

    async def _list(
        self, client: AsyncClient, resource: Any, namespace: str, api_version: str, kind: str
    ) -> str:
        listed = client.list(resource, namespace=namespace)
        objects = [_as_dict(o) async for o in listed]
        metrics.KUBERNETES_REQUESTS.labels(verb="list", code="2xx").inc()
        self._inventory.replace(namespace, api_version, kind, objects)
        return str(listed.resourceVersion)


def _as_dict(obj: Any) -> dict[str, Any]:
    return dict(obj) if isinstance(obj, dict) else obj.to_dict()
