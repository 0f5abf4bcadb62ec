"""Semantic validation: every rule has a failing example, sent over real HTTP with lightkube.

Each case names the Kubernetes source that defines the rule (paths are in kubernetes/kubernetes;
"core" is pkg/apis/core/validation/validation.go, "apps" pkg/apis/apps/validation/validation.go,
"meta" staging/src/k8s.io/apimachinery/pkg/api/validation/objectmeta.go, "util" staging/src/k8s.io/
apimachinery/pkg/util/validation/validation.go). The expectation is what the API server answers: 422
Invalid with the offending field in ``details.causes`` and the same wording in the message.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.codecs import from_dict

from tests.fakekube.conftest import NS, deployment
from tools.fakekube import FakeKube

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def admin() -> Iterator[Client]:
    with FakeKube([NS], crds=("gateway-api",)) as kube, kube.admin_client(NS, field_manager="test") as client:
        yield client


def container(obj: Obj, i: int = 0) -> Obj:
    return obj["spec"]["template"]["spec"]["containers"][i]


def pod_spec(obj: Obj) -> Obj:
    return obj["spec"]["template"]["spec"]


def with_(base: Obj, change: Callable[[Obj], Any]) -> Obj:
    out = copy.deepcopy(base)
    change(out)
    return out


def secret(data: dict[str, str] | None = None, **extra: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": data or {"k": "dg=="},
        **extra,
    }


def configmap(data: dict[str, str] | None = None, **extra: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm"},
        "data": data or {"k": "v"},
        **extra,
    }


def service(**spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8000}],
            **spec,
        },
    }


def pvc(**spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, **spec},
    }


def statefulset(**spec: Any) -> Obj:
    return {
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
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
            **spec,
        },
    }


def rbac(kind: str, **body: Any) -> Obj:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": "r"}, **body}


def obj(api_version: str, kind: str, spec: Obj, name: str = "x") -> Obj:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec}


DEP = deployment()
RULE = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
REF = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}


@dataclass(frozen=True)
class Case:
    id: str
    manifest: Obj
    field: str  # the cause's field
    message: str  # a fragment of the cause's message
    before: Obj | None = None  # applied first: the case is an update
    # "create" for objects server-side apply cannot even express: structured-merge-diff refuses an
    # applied list map with duplicate keys before validation runs (see test_ssa_refuses_duplicate_keys).
    verb: str = "apply"


CASES = [
    # --- names and metadata (meta: ValidateObjectMetaAccessor; util: IsDNS1123Subdomain & co.)
    Case("name-not-dns-subdomain", with_(DEP, lambda d: d["metadata"].update(name="Bad_Name")), "metadata.name",
         "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"),
    Case("service-name-is-dns-1035", with_(service(), lambda s: s["metadata"].update(name="1web")), "metadata.name",
         "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character"),
    Case("statefulset-name-is-dns-label", with_(statefulset(), lambda s: s["metadata"].update(name="db.v1")), "metadata.name",
         "must not contain dots"),
    Case("label-key", with_(DEP, lambda d: d["metadata"]["labels"].update({"bad key": "x"})), "metadata.labels",
         "name part must consist of alphanumeric characters, '-', '_' or '.'"),
    Case("label-value-too-long", with_(DEP, lambda d: d["metadata"]["labels"].update(tier="x" * 64)), "metadata.labels",
         "must be no more than 63 characters"),
    Case("label-value-charset", with_(DEP, lambda d: d["metadata"]["labels"].update(tier="a b")), "metadata.labels",
         "a valid label must be an empty string or consist of alphanumeric characters"),
    Case("annotation-key", with_(DEP, lambda d: d["metadata"].update(annotations={"a/b/c": "x"})), "metadata.annotations",
         "a qualified name must consist of alphanumeric characters"),
    Case("annotation-key-prefix", with_(DEP, lambda d: d["metadata"].update(annotations={"Bad_Prefix/x": "v"})),
         "metadata.annotations", "prefix part a lowercase RFC 1123 subdomain must consist"),
    Case("finalizer-not-qualified", with_(configmap(), lambda c: c["metadata"].update(finalizers=["cleanup"])),
         "metadata.finalizers[0]", "name is neither a standard finalizer name nor is it fully qualified"),
    Case("template-label-value", with_(DEP, lambda d: d["spec"]["template"]["metadata"]["labels"].update(v="-x")),
         "spec.template.labels", "a valid label must be an empty string"),  # ValidatePodTemplateSpec: fldPath.Child("labels")
    # --- Secrets and ConfigMaps (core: ValidateSecret, ValidateConfigMap; util: IsConfigMapKey)
    Case("secret-data-key-with-space", secret({"my key": "dg=="}), "data[my key]",
         "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"),
    Case("secret-string-data-key", secret({}, stringData={"bad/key": "v"}), "data[bad/key]", "a valid config key must consist"),
    Case("secret-key-dotdot", secret({"..x": "dg=="}), "data[..x]", "must not start with '..'"),
    Case("tls-secret-needs-key", secret({"tls.crt": "dg=="}, type="kubernetes.io/tls"), "data[tls.key]", "Required value"),
    Case("dockerconfigjson-must-be-json", secret({".dockerconfigjson": "bm90IGpzb24="}, type="kubernetes.io/dockerconfigjson"),
         "data[.dockerconfigjson]", "<secret contents redacted>"),
    Case("configmap-key", configmap({"a b": "v"}), "data[a b]", "a valid config key must consist"),
    Case("configmap-key-in-both-maps", configmap({"k": "v"}, binaryData={"k": "dg=="}), "data[k]", "duplicate of key present in binaryData"),
    Case("secret-type-immutable", secret(type="example.com/other"), "type", "field is immutable", before=secret()),
    Case("immutable-secret-data", secret({"k": "eA=="}, immutable=True), "data", "field is immutable when `immutable` is set",
         before=secret(immutable=True)),
    Case("immutable-secret-stays-immutable", secret(immutable=False), "immutable", "field is immutable when `immutable` is set",
         before=secret(immutable=True)),
    Case("immutable-configmap-data", configmap({"k": "w"}, immutable=True), "data", "field is immutable when `immutable` is set",
         before=configmap(immutable=True)),
    # --- pod templates (core: validateContainers, ValidateVolumes, ValidateVolumeMounts, validateContainerPorts,
    #     ValidateEnv, validateEnvVarValueFrom, validateSecretKeySelector, validateResourceRequirements, validateProbe)
    Case("requests-above-limits", with_(DEP, lambda d: container(d).update(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})),
         "spec.template.spec.containers[0].resources.requests", "must be less than or equal to cpu limit of 1"),
    Case("memory-requests-above-limits", with_(DEP, lambda d: container(d).update(resources={"requests": {"memory": "2Gi"}, "limits": {"memory": "1024Mi"}})),
         "spec.template.spec.containers[0].resources.requests", "must be less than or equal to memory limit of 1Gi"),
    Case("resource-name-not-standard", with_(DEP, lambda d: container(d).update(resources={"limits": {"cpus": "1"}})),
         "spec.template.spec.containers[0].resources.limits[cpus]", "must be a standard resource for containers"),
    Case("negative-quantity", with_(DEP, lambda d: container(d).update(resources={"requests": {"memory": "-1Mi"}})),
         "spec.template.spec.containers[0].resources.requests[memory]", "must be greater than or equal to 0"),
    Case("extended-resource-needs-limit", with_(DEP, lambda d: container(d).update(resources={"requests": {"example.com/gpu": "1"}})),
         "spec.template.spec.containers[0].resources.limits", "Limit must be set for non overcommitable resources"),
    Case("duplicate-container-names", with_(DEP, lambda d: pod_spec(d)["containers"].append({"name": "app", "image": "side:1"})),
         "spec.template.spec.containers[1].name", 'Duplicate value: "app"', verb="create"),
    Case("init-container-name-clash", with_(DEP, lambda d: pod_spec(d).update(initContainers=[{"name": "app", "image": "init:1"}])),
         "spec.template.spec.initContainers[0].name", 'Duplicate value: "app"', verb="create"),
    Case("container-name-not-dns-label", with_(DEP, lambda d: container(d).update(name="App")),
         "spec.template.spec.containers[0].name", "a lowercase RFC 1123 label must consist"),
    Case("no-containers", with_(DEP, lambda d: pod_spec(d).update(containers=[])), "spec.template.spec.containers", "Required value"),
    Case("empty-image", with_(DEP, lambda d: container(d).update(image="")), "spec.template.spec.containers[0].image", "Required value"),
    Case("duplicate-volume-names", with_(DEP, lambda d: pod_spec(d).update(volumes=[{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}])),
         "spec.template.spec.volumes[1].name", 'Duplicate value: "v"', verb="create"),
    Case("volume-without-source", with_(DEP, lambda d: pod_spec(d).update(volumes=[{"name": "v"}])),
         "spec.template.spec.volumes[0]", "must specify a volume type"),
    Case("secret-volume-needs-name", with_(DEP, lambda d: pod_spec(d).update(volumes=[{"name": "v", "secret": {}}])),
         "spec.template.spec.volumes[0].secret.secretName", "Required value"),
    Case("mount-of-unknown-volume", with_(DEP, lambda d: container(d).update(volumeMounts=[{"name": "nope", "mountPath": "/x"}])),
         "spec.template.spec.containers[0].volumeMounts[0].name", 'Not found: "nope"'),
    Case("duplicate-mount-path", with_(DEP, lambda d: (pod_spec(d).update(volumes=[{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}]),
                                                      container(d).update(volumeMounts=[{"name": "a", "mountPath": "/data"}, {"name": "b", "mountPath": "/data"}]))),
         "spec.template.spec.containers[0].volumeMounts[1].mountPath", "must be unique", verb="create"),
    Case("duplicate-port-names", with_(DEP, lambda d: container(d).update(ports=[{"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}])),
         "spec.template.spec.containers[0].ports[1].name", 'Duplicate value: "http"'),
    Case("port-name-not-iana", with_(DEP, lambda d: container(d).update(ports=[{"name": "Http_Port", "containerPort": 80}])),
         "spec.template.spec.containers[0].ports[0].name", "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
    Case("port-name-too-long", with_(DEP, lambda d: container(d).update(ports=[{"name": "a-very-long-port-name", "containerPort": 80}])),
         "spec.template.spec.containers[0].ports[0].name", "must be no more than 15 characters"),
    Case("container-port-range", with_(DEP, lambda d: container(d).update(ports=[{"containerPort": 70000}])),
         "spec.template.spec.containers[0].ports[0].containerPort", "must be between 1 and 65535, inclusive"),
    Case("port-protocol", with_(DEP, lambda d: container(d).update(ports=[{"containerPort": 80, "protocol": "HTTP"}])),
         "spec.template.spec.containers[0].ports[0].protocol", 'Unsupported value: "HTTP"'),
    Case("env-name-with-equals", with_(DEP, lambda d: container(d).update(env=[{"name": "A=B", "value": "x"}])),
         "spec.template.spec.containers[0].env[0].name",
         "a valid environment variable name must consist only of printable ASCII characters other than '='"),
    Case("env-name-empty", with_(DEP, lambda d: container(d).update(env=[{"name": "", "value": "x"}])),
         "spec.template.spec.containers[0].env[0].name", "Required value"),
    Case("env-value-and-value-from", with_(DEP, lambda d: container(d).update(env=[{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])),
         "spec.template.spec.containers[0].env[0].valueFrom", "may not be specified when `value` is not empty"),
    Case("secret-key-ref-bad-name", with_(DEP, lambda d: container(d).update(env=[{"name": "A", "valueFrom": {"secretKeyRef": {"name": "Bad_Secret", "key": "k"}}}])),
         "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.name", "a lowercase RFC 1123 subdomain must consist"),
    Case("secret-key-ref-bad-key", with_(DEP, lambda d: container(d).update(env=[{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a key"}}}])),
         "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.key", "a valid config key must consist"),
    Case("config-map-key-ref-needs-key", with_(DEP, lambda d: container(d).update(env=[{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": ""}}}])),
         "spec.template.spec.containers[0].env[0].valueFrom.configMapKeyRef.key", "Required value"),
    Case("field-ref-path", with_(DEP, lambda d: container(d).update(env=[{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}}])),
         "spec.template.spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", 'Unsupported value: "spec.hostname"'),
    Case("env-from-needs-source", with_(DEP, lambda d: container(d).update(envFrom=[{"prefix": "X_"}])),
         "spec.template.spec.containers[0].envFrom", "must specify one of: `configMapRef` or `secretRef`"),
    Case("pull-policy", with_(DEP, lambda d: container(d).update(imagePullPolicy="Sometimes")),
         "spec.template.spec.containers[0].imagePullPolicy", 'Unsupported value: "Sometimes"'),
    Case("liveness-success-threshold", with_(DEP, lambda d: container(d).update(livenessProbe={"httpGet": {"path": "/ok", "port": 8000}, "successThreshold": 2})),
         "spec.template.spec.containers[0].livenessProbe.successThreshold", "must be 1"),
    Case("probe-needs-handler", with_(DEP, lambda d: container(d).update(readinessProbe={"periodSeconds": 5})),
         "spec.template.spec.containers[0].readinessProbe", "must specify a handler type"),
    Case("probe-port-name", with_(DEP, lambda d: container(d).update(readinessProbe={"httpGet": {"path": "/", "port": "no_such-port"}})),
         "spec.template.spec.containers[0].readinessProbe.httpGet.port", "must contain only alpha-numeric characters"),
    # core validateHTTPGetAction: validation.IsHTTPHeaderName on each probe header.
    Case("probe-header-name", with_(DEP, lambda d: container(d).update(readinessProbe={"httpGet": {"path": "/", "port": 8000, "httpHeaders": [{"name": "X Bad", "value": "1"}]}})),
         "spec.template.spec.containers[0].readinessProbe.httpGet.httpHeaders", "a valid HTTP header must consist of alphanumeric characters or '-'"),
    Case("run-as-user-range", with_(DEP, lambda d: container(d).update(securityContext={"runAsUser": -1})),
         "spec.template.spec.containers[0].securityContext.runAsUser", "must be between 0 and 2147483647, inclusive"),
    Case("privileged-without-escalation", with_(DEP, lambda d: container(d).update(securityContext={"privileged": True, "allowPrivilegeEscalation": False})),
         "spec.template.spec.containers[0].securityContext", "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"),
    Case("topology-spread-skew", with_(DEP, lambda d: pod_spec(d).update(topologySpreadConstraints=[{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}])),
         "spec.template.spec.topologySpreadConstraints[0].maxSkew", "must be greater than zero"),
    Case("toleration-operator", with_(DEP, lambda d: pod_spec(d).update(tolerations=[{"operator": "Equal", "value": "x"}])),
         "spec.template.spec.tolerations[0].operator", "operator must be Exists when `key` is empty"),
    Case("restart-policy-in-workload", with_(DEP, lambda d: pod_spec(d).update(restartPolicy="OnFailure")),
         "spec.template.spec.restartPolicy", 'Unsupported value: "OnFailure": supported values: "Always"'),
    Case("dns-policy", with_(DEP, lambda d: pod_spec(d).update(dnsPolicy="Custom")), "spec.template.spec.dnsPolicy", 'Unsupported value: "Custom"'),
    # --- Deployments (apps: ValidateDeploymentSpec, ValidateRollingUpdateDeployment; registry strategy: immutable selector)
    Case("selector-matches-template", with_(DEP, lambda d: d["spec"].update(selector={"matchLabels": {"app": "other"}})),
         "spec.template.metadata.labels", "`selector` does not match template `labels`"),
    Case("empty-selector", with_(DEP, lambda d: d["spec"].update(selector={})), "spec.selector", "empty selector is invalid for deployment"),
    Case("selector-operator", with_(DEP, lambda d: d["spec"]["selector"].update(matchExpressions=[{"key": "app", "operator": "Equals", "values": ["web"]}])),
         "spec.selector.matchExpressions[0].operator", 'Unsupported value: "Equals"'),
    Case("negative-replicas", with_(DEP, lambda d: d["spec"].update(replicas=-1)), "spec.replicas", "must be greater than or equal to 0"),
    Case("surge-and-unavailable-zero", with_(DEP, lambda d: d["spec"].update(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})),
         "spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when `maxSurge` is 0"),
    Case("unavailable-over-100-percent", with_(DEP, lambda d: d["spec"].update(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "150%"}})),
         "spec.strategy.rollingUpdate.maxUnavailable", "must not be greater than 100%"),
    Case("recreate-with-rolling-update", with_(DEP, lambda d: d["spec"].update(strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})),
         "spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"),
    Case("progress-deadline", with_(DEP, lambda d: d["spec"].update(minReadySeconds=30, progressDeadlineSeconds=30)),
         "spec.progressDeadlineSeconds", "must be greater than minReadySeconds"),
    Case("deployment-selector-immutable", with_(DEP, lambda d: (d["spec"].update(selector={"matchLabels": {"app": "web", "v": "2"}}),
                                                               d["spec"]["template"]["metadata"]["labels"].update(v="2"))),
         "spec.selector", "field is immutable", before=DEP),
    # --- StatefulSets (apps: ValidateStatefulSetSpec, ValidateStatefulSetUpdate)
    Case("statefulset-pod-management", statefulset(podManagementPolicy="Random"), "spec.podManagementPolicy", "must be 'OrderedReady' or 'Parallel'"),
    Case("statefulset-claim-templates-immutable",
         with_(statefulset(), lambda s: s["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"].update(storage="2Gi")),
         "spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy'",
         before=statefulset()),
    Case("statefulset-service-name-immutable", statefulset(serviceName="other"), "spec", "are forbidden", before=statefulset()),
    Case("statefulset-retention-policy", statefulset(persistentVolumeClaimRetentionPolicy={"whenDeleted": "Keep"}),
         "spec.persistentVolumeClaimRetentionPolicy.whenDeleted", 'Unsupported value: "Keep"'),
    # --- Services (core: ValidateService, validateServicePort, validateUpgradeDowngradeClusterIPs)
    Case("service-needs-ports", service(ports=[]), "spec.ports", "Required value"),
    Case("service-port-names-required", service(ports=[{"port": 80}, {"port": 81}]), "spec.ports[0].name", "Required value"),
    Case("service-duplicate-port-names", service(ports=[{"name": "a", "port": 80}, {"name": "a", "port": 81}]), "spec.ports[1].name", 'Duplicate value: "a"'),
    Case("service-duplicate-ports", service(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}]), "spec.ports[1]", "Duplicate value", verb="create"),
    Case("service-port-range", service(ports=[{"port": 0}]), "spec.ports[0].port", "must be between 1 and 65535, inclusive"),
    Case("service-target-port-name", service(ports=[{"port": 80, "targetPort": "Not_A_Name"}]), "spec.ports[0].targetPort",
         "must contain only alpha-numeric characters"),
    Case("service-type", service(type="Internal"), "spec.type", 'Unsupported value: "Internal"'),
    Case("service-node-port-on-cluster-ip", service(ports=[{"port": 80, "nodePort": 30080}]), "spec.ports[0].nodePort",
         "may not be used when `type` is 'ClusterIP'"),
    Case("service-selector-label", service(selector={"app": "a b"}), "spec.selector", "a valid label must be an empty string"),
    Case("service-cluster-ip-immutable", service(clusterIP="10.96.200.200"), "spec.clusterIPs[0]", "may not change once set", before=service()),
    # --- PersistentVolumeClaims (core: ValidatePersistentVolumeClaimSpec, ValidatePersistentVolumeClaimUpdate)
    Case("pvc-access-modes", pvc(accessModes=[]), "spec.accessModes", "at least 1 access mode is required"),
    Case("pvc-access-mode-value", pvc(accessModes=["ReadWriteSometimes"]), "spec.accessModes", 'Unsupported value: "ReadWriteSometimes"'),
    Case("pvc-storage-required", pvc(resources={"requests": {}}), "spec.resources[storage]", "Required value"),
    Case("pvc-storage-positive", pvc(resources={"requests": {"storage": "0"}}), "spec.resources[storage]", "must be greater than zero"),
    Case("pvc-spec-immutable", pvc(volumeMode="Block"), "spec", "spec is immutable after creation", before=pvc()),
    # --- autoscaling and policy (pkg/apis/autoscaling/validation, pkg/apis/policy/validation)
    Case("hpa-max-below-min", obj("autoscaling/v2", "HorizontalPodAutoscaler", {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 3, "maxReplicas": 2}),
         "spec.maxReplicas", "must be greater than or equal to `minReplicas`"),
    Case("hpa-min-replicas", obj("autoscaling/v2", "HorizontalPodAutoscaler", {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 0, "maxReplicas": 2}),
         "spec.minReplicas", "must be greater than or equal to 1"),
    Case("hpa-target-name", obj("autoscaling/v2", "HorizontalPodAutoscaler", {"scaleTargetRef": {"kind": "Deployment", "name": ""}, "maxReplicas": 2}),
         "spec.scaleTargetRef.name", "Required value"),
    Case("pdb-min-and-max", obj("policy/v1", "PodDisruptionBudget", {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}),
         "spec", "minAvailable and maxUnavailable cannot be both set"),
    # --- networking (pkg/apis/networking/validation)
    Case("ingress-path-absolute", obj("networking.k8s.io/v1", "Ingress", {"rules": [{"host": "a.example.com", "http": {"paths": [{"path": "api", "pathType": "Prefix", "backend": {"service": {"name": "svc", "port": {"number": 80}}}}]}}]}),
         "spec.rules[0].http.paths[0].path", "must be an absolute path"),
    Case("ingress-path-type-required", obj("networking.k8s.io/v1", "Ingress", {"rules": [{"http": {"paths": [{"path": "/", "backend": {"service": {"name": "svc", "port": {"number": 80}}}}]}}]}),
         "spec.rules[0].http.paths[0].pathType", "pathType must be specified"),
    Case("ingress-host-is-dns", obj("networking.k8s.io/v1", "Ingress", {"rules": [{"host": "Bad_Host", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "svc", "port": {"number": 80}}}}]}}]}),
         "spec.rules[0].host", "a lowercase RFC 1123 subdomain must consist"),
    Case("network-policy-cidr", obj("networking.k8s.io/v1", "NetworkPolicy", {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}),
         "spec.egress[0].to[0].ipBlock.cidr", "must be a valid CIDR value"),
    Case("network-policy-except-subset", obj("networking.k8s.io/v1", "NetworkPolicy", {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["192.168.0.0/24"]}}]}]}),
         "spec.egress[0].to[0].ipBlock.except[0]", "must be a strict subset of `cidr`"),
    Case("network-policy-port-protocol", obj("networking.k8s.io/v1", "NetworkPolicy", {"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP", "port": 80}]}]}),
         "spec.ingress[0].ports[0].protocol", 'Unsupported value: "ICMP"'),
    # --- RBAC (pkg/apis/rbac/validation)
    Case("role-rule-needs-verbs", rbac("Role", rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": []}]), "rules[0].verbs",
         "verbs must contain at least one value"),
    Case("role-rule-needs-api-groups", rbac("Role", rules=[{"resources": ["pods"], "verbs": ["get"]}]), "rules[0].apiGroups",
         "resource rules must supply at least one api group"),
    Case("role-non-resource-urls", rbac("Role", rules=[{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]), "rules[0].nonResourceURLs",
         "namespaced rules cannot apply to non-resource URLs"),
    Case("binding-role-ref-kind", rbac("RoleBinding", roleRef={**REF, "kind": "Group"}, subjects=[]), "roleRef.kind", 'Unsupported value: "Group"'),
    Case("binding-role-ref-immutable", rbac("RoleBinding", roleRef={**REF, "name": "other"}, subjects=[]), "roleRef", "cannot change roleRef",
         before=rbac("RoleBinding", roleRef=REF, subjects=[])),
    Case("binding-subject-kind", rbac("RoleBinding", roleRef=REF, subjects=[{"kind": "Robot", "name": "x"}]), "subjects[0].kind", 'Unsupported value: "Robot"'),
    # --- quotas, limits, leases, storage, CRDs
    Case("limit-range-min-above-max", obj("v1", "LimitRange", {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}),
         "spec.limits[0].min[cpu]", "min value 2 is greater than max value 1"),
    Case("quota-resource-name", obj("v1", "ResourceQuota", {"hard": {"cpus": "1"}}), "spec.hard[cpus]", "must be a standard resource for quota"),
    Case("lease-duration", obj("coordination.k8s.io/v1", "Lease", {"holderIdentity": "a", "leaseDurationSeconds": 0}),
         "spec.leaseDurationSeconds", "must be greater than 0"),
]  # fmt: skip

CLUSTER_CASES = [
    Case("storage-class-reclaim-policy", {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "sc"}, "provisioner": "ebs.csi.aws.com", "reclaimPolicy": "Recycle"},
         "reclaimPolicy", 'Unsupported value: "Recycle"'),
    Case("storage-class-provisioner-immutable", {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "sc2"}, "provisioner": "other.example.com"},
         "provisioner", "updates to provisioner are forbidden.",
         before={"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "sc2"}, "provisioner": "ebs.csi.aws.com"}),
    Case("cluster-role-binding-sa-namespace", rbac("ClusterRoleBinding", roleRef={**REF, "kind": "ClusterRole"}, subjects=[{"kind": "ServiceAccount", "name": "sa"}]),
         "subjects[0].namespace", "Required value"),
    Case("namespace-name-dns-label", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team.a"}}, "metadata.name", "must not contain dots"),
    Case("crd-name-matches-names", {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
                                    "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "gadgets", "kind": "Gadget"},
                                             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object"}}}]}},
         "metadata.name", 'must be spec.names.plural+"."+spec.group'),
]  # fmt: skip


_SHARED_NAMES = {"web", "s", "cm", "svc", "data", "db", "r", "x"}


def _named(manifest: Obj, name: str) -> Obj:
    out = copy.deepcopy(manifest)
    if out["metadata"]["name"] in _SHARED_NAMES:
        out["metadata"]["name"] = name  # one object per case: cases never see each other's leftovers
    return out


def _send(admin: Client, verb: str, manifest: Obj, namespace: str | None) -> Any:
    if manifest["kind"] == "Ingress" or verb == "raw":
        # lightkube's typed Ingress model refuses to even build some invalid bodies: send the dict.
        api = admin._client._client  # the httpx client lightkube wraps
        prefix = "/apis/networking.k8s.io/v1"
        response = api.patch(
            f"{prefix}/namespaces/{namespace}/ingresses/{manifest['metadata']['name']}",
            params={"fieldManager": "test", "force": "true"},
            json=manifest,
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        if response.status_code >= 400:
            from lightkube.core.exceptions import ApiError as _ApiError

            raise _ApiError(request=response.request, response=response)
        return response
    if verb == "create":
        return admin.create(from_dict(manifest), namespace=namespace)
    return admin.apply(from_dict(manifest), namespace=namespace, force=True)


def _reject(admin: Client, case: Case, namespace: str | None) -> None:
    if case.before is not None:
        _send(admin, "apply", _named(case.before, case.id), namespace)
    with pytest.raises(ApiError) as err:
        _send(admin, case.verb, _named(case.manifest, case.id), namespace)
    status = err.value.status
    assert (status.code, status.reason) == (422, "Invalid"), status.message
    causes = [(c.field, c.message) for c in status.details.causes]
    assert any(f == case.field and case.message in m for f, m in causes), causes
    assert case.message in status.message
    kind = case.manifest["kind"]
    assert status.details.kind == kind
    assert status.message.startswith(f"{kind}." if "/" in case.manifest["apiVersion"] else f'{kind} "')


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_namespaced_rule_rejects(admin: Client, case: Case) -> None:
    _reject(admin, case, NS)


@pytest.mark.parametrize("case", CLUSTER_CASES, ids=[c.id for c in CLUSTER_CASES])
def test_cluster_scoped_rule_rejects(admin: Client, case: Case) -> None:
    _reject(admin, case, None)


def test_a_valid_object_with_every_field_above_is_accepted(admin: Client) -> None:
    """The table's base objects are valid: the failures above come from the one broken field."""
    for manifest in (DEP, secret(), configmap(), service(), pvc(), statefulset()):
        admin.apply(from_dict(copy.deepcopy(manifest)), namespace=NS, force=True)


def test_the_message_lists_every_problem_like_an_aggregate(admin: Client) -> None:
    bad = with_(
        DEP, lambda d: (container(d).update(name="App", image=""), d["metadata"].update(name="Bad_Name"))
    )
    with pytest.raises(ApiError) as err:
        admin.apply(from_dict(bad), namespace=NS)
    message = err.value.status.message
    # errors.NewInvalid: 'Deployment.apps "Bad_Name" is invalid: [metadata.name: ..., spec...: ...]'
    assert message.startswith('Deployment.apps "Bad_Name" is invalid: [')
    fields = [c.field for c in err.value.status.details.causes]
    assert fields == [
        "metadata.name",
        "spec.template.spec.containers[0].name",
        "spec.template.spec.containers[0].image",
    ]


def test_a_template_image_with_whitespace_is_accepted_but_its_pods_are_refused(admin: Client) -> None:
    """validateContainerOnlyForPod: whitespace around an image is checked for pods, not templates,
    so the Deployment is stored and the ReplicaSet's pod creation fails (FailedCreate)."""
    from lightkube.resources.apps_v1 import Deployment, ReplicaSet
    from lightkube.resources.core_v1 import Event, Pod

    admin.apply(
        from_dict(with_(deployment("spaced"), lambda d: container(d).update(image="app:1 "))), namespace=NS
    )
    assert list(admin.list(Pod, labels={"app": "spaced"})) == []
    (rs,) = admin.list(ReplicaSet, labels={"app": "spaced"})
    failure = {c.type: c for c in rs.status.conditions or []}["ReplicaFailure"]
    assert failure.reason == "FailedCreate"
    assert (
        'spec.containers[0].image: Invalid value: "app:1 ": must not have leading or trailing whitespace'
        in failure.message
    )
    dep = admin.get(Deployment, "spaced")
    assert {c.type: c.reason for c in dep.status.conditions}["ReplicaFailure"] == "FailedCreate"
    events = [e.message for e in admin.list(Event, fields={"reason": "FailedCreate"})]
    assert any("must not have leading or trailing whitespace" in m for m in events)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: pod_spec(d)["containers"].append({"name": "app", "image": "side:1"}),
         '.spec.template.spec.containers: duplicate entries for key [name="app"]'),
        (lambda d: container(d).update(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
         '.spec.template.spec.containers[name="app"].env: duplicate entries for key [name="A"]'),
        (lambda d: pod_spec(d).update(volumes=[{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]),
         '.spec.template.spec.volumes: duplicate entries for key [name="v"]'),
    ],
    ids=["containers", "env", "volumes"],
)  # fmt: skip
def test_ssa_refuses_duplicate_keys(admin: Client, change: Callable[[Obj], Any], message: str) -> None:
    """structured-merge-diff converts the applied configuration to a typed object first; duplicate
    keys in a list map fail that (500, "failed to create typed patch object"), before validation --
    what Helm 4 and Flux report as 'duplicate entries for key'."""
    with pytest.raises(ApiError) as err:
        admin.apply(from_dict(with_(deployment("dupe-keys"), change)), namespace=NS)
    status = err.value.status
    assert status.code == 500
    assert status.message == (
        f"failed to create typed patch object ({NS}/dupe-keys; apps/v1, Kind=Deployment): {message}"
    )


def test_a_statefulset_pod_spec_is_checked_only_when_its_pods_are_created(admin: Client) -> None:
    """ValidatePodTemplateSpecForStatefulSet does not validate the pod spec ("TODO: Add validation
    for PodSpec"): duplicate container names pass the StatefulSet and fail its pods."""
    from lightkube.resources.apps_v1 import StatefulSet
    from lightkube.resources.core_v1 import Event, Pod

    bad = statefulset()
    bad["metadata"]["name"] = "dupes"
    bad["spec"]["template"]["spec"]["containers"].append({"name": "db", "image": "db:1"})
    admin.create(from_dict(bad), namespace=NS)  # server-side apply would refuse the duplicate key
    assert admin.get(StatefulSet, "dupes").status.readyReplicas is None
    assert list(admin.list(Pod, labels={"app": "db"}, fields={"metadata.name": "dupes-0"})) == []
    events = [
        e.message
        for e in admin.list(Event, fields={"involvedObject.name": "dupes", "reason": "FailedCreate"})
    ]
    assert any(
        'create Pod dupes-0 in StatefulSet dupes failed error: Pod "dupes-0" is invalid' in m
        and 'Duplicate value: "db"' in m
        for m in events
    )
