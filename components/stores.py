"""Managed backing stores: RDS PostgreSQL and ElastiCache Redis, private to the cluster.

Both stores live in the private subnets, each behind a security group of its own that admits only
the cluster's security group(s) on the store's port and declares no egress (the AWS provider
removes AWS's default allow-all egress on create). Traffic is TLS-only and storage is encrypted.

Credentials: by default RDS keeps the master password in Secrets Manager (`manage_master_user_password`),
so it never enters Pulumi state; the component exports the secret's ARN. The Redis AUTH token has no
such option and is generated here; it and (in `generated` mode) the Postgres password are in state
only as Pulumi secrets. Clients verify the servers: Postgres URIs say `sslmode=verify-full` against
the RDS CA bundle, Redis URIs are `rediss://` (ElastiCache certificates chain to public Amazon roots).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.config import ElastiCacheRedis, RdsPostgres
from components.config import ManagedStores as ManagedStoresConfig

POSTGRES_PORT = 5432
REDIS_PORT = 6379
DATABASE_NAME = "langsmith"
MASTER_USERNAME = "langsmith"

# RDS master passwords: printable ASCII except / ' " @ and space
# (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html, MasterUserPassword).
# These four are also URI-unreserved, so they need no escaping.
RDS_PASSWORD_SPECIALS = "-_.~"  # noqa: S105 (an alphabet)
# ElastiCache AUTH tokens: 16-128 printable characters, the only non-alphanumerics ! & # $ ^ < > -
# (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/auth.html; CreateReplicationGroup's AuthToken).
# Anything else is InvalidParameterValue at create time. The URI percent-encodes them.
REDIS_AUTH_SPECIALS = "!&#$^<>-"
REDIS_AUTH_LENGTH = 64

# RDS's CA for new instances, and the bundle clients verify it with
# (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL.html).
RDS_CA_IDENTIFIER = "rds-ca-rsa2048-g1"
RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
RDS_CA_BUNDLE_PATH = "/etc/langsmith/rds/global-bundle.pem"
"""Where the listener finds the bundle: its pod fetches `RDS_CA_BUNDLE_URL` there at start (an init
container, `components.listener`), every Postgres URI this component builds points at it, and the
listener hands its contents on to each Agent Server (listener/README.md, managed stores)."""


@dataclass(frozen=True)
class ManagedStoresArgs:
    name_prefix: str
    """Prefix of the RDS identifier and replication group id (the stack's `name`)."""
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    client_security_group_ids: Sequence[pulumi.Input[str]]
    """Security groups (the cluster's/nodes') allowed to connect. A list of known length: one
    ingress rule is declared per group, so it cannot itself be an Output."""
    config: ManagedStoresConfig
    is_prod: bool
    tags: Mapping[str, str]
    """The stack's resource tags; each resource adds its own `Name`."""
    kms_key_arn: pulumi.Input[str] | None = None
    """A customer-managed key for storage, snapshots and Performance Insights. None: the
    AWS-managed `aws/rds` and ElastiCache default keys (free, no key policy to maintain, but
    snapshots cannot be shared across accounts)."""
    performance_insights: bool | None = None
    """Defaults to on in prod (7-day retention, the free tier), off elsewhere."""
    monitoring_role_arn: pulumi.Input[str] | None = None
    """Enables 60-second enhanced monitoring when given (the IAM role belongs to the IAM component)."""
    protect: bool | None = None
    """Pulumi `protect` on the database and the cache: no destroy or replacement until lifted.
    Defaults to `is_prod`."""


def _has_aws_provider(opts: pulumi.ResourceOptions | None) -> bool:
    if opts is None:
        return False
    if isinstance(opts.provider, aws.Provider):
        return True
    providers = opts.providers
    if isinstance(providers, Mapping):
        return "aws" in providers
    return any(isinstance(p, aws.Provider) for p in providers or ())


def postgres_family(engine_version: str) -> str:
    return f"postgres{engine_version.split('.')[0]}"


def redis_parameter_group(engine_version: str) -> str:
    major = engine_version.split(".")[0]
    # AWS names the Redis 6 default group `default.redis6.x` and later ones `default.redis<N>`.
    return "default.redis6.x" if major == "6" else f"default.redis{major}"


def postgres_uri(host: str, port: int, database: str, username: str, password: str | None = None) -> str:
    """A libpq URI that verifies the server's certificate and name against the RDS CA bundle.

    Without a password (Secrets Manager mode) the client supplies it, e.g. from PGPASSWORD.
    """
    credentials = quote(username, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
    query = urlencode({"sslmode": "verify-full", "sslrootcert": RDS_CA_BUNDLE_PATH}, safe="/")
    return f"postgresql://{credentials}@{host}:{int(port)}/{database}?{query}"


def redis_uri(host: str, port: int, token: str) -> str:
    # '#', '&', '$', '^', '<', '>' are legal in a token but not in a URI's userinfo: percent-encode
    # (redis-py's from_url unquotes the password).
    return f"rediss://:{quote(token, safe='')}@{host}:{int(port)}"


def final_snapshot_identifier(prefix: str, suffix: str) -> str:
    """`<prefix>-final-<suffix>`: RDS and ElastiCache snapshot names are 1-255 letters, digits and
    hyphens, starting with a letter, without '--' or a trailing '-'; `suffix` is random per store so a
    later store of the same name never collides with an old final snapshot (SnapshotAlreadyExists)."""
    return f"{prefix}-final-{suffix}"


class ManagedStores(pulumi.ComponentResource):
    postgres_host: pulumi.Output[str]
    postgres_port: pulumi.Output[int]
    postgres_database: pulumi.Output[str]
    postgres_username: pulumi.Output[str]
    postgres_password: pulumi.Output[str] | None
    """Secret; None in `secrets-manager` mode (read it from `postgres_master_secret_arn`)."""
    postgres_master_secret_arn: pulumi.Output[str] | None
    """The Secrets Manager secret (JSON with `username`, `password`) RDS manages; None in `generated` mode."""
    postgres_uri: pulumi.Output[str]
    """Secret. Carries the password only in `generated` mode."""
    postgres_security_group_id: pulumi.Output[str]
    redis_host: pulumi.Output[str]
    redis_port: pulumi.Output[int]
    redis_auth_token: pulumi.Output[str]
    redis_uri: pulumi.Output[str]
    redis_security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: ManagedStoresArgs, opts: pulumi.ResourceOptions | None = None):
        if not _has_aws_provider(opts):
            # Stack files disable the default aws provider; failing here names the real mistake.
            raise ValueError("ManagedStores needs the stack's aws.Provider in opts (providers={'aws': ...})")
        super().__init__("langsmith:infra:ManagedStores", name, None, opts)
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        protect = args.is_prod if args.protect is None else args.protect
        # Deleting or replacing a store deletes its data; in prod that takes lifting `protect` first.
        self._data_opts = pulumi.ResourceOptions(parent=self, protect=protect)

        pg = self._postgres(name, args.config.postgres)
        redis = self._redis(name, args.config.redis)

        self.register_outputs(
            {
                "postgres_host": self.postgres_host,
                "postgres_port": self.postgres_port,
                "postgres_database": self.postgres_database,
                "postgres_username": self.postgres_username,
                "postgres_password": self.postgres_password,
                "postgres_master_secret_arn": self.postgres_master_secret_arn,
                "postgres_uri": self.postgres_uri,
                "postgres_security_group_id": self.postgres_security_group_id,
                "postgres_instance_arn": pg.arn,
                "redis_host": self.redis_host,
                "redis_port": self.redis_port,
                "redis_auth_token": self.redis_auth_token,
                "redis_uri": self.redis_uri,
                "redis_security_group_id": self.redis_security_group_id,
                "redis_replication_group_arn": redis.arn,
            }
        )

    def _tags(self, name: str) -> dict[str, str]:
        return {**self._args.tags, "Name": name}

    def _snapshot_suffix(self, name: str, store_id: str) -> pulumi.Output[str]:
        # Random per store and stable while the store's id is: re-creating the stack (or a store of the
        # same id) later gets a new suffix instead of colliding with the old final snapshot.
        return random.RandomId(name, byte_length=4, keepers={"store": store_id}, opts=self._child).hex

    def _private_security_group(self, name: str, label: str, port: int) -> aws.ec2.SecurityGroup:
        args = self._args
        sg = aws.ec2.SecurityGroup(
            f"{name}-{label}",
            description=f"{label}: {port}/tcp from the cluster only; no egress",
            vpc_id=args.vpc_id,
            tags=self._tags(f"{args.name_prefix}-{label}"),
            opts=self._child,
        )
        for index, client in enumerate(args.client_security_group_ids):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-{label}-from-cluster-{index}",
                security_group_id=sg.id,
                referenced_security_group_id=client,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                description=f"{label} clients in the cluster",
                tags=self._tags(f"{args.name_prefix}-{label}-from-cluster-{index}"),
                opts=self._child,
            )
        return sg

    def _postgres(self, name: str, cfg: RdsPostgres) -> aws.rds.Instance:
        args = self._args
        prod = args.is_prod
        identifier = f"{args.name_prefix}-postgres"
        sg = self._private_security_group(name, "postgres", POSTGRES_PORT)
        # Subnet and parameter groups are auto-named so a change that replaces them (a new engine
        # family, say) can create the new group before deleting the old one.
        subnets = aws.rds.SubnetGroup(
            f"{name}-postgres",
            description=f"{identifier}: private subnets",
            subnet_ids=args.private_subnet_ids,
            tags=self._tags(identifier),
            opts=self._child,
        )
        params = aws.rds.ParameterGroup(
            f"{name}-postgres",
            family=postgres_family(cfg.engine_version),
            description=f"{identifier}: TLS required",
            parameters=[aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1")],
            tags=self._tags(identifier),
            opts=self._child,
        )
        generated = cfg.master_password == "generated"  # noqa: S105 (a mode)
        password = (
            random.RandomPassword(
                f"{name}-postgres-master",
                length=40,
                special=True,
                override_special=RDS_PASSWORD_SPECIALS,
                min_lower=2,
                min_upper=2,
                min_numeric=2,
                opts=self._child,
            )
            if generated
            else None
        )
        snapshot_suffix = self._snapshot_suffix(f"{name}-postgres-final", identifier) if prod else None
        performance_insights = prod if args.performance_insights is None else args.performance_insights
        instance = aws.rds.Instance(
            f"{name}-postgres",
            identifier=identifier,
            engine="postgres",
            engine_version=cfg.engine_version,
            instance_class=cfg.instance_class,
            db_name=DATABASE_NAME,
            username=MASTER_USERNAME,
            password=password.result if password is not None else None,
            manage_master_user_password=None if generated else True,
            master_user_secret_kms_key_id=None if generated else args.kms_key_arn,
            ca_cert_identifier=RDS_CA_IDENTIFIER,
            port=POSTGRES_PORT,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[sg.id],
            parameter_group_name=params.name,
            publicly_accessible=False,
            storage_type="gp3",
            allocated_storage=cfg.allocated_storage_gib,
            # At least 10% above allocated_storage: components.rules refuses anything less, as RDS does.
            max_allocated_storage=cfg.max_allocated_storage_gib,
            storage_encrypted=True,
            kms_key_id=args.kms_key_arn,
            backup_retention_period=cfg.backup_retention_days,
            copy_tags_to_snapshot=True,
            multi_az=prod if cfg.multi_az is None else cfg.multi_az,
            deletion_protection=prod if cfg.deletion_protection is None else cfg.deletion_protection,
            skip_final_snapshot=not prod,
            final_snapshot_identifier=snapshot_suffix.apply(
                lambda suffix: final_snapshot_identifier(identifier, suffix)
            )
            if snapshot_suffix is not None
            else None,
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            performance_insights_enabled=performance_insights,
            performance_insights_retention_period=7 if performance_insights else None,
            performance_insights_kms_key_id=args.kms_key_arn if performance_insights else None,
            monitoring_interval=60 if args.monitoring_role_arn is not None else 0,
            monitoring_role_arn=args.monitoring_role_arn,
            tags=self._tags(identifier),
            opts=self._data_opts,
        )
        self.postgres_host = instance.address
        self.postgres_port = instance.port
        self.postgres_database = pulumi.Output.from_input(DATABASE_NAME)
        self.postgres_username = pulumi.Output.secret(MASTER_USERNAME)
        if password is not None:
            self.postgres_password = pulumi.Output.secret(password.result)
            self.postgres_master_secret_arn = None
            self.postgres_uri = pulumi.Output.secret(
                pulumi.Output.all(instance.address, instance.port, password.result).apply(
                    lambda v: postgres_uri(v[0], v[1], DATABASE_NAME, MASTER_USERNAME, v[2])
                )
            )
        else:
            self.postgres_password = None
            self.postgres_master_secret_arn = instance.master_user_secrets.apply(
                lambda secrets: _secret_arn(secrets)
            )
            self.postgres_uri = pulumi.Output.secret(
                pulumi.Output.all(instance.address, instance.port).apply(
                    lambda v: postgres_uri(v[0], v[1], DATABASE_NAME, MASTER_USERNAME)
                )
            )
        self.postgres_security_group_id = sg.id
        return instance

    def _redis(self, name: str, cfg: ElastiCacheRedis) -> aws.elasticache.ReplicationGroup:
        args = self._args
        prod = args.is_prod
        group_id = f"{args.name_prefix}-redis"
        sg = self._private_security_group(name, "redis", REDIS_PORT)
        subnets = aws.elasticache.SubnetGroup(
            f"{name}-redis",
            description=f"{group_id}: private subnets",
            subnet_ids=args.private_subnet_ids,
            tags=self._tags(group_id),
            opts=self._child,
        )
        token = random.RandomPassword(
            f"{name}-redis-auth",
            length=REDIS_AUTH_LENGTH,
            special=True,
            override_special=REDIS_AUTH_SPECIALS,
            min_lower=2,
            min_upper=2,
            min_numeric=2,
            opts=self._child,
        )
        snapshot_suffix = self._snapshot_suffix(f"{name}-redis-final", group_id) if prod else None
        nodes = cfg.num_cache_clusters if cfg.num_cache_clusters is not None else (2 if prod else 1)
        replicated = nodes >= 2
        group = aws.elasticache.ReplicationGroup(
            f"{name}-redis",
            replication_group_id=group_id,
            description=f"{args.name_prefix}: Agent Server queue and cache",
            engine="redis",
            engine_version=cfg.engine_version,
            parameter_group_name=redis_parameter_group(cfg.engine_version),
            node_type=cfg.node_type,
            num_cache_clusters=nodes,
            automatic_failover_enabled=replicated,
            multi_az_enabled=replicated,
            port=REDIS_PORT,
            subnet_group_name=subnets.name,
            security_group_ids=[sg.id],
            at_rest_encryption_enabled=True,
            kms_key_id=args.kms_key_arn,
            transit_encryption_enabled=True,
            auth_token=token.result,
            auto_minor_version_upgrade=True,
            snapshot_retention_limit=7 if prod else 0,
            final_snapshot_identifier=snapshot_suffix.apply(
                lambda suffix: final_snapshot_identifier(group_id, suffix)
            )
            if snapshot_suffix is not None
            else None,
            tags=self._tags(group_id),
            opts=self._data_opts,
        )
        self.redis_host = group.primary_endpoint_address
        self.redis_port = group.port.apply(lambda p: int(p) if p is not None else REDIS_PORT)
        self.redis_auth_token = pulumi.Output.secret(token.result)
        self.redis_uri = pulumi.Output.secret(
            pulumi.Output.all(group.primary_endpoint_address, token.result).apply(
                lambda v: redis_uri(v[0], REDIS_PORT, v[1])
            )
        )
        self.redis_security_group_id = sg.id
        return group


def _secret_arn(secrets: object) -> str | None:
    """The ARN in `master_user_secrets[0]` (typed outputs in a real run, plain dicts under mocks)."""
    first = (list(secrets) or [None])[0] if isinstance(secrets, list | tuple) else None
    if first is None:
        return None
    if isinstance(first, Mapping):
        return first.get("secret_arn") or first.get("secretArn")
    return getattr(first, "secret_arn", None)
