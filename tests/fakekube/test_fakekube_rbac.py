"""Authentication and RBAC, with the API server's semantics and messages.

Sources: plugin/pkg/auth/authorizer/rbac/rbac.go (RuleAllows), pkg/apis/rbac/v1/evaluation_helpers.go
(VerbMatches, ResourceMatches with "*/subresource", ResourceNameMatches), pkg/registry/rbac/validation/
rule.go (VisitRulesFor, appliesToUser), staging/src/k8s.io/apiserver/pkg/endpoints/handlers/
responsewriters/errors.go (forbiddenMessage), handlers/patch.go (an apply that creates is also a
"create"), pkg/registry/rbac/*/policybased (escalation prevention).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.codecs import from_dict
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod, Secret, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding, Role, RoleBinding
from lightkube.types import PatchType

from listener.kube import WATCHED_NAMESPACE_RULES
from tests.fakekube.conftest import NS, OTHER_NS, deployment, http
from tools.fakekube import FakeKube

LISTENER = "system:serviceaccount:langsmith:langsmith-listener"
RBAC = "rbac.authorization.k8s.io"


@pytest.fixture
def admin(kube: FakeKube) -> Iterator[Client]:
    with kube.admin_client(NS) as c:
        yield c


def role(name: str, rules: list[dict[str, Any]], namespace: str = NS) -> Role:
    return Role.from_dict({"metadata": {"name": name, "namespace": namespace}, "rules": rules})


def binding(
    name: str, role_name: str, subjects: list[dict[str, Any]], kind: str = "Role", namespace: str = NS
) -> RoleBinding:
    return RoleBinding.from_dict(
        {
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role_name},
            "subjects": subjects,
        }
    )


def sa_subject(name: str, namespace: str | None = NS) -> dict[str, Any]:
    return {"kind": "ServiceAccount", "name": name, **({"namespace": namespace} if namespace else {})}


def service_account(admin: Client, name: str, namespace: str = NS) -> None:
    admin.create(ServiceAccount(metadata=ObjectMeta(name=name)), namespace=namespace)


def test_the_default_client_is_the_listener_service_account_with_its_declared_rules(kube: FakeKube) -> None:
    with kube.client(NS) as listener:
        listener.apply(Deployment.from_dict(deployment()))  # patch + create on deployments
        assert [p.metadata.name for p in listener.list(Pod, labels={"app": "web"})]
        with pytest.raises(ApiError) as err:
            list(listener.list(ConfigMap))
    status = err.value.status
    assert (status.code, status.reason) == (403, "Forbidden")
    assert status.message == (
        f'configmaps is forbidden: User "{LISTENER}" cannot list resource "configmaps" in API group "" '
        f'in the namespace "{NS}"'
    )
    assert (status.details.kind, status.details.name) == ("configmaps", None)
    assert kube.log.records(verb="list", kind="ConfigMap")[-1].user == LISTENER


def test_the_listener_role_is_made_from_the_declared_access_table(kube: FakeKube, admin: Client) -> None:
    (role_obj,) = [r for r in admin.list(Role, namespace=OTHER_NS) if r.metadata.name == "langsmith-listener"]
    declared = {
        (r.api_group, res, v) for r in WATCHED_NAMESPACE_RULES for res in r.resources for v in r.verbs
    }
    granted = {
        (g, res, v)
        for rule in role_obj.rules
        for g in rule.apiGroups
        for res in rule.resources
        for v in rule.verbs
    }
    assert granted == declared
    # Every declared permission is allowed, per a SelfSubjectAccessReview as the listener.
    with http(kube, kube.listener) as client:
        for group, resource, verb in sorted(declared):
            review = {
                "spec": {
                    "resourceAttributes": {
                        "namespace": NS,
                        "verb": verb,
                        "group": group,
                        "resource": resource,
                    }
                }
            }
            answer = client.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=review)
            assert answer.status_code == 201
            assert answer.json()["status"]["allowed"], (group, resource, verb)
        review = {
            "spec": {
                "resourceAttributes": {"namespace": NS, "verb": "delete", "group": "", "resource": "pods"}
            }
        }
        assert client.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=review).json()[
            "status"
        ] == {"allowed": False}


def test_a_namespace_without_a_binding_is_forbidden(kube: FakeKube) -> None:
    with kube.client(NS) as listener, pytest.raises(ApiError) as err:
        listener.get(Secret, "x", namespace="kube-system")
    assert err.value.status.message == (
        f'secrets "x" is forbidden: User "{LISTENER}" cannot get resource "secrets" in API group "" '
        'in the namespace "kube-system"'
    )
    assert err.value.status.details.name == "x"


def test_cluster_scope_and_namespace_objects(kube: FakeKube) -> None:
    with kube.client(NS) as listener:
        with pytest.raises(ApiError) as err:
            list(listener.list(Namespace))
        assert "at the cluster scope" in err.value.status.message
        # GET /api/v1/namespaces/x is a request *in* namespace x (requestinfo.go): a Role there may
        # grant it; the listener's does not.
        with pytest.raises(ApiError) as err:
            listener.get(Namespace, NS)
        assert (
            f'cannot get resource "namespaces" in API group "" in the namespace "{NS}"'
            in err.value.status.message
        )


def test_server_side_apply_that_creates_needs_create(kube: FakeKube, admin: Client) -> None:
    service_account(admin, "patcher")
    admin.create(
        role("patch-only", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]}])
    )
    admin.create(binding("patch-only", "patch-only", [sa_subject("patcher")]))
    admin.create(ConfigMap(metadata=ObjectMeta(name="exists"), data={"k": "v"}))
    patcher = kube.identity_for_service_account(NS, "patcher")
    with kube.client(NS, identity=patcher, field_manager="patcher") as client:
        client.apply(
            ConfigMap(metadata=ObjectMeta(name="exists"), data={"k": "w"}), force=True
        )  # an update: patch suffices
        with pytest.raises(ApiError) as err:
            client.apply(ConfigMap(metadata=ObjectMeta(name="new"), data={"k": "v"}))
    status = err.value.status
    assert (status.code, status.reason) == (403, "Forbidden")
    # withAuthorization(createValidation): NewForbidden with the RBAC authorizer's (empty) reason.
    assert status.message == 'configmaps "new" is forbidden: '
    assert admin.get(ConfigMap, "exists").data == {"k": "w"}


def test_resource_names_and_subresources(kube: FakeKube, admin: Client) -> None:
    service_account(admin, "narrow")
    admin.create(
        role(
            "narrow",
            [
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["allowed"], "verbs": ["get"]},
                {"apiGroups": ["apps"], "resources": ["deployments/status"], "verbs": ["patch"]},
                {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get"]},
            ],
        )
    )
    admin.create(
        binding("narrow", "narrow", [sa_subject("narrow", namespace=None)])
    )  # namespace defaults to the binding's
    admin.create(Secret(metadata=ObjectMeta(name="allowed"), stringData={"k": "v"}))
    admin.create(Secret(metadata=ObjectMeta(name="other"), stringData={"k": "v"}))
    admin.apply(Deployment.from_dict(deployment()))
    with kube.client(NS, identity=kube.identity_for_service_account(NS, "narrow")) as client:
        assert client.get(Secret, "allowed").metadata.name == "allowed"
        for call in (lambda: client.get(Secret, "other"), lambda: list(client.list(Secret))):
            with pytest.raises(ApiError) as err:
                call()
            assert err.value.status.code == 403
        client.patch(Deployment.Status, "web", {"status": {"readyReplicas": 0}}, patch_type=PatchType.MERGE)
        with pytest.raises(ApiError) as err:
            client.patch(Deployment, "web", {"spec": {"replicas": 3}}, patch_type=PatchType.MERGE)
        assert err.value.status.code == 403
        assert client.get(Deployment.Scale, "web").spec.replicas == 2
    with http(kube, kube.identity_for_service_account(NS, "narrow")) as raw:
        denied = raw.put(
            f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale", json={"spec": {"replicas": 1}}
        )
    assert denied.status_code == 403
    assert 'cannot update resource "deployments/scale" in API group "apps"' in denied.json()["message"]


def test_a_binding_to_a_missing_role_says_so(kube: FakeKube, admin: Client) -> None:
    service_account(admin, "orphan")
    admin.create(binding("dangling", "missing", [sa_subject("orphan")]))
    orphan = kube.identity_for_service_account(NS, "orphan")
    with kube.client(NS, identity=orphan) as client, pytest.raises(ApiError) as err:
        list(client.list(Secret))
    assert err.value.status.message.endswith(': RBAC: role.rbac.authorization.k8s.io "missing" not found')


def test_cluster_roles_through_role_bindings_and_cluster_role_bindings(kube: FakeKube, admin: Client) -> None:
    reader = kube.add_user("reader", groups=["readers"])
    admin.create(
        from_dict(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "configmap-reader"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
            }
        )
    )
    admin.create(
        binding(
            "readers",
            "configmap-reader",
            [{"kind": "Group", "name": "readers", "apiGroup": RBAC}],
            kind="ClusterRole",
        )
    )
    with kube.client(NS, identity=reader) as client:
        assert "kube-root-ca.crt" in [c.metadata.name for c in client.list(ConfigMap)]
        with pytest.raises(ApiError):
            list(client.list(ConfigMap, namespace=OTHER_NS))  # a RoleBinding grants only in its namespace
        admin.create(
            ClusterRoleBinding.from_dict(
                {
                    "metadata": {"name": "readers"},
                    "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "configmap-reader"},
                    "subjects": [{"kind": "User", "name": "reader", "apiGroup": RBAC}],
                }
            )
        )
        assert [c.metadata.name for c in client.list(ConfigMap, namespace=OTHER_NS)] == ["kube-root-ca.crt"]


def test_tokens_follow_their_service_account(kube: FakeKube, admin: Client) -> None:
    service_account(admin, "temp")
    identity = kube.identity_for_service_account(NS, "temp")
    with http(kube, identity) as client:
        assert client.get("/version").status_code == 200
        admin.delete(ServiceAccount, "temp")
        gone = client.get("/version")
        assert (gone.status_code, gone.json()["reason"]) == (401, "Unauthorized")
    with pytest.raises(LookupError):
        kube.token_for_service_account(NS, "temp")
    with http(kube, None) as client:
        bad = client.get("/api/v1/namespaces", headers={"Authorization": "Bearer not-a-token"})
        assert (bad.status_code, bad.json()["message"]) == (401, "Unauthorized")


def test_anonymous_requests_reach_public_paths_only(kube: FakeKube) -> None:
    import httpx2

    with httpx2.Client(base_url=kube.url, trust_env=False) as anonymous:
        assert anonymous.get("/version").json()["gitVersion"] == "v1.37.0"
        denied = anonymous.get(f"/api/v1/namespaces/{NS}/pods")
        assert denied.status_code == 403
        assert denied.json()["message"] == (
            f'pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" in the namespace "{NS}"'
        )
        assert anonymous.get("/apis").status_code == 403  # system:discovery is for authenticated users


def test_token_request_and_legacy_token_secrets(kube: FakeKube, admin: Client) -> None:
    service_account(admin, "robot")
    admin.create(role("robot", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]))
    admin.create(binding("robot", "robot", [sa_subject("robot")]))
    with http(kube) as client:
        answer = client.post(
            f"/api/v1/namespaces/{NS}/serviceaccounts/robot/token", json={"spec": {"expirationSeconds": 3600}}
        )
        assert answer.status_code == 201
        token = answer.json()["status"]["token"]
        missing = client.post(f"/api/v1/namespaces/{NS}/serviceaccounts/nobody/token", json={})
        assert missing.status_code == 404
    # The tokens controller fills a kubernetes.io/service-account-token Secret for an existing account.
    admin.create(
        from_dict(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "robot-token",
                    "annotations": {"kubernetes.io/service-account.name": "robot"},
                },
                "type": "kubernetes.io/service-account-token",
            }
        )
    )
    legacy = base64.b64decode(admin.get(Secret, "robot-token").data["token"]).decode()
    for bearer in (token, legacy):
        with http(kube, None) as client:
            ok = client.get(
                f"/api/v1/namespaces/{NS}/configmaps", headers={"Authorization": f"Bearer {bearer}"}
            )
            assert ok.status_code == 200


def test_roles_cannot_grant_what_their_author_lacks(kube: FakeKube, admin: Client) -> None:
    service_account(admin, "manager")
    admin.create(
        role(
            "role-manager",
            [
                {"apiGroups": [RBAC], "resources": ["roles", "rolebindings"], "verbs": ["create", "get"]},
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
            ],
        )
    )
    admin.create(binding("role-manager", "role-manager", [sa_subject("manager")]))
    admin.create(role("secret-reader", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]))
    with kube.client(NS, identity=kube.identity_for_service_account(NS, "manager")) as client:
        client.create(role("ok", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]))
        with pytest.raises(ApiError) as err:
            client.create(role("too-much", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]))
        assert err.value.status.code == 403
        assert (
            'is attempting to grant RBAC permissions not currently held:\n{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}'
            in err.value.status.message
        )
        with pytest.raises(ApiError) as err:
            client.create(binding("bind-secrets", "secret-reader", [sa_subject("manager")]))
        assert err.value.status.code == 403
    # With the `bind` verb on that role, binding it is allowed without holding its permissions.
    admin.create(
        role(
            "binder",
            [
                {
                    "apiGroups": [RBAC],
                    "resources": ["roles"],
                    "resourceNames": ["secret-reader"],
                    "verbs": ["bind"],
                }
            ],
        )
    )
    admin.create(binding("binder", "binder", [sa_subject("manager")]))
    with kube.client(NS, identity=kube.identity_for_service_account(NS, "manager")) as client:
        client.create(binding("bind-secrets", "secret-reader", [sa_subject("manager")]))


def test_kubeconfig_per_identity(kube: FakeKube, admin: Client) -> None:
    service_account(admin, "viewer")
    config = kube.kubeconfig_dict(NS, identity=kube.identity_for_service_account(NS, "viewer"))
    assert config["users"][0]["name"] == f"system:serviceaccount:{NS}:viewer"
    assert config["contexts"][0]["context"]["namespace"] == NS
    with (
        Client(
            kube.kubeconfig(NS, identity=kube.identity_for_service_account(NS, "viewer")), trust_env=False
        ) as client,
        pytest.raises(ApiError) as err,
    ):
        list(client.list(Secret))
    assert f'User "system:serviceaccount:{NS}:viewer"' in err.value.status.message
    assert "token" not in repr(kube.admin)


def test_a_program_installs_as_admin_and_its_service_account_runs_on_its_roles() -> None:
    """What issue 12 does: apply the program's objects as the installer, then act as the ServiceAccount it
    created, through a kubeconfig, authorised only by the Roles it declared."""
    ns = "agents-prod"
    manifests: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted", "team": "a"},
            },
        },
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "langsmith-system"}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "deployer", "namespace": "langsmith-system"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": ns},
            "stringData": {"K": "v"},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": ns},
            "data": {"k": "v"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "deployer", "namespace": ns},
            "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "patch"]},
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments"],
                    "verbs": ["get", "list", "create", "patch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "deployer", "namespace": ns},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "langsmith-system"}],
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": ns},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        },
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "quota", "namespace": ns},
            "spec": {"hard": {"pods": "20", "requests.cpu": "8"}},
        },
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "defaults", "namespace": ns},
            "spec": {
                "limits": [{"type": "Container", "defaultRequest": {"cpu": "100m"}, "default": {"cpu": "1"}}]
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "pdb", "namespace": ns},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "x"}}},
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "gp3"},
            "provisioner": "ebs.csi.aws.com",
            "volumeBindingMode": "WaitForFirstConsumer",
        },
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "leader", "namespace": ns},
            "spec": {"holderIdentity": "none", "leaseDurationSeconds": 15},
        },
    ]
    with FakeKube([], crds=("keda",)) as kube, kube.admin_client(field_manager="pulumi") as installer:
        for manifest in manifests:
            installer.apply(from_dict(manifest), field_manager="pulumi")
        token = kube.token_for_service_account("langsmith-system", "deployer")
        assert token
        deployer = kube.identity_for_service_account("langsmith-system", "deployer")
        assert deployer.name == "system:serviceaccount:langsmith-system:deployer"
        with Client(kube.kubeconfig(ns, identity=deployer), field_manager="deployer") as client:
            assert [s.metadata.name for s in client.list(Secret)] == ["creds"]
            web = _restricted(deployment("web"))
            web["metadata"]["namespace"] = ns
            client.apply(Deployment.from_dict(web))
            assert client.get(Deployment, "web").status.readyReplicas == 2
            with pytest.raises(ApiError) as err:
                client.get(ConfigMap, "cfg")
            assert err.value.status.message == (
                'configmaps "cfg" is forbidden: User "system:serviceaccount:langsmith-system:deployer" cannot get '
                f'resource "configmaps" in API group "" in the namespace "{ns}"'
            )
            with pytest.raises(ApiError) as err:
                list(client.list(Secret, namespace="default"))
            assert err.value.status.code == 403


def _restricted(manifest: dict[str, Any]) -> dict[str, Any]:
    pod = manifest["spec"]["template"]["spec"]
    pod["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for c in pod["containers"]:
        c["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return manifest
