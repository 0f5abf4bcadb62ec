"""render(): every object valid and owned, waves ordered, defaults as documented, secrets kept secret."""

from __future__ import annotations

import base64
import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from listener import naming
from listener.managed import ENV_KEYS
from listener.render import RenderError, Wave, flatten, render, to_yaml
from listener.render.context import COMPONENT_MANAGED_STORES, MANAGED_CA_DIR, MANAGED_CA_KEY
from listener.render.scaling import PENDING_RUNS_QUERY
from listener.render.secrets import MANAGED_STORE_VARS
from listener.spec import (
    AgentServerSpec,
    ExternalStores,
    ManagedStoresSecret,
    RenderOptions,
    ResourceSpec,
    SecretReference,
    SecretValue,
)

DEPLOYMENT_ID = "2c4fbdbd-ed08-537d-b9a8-53eb4f63f9e5"
LISTENER_ID = "9a6c7d51-0f3e-4a55-8c1e-1f2d3c4b5a69"
REVISION_ID = "5f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f"
USER_SECRET = "sk-user-secret-value-0123456789"
PLATFORM_SECRET = "lsv2_platform_secret_value_9876"
PG_PASSWORD = "pg/pass@word:with&specials"
REDIS_PASSWORD = "redis:pass/word"


def make_spec(**overrides: Any) -> AgentServerSpec:
    base: dict[str, Any] = {
        "deployment_id": DEPLOYMENT_ID,
        "deployment_name": "support-agent",
        "revision_id": REVISION_ID,
        "tenant_id": "tenant-1",
        "listener_id": LISTENER_ID,
        "namespace": "agents",
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/agents/support:1.2.3",
        "secrets": (("OPENAI_API_KEY", SecretValue(USER_SECRET)),),
        "secret_references": (SecretReference("DB_TOKEN", "team-secrets", "token"),),
        "platform_env": (("LANGSMITH_HOST_REVISION_ID", REVISION_ID), ("LANGSMITH_PROJECT", "support-agent")),
        "platform_secrets": (("LANGSMITH_API_KEY", SecretValue(PLATFORM_SECRET)),),
        "postgres_password": SecretValue(PG_PASSWORD),
        "redis_password": SecretValue(REDIS_PASSWORD),
    }
    base.update(overrides)
    return AgentServerSpec(**base)


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        o
        for o in by_kind(objs, kind)
        if component is None or o["metadata"]["labels"][naming.LABEL_COMPONENT] == component
    ]
    assert len(found) == 1, f"{len(found)} {kind}/{component}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def env_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(deployment).get("env", [])}


OPTION_CASES: dict[str, RenderOptions] = {
    "defaults": RenderOptions(),
    "httproute+keda": RenderOptions(
        routing="httproute",
        gateway_name="shared",
        gateway_namespace="gw",
        hostname="agents.example.com",
        autoscaler="keda",
    ),
    "ingress+hpa": RenderOptions(routing="ingress", hostname="agents.example.com", ingress_class_name="alb"),
    "no-queue": RenderOptions(queue_enabled=False, routing="httproute", gateway_name="shared"),
    "storage-class": RenderOptions(storage_class_name="gp3", run_as_non_root=False),
}
RESOURCE_CASES: dict[str, ResourceSpec] = {
    "empty": ResourceSpec(),
    "autoscaled": ResourceSpec(min_scale=2, max_scale=5, queue_min_scale=1, queue_max_scale=10),
    "everything": ResourceSpec(
        min_scale=3,
        cpu=0.5,
        memory_mb=512,
        queue_cpu=2,
        db_storage_gi=50,
        db_max_connections=300,
        labels=(("team", "support"), (naming.LABEL_MANAGED_BY, "someone-else")),
        annotations=(("example.com/owner", "support"),),
        service_account_name="agent-sa",
        image_pull_secrets=("ecr-pull",),
        volumes=({"name": "config", "configMap": {"name": "agent-config"}},),
        volume_mounts=({"name": "config", "mountPath": "/etc/agent", "readOnly": True},),
        init_containers=({"name": "migrate", "image": "busybox:1.37", "command": ["true"]},),
        sidecars=({"name": "proxy", "image": "envoyproxy/envoy:v1.31.0"},),
    ),
}


@pytest.fixture(params=list(OPTION_CASES), ids=list(OPTION_CASES))
def options(request: pytest.FixtureRequest) -> RenderOptions:
    return OPTION_CASES[request.param]


@pytest.fixture(params=list(RESOURCE_CASES), ids=list(RESOURCE_CASES))
def rendered(request: pytest.FixtureRequest, options: RenderOptions) -> tuple[AgentServerSpec, list[Wave]]:
    spec = make_spec(resources=RESOURCE_CASES[request.param])
    return spec, render(spec, options)


def test_every_object_validates_strictly(
    rendered: tuple[AgentServerSpec, list[Wave]], validate: Callable[[dict[str, Any]], list[str]]
) -> None:
    _, waves = rendered
    errors = {f"{o['kind']}/{o['metadata']['name']}": validate(o) for o in flatten(waves)}
    assert {k: v for k, v in errors.items() if v} == {}


def test_every_object_is_owned_namespaced_and_hashed(rendered: tuple[AgentServerSpec, list[Wave]]) -> None:
    spec, waves = rendered
    for obj in flatten(waves):
        meta = obj["metadata"]
        assert meta["namespace"] == spec.namespace
        assert naming.is_ours(obj, LISTENER_ID)
        assert meta["labels"][naming.LABEL_DEPLOYMENT_ID] == DEPLOYMENT_ID
        assert meta["labels"][naming.LABEL_REVISION_ID] == REVISION_ID
        assert meta["annotations"][naming.ANNOTATION_SPEC_HASH] == naming.spec_hash(obj)
        for key, value in spec.resources.annotations:
            assert meta["annotations"][key] == value
        for key, value in spec.resources.labels:
            if key not in naming.OWNERSHIP_LABELS:
                assert meta["labels"][key] == value


def test_selectors_never_contain_the_revision(rendered: tuple[AgentServerSpec, list[Wave]]) -> None:
    _, waves = rendered
    for obj in flatten(waves):
        spec = obj.get("spec") or {}
        selectors = [spec.get("selector")] if obj["kind"] == "Service" else []
        selectors.append(
            (spec.get("selector") or {}).get("matchLabels") if obj["kind"] != "Service" else None
        )
        for tsc in (spec.get("template") or {}).get("spec", {}).get("topologySpreadConstraints", []):
            selectors.append(tsc["labelSelector"]["matchLabels"])
        for sel in filter(None, selectors):
            assert naming.LABEL_REVISION_ID not in sel
            assert REVISION_ID not in sel.values()


def test_waves_are_ordered_and_complete(rendered: tuple[AgentServerSpec, list[Wave]]) -> None:
    _, waves = rendered
    kinds = [sorted({o["kind"] for o in w.objects}) for w in waves]
    assert [w.index for w in waves] == [0, 1, 2, 3]
    assert kinds[0] == ["Secret"]
    assert kinds[1] == ["Deployment", "NetworkPolicy", "Service", "StatefulSet"]
    assert kinds[2] == ["Deployment", "Service"]
    assert "PodDisruptionBudget" in kinds[3]
    names = [(o["kind"], o["metadata"]["name"]) for o in flatten(waves)]
    assert len(names) == len(set(names))


def test_rendering_is_deterministic(
    rendered: tuple[AgentServerSpec, list[Wave]], options: RenderOptions
) -> None:
    spec, waves = rendered
    again = render(spec, options)
    assert again == waves
    assert to_yaml(flatten(again)) == to_yaml(flatten(waves))


def test_api_server_deployment_shape() -> None:
    objs = flatten(render(make_spec(), RenderOptions()))
    api = one(objs, "Deployment", "api-server")
    c = container(api)
    pod = api["spec"]["template"]["spec"]
    assert c["image"] == make_spec().image
    assert c["ports"] == [{"containerPort": 8000, "name": "api-server", "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/ok", "port": "api-server"}
    env_secret = one(objs, "Secret", "config")["metadata"]["name"]
    assert env_secret.startswith(api["metadata"]["name"].removesuffix("-api") + "-env-")
    assert c["envFrom"] == [{"secretRef": {"name": env_secret}}]
    assert env_of(api)["PORT"]["value"] == "8000"
    assert api["spec"]["progressDeadlineSeconds"] == 600
    assert api["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert api["spec"]["revisionHistoryLimit"] == 10
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    assert any(v["name"] == tmp["name"] and "emptyDir" in v for v in pod["volumes"])
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert api["spec"]["template"]["metadata"]["labels"][naming.LABEL_REVISION_ID] == REVISION_ID
    assert naming.ANNOTATION_CONFIG_HASH in api["spec"]["template"]["metadata"]["annotations"]


def test_resource_spec_pass_through() -> None:
    rs = RESOURCE_CASES["everything"]
    objs = flatten(render(make_spec(resources=rs), RenderOptions()))
    for component in ("api-server", "queue"):
        dep = one(objs, "Deployment", component)
        pod = dep["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "agent-sa"
        assert pod["automountServiceAccountToken"] is True
        assert pod["imagePullSecrets"] == [{"name": "ecr-pull"}]
        assert [c["name"] for c in pod["containers"]][1:] == ["proxy"]
        assert [c["name"] for c in pod["initContainers"]] == ["migrate"]
        assert {"name": "config", "configMap": {"name": "agent-config"}} in pod["volumes"]
        assert {"name": "config", "mountPath": "/etc/agent", "readOnly": True} in container(dep)[
            "volumeMounts"
        ]
        assert dep["spec"]["template"]["metadata"]["annotations"]["example.com/owner"] == "support"
        assert dep["spec"]["template"]["metadata"]["labels"]["team"] == "support"
        # A user label can't take over ownership.
        assert dep["metadata"]["labels"][naming.LABEL_MANAGED_BY] == naming.MANAGED_BY


@pytest.mark.parametrize(
    ("rs", "api", "queue"),
    [
        (
            ResourceSpec(),
            {"requests": {"cpu": "1", "memory": "1024Mi"}, "limits": {"cpu": "2", "memory": "2048Mi"}},
            {"requests": {"cpu": "1", "memory": "1024Mi"}, "limits": {"cpu": "2", "memory": "2048Mi"}},
        ),
        (
            ResourceSpec(cpu=0.5, memory_mb=700),
            {"requests": {"cpu": "500m", "memory": "700Mi"}, "limits": {"cpu": "1", "memory": "1400Mi"}},
            {"requests": {"cpu": "500m", "memory": "700Mi"}, "limits": {"cpu": "1", "memory": "1400Mi"}},
        ),
        (
            ResourceSpec(
                cpu=1.5, cpu_limit=4, memory_mb=1000, memory_limit_mb=1200, queue_cpu=0.3, queue_memory_mb=300
            ),
            {"requests": {"cpu": "1500m", "memory": "1000Mi"}, "limits": {"cpu": "4", "memory": "1200Mi"}},
            {"requests": {"cpu": "300m", "memory": "300Mi"}, "limits": {"cpu": "600m", "memory": "600Mi"}},
        ),
        (
            ResourceSpec(cpu=2, cpu_limit=3, queue_cpu_limit=8, queue_memory_limit_mb=9000),
            {"requests": {"cpu": "2", "memory": "1024Mi"}, "limits": {"cpu": "3", "memory": "2048Mi"}},
            {"requests": {"cpu": "2", "memory": "1024Mi"}, "limits": {"cpu": "8", "memory": "9000Mi"}},
        ),
    ],
    ids=["defaults", "limits-2x", "explicit-and-queue-own", "queue-inherits-api"],
)
def test_documented_resource_defaults(rs: ResourceSpec, api: dict[str, Any], queue: dict[str, Any]) -> None:
    objs = flatten(render(make_spec(resources=rs), RenderOptions()))
    assert container(one(objs, "Deployment", "api-server"))["resources"] == api
    assert container(one(objs, "Deployment", "queue"))["resources"] == queue


@pytest.mark.parametrize(
    ("rs", "expected"),
    [
        (
            ResourceSpec(),
            {"requests": {"cpu": "1", "memory": "2048Mi"}, "limits": {"cpu": "2", "memory": "2048Mi"}},
        ),
        (
            ResourceSpec(redis_cpu=0.2, redis_memory_mb=256),
            {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": "400m", "memory": "256Mi"}},
        ),
    ],
)
def test_redis_memory_limit_defaults_to_request(rs: ResourceSpec, expected: dict[str, Any]) -> None:
    objs = flatten(render(make_spec(resources=rs), RenderOptions()))
    assert container(one(objs, "Deployment", "redis"))["resources"] == expected


def test_postgres_statefulset() -> None:
    rs = ResourceSpec(db_cpu=2, db_memory_mb=4096, db_storage_gi=50, db_max_connections=300)
    objs = flatten(render(make_spec(resources=rs), RenderOptions(storage_class_name="gp3")))
    sts = one(objs, "StatefulSet")
    c = container(sts)
    assert c["resources"] == {
        "requests": {"cpu": "2", "memory": "4096Mi"},
        "limits": {"cpu": "4", "memory": "8192Mi"},
    }
    assert "max_connections=300" in c["args"]
    pvc = sts["spec"]["volumeClaimTemplates"][0]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert pvc["spec"]["storageClassName"] == "gp3"
    assert naming.LABEL_REVISION_ID not in pvc["metadata"]["labels"]
    assert naming.LABEL_REVISION_ID not in sts["spec"]["template"]["metadata"]["labels"]
    assert (
        env_of(sts)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        == one(objs, "Secret", "postgres")["metadata"]["name"]
    )
    assert sts["spec"]["serviceName"] == one(objs, "Service", "postgres")["metadata"]["name"]
    assert one(objs, "Service", "postgres")["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize(
    ("queue_enabled", "jobs", "api_jobs", "queue_jobs"),
    [(True, 10, "0", "10"), (True, 4, "0", "4"), (False, 10, "10", None), (False, 3, "3", None)],
)
def test_n_jobs_per_worker(queue_enabled: bool, jobs: int, api_jobs: str, queue_jobs: str | None) -> None:
    objs = flatten(render(make_spec(), RenderOptions(queue_enabled=queue_enabled, jobs_per_worker=jobs)))
    assert env_of(one(objs, "Deployment", "api-server"))["N_JOBS_PER_WORKER"]["value"] == api_jobs
    queues = [
        o for o in by_kind(objs, "Deployment") if o["metadata"]["labels"][naming.LABEL_COMPONENT] == "queue"
    ]
    if queue_jobs is None:
        assert queues == []
    else:
        assert env_of(queues[0])["N_JOBS_PER_WORKER"]["value"] == queue_jobs


def test_queue_runs_the_same_image_with_the_queue_command() -> None:
    cmd = ("python", "-m", "langgraph_api.queue_entrypoint")
    objs = flatten(render(make_spec(), RenderOptions(queue_command=cmd)))
    queue = container(one(objs, "Deployment", "queue"))
    assert queue["image"] == make_spec().image
    assert queue["command"] == list(cmd)
    assert "command" not in container(one(objs, "Deployment", "api-server"))


@pytest.mark.parametrize(
    ("rs", "autoscaler", "api_replicas", "queue_replicas", "scalers"),
    [
        (ResourceSpec(), "hpa", 1, 1, []),
        (ResourceSpec(min_scale=3, max_scale=3), "hpa", 3, 3, []),
        (ResourceSpec(min_scale=0), "hpa", 1, 1, []),
        (ResourceSpec(min_scale=2, max_scale=4), "hpa", None, None, ["HorizontalPodAutoscaler"] * 2),
        (
            ResourceSpec(min_scale=2, max_scale=2, queue_max_scale=6),
            "hpa",
            2,
            None,
            ["HorizontalPodAutoscaler"],
        ),
        (ResourceSpec(), "keda", None, None, ["ScaledObject"] * 2),
    ],
    ids=["fixed-1", "fixed-3", "zero-means-1", "hpa-both", "hpa-queue-only", "keda"],
)
def test_autoscaled_workloads_have_no_replicas(
    rs: ResourceSpec,
    autoscaler: Any,
    api_replicas: int | None,
    queue_replicas: int | None,
    scalers: list[str],
) -> None:
    objs = flatten(render(make_spec(resources=rs), RenderOptions(autoscaler=autoscaler)))
    api = one(objs, "Deployment", "api-server")
    queue = one(objs, "Deployment", "queue")
    assert api["spec"].get("replicas") == api_replicas
    assert queue["spec"].get("replicas") == queue_replicas
    found = [o for o in objs if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
    assert [o["kind"] for o in found] == scalers
    autoscaled = {o["metadata"]["name"] for o in (api, queue) if "replicas" not in o["spec"]}
    assert {o["spec"]["scaleTargetRef"]["name"] for o in found} == autoscaled


def test_hpa_and_keda_details() -> None:
    rs = ResourceSpec(min_scale=2, max_scale=5)
    hpa = one(
        flatten(render(make_spec(resources=rs), RenderOptions())), "HorizontalPodAutoscaler", "api-server"
    )
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    so = one(
        flatten(render(make_spec(resources=rs), RenderOptions(autoscaler="keda", jobs_per_worker=7))),
        "ScaledObject",
        "queue",
    )
    trigger = so["spec"]["triggers"][0]
    assert trigger["type"] == "postgresql"
    assert trigger["metadata"] == {
        "connectionFromEnv": "POSTGRES_URI",
        "query": PENDING_RUNS_QUERY,
        "targetQueryValue": "7",
    }
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (2, 5)


def test_pdbs_select_their_workloads() -> None:
    objs = flatten(render(make_spec(), RenderOptions()))
    for component in ("api-server", "queue"):
        pdb = one(objs, "PodDisruptionBudget", component)
        dep = one(objs, "Deployment", component)
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"] == dep["spec"]["selector"]


def test_secret_references_become_secret_key_refs() -> None:
    refs = (
        SecretReference("DB_TOKEN", "team-secrets", "token"),
        SecretReference("PORT", "evil", "port"),  # ours wins: never two PORT entries
        SecretReference("A_FIRST", "other", "k"),
    )
    objs = flatten(render(make_spec(secret_references=refs), RenderOptions()))
    for component in ("api-server", "queue"):
        env = env_of(one(objs, "Deployment", component))
        assert env["DB_TOKEN"] == {
            "name": "DB_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "team-secrets", "key": "token"}},
        }
        assert env["A_FIRST"]["valueFrom"]["secretKeyRef"] == {"name": "other", "key": "k"}
        assert env["PORT"] == {"name": "PORT", "value": "8000"}


def test_env_secret_contents_in_cluster() -> None:
    objs = flatten(
        render(
            make_spec(
                secrets=(
                    ("OPENAI_API_KEY", SecretValue(USER_SECRET)),
                    ("POSTGRES_URI", SecretValue("postgres://elsewhere")),
                )
            ),
            RenderOptions(),
        )
    )
    secret = one(objs, "Secret", "config")
    data = decoded(secret)
    assert secret["immutable"] is True
    assert "stringData" not in secret, "data, so a key removed in the control plane is gone"
    assert data["OPENAI_API_KEY"] == USER_SECRET
    assert data["LANGSMITH_API_KEY"] == PLATFORM_SECRET
    assert data["LANGSMITH_PROJECT"] == "support-agent"
    pg_service = one(objs, "Service", "postgres")["metadata"]["name"]
    redis_service = one(objs, "Service", "redis")["metadata"]["name"]
    assert data["POSTGRES_URI"] == (
        f"postgres://postgres:pg%2Fpass%40word%3Awith%26specials@{pg_service}.agents.svc.cluster.local:5432/postgres?sslmode=disable"
    )
    assert data["REDIS_URI"] == f"redis://:redis%3Apass%2Fword@{redis_service}.agents.svc.cluster.local:6379"
    for component, key, value in (
        ("postgres", "POSTGRES_PASSWORD", PG_PASSWORD),
        ("redis", "REDIS_PASSWORD", REDIS_PASSWORD),
    ):
        credentials = one(objs, "Secret", component)
        assert decoded(credentials) == {key: value}
        assert credentials["metadata"]["annotations"][naming.ANNOTATION_CREATE_ONLY] == "true"
    assert secret["type"] == "Opaque"


def test_external_stores() -> None:
    ext = ExternalStores(secret_name="rds-uris", postgres_uri_key="pg", redis_uri_key="redis")
    waves = render(
        make_spec(external_stores=ext, postgres_password=None, redis_password=None),
        RenderOptions(store_mode="external"),
    )
    objs = flatten(waves)
    assert waves[1].objects == ()
    assert [o["metadata"]["labels"][naming.LABEL_COMPONENT] for o in by_kind(objs, "Secret")] == ["config"]
    assert "POSTGRES_URI" not in decoded(one(objs, "Secret"))
    env = env_of(one(objs, "Deployment", "api-server"))
    assert env["POSTGRES_URI"]["valueFrom"]["secretKeyRef"] == {"name": "rds-uris", "key": "pg"}
    assert env["REDIS_URI"]["valueFrom"]["secretKeyRef"] == {"name": "rds-uris", "key": "redis"}


def managed_spec(*, ca: bool) -> AgentServerSpec:
    names = naming.ObjectNames.of("support-agent", DEPLOYMENT_ID)
    data = {
        "POSTGRES_URI_CUSTOM": "postgresql://lsdp_x_a:pw@db:5432/lsdp_x?sslmode=verify-full",
        "REDIS_URI_CUSTOM": "rediss://:token@cache:6379/0",
        "REDIS_KEY_PREFIX": "lsdp:x:",
        "postgres-role": "lsdp_x_a",
        "password": "pw",
        **({MANAGED_CA_KEY: "-----BEGIN CERTIFICATE-----\n"} if ca else {}),
    }
    return make_spec(
        postgres_password=None,
        redis_password=None,
        # A user secret must not point the server at another database.
        secrets=(("POSTGRES_URI_CUSTOM", SecretValue("postgresql://elsewhere")),),
        managed_stores=ManagedStoresSecret(
            names.store_secret, tuple((k, SecretValue(v)) for k, v in sorted(data.items()))
        ),
    )


@pytest.mark.parametrize("ca", [True, False])
def test_managed_stores_pods_read_the_credentials_secret(
    ca: bool, validate: Callable[[dict[str, Any]], list[str]]
) -> None:
    spec = managed_spec(ca=ca)
    waves = render(spec, RenderOptions(store_mode="managed"))
    objs = flatten(waves)
    assert {f"{o['kind']}/{o['metadata']['name']}": validate(o) for o in objs if validate(o)} == {}
    assert waves[1].objects == (), "no store workloads"
    store = one(objs, "Secret", COMPONENT_MANAGED_STORES)
    assert store["metadata"]["name"] == spec.managed_stores.secret_name
    assert store["metadata"]["annotations"][naming.ANNOTATION_CREATE_ONLY] == "true"
    assert naming.LABEL_REVISION_ID not in store["metadata"]["labels"], "it outlives revisions"
    assert decoded(store)["REDIS_KEY_PREFIX"] == "lsdp:x:"
    env_secret = decoded(one(objs, "Secret", "config"))
    assert not {"POSTGRES_URI_CUSTOM", "REDIS_URI_CUSTOM", "REDIS_KEY_PREFIX", "POSTGRES_URI"} & set(
        env_secret
    )
    for component in ("api-server", "queue"):
        deployment = one(objs, "Deployment", component)
        env = env_of(deployment)
        for var in MANAGED_STORE_VARS:
            assert env[var]["valueFrom"]["secretKeyRef"] == {"name": store["metadata"]["name"], "key": var}
        pod = deployment["spec"]["template"]["spec"]
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        secret_volumes = [v for v in pod["volumes"] if "secret" in v]
        if ca:
            assert MANAGED_CA_DIR in mounts
            assert secret_volumes[0]["secret"]["items"] == [{"key": MANAGED_CA_KEY, "path": MANAGED_CA_KEY}]
        else:
            assert MANAGED_CA_DIR not in mounts
            assert secret_volumes == []
    assert MANAGED_STORE_VARS == ENV_KEYS
    with pytest.raises(RenderError, match="uses managed stores but has no credentials"):
        render(make_spec(), RenderOptions(store_mode="managed"))


def test_missing_inputs_raise_clear_errors() -> None:
    with pytest.raises(RenderError, match="postgres_password"):
        render(make_spec(postgres_password=None), RenderOptions())
    with pytest.raises(RenderError, match="external_stores"):
        render(make_spec(), RenderOptions(store_mode="external"))
    with pytest.raises(RenderError, match="gateway_name"):
        render(make_spec(), RenderOptions(routing="httproute"))


def test_routing() -> None:
    spec = make_spec(deployment_name="Support Agent")
    route = one(
        flatten(
            render(
                spec,
                RenderOptions(
                    routing="httproute",
                    gateway_name="gw",
                    gateway_namespace="infra",
                    hostname="a.example.com",
                ),
            )
        ),
        "HTTPRoute",
    )
    api_service = one(flatten(render(spec, RenderOptions())), "Service", "api-server")["metadata"]["name"]
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "infra"}
    ]
    rule = route["spec"]["rules"][0]
    # The path carries the id hash: "Support Agent" and "support-agent" never share one.
    path = "/" + naming.base_name("Support Agent", DEPLOYMENT_ID)
    assert path.startswith("/support-agent-")
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": path}}]
    assert rule["backendRefs"] == [{"name": api_service, "port": 8000}]
    assert rule["filters"][0]["urlRewrite"]["path"] == {
        "type": "ReplacePrefixMatch",
        "replacePrefixMatch": "/",
    }
    ing = one(
        flatten(
            render(spec, RenderOptions(routing="ingress", ingress_class_name="alb", hostname="a.example.com"))
        ),
        "Ingress",
    )
    assert ing["spec"]["ingressClassName"] == "alb"
    assert ing["spec"]["rules"][0]["host"] == "a.example.com"
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["path"] == path
    none = flatten(render(spec, RenderOptions(routing="none")))
    assert not by_kind(none, "HTTPRoute")
    assert not by_kind(none, "Ingress")


def _changed(a: list[Wave], b: list[Wave]) -> set[tuple[str, str]]:
    old = {(o["kind"], o["metadata"]["name"]): o for o in flatten(a)}
    new = {(o["kind"], o["metadata"]["name"]): o for o in flatten(b)}
    assert old.keys() == new.keys()

    def strip(o: dict[str, Any]) -> dict[str, Any]:
        labels = {k: v for k, v in o["metadata"]["labels"].items() if k != naming.LABEL_REVISION_ID}
        return {**o, "metadata": {**o["metadata"], "labels": labels, "annotations": {}}}

    return {k for k in old if strip(old[k]) != strip(new[k])}


def test_new_image_revision_changes_only_the_servers() -> None:
    before = render(make_spec(), RenderOptions())
    after = render(make_spec(revision_id="rev-2", image="repo/agent:2"), RenderOptions())
    changed = _changed(before, after)
    assert {kind for kind, _ in changed} == {"Deployment"}
    assert all(name.endswith(("-api", "-queue")) for _, name in changed)
    # ... and the store pods are not restarted by the revision label.
    old_pg = one(flatten(before), "StatefulSet")["spec"]["template"]
    assert old_pg == one(flatten(after), "StatefulSet")["spec"]["template"]
    assert (
        one(flatten(before), "StatefulSet")["metadata"]["annotations"][naming.ANNOTATION_SPEC_HASH]
        != one(flatten(after), "StatefulSet")["metadata"]["annotations"][naming.ANNOTATION_SPEC_HASH]
    )


def test_secret_change_rolls_the_servers_via_config_hash() -> None:
    before = render(make_spec(), RenderOptions())
    after = render(make_spec(secrets=(("OPENAI_API_KEY", SecretValue("rotated")),)), RenderOptions())
    old = one(flatten(before), "Secret", "config")["metadata"]["name"]
    new = one(flatten(after), "Secret", "config")["metadata"]["name"]
    assert old != new, "a new env Secret per distinct environment: the running pods' one never changes"
    for component in ("api-server", "queue"):
        assert one(flatten(after), "Deployment", component)["spec"]["template"]["spec"]["containers"][0][
            "envFrom"
        ] == [{"secretRef": {"name": new}}]
    for component in ("api-server", "queue"):
        a = one(flatten(before), "Deployment", component)["spec"]["template"]["metadata"]["annotations"]
        b = one(flatten(after), "Deployment", component)["spec"]["template"]["metadata"]["annotations"]
        assert a[naming.ANNOTATION_CONFIG_HASH] != b[naming.ANNOTATION_CONFIG_HASH]


def test_two_deployments_in_one_namespace_are_disjoint() -> None:
    a = render(make_spec(), RenderOptions(routing="httproute", gateway_name="gw"))
    b = render(
        make_spec(deployment_id="8d1f0c4e-0000-4000-8000-000000000001", listener_id="other-listener"),
        RenderOptions(routing="httproute", gateway_name="gw"),
    )
    names_a = {(o["kind"], o["metadata"]["name"]) for o in flatten(a)}
    names_b = {(o["kind"], o["metadata"]["name"]) for o in flatten(b)}
    assert names_a.isdisjoint(names_b)
    assert not any(naming.is_ours(o, "other-listener") for o in flatten(a))
    assert all(naming.is_ours(o, "other-listener") for o in flatten(b))


def test_secret_values_never_leak_into_repr_or_dry_run() -> None:
    spec = make_spec()
    text = to_yaml(flatten(render(spec, RenderOptions())))
    encoded = [base64.b64encode(v.encode()).decode() for v in (USER_SECRET, PG_PASSWORD, REDIS_PASSWORD)]
    for value in (USER_SECRET, PLATFORM_SECRET, PG_PASSWORD, REDIS_PASSWORD, "pg%2Fpass", *encoded):
        assert value not in repr(spec)
        assert value not in str(spec)
        assert value not in text
    docs = list(yaml.safe_load_all(text))
    env_doc = next(d for d in docs if d["kind"] == "Secret" and "-env-" in d["metadata"]["name"])
    assert set(env_doc["data"]) >= {"OPENAI_API_KEY", "LANGSMITH_API_KEY", "POSTGRES_URI", "REDIS_URI"}
    assert set(env_doc["data"].values()) == {"<redacted>"}


def test_to_yaml_round_trips_non_secret_objects() -> None:
    objs = flatten(render(make_spec(), RenderOptions()))
    docs = list(yaml.safe_load_all(to_yaml(objs)))
    assert [d for d in docs if d["kind"] != "Secret"] == [o for o in objs if o["kind"] != "Secret"]


def test_run_as_non_root_option() -> None:
    spec = make_spec()
    for flag in (True, False):
        dep = one(
            flatten(render(spec, dataclasses.replace(RenderOptions(), run_as_non_root=flag))),
            "Deployment",
            "api-server",
        )
        assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is flag


@pytest.mark.parametrize(
    ("kind", "mutate", "needle"),
    [
        ("Deployment", lambda o: container(o).update(imagePullPolcy="Always"), "imagePullPolcy"),
        ("Deployment", lambda o: o["spec"].update(replicas="two"), "replicas"),
        (
            "Deployment",
            lambda o: o["spec"]["template"]["metadata"]["labels"].pop(naming.LABEL_INSTANCE),
            "selector",
        ),
        ("Service", lambda o: o["metadata"].update(name="Agent_A!"), "DNS label"),
        (
            "HTTPRoute",
            lambda o: o["spec"]["rules"][0]["matches"][0]["path"].update(value="no-slash"),
            "match",
        ),
        (
            "ScaledObject",
            lambda o: o["spec"]["triggers"][0]["metadata"].update(targetQueryValue=10),
            "string",
        ),
        ("Deployment", lambda o: container(o)["resources"]["requests"].update(cpu="lots"), "cpu"),
    ],
    ids=["strict-typo", "wrong-type", "selector-mismatch", "bad-name", "crd-path", "crd-type", "quantity"],
)
def test_validator_catches_broken_objects(
    kind: str,
    mutate: Callable[[dict[str, Any]], Any],
    needle: str,
    validate: Callable[[dict[str, Any]], list[str]],
) -> None:
    """The validation used above must be able to fail."""
    opts = RenderOptions(routing="httproute", gateway_name="gw", autoscaler="keda")
    obj = copy.deepcopy(
        one(flatten(render(make_spec(), opts)), kind, "routing" if kind == "HTTPRoute" else "api-server")
    )
    assert validate(obj) == []
    mutate(obj)
    errors = validate(obj)
    assert errors
    assert any(needle in e for e in errors), errors


def test_store_images_are_digest_pinned_by_default_and_overridable() -> None:
    objs = flatten(render(make_spec(), RenderOptions()))
    images = [container(o)["image"] for o in objs if o["kind"] in ("StatefulSet", "Deployment")]
    stores = [i for i in images if "pgvector" in i or "redis" in i]
    assert len(stores) == 2
    assert all("@sha256:" in image for image in stores), stores
    mirror = RenderOptions(postgres_image="mirror.example/pg:16", redis_image="mirror.example/redis:7")
    mirrored = flatten(render(make_spec(), mirror))
    assert container(one(mirrored, "StatefulSet"))["image"] == "mirror.example/pg:16"
    assert container(one(mirrored, "Deployment", "redis"))["image"] == "mirror.example/redis:7"


def test_redis_requires_a_generated_password() -> None:
    objs = flatten(render(make_spec(), RenderOptions()))
    redis = container(one(objs, "Deployment", "redis"))
    secret = one(objs, "Secret", "redis")["metadata"]["name"]
    assert redis["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"], "expanded by the kubelet from env"
    ref = {"secretKeyRef": {"name": secret, "key": "REDIS_PASSWORD"}}
    assert {e["name"]: e["valueFrom"] for e in redis["env"]} == {"REDISCLI_AUTH": ref, "REDIS_PASSWORD": ref}
    assert REDIS_PASSWORD not in yaml.safe_dump(redis)
    env = decoded(one(objs, "Secret", "config"))
    assert env["REDIS_URI"].startswith("redis://:redis%3Apass%2Fword@")
    with pytest.raises(RenderError, match="redis_password"):
        render(make_spec(redis_password=None), RenderOptions())


@pytest.mark.parametrize("autoscaler", ["hpa", "keda"])
def test_each_store_admits_only_this_deployments_servers(autoscaler: str) -> None:
    objs = flatten(render(make_spec(), RenderOptions(autoscaler=autoscaler, keda_namespace="keda-system")))
    policies = {p["metadata"]["labels"][naming.LABEL_COMPONENT]: p for p in by_kind(objs, "NetworkPolicy")}
    assert set(policies) == {"postgres", "redis"}
    api = one(objs, "Deployment", "api-server")
    queue = one(objs, "Deployment", "queue")
    for component, port in (("postgres", 5432), ("redis", 6379)):
        policy = policies[component]["spec"]
        store = one(objs, "StatefulSet" if component == "postgres" else "Deployment", component)
        assert policy["podSelector"]["matchLabels"] == store["spec"]["selector"]["matchLabels"]
        assert policy["policyTypes"] == ["Ingress"]
        (rule,) = policy["ingress"]
        assert rule["ports"] == [{"port": port, "protocol": "TCP"}]
        pods = rule["from"][0]["podSelector"]
        # The servers' pod labels satisfy the peer selector; another deployment's never do.
        for server in (api, queue):
            labels = server["spec"]["template"]["metadata"]["labels"]
            assert all(labels.get(k) == v for k, v in pods["matchLabels"].items())
            (expr,) = pods["matchExpressions"]
            assert labels[expr["key"]] in expr["values"]
        assert naming.LABEL_DEPLOYMENT_ID in pods["matchLabels"]
        keda = [p for p in rule["from"] if "namespaceSelector" in p]
        if component == "postgres" and autoscaler == "keda":
            assert keda == [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda-system"}}}
            ]
        else:
            assert keda == []
    other = flatten(render(make_spec(deployment_id="8d1f0c4e-0000-4000-8000-000000000001"), RenderOptions()))
    other_api = one(other, "Deployment", "api-server")["spec"]["template"]["metadata"]["labels"]
    peer = policies["postgres"]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert not all(other_api.get(k) == v for k, v in peer.items())
