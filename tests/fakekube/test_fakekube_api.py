"""API semantics, exercised with the real lightkube client over real HTTP."""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import httpx2
import pytest
from lightkube import ApiError, Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod, Secret
from lightkube.types import CascadeType, PatchType

from tests.fakekube.conftest import NS, OTHER_NS, deployment
from tools.fakekube import FakeKube


def configmap(
    name: str, labels: dict[str, str] | None = None, data: dict[str, str] | None = None
) -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name, labels=labels), data=data or {"k": "v"})


def test_create_stamps_metadata_and_duplicate_is_already_exists(client: Client) -> None:
    cm = client.create(configmap("one"))
    assert cm.metadata.uid
    assert cm.metadata.creationTimestamp
    assert int(cm.metadata.resourceVersion) > 0
    with pytest.raises(ApiError) as err:
        client.create(configmap("one"))
    assert (err.value.status.code, err.value.status.reason) == (409, "AlreadyExists")


def test_get_missing_is_a_not_found_status(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.get(Secret, "nope")
    status = err.value.status
    assert (status.code, status.reason, status.kind) == (404, "NotFound", "Status")
    assert status.message == 'secrets "nope" not found'


def test_resource_version_is_global_and_monotonic_generation_follows_spec(client: Client) -> None:
    d1 = client.apply(Deployment.from_dict(deployment("a")))
    cm = client.create(configmap("c"))
    assert int(cm.metadata.resourceVersion) > int(d1.metadata.resourceVersion)
    assert d1.metadata.generation == 1
    # A label change is not a spec change: generation stays, resourceVersion moves.
    d2 = client.apply(Deployment.from_dict(deployment("a", labels={"x": "y"})))
    assert d2.metadata.generation == 1
    assert int(d2.metadata.resourceVersion) > int(cm.metadata.resourceVersion)
    d3 = client.apply(Deployment.from_dict(deployment("a", labels={"x": "y"}, image="app:2")))
    assert d3.metadata.generation == 2


def test_reapplying_the_same_config_is_not_a_write(kube: FakeKube, client: Client) -> None:
    first = client.apply(Deployment.from_dict(deployment()))
    rv = kube.store.resource_version
    again = client.apply(Deployment.from_dict(deployment()))
    assert kube.store.resource_version == rv
    assert again.metadata.resourceVersion == client.get(Deployment, "web").metadata.resourceVersion
    assert again.metadata.generation == first.metadata.generation


def test_put_with_stale_resource_version_is_a_conflict(client: Client) -> None:
    cm = client.create(configmap("lease"))
    stale = cm.metadata.resourceVersion
    cm.data = {"k": "v2"}
    updated = client.replace(cm)
    assert updated.data == {"k": "v2"}
    cm.metadata.resourceVersion = stale
    cm.data = {"k": "v3"}
    with pytest.raises(ApiError) as err:
        client.replace(cm)
    assert (err.value.status.code, err.value.status.reason) == (409, "Conflict")
    assert client.get(ConfigMap, "lease").data == {"k": "v2"}


def test_merge_and_strategic_patches(client: Client) -> None:
    client.apply(Deployment.from_dict(deployment(env=[{"name": "A", "value": "1"}])))
    patched = client.patch(
        Deployment, "web", {"metadata": {"labels": {"x": "1"}}}, patch_type=PatchType.MERGE
    )
    assert patched.metadata.labels == {"app": "web", "x": "1"}
    strategic = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}]}}
        }
    }
    patched = client.patch(Deployment, "web", strategic)  # lightkube's default is strategic merge
    container = patched.spec.template.spec.containers[0]
    assert container.image == "app:1"
    assert [e.name for e in container.env] == ["A", "B"]


def test_ssa_conflict_force_and_prune(client: Client) -> None:
    created = client.apply(Deployment.from_dict(deployment(labels={"tier": "x"})))
    assert created.metadata.labels["tier"] == "x"
    with pytest.raises(ApiError) as err:
        client.apply(Deployment.from_dict(deployment(image="hotfix:9")), field_manager="kubectl")
    status = err.value.status
    assert (status.code, status.reason) == (409, "Conflict")
    assert 'conflict with "langsmith-listener"' in status.message
    assert [c.field for c in status.details.causes] == ['.spec.template.spec.containers[name="app"].image']
    # The same value is shared ownership, not a conflict.
    client.apply(Deployment.from_dict(deployment()), field_manager="kubectl")

    taken = client.apply(
        Deployment.from_dict(deployment(image="hotfix:9")), field_manager="kubectl", force=True
    )
    assert taken.spec.template.spec.containers[0].image == "hotfix:9"
    with pytest.raises(ApiError):
        client.apply(Deployment.from_dict(deployment(image="app:2")))
    back = client.apply(Deployment.from_dict(deployment(image="app:2")), force=True)
    assert back.spec.template.spec.containers[0].image == "app:2"
    # Fields the listener no longer applies and nobody else owns disappear; the shared ones stay.
    pruned = client.apply(Deployment.from_dict(deployment(image="app:2")), force=True)
    assert "tier" not in pruned.metadata.labels
    assert pruned.metadata.labels["app"] == "web"
    managers = {(m.manager, m.operation) for m in pruned.metadata.managedFields}
    assert {("langsmith-listener", "Apply"), ("kubectl", "Apply")} <= managers


def test_ssa_conflicts_with_an_update_manager_and_removes_dropped_list_items(client: Client) -> None:
    env = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    client.apply(Deployment.from_dict(deployment(env=env)))
    # A human edits with a merge patch (an Update-operation manager takes the field over).
    client.patch(
        Deployment, "web", {"spec": {"replicas": 5}}, patch_type=PatchType.MERGE, field_manager="kubectl-edit"
    )
    with pytest.raises(ApiError) as err:
        client.apply(Deployment.from_dict(deployment(env=env)))
    assert 'conflict with "kubectl-edit"' in err.value.status.message
    applied = client.apply(Deployment.from_dict(deployment(env=env[:1])), force=True)
    assert applied.spec.replicas == 2
    assert [e.name for e in applied.spec.template.spec.containers[0].env] == ["A"]


def test_apply_requires_field_manager(kube: FakeKube) -> None:
    with kube.admin_client(NS, field_manager=None) as anonymous:
        response = anonymous._client._client.patch(  # below lightkube, which refuses to send this itself
            f"/apis/apps/v1/namespaces/{NS}/deployments/web",
            content=b"{}",
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
    # patch.go: ValidatePatchOptions -> errors.NewInvalid(PatchOptions) -> 422.
    assert response.status_code == 422
    assert "fieldManager: Required value" in response.json()["message"]


def test_status_subresource_is_separate(client: Client) -> None:
    client.apply(Deployment.from_dict(deployment()))
    before = client.get(Deployment, "web")
    assert before.status.readyReplicas == 2
    patched = client.patch(
        Deployment.Status, "web", {"status": {"readyReplicas": 0}}, patch_type=PatchType.MERGE
    )
    assert patched.status.readyReplicas == 0
    assert patched.metadata.generation == before.metadata.generation
    # A main-resource write that carries status does not change status.
    body = deployment(image="app:1")
    body["status"] = {"readyReplicas": 42}
    written = client.replace(Deployment.from_dict(body))
    assert written.status.readyReplicas != 42


def test_label_and_field_selector_lists(client: Client) -> None:
    client.create(configmap("a", {"app": "x", "tier": "web"}))
    client.create(configmap("b", {"app": "x", "tier": "db"}))
    client.create(configmap("c", {"app": "y"}))

    def names(**selectors: Any) -> list[str]:
        return [o.metadata.name for o in client.list(ConfigMap, **selectors)]

    from lightkube import operators as op

    assert names(labels={"app": "x"}) == ["a", "b"]
    # Every namespace also holds the root CA publisher's kube-root-ca.crt (no labels).
    assert names(labels={"tier": op.not_equal("web")}) == ["b", "c", "kube-root-ca.crt"]
    assert names(labels={"tier": op.in_(["web", "db"])}) == ["a", "b"]
    assert names(labels={"tier": op.not_in(["web"])}) == ["b", "c", "kube-root-ca.crt"]
    assert names(labels={"tier": None}) == ["a", "b"]
    assert names(labels={"tier": op.not_exists()}) == ["c", "kube-root-ca.crt"]
    assert names(fields={"metadata.name": "b"}) == ["b"]
    assert names(labels={"app": "x"}, chunk_size=1) == ["a", "b"]


def test_equality_selectors_use_the_label_index_and_follow_relabels_and_deletes(client: Client) -> None:
    from lightkube import operators as op

    client.create(configmap("a", {"app": "x", "tier": "web"}))
    client.create(configmap("a", {"app": "x"}), namespace=OTHER_NS)
    client.create(configmap("b", {"app": "x", "tier": "db"}))

    def names(namespace: str = NS, **selectors: Any) -> list[tuple[str, str]]:
        return [
            (o.metadata.namespace, o.metadata.name)
            for o in client.list(ConfigMap, namespace=namespace, **selectors)
        ]

    assert names("*", labels={"app": "x"}) == [(NS, "a"), (NS, "b"), (OTHER_NS, "a")]
    assert names(labels={"app": "x", "tier": "web"}) == [(NS, "a")]
    assert names(labels={"app": op.in_(["x"]), "tier": op.not_equal("web")}) == [(NS, "b")]
    client.patch(ConfigMap, "a", {"metadata": {"labels": {"app": "z"}}}, namespace=NS)
    assert names("*", labels={"app": "x"}) == [(NS, "b"), (OTHER_NS, "a")]
    assert names(labels={"app": "z"}) == [(NS, "a")]
    client.delete(ConfigMap, "b", namespace=NS)
    assert names("*", labels={"app": "x"}) == [(OTHER_NS, "a")]
    assert names(labels={"app": "nothing"}) == []


def test_the_listener_identity_is_limited_to_its_roles(kube: FakeKube) -> None:
    secret = Secret(metadata=ObjectMeta(name="x"), stringData={"k": "v"})
    with kube.client(NS) as listener:
        with pytest.raises(ApiError) as err:
            listener.create(secret, namespace="kube-system")
        assert (err.value.status.code, err.value.status.reason) == (403, "Forbidden")
        with pytest.raises(ApiError) as err:
            list(listener.list(Secret, namespace="*"))
        assert err.value.status.code == 403
        assert "at the cluster scope" in err.value.status.message
        with pytest.raises(ApiError) as err:
            list(listener.list(Namespace))
        assert err.value.status.code == 403
        listener.create(secret, namespace=OTHER_NS)
    assert kube.log.count(verb="create", namespace="kube-system") == 1


def test_delete_cascades_to_owned_replicasets_and_pods(kube: FakeKube, client: Client) -> None:
    client.apply(Deployment.from_dict(deployment()))
    assert len(list(client.list(Pod, labels={"app": "web"}))) == 2
    client.delete(Deployment, "web", cascade=CascadeType.BACKGROUND)
    assert list(client.list(Pod, labels={"app": "web"})) == []
    with pytest.raises(ApiError):
        client.get(Deployment, "web")


def test_delete_orphan_keeps_dependents(client: Client) -> None:
    client.apply(Deployment.from_dict(deployment()))
    client.delete(Deployment, "web", cascade=CascadeType.ORPHAN)
    pods = list(client.list(Pod, labels={"app": "web"}))
    assert len(pods) == 2


def test_invalid_objects_are_rejected_with_422(client: Client) -> None:
    body = deployment("Bad_Name")
    with pytest.raises(ApiError) as err:
        client.apply(Deployment.from_dict(body))
    assert (err.value.status.code, err.value.status.reason) == (422, "Invalid")
    body = deployment()
    body["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(ApiError) as err:
        client.apply(Deployment.from_dict(body))
    assert "selector" in err.value.status.message


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        # lightkube sends a datetime with microsecond 0 as "...:40Z"; the real server wants six digits:
        # MicroTime.UnmarshalJSON (apimachinery micro_time.go) fails the decode, a 400 before validation.
        (
            {"holderIdentity": "a", "renewTime": "2026-11-28T12:00:40Z"},
            400,
            'Lease in version "v1" cannot be handled as a Lease: parsing time "2026-11-28T12:00:40Z" as '
            '"2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as ".000000"',
        ),
        # pkg/apis/coordination/validation ValidateLeaseSpec.
        ({"holderIdentity": "a", "leaseDurationSeconds": 0}, 422, "spec.leaseDurationSeconds"),
        ({"holderIdentity": "a", "leaseTransitions": -1}, 422, "spec.leaseTransitions"),
    ],
)
def test_lease_spec_is_validated_like_the_api_server(
    client: Client, spec: dict[str, Any], code: int, message: str
) -> None:
    from lightkube.resources.coordination_v1 import Lease

    good = {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "2026-11-28T12:00:40.000001Z"}
    client.create(Lease.from_dict({"metadata": {"name": "good"}, "spec": good}))
    with pytest.raises(ApiError) as err:
        client.create(Lease.from_dict({"metadata": {"name": "bad"}, "spec": spec}))
    assert (err.value.status.code, err.value.status.reason) == (
        code,
        "BadRequest" if code == 400 else "Invalid",
    )
    assert message in err.value.status.message


def _collect(it: Any, n: int, out: list[tuple[str, str, str]]) -> None:
    for kind, obj in itertools.islice(it, n):
        out.append((kind, obj.metadata.name, obj.data.get("k") if obj.data else ""))


def test_watch_streams_added_modified_deleted_from_a_resource_version(client: Client) -> None:
    client.create(configmap("before"))
    listing = client.list(ConfigMap)
    assert [o.metadata.name for o in listing] == ["before", "kube-root-ca.crt"]
    events: list[tuple[str, str, str]] = []
    watch = client.watch(
        ConfigMap, resource_version=listing.resourceVersion, labels={"w": "1"}, server_timeout=5
    )
    worker = threading.Thread(target=_collect, args=(watch, 4, events), daemon=True)
    worker.start()
    client.create(configmap("w", {"w": "1"}, {"k": "1"}))
    client.create(configmap("ignored", {"w": "2"}))
    client.patch(ConfigMap, "w", {"data": {"k": "2"}}, patch_type=PatchType.MERGE)
    client.patch(ConfigMap, "w", {"metadata": {"labels": {"w": "0"}}}, patch_type=PatchType.MERGE)
    client.patch(ConfigMap, "w", {"metadata": {"labels": {"w": "1"}}}, patch_type=PatchType.MERGE)
    worker.join(timeout=10)
    assert not worker.is_alive()
    # Leaving the selector is a DELETED event for the watcher, coming back an ADDED one.
    assert events == [("ADDED", "w", "1"), ("MODIFIED", "w", "2"), ("DELETED", "w", "2"), ("ADDED", "w", "2")]


def test_watch_without_resource_version_replays_then_ends_at_timeout(kube: FakeKube) -> None:
    with kube.admin_client(NS) as c:
        c.create(configmap("x"))
        c.delete(ConfigMap, "x")
        c.create(configmap("y"))
        response = c._client._client.get(
            f"/api/v1/namespaces/{NS}/configmaps", params={"watch": "true", "timeoutSeconds": "1"}
        )
    lines = [line for line in response.text.splitlines() if "kube-root-ca.crt" not in line]
    assert len(lines) == 1
    assert '"type":"ADDED"' in lines[0]
    assert '"name":"y"' in lines[0]


def test_list_and_watch_options_are_validated(kube: FakeKube) -> None:
    """Sources: query conversion (a limit or resourceVersion that does not parse is a 400),
    apimachinery/pkg/apis/meta/internalversion/validation/validation.go ValidateListOptions and
    validateWatchOptions (422 ListOptions.meta.k8s.io), apiserver/pkg/storage/errors.go
    NewTooLargeResourceVersionError (504 with a ResourceVersionTooLarge cause: the watch cache is not
    at that revision). Before, all of these were served as if the parameter was absent."""
    path = f"/api/v1/namespaces/{NS}/configmaps"
    with kube.admin_client(NS) as c:
        raw = c._client._client
        current = int(raw.get(path).json()["metadata"]["resourceVersion"])
        for params, code in (
            ({"limit": "many"}, 400),
            ({"resourceVersion": "abc"}, 400),
            ({"resourceVersionMatch": "Exact"}, 422),
            ({"resourceVersionMatch": "Newest", "resourceVersion": "1"}, 422),
            ({"resourceVersionMatch": "Exact", "resourceVersion": "0"}, 422),
            ({"sendInitialEvents": "true"}, 422),
            ({"resourceVersion": str(current + 100)}, 504),
            ({"watch": "true", "sendInitialEvents": "true"}, 422),
            ({"watch": "true", "resourceVersionMatch": "NotOlderThan"}, 422),
            ({"watch": "true", "resourceVersion": str(current + 100)}, 504),
            ({"watch": "true", "timeoutSeconds": "soon"}, 400),
        ):
            got = raw.get(path, params=params)
            assert got.status_code == code, (params, got.text)
        too_large = raw.get(path, params={"resourceVersion": str(current + 100)}).json()
        assert too_large["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
        # An exact list at an older revision is never answered with newer data.
        c.create(configmap("later"))
        exact = raw.get(path, params={"resourceVersionMatch": "Exact", "resourceVersion": str(current)})
        assert exact.status_code == 410


def test_watch_bookmarks_and_watch_list(kube: FakeKube) -> None:
    """A client that allows bookmarks gets BOOKMARK events (a real watch cache sends them about every
    minute and before the timeout, cacher.go); WatchList (sendInitialEvents=true with
    resourceVersionMatch=NotOlderThan, KEP-3157) sends the current objects, then a bookmark annotated
    k8s.io/initial-events-end."""
    path = f"/api/v1/namespaces/{NS}/configmaps"
    with kube.admin_client(NS) as c:
        c.create(configmap("x"))
        raw = c._client._client
        plain = raw.get(path, params={"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "1"})
        types = [json.loads(line)["type"] for line in plain.text.splitlines()]
        assert "BOOKMARK" in types
        listing = raw.get(
            path,
            params={
                "watch": "1",
                "allowWatchBookmarks": "true",
                "sendInitialEvents": "true",
                "resourceVersionMatch": "NotOlderThan",
                "resourceVersion": "",
                "timeoutSeconds": "1",
            },
        )
        events = [json.loads(line) for line in listing.text.splitlines()]
        assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
        assert events[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_watch_rejects_an_expired_resource_version(kube: FakeKube) -> None:
    kube.store._history.clear()  # as if compaction happened
    with kube.admin_client(NS) as c:
        c.create(configmap("x"))
        c.create(configmap("z"))
        kube.store._history.popleft()
        with pytest.raises(ApiError) as err:
            next(iter(c.watch(ConfigMap, resource_version="1")))
    assert err.value.status.code == 410


def test_discovery_endpoints(kube: FakeKube) -> None:
    token = {"Authorization": f"Bearer {kube.listener.token}"}
    http = httpx2.Client(base_url=kube.url, headers=token)
    with http:
        assert http.get("/version").json()["major"] == "1"
        assert http.get("/api").json()["versions"] == ["v1"]
        groups = {g["name"] for g in http.get("/apis").json()["groups"]}
        assert {"apps", "policy", "rbac.authorization.k8s.io", "apiextensions.k8s.io"} <= groups
        assert not {"keda.sh", "gateway.networking.k8s.io"} & groups  # CRDs are not installed
        apps = {r["name"]: r for r in http.get("/apis/apps/v1").json()["resources"]}
        assert apps["deployments"]["namespaced"] is True
        assert "deployments/status" in apps
        core = {r["name"]: r for r in http.get("/api/v1").json()["resources"]}
        assert core["namespaces"]["namespaced"] is False


def test_secret_string_data_is_folded_into_data_like_the_real_api_server(kube):
    from lightkube.codecs import from_dict

    with kube.admin_client("team-a") as client:
        client.apply(
            from_dict(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "s", "namespace": "team-a"},
                    "data": {"old": "b2xk"},
                    "stringData": {"new": "value"},
                }
            ),
            field_manager="t",
        )
        stored = client.get(Secret, "s", namespace="team-a")
    assert stored.stringData is None
    assert stored.data == {"new": "dmFsdWU=", "old": "b2xk"}


def test_field_manager_is_validated_on_every_write(kube: FakeKube) -> None:
    """ValidateFieldManager (staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go,
    FieldManagerMaxLength = 128, unicode.IsPrint) runs on CreateOptions, UpdateOptions and PatchOptions:
    a 422, where the fake used to store the 129-byte manager in managedFields."""
    path = f"/apis/apps/v1/namespaces/{NS}/deployments"
    with kube.admin_client(NS) as c:
        raw = c._client._client
        for manager in ("m" * 129, "tab\there"):
            created = raw.post(path, params={"fieldManager": manager}, json=deployment("web"))
            assert created.status_code == 422, created.text
            assert created.json()["message"].startswith(
                'CreateOptions.meta.k8s.io "" is invalid: fieldManager: '
            )
            applied = raw.patch(
                f"{path}/web",
                params={"fieldManager": manager},
                headers={"Content-Type": "application/apply-patch+yaml"},
                json=deployment("web"),
            )
            assert applied.status_code == 422, applied.text
        ok = raw.post(path, params={"fieldManager": "m" * 128}, json=deployment("web"))
        assert ok.status_code == 201


def test_generate_name_is_cut_to_fit_and_still_validated(kube: FakeKube) -> None:
    """staging/src/k8s.io/apiserver/pkg/storage/names/generate.go: the base is cut to
    MaxGeneratedNameLength (63 - 5) before the random suffix, so a long generateName still gives a valid
    DNS-label name; the prefix itself is validated (ValidateObjectMeta with prefix=true)."""
    path = f"/api/v1/namespaces/{NS}/services"
    spec = {"ports": [{"port": 80}]}
    with kube.admin_client(NS) as c:
        raw = c._client._client
        made = raw.post(path, json={"metadata": {"generateName": "s" * 62}, "spec": spec})
        assert made.status_code == 201, made.text
        assert len(made.json()["metadata"]["name"]) == 63
        assert made.json()["metadata"]["name"].startswith("s" * 58)
        bad = raw.post(path, json={"metadata": {"generateName": "Svc-"}, "spec": spec})
        assert bad.status_code == 422


def test_an_applied_configuration_must_not_carry_managed_fields(kube: FakeKube) -> None:
    """staging/src/k8s.io/apimachinery/pkg/util/managedfields/internal/structuredmerge.go Apply:
    ``if patchObjMeta.GetManagedFields() != nil { return errors.NewBadRequest("metadata.managedFields
    must be nil") }`` — e.g. an object read back from the server and applied as it is. The fake used
    to drop them silently."""
    path = f"/apis/apps/v1/namespaces/{NS}/deployments/web"
    headers = {"Content-Type": "application/apply-patch+yaml"}
    with kube.admin_client(NS) as c:
        raw = c._client._client
        body = deployment("web")
        first = raw.patch(path, params={"fieldManager": "t"}, headers=headers, json=body)
        assert first.status_code == 201
        read_back = first.json()
        assert read_back["metadata"]["managedFields"]
        again = raw.patch(path, params={"fieldManager": "t"}, headers=headers, json=read_back)
        assert again.status_code == 400
        assert again.json()["message"] == "metadata.managedFields must be nil"
        body["metadata"]["managedFields"] = None  # null is nil: allowed
        assert raw.patch(path, params={"fieldManager": "t"}, headers=headers, json=body).status_code == 200


def test_pod_updates_may_only_change_images_deadlines_and_tolerations(kube: FakeKube) -> None:
    """ValidatePodUpdate (pkg/apis/core/validation/validation.go): everything in a Pod's spec but
    container images, activeDeadlineSeconds, added tolerations (and a negative grace period set to 1)
    is immutable: "spec: Forbidden: pod updates may not change fields other than ...". The fake
    accepted any change (e.g. new env on a running pod)."""
    path = f"/api/v1/namespaces/{NS}/pods"
    merge = {"Content-Type": "application/merge-patch+json"}
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "app:1"}]}}
    with kube.admin_client(NS) as c:
        raw = c._client._client
        assert raw.post(path, json=pod).status_code == 201
        env = {
            "spec": {"containers": [{"name": "c", "image": "app:1", "env": [{"name": "A", "value": "b"}]}]}
        }
        refused = raw.patch(f"{path}/p", headers=merge, json=env)
        assert refused.status_code == 422, refused.text
        assert "spec: Forbidden: pod updates may not change fields other than" in refused.json()["message"]
        image = raw.patch(
            f"{path}/p", headers=merge, json={"spec": {"containers": [{"name": "c", "image": "app:2"}]}}
        )
        assert image.status_code == 200, image.text
        tolerate = {
            "spec": {"tolerations": [{"key": "k", "operator": "Exists"}], "activeDeadlineSeconds": 30}
        }
        assert raw.patch(f"{path}/p", headers=merge, json=tolerate).status_code == 200
        assert raw.patch(f"{path}/p", headers=merge, json={"spec": {"tolerations": None}}).status_code == 422


METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def test_a_metadata_only_list_is_served_as_partial_object_metadata(kube: FakeKube) -> None:
    """Source: apiserver/pkg/endpoints/handlers/response.go (transformResponseObject, asPartialObjectMetadataList)
    and negotiation: a list asked for as PartialObjectMetadataList in meta.k8s.io/v1 answers each
    item's whole metadata (managedFields included) and nothing else, the list's resourceVersion and
    continue token as usual. What a metadata informer (and the listener's inventory) asks for."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": NS, "labels": {"a": "b"}},
        "stringData": {"password": "not-for-metadata"},
    }
    with kube.admin_client(NS) as c:
        c._client._client.post(f"/api/v1/namespaces/{NS}/secrets", json=secret, params={"fieldManager": "m"})
        raw = c._client._client
        got = raw.get(f"/api/v1/namespaces/{NS}/secrets", headers={"Accept": METADATA_LIST})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["kind"] == "PartialObjectMetadataList"
    assert body["apiVersion"] == "meta.k8s.io/v1"
    assert body["metadata"]["resourceVersion"]
    (item,) = [i for i in body["items"] if i["metadata"]["name"] == "s"]
    assert item["kind"] == "PartialObjectMetadata"
    assert item["apiVersion"] == "meta.k8s.io/v1"
    assert set(item) == {"kind", "apiVersion", "metadata"}
    assert item["metadata"]["labels"] == {"a": "b"}
    assert item["metadata"]["managedFields"][0]["manager"] == "m"
    assert "not-for-metadata" not in got.text
    assert "bm90LWZvci1tZXRhZGF0YQ" not in got.text


def test_media_types_the_server_cannot_produce_are_406(kube: FakeKube) -> None:
    """Source: apiserver/pkg/endpoints/handlers/negotiation (NegotiateOutputMediaType →
    NewNotAcceptableError, 406 NotAcceptable). The fake produces JSON only and honours `as=` only
    for a list as PartialObjectMetadataList v1 — stricter than a real server (Table, v1beta1, a
    single PartialObjectMetadata), so the listener cannot come to rely on what it does not ask for."""
    path = f"/api/v1/namespaces/{NS}/configmaps"
    with kube.admin_client(NS) as c:
        c.create(configmap("one"))
        raw = c._client._client
        for accept, code in (
            ("application/json", 200),
            ("*/*", 200),
            ("text/html, application/json;q=0.9", 200),
            (f"{METADATA_LIST}, application/json", 200),
            ("application/json;as=Table;g=meta.k8s.io;v=v1", 406),
            ("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1", 406),
            ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1beta1", 406),
            ("application/json;as=PartialObjectMetadataList;g=apps;v=v1", 406),
            ("text/html", 406),
        ):
            got = raw.get(path, headers={"Accept": accept})
            assert got.status_code == code, (accept, got.text)
            if code == 406:
                assert got.json()["reason"] == "NotAcceptable"
        one = raw.get(f"{path}/one", headers={"Accept": METADATA_LIST})
        assert one.status_code == 406, "as=PartialObjectMetadataList of one object"
        watch = raw.get(
            path, params={"watch": "true", "timeoutSeconds": "1"}, headers={"Accept": METADATA_LIST}
        )
        assert watch.status_code == 406
