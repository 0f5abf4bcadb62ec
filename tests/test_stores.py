"""The ManagedStores component under the recording mocks: private, encrypted, TLS, secret credentials."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import pulumi
import pulumi_aws as aws
import pytest

from components.config import ElastiCacheRedis, ManagedStores, RdsPostgres
from components.stores import REDIS_AUTH_SPECIALS, ManagedStoresArgs, postgres_family, redis_parameter_group
from components.stores import ManagedStores as ManagedStoresComponent
from tools import fake_cloud
from tools.harness import PlanResult, Registration, run_program, sanitize

TAGS = {"owner": "platform-team", "cost-center": "cc-1234", "environment": "dev"}
CLIENT_SGS = ["sg-0123456789abcdef0", "sg-0fedcba9876543210"]
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def build(
    *,
    is_prod: bool = False,
    config: ManagedStores | None = None,
    export_plain: bool = False,
    provider: bool = True,
) -> Callable[[], None]:
    def program() -> None:
        opts = (
            pulumi.ResourceOptions(providers={"aws": aws.Provider("aws", region="us-east-1")})
            if provider
            else None
        )
        stores = ManagedStoresComponent(
            "stores",
            ManagedStoresArgs(
                name_prefix="lsdp-test",
                vpc_id="vpc-0123456789abcdef0",
                private_subnet_ids=["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
                client_security_group_ids=CLIENT_SGS,
                config=config or ManagedStores(mode="managed"),
                is_prod=is_prod,
                tags={**TAGS, "environment": "prod" if is_prod else "dev"},
            ),
            opts=opts,
        )
        for name in (
            "postgres_host",
            "postgres_port",
            "postgres_database",
            "postgres_username",
            "postgres_password",
            "postgres_master_secret_arn",
            "postgres_uri",
            "redis_host",
            "redis_port",
            "redis_auth_token",
            "redis_uri",
        ):
            value = getattr(stores, name)
            if value is None:
                continue
            pulumi.export(name, value)
            if export_plain:
                # Only to read the values in a test; the component itself never unsecrets them.
                pulumi.export(f"plain_{name}", pulumi.Output.unsecret(value))

    return program


def one(result: PlanResult, typ: str) -> Registration:
    matches = [r for r in result.resources if r.type == typ]
    assert len(matches) == 1, [r.name for r in matches]
    return matches[0]


def of_type(result: PlanResult, typ: str) -> list[Registration]:
    return [r for r in result.resources if r.type == typ]


def mock_id(name: str) -> str:
    """What `resource.id` resolves to under the harness's up-mode mocks."""
    return f"{name}-id"


GENERATED = ManagedStores(mode="managed", postgres=RdsPostgres(master_password="generated"))


def fake_password(result: PlanResult, name: str) -> str:
    """The value the mocked random provider returned for the RandomPassword `name` of `result`."""
    (generated,) = [
        r for r in of_type(result, "random:index/randomPassword:RandomPassword") if r.name == name
    ]
    return fake_cloud.outputs(generated.type, name, generated.inputs, "")["result"]


@pytest.fixture(scope="module")
def dev() -> PlanResult:
    return run_program(build(), preview=False)


@pytest.fixture(scope="module")
def prod() -> PlanResult:
    return run_program(build(is_prod=True), preview=False)


def test_rds_is_encrypted_private_tls_only(dev: PlanResult) -> None:
    db = one(dev, "aws:rds/instance:Instance").inputs
    assert db["storageEncrypted"] is True
    assert db["publiclyAccessible"] is False
    assert db["engine"] == "postgres"
    assert db["engineVersion"] == "16"
    assert db["storageType"] == "gp3"
    assert (db["allocatedStorage"], db["maxAllocatedStorage"]) == (20, 100)
    assert db["backupRetentionPeriod"] == 7
    assert db["copyTagsToSnapshot"] is True
    assert db["autoMinorVersionUpgrade"] is True
    params = one(dev, "aws:rds/parameterGroup:ParameterGroup").inputs
    assert params["family"] == "postgres16"
    assert {(p["name"], p["value"]) for p in params["parameters"]} == {("rds.force_ssl", "1")}
    assert db["parameterGroupName"] == "stores-postgres"  # the group's name output under the mocks


def test_redis_is_encrypted_in_transit_and_at_rest(dev: PlanResult) -> None:
    redis = one(dev, "aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert redis["atRestEncryptionEnabled"] is True
    assert redis["transitEncryptionEnabled"] is True
    assert redis["engine"] == "redis"
    assert redis["engineVersion"] == "7.1"
    assert redis["parameterGroupName"] == "default.redis7"
    assert redis["port"] == 6379


@pytest.mark.parametrize(("label", "port"), [("postgres", 5432), ("redis", 6379)])
def test_store_security_groups_admit_only_the_cluster_on_the_store_port(
    dev: PlanResult, label: str, port: int
) -> None:
    sg = next(r for r in of_type(dev, "aws:ec2/securityGroup:SecurityGroup") if r.name == f"stores-{label}")
    # No inline rules at all: the provider then strips AWS's default allow-all egress.
    assert "egress" not in sg.inputs
    assert "ingress" not in sg.inputs
    rules = [
        r
        for r in of_type(dev, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if sg.urn in r.dependencies
    ]
    assert sorted(r.inputs["referencedSecurityGroupId"] for r in rules) == sorted(CLIENT_SGS)
    for rule in rules:
        assert rule.inputs["securityGroupId"] == mock_id(sg.name)
        assert (rule.inputs["ipProtocol"], rule.inputs["fromPort"], rule.inputs["toPort"]) == (
            "tcp",
            port,
            port,
        )
        assert not {"cidrIpv4", "cidrIpv6", "prefixListId"} & set(rule.inputs)
    assert not of_type(dev, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert not of_type(dev, "aws:ec2/securityGroupRule:SecurityGroupRule")


def test_stores_use_their_own_security_groups_and_private_subnets(dev: PlanResult) -> None:
    db = one(dev, "aws:rds/instance:Instance").inputs
    redis = one(dev, "aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert db["vpcSecurityGroupIds"] == [mock_id("stores-postgres")]
    assert redis["securityGroupIds"] == [mock_id("stores-redis")]
    for typ in ("aws:rds/subnetGroup:SubnetGroup", "aws:elasticache/subnetGroup:SubnetGroup"):
        assert one(dev, typ).inputs["subnetIds"] == ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]


def test_dev_defaults_are_cheap_and_disposable(dev: PlanResult) -> None:
    db = one(dev, "aws:rds/instance:Instance").inputs
    assert db["multiAz"] is False
    assert db["deletionProtection"] is False
    assert db["skipFinalSnapshot"] is True
    assert "finalSnapshotIdentifier" not in db
    assert db["performanceInsightsEnabled"] is False
    redis = one(dev, "aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert redis["numCacheClusters"] == 1
    assert redis["automaticFailoverEnabled"] is False
    assert redis["multiAzEnabled"] is False
    assert redis["snapshotRetentionLimit"] == 0


def test_prod_defaults_are_highly_available_and_protected(prod: PlanResult) -> None:
    db = one(prod, "aws:rds/instance:Instance").inputs
    assert db["multiAz"] is True
    assert db["deletionProtection"] is True
    assert db["skipFinalSnapshot"] is False
    assert re.fullmatch(r"lsdp-test-postgres-final-[0-9a-f]{8}", db["finalSnapshotIdentifier"])
    assert db["performanceInsightsEnabled"] is True
    assert db["performanceInsightsRetentionPeriod"] == 7
    redis = one(prod, "aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert redis["numCacheClusters"] == 2
    assert redis["automaticFailoverEnabled"] is True
    assert redis["multiAzEnabled"] is True
    assert redis["snapshotRetentionLimit"] == 7
    assert re.fullmatch(r"lsdp-test-redis-final-[0-9a-f]{8}", redis["finalSnapshotIdentifier"])


def test_explicit_config_overrides_the_environment_defaults() -> None:
    config = ManagedStores(
        mode="managed",
        postgres=RdsPostgres(multi_az=False, deletion_protection=False, engine_version="17.2"),
        redis=ElastiCacheRedis(num_cache_clusters=3, engine_version="6.2"),
    )
    result = run_program(build(is_prod=True, config=config), preview=False)
    db = one(result, "aws:rds/instance:Instance").inputs
    assert (db["multiAz"], db["deletionProtection"]) == (False, False)
    assert one(result, "aws:rds/parameterGroup:ParameterGroup").inputs["family"] == "postgres17"
    redis = one(result, "aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert (redis["numCacheClusters"], redis["automaticFailoverEnabled"]) == (3, True)
    assert redis["parameterGroupName"] == "default.redis6.x"

    dev_ha = run_program(
        build(config=ManagedStores(mode="managed", redis=ElastiCacheRedis(num_cache_clusters=2))),
        preview=False,
    )
    redis = one(dev_ha, "aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert (redis["numCacheClusters"], redis["automaticFailoverEnabled"], redis["multiAzEnabled"]) == (
        2,
        True,
        True,
    )


def test_generated_postgres_password_is_rds_safe() -> None:
    result = run_program(build(config=GENERATED), preview=False)
    (master,) = [
        r.inputs
        for r in of_type(result, "random:index/randomPassword:RandomPassword")
        if "postgres" in r.name
    ]
    # RDS master passwords: printable ASCII except / ' " @ and space (CreateDBInstance, MasterUserPassword).
    assert not set(master["overrideSpecial"]) & set("/'\"@ ")
    assert master["special"] is True
    assert 8 <= master["length"] <= 128


# ElastiCache AUTH tokens (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/auth.html): 16-128
# printable characters; the only non-alphanumeric ones allowed are ! & # $ ^ < > -.
ELASTICACHE_TOKEN_ALPHABET = set(string.ascii_letters + string.digits + "!&#$^<>-")


def test_redis_auth_token_uses_only_what_elasticache_accepts(dev: PlanResult) -> None:
    (token,) = [
        r.inputs for r in of_type(dev, "random:index/randomPassword:RandomPassword") if "redis" in r.name
    ]
    assert token["special"] is True
    # The random provider draws specials only from overrideSpecial, letters and digits otherwise.
    assert set(token["overrideSpecial"]) <= ELASTICACHE_TOKEN_ALPHABET
    assert set(token["overrideSpecial"]) == set(REDIS_AUTH_SPECIALS)
    assert 16 <= token["length"] <= 128
    generated = fake_password(dev, "stores-redis-auth")
    assert len(generated) == token["length"]
    assert set(generated) <= ELASTICACHE_TOKEN_ALPHABET


def test_credentials_are_secret_inputs_and_secret_outputs() -> None:
    result = run_program(build(config=GENERATED), preview=False)
    db = one(result, "aws:rds/instance:Instance").inputs
    redis = one(result, "aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert isinstance(db["password"], dict)
    assert db["password"].get(SECRET_SIG)
    assert redis["authToken"].get(SECRET_SIG)
    for name in (
        "postgres_username",
        "postgres_password",
        "postgres_uri",
        "redis_auth_token",
        "redis_uri",
    ):
        assert result.outputs[name] == "<secret>", name
    assert result.outputs["postgres_port"] == 5432
    assert result.outputs["postgres_database"] == "langsmith"
    assert result.outputs["redis_port"] == 6379


def test_by_default_rds_keeps_the_master_password_out_of_state(dev: PlanResult) -> None:
    db = one(dev, "aws:rds/instance:Instance").inputs
    # manage_master_user_password: RDS generates and stores the password in Secrets Manager, so it
    # is never an input (CreateDBInstance refuses both MasterUserPassword and ManageMasterUserPassword).
    assert db["manageMasterUserPassword"] is True
    assert "password" not in db
    assert not [r for r in of_type(dev, "random:index/randomPassword:RandomPassword") if "postgres" in r.name]
    assert dev.outputs["postgres_master_secret_arn"].startswith("arn:aws:secretsmanager:us-east-1:")
    assert "postgres_password" not in dev.outputs


def test_plaintext_credentials_never_appear_in_inputs_or_outputs() -> None:
    result = run_program(build(config=GENERATED), preview=False)
    password = fake_password(result, "stores-postgres-master")
    token = fake_password(result, "stores-redis-auth")
    assert len(password) == 40
    assert len(token) == 64
    dump = json.dumps(
        {"resources": [sanitize(dict(r.inputs)) for r in result.resources], "outputs": result.outputs}
    )
    assert password not in dump
    assert token not in dump


def test_uris_verify_the_server_and_carry_the_generated_credentials() -> None:
    result = run_program(build(config=GENERATED, export_plain=True), preview=False)
    out = result.outputs
    password = fake_password(result, "stores-postgres-master")
    token = fake_password(result, "stores-redis-auth")
    host = out["plain_postgres_host"]
    assert host.endswith(".rds.amazonaws.com")
    assert out["plain_postgres_password"] == password
    pg = urlsplit(out["plain_postgres_uri"])
    assert (pg.scheme, pg.hostname, pg.port, pg.path) == ("postgresql", host, 5432, "/langsmith")
    assert (unquote(pg.username or ""), unquote(pg.password or "")) == ("langsmith", password)
    # libpq: verify-full checks the certificate chain against sslrootcert AND the host name.
    assert dict(p.split("=", 1) for p in pg.query.split("&")) == {
        "sslmode": "verify-full",
        "sslrootcert": "/etc/langsmith/rds/global-bundle.pem",
    }
    assert one(result, "aws:rds/instance:Instance").inputs["caCertIdentifier"] == "rds-ca-rsa2048-g1"
    redis = urlsplit(out["plain_redis_uri"])
    assert (redis.scheme, redis.hostname, redis.port) == ("rediss", out["plain_redis_host"], 6379)
    # Token characters such as '#' and '&' would end the URI's userinfo: they must round-trip encoded.
    assert unquote(redis.password or "") == token
    assert out["plain_redis_auth_token"] == token


def test_redis_uri_round_trips_every_allowed_special() -> None:
    from components.stores import redis_uri

    token = "Ab1!&#$^<>-" * 2
    parsed = urlsplit(redis_uri("h.cache.amazonaws.com", 6379, token))
    assert (parsed.hostname, parsed.port, unquote(parsed.password or "")) == (
        "h.cache.amazonaws.com",
        6379,
        token,
    )


def test_secrets_manager_mode_uri_has_no_password() -> None:
    result = run_program(build(export_plain=True), preview=False)
    uri = urlsplit(result.outputs["plain_postgres_uri"])
    assert uri.username == "langsmith"
    assert uri.password is None
    assert "sslmode=verify-full" in uri.query


def test_final_snapshot_names_are_unique_per_store_and_valid_for_aws(prod: PlanResult) -> None:
    ids = {r.name: r.inputs for r in of_type(prod, "random:index/randomId:RandomId")}
    # A new suffix whenever the store's id is new: the old final snapshot is never in the way.
    assert ids["stores-postgres-final"]["keepers"] == {"store": "lsdp-test-postgres"}
    assert ids["stores-redis-final"]["keepers"] == {"store": "lsdp-test-redis"}
    # RDS/ElastiCache snapshot ids: letter first, letters/digits/hyphens, no '--', no trailing '-', <= 255.
    valid = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{0,253}[A-Za-z0-9]$")
    db = one(prod, "aws:rds/instance:Instance").inputs["finalSnapshotIdentifier"]
    redis = one(prod, "aws:elasticache/replicationGroup:ReplicationGroup").inputs["finalSnapshotIdentifier"]
    assert valid.match(db)
    assert valid.match(redis)
    assert db != redis


def test_prod_stores_are_protected(prod: PlanResult, dev: PlanResult) -> None:
    for typ in ("aws:rds/instance:Instance", "aws:elasticache/replicationGroup:ReplicationGroup"):
        assert one(prod, typ).protect is True
        assert one(dev, typ).protect is False


def test_every_child_is_parented_tagged_and_uses_the_explicit_provider(dev: PlanResult) -> None:
    component = one(dev, "langsmith:infra:ManagedStores")
    provider = one(dev, "pulumi:providers:aws")
    children = [r for r in dev.resources if r.parent == component.urn]
    assert {r.urn for r in children} == {
        r.urn for r in dev.resources if r.urn not in (component.urn, provider.urn)
    }
    for child in children:
        if child.type.startswith("aws:"):
            assert child.provider.startswith(provider.urn), child.name
            tags = child.inputs["tags"]
            assert {k: tags[k] for k in TAGS} == TAGS, child.name
            assert tags["Name"].startswith("lsdp-test-"), child.name


def test_preview_with_unknown_outputs_registers_the_same_graph(dev: PlanResult) -> None:
    preview = run_program(build(), preview=True)
    assert sorted(r.urn for r in preview.resources) == sorted(r.urn for r in dev.resources)
    assert preview.outputs["postgres_host"] == "<unknown>"
    assert preview.outputs["postgres_uri"] == "<secret>"


def test_an_aws_provider_is_required() -> None:
    with pytest.raises(ValueError, match=r"needs the stack.s aws\.Provider"):
        run_program(build(provider=False), preview=True)


@pytest.mark.parametrize(
    ("version", "family"), [("16", "postgres16"), ("16.4", "postgres16"), ("17", "postgres17")]
)
def test_postgres_family(version: str, family: str) -> None:
    assert postgres_family(version) == family


@pytest.mark.parametrize(("version", "group"), [("7.1", "default.redis7"), ("6.2", "default.redis6.x")])
def test_redis_parameter_group(version: str, group: str) -> None:
    assert redis_parameter_group(version) == group
