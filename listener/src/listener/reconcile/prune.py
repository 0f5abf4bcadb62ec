"""Prune: remove what the control plane no longer wants — only when every safety rule holds.

A deployment's objects in one namespace (a *group*, found by the listener's labels and proven its
own by `listener.ownership`) are deleted only when all of these hold in the same cycle:

1. the deployment list was complete and does not place the deployment there;
2. the control plane answered this listener's own record (`GET /v2/listeners/{id}`);
3. `GET /v2/deployments/{id}` answered with the control plane's own not-found body (deleted), or
   with the deployment placed somewhere else (moved: the old copy goes, its data always stays);
4. that has been so in consecutive cycles for at least the window (`LISTENER_PRUNE_WINDOW_SECONDS`),
   recorded on the group's objects as the `langsmith-dataplane/absent` annotation, so a restart
   neither resets nor skips it (observations more than two windows apart start it again);
5. the control plane lists at least one deployment for this listener, and the prune would leave at
   least one of its deployments in the cluster — unless `LISTENER_PRUNE_ALLOW_EMPTY=true`;
6. no more than `LISTENER_PRUNE_MAX_FRACTION` of the listener's deployments (at least one) go per cycle.

Anything else is a refused prune, reported with its reason (a log line, a Warning Event, the cycle
report). `decide` is the pure rule table; `run` is the thin shell around it. `prune_stale` removes
single objects a deployed revision no longer renders (an HPA after autoscaling is turned off, an old
env Secret), never data.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from listener import metrics, naming, ownership
from listener.controlplane import ControlPlaneClient
from listener.kube import Cluster, ClusterError
from listener.reconcile import fetch, status
from listener.reconcile import stores as managed_stores
from listener.reconcile.config import PrunePolicy, ReconcilerConfig
from listener.render import KINDS

if TYPE_CHECKING:
    from listener.managed import ManagedStores

log = logging.getLogger(__name__)

ABSENT_ANNOTATION = "langsmith-dataplane/absent"
STREAK_GAP = 2
"""Observations further apart than this many windows (a long outage of the listener or the control
plane) do not continue a streak: it starts again, so an old mark can never skip the window."""
_ORDER = {kind: index for index, (_, kind) in enumerate(KINDS)}

Item = tuple[str, str, dict[str, Any]]
"""(apiVersion, kind, live object)."""
GroupKey = tuple[UUID, str]
"""(deployment id, namespace)."""


def is_data(kind: str, obj: Mapping[str, Any]) -> bool:
    """The database volume and the passwords that open it: kept unless retention says delete."""
    if kind == "PersistentVolumeClaim":
        return True
    if kind != "Secret":
        return False
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    created_once = (meta.get("annotations") or {}).get(naming.ANNOTATION_CREATE_ONLY) == "true"
    return created_once or name.endswith((naming.SUFFIX_POSTGRES, naming.SUFFIX_REDIS))


@dataclass(frozen=True)
class Mark:
    """The recorded absence streak of one group."""

    since: datetime
    last: datetime
    verdict: str

    def encode(self) -> str:
        return json.dumps(
            {"since": self.since.isoformat(), "last": self.last.isoformat(), "verdict": self.verdict},
            sort_keys=True,
        )

    @classmethod
    def decode(cls, text: str | None) -> Mark | None:
        if not text:
            return None
        try:
            raw = json.loads(text)
            return cls(
                datetime.fromisoformat(raw["since"]), datetime.fromisoformat(raw["last"]), str(raw["verdict"])
            )
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: the streak starts again (never shortened)


@dataclass
class Group:
    deployment_id: UUID
    namespace: str
    items: list[Item] = field(default_factory=list)

    @property
    def key(self) -> GroupKey:
        return (self.deployment_id, self.namespace)

    @property
    def data_only(self) -> bool:
        """Only retained data is left (a pruned deployment's volume and password): nothing to prune."""
        return all(is_data(kind, obj) for _, kind, obj in self.items)

    @property
    def mark(self) -> Mark | None:
        """The longest-running streak recorded on any object (the anchor may have been replaced)."""
        marks = [
            m
            for _, _, obj in self.items
            if (
                m := Mark.decode(
                    ((obj.get("metadata") or {}).get("annotations") or {}).get(ABSENT_ANNOTATION)
                )
            )
        ]
        return min(marks, key=lambda m: m.since) if marks else None

    @property
    def anchor(self) -> tuple[str, str, str]:
        """Where the mark and Events go: the API server Deployment if there is one, else the first object."""
        ordered = sorted(self.items, key=lambda i: (i[1] != "Deployment", _ORDER.get(i[1], 99), _name(i[2])))
        api_version, kind, obj = ordered[0]
        return (api_version, kind, _name(obj))


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


@dataclass
class Inventory:
    groups: dict[GroupKey, Group] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def inventory(
    cluster: Cluster, listener_id: str, namespaces: Iterable[str], served: frozenset[tuple[str, str]]
) -> Inventory:
    """Everything this listener owns in its namespaces, grouped by (deployment, namespace), metadata
    only (every rule here reads labels, annotations and managedFields). Objects carrying its labels
    that it did not write, or whose deployment id is not a UUID, are left out with a warning."""
    found = Inventory()
    selector = naming.ownership_selector(listener_id)
    for namespace in namespaces:
        for api_version, kind in KINDS:
            if (api_version, kind) not in served:
                continue
            for obj in cluster.list_metadata(api_version, kind, namespace, selector):
                obj = {**obj, "kind": kind}
                meta = obj.get("metadata") or {}
                if meta.get("deletionTimestamp"):
                    continue  # already going
                if not ownership.owned(obj, listener_id):
                    found.warnings.append(status.foreign_warning(obj))
                    continue
                deployment = ownership.deployment_id(obj)
                if deployment is None:
                    label = ownership.labels_of(obj).get(naming.LABEL_DEPLOYMENT_ID)
                    found.warnings.append(
                        f"{ownership.describe(obj)} has deployment id label {label!r}, which is not a UUID; skipped"
                    )
                    continue
                group = found.groups.setdefault((deployment, namespace), Group(deployment, namespace))
                # Kept without managedFields (most of the bytes): ownership was decided above, and
                # nothing after it reads them — a resync at N = 1,000 holds every object's metadata here.
                slim = {k: v for k, v in meta.items() if k != "managedFields"}
                group.items.append((api_version, kind, {"kind": kind, "metadata": slim}))
    return found


# --- the rule table (pure) ----------------------------------------------------------------------

Action = Literal["prune", "mark", "refresh", "clear", "keep"]


@dataclass(frozen=True)
class Candidate:
    """What `decide` needs to know about one group."""

    deployment_id: UUID
    namespace: str
    mark: Mark | None
    listed: bool
    """The complete list places this deployment in this namespace (or refuses it)."""


@dataclass(frozen=True)
class Decision:
    key: GroupKey
    action: Action
    reason: str = ""
    refused: str | None = None
    """The rule that kept it ("listener", "unconfirmed", "present", "window", "allow-empty", "cap")."""
    moved: bool = False
    mark: Mark | None = None
    """For "mark"/"refresh": what to record."""


def decide(
    candidates: Iterable[Candidate],
    *,
    now: datetime,
    policy: PrunePolicy,
    listener_error: str | None,
    listed_for_listener: int,
    confirmations: Mapping[UUID, fetch.Confirmation],
) -> list[Decision]:
    groups = sorted(candidates, key=lambda c: (str(c.deployment_id), c.namespace))
    total = len({c.deployment_id for c in groups})
    decisions: list[Decision] = []
    eligible: list[tuple[Candidate, Mark, bool]] = []
    for group in groups:
        key = (group.deployment_id, group.namespace)
        if group.listed:
            if group.mark is not None:
                decisions.append(Decision(key, "clear", "listed again: the absence streak ends"))
            continue
        if listener_error is not None:
            decisions.append(
                Decision(
                    key,
                    "keep",
                    f"the control plane did not confirm this listener's own record this cycle ({listener_error}); "
                    "nothing is pruned until it does",
                    "listener",
                )
            )
            continue
        confirmation = confirmations.get(group.deployment_id) or fetch.Confirmation("unknown", "not checked")
        verdict = confirmation.verdict
        if verdict == "present" and confirmation.namespace not in (None, group.namespace):
            verdict = "moved"
            detail = f"the control plane now places it in namespace {confirmation.namespace}"
        else:
            detail = confirmation.detail
        if verdict == "present":
            action: Action = "clear" if group.mark is not None else "keep"
            decisions.append(Decision(key, action, f"the list left it out, but {detail}: kept", "present"))
            continue
        if verdict == "unknown":
            decisions.append(Decision(key, "keep", f"its deletion is not confirmed: {detail}", "unconfirmed"))
            continue
        mark = group.mark
        if (
            mark is None
            or mark.verdict != verdict
            or now - mark.last > STREAK_GAP * policy.window
            or mark.since > now
        ):
            new = Mark(now, now, verdict)
            decisions.append(
                Decision(
                    key, "mark", _pending(detail, new, policy), "window", moved=verdict == "moved", mark=new
                )
            )
            continue
        if now - mark.since < policy.window or mark.since >= now:
            refreshed = Mark(mark.since, now, verdict)
            action = "refresh" if now - mark.last >= policy.window / 2 else "keep"
            decisions.append(
                Decision(
                    key,
                    action,
                    _pending(detail, mark, policy),
                    "window",
                    moved=verdict == "moved",
                    mark=refreshed,
                )
            )
            continue
        eligible.append((group, mark, verdict == "moved"))

    if eligible and not policy.allow_empty:
        remaining = {c.deployment_id for c in groups} - {
            c.deployment_id for c, _, moved in eligible if not moved
        }
        if listed_for_listener == 0 or not remaining:
            why = (
                "the control plane lists no deployments for this listener"
                if listed_for_listener == 0
                else "it would remove every deployment of this listener from the cluster"
            )
            for group, _, moved in eligible:
                decisions.append(
                    Decision(
                        (group.deployment_id, group.namespace),
                        "keep",
                        f"{why}; refusing to prune the last ones (LISTENER_PRUNE_ALLOW_EMPTY=true allows it)",
                        "allow-empty",
                        moved=moved,
                    )
                )
            return decisions

    cap = max(1, math.floor(policy.max_fraction * total))
    eligible.sort(key=lambda e: (e[1].since, str(e[0].deployment_id), e[0].namespace))
    for index, (group, mark, moved) in enumerate(eligible):
        key = (group.deployment_id, group.namespace)
        if index < cap:
            decisions.append(
                Decision(key, "prune", f"absent and confirmed since {mark.since.isoformat()}", moved=moved)
            )
        else:
            decisions.append(
                Decision(
                    key,
                    "keep",
                    f"at most {cap} of this listener's {total} deployment(s) are pruned per cycle "
                    "(LISTENER_PRUNE_MAX_FRACTION)",
                    "cap",
                    moved=moved,
                )
            )
    return decisions


def _pending(detail: str, mark: Mark, policy: PrunePolicy) -> str:
    """Stable for the whole streak, so it is logged once, not every cycle."""
    since = mark.since.isoformat(timespec="seconds")
    due = (mark.since + policy.window).isoformat(timespec="seconds")
    return f"{detail}; absent and confirmed since {since}, pruned from {due} if it stays so"


# --- the shell ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    pruned: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    moved: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pending: bool = False
    """A streak is running: the next cycles must look again."""


def run(
    cluster: Cluster,
    client: ControlPlaneClient,
    config: ReconcilerConfig,
    served: frozenset[tuple[str, str]],
    *,
    placed: Mapping[str, str],
    refused: Iterable[str],
    now: datetime,
    bases: Mapping[str, str] | None = None,
    stores: ManagedStores | None = None,
) -> Outcome:
    """One prune pass. `placed` maps the listed deployments this listener runs to their namespace;
    `refused` lists the ones it was given but refuses (they are kept, never pruned); `bases` maps
    them to their object names' stem, to point out retained data of a same-named predecessor.
    `stores` (managed mode): a deleted deployment's database, roles and keys are torn down under
    `config.data_retention` before its objects go."""
    outcome = Outcome()
    listener_id = str(config.listener_id)
    try:
        found = inventory(cluster, listener_id, config.namespaces, served)
    except ClusterError as error:
        outcome.errors.append(f"inventory: {error}")
        outcome.pending = True
        return outcome
    outcome.warnings.extend(found.warnings)
    outcome.warnings.extend(
        _retained(found, placed, bases or {}, _runs_elsewhere(cluster, found, listener_id))
    )
    refused_ids = {str(r) for r in refused}
    groups = {k: g for k, g in found.groups.items() if not g.data_only}
    candidates = [
        Candidate(
            g.deployment_id,
            g.namespace,
            g.mark,
            placed.get(str(g.deployment_id)) == g.namespace or str(g.deployment_id) in refused_ids,
        )
        for g in groups.values()
    ]
    unlisted = sorted({c.deployment_id for c in candidates if not c.listed}, key=str)
    listener_error: str | None = None
    confirmations: dict[UUID, fetch.Confirmation] = {}
    if unlisted:
        listener_error = fetch.listener_record(client, config.listener_id)
        if listener_error is None:
            confirmations = {
                d: fetch.confirm(client, d, config.listener_id, config.namespaces) for d in unlisted
            }
    decisions = decide(
        candidates,
        now=now,
        policy=config.prune,
        listener_error=listener_error,
        listed_for_listener=len(placed) + len(refused_ids),
        confirmations=confirmations,
    )
    for decision in decisions:
        _execute(cluster, config, groups[decision.key], decision, outcome, stores)
    # Every prune a rule refused this pass, and every foreign object spared (labels without proof).
    metrics.REFUSED_PRUNES.inc(sum(d.refused is not None for d in decisions) + len(found.warnings))
    outcome.pending = any(d.action != "prune" and not _listed(d, candidates) for d in decisions)
    return outcome


def _runs_elsewhere(cluster: Cluster, found: Inventory, listener_id: str) -> dict[GroupKey, str]:
    """Data-only groups whose deployment another listener now runs on that same data (a handover in a
    namespace both watch): group -> that listener's id."""
    users: dict[GroupKey, str] = {}
    for key, group in found.groups.items():
        if not group.data_only:
            continue
        instance = ownership.labels_of(group.items[0][2]).get(naming.LABEL_INSTANCE, "")
        try:
            api = cluster.get("apps/v1", "Deployment", group.namespace, instance + naming.SUFFIX_API)
        except ClusterError:
            continue
        labels = ownership.labels_of(api or {})
        other = labels.get(naming.LABEL_LISTENER_ID)
        if (
            api is not None
            and other not in (None, naming.label_value(listener_id))
            and ownership.handed_over(api, naming.label_value(str(group.deployment_id)))
        ):
            users[key] = str(other)
    return users


def _retained(
    found: Inventory,
    placed: Mapping[str, str],
    bases: Mapping[str, str],
    runs_elsewhere: Mapping[GroupKey, str] | None = None,
) -> list[str]:
    """Retained data of pruned deployments, and the new deployments of the same name that started on
    an empty database next to it (a delete-and-recreate): said, never silently."""
    notes = []
    for key, group in found.groups.items():
        if not group.data_only or str(group.deployment_id) in placed:
            continue
        instance = ownership.labels_of(group.items[0][2]).get(naming.LABEL_INSTANCE, "")
        slug = instance.rpartition("-")[0]
        kept = ", ".join(f"{kind} {_name(obj)}" for _, kind, obj in group.items)
        if key in (runs_elsewhere or {}):
            # Never "delete it by hand": the Agent Server there reads and writes this database.
            notes.append(
                f"deployment {group.deployment_id} moved to listener {(runs_elsewhere or {})[key]}, which runs it on "
                f"this listener's kept data in {group.namespace} ({kept}): it is in use, keep it"
            )
            continue
        successors = [
            d
            for d, base in bases.items()
            if placed.get(d) == group.namespace and base.rpartition("-")[0] == slug
        ]
        note = f"deployment {group.deployment_id} was deleted; its data is kept in {group.namespace} ({kept})"
        if successors:
            note += f"; deployment {', '.join(sorted(successors))} of the same name started with a new, empty database"
        notes.append(note + "; delete it by hand once it is not needed")
    return notes


def _listed(decision: Decision, candidates: list[Candidate]) -> bool:
    return any((c.deployment_id, c.namespace) == decision.key and c.listed for c in candidates)


def _execute(
    cluster: Cluster,
    config: ReconcilerConfig,
    group: Group,
    decision: Decision,
    out: Outcome,
    stores: ManagedStores | None = None,
) -> None:
    deployment_id = str(group.deployment_id)
    anchor = group.anchor
    try:
        if decision.action in ("mark", "refresh") and decision.mark is not None:
            cluster.annotate(
                anchor[0], anchor[1], group.namespace, anchor[2], {ABSENT_ANNOTATION: decision.mark.encode()}
            )
        elif decision.action == "clear":
            for api_version, kind, obj in group.items:
                if ABSENT_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {}):
                    cluster.annotate(
                        api_version, kind, group.namespace, _name(obj), {ABSENT_ANNOTATION: None}
                    )
        if decision.moved:
            out.moved[deployment_id] = (
                f"moved away from namespace {group.namespace}: the copy there is pruned under the prune rules; "
                "its database volume and password are kept"
            )
        if decision.refused is not None:
            out.refused[deployment_id] = decision.reason
            status.event(
                cluster,
                group.namespace,
                anchor,
                name=status.event_name(anchor[2], "prune-refused", decision.refused),
                reason="PruneRefused",
                message=f"deployment {deployment_id}: not pruned: {decision.reason}",
                warning=True,
            )
        if decision.action == "prune":
            _delete_group(cluster, config, group, decision, out, stores)
    except ClusterError as error:
        out.errors.append(f"{deployment_id}: {decision.action}: {error}")


def _delete_group(
    cluster: Cluster,
    config: ReconcilerConfig,
    group: Group,
    decision: Decision,
    out: Outcome,
    stores: ManagedStores | None = None,
) -> None:
    # A move never takes the data with it; a deletion does only with LISTENER_DATA_RETENTION=delete.
    keep_data = decision.moved or config.data_retention == "retain"
    deployment_id = str(group.deployment_id)
    if config.options.store_mode == "managed" and not decision.moved:
        if stores is None:
            out.errors.append(f"{deployment_id}: managed stores: no connection; its objects are kept")
            out.pending = True
            return
        if not cluster.may_write():  # a DROP DATABASE is a write: fenced on leadership like any other
            out.errors.append(
                f"{deployment_id}: this replica is not the leader: the managed stores are not touched"
            )
            out.pending = True
            return
        # The shared stores first: if they fail, the objects stay and the next pass (same rules)
        # tries again; deleting the objects first would forget the database forever.
        done, note = managed_stores.teardown(stores, deployment_id, config.data_retention)
        log.info("deployment %s: %s", deployment_id, note)
        if not done:
            out.errors.append(f"{deployment_id}: {note}")
            out.pending = True
            return
        out.warnings.append(f"deployment {deployment_id} was deleted; {note}")
    items = sorted(group.items, key=lambda i: (_ORDER.get(i[1], 99), _name(i[2])))
    for api_version, kind, obj in items:
        # A moved deployment's credentials go with it (its database is keyed by its id and follows
        # it); the copy in the old namespace would only be a stale second one.
        if keep_data and is_data(kind, obj) and not (decision.moved and managed_stores.is_credentials(obj)):
            continue
        cluster.delete(api_version, kind, group.namespace, _name(obj))
    out.pruned.append(str(group.deployment_id))
    what = "moved away" if decision.moved else "deleted in the control plane"
    log.info(
        "deployment %s was %s; its objects in %s were pruned%s",
        group.deployment_id,
        what,
        group.namespace,
        " (data kept)" if keep_data else "",
    )


def prune_stale(
    cluster: Cluster,
    listener_id: str,
    namespace: str,
    deployment_id: str,
    keep: set[tuple[str, str]],
    served: frozenset[tuple[str, str]],
) -> list[str]:
    """Delete the deployment's own objects in `namespace` that its deployed revision no longer renders
    (never data — a managed-store credentials Secret left under an old name is a copy, not data —
    never anything not proven the listener's). Returns what was deleted."""
    deleted = []
    selector = naming.ownership_selector(listener_id, deployment_id)
    for api_version, kind in KINDS:
        if (api_version, kind) not in served:
            continue
        for obj in cluster.list_metadata(api_version, kind, namespace, selector):
            obj = {**obj, "kind": kind}
            name = _name(obj)
            # A managed-store credentials Secret under an old name (a rename) is not data: the
            # revision just deployed carries the same credentials in the Secret of its new name.
            stale_credentials = managed_stores.is_credentials(obj)
            if (kind, name) in keep or (is_data(kind, obj) and not stale_credentials):
                continue
            if not ownership.owned(obj, listener_id):
                continue
            if (obj.get("metadata") or {}).get("deletionTimestamp"):
                continue
            cluster.delete(api_version, kind, namespace, name)
            deleted.append(f"{kind} {name}")
    return deleted
