"""One listener in the cluster: its namespace, identity, rights, settings, Deployment and registration.

Everything is rendered as plain manifests by `listener_manifests` (pure; tests and the schema check
read exactly what the API server will), then declared by the `Listener` component:

* a namespace of its own (`listener-<name>`, Pod Security `restricted`, default-deny plus the
  listener's egress);
* a ServiceAccount (optionally with an IRSA role; with managed stores in `secrets-manager` mode, a role
  of the program's that may only read the RDS master secret), one Role + RoleBinding per watched namespace
  rendered from `listener.kube.WATCHED_NAMESPACE_RULES`, and a Role in its own namespace from
  `OWN_NAMESPACE_RULES` when that table has rules. Never a ClusterRole;
* a Secret with the workspace's API key, and with managed stores one with their admin URIs;
* the listener's settings as `LISTENER_*` environment (the names agreed in the brief and
  listener/README.md), including the id the registration produced;
* a Deployment of the pinned image with `/healthz` and `/readyz` probes on `LISTENER_HEALTH_PORT`,
  requests and limits, the restricted security context, `LISTENER_REPLICAS` replicas electing a
  leader, and a PodDisruptionBudget that keeps one of them up without ever blocking a node drain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi

from components import labels as lbl
from components.config import ListenerSpec
from components.iam import irsa_role
from components.kubeobjects import declare
from components.network_policies import ListenerTraffic, listener_namespace_policies
from components.rbac import own_namespace_rules, role, role_binding, watched_namespace_rules
from components.registration import ListenerInUseGuard, ListenerRegistration, ListenerRegistrationArgs
from components.stores import RDS_CA_BUNDLE_PATH, RDS_CA_BUNDLE_URL

MASTER_SECRET_SETTING = "LISTENER_POSTGRES_ADMIN_PASSWORD_SECRET_ARN"  # noqa: S105 - a variable name
ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"

LISTENER_REPLICAS = 2
"""The one place to change the replica count. Two replicas elect a leader with a Lease in the
listener's own namespace (`listener.leader`; its rights come from `listener.kube.OWN_NAMESPACE_RULES`):
one reconciles, the other stands by and takes over within a lease (15 s). Set it to 1 to run without
leader election: the Deployment then rolls out with `Recreate`, so two listeners never overlap."""
LEADER_ELECTION = LISTENER_REPLICAS > 1

HEALTH_PORT = 8080
SERVICE_ACCOUNT = "listener"
DEPLOYMENT = "listener"
API_KEY_SECRET = "listener-api-key"  # noqa: S105 - the Secret object's name
API_KEY_FIELD = "api-key"
STORES_SECRET = "listener-stores"  # noqa: S105 - the Secret object's name
POSTGRES_ADMIN_URI = "postgres-admin-uri"
REDIS_ADMIN_URI = "redis-admin-uri"
RUN_AS = 10001
"""The listener image's user and group (listener/README.md); set explicitly so `runAsNonRoot` is
verifiable by the kubelet whatever the image's USER line says."""
ROLE_NAME_PREFIX = "langsmith-listener-"

CA_VOLUME = "rds-ca"
CA_DIRECTORY = RDS_CA_BUNDLE_PATH.rpartition("/")[0]
FETCH_CA = (
    "import certifi, ssl, sys, urllib.request\n"
    "url, path = sys.argv[1:3]\n"
    "context = ssl.create_default_context(cafile=certifi.where())\n"
    "data = urllib.request.urlopen(url, timeout=30, context=context).read(4 << 20)\n"
    "if b'-----BEGIN CERTIFICATE-----' not in data:\n"
    "    sys.exit(f'{url} returned no PEM certificate')\n"
    "open(path, 'wb').write(data)\n"
    "print(f'{path}: {data.count(b\"BEGIN CERTIFICATE\")} certificates from {url}')\n"
)
"""The init container's program: the RDS CA bundle the admin URI's `sslrootcert` names (and the
listener hands on to each Agent Server), fetched over verified HTTPS at pod start, so the trust
anchors follow AWS's rotations instead of a copy frozen in the image or the plan."""

RESOURCES = {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
"""The listener peaks near 140 MiB at 1,000 deployments (issue 13's measurement); the limit leaves room."""


@dataclass(frozen=True)
class Routing:
    mode: Literal["none", "httproute", "ingress"] = "none"
    hostname: str | None = None
    gateway_name: str | None = None
    gateway_namespace: str | None = None
    ingress_class_name: str | None = None


@dataclass(frozen=True)
class ListenerPlan:
    """Everything about one listener that is known before deployment (plain data)."""

    spec: ListenerSpec
    stack_key: str
    workspace_id: str
    workspace_key: str
    environment: str
    kubernetes_version: str
    image: str
    control_plane: tuple[str, str]
    """`("LISTENER_REGION", "us")` for a SaaS region, or `("LISTENER_CONTROL_PLANE_URL", url)`."""
    control_plane_url: str
    api_key_source: str
    traffic: ListenerTraffic
    routing: Routing = field(default_factory=Routing)
    autoscaler: Literal["hpa", "keda"] = "hpa"
    store_mode: Literal["in-cluster", "managed"] = "in-cluster"
    rds_ca: bool = False
    """The stores are this stack's RDS/ElastiCache: the admin URI verifies RDS against
    `RDS_CA_BUNDLE_PATH`, which the pod fetches at start. (External stores' URIs are the user's.)"""
    aws_region: str | None = None
    reads_master_secret: bool = False
    """RDS keeps the admin password in Secrets Manager: the listener reads it through an IRSA role
    (`MasterSecretAccess`), so its admin URI carries none."""

    @property
    def namespace(self) -> str:
        return self.spec.own_namespace

    @property
    def pod_labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": "langsmith-listener", "app.kubernetes.io/instance": self.spec.name}

    @property
    def labels(self) -> dict[str, str]:
        return {**lbl.common(self.environment), lbl.LISTENER_NAME: self.spec.name}


@dataclass(frozen=True)
class ListenerValues:
    """Values only known once other resources exist (Pulumi Inputs, some of them secrets)."""

    listener_id: pulumi.Input[str]
    api_key: pulumi.Input[str]
    postgres_admin_uri: pulumi.Input[str] | None = None
    redis_admin_uri: pulumi.Input[str] | None = None
    master_secret_arn: pulumi.Input[str] | None = None
    role_arn: pulumi.Input[str] | None = None
    """The IRSA role the program made for the listener (reads the master secret), if any."""


@dataclass(frozen=True)
class MasterSecretAccess:
    """What the listener's IRSA role needs to read the RDS-managed master secret."""

    secret_arn: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    partition: str
    tags: Mapping[str, str]
    kms_key_arn: pulumi.Input[str] | None = None
    """A customer-managed key that encrypts the secret; None: Secrets Manager's `aws/secretsmanager` key,
    whose key policy already lets the account's principals decrypt through Secrets Manager."""


def master_secret_policy(secret_arn: str, region: str, kms_key_arn: str | None = None) -> str:
    """Exactly what reading the secret takes: `secretsmanager:GetSecretValue` on that one secret, and
    `kms:Decrypt` on its key only when a customer-managed key encrypts it (and only via Secrets Manager).

    https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_examples.html
    ("Permission to retrieve secret values": GetSecretValue on the secret's ARN; with a customer managed
    key also kms:Decrypt) and https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html
    (kms:ViaService secretsmanager.<region>.amazonaws.com).
    """
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadRdsMasterSecret",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": secret_arn,
        }
    ]
    if kms_key_arn:
        statements.append(
            {
                "Sid": "DecryptRdsMasterSecret",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": kms_key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def settings_env(
    plan: ListenerPlan, listener_id: pulumi.Input[str], master_secret_arn: pulumi.Input[str] | None = None
) -> list[dict[str, Any]]:
    """The listener's settings: `LISTENER_*` variables (listener/src/listener/settings.py)."""
    env: list[dict[str, Any]] = [
        {"name": "LISTENER_WORKSPACE_ID", "value": plan.workspace_id},
        {"name": "LISTENER_LISTENER_ID", "value": listener_id},
        {"name": plan.control_plane[0], "value": plan.control_plane[1]},
        {"name": "LISTENER_NAMESPACES", "value": ",".join(plan.spec.namespaces)},
        {
            "name": "LISTENER_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": API_KEY_SECRET, "key": API_KEY_FIELD}},
        },
        {"name": "LISTENER_HEALTH_PORT", "value": str(HEALTH_PORT)},
        {"name": "LISTENER_LEADER_ELECTION", "value": "true" if LEADER_ELECTION else "false"},
        {"name": "LISTENER_POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "LISTENER_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "LISTENER_AUTOSCALER", "value": plan.autoscaler},
        {"name": "LISTENER_ROUTING", "value": plan.routing.mode},
    ]
    for name, value in (
        ("LISTENER_HOSTNAME", plan.routing.hostname),
        ("LISTENER_GATEWAY_NAME", plan.routing.gateway_name),
        ("LISTENER_GATEWAY_NAMESPACE", plan.routing.gateway_namespace),
        ("LISTENER_INGRESS_CLASS_NAME", plan.routing.ingress_class_name),
    ):
        if value:
            env.append({"name": name, "value": value})
    env.append({"name": "LISTENER_STORE_MODE", "value": plan.store_mode})
    if plan.store_mode == "managed":
        for name, key in (
            ("LISTENER_POSTGRES_ADMIN_URI", POSTGRES_ADMIN_URI),
            ("LISTENER_REDIS_ADMIN_URI", REDIS_ADMIN_URI),
        ):
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": STORES_SECRET, "key": key}}})
    if plan.reads_master_secret:
        if master_secret_arn is None or plan.aws_region is None:
            raise ValueError("a listener reading the RDS master secret needs its ARN and the region")
        # botocore's web-identity credentials (IRSA) call STS in AWS_REGION's regional endpoint
        # (sts.<region>.amazonaws.com, which the egress allowlist admits), not the global one.
        env += [
            {"name": MASTER_SECRET_SETTING, "value": master_secret_arn},
            {"name": "AWS_REGION", "value": plan.aws_region},
            {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
        ]
    return env


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "health"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def deployment(
    plan: ListenerPlan, listener_id: pulumi.Input[str], master_secret_arn: pulumi.Input[str] | None = None
) -> dict[str, Any]:
    labels = plan.labels
    strategy: dict[str, Any] = (
        {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
        if LEADER_ELECTION
        else {"type": "Recreate"}
    )
    container = {
        "name": "listener",
        "image": plan.image,
        "imagePullPolicy": "IfNotPresent",
        "env": settings_env(plan, listener_id, master_secret_arn),
        "ports": [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        # Startup: up to 2 minutes for the first cycle; liveness: the loop made progress recently
        # (/healthz); readiness: a successful cycle (/readyz).
        "startupProbe": _probe("/healthz", period=5, failures=24),
        "livenessProbe": _probe("/healthz", period=20, failures=3),
        "readinessProbe": _probe("/readyz", period=10, failures=3),
        "resources": RESOURCES,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir, not the host's
    }
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    init_containers: list[dict[str, Any]] = []
    if plan.store_mode == "managed" and plan.rds_ca:
        # verify-full against the RDS CA: the file LISTENER_POSTGRES_ADMIN_URI's sslrootcert names.
        volumes.append({"name": CA_VOLUME, "emptyDir": {"sizeLimit": "8Mi"}})
        container["volumeMounts"].append({"name": CA_VOLUME, "mountPath": CA_DIRECTORY, "readOnly": True})
        init_containers.append(
            {
                "name": "fetch-rds-ca",
                "image": plan.image,
                "imagePullPolicy": "IfNotPresent",
                "command": [
                    "/opt/listener/bin/python",
                    "-c",
                    FETCH_CA,
                    RDS_CA_BUNDLE_URL,
                    RDS_CA_BUNDLE_PATH,
                ],
                "resources": RESOURCES,
                "securityContext": container["securityContext"],
                "volumeMounts": [{"name": CA_VOLUME, "mountPath": CA_DIRECTORY}],
            }
        )
    pod_spec: dict[str, Any] = {
        "serviceAccountName": SERVICE_ACCOUNT,
        # The listener talks to the API server as this ServiceAccount, so its token is mounted.
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if init_containers:
        pod_spec["initContainers"] = init_containers
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": plan.namespace, "labels": labels},
        "spec": {
            "replicas": LISTENER_REPLICAS,
            "revisionHistoryLimit": 5,
            "strategy": strategy,
            "selector": {"matchLabels": plan.pod_labels},
            "template": {
                "metadata": {"labels": {**labels, **plan.pod_labels}},
                "spec": pod_spec,
            },
        },
    }


def disruption_budget(plan: ListenerPlan) -> dict[str, Any]:
    # With one replica, requiring one available would block every node drain for good; letting one
    # go only pauses the listener (Agent Servers keep running). With leader election and two
    # replicas the same budget keeps one up.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": DEPLOYMENT, "namespace": plan.namespace, "labels": plan.labels},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": plan.pod_labels}},
    }


def rbac_manifests(plan: ListenerPlan) -> list[dict[str, Any]]:
    """One Role + RoleBinding per watched namespace, and one in the listener's own namespace when the
    listener declares rules there. All from `listener.kube`'s tables."""
    name = f"{ROLE_NAME_PREFIX}{plan.spec.name}"
    account = (plan.namespace, SERVICE_ACCOUNT)
    manifests: list[dict[str, Any]] = []
    for namespace in plan.spec.namespaces:
        manifests.append(role(name, namespace, watched_namespace_rules(), plan.labels))
        manifests.append(
            role_binding(name, namespace, role_name=name, service_account=account, labels=plan.labels)
        )
    own = own_namespace_rules()
    if own:
        manifests.append(role(name, plan.namespace, own, plan.labels))
        manifests.append(
            role_binding(name, plan.namespace, role_name=name, service_account=account, labels=plan.labels)
        )
    return manifests


def listener_manifests(plan: ListenerPlan, values: ListenerValues) -> list[dict[str, Any]]:
    """Every object of one listener, the namespace first."""
    labels = plan.labels
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": plan.namespace,
            "labels": {
                **labels,
                **lbl.pod_security("restricted", plan.kubernetes_version),
                lbl.NAMESPACE_ROLE: lbl.LISTENER,
            },
        },
    }
    role_arn = values.role_arn if values.role_arn is not None else plan.spec.service_account_role_arn
    if plan.reads_master_secret and values.role_arn is None:
        raise ValueError("a listener reading the RDS master secret needs the program's IRSA role")
    annotations = {ROLE_ARN_ANNOTATION: role_arn} if role_arn else {}
    account_meta: dict[str, Any] = {"name": SERVICE_ACCOUNT, "namespace": plan.namespace, "labels": labels}
    if annotations:
        account_meta["annotations"] = annotations
    manifests: list[dict[str, Any]] = [
        namespace,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": account_meta},
        _secret(plan, API_KEY_SECRET, {API_KEY_FIELD: values.api_key}),
    ]
    if plan.store_mode == "managed":
        if values.postgres_admin_uri is None or values.redis_admin_uri is None:
            raise ValueError("managed stores need both admin URIs")
        manifests.append(
            _secret(
                plan,
                STORES_SECRET,
                {POSTGRES_ADMIN_URI: values.postgres_admin_uri, REDIS_ADMIN_URI: values.redis_admin_uri},
            )
        )
    traffic = ListenerTraffic(
        watched_namespaces=plan.spec.namespaces,
        store_cidrs=plan.traffic.store_cidrs,
        api_server_cidrs=plan.traffic.api_server_cidrs,
        api_server_port=plan.traffic.api_server_port,
        pod_labels=plan.pod_labels,
    )
    manifests += listener_namespace_policies(plan.namespace, traffic, labels)
    manifests += rbac_manifests(plan)
    manifests += [deployment(plan, values.listener_id, values.master_secret_arn), disruption_budget(plan)]
    return manifests


def _secret(plan: ListenerPlan, name: str, data: Mapping[str, pulumi.Input[str]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": plan.namespace, "labels": plan.labels},
        "type": "Opaque",
        "stringData": {key: pulumi.Output.secret(value) for key, value in data.items()},
    }


@dataclass(frozen=True)
class ListenerArgs:
    plan: ListenerPlan
    api_key: pulumi.Input[str]
    postgres_admin_uri: pulumi.Input[str] | None = None
    redis_admin_uri: pulumi.Input[str] | None = None
    master_secret: MasterSecretAccess | None = None
    """Set when `plan.reads_master_secret`: the listener gets an IRSA role that may read it."""
    irsa_role_name: str | None = None
    """The IRSA role's resource name (components.rules checks its length against IAM's limit)."""
    watched_namespaces: Sequence[pulumi.Resource] = ()
    """The agent Namespace resources its Roles live in."""
    prerequisites: Sequence[pulumi.Resource] = ()
    """Add-ons that must exist before the listener renders objects needing them (KEDA, the Gateway)."""
    guarded: Sequence[pulumi.Resource] = ()
    """What a destroy must not touch while LangSmith deployments use the listener (the agent
    namespaces and add-ons components): the `ListenerInUseGuard` depends on them and on every
    object of the listener, so it is deleted, and refuses, first."""


class Listener(pulumi.ComponentResource):
    """One listener: registered in LangSmith, then deployed with least-privilege RBAC."""

    listener_id: pulumi.Output[str]

    def __init__(self, name: str, args: ListenerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("langsmith:infra:Listener", name, None, opts)
        plan = args.plan
        spec = plan.spec
        registration_args = ListenerRegistrationArgs(
            control_plane_url=plan.control_plane_url,
            workspace_id=plan.workspace_id,
            compute_id=spec.compute_id,
            namespaces=list(spec.namespaces),
            api_key=args.api_key,
            api_key_source=plan.api_key_source,
            stack_key=plan.stack_key,
            workspace_key=plan.workspace_key,
            adopt_listener_id=str(spec.adopt_listener_id) if spec.adopt_listener_id else None,
        )
        registration = ListenerRegistration(
            f"{name}-registration",
            registration_args,
            # Deleting a listener that Agent Servers still use would strand them: the provider refuses
            # while LangSmith deployments target it, and a replacement deletes the old one first (so it
            # is refused before anything changes). It depends on the agent namespaces so that the
            # namespaces, and the Agent Servers in them, are only ever deleted after it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.watched_namespaces)),
        )
        self.listener_id = registration.listener_id
        role_arn: pulumi.Input[str] | None = None
        permissions: list[pulumi.Resource] = []
        access = args.master_secret
        if plan.reads_master_secret:
            if access is None or plan.aws_region is None:
                raise ValueError("a listener reading the RDS master secret needs MasterSecretAccess")
            region = plan.aws_region
            role = irsa_role(
                args.irsa_role_name or f"{name}-irsa",
                oidc_provider_arn=access.oidc_provider_arn,
                oidc_issuer_url=access.oidc_issuer_url,
                service_account=(plan.namespace, SERVICE_ACCOUNT),
                inline_policy=pulumi.Output.all(access.secret_arn, access.kms_key_arn).apply(
                    lambda v: master_secret_policy(v[0], region, v[1])
                ),
                partition=access.partition,
                tags=access.tags,
                parent=self,
            )
            role_arn = role.arn
            permissions = list(role.attachments)
        manifests = listener_manifests(
            plan,
            ListenerValues(
                listener_id=registration.listener_id,
                api_key=args.api_key,
                postgres_admin_uri=args.postgres_admin_uri,
                redis_admin_uri=args.redis_admin_uri,
                master_secret_arn=access.secret_arn if access is not None else None,
                role_arn=role_arn,
            ),
        )
        own_namespace = declare(f"{name}-namespace", manifests[0], pulumi.ResourceOptions(parent=self))
        declared: dict[str, pulumi.Resource] = {}
        for manifest in manifests[1:]:
            meta = manifest["metadata"]
            kind = manifest["kind"]
            where = "" if meta["namespace"] == plan.namespace else f"-{meta['namespace']}"
            depends: list[pulumi.Resource] = [own_namespace, *args.watched_namespaces]
            if kind == "Deployment":
                # The pod needs its key, its rights and what it renders against before it starts.
                # With IRSA, also its policy: a pod started before it would fail its first read.
                depends += [*declared.values(), *args.prerequisites, *permissions]
            resource = declare(
                f"{name}-{kind.lower()}{where}-{meta['name']}",
                manifest,
                pulumi.ResourceOptions(parent=self, depends_on=depends),
            )
            declared[f"{kind}/{meta['namespace']}/{meta['name']}"] = resource
        # The listener's Deployment depends on the registration (its id), so a destroy deletes the
        # Deployment before the registration can refuse; and the agent namespaces' policies and the
        # add-ons have no dependents at all, so they would go in the destroy's first wave. The guard
        # depends on all of them: it is deleted first, and refuses while LangSmith deployments remain.
        ListenerInUseGuard(
            f"{name}-in-use-guard",
            registration_args,
            registration.listener_id,
            pulumi.ResourceOptions(
                parent=self, depends_on=[own_namespace, *declared.values(), *args.guarded]
            ),
        )
        self.register_outputs({"listenerId": self.listener_id, "namespace": plan.namespace})
