"""Deterministic names, ownership labels and the spec-hash annotation for everything the listener renders.

Names must be unique per control-plane deployment so several listeners (or several deployments with
similar names) can share one namespace, and stable so server-side apply always targets the same
object. Selectors must never contain anything that changes per revision: they are immutable.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

MANAGED_BY: Final = "langsmith-dataplane-listener"
PART_OF: Final = "langsmith-dataplane"

LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_LISTENER_ID: Final = "langsmith-dataplane/listener-id"
LABEL_DEPLOYMENT_ID: Final = "langsmith-dataplane/deployment-id"
LABEL_REVISION_ID: Final = "langsmith-dataplane/revision-id"

ANNOTATION_SPEC_HASH: Final = "langsmith-dataplane/spec-hash"
ANNOTATION_CONFIG_HASH: Final = "langsmith-dataplane/config-hash"
"""On pod templates: hash of the env Secret, so changed values roll the pods (envFrom never does)."""
ANNOTATION_CREATE_ONLY: Final = "langsmith-dataplane/create-only"
"""On generated credentials: created once (409 means someone already did), never applied over."""
ANNOTATION_DEPLOYMENT_NAME: Final = "langsmith-dataplane/deployment-name"
"""The original (unslugged) control-plane name, for humans running kubectl."""

OWNERSHIP_LABELS: Final = frozenset(
    {
        LABEL_MANAGED_BY,
        LABEL_NAME,
        LABEL_INSTANCE,
        LABEL_COMPONENT,
        LABEL_PART_OF,
        LABEL_LISTENER_ID,
        LABEL_DEPLOYMENT_ID,
        LABEL_REVISION_ID,
    }
)

# Suffixes appended to the base name; the longest decides how much room the slug gets.
SUFFIX_API: Final = "-api"
SUFFIX_QUEUE: Final = "-queue"
SUFFIX_POSTGRES: Final = "-pg"
SUFFIX_REDIS: Final = "-redis"
SUFFIX_ENV: Final = "-env"
SUFFIX_STORE: Final = "-store"
"""Managed stores: the deployment's credentials Secret (no longer than `-queue`, so no name shrinks)."""
_LONGEST_SUFFIX: Final = max(
    len(s) for s in (SUFFIX_API, SUFFIX_QUEUE, SUFFIX_POSTGRES, SUFFIX_REDIS, SUFFIX_ENV, SUFFIX_STORE)
)

# A StatefulSet's pods carry `controller-revision-hash: <name>-<10 chars>` and that label value is
# capped at 63, so full names stay <= 52; Services additionally need a leading letter (RFC 1035).
MAX_OBJECT_NAME: Final = 52
_ID_HASH_LEN: Final = 8
MAX_SLUG: Final = MAX_OBJECT_NAME - _LONGEST_SUFFIX - 1 - _ID_HASH_LEN

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def is_dns_label(name: str, max_len: int = 63) -> bool:
    """RFC 1035 label (the strictest of Kubernetes' name rules, required for Services)."""
    return 0 < len(name) <= max_len and bool(_DNS_LABEL.match(name))


def slugify(name: str, max_len: int = MAX_SLUG) -> str:
    """Lower-case ASCII `[a-z0-9-]`, starting with a letter, at most `max_len` characters.

    Unicode is folded to its closest ASCII (`Ünïcode` → `unicode`) before anything else is dropped,
    so names stay recognisable; an empty result becomes `agent`.
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"a-{slug}".rstrip("-") if slug else "agent"
    return slug[:max_len].rstrip("-")


def id_hash(value: str, length: int = _ID_HASH_LEN) -> str:
    """Leading hex of sha256(value): uniform even for ids that share a prefix (emulators count up)."""
    return hashlib.sha256(value.encode()).hexdigest()[:length]


def base_name(deployment_name: str, deployment_id: str) -> str:
    """`<slug>-<8 hex of sha256(deployment id)>`: the stem every object of one deployment shares."""
    return f"{slugify(deployment_name)}-{id_hash(deployment_id)}"


@dataclass(frozen=True)
class ObjectNames:
    """Every object name of one deployment; all are RFC 1035 labels of at most 52 characters."""

    base: str
    api: str
    queue: str
    postgres: str
    redis: str
    env_secret: str
    """The prefix of the env Secrets; each is `<env_secret>-<hash of its contents>`."""
    postgres_secret: str
    redis_secret: str
    store_secret: str
    """Managed stores: the credentials Secret the pods read their store variables from."""

    @classmethod
    def of(cls, deployment_name: str, deployment_id: str) -> ObjectNames:
        base = base_name(deployment_name, deployment_id)
        return cls(
            base=base,
            api=base + SUFFIX_API,
            queue=base + SUFFIX_QUEUE,
            postgres=base + SUFFIX_POSTGRES,
            redis=base + SUFFIX_REDIS,
            env_secret=base + SUFFIX_ENV,
            # The Postgres password Secret shares the StatefulSet's name: different kinds never collide.
            postgres_secret=base + SUFFIX_POSTGRES,
            redis_secret=base + SUFFIX_REDIS,
            store_secret=base + SUFFIX_STORE,
        )


def label_value(value: str) -> str:
    """`value` if it is a valid label value, else a readable, hashed stand-in that is.

    Control-plane ids are UUIDs and pass through unchanged; anything else is still unique per input.
    """
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:50].strip("-_.")
    return f"{cleaned}-{id_hash(value, 12)}" if cleaned else id_hash(value, 12)


def selector_labels(instance: str, component: str, deployment_id: str) -> dict[str, str]:
    """Labels that identify one workload's pods; never anything that changes between revisions."""
    return {
        LABEL_COMPONENT: component,
        LABEL_INSTANCE: instance,
        LABEL_DEPLOYMENT_ID: label_value(deployment_id),
    }


def ownership_labels(
    *, instance: str, component: str, listener_id: str, deployment_id: str, revision_id: str
) -> dict[str, str]:
    """The labels every rendered object carries (inventory for GC, and `kubectl get -l` for humans)."""
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PART_OF: PART_OF,
        LABEL_NAME: "agent-server",
        LABEL_LISTENER_ID: label_value(listener_id),
        LABEL_REVISION_ID: label_value(revision_id),
        **selector_labels(instance, component, deployment_id),
    }
    return dict(sorted(labels.items()))


def merge_labels(user: Mapping[str, str], ours: Mapping[str, str]) -> dict[str, str]:
    """User labels first, ours on top: a user label can never hijack ownership or selectors."""
    return dict(sorted({**{k: v for k, v in user.items() if k not in OWNERSHIP_LABELS}, **ours}.items()))


def ownership_selector(listener_id: str, deployment_id: str | None = None) -> dict[str, str]:
    """matchLabels for the listener's inventory (all its objects, or one deployment's)."""
    sel = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_LISTENER_ID: label_value(listener_id)}
    if deployment_id is not None:
        sel[LABEL_DEPLOYMENT_ID] = label_value(deployment_id)
    return sel


def selector_string(match_labels: Mapping[str, str]) -> str:
    """The `labelSelector=` query form of a matchLabels dict (sorted, so it is stable)."""
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


def is_ours(obj: Mapping[str, Any], listener_id: str) -> bool:
    """True only for objects this listener manages; pruning must never touch anything else."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_MANAGED_BY) == MANAGED_BY and labels.get(LABEL_LISTENER_ID) == label_value(
        listener_id
    )


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_hash(obj: Mapping[str, Any]) -> str:
    """sha256 of the object's canonical JSON, ignoring its own spec-hash annotation."""
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != ANNOTATION_SPEC_HASH}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return hashlib.sha256(canonical_json({**obj, "metadata": meta}).encode()).hexdigest()


def with_spec_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of `obj` with the spec-hash annotation set (call last, after every other change)."""
    meta = dict(obj.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_SPEC_HASH: spec_hash(obj)}
    return {**obj, "metadata": meta}
