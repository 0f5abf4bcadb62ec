from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from lightkube import Client

from tools.fakekube import FakeKube, Identity

NS = "team-a"
OTHER_NS = "team-b"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube([NS, OTHER_NS], max_watch_seconds=10) as server:
        yield server


@pytest.fixture
def manual_kube() -> Iterator[FakeKube]:
    with FakeKube([NS], auto=False, max_watch_seconds=10) as server:
        yield server


@pytest.fixture
def client(kube: FakeKube) -> Iterator[Client]:
    """An admin client: these tests exercise API semantics, not RBAC (test_fakekube_rbac.py does)."""
    with kube.admin_client(NS, field_manager="langsmith-listener") as c:
        yield c


def deployment(
    name: str = "web",
    *,
    image: str = "app:1",
    replicas: int = 2,
    labels: dict[str, str] | None = None,
    env: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": image, "ports": [{"containerPort": 8000}]}
    if env is not None:
        container["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name, **(labels or {})}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


def http(kube: FakeKube, identity: Identity | None = None) -> httpx2.Client:
    """A plain HTTP client for what lightkube's typed models will not send (unknown fields, raw
    bodies) or do not expose (Warning headers); authenticated as ``identity`` (default: admin)."""
    who = identity or kube.admin
    return httpx2.Client(base_url=kube.url, headers={"Authorization": f"Bearer {who.token}"}, trust_env=False)
