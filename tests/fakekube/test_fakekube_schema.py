"""Decoding, schemas, defaulting and generation: what a client reads back from a real API server.

Sources: staging/src/k8s.io/apiserver/pkg/endpoints/handlers/{create,update,patch}.go (fieldValidation,
strict decoding warnings, apply's typed conversion), pkg/apis/{apps,core,autoscaling}/v1/defaults.go,
staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go (canonical form),
pkg/registry/apps/deployment/strategy.go (generation bumps on spec and annotation changes).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment, StatefulSet
from lightkube.resources.core_v1 import (
    ConfigMap,
    Namespace,
    PersistentVolumeClaim,
    ResourceQuota,
    Secret,
    Service,
)
from lightkube.types import PatchType

from tests.fakekube.conftest import NS, deployment, http
from tools.fakekube import FakeKube

DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"


@pytest.fixture
def admin(kube: FakeKube) -> Iterator[Client]:
    with kube.admin_client(NS, field_manager="test") as c:
        yield c


def with_unknown(manifest: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(manifest)
    out["spec"]["replicaz"] = 3
    out["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    return out


def test_unknown_fields_are_dropped_with_a_warning_by_default(kube: FakeKube) -> None:
    with http(kube) as client:
        created = client.post(DEPLOYMENTS, json=with_unknown(deployment()))
    assert created.status_code == 201
    # In document order: the misspelt field inside the template comes before the one appended to spec.
    assert created.headers.get_list("warning") == [
        '299 - "unknown field \\"spec.template.spec.containers[0].imagePullPolcy\\""',
        '299 - "unknown field \\"spec.replicaz\\""',
    ]
    body = created.json()
    assert "replicaz" not in body["spec"]
    assert "imagePullPolcy" not in body["spec"]["template"]["spec"]["containers"][0]
    assert kube.log.records(verb="create")[-1].warnings == tuple(created.headers.get_list("warning"))


def test_strict_field_validation_refuses_unknown_fields(kube: FakeKube) -> None:
    with http(kube) as client:
        refused = client.post(
            DEPLOYMENTS, params={"fieldValidation": "Strict"}, json=with_unknown(deployment())
        )
        assert (refused.status_code, refused.json()["reason"]) == (400, "BadRequest")
        assert refused.json()["message"] == (
            'strict decoding error: unknown field "spec.template.spec.containers[0].imagePullPolcy", '
            'unknown field "spec.replicaz"'
        )
        ignored = client.post(
            DEPLOYMENTS, params={"fieldValidation": "Ignore"}, json=with_unknown(deployment())
        )
        assert ignored.status_code == 201
        assert ignored.headers.get_list("warning") == []


def test_server_side_apply_refuses_unknown_fields_and_wrong_types(kube: FakeKube) -> None:
    """The applied configuration is converted to a typed object before anything else, whatever
    fieldValidation says: structured-merge-diff's 'field not declared in schema' (a 500)."""
    with http(kube) as client:
        unknown = client.patch(
            f"{DEPLOYMENTS}/web",
            params={"fieldManager": "t"},
            json=with_unknown(deployment()),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        assert unknown.status_code == 500
        assert unknown.json()["message"] == (
            f"failed to create typed patch object ({NS}/web; apps/v1, Kind=Deployment): errors:\n"
            '  .spec.template.spec.containers[name="app"].imagePullPolcy: field not declared in schema\n'
            "  .spec.replicaz: field not declared in schema"
        )
        wrong = copy.deepcopy(deployment())
        wrong["spec"]["replicas"] = "two"
        typed = client.patch(
            f"{DEPLOYMENTS}/web",
            params={"fieldManager": "t"},
            json=wrong,
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        assert typed.status_code == 500
        assert typed.json()["message"].endswith(".spec.replicas: expected integer, got string")
        assert client.get(f"{DEPLOYMENTS}/web").status_code == 404


def test_wrong_types_on_create_are_decode_errors(kube: FakeKube) -> None:
    wrong = copy.deepcopy(deployment())
    wrong["spec"]["replicas"] = "two"
    with http(kube) as client:
        refused = client.post(DEPLOYMENTS, json=wrong)
    assert (refused.status_code, refused.json()["reason"]) == (400, "BadRequest")
    assert refused.json()["message"].startswith(
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field'
    )


def test_malformed_quantities_and_base64_are_decode_errors(admin: Client) -> None:
    bad = deployment()
    bad["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "lots"}}
    with pytest.raises(ApiError) as err:
        admin.apply(Deployment.from_dict(bad))
    assert err.value.status.code == 400
    assert err.value.status.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: quantities must match the regular '
        "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )
    with pytest.raises(ApiError) as err:
        admin.create(Secret.from_dict({"metadata": {"name": "s"}, "data": {"k": "not base64!"}}))
    assert err.value.status.code == 400
    assert "illegal base64 data at input byte 3" in err.value.status.message


def test_defaults_are_filled_in(admin: Client) -> None:
    minimal = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "a", "image": "app:1", "ports": [{"containerPort": 80}]},
                        {"name": "b", "image": "app"},
                    ]
                },
            },
        },
    }
    d = admin.apply(Deployment.from_dict(minimal)).to_dict()
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    pod = spec["template"]["spec"]
    assert (pod["restartPolicy"], pod["dnsPolicy"], pod["terminationGracePeriodSeconds"], pod["schedulerName"]) == (
        "Always", "ClusterFirst", 30, "default-scheduler"
    )  # fmt: skip
    a, b = pod["containers"]
    assert (a["imagePullPolicy"], b["imagePullPolicy"]) == ("IfNotPresent", "Always")  # no tag means :latest
    assert (a["terminationMessagePath"], a["terminationMessagePolicy"]) == ("/dev/termination-log", "File")
    assert a["ports"] == [{"containerPort": 80, "protocol": "TCP"}]

    svc = admin.apply(
        Service.from_dict(
            {"metadata": {"name": "svc"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
        )
    ).to_dict()
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["sessionAffinity"] == "None"
    assert svc["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert svc["spec"]["clusterIP"]
    assert svc["spec"]["clusterIPs"] == [svc["spec"]["clusterIP"]]
    assert (
        svc["spec"]["ipFamilies"],
        svc["spec"]["ipFamilyPolicy"],
        svc["spec"]["internalTrafficPolicy"],
    ) == (["IPv4"], "SingleStack", "Cluster")

    assert admin.create(Secret(metadata=ObjectMeta(name="s"), stringData={"k": "v"})).type == "Opaque"
    claim = admin.create(
        PersistentVolumeClaim.from_dict(
            {
                "metadata": {"name": "c"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }
        )
    )
    # DefaultStorageClass and StorageObjectInUseProtection admission; PVC defaulting.
    assert (claim.spec.storageClassName, claim.spec.volumeMode) == ("standard", "Filesystem")
    assert claim.metadata.finalizers == ["kubernetes.io/pvc-protection"]
    ns = admin.get(Namespace, NS)
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == NS
    assert ns.spec.finalizers == ["kubernetes"]


def test_quantities_are_stored_in_canonical_form(admin: Client) -> None:
    d = deployment()
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "0.5", "memory": "1024Mi"},
        "limits": {"cpu": "1000m", "memory": "1.5Gi"},
    }
    stored = admin.apply(Deployment.from_dict(d)).spec.template.spec.containers[0].resources
    assert stored.requests == {"cpu": "500m", "memory": "1Gi"}
    assert stored.limits == {"cpu": "1", "memory": "1536Mi"}
    rv = admin.get(Deployment, "web").metadata.resourceVersion
    admin.apply(Deployment.from_dict(d))  # the same quantities, spelled differently: not a change
    assert admin.get(Deployment, "web").metadata.resourceVersion == rv


def test_generation_follows_each_kinds_strategy(kube: FakeKube, admin: Client) -> None:
    d = admin.apply(Deployment.from_dict(deployment()))
    assert d.metadata.generation == 1
    labelled = admin.patch(
        Deployment, "web", {"metadata": {"labels": {"x": "1"}}}, patch_type=PatchType.MERGE
    )
    assert labelled.metadata.generation == 1  # labels are not copied to ReplicaSets
    annotated = admin.patch(
        Deployment, "web", {"metadata": {"annotations": {"a": "1"}}}, patch_type=PatchType.MERGE
    )
    assert annotated.metadata.generation == 2  # annotations are: deployment strategy.go bumps
    status = admin.patch(
        Deployment.Status, "web", {"status": {"readyReplicas": 0}}, patch_type=PatchType.MERGE
    )
    assert status.metadata.generation == 2
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "db:1"}]},
            },
        },
    }
    admin.apply(StatefulSet.from_dict(sts))
    annotated_sts = admin.patch(
        StatefulSet, "db", {"metadata": {"annotations": {"a": "1"}}}, patch_type=PatchType.MERGE
    )
    assert annotated_sts.metadata.generation == 1  # StatefulSets bump on spec only
    cm = admin.create(ConfigMap(metadata=ObjectMeta(name="c"), data={"k": "v"}))
    assert cm.metadata.generation is None  # most kinds have no generation


def test_observed_generation_lags_the_write_that_changed_the_spec(kube: FakeKube, admin: Client) -> None:
    first = admin.apply(Deployment.from_dict(deployment()))
    # The write's own response: the controllers have not seen it yet.
    assert (first.metadata.generation, first.status.observedGeneration) == (1, None)
    assert admin.get(Deployment, "web").status.observedGeneration == 1  # any later request: settled
    second = admin.apply(Deployment.from_dict(deployment(image="app:2")))
    assert (second.metadata.generation, second.status.observedGeneration) == (2, 1)
    assert admin.get(Deployment, "web").status.observedGeneration == 2


def test_manual_mode_lags_until_each_step(manual_kube: FakeKube) -> None:
    with manual_kube.admin_client(NS) as admin:
        admin.apply(Deployment.from_dict(deployment()))
        assert admin.get(Deployment, "web").status.observedGeneration is None
        manual_kube.controller.step()  # the Deployment controller's pass: creates the ReplicaSet, writes status
        assert admin.get(Deployment, "web").status.observedGeneration == 1


def test_dry_run_stores_nothing(kube: FakeKube, admin: Client) -> None:
    rv = kube.store.resource_version
    preview = admin.create(ConfigMap(metadata=ObjectMeta(name="preview"), data={"k": "v"}), dry_run=True)
    assert preview.metadata.name == "preview"
    assert preview.metadata.resourceVersion is None
    with pytest.raises(ApiError):
        admin.get(ConfigMap, "preview")
    with pytest.raises(ApiError) as err:  # and it still validates
        admin.create(ConfigMap(metadata=ObjectMeta(name="Bad_Name")), dry_run=True)
    assert err.value.status.code == 422
    assert kube.store.resource_version == rv


def test_managed_fields_of_an_update_include_defaults_but_not_of_an_apply(
    kube: FakeKube, admin: Client
) -> None:
    """An Update operation owns every field it changed in the stored (defaulted) object; an Apply
    owns exactly its applied configuration."""
    created = admin.create(Deployment.from_dict(deployment("created")), field_manager="creator")
    applied = admin.apply(Deployment.from_dict(deployment("applied")), field_manager="applier")
    (created_entry,) = created.metadata.managedFields
    (applied_entry,) = applied.metadata.managedFields
    assert "f:revisionHistoryLimit" in created_entry.fieldsV1["f:spec"]
    assert "f:revisionHistoryLimit" not in applied_entry.fieldsV1["f:spec"]
    assert (created_entry.operation, applied_entry.operation) == ("Update", "Apply")


# ---------------------------------------------------------------- found by fuzzing the fake (issue 9 break-it pass)
# encoding/json semantics the typed decoder applies before validation: null into a pointer, slice or map
# leaves it nil; null into anything else leaves the zero value (a null list item is an empty struct, a
# null Quantity is "0"). patch.go: a patched object that no longer decodes is 422 Invalid on "patch".
# The version/kind sniffer (runtime/serializer/json) refuses a body that is not an object.


def test_nulls_decode_like_go(kube: FakeKube) -> None:
    with http(kube) as client:
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "r"},
            "rules": [None],
        }
        refused = client.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles", json=role)
        assert refused.status_code == 422
        assert {c["field"] for c in refused.json()["details"]["causes"]} >= {"rules[0].verbs"}
        quota = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "q"},
            "spec": {"hard": {"pods": None, "requests.cpu": "4"}},
        }
        created = client.post(f"/api/v1/namespaces/{NS}/resourcequotas", json=quota)
        assert created.status_code == 201, created.text
        assert created.json()["spec"]["hard"] == {"pods": "0", "requests.cpu": "4"}
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": None},
            "data": {"k": "v"},
        }
        created = client.post(f"/api/v1/namespaces/{NS}/configmaps", json=cm)
        assert created.status_code == 201
        assert "labels" not in created.json()["metadata"]


def test_huge_quantities_are_valid_and_canonical(admin: Client) -> None:
    # quantity.go keeps any exponent; CanonicalizeBytes makes it a multiple of 3.
    quota = admin.create(
        ResourceQuota.from_dict({"metadata": {"name": "big"}, "spec": {"hard": {"requests.cpu": "1e400"}}})
    )
    assert quota.spec.hard == {"requests.cpu": "10e399"}


def test_bodies_that_do_not_decode(kube: FakeKube) -> None:
    path = f"/api/v1/namespaces/{NS}/configmaps"
    with http(kube) as client:
        refused = client.post(path, content=b"[]", headers={"Content-Type": "application/json"})
        assert refused.status_code == 400
        assert refused.json()["message"].startswith("couldn't get version/kind; json parse error")
        # null decodes as an empty object: then the name is missing.
        refused = client.post(path, content=b"null", headers={"Content-Type": "application/json"})
        assert refused.status_code == 422
        assert refused.json()["details"]["causes"][0]["field"] == "metadata.name"
        client.post(path, json={"metadata": {"name": "c"}, "data": {"k": "v"}})
        broken = client.patch(
            f"{path}/c", content=b'{"metadata": 3}', headers={"Content-Type": "application/merge-patch+json"}
        )
        assert broken.status_code == 422
        cause = broken.json()["details"]["causes"][0]
        assert cause["field"] == "patch"
        assert "json: cannot unmarshal number into Go struct field" in cause["message"]


def test_custom_resources_drop_malformed_metadata(kube: FakeKube) -> None:
    # apiextensions-apiserver: GetObjectMeta(dropMalformedFields=true) before validation.
    kube.install_crds("gateway-api")
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": 1.5},
        "spec": {"parentRefs": [{"name": "gw"}]},
    }
    with http(kube) as client:
        refused = client.post(f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes", json=route)
    assert refused.status_code == 422
    assert refused.json()["details"]["causes"][0]["field"] == "metadata.name"


def test_identity_checks_of_create_and_update(kube: FakeKube) -> None:
    path = f"/api/v1/namespaces/{NS}/configmaps"
    with http(kube) as client:
        # etcd3 store.Create: ErrResourceVersionSetOnCreate is not a Status error, so a bare 500.
        refused = client.post(path, json={"metadata": {"name": "a", "resourceVersion": "5"}, "data": {}})
        assert (refused.status_code, refused.json()["message"]) == (
            500,
            "resourceVersion should not be set on objects to be created",
        )
        assert client.post(path, json={"metadata": {"name": "a"}, "data": {}}).status_code == 201
        # handlers/rest.go checkName, on every update and patch.
        for name in ("b", ""):
            refused = client.put(f"{path}/a", json={"metadata": {"name": name}, "data": {}})
            assert (refused.status_code, refused.json()["message"]) == (
                400,
                f"the name of the object ({name}) does not match the name on the URL (a)",
            )


def test_integer_fields_refuse_integral_floats_and_overflow_like_the_typed_decoder(kube: FakeKube) -> None:
    """JSON schema calls 2.0 an integer and kubernetes-validate does not check ``format: int32``, but the
    API server decodes create/update/patch bodies straight into Go structs (sigs.k8s.io/json, a fork of
    encoding/json: decode.go literalStore parses an int field with strconv.ParseInt and checks
    v.OverflowInt), so ``replicas: 2.0`` and ``replicas: 2147483648`` are 400 "cannot unmarshal number".
    A server-side apply converts through runtime/converter.go fromUnstructured instead, which accepts an
    integral float (sv.Float() == math.Trunc(sv.Float())) and stores the integer."""
    with http(kube) as c:
        base = f"/apis/apps/v1/namespaces/{NS}/deployments"
        for name, bad, shown in (
            ("f", 2.0, "number 2.0"),
            ("o", 2**31, "number 2147483648"),
            ("e", 1e3, "number 1000.0"),
        ):
            body = deployment(name)
            body["spec"]["replicas"] = bad
            r = c.post(base, json=body)
            assert r.status_code == 400, (bad, r.text)
            assert (
                f"cannot unmarshal {shown} into Go struct field spec.replicas of type int32"
                in r.json()["message"]
            )
        # int-or-string is an int32 too; a port number as a float is refused.
        body = deployment("p")
        body["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"port": 8000.0}}
        assert c.post(base, json=body).status_code == 400
        # Quantities are numbers: a float is fine there.
        body = deployment("q")
        body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": 0.5}}
        assert c.post(base, json=body).status_code == 201
        ok = deployment("ok")
        assert c.post(base, json=ok).status_code == 201
        merge = {"Content-Type": "application/merge-patch+json"}
        r = c.patch(f"{base}/ok", headers=merge, json={"spec": {"replicas": 3.0}})
        assert r.status_code == 422, r.text
        assert "cannot unmarshal number 3.0" in r.text
        r = c.patch(f"{base}/ok/scale", headers=merge, json={"spec": {"replicas": 2**31}})
        assert r.status_code == 400, r.text
        assert "of type int32" in r.text
        r = c.patch(f"{base}/ok/scale", headers=merge, json={"spec": {"replicas": True}})
        assert r.status_code == 400, r.text
        applied = deployment("a")
        applied["spec"]["replicas"] = 3.0
        r = c.patch(
            f"{base}/a",
            params={"fieldManager": "t"},
            headers={"Content-Type": "application/apply-patch+yaml"},
            content=json.dumps(applied),
        )
        assert r.status_code == 201, r.text
        assert r.json()["spec"]["replicas"] == 3
        assert type(r.json()["spec"]["replicas"]) is int
        applied["spec"]["replicas"] = 2**32 + 3  # the converter would wrap it to 3: refused here
        r = c.patch(
            f"{base}/a",
            params={"fieldManager": "t"},
            headers={"Content-Type": "application/apply-patch+yaml"},
            content=json.dumps(applied),
        )
        assert r.status_code >= 400, r.text
