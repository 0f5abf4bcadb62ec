"""listener.kube against the fake API server over real HTTP: SSA, ownership scope, error mapping."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from listener.kube import (
    FIELD_MANAGER,
    STATUS_FIELD_MANAGER,
    WATCHED_NAMESPACE_RULES,
    AccessRule,
    Cluster,
    ClusterError,
    UndeclaredAccess,
)
from tools.fakekube import DROP, FakeKube

NS = "agents"


def config_map(name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
        "data": data,
    }


# The mechanics are exercised on ConfigMaps, which the listener itself may not touch: both the
# Cluster's declared table and the fake cluster's RBAC Role are extended by the same rule.
CONFIG_MAPS = AccessRule("", ("configmaps",), ("get", "list", "create", "patch", "delete"))


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube([NS], watched_rules=(*WATCHED_NAMESPACE_RULES, CONFIG_MAPS)) as fake:
        yield fake


@pytest.fixture
def cluster(kube: FakeKube) -> Iterator[Cluster]:
    with kube.client(NS) as client:
        yield Cluster(client, rules=(*WATCHED_NAMESPACE_RULES, CONFIG_MAPS))


def test_a_call_outside_the_declared_rules_is_refused_before_it_is_sent(kube: FakeKube):
    with kube.client(NS) as client:
        cluster = Cluster(client)
        with pytest.raises(UndeclaredAccess, match=r"get configmaps\.core"):
            cluster.get("v1", "ConfigMap", NS, "a")
        with pytest.raises(UndeclaredAccess, match=r"delete pods\.core"):
            cluster.delete("v1", "Pod", NS, "a")
    assert kube.log.records() == []


def test_apply_uses_one_field_manager_and_force(kube: FakeKube, cluster: Cluster):
    cluster.apply(config_map("a", {"k": "1"}))
    cluster.apply(config_map("a", {"k": "2"}))
    applies = kube.log.records(verb="apply", name="a")
    assert [r.field_manager for r in applies] == [FIELD_MANAGER, FIELD_MANAGER]
    assert cluster.get("v1", "ConfigMap", NS, "a")["data"] == {"k": "2"}


def test_apply_takes_fields_from_another_manager(kube: FakeKube, cluster: Cluster):
    with kube.client(NS) as other:
        from lightkube.codecs import from_dict

        other.apply(from_dict(config_map("a", {"k": "theirs"})), field_manager="kubectl")
    cluster.apply(config_map("a", {"k": "ours"}))
    assert cluster.get("v1", "ConfigMap", NS, "a")["data"] == {"k": "ours"}


def test_list_by_labels_and_delete(cluster: Cluster):
    cluster.apply(config_map("mine", {}, {"owner": "me"}))
    cluster.apply(config_map("theirs", {}, {"owner": "them"}))
    assert [o["metadata"]["name"] for o in cluster.list("v1", "ConfigMap", NS, {"owner": "me"})] == ["mine"]
    cluster.delete("v1", "ConfigMap", NS, "mine")
    cluster.delete("v1", "ConfigMap", NS, "mine")  # already gone: not an error
    assert cluster.get("v1", "ConfigMap", NS, "mine") is None


def test_annotate_uses_the_status_manager_and_keeps_spec_fields(kube: FakeKube, cluster: Cluster):
    cluster.apply(config_map("a", {"k": "1"}))
    cluster.annotate("v1", "ConfigMap", NS, "a", {"example/status": "DEPLOYED"})
    obj = cluster.get("v1", "ConfigMap", NS, "a")
    assert obj["metadata"]["annotations"] == {"example/status": "DEPLOYED"}
    assert obj["data"] == {"k": "1"}
    assert kube.log.records(field_manager=STATUS_FIELD_MANAGER)


def test_outside_the_watched_namespaces_is_forbidden(cluster: Cluster):
    manifest = config_map("a", {})
    manifest["metadata"]["namespace"] = "kube-system"
    with pytest.raises(ClusterError) as caught:
        cluster.apply(manifest)
    assert caught.value.status == 403
    assert "ConfigMap.v1 kube-system/a" in str(caught.value)


def test_a_dropped_connection_is_a_cluster_error(kube: FakeKube, cluster: Cluster):
    kube.faults.inject(r"/configmaps", DROP, times=1)
    with pytest.raises(ClusterError) as caught:
        cluster.list("v1", "ConfigMap", NS, {})
    assert caught.value.status == 0
    # Every namespace holds the root CA publisher's ConfigMap, as on a real cluster.
    assert [c["metadata"]["name"] for c in cluster.list("v1", "ConfigMap", NS, {})] == ["kube-root-ca.crt"]


def test_server_errors_are_cluster_errors(kube: FakeKube, cluster: Cluster):
    kube.faults.inject(r"/configmaps/a$", 503, times=1)
    with pytest.raises(ClusterError) as caught:
        cluster.get("v1", "ConfigMap", NS, "a")
    assert caught.value.status == 503


def test_a_metadata_list_follows_every_page_and_carries_no_data(
    kube: FakeKube, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
):
    from listener import kube as kube_module

    monkeypatch.setattr(kube_module, "LIST_PAGE", 2)
    for i in range(5):
        cluster.apply(config_map(f"m{i}", {"secret-ish": f"value-{i}"}, labels={"n": str(i)}))
    listed = cluster.list_metadata("v1", "ConfigMap", NS)
    names = sorted(o["metadata"]["name"] for o in listed)
    assert names == ["kube-root-ca.crt", "m0", "m1", "m2", "m3", "m4"]
    assert all(set(o) == {"metadata"} for o in listed)
    m3 = next(o for o in listed if o["metadata"]["name"] == "m3")
    assert m3["metadata"]["labels"] == {"n": "3"}
    assert m3["metadata"]["managedFields"][0]["manager"] == FIELD_MANAGER
    lists = kube.log.records(verb="list", kind="ConfigMap")
    assert len(lists) == 3
    assert all(r.query.get("limit") == "2" for r in lists)
    assert "continue" in lists[-1].query


def test_a_metadata_list_fails_like_any_call(kube: FakeKube, cluster: Cluster):
    with pytest.raises(ClusterError) as caught:
        cluster.list_metadata("v1", "ConfigMap", "kube-system")
    assert caught.value.status == 403
    assert "forbidden" in str(caught.value)
    kube.faults.inject(r"/configmaps", 503, times=1, retry_after=7)
    with pytest.raises(ClusterError) as caught:
        cluster.list_metadata("v1", "ConfigMap", NS)
    assert caught.value.status == 503
    assert caught.value.retry_after == 7
    kube.faults.inject(r"/configmaps", DROP, times=1)
    with pytest.raises(ClusterError) as caught:
        cluster.list_metadata("v1", "ConfigMap", NS)
    assert caught.value.status == 0
    with pytest.raises(UndeclaredAccess):
        Cluster(cluster._client).list_metadata("v1", "ConfigMap", NS)


def test_a_metadata_list_whose_continue_token_expired_lists_again_from_the_start(
    kube: FakeKube, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
):
    # An API server answers 410 Expired to a continue token older than its compaction (client-go's
    # pager then lists again). 410 is one of the answers that fail a revision (`apply.REJECTED_STATUSES`):
    # a transient expiry during an inventory list must not fail a rollout.
    from listener import kube as kube_module

    monkeypatch.setattr(kube_module, "LIST_PAGE", 2)
    for i in range(5):
        cluster.apply(config_map(f"m{i}", {}))
    http = cluster._client._client._client
    send = http.get
    expired: list[str] = []

    def get(path: str, **kwargs: object) -> httpx2.Response:
        params = kwargs.get("params") or {}
        if "continue" in params and not expired:  # type: ignore[operator]
            expired.append(path)
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Expired",
                "message": "The provided continue parameter is too old to display a consistent list result.",
                "code": 410,
            }
            return httpx2.Response(410, json=status, request=httpx2.Request("GET", f"https://fake{path}"))
        return send(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(http, "get", get)
    listed = cluster.list_metadata("v1", "ConfigMap", NS)
    assert expired, "the fault was not hit"
    assert sorted(o["metadata"]["name"] for o in listed) == ["kube-root-ca.crt", "m0", "m1", "m2", "m3", "m4"]


def test_a_metadata_list_that_expires_again_is_a_cluster_error(
    kube: FakeKube, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
):
    from listener import kube as kube_module

    monkeypatch.setattr(kube_module, "LIST_PAGE", 2)
    for i in range(5):
        cluster.apply(config_map(f"m{i}", {}))
    http = cluster._client._client._client
    send = http.get

    def get(path: str, **kwargs: object) -> httpx2.Response:
        params = kwargs.get("params") or {}
        if "continue" in params:  # type: ignore[operator]
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Expired",
                "code": 410,
            }
            return httpx2.Response(410, json=status, request=httpx2.Request("GET", f"https://fake{path}"))
        return send(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(http, "get", get)
    with pytest.raises(ClusterError) as caught:
        cluster.list_metadata("v1", "ConfigMap", NS)
    assert caught.value.status == 410


def test_a_metadata_list_keeps_only_the_listeners_own_field_sets_and_hashes_like_a_get(
    kube: FakeKube, cluster: Cluster
):
    """The drift baseline is a hash of the listener's Apply entry (`inventory.fields_hash`), taken from
    the apply's answer and later compared with what a metadata list says: both must hash alike, or
    every resync would see drift and write. Other managers' field sets are never decoded."""
    from listener.reconcile.inventory import fields_hash

    cluster.apply(config_map("shared", {"ours": "1"}))
    with kube.admin_client(NS, field_manager="kubectl-edit") as admin:
        admin._client._client.patch(
            f"/api/v1/namespaces/{NS}/configmaps/shared",
            json={"data": {"theirs": "2"}},
            headers={"Content-Type": "application/merge-patch+json"},
            params={"fieldManager": "kubectl-edit"},
        ).raise_for_status()
    (listed,) = [o for o in cluster.list_metadata("v1", "ConfigMap", NS) if o["metadata"]["name"] == "shared"]
    entries = {e["manager"]: e for e in listed["metadata"]["managedFields"]}
    assert set(entries) == {FIELD_MANAGER, "kubectl-edit"}
    assert "fieldsV1" in entries[FIELD_MANAGER]
    assert "fieldsV1" not in entries["kubectl-edit"], "another manager's field set stays undecoded"
    live = cluster.get("v1", "ConfigMap", NS, "shared")
    assert live is not None
    assert fields_hash(listed) == fields_hash(live) is not None
