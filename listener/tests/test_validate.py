"""Control-plane data checked before anything is rendered or written (`listener.validate`).

Each bad value here is one the Kubernetes API server (apimachinery validation: names, keys, label
values, quantities, requests <= limits) or the kubelet (image references) would reject, or one the
listener refuses by its own rules (reserved names, hostPath, privileged containers). Without these
checks the revision was applied halfway and failed late, or ran with a hijacked name.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from test_render import DEPLOYMENT_ID, make_spec

from listener import naming
from listener.render import render
from listener.spec import RenderOptions, ResourceSpec, SecretReference, SecretValue
from listener.validate import InvalidDeployment, check, quantity, validate

RS = "source_config.resource_spec"


def problems_of(**overrides: Any) -> list[str]:
    return [str(p) for p in validate(make_spec(**overrides))]


def resources(**fields: Any) -> ResourceSpec:
    return dataclasses.replace(ResourceSpec(), **fields)


BAD: list[tuple[str, dict[str, Any], str]] = [
    # (case, spec overrides, expected problem text)
    (
        "image with a trailing space",
        {"image": "repo/agent:1 "},
        "source_revision_config.image_uri: 'repo/agent:1 ' must not have leading or trailing whitespace",
    ),
    ("image not a reference", {"image": "Repo/Agent:1"}, "is not a valid image reference"),
    ("empty image", {"image": ""}, "source_revision_config.image_uri: is required"),
    (
        "secret key with a space",
        {"secrets": (("MY KEY", SecretValue("v")),)},
        "secrets[0].name: 'MY KEY': a valid config key must consist of alphanumeric characters",
    ),
    (
        "secret listed twice",
        {"secrets": (("A", SecretValue("1")), ("A", SecretValue("2")))},
        "secrets[1].name: 'A' is listed twice",
    ),
    ("secret too large", {"secrets": (("BIG", SecretValue("x" * 600_000)),)}, "secrets: total size"),
    (
        "reference with bad secret name",
        {"secret_references": (SecretReference("TOKEN", "Team_Secrets", "token"),)},
        "secret_references[0].secret_name: 'Team_Secrets': a lowercase RFC 1123 subdomain must consist",
    ),
    (
        "reference with bad key",
        {"secret_references": (SecretReference("TOKEN", "team", "a/b"),)},
        "secret_references[0].secret_key: 'a/b'",
    ),
    (
        "reference overriding the store URI",
        {"secret_references": (SecretReference("POSTGRES_URI", "evil", "uri"),)},
        "'POSTGRES_URI' is set by the listener",
    ),
    (
        "reference clashing with a secret",
        {"secret_references": (SecretReference("OPENAI_API_KEY", "x", "y"),)},
        "also a secret of this deployment",
    ),
    (
        "requests above limits",
        {"resources": resources(cpu=4.0, cpu_limit=2.0)},
        f"{RS}.cpu: 4.0 is above cpu_limit (2.0): must be less than or equal to cpu limit of 2",
    ),
    (
        "memory above its limit",
        {"resources": resources(memory_mb=4096, memory_limit_mb=1024)},
        f"{RS}.memory_mb: 4096 is above memory_limit_mb (1024)",
    ),
    (
        "queue request above the queue limit",
        {"resources": resources(queue_cpu=2.0, queue_cpu_limit=1.0)},
        f"{RS}.queue_cpu: 2.0 is above queue_cpu_limit (1.0)",
    ),
    (
        "redis memory request above its limit",
        {"resources": resources(redis_memory_mb=4096, redis_memory_limit_mb=2048)},
        f"{RS}.redis_memory_mb",
    ),
    ("zero memory", {"resources": resources(memory_mb=0)}, f"{RS}.memory_mb: 0 must be greater than 0"),
    (
        "absurd replicas",
        {"resources": resources(max_scale=100000)},
        f"{RS}.max_scale: 100000 is outside 0..1000",
    ),
    ("db storage zero", {"resources": resources(db_storage_gi=0)}, f"{RS}.db_storage_gi"),
    (
        "label with a reserved key",
        {"resources": resources(labels=(("app.kubernetes.io/managed-by", "me"),))},
        "is a label the listener sets itself",
    ),
    (
        "label key invalid",
        {"resources": resources(labels=(("bad key", "x"),))},
        "key 'bad key' is not a valid qualified name",
    ),
    (
        "label value too long",
        {"resources": resources(labels=(("team", "x" * 64),))},
        "a valid label must be an empty string",
    ),
    (
        "annotation key invalid",
        {"resources": resources(annotations=(("-bad/key", "x"),))},
        "not a valid qualified name",
    ),
    (
        "annotation reserved",
        {"resources": resources(annotations=(("langsmith-dataplane/status", "x"),))},
        "an annotation the listener sets itself",
    ),
    (
        "service account name",
        {"resources": resources(service_account_name="Agent SA")},
        f"{RS}.service_account_name",
    ),
    (
        "pull secret name",
        {"resources": resources(image_pull_secrets=("ECR pull",))},
        f"{RS}.image_pull_secrets[0].name",
    ),
    (
        "hostPath volume",
        {"resources": resources(volumes=({"name": "host", "hostPath": {"path": "/"}},))},
        f"{RS}.volumes[0].hostPath: hostPath volumes are not allowed",
    ),
    (
        "volume named like ours",
        {"resources": resources(volumes=({"name": "ls-tmp", "emptyDir": {}},))},
        "'ls-tmp' is reserved by the listener",
    ),
    (
        "volume listed twice",
        {"resources": resources(volumes=({"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}))},
        "'a' is listed twice",
    ),
    (
        "mount of no volume",
        {"resources": resources(volume_mounts=({"name": "nope", "mountPath": "/x"},))},
        "'nope' names no volume",
    ),
    (
        "mount over /tmp",
        {
            "resources": resources(
                volumes=({"name": "a", "emptyDir": {}},), volume_mounts=({"name": "a", "mountPath": "/tmp"},)
            )
        },
        "'/tmp' is used by the listener",
    ),
    (
        "relative mount path",
        {
            "resources": resources(
                volumes=({"name": "a", "emptyDir": {}},), volume_mounts=({"name": "a", "mountPath": "etc"},)
            )
        },
        "'etc' is not an absolute path",
    ),
    (
        "sidecar named like the API server",
        {"resources": resources(sidecars=({"name": "api-server", "image": "envoy:1"},))},
        f"{RS}.sidecars[0].name: 'api-server' is reserved by the listener",
    ),
    (
        "two sidecars of one name",
        {"resources": resources(sidecars=({"name": "p", "image": "a:1"}, {"name": "p", "image": "a:1"}))},
        "'p' is used by another container",
    ),
    (
        "privileged sidecar",
        {
            "resources": resources(
                sidecars=({"name": "p", "image": "a:1", "securityContext": {"privileged": True}},)
            )
        },
        "privileged containers are not allowed",
    ),
    (
        "escalating init container",
        {
            "resources": resources(
                init_containers=(
                    {"name": "i", "image": "a:1", "securityContext": {"allowPrivilegeEscalation": True}},
                )
            )
        },
        "privilege escalation is not allowed",
    ),
    (
        "capabilities added",
        {
            "resources": resources(
                sidecars=(
                    {
                        "name": "p",
                        "image": "a:1",
                        "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
                    },
                )
            )
        },
        "adding capabilities is not allowed",
    ),
    (
        "sidecar image with whitespace",
        {"resources": resources(sidecars=({"name": "p", "image": " a:1"},))},
        f"{RS}.sidecars[0].image: ' a:1' must not have leading or trailing whitespace",
    ),
    (
        "sidecar requests above limits",
        {
            "resources": resources(
                sidecars=(
                    {
                        "name": "p",
                        "image": "a:1",
                        "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}},
                    },
                )
            )
        },
        "'2' is above the limit '500m'",
    ),
    (
        "sidecar quantity nonsense",
        {
            "resources": resources(
                sidecars=({"name": "p", "image": "a:1", "resources": {"limits": {"memory": "lots"}}},)
            )
        },
        "'lots' is not a quantity",
    ),
    (
        "a reference to another deployment's password",
        {"secret_references": (SecretReference("STOLEN", "their-agent-0a1b2c3d-pg", "POSTGRES_PASSWORD"),)},
        "secret_references[0].secret_name: 'their-agent-0a1b2c3d-pg' is another deployment's Secret",
    ),
    (
        "a reference to another deployment's managed-store credentials",
        {
            "secret_references": (
                SecretReference("STOLEN", "their-agent-0a1b2c3d-store", "POSTGRES_URI_CUSTOM"),
            )
        },
        "secret_references[0].secret_name: 'their-agent-0a1b2c3d-store' is another deployment's Secret",
    ),
    (
        "a volume of another deployment's environment",
        {
            "resources": resources(
                volumes=({"name": "v", "secret": {"secretName": "x-0a1b2c3d-env-0123456789"}},)
            )
        },
        f"{RS}.volumes[0].secret.secretName: 'x-0a1b2c3d-env-0123456789' is another deployment's Secret",
    ),
    (
        "a sidecar reading another deployment's Redis password",
        {
            "resources": resources(
                sidecars=(
                    {
                        "name": "p",
                        "image": "a:1",
                        "env": [
                            {
                                "name": "P",
                                "valueFrom": {"secretKeyRef": {"name": "y-0a1b2c3d-redis", "key": "k"}},
                            }
                        ],
                    },
                )
            )
        },
        "is another deployment's Secret",
    ),
    (
        # The same rule as its Secrets: mounting the claim reads another tenant's database in a
        # shared namespace (the claim name is the StatefulSet controller's <template>-<set>-<ordinal>).
        "a volume that mounts another deployment's database",
        {
            "resources": resources(
                volumes=(
                    {
                        "name": "v",
                        "persistentVolumeClaim": {"claimName": "postgres-data-their-agent-0a1b2c3d-pg-0"},
                    },
                )
            )
        },
        f"{RS}.volumes[0].persistentVolumeClaim.claimName: 'postgres-data-their-agent-0a1b2c3d-pg-0' is "
        "another deployment's database volume",
    ),
    (
        "sidecar env name",
        {
            "resources": resources(
                sidecars=({"name": "p", "image": "a:1", "env": [{"name": "1BAD", "value": "x"}]},)
            )
        },
        "'1BAD': a valid environment variable name must consist",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_data_is_named_before_anything_is_rendered(overrides: dict[str, Any], expected: str) -> None:
    found = problems_of(**overrides)
    assert any(expected in p for p in found), found
    with pytest.raises(InvalidDeployment, match="invalid deployment data"):
        check(make_spec(**overrides))


def test_its_own_secrets_and_ordinary_ones_may_be_referenced() -> None:
    own = naming.base_name("support-agent", DEPLOYMENT_ID)
    refs = (SecretReference("OWN", f"{own}-pg", "POSTGRES_PASSWORD"), SecretReference("DB", "team-db", "uri"))
    assert problems_of(secret_references=refs) == []
    claims = (
        {"name": "own", "persistentVolumeClaim": {"claimName": f"postgres-data-{own}-pg-0"}},
        {"name": "shared", "persistentVolumeClaim": {"claimName": "team-models"}},
    )
    assert problems_of(resources=resources(volumes=claims)) == []


def test_secret_values_never_appear_in_problems() -> None:
    found = problems_of(secrets=(("BAD KEY", SecretValue("sk-do-not-print")),))
    assert found
    assert all("sk-do-not-print" not in p for p in found)


def test_good_data_passes_and_renders() -> None:
    from test_render import RESOURCE_CASES

    for rs in RESOURCE_CASES.values():
        # (The render tests also try a user label that claims to be ours; validation refuses that.)
        labels = tuple((k, v) for k, v in rs.labels if not k.startswith("app.kubernetes.io/"))
        spec = make_spec(resources=dataclasses.replace(rs, labels=labels))
        assert validate(spec) == []
        render(spec, RenderOptions())


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1.5Gi", Decimal("1.5") * 2**30),
        ("1e3", Decimal(1000)),
        ("128974848", Decimal(128974848)),
        ("129M", Decimal(129_000_000)),
        ("-1", None),
        ("1.5.2", None),
        ("Gi", None),
        ("", None),
        (True, None),
    ],
)
def test_quantities_as_kubernetes_reads_them(text: Any, value: Decimal | None) -> None:
    # k8s.io/apimachinery/pkg/api/resource: decimal SI, binary SI and exponent forms.
    assert quantity(text) == value
