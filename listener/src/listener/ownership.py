"""Whether an object in the cluster is this listener's: labels alone are not proof.

Anyone who can create objects in a namespace can copy the listener's labels. An object is the
listener's only when it carries its labels *and* its `managedFields` show the listener's own field
manager wrote it (server-side apply, or the create of a generated credential). The one exception
is a Postgres volume claim: the StatefulSet controller creates it from the listener's
`volumeClaimTemplates`, so it is recognised by the labels plus the exact name that controller gives
it (`<template>-<our StatefulSet>-<ordinal>`), whose StatefulSet name embeds the deployment id's hash.

Pure functions on plain dicts; anything that fails these checks is foreign: never written, never
deleted, reported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from listener import naming
from listener.kube import FIELD_MANAGER
from listener.render.stores import PG_DATA_VOLUME


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def written_by_listener(obj: Mapping[str, Any]) -> bool:
    """The listener's field manager wrote this object (any operation: apply, or create)."""
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    return any(isinstance(e, Mapping) and e.get("manager") == FIELD_MANAGER for e in entries)


def deployment_id(obj: Mapping[str, Any]) -> UUID | None:
    """The deployment-id label as a UUID; None when missing or not a UUID (never an exception)."""
    value = labels_of(obj).get(naming.LABEL_DEPLOYMENT_ID)
    if not value:
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def _is_claim_of_our_statefulset(obj: Mapping[str, Any], deployment: UUID) -> bool:
    if obj.get("kind") != "PersistentVolumeClaim":
        return False
    labels = labels_of(obj)
    instance = labels.get(naming.LABEL_INSTANCE, "")
    if not instance.endswith("-" + naming.id_hash(str(deployment))):
        return False
    statefulset = instance + naming.SUFFIX_POSTGRES
    name = (obj.get("metadata") or {}).get("name", "")
    return re.fullmatch(rf"{re.escape(PG_DATA_VOLUME)}-{re.escape(statefulset)}-[0-9]+", name) is not None


def owned(obj: Mapping[str, Any], listener_id: str) -> bool:
    """True only for objects this listener wrote (or its StatefulSet's claims): safe to write and
    to delete. Objects being deleted already count as not there."""
    if not naming.is_ours(obj, listener_id):
        return False
    if written_by_listener(obj):
        return True
    deployment = deployment_id(obj)
    return deployment is not None and _is_claim_of_our_statefulset(obj, deployment)


def handed_over(obj: Mapping[str, Any], deployment_label: str) -> bool:
    """Written by the listener (its field manager and labels) for this same deployment, but under
    another listener's id: the control plane moved the deployment to this listener, in a namespace
    both watch. The old listener prunes its copy under its prune rules and keeps the data; the new
    one waits for that, then reads the kept password (never writes or deletes any of it)."""
    labels = labels_of(obj)
    return (
        labels.get(naming.LABEL_MANAGED_BY) == naming.MANAGED_BY
        and labels.get(naming.LABEL_DEPLOYMENT_ID) == deployment_label
        and written_by_listener(obj)
    )


def describe(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')} {meta.get('namespace', '?')}/{meta.get('name', '?')}"
