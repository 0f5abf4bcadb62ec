"""Per-deployment isolation in a shared Redis: a key prefix, and optionally an ACL user confined to it.

* `prefix` (works everywhere, including ElastiCache): each Agent Server gets `REDIS_KEY_PREFIX` and
  the shared connection. That keeps deployments' keys apart by convention only: they share
  credentials, so one deployment *could* read another's keys.
* `acl` (Redis >= 6.2 that accepts `ACL SETUSER`; not ElastiCache, which manages users through its own
  API): each deployment also gets an ACL user limited to `~<prefix>*` keys and `&<prefix>*` channels,
  without admin or dangerous commands (no FLUSHALL, KEYS, CONFIG, ...).

Ownership: before creating anything the listener records the deployment in the hash
`langsmith-dataplane:owners` (outside every prefix, so no deployment can touch it). Keys and users are
deleted only for deployments recorded there as this listener's. Teardown removes keys with bounded
`SCAN` + `UNLINK` batches and says when more remain, so one huge keyspace never stalls a cycle.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import redis
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoPermissionError,
    RedisError,
    ResponseError,
    TimeoutError,
)

from listener.managed.credentials import Credentials
from listener.managed.errors import (
    ForeignObject,
    InsufficientPrivileges,
    NotProvisioned,
    ProvisioningFailed,
    StoreAuthError,
    StoreBusy,
    StoreConfigError,
    StoreError,
    StoreTLSError,
    StoreUnreachable,
    UnsupportedServer,
)
from listener.managed.names import REDIS_OWNERS_KEY, Ownership, StoreNames
from listener.managed.postgres import Retention
from listener.managed.targets import RedisIsolation, RedisTarget

log = logging.getLogger(__name__)

MIN_ACL_VERSION: Final = (6, 2)
"""Pub/sub channel patterns (`&pattern`) in ACL rules arrived in Redis 6.2."""
SCAN_COUNT: Final = 500
DEFAULT_MAX_KEYS_PER_TEARDOWN: Final = 100_000
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def match_pattern(prefix: str) -> str:
    """A SCAN MATCH / ACL pattern for every key starting with `prefix` (glob characters escaped)."""
    return _GLOB_SPECIAL.sub(r"\\\1", prefix) + "*"


def password_rule(password: str) -> str:
    """`#<sha256>`: Redis stores only the hash anyway, and the plaintext never crosses the wire."""
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def acl_rules(names: StoreNames, password: str) -> list[str]:
    """`ACL SETUSER` rules for a deployment's user. No `resetpass`: re-applying keeps a password that a
    rotation added; only `finish_rotation` drops the old one."""
    pattern = match_pattern(names.redis_prefix)
    return [
        "on",
        password_rule(password),
        "resetkeys",
        f"~{pattern}",
        "resetchannels",
        f"&{pattern}",
        "nocommands",
        "+@all",
        "-@admin",
        "-@dangerous",
        # Scripts and functions are server-wide: flushing, killing or replacing them reaches every
        # deployment. EVAL/EVALSHA/SCRIPT LOAD and FCALL (checked per key) stay.
        "-script|flush",
        "-script|kill",
        "-function",
    ]


@dataclass(frozen=True)
class RedisTeardown:
    kept: tuple[str, ...]
    removed: tuple[str, ...]
    foreign: tuple[str, ...]
    keys_deleted: int
    complete: bool
    """False when the key budget ran out before the prefix was empty: call teardown again."""


class RedisStore:
    """Isolation for one listener's deployments in one Redis; a bounded, blocking connection pool."""

    def __init__(
        self,
        admin_uri: str,
        *,
        listener_id: str,
        isolation: RedisIsolation = "prefix",
        pool_size: int = 2,
        timeout: float = 10.0,
        max_keys_per_teardown: int = DEFAULT_MAX_KEYS_PER_TEARDOWN,
    ):
        if isolation not in ("prefix", "acl"):
            raise StoreConfigError("Redis", f"isolation must be 'prefix' or 'acl', got {isolation!r}")
        self.target = RedisTarget.from_admin_uri(admin_uri)
        self.store = self.target.display
        self.listener_id = listener_id
        self.isolation: RedisIsolation = isolation
        self._max_keys = max_keys_per_teardown
        self._secrets = [admin_uri, *(p for p in [_uri_password(admin_uri)] if p)]
        try:
            pool = redis.BlockingConnectionPool.from_url(
                admin_uri,
                max_connections=pool_size,
                timeout=timeout,  # wait at most this long for a free connection
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                decode_responses=True,
            )
        except ValueError as error:  # redis-py's parsing of the URI's query parameters
            raise StoreConfigError(
                "Redis (LISTENER_REDIS_ADMIN_URI)", f"is not usable: {error}", secrets=self._secrets
            ) from None
        self._client = redis.Redis(connection_pool=pool)
        self._checked = False

    # -- public API -------------------------------------------------------------------------------

    def check(self) -> None:
        with self._translate("check"):
            self._client.ping()
            if self.isolation == "acl":
                self._check_acl()
            self._checked = True

    def ensure(self, deployment_id: str, credentials: Credentials) -> None:
        names = StoreNames.of(deployment_id)
        expected = Ownership(self.listener_id, deployment_id)
        with self._translate("provision"):
            if not self._checked:
                self.check()
            self._claim(names, expected)
            if self.isolation == "acl":
                self._client.execute_command(
                    "ACL", "SETUSER", names.redis_user, *acl_rules(names, credentials.password.value)
                )

    def teardown(self, deployment_id: str, retention: Retention) -> RedisTeardown:
        if retention not in ("retain", "delete"):
            raise ValueError(f"retention must be 'retain' or 'delete', got {retention!r}")
        names = StoreNames.of(deployment_id)
        expected = Ownership(self.listener_id, deployment_id)
        prefix = f"keys {names.redis_prefix}*"
        user = f"ACL user {names.redis_user}"
        with self._translate("teardown"):
            record = self._record(names)
            if record is None:
                return RedisTeardown((), (), (), 0, True)  # never provisioned by anyone we know
            if record != expected:
                return RedisTeardown((), (), (prefix, user), 0, True)
            has_user = self._user_exists(names.redis_user)
            if retention == "retain":
                if has_user:
                    self._client.execute_command("ACL", "SETUSER", names.redis_user, "off")
                kept = (prefix, *([f"{user} (disabled)"] if has_user else []))
                return RedisTeardown(kept, (), (), 0, True)
            if has_user:
                # First, so the deployment cannot write new keys while they are being removed.
                self._client.execute_command("ACL", "DELUSER", names.redis_user)
            deleted, complete = self._delete_keys(names.redis_prefix)
            if complete:
                self._client.hdel(REDIS_OWNERS_KEY, names.redis_user)
            removed = (*([user] if has_user else []), f"{deleted} keys under {names.redis_prefix}")
            return RedisTeardown((), removed, (), deleted, complete)

    def begin_rotation(self, deployment_id: str, new: Credentials) -> None:
        """ACL mode: add `new`'s password next to the current one (a Redis user may have several)."""
        if self.isolation != "acl":
            return
        names = StoreNames.of(deployment_id)
        with self._translate("rotation"):
            self._require_user(names, deployment_id)
            self._client.execute_command(
                "ACL", "SETUSER", names.redis_user, password_rule(new.password.value)
            )

    def finish_rotation(self, deployment_id: str, active: Credentials) -> None:
        """ACL mode: keep only `active`'s password."""
        if self.isolation != "acl":
            return
        names = StoreNames.of(deployment_id)
        with self._translate("rotation"):
            self._require_user(names, deployment_id)
            self._client.execute_command(
                "ACL", "SETUSER", names.redis_user, "resetpass", password_rule(active.password.value)
            )

    def owner_of(self, deployment_id: str) -> Ownership | None:
        with self._translate("inspect"):
            return self._record(StoreNames.of(deployment_id))

    def close(self) -> None:
        self._client.close()
        self._client.connection_pool.disconnect()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------

    def _check_acl(self) -> None:
        version = tuple(
            int(p) for p in str(self._client.info("server").get("redis_version", "0")).split(".")[:2]
        )
        if version < MIN_ACL_VERSION:
            raise UnsupportedServer(
                self.store,
                f"Redis {'.'.join(map(str, version))} has no ACL channel rules; "
                "LISTENER_REDIS_ISOLATION=acl needs Redis 6.2 or later (or use prefix)",
            )
        try:
            self._client.execute_command("ACL", "WHOAMI")
            self._client.execute_command("ACL", "GETUSER", "default")
        except NoPermissionError as error:
            raise InsufficientPrivileges(
                self.store,
                f"the admin user may not manage ACL users ({error}); LISTENER_REDIS_ISOLATION=acl needs "
                "ACL SETUSER/GETUSER/DELUSER (+@admin), or use prefix",
                secrets=self._secrets,
            ) from None
        except ResponseError as error:
            raise StoreConfigError(
                self.store,
                f"the server refuses ACL commands ({error}); ElastiCache manages users through its own API. "
                "Use LISTENER_REDIS_ISOLATION=prefix, or give the admin user +@admin (ACL SETUSER)",
                secrets=self._secrets,
            ) from None

    def _record(self, names: StoreNames) -> Ownership | None:
        value = self._client.hget(REDIS_OWNERS_KEY, names.redis_user)
        return Ownership.decode(value) if isinstance(value, str) else None

    def _claim(self, names: StoreNames, expected: Ownership) -> None:
        # HSETNX: of two racing listeners exactly one record wins; a record is never overwritten.
        self._client.hsetnx(REDIS_OWNERS_KEY, names.redis_user, expected.encode())
        record = self._record(names)
        if record != expected:
            raise ForeignObject(
                self.store,
                f"prefix {names.redis_prefix!r} is recorded for {_who(record)}; the listener never touches it",
            )
        if self.isolation == "acl" and self._user_exists(names.redis_user) and not self._user_is_ours(names):
            raise ForeignObject(
                self.store,
                f"ACL user {names.redis_user!r} exists with other key patterns than {names.redis_prefix}*; "
                "it was not created by this listener and is left alone",
            )

    def _user_exists(self, user: str) -> bool:
        try:
            return self._client.execute_command("ACL", "GETUSER", user) is not None
        except ResponseError:
            return False  # no ACLs on this server: no user to find

    def _user_is_ours(self, names: StoreNames) -> bool:
        info = self._client.execute_command("ACL", "GETUSER", names.redis_user)
        fields = (
            dict(zip(info[::2], info[1::2], strict=False)) if isinstance(info, list) else dict(info or {})
        )
        keys = fields.get("keys")
        keys = keys if isinstance(keys, str) else " ".join(keys or [])
        return keys.strip() in ("", f"~{match_pattern(names.redis_prefix)}")

    def _require_user(self, names: StoreNames, deployment_id: str) -> None:
        if self._record(names) != Ownership(self.listener_id, deployment_id) or not self._user_exists(
            names.redis_user
        ):
            raise NotProvisioned(
                self.store,
                f"deployment {deployment_id!r} has no ACL user of this listener; provision it first",
            )

    def _delete_keys(self, prefix: str) -> tuple[int, bool]:
        """`SCAN MATCH prefix*` + `UNLINK` in batches, up to the key budget; (deleted, finished)."""
        deleted, cursor = 0, 0
        while True:
            cursor, keys = self._client.scan(cursor=cursor, match=match_pattern(prefix), count=SCAN_COUNT)
            if keys:
                deleted += int(self._client.unlink(*keys))
            if int(cursor) == 0:
                return deleted, True
            if deleted >= self._max_keys:
                return deleted, False

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except AuthenticationError as error:
            self._checked = False
            raise StoreAuthError(
                self.store,
                f"the admin credentials were rejected: {error}. Check LISTENER_REDIS_ADMIN_URI",
                secrets=self._secrets,
            ) from None
        except (ConnectionError, TimeoutError) as error:
            self._checked = False
            message = str(error)
            if any(word in message.lower() for word in ("ssl", "certificate", "tls")):
                raise StoreTLSError(
                    self.store,
                    f"TLS failed: {message}. ElastiCache with in-transit encryption needs rediss://",
                    secrets=self._secrets,
                ) from None
            if self.target.scheme == "rediss" and isinstance(error, TimeoutError):
                message += " (with rediss:// a server that does not speak TLS lets the handshake hang until this timeout)"
            if "No connection available" in message:
                raise StoreBusy(
                    self.store, f"{action}: every admin connection is busy; retrying next cycle"
                ) from None
            raise StoreUnreachable(
                self.store,
                f"cannot connect: {message}. Check the host and port, and that the listener's pods may reach "
                "Redis (security group, NetworkPolicy egress)",
                secrets=self._secrets,
            ) from None
        except ResponseError as error:
            message = str(error)
            if message.startswith("NOPERM"):
                raise InsufficientPrivileges(
                    self.store,
                    f"{action}: {message}. The admin user needs +@all on ~* (and ACL SETUSER/DELUSER for acl "
                    "isolation)",
                    secrets=self._secrets,
                ) from None
            if "unknown command" in message.lower():
                raise StoreConfigError(
                    self.store,
                    f"{action}: {message}. The server lacks this command (ACL isolation needs ACL SETUSER); "
                    "use LISTENER_REDIS_ISOLATION=prefix",
                    secrets=self._secrets,
                ) from None
            raise ProvisioningFailed(self.store, f"{action}: {message}", secrets=self._secrets) from None
        except RedisError as error:
            raise ProvisioningFailed(self.store, f"{action}: {error}", secrets=self._secrets) from None


def _who(record: Ownership | None) -> str:
    if record is None:
        return "nobody this listener can read"
    return f"listener {record.listener_id}, deployment {record.deployment_id!r}"


def _uri_password(uri: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(uri).password
    except ValueError:
        return None
    return unquote(password) if password else None
