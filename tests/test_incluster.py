"""The in-cluster layer under mocks: namespaces, RBAC from the listener's table, the listener's
Deployment and settings, registration, add-ons and their order, managed stores, existing clusters."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pulumi
import pytest

from components import labels as lbl
from components.addon_versions import (
    CLUSTER_AUTOSCALER,
    ENVOY_GATEWAY,
    GATEWAY_NAME,
    KEDA,
    METRICS_SERVER,
    unsupported,
)
from components.addons import load_balancer_controller_policy
from components.listener import (
    API_KEY_FIELD,
    API_KEY_SECRET,
    CA_DIRECTORY,
    FETCH_CA,
    HEALTH_PORT,
    LISTENER_REPLICAS,
    POSTGRES_ADMIN_URI,
    REDIS_ADMIN_URI,
    STORES_SECRET,
)
from components.rbac import policy_rules
from components.stores import RDS_CA_BUNDLE_PATH, RDS_CA_BUNDLE_URL, postgres_uri
from listener import kube
from listener.kube import AccessRule
from listener.settings import Settings
from tests.kube_schemas import declared_objects
from tests.support import cached_run, is_secret, of_type, one, run_variant
from tools.harness import (
    ROOT,
    PlanResult,
    Registration,
    read_stack_file,
    run_program,
    run_stack,
    sanitize,
    stack_names,
    stack_path,
)

REGISTRATION = "pulumi-python:dynamic/langsmith:ListenerRegistration"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
RELEASE = "kubernetes:helm.sh/v3:Release"


def objects(result: PlanResult, kind: str) -> list[dict[str, Any]]:
    return [o for o in declared_objects(result) if o["kind"] == kind]


def by_name(result: PlanResult, kind: str, namespace: str, name: str) -> dict[str, Any]:
    (found,) = [
        o
        for o in objects(result, kind)
        if (o["metadata"].get("namespace"), o["metadata"]["name"]) == (namespace, name)
    ]
    return found


def env_of(deployment: Mapping[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --- namespaces -------------------------------------------------------------------------------------


def test_a_shared_namespace_is_declared_once_and_labelled_with_every_listener() -> None:
    result = cached_run("example-shared-namespace", False)
    agents = [o for o in objects(result, "Namespace") if o["metadata"]["name"] == "agents"]
    assert len(agents) == 1
    labels = agents[0]["metadata"]["labels"]
    assert labels[f"{lbl.WATCHED_BY_PREFIX}listener-a"] == lbl.WATCHING
    assert labels[f"{lbl.WATCHED_BY_PREFIX}listener-b"] == lbl.WATCHING
    assert labels[lbl.NAMESPACE_ROLE] == lbl.AGENTS
    assert result.outputs["agentNamespaces"] == {"agents": ["listener-a", "listener-b"]}


@pytest.mark.parametrize("stack", stack_names())
def test_every_agent_and_listener_namespace_enforces_restricted(stack: str) -> None:
    result = cached_run(stack, False)
    ours = [o for o in objects(result, "Namespace") if o["metadata"]["labels"].get(lbl.NAMESPACE_ROLE)]
    watched = {ns for listener in result.outputs["listeners"] for ns in listener["namespaces"]}
    own = {listener["listenerNamespace"] for listener in result.outputs["listeners"]}
    assert {o["metadata"]["name"] for o in ours} == watched | own
    for namespace in ours:
        labels = namespace["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert labels["pod-security.kubernetes.io/enforce-version"] == f"v{_version(stack)}"


def _version(stack: str) -> str:
    from components.load import parse_stack_config

    stack_file = read_stack_file(stack_path(stack))
    return parse_stack_config(stack, stack_file.config, stack_file.secret_keys).cluster.kubernetes_version


def test_quota_and_limit_range_come_from_config(tmp_path) -> None:
    result = run_variant(
        tmp_path,
        "dev",
        {
            "agent_namespaces": {
                "resource_quota": {"requests.cpu": "16", "limits.memory": "64Gi", "pods": "100"},
                "limit_range": {
                    "default_request": {"cpu": "250m", "memory": "512Mi"},
                    "max": {"memory": "8Gi"},
                },
            }
        },
    )
    quota = by_name(result, "ResourceQuota", "agents-dev", "agents")
    assert quota["spec"]["hard"] == {"requests.cpu": "16", "limits.memory": "64Gi", "pods": "100"}
    limits = by_name(result, "LimitRange", "agents-dev", "agents")
    assert limits["spec"]["limits"] == [
        {"type": "Container", "defaultRequest": {"cpu": "250m", "memory": "512Mi"}, "max": {"memory": "8Gi"}}
    ]
    assert not objects(cached_run("dev", False), "ResourceQuota")


# --- RBAC -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", stack_names())
def test_each_watched_namespace_gets_one_role_from_the_listeners_table(stack: str) -> None:
    result = cached_run(stack, False)
    for listener in result.outputs["listeners"]:
        name = f"langsmith-listener-{listener['name']}"
        for namespace in listener["namespaces"]:
            role = by_name(result, "Role", namespace, name)
            assert role["rules"] == policy_rules(kube.WATCHED_NAMESPACE_RULES)
            binding = by_name(result, "RoleBinding", namespace, name)
            assert binding["roleRef"] == {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": name,
            }
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": "listener", "namespace": listener["listenerNamespace"]}
            ]
    roles = objects(result, "Role")
    expected = sum(len(lst["namespaces"]) for lst in result.outputs["listeners"])
    own = len(result.outputs["listeners"]) if kube.OWN_NAMESPACE_RULES else 0
    assert len(roles) == expected + own


@pytest.mark.parametrize("stack", stack_names())
def test_nothing_cluster_scoped_is_granted(stack: str) -> None:
    types = {r.type for r in cached_run(stack, True).resources}
    assert not {t for t in types if "ClusterRole" in t}


def test_the_program_renders_whatever_the_listener_declares(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    # A new call in the listener needs a new rule in listener.kube; the program must follow without edits.
    extra = AccessRule("", ("configmaps",), ("get",))
    monkeypatch.setattr(kube, "WATCHED_NAMESPACE_RULES", (*kube.WATCHED_NAMESPACE_RULES, extra))
    lease = AccessRule("coordination.k8s.io", ("leases",), ("get", "create", "update"))
    monkeypatch.setattr(kube, "OWN_NAMESPACE_RULES", (lease,))
    result = run_variant(tmp_path, "dev", {})
    watched = by_name(result, "Role", "agents-dev", "langsmith-listener-dev")
    assert watched["rules"][-1] == {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}
    own = by_name(result, "Role", "listener-dev", "langsmith-listener-dev")
    assert own["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    assert (
        by_name(result, "RoleBinding", "listener-dev", "langsmith-listener-dev")["roleRef"]["kind"] == "Role"
    )


# --- the listener's Deployment -------------------------------------------------------------------------


@pytest.mark.parametrize("stack", stack_names())
def test_the_listener_runs_restricted_with_probes_and_a_standby(stack: str) -> None:
    result = cached_run(stack, False)
    for listener in result.outputs["listeners"]:
        deployment = by_name(result, "Deployment", listener["listenerNamespace"], "listener")
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert spec["replicas"] == LISTENER_REPLICAS == 2
        # One leader at a time: a new pod joins as a standby before an old one leaves.
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }
        env = env_of(deployment)
        assert env["LISTENER_LEADER_ELECTION"] == "true"
        assert env["LISTENER_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert pod["serviceAccountName"] == "listener"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert container["ports"] == [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        assert set(container["resources"]) == {"requests", "limits"}
        budget = by_name(result, "PodDisruptionBudget", listener["listenerNamespace"], "listener")
        # Two replicas: one may go, one stays (a budget in terms of minAvailable would block drains at 1).
        assert budget["spec"] == {"maxUnavailable": 1, "selector": spec["selector"]}
        lease = by_name(
            result, "Role", listener["listenerNamespace"], f"langsmith-listener-{listener['name']}"
        )
        assert lease["rules"] == [
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["get", "create", "update"],
            }
        ]


def test_the_pod_outlives_the_listeners_shutdown_budget() -> None:
    # On SIGTERM the listener finishes its cycle and releases its Lease within
    # LISTENER_SHUTDOWN_TIMEOUT_SECONDS (listener.process); the kubelet SIGKILLs the container when
    # terminationGracePeriodSeconds runs out (kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle
    # #pod-termination), so the grace period must be longer, or a rollout kills a leader mid-write and
    # leaves the Lease held until it expires.
    result = cached_run("dev", False)
    (listener,) = result.outputs["listeners"]
    deployment = by_name(result, "Deployment", listener["listenerNamespace"], "listener")
    env = env_of(deployment)
    budget = float(
        env.get(
            "LISTENER_SHUTDOWN_TIMEOUT_SECONDS", Settings.model_fields["shutdown_timeout_seconds"].default
        )
    )
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > budget


AWS_SDK_ENV = {"AWS_REGION", "AWS_STS_REGIONAL_ENDPOINTS"}


@pytest.mark.parametrize("stack", stack_names())
def test_the_listeners_settings_are_the_agreed_names_and_its_registered_id(stack: str) -> None:
    result = cached_run(stack, False)
    registrations = {r.name: r for r in of_type(result, REGISTRATION)}
    for listener in result.outputs["listeners"]:
        env = env_of(by_name(result, "Deployment", listener["listenerNamespace"], "listener"))
        # Besides its settings, only what botocore reads for IRSA (managed stores, secrets-manager).
        sdk = {name for name in env if name in AWS_SDK_ENV}
        assert sdk in (set(), AWS_SDK_ENV)
        fields = {name.removeprefix("LISTENER_").lower() for name in env if name not in sdk}
        assert all(name.startswith("LISTENER_") for name in env if name not in sdk)
        # Settings ignores unknown variables, so a misspelt name would pass silently: catch it here.
        assert fields <= set(Settings.model_fields), "a setting the listener does not know"
        assert env["LISTENER_NAMESPACES"] == ",".join(listener["namespaces"])
        assert env["LISTENER_API_KEY"] == {"secretKeyRef": {"name": API_KEY_SECRET, "key": API_KEY_FIELD}}
        assert env["LISTENER_HEALTH_PORT"] == str(HEALTH_PORT)
        assert env["LISTENER_POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        registration = registrations[f"{_component(result, listener['name'])}-registration"]
        # The id LangSmith gave the registration (the fake cloud's answer) is what the listener runs as.
        assert env["LISTENER_LISTENER_ID"] == result.outputs["listenerIds"][listener["name"]]
        assert registration.inputs["compute_id"] == listener["computeId"]
        assert registration.inputs["namespaces"] == listener["namespaces"]


def _component(result: PlanResult, listener: str) -> str:
    (component,) = [
        r.name
        for r in of_type(result, "langsmith:infra:Listener")
        if r.name.endswith(f"-listener-{listener}")
    ]
    return component


STAND_INS = {
    "LISTENER_API_KEY": "lsv2_pt_x",
    "LISTENER_POD_NAME": "listener-0",
    "LISTENER_POSTGRES_ADMIN_URI": "postgres://admin:pw@db.internal:5432/postgres?sslmode=require",
    "LISTENER_REDIS_ADMIN_URI": "rediss://:pw@cache.internal:6379",
}
"""What the kubelet would put in for secretKeyRefs and the pod name."""


@pytest.mark.parametrize("stack", stack_names())
def test_settings_validate_as_the_listener_would_read_them(stack: str) -> None:
    # The env, with its secret and downward-API references resolved, starts the listener's Settings.
    result = cached_run(stack, False)
    for listener in result.outputs["listeners"]:
        namespace = listener["listenerNamespace"]
        env = env_of(by_name(result, "Deployment", namespace, "listener"))
        resolved = {
            k: v if isinstance(v, str) else {**STAND_INS, "LISTENER_POD_NAMESPACE": namespace}[k]
            for k, v in env.items()
        }
        settings = Settings.model_validate(
            {k.removeprefix("LISTENER_").lower(): v for k, v in resolved.items()}
        )
        assert str(settings.listener_id) == env["LISTENER_LISTENER_ID"]
        assert settings.namespaces == listener["namespaces"]
        assert settings.leader_election is True
        assert settings.health_port == HEALTH_PORT


def test_the_api_key_is_a_secret_everywhere_and_never_in_the_plan(tmp_path) -> None:
    key = "lsv2_pt_must_never_show_0123456789"
    result = run_variant(tmp_path, "dev", {"api_key": {"secure": "v1:stub"}}, preview=True)
    registration = one(result, REGISTRATION)
    assert is_secret(registration.inputs["api_key"])
    secret = next(
        r for r in of_type(result, "kubernetes:core/v1:Secret") if r.name.endswith("listener-api-key")
    )
    assert is_secret(secret.inputs["stringData"])
    # A known value, as `pulumi config set --secret` hands it to the program: it reaches the
    # registration (inside its secret envelope) and nothing else shows it.
    stack_file = read_stack_file(stack_path("dev"))
    raw = run_program(
        _main,
        stack="dev",
        config={**stack_file.config, "langsmith-dataplane:api_key": key},
        secret_keys=stack_file.secret_keys | {"langsmith-dataplane:api_key"},
    )
    assert one(raw, REGISTRATION).inputs["api_key"]["value"] == key
    document = json.dumps([sanitize(dict(r.inputs)) for r in raw.resources]) + json.dumps(raw.outputs)
    assert key not in document


def _main() -> None:
    runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")


def test_managed_stores_give_each_listener_their_admin_uris() -> None:
    result = cached_run("example-shared-namespace", False)
    for listener in result.outputs["listeners"]:
        namespace = listener["listenerNamespace"]
        env = env_of(by_name(result, "Deployment", namespace, "listener"))
        assert env["LISTENER_STORE_MODE"] == "managed"
        assert env["LISTENER_POSTGRES_ADMIN_URI"] == {
            "secretKeyRef": {"name": STORES_SECRET, "key": POSTGRES_ADMIN_URI}
        }
        assert env["LISTENER_REDIS_ADMIN_URI"] == {
            "secretKeyRef": {"name": STORES_SECRET, "key": REDIS_ADMIN_URI}
        }
        stores = by_name(result, "Secret", namespace, STORES_SECRET)
        assert set(stores["stringData"]) == {POSTGRES_ADMIN_URI, REDIS_ADMIN_URI}
    registration = next(
        r for r in of_type(result, "kubernetes:core/v1:Secret") if r.name.endswith(f"secret-{STORES_SECRET}")
    )
    assert is_secret(registration.inputs["stringData"])
    dev_env = env_of(by_name(cached_run("dev", False), "Deployment", "listener-dev", "listener"))
    assert dev_env["LISTENER_STORE_MODE"] == "in-cluster"
    assert "LISTENER_POSTGRES_ADMIN_URI" not in dev_env


def test_the_listener_has_the_rds_ca_its_admin_uri_verifies_against() -> None:
    """The program's Postgres URIs say sslmode=verify-full&sslrootcert=RDS_CA_BUNDLE_PATH: the file
    must exist in the listener's pod (and the listener hands its contents on to each Agent Server)."""
    result = cached_run("example-shared-namespace", False)
    for listener in result.outputs["listeners"]:
        pod = by_name(result, "Deployment", listener["listenerNamespace"], "listener")["spec"]["template"][
            "spec"
        ]
        (fetch,) = pod["initContainers"]
        assert fetch["command"][-2:] == [RDS_CA_BUNDLE_URL, RDS_CA_BUNDLE_PATH]
        assert fetch["image"] == pod["containers"][0]["image"], "the listener image: nothing else to trust"
        assert fetch["securityContext"] == pod["containers"][0]["securityContext"]
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        (volume,) = [v for v in pod["volumes"] if v["name"] == fetch["volumeMounts"][0]["name"]]
        assert "emptyDir" in volume
        assert mounts[volume["name"]] == {"name": volume["name"], "mountPath": CA_DIRECTORY, "readOnly": True}
        assert RDS_CA_BUNDLE_PATH.startswith(CA_DIRECTORY + "/")
    assert postgres_uri("db", 5432, "postgres", "u", "p").endswith(f"sslrootcert={RDS_CA_BUNDLE_PATH}")
    dev = by_name(cached_run("dev", False), "Deployment", "listener-dev", "listener")["spec"]["template"][
        "spec"
    ]
    assert "initContainers" not in dev, "in-cluster stores need no CA"


def test_the_ca_fetcher_writes_a_pem_bundle_and_refuses_anything_else(tmp_path) -> None:
    bundle, junk = tmp_path / "bundle.pem", tmp_path / "junk.html"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" * 2)
    junk.write_text("<html>captive portal</html>")
    out = tmp_path / "out.pem"
    done = subprocess.run(
        [sys.executable, "-c", FETCH_CA, bundle.as_uri(), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == bundle.read_bytes()
    assert "2 certificates" in done.stdout
    refused = subprocess.run(
        [sys.executable, "-c", FETCH_CA, junk.as_uri(), str(tmp_path / "no.pem")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "returned no PEM certificate" in refused.stderr
    assert not (tmp_path / "no.pem").exists()


def test_one_key_per_workspace_when_the_stack_sets_them(tmp_path) -> None:
    result = run_variant(
        tmp_path,
        "example-namespace-per-workspace",
        {"workspace_api_keys": {"workspace-a": {"secure": "v1:a"}, "workspace-b": {"secure": "v1:b"}}},
    )
    sources = sorted(r.inputs["api_key_source"] for r in of_type(result, REGISTRATION))
    assert sources == ["workspace_api_keys.workspace-a", "workspace_api_keys.workspace-b"]
    assert "api_key" not in result.stubbed_secrets


def test_without_the_api_key_the_program_names_the_key() -> None:
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("dev", stub_secrets=False)
    assert "langsmith-dataplane:api_key: is required to register and run the listeners" in str(caught.value)


# --- add-ons ------------------------------------------------------------------------------------------


def _releases(result: PlanResult) -> dict[str, Registration]:
    return {r.inputs["name"]: r for r in of_type(result, RELEASE)}


def test_add_ons_are_pinned_helm_releases_with_visible_values() -> None:
    releases = _releases(cached_run("prod", True))
    assert set(releases) == {
        "metrics-server",
        "keda",
        "aws-load-balancer-controller",
        "cluster-autoscaler",
        "envoy-gateway",
    }
    for chart in (KEDA, METRICS_SERVER, CLUSTER_AUTOSCALER, ENVOY_GATEWAY):
        release = releases[chart.release]
        assert (release.inputs["chart"], release.inputs["version"]) == (chart.chart, chart.version)
        assert release.inputs["namespace"] == chart.namespace
        assert isinstance(release.inputs["values"], dict)
    autoscaler = releases["cluster-autoscaler"].inputs["values"]
    assert autoscaler["image"]["tag"] == "v1.35.1"  # the autoscaler's minor follows the cluster's
    assert autoscaler["autoDiscovery"] == {"clusterName": "lsdp-prod"}


def test_the_listener_waits_for_keda_and_the_gateway() -> None:
    result = cached_run("prod", True)
    urns = {r.name: r.urn for r in result.resources}
    deployment = next(r for r in of_type(result, DEPLOYMENT) if r.name.endswith("deployment-listener"))
    assert urns["lsdp-prod-addons-keda"] in deployment.dependencies
    assert urns["lsdp-prod-addons-gateway-langsmith-agents"] in deployment.dependencies
    gateway = one(result, "kubernetes:gateway.networking.k8s.io/v1:Gateway")
    assert urns["lsdp-prod-addons-envoy-gateway"] in gateway.dependencies  # the CRDs come with the release
    env = env_of(by_name(cached_run("prod", False), "Deployment", "listener-prod", "listener"))
    assert env["LISTENER_ROUTING"] == "httproute"
    assert (env["LISTENER_GATEWAY_NAME"], env["LISTENER_GATEWAY_NAMESPACE"]) == (
        GATEWAY_NAME,
        ENVOY_GATEWAY.namespace,
    )
    assert env["LISTENER_AUTOSCALER"] == "keda"


def test_the_shared_gateway_admits_routes_from_agent_namespaces_only() -> None:
    gateway = by_name(cached_run("prod", False), "Gateway", ENVOY_GATEWAY.namespace, GATEWAY_NAME)
    for listener in gateway["spec"]["listeners"]:
        assert listener["hostname"] == "agents.prod.example.com"
        assert listener["allowedRoutes"]["namespaces"] == {
            "from": "Selector",
            "selector": {"matchLabels": {lbl.NAMESPACE_ROLE: lbl.AGENTS}},
        }
    assert [item["protocol"] for item in gateway["spec"]["listeners"]] == ["HTTP", "HTTPS"]


def _proxy_service_annotations(result: PlanResult) -> dict[str, str]:
    proxy = by_name(result, "EnvoyProxy", ENVOY_GATEWAY.namespace, "langsmith-dataplane")
    return proxy["spec"]["provider"]["kubernetes"]["envoyService"]["annotations"]


def test_an_internal_gateway_is_internal_with_or_without_our_load_balancer_controller(tmp_path) -> None:
    # A LoadBalancer Service is internet-facing unless annotated, whoever serves it: EKS's built-in
    # controller makes a public Classic ELB (kubernetes/cloud-provider-aws, aws-load-balancer-internal),
    # AKS and GKE public load balancers. `routing.internal` (default true) must hold without the
    # controller too, or every Agent Server is on the internet over plain HTTP.
    with_controller = _proxy_service_annotations(cached_run("prod", False))
    assert with_controller["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    for stack in ("example-shared-namespace", "example-existing-cluster"):  # EKS, any cluster
        annotations = _proxy_service_annotations(cached_run(stack, False))
        assert annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"
        assert annotations["service.beta.kubernetes.io/azure-load-balancer-internal"] == "true"
        assert annotations["networking.gke.io/load-balancer-type"] == "Internal"
    public = {"mode": "gateway", "hostname": "agents.example.com", "internal": False}
    result = run_variant(tmp_path, "example-shared-namespace", {"routing": public})
    assert _proxy_service_annotations(result) == {}


def test_irsa_roles_trust_only_their_service_account_and_scale_only_this_cluster() -> None:
    result = cached_run("prod", False)
    roles = {r.name: r for r in of_type(result, "aws:iam/role:Role")}
    trust = json.loads(roles["lsdp-prod-addons-autoscaler"].inputs["assumeRolePolicy"])
    (condition,) = [s["Condition"]["StringEquals"] for s in trust["Statement"]]
    assert "system:serviceaccount:kube-system:cluster-autoscaler" in condition.values()
    policy = next(
        json.loads(r.inputs["policy"])
        for r in of_type(result, "aws:iam/rolePolicy:RolePolicy")
        if r.name == "lsdp-prod-addons-autoscaler"
    )
    writes = policy["Statement"][0]
    assert writes["Condition"] == {
        "StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/lsdp-prod": "owned"}
    }


def _resource_arns(policy: dict[str, Any]) -> list[str]:
    arns = []
    for statement in policy["Statement"]:
        resources = statement["Resource"]
        arns += [resources] if isinstance(resources, str) else resources
    return [a for a in arns if a != "*"]


def test_the_load_balancer_controller_policy_names_resources_in_the_stacks_partition(tmp_path) -> None:
    # Upstream publishes iam_policy.json, iam_policy_us-gov.json and iam_policy_cn.json, identical but
    # for `arn:aws:`, `arn:aws-us-gov:` and `arn:aws-cn:` (an ARN of another partition matches
    # nothing: docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html).
    result = run_variant(tmp_path, "prod", {"aws_region": "us-gov-west-1"})
    policy = next(
        json.loads(r.inputs["policy"])
        for r in of_type(result, "aws:iam/rolePolicy:RolePolicy")
        if r.name == "lsdp-prod-addons-lbc"
    )
    arns = _resource_arns(policy)
    assert arns
    assert all(a.startswith("arn:aws-us-gov:") for a in arns), arns
    commercial = _resource_arns(json.loads(load_balancer_controller_policy()))
    assert all(a.startswith("arn:aws:") for a in commercial)


def test_vpc_cni_enforces_network_policies_unless_turned_off(tmp_path) -> None:
    cni = next(
        r
        for r in of_type(cached_run("dev", True), "aws:eks/addon:Addon")
        if r.inputs["addonName"] == "vpc-cni"
    )
    assert json.loads(cni.inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}
    off = run_variant(tmp_path, "dev", {"addons": {"vpc_cni_network_policy": False}}, preview=True)
    cni = next(r for r in of_type(off, "aws:eks/addon:Addon") if r.inputs["addonName"] == "vpc-cni")
    assert "configurationValues" not in cni.inputs


def test_pins_refuse_a_cluster_version_they_are_not_tested_on() -> None:
    assert unsupported(KEDA, "1.35") is None
    assert "1.33 to 1.35" in (unsupported(KEDA, "1.32") or "")
    assert "pinned only for" in (unsupported(CLUSTER_AUTOSCALER, "1.31") or "")
    assert unsupported(METRICS_SERVER, "1.40") is None  # no published matrix: never refused


def test_the_firewall_and_the_s3_endpoint_let_nodes_pull_the_add_ons(tmp_path) -> None:
    # Pins move in code, so what they pull from is added by the program (components.addon_egress);
    # without it, image pulls behind the firewall or the S3 endpoint's policy time out.
    result = cached_run("prod", True)
    firewall = set(result.outputs["egressAllowlist"]["firewallDomains"])
    assert {
        "registry.k8s.io",
        "public.ecr.aws",
        "ghcr.io",
        "pkg-containers.githubusercontent.com",
    } <= firewall
    endpoint = next(r for r in of_type(result, "aws:ec2/vpcEndpoint:VpcEndpoint") if r.name.endswith("-s3"))
    statements = json.loads(endpoint.inputs["policy"])["Statement"]
    buckets = {
        res
        for s in statements
        for res in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    }
    assert "arn:aws:s3:::prod-registry-k8s-io-us-east-2/*" in buckets
    # Without the add-ons that pull from registry.k8s.io, neither is added.
    lean = run_variant(
        tmp_path, "prod", {"addons": {"metrics_server": False, "cluster_autoscaler": False}}, preview=True
    )
    assert "registry.k8s.io" not in lean.outputs["egressAllowlist"]["firewallDomains"]
    endpoint = next(r for r in of_type(lean, "aws:ec2/vpcEndpoint:VpcEndpoint") if r.name.endswith("-s3"))
    assert "prod-registry-k8s-io" not in endpoint.inputs["policy"]


# --- existing clusters ----------------------------------------------------------------------------------


def test_an_existing_cluster_is_reached_through_its_kubeconfig_secret() -> None:
    result = cached_run("example-existing-cluster", True)
    (provider,) = of_type(result, "pulumi:providers:kubernetes")
    assert is_secret(provider.inputs["kubeconfig"]) or provider.inputs["kubeconfig"] == "<secret>"
    assert provider.inputs["clusterIdentifier"] == "lsdp-existing"
    assert result.stubbed_secrets == ["api_key", "kubeconfig", "postgres_admin_uri", "redis_admin_uri"]
    policy = by_name(
        cached_run("example-existing-cluster", False),
        "NetworkPolicy",
        "listener-onprem",
        "allow-listener-egress",
    )
    ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]]
    assert 6443 in ports  # the API server's port behind the `kubernetes` Service


def test_an_existing_eks_cluster_is_looked_up_by_name(tmp_path) -> None:
    result = run_variant(
        tmp_path,
        "example-existing-cluster",
        {"cluster": {"mode": "existing", "kubernetes_version": "1.33", "eks_cluster_name": "platform-prod"}},
    )
    (provider,) = of_type(result, "pulumi:providers:kubernetes")
    assert provider.inputs["clusterIdentifier"] == "arn:aws:eks:us-east-1:123456789012:cluster/platform-prod"
    assert "kubeconfig" not in result.stubbed_secrets
    assert len(of_type(result, "pulumi:providers:aws")) == 1
    assert result.outputs["clusterName"] == "platform-prod"


# --- destroy ------------------------------------------------------------------------------------------------


GUARD = "pulumi-python:dynamic/langsmith:ListenerInUseGuard"


@pytest.mark.parametrize("stack", ["example-shared-namespace", "example-existing-cluster"])
def test_a_destroy_stops_at_the_guard_before_anything_agent_servers_need_goes(stack: str) -> None:
    # Pulumi deletes dependents before their dependencies, and runs the deletes that wait on nothing
    # in parallel first (pulumi/pulumi pkg/resource/deploy: reverse topological order, antichains).
    # The listener's Deployment depends on the registration (its id), so the registration alone is
    # asked too late; and the agent namespaces' NetworkPolicies and the add-ons have no dependents,
    # so without the guard a refused destroy would already have removed them. The guard depends on
    # every Kubernetes object of the layer: it is deleted, and refuses, before any of them.
    result = cached_run(stack, True)
    guards = of_type(result, GUARD)
    assert len(guards) == len(result.outputs["listeners"])
    guarded = set().union(*(g.dependencies for g in guards))
    registrations = {r.urn for r in of_type(result, REGISTRATION)}
    must_wait = [
        r
        for r in result.resources
        if r.custom
        and r.type.startswith("kubernetes:")
        and r.type != "kubernetes:storage.k8s.io/v1:StorageClass"
    ]
    assert must_wait
    assert [r.name for r in must_wait if r.urn not in guarded] == []
    assert registrations <= guarded
    # Nothing depends on a guard, so a destroy reaches it first.
    assert not [r.name for r in result.resources if set(r.dependencies) & {g.urn for g in guards}]
    for guard in guards:
        assert "api_key" not in guard.inputs  # no secret in its state


def test_the_registration_depends_on_its_agent_namespaces() -> None:
    result = cached_run("example-shared-namespace", True)
    (namespace,) = [
        r for r in of_type(result, "kubernetes:core/v1:Namespace") if r.name.endswith("-agents-agents")
    ]
    for registration in of_type(result, REGISTRATION):
        assert namespace.urn in registration.dependencies


def test_prod_agent_namespaces_are_protected() -> None:
    def protected(stack: str) -> set[bool]:
        namespaces = of_type(cached_run(stack, True), "kubernetes:core/v1:Namespace")
        return {r.protect for r in namespaces if "-agents-" in r.name}

    assert protected("prod") == {True}
    assert protected("staging") == {False}


def test_a_listener_reading_the_rds_master_secret_may_read_exactly_that_secret() -> None:
    """Managed stores in `secrets-manager` mode: the listener's IRSA role allows one action on one ARN,
    its ServiceAccount names the role, its settings name the secret, and its pod waits for the policy.

    AWS's rule: GetSecretValue on the secret's ARN is what reading a secret takes, plus kms:Decrypt only
    with a customer managed key (https://docs.aws.amazon.com/secretsmanager/latest/userguide/
    auth-and-access_examples.html); RDS's secret is encrypted with `aws/secretsmanager` unless
    master_user_secret_kms_key_id names one (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/
    rds-secrets-manager.html), and this program names none."""
    result = cached_run("prod", False)
    secret_arn = result.outputs["postgresMasterSecretArn"]
    assert secret_arn.startswith("arn:aws:secretsmanager:us-east-2:")
    (listener,) = result.outputs["listeners"]
    namespace = listener["listenerNamespace"]
    roles = {r.name: r for r in of_type(result, "aws:iam/role:Role")}
    role = roles["lsdp-prod-listener-prod-irsa"]
    trust = json.loads(role.inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert f"system:serviceaccount:{namespace}:listener" in statement["Condition"]["StringEquals"].values()
    (policy,) = [r for r in of_type(result, "aws:iam/rolePolicy:RolePolicy") if r.name == role.name]
    document = json.loads(policy.inputs["policy"])
    assert document["Statement"] == [
        {
            "Sid": "ReadRdsMasterSecret",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": secret_arn,
        }
    ]
    account = by_name(result, "ServiceAccount", namespace, "listener")
    (annotation,) = account["metadata"]["annotations"].items()
    assert annotation[0] == "eks.amazonaws.com/role-arn"
    assert annotation[1].startswith("arn:aws:iam:")
    assert annotation[1].endswith(f":{role.name}"), "the fake cloud's ARN of that role"

    env = env_of(by_name(result, "Deployment", namespace, "listener"))
    assert env["LISTENER_POSTGRES_ADMIN_PASSWORD_SECRET_ARN"] == secret_arn
    assert env["AWS_REGION"] == "us-east-2"
    assert env["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"
    (deployment,) = [
        r
        for r in of_type(result, DEPLOYMENT)
        if r.inputs["metadata"]["namespace"] == namespace and r.inputs["metadata"]["name"] == "listener"
    ]
    assert policy.urn in deployment.dependencies, "the pod must not start before it may read the secret"
    # The listener's NetworkPolicy lets it reach HTTPS (STS, Secrets Manager or their endpoints); which
    # names it may reach is the firewall's allowlist (tests/test_egress.py).
    (egress,) = [
        p
        for p in objects(result, "NetworkPolicy")
        if p["metadata"] == {**p["metadata"], "namespace": namespace}
        and p["metadata"]["name"] == "allow-listener-egress"
    ]
    assert {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
        "ports": [{"protocol": "TCP", "port": 443}],
    } in egress["spec"]["egress"]


def test_a_generated_master_password_needs_no_role_and_no_secret_setting(tmp_path) -> None:
    result = run_variant(
        tmp_path, "prod", {"stores": {"mode": "managed", "postgres": {"master_password": "generated"}}}
    )
    assert not [r for r in of_type(result, "aws:iam/role:Role") if "-listener-" in r.name]
    (listener,) = result.outputs["listeners"]
    env = env_of(by_name(result, "Deployment", listener["listenerNamespace"], "listener"))
    assert "LISTENER_POSTGRES_ADMIN_PASSWORD_SECRET_ARN" not in env
    assert "AWS_REGION" not in env
    account = by_name(result, "ServiceAccount", listener["listenerNamespace"], "listener")
    assert "annotations" not in account["metadata"]
