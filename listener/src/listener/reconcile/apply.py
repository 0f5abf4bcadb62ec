"""Apply: write one revision's objects with server-side apply, and turn API-server answers into outcomes.

* Before anything is written, every object is looked at (`survey`, from the inventory's lists): an existing object that is not the
  listener's (labels *and* field manager, `listener.ownership`) stops the rollout with a reason.
* Generated credentials are created once (`create`; a 409 means another writer got there first,
  and the revision is re-rendered with its value) and never applied over.
* When an autoscaler takes `spec.replicas` over, the field is handed over first (server-side apply's
  documented ownership transfer) so the running replica count is not reset to 1.
* A new route's (host, path) must not be served by another route already: the newcomer is refused.
* `classify` sorts a failed call: the API server's 4xx rejections (invalid, forbidden, kind not
  served) fail the revision with the server's own message; conflicts, throttling, 5xx and an
  unreachable server are retried with backoff while the rollout deadline keeps running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from listener import naming, ownership
from listener.kube import FIELD_MANAGER, HANDOVER_FIELD_MANAGER, Cluster, ClusterError

if TYPE_CHECKING:
    from listener.reconcile.inventory import Inventory

REJECTED_STATUSES = frozenset({400, 403, 404, 405, 406, 410, 413, 415, 422})
"""Answers that repeat for the same request: retrying cannot help, so the revision fails."""

KIND_HINTS = {
    "HTTPRoute": "install the Gateway API CRDs, or set LISTENER_ROUTING to ingress or none",
    "ScaledObject": "install KEDA, or set LISTENER_AUTOSCALER=hpa",
}

Key = tuple[str, str]
"""(kind, name) within the deployment's namespace."""
Live = dict[Key, dict[str, Any] | None]


class Rejected(Exception):
    """This revision cannot succeed as it is: fail it with `reason` (and wait for the control plane)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class Retry(Exception):
    """A transient problem: try again after a backoff, the rollout deadline still running."""

    def __init__(self, reason: str, *, rerender: bool = False, retry_after: float | None = None):
        self.reason = reason
        self.rerender = rerender
        self.retry_after = retry_after
        """The API server's `Retry-After` (seconds), when it sent one: the wait is at least that."""
        super().__init__(reason)


def classify(error: ClusterError) -> Rejected | Retry:
    if error.status in REJECTED_STATUSES:
        return Rejected(f"the Kubernetes API server rejected it: {error}")
    return Retry(str(error), retry_after=error.retry_after)


def key_of(obj: Mapping[str, Any]) -> Key:
    return (obj["kind"], obj["metadata"]["name"])


def is_create_only(obj: Mapping[str, Any]) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get(naming.ANNOTATION_CREATE_ONLY) == "true"


def require_served(objects: Iterable[Mapping[str, Any]], served: frozenset[tuple[str, str]]) -> None:
    """Refuse, with a reason, objects of kinds the cluster does not serve (discovery said so)."""
    missing = sorted({(o["apiVersion"], o["kind"]) for o in objects} - served)
    if missing:
        parts = [
            f"{kind} ({api_version})" + (f": {KIND_HINTS[kind]}" if kind in KIND_HINTS else "")
            for api_version, kind in missing
        ]
        raise Rejected("the cluster does not serve " + "; ".join(parts))


def survey(
    cluster: Cluster,
    objects: Iterable[Mapping[str, Any]],
    listener_id: str,
    inventory: Inventory | None = None,
) -> Live:
    """Look at every object the revision would write; refuse if any of them is someone else's.

    With an `inventory` the look is its table (one list per namespace and kind and cycle, not a GET
    per object); the value for an existing object is then a stub (`{"metadata": {...}}`), which is
    all the callers need: whether it exists."""
    live: Live = {}
    foreign: list[str] = []
    previous: list[str] = []
    for obj in objects:
        meta = obj["metadata"]
        if inventory is not None:
            seen = inventory.lookup(meta["namespace"], obj["apiVersion"], obj["kind"], meta["name"])
            ours = seen is not None and seen.owned
            if seen is None:
                existing = None
            elif ours:
                existing = {"metadata": {"name": meta["name"]}}
            else:  # not ours at a glance: read it whole to tell a foreign object from a handed-over one
                existing = cluster.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        else:
            existing = cluster.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
            ours = existing is not None and ownership.owned(existing, listener_id)
        what = f"{obj['kind']} {meta['namespace']}/{meta['name']}"
        if existing is not None and not ours and not ownership.owned(existing, listener_id):
            deployment_label = (meta.get("labels") or {}).get(naming.LABEL_DEPLOYMENT_ID, "")
            if not ownership.handed_over(existing, deployment_label):
                foreign.append(what)
            elif not is_create_only(obj):
                # Moved here from another listener in this namespace: its copy goes under that
                # listener's prune rules; the kept password (create-only) is read, never written.
                previous.append(what)
        live[key_of(obj)] = existing
    if foreign:
        raise Rejected(
            f"{', '.join(foreign)} already exist(s) and is not managed by this listener; refusing to touch it"
        )
    if previous:
        holder = ownership.labels_of(live_first(live, previous)).get(naming.LABEL_LISTENER_ID, "?")
        raise Retry(
            f"the control plane moved this deployment here from listener {holder}, whose copy is still in the "
            f"namespace ({', '.join(previous)}); waiting for it to be pruned (its database is kept and used here)"
        )
    return live


def live_first(live: Live, described: list[str]) -> dict[str, Any]:
    """The live object behind the first `Kind namespace/name` of `described`."""
    kind, _, where = described[0].partition(" ")
    return live.get((kind, where.rpartition("/")[2])) or {}


def apply_objects(
    cluster: Cluster,
    objects: Iterable[Mapping[str, Any]],
    live: Live | None = None,
    written: Callable[[Mapping[str, Any]], None] | None = None,
) -> None:
    """Write `objects` in order. `live` (from `survey`) spares the create of credentials that exist;
    `written` is told the API server's answer to each apply (the inventory and drift baseline)."""
    for obj in objects:
        if is_create_only(obj):
            if live is None or live.get(key_of(obj)) is None:
                _create_once(cluster, obj)
            continue
        if obj["kind"] == "Deployment" and "replicas" not in obj["spec"]:
            hand_over_replicas(cluster, obj)
        applied = cluster.apply(obj)
        if written is not None:
            written(applied)


def _create_once(cluster: Cluster, obj: Mapping[str, Any]) -> None:
    meta = obj["metadata"]
    try:
        cluster.create(obj)
        return
    except ClusterError as error:
        if error.status != 409:
            raise
    existing = cluster.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
    if existing is not None and existing.get("data") == obj.get("data"):
        return  # ours, from an earlier attempt
    raise Retry(
        f"{obj['kind']} {meta['name']} was created by another writer meanwhile; re-reading its value",
        rerender=True,
    )


def owns_field(obj: Mapping[str, Any], manager: str, *path: str) -> bool:
    """Does `manager` own the field at `path` (e.g. "spec", "replicas") per the object's managedFields?"""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("operation") != "Apply":
            continue
        fields = entry.get("fieldsV1") or {}
        for part in path:
            fields = fields.get(f"f:{part}") if isinstance(fields, dict) else None
            if fields is None:
                break
        else:
            return True
    return False


def hand_over_replicas(cluster: Cluster, manifest: Mapping[str, Any]) -> None:
    """The manifest leaves `replicas` to an autoscaler. If the listener's apply owns it today, omitting
    it would reset the Deployment to 1 replica; so a second field manager applies the current value
    first and keeps co-owning it until the autoscaler writes it (kubernetes.io/docs/reference/using-
    api/server-side-apply/#transferring-ownership)."""
    meta = manifest["metadata"]
    live = cluster.get(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
    if live is None:
        return
    replicas = (live.get("spec") or {}).get("replicas")
    if replicas is None or not owns_field(live, FIELD_MANAGER, "spec", "replicas"):
        return
    cluster.apply(
        {
            "apiVersion": manifest["apiVersion"],
            "kind": manifest["kind"],
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {"replicas": replicas},
        },
        field_manager=HANDOVER_FIELD_MANAGER,
        force=False,
    )


def route_keys(obj: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (hostname, path prefix) pairs a route serves ("" for any hostname)."""
    spec = obj.get("spec") or {}
    keys: set[tuple[str, str]] = set()
    if obj.get("kind") == "HTTPRoute":
        hosts = spec.get("hostnames") or [""]
        for rule in spec.get("rules") or []:
            for match in rule.get("matches") or [{}]:
                path = ((match or {}).get("path") or {}).get("value", "/")
                keys.update((host, path) for host in hosts)
    elif obj.get("kind") == "Ingress":
        for rule in spec.get("rules") or []:
            for path in ((rule.get("http") or {}).get("paths")) or []:
                keys.add((rule.get("host", ""), path.get("path", "/")))
    return keys


def check_routes(
    cluster: Cluster, objects: Iterable[Mapping[str, Any]], namespaces: Iterable[str], live: Live
) -> None:
    """Refuse a new route whose (host, path) another route in the watched namespaces already serves."""
    for obj in objects:
        if obj["kind"] not in ("HTTPRoute", "Ingress") or live.get(key_of(obj)) is not None:
            continue
        wanted = route_keys(obj)
        mine = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        for namespace in namespaces:
            for other in cluster.list(obj["apiVersion"], obj["kind"], namespace, {}):
                meta = other.get("metadata") or {}
                if (namespace, meta.get("name")) == mine:
                    continue
                clash = wanted & route_keys({**other, "kind": obj["kind"]})
                if clash:
                    host, path = sorted(clash)[0]
                    raise Rejected(
                        f"route path {path} on host {host or '*'} is already served by {obj['kind']} "
                        f"{namespace}/{meta.get('name')}; refusing the newcomer"
                    )
