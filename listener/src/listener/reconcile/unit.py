"""The unit of work: one deployment, one step — render → apply → health → status.

`step(ctx, record, placement, now)` moves one deployment's rollout forward as far as it can this
time and returns what it did. Everything it remembers between steps is in the deployment's own
`DeploymentRecord`; everything else it reads is the cluster (through `ctx.cluster`) or shared,
read-only configuration (`StepContext`). There is no state shared between deployments, so steps of
different deployments may run in any order or concurrently, each retried on its own (`retry_at`).

The rules it keeps:

* Control-plane data is validated (`listener.validate`) and the kinds it needs must be served
  (discovery) before anything is written; both fail the revision with a precise reason.
* Nothing that is not the listener's is ever written (`apply.survey`).
* The API server's 4xx rejections fail the revision with its message; 409s, 429s, 5xx and an
  unreachable server are retried with exponential backoff; the rollout deadline runs through both.
* A failed revision is not retried until the control plane moves (a new revision, a redeploy, or a
  change of its data or placement); with `maxUnavailable: 0` the previous revision keeps serving.
* After a revision is DEPLOYED, the objects it no longer renders are pruned one by one (never data).
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from listener import metrics, naming, ownership, validate
from listener.controlplane import StatusReporter
from listener.desired import Fingerprint, Placement, agent_server_spec, fingerprint
from listener.kube import Cluster, ClusterError
from listener.reconcile import apply, health, inventory, prune, status, stores
from listener.reconcile.config import ReconcilerConfig
from listener.reconcile.inventory import Inventory
from listener.reconcile.queue import retry_delay
from listener.render import KINDS, RenderError, Wave, flatten, render
from listener.render.secrets import POSTGRES_PASSWORD_KEY, REDIS_PASSWORD_KEY
from listener.spec import ManagedStoresSecret, SecretValue

if TYPE_CHECKING:
    from listener.managed import ManagedStores

log = logging.getLogger(__name__)

Phase = Literal["pending", "stores", "rolling", "deployed", "failed"]
WAVE_SECRETS, WAVE_STORES, WAVE_SERVERS, WAVE_EXPOSURE = 0, 1, 2, 3


@dataclass
class Attempt:
    """One rollout of one fingerprint (revision + data + placement) of a deployment."""

    fingerprint: Fingerprint
    revision_id: str
    names: naming.ObjectNames
    started: datetime
    """The rollout deadline counts from here, through retries and restarts of the step."""
    phase: Phase = "pending"
    _waves: list[Wave] | None = field(default=None, repr=False)
    _packed: bytes | None = field(default=None, repr=False)
    """The waves of a finished rollout, compressed (`pack`); never in a repr (they hold passwords)."""
    applied: set[int] = field(default_factory=set)
    reason: str = ""
    failures: int = 0
    retry_at: datetime | None = None
    moved_from: str | None = None
    fields: dict[apply.Key, str | None] = field(default_factory=dict)
    """Per object, the fields hash its last apply left (`inventory.fields_hash`): the drift baseline."""
    renamed_from: str | None = None
    """The names' stem before the control plane renamed the deployment (names follow the name)."""

    @property
    def busy(self) -> bool:
        return self.phase in ("pending", "stores", "rolling")

    @property
    def waves(self) -> list[Wave] | None:
        """What the rollout renders; read back from `pack`'s form on first use after a pack."""
        if self._waves is None and self._packed is not None:
            decoded = msgspec.json.decode(zlib.decompress(self._packed))
            self._waves = [Wave(index, name, tuple(objects)) for index, name, objects in decoded]
        return self._waves

    @waves.setter
    def waves(self, waves: list[Wave] | None) -> None:
        self._waves, self._packed = waves, None

    def pack(self) -> None:
        """Keep the waves compressed until they are needed again (a resync's drift check, a re-apply):
        a finished rollout's manifests are ~55 KiB as Python objects and ~5 KiB packed: most of what
        a deployment's record held, 50 MiB at N = 1,000."""
        if self._waves is None:
            return
        if self._packed is None:
            encoded = msgspec.json.encode([(w.index, w.name, w.objects) for w in self._waves])
            self._packed = zlib.compress(encoded, 1)
        self._waves = None


@dataclass
class DeploymentRecord:
    """Everything the listener remembers about one deployment between steps (and nothing else)."""

    deployment_id: str
    placement: Placement
    attempt: Attempt | None = None
    failed: set[Fingerprint] = field(default_factory=set)
    """Fingerprints whose rollout failed: not retried until the control plane moves."""
    reported: set[tuple[str, str]] = field(default_factory=set)
    """(revision, status) pairs the status reporter accepted."""
    unreported: list[tuple[str, str, str]] = field(default_factory=list)
    """(revision, status, reason) the reporter could not take yet; sent again on the next step."""
    last_applied: datetime | None = None
    """When every object was last (re-)applied; a resync re-asserts them after the resync interval."""
    seen: tuple[object, str, Fingerprint] | None = None
    """(the control plane's Deployment object, namespace, its fingerprint): the client hands out the
    same object while the deployment's JSON does not change, so its fingerprint is not recomputed."""

    @property
    def busy(self) -> bool:
        return self.attempt is not None and self.attempt.busy


@dataclass(frozen=True)
class StepContext:
    """What a step may use besides its record: configuration, clients, and what the cluster serves."""

    config: ReconcilerConfig
    cluster: Cluster
    reporter: StatusReporter
    prober: health.Prober
    served: frozenset[tuple[str, str]]
    new_password: Callable[[], str] = lambda: secrets.token_urlsafe(24)
    stores: ManagedStores | None = None
    """Managed mode: the shared PostgreSQL and Redis (one bounded admin pool each for all deployments)."""
    inventory: Inventory | None = None
    """The inventory of live objects (`reconcile.inventory`); None: GET each object, re-apply all."""
    tick: bool = False
    """A tick between polls: the inventory's tables are the last poll's lists, up to a poll interval
    old, so what decides a write to a possibly foreign object (the look right before a wave, the
    status target) GETs the few objects it writes instead of trusting a row."""

    @property
    def listener_id(self) -> str:
        return str(self.config.listener_id)


@dataclass
class StepResult:
    deployment_id: str
    applied: bool = False
    deployed: bool = False
    failed: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pruned_objects: list[str] = field(default_factory=list)
    drifted: list[str] = field(default_factory=list)
    """Objects re-applied because they drifted ("Kind namespace/name")."""


def new_record(placement: Placement) -> DeploymentRecord:
    return DeploymentRecord(placement.deployment_id, placement)


def step(ctx: StepContext, record: DeploymentRecord, placement: Placement, now: datetime) -> StepResult:
    result = StepResult(record.deployment_id)
    _flush_reports(ctx, record)
    current = _fingerprint(record, placement)
    attempt = record.attempt
    if attempt is None or attempt.fingerprint != current:
        if current in record.failed:
            record.placement = placement
            return result  # failed before: wait for the control plane to move
        moved_from = record.placement.namespace if record.placement.namespace != placement.namespace else None
        names = naming.ObjectNames.of(placement.deployment.name, placement.deployment_id)
        renamed_from = (
            attempt.names.base if attempt is not None and attempt.names.base != names.base else None
        )
        record.placement = placement
        attempt = record.attempt = Attempt(
            fingerprint=current,
            revision_id=placement.revision_id or "",
            names=names,
            started=now,
            moved_from=moved_from,
            renamed_from=renamed_from,
        )
    if attempt.phase == "failed":
        return result
    if attempt.retry_at is not None and now < attempt.retry_at:
        _check_deadline(ctx, record, attempt, now, attempt.reason, result)
        return result
    try:
        if attempt.phase == "pending":
            _prepare(ctx, record, attempt, now, result)
        if attempt.phase in ("stores", "rolling"):
            _progress(ctx, record, attempt, now, result)
        elif attempt.phase == "deployed" and _resync_due(ctx, record, now):
            _reassert(ctx, record, attempt, now, result)
        attempt.failures, attempt.retry_at = 0, None
    except ClusterError as error:
        _outcome(ctx, record, attempt, apply.classify(error), now, result)
    except (apply.Rejected, apply.Retry) as outcome:
        _outcome(ctx, record, attempt, outcome, now, result)
    except (validate.InvalidDeployment, RenderError) as error:
        _fail(ctx, record, attempt, str(error), result)
    if not attempt.busy:
        attempt.pack()
    return result


def _outcome(
    ctx: StepContext,
    record: DeploymentRecord,
    attempt: Attempt,
    outcome: apply.Rejected | apply.Retry,
    now: datetime,
    result: StepResult,
) -> None:
    if isinstance(outcome, apply.Rejected):
        if attempt.busy:
            _fail(ctx, record, attempt, outcome.reason, result)
        else:  # a deployed revision's re-apply: report, keep serving, try again at the next resync
            result.errors.append(f"{record.deployment_id}: re-applying: {outcome.reason}")
            record.last_applied = now
        return
    attempt.failures += 1
    wait = backoff(ctx, attempt.failures, outcome.retry_after)
    attempt.retry_at = now + wait
    result.errors.append(
        f"{record.deployment_id}: {outcome.reason} (retrying in {int(wait.total_seconds())} s)"
    )
    log.warning("deployment %s: %s; retrying in %s", record.deployment_id, outcome.reason, wait)
    if outcome.rerender:
        attempt.waves, attempt.phase, attempt.applied = None, "pending", set()
    if attempt.busy:
        _check_deadline(ctx, record, attempt, now, f"last error: {outcome.reason}", result)


# --- render, then look before writing -------------------------------------------------------------


def _prepare(
    ctx: StepContext, record: DeploymentRecord, attempt: Attempt, now: datetime, result: StepResult
) -> None:
    placement = record.placement
    postgres, redis = _credentials(ctx, placement.namespace, attempt.names, placement.deployment_id)
    spec = agent_server_spec(placement, ctx.config.platform, postgres, redis)
    validate.check(spec)
    found = None
    if ctx.config.options.store_mode == "managed":
        found = stores.find(
            ctx.cluster,
            listener_id=ctx.listener_id,
            namespaces=ctx.config.namespaces,
            namespace=placement.namespace,
            names=attempt.names,
            deployment_id=record.deployment_id,
        )
        if found.live is None:  # nothing to render yet: provision first (the first rollout)
            spec = replace(spec, managed_stores=_provision(ctx, record, attempt, found, now))
        else:
            spec = replace(spec, managed_stores=found.live)
    waves = render(spec, ctx.config.options)
    objects = flatten(waves)
    apply.require_served(objects, ctx.served)
    attempt.waves = waves
    if _resume(ctx, record, attempt, now):
        return  # a restart taking over a deployed revision: no store is contacted
    if found is not None and found.live is not None:
        # Before anything of the revision is written: a store error leaves nothing half-deployed.
        _provision(ctx, record, attempt, found, now)
    live = apply.survey(ctx.cluster, objects, ctx.listener_id, ctx.inventory)
    apply.check_routes(ctx.cluster, objects, ctx.config.namespaces, live)
    attempt.phase = "stores"
    started = "rollout started"
    if attempt.moved_from:
        moved = (
            f"moved from namespace {attempt.moved_from} to {placement.namespace}: it keeps its database on the "
            "managed stores"
            if ctx.config.options.store_mode == "managed"
            else f"moved from namespace {attempt.moved_from} to {placement.namespace}: it starts with a new, "
            f"empty database here (the old volume and password stay in {attempt.moved_from})"
        )
        result.warnings.append(f"{record.deployment_id}: {moved}")
        started += f" ({moved})"
    if attempt.renamed_from and ctx.config.options.store_mode == "in-cluster":
        renamed = (
            f"renamed: its objects are now {attempt.names.base}-*, with a new, empty database; the old ones "
            f"({attempt.renamed_from}-*) go once this revision is ready, except the old volume and password"
        )
        result.warnings.append(f"{record.deployment_id}: {renamed}")
        started += f" ({renamed})"
    _transition(ctx, record, attempt, "DEPLOYING", started, result)


_PROVISIONING = threading.Lock()
"""The work queue's workers provision one deployment at a time: an unreachable shared store is found
out once and the others fail fast on `stores.outage`, instead of every worker waiting out the connect
timeout at once. Provisioning happens only on a first rollout or a change of credentials."""


def _provision(
    ctx: StepContext, record: DeploymentRecord, attempt: Attempt, found: stores.Found, now: datetime
) -> ManagedStoresSecret:
    if not ctx.cluster.may_write():
        # The shared stores are not behind the Kubernetes fence: a deposed leader's step would set
        # a role's password that no Secret holds, after the new leader set the one its Secret holds.
        raise apply.Retry("this replica is not the leader: the managed stores are not touched")
    with _PROVISIONING:
        return stores.provision(
            ctx.stores,
            found,
            names=attempt.names,
            deployment_id=record.deployment_id,
            now=now,
            fence=ctx.cluster.may_write,
        )


def _credentials(
    ctx: StepContext, namespace: str, names: naming.ObjectNames, deployment_id: str
) -> tuple[SecretValue | None, SecretValue | None]:
    """The stores' passwords: read back when they exist (and are ours), else generated. They are
    written with `create` only, so whoever creates them first wins and everyone reads that value."""
    if ctx.config.options.store_mode != "in-cluster":
        return None, None
    values = []
    for name, key in (
        (names.postgres_secret, POSTGRES_PASSWORD_KEY),
        (names.redis_secret, REDIS_PASSWORD_KEY),
    ):
        known = ctx.inventory is not None and ctx.inventory.lookup(namespace, "v1", "Secret", name) is None
        existing = None if known else ctx.cluster.get("v1", "Secret", namespace, name)
        if existing is None:
            values.append(SecretValue(ctx.new_password()))
            continue
        if not ownership.owned(existing, ctx.listener_id) and not ownership.handed_over(
            existing, naming.label_value(deployment_id)
        ):
            raise apply.Rejected(
                f"Secret {namespace}/{name} already exists and is not managed by this listener; refusing to touch it"
            )
        encoded = (existing.get("data") or {}).get(key)
        if not encoded:
            raise apply.Rejected(
                f"Secret {namespace}/{name} has no {key} key; refusing to replace a password"
            )
        values.append(SecretValue(base64.b64decode(encoded).decode()))
    return values[0], values[1]


def _resume(ctx: StepContext, record: DeploymentRecord, attempt: Attempt, now: datetime) -> bool:
    """After a restart, take over what the cluster records for this exact revision and spec instead
    of rolling it out and reporting it again (or retrying a revision that failed). The record is on
    the API server Deployment, or — for a revision that failed before that existed — on its env Secret."""
    assert attempt.waves is not None
    namespace = record.placement.namespace
    rendered = {apply.key_of(o): o for o in flatten(attempt.waves)}
    env = [k for k in rendered if k[0] == "Secret" and k[1].startswith(attempt.names.env_secret + "-")]
    for kind, name in [("Deployment", attempt.names.api), *env]:
        api_version = "apps/v1" if kind == "Deployment" else "v1"
        if ctx.inventory is not None and ctx.inventory.lookup(namespace, api_version, kind, name) is None:
            continue  # not there (the inventory listed its kind this cycle): nothing to resume
        live = ctx.cluster.get("apps/v1" if kind == "Deployment" else "v1", kind, namespace, name)
        if live is None or not ownership.owned(live, ctx.listener_id):
            continue
        annotations = live["metadata"].get("annotations") or {}
        recorded = status.status_record(annotations)
        if recorded.get("revision") != attempt.revision_id:
            continue
        ours = rendered[(kind, name)]["metadata"]["annotations"].get(naming.ANNOTATION_SPEC_HASH)
        # The same objects as then? Not after the listener's settings changed (records from before
        # this was recorded count as the same, as they always did).
        same = recorded.get("render") in (None, render_hash(attempt.waves))
        if recorded.get("status") == "DEPLOYING":
            # A restart mid-rollout: the deadline runs from when the rollout really started, or a
            # listener that restarts more often than the timeout would keep it DEPLOYING for ever.
            since = status.recorded_since(recorded, now)
            if since is not None and same:
                attempt.started = min(attempt.started, since)
            continue
        if not same:
            # A revision that failed (or was deployed) with other settings: roll it out as it is now.
            # An operator who fixed a setting the failure pointed at and restarted saw nothing happen.
            return False
        if recorded.get("status") == "DEPLOYED" and kind == "Deployment":
            if annotations.get(naming.ANNOTATION_SPEC_HASH) != ours:
                return False  # same revision, different spec (e.g. new listener settings): roll it out
            attempt.phase = "deployed"
            record.last_applied = now
            record.reported.add((attempt.revision_id, "DEPLOYED"))
            return True
        if recorded.get("status") == "DEPLOY_FAILED":
            attempt.phase = "failed"
            attempt.reason = str(recorded.get("reason", ""))
            record.failed.add(attempt.fingerprint)
            record.reported.add((attempt.revision_id, "DEPLOY_FAILED"))
            return True
    return False


def render_hash(waves: list[Wave]) -> str:
    """One hash of everything a revision renders (the objects' own spec hashes)."""
    hashes = sorted(
        f"{o['kind']}/{o['metadata']['name']}={o['metadata']['annotations'].get(naming.ANNOTATION_SPEC_HASH)}"
        for o in flatten(waves)
    )
    return naming.id_hash("\n".join(hashes), 16)


# --- apply in waves, following the rollout ----------------------------------------------------


def _apply_waves(
    ctx: StepContext, attempt: Attempt, indices: tuple[int, ...], live: apply.Live | None = None
) -> None:
    assert attempt.waves is not None
    if live is None:
        # Look again right before writing: a wave is written one or more cycles after the survey in
        # `_prepare` (the servers wait for the stores), and a forced apply would take over an object
        # someone else created with one of our names meanwhile. In a poll the inventory answers (no
        # request beyond its one list per namespace and kind per poll); at a tick, whose inventory
        # may be a poll interval old, the wave's objects are read with GETs. Its answer is not passed
        # on: a generated credential is still created (a 409 then re-reads a password another
        # writer created meanwhile, so the revision is re-rendered with it instead of flipping it).
        apply.survey(
            ctx.cluster,
            [o for index in indices for o in attempt.waves[index].objects],
            ctx.listener_id,
            None if ctx.tick else ctx.inventory,
        )
    for index in indices:
        _apply_some(ctx, attempt, attempt.waves[index].objects, live)
        attempt.applied.add(index)


def _progress(
    ctx: StepContext, record: DeploymentRecord, attempt: Attempt, now: datetime, result: StepResult
) -> None:
    assert attempt.waves is not None
    revisioned = {attempt.names.api, attempt.names.queue}
    if attempt.phase == "stores":
        if not {WAVE_SECRETS, WAVE_STORES} <= attempt.applied:
            _apply_waves(ctx, attempt, (WAVE_SECRETS, WAVE_STORES))
            result.applied = True
        state, why = health.workloads(
            ctx.cluster,
            attempt.waves[WAVE_STORES].objects,
            now,
            revision_id=attempt.revision_id,
            revisioned=revisioned,
            unschedulable_grace=ctx.config.unschedulable_grace,
        )
        if state == "Failed":
            _fail(ctx, record, attempt, f"backing store failed: {why}", result)
            return
        if state != "Current":
            _check_deadline(ctx, record, attempt, now, f"backing stores not ready: {why}", result)
            return
        _apply_waves(ctx, attempt, (WAVE_SERVERS, WAVE_EXPOSURE))
        attempt.phase = "rolling"

    state, why = health.workloads(
        ctx.cluster,
        attempt.waves[WAVE_SERVERS].objects,
        now,
        revision_id=attempt.revision_id,
        revisioned=revisioned,
        unschedulable_grace=ctx.config.unschedulable_grace,
    )
    if state == "Failed":
        _fail(ctx, record, attempt, why, result)
    elif state != "Current":
        _check_deadline(ctx, record, attempt, now, why, result)
    elif not ctx.prober(record.placement.namespace, attempt.names.api):
        _check_deadline(ctx, record, attempt, now, "pods are ready but GET /ok does not answer 200", result)
    else:
        attempt.phase = "deployed"
        record.last_applied = now
        result.deployed = True
        _transition(ctx, record, attempt, "DEPLOYED", "all replicas ready and GET /ok answered 200", result)
        _prune_stale(ctx, record, attempt, result)


def _reassert(
    ctx: StepContext, record: DeploymentRecord, attempt: Attempt, now: datetime, result: StepResult
) -> None:
    """Resync: re-apply what drifted (reverting manual edits) and prune what is no longer rendered.
    With an inventory only drifted objects are written (`inventory.drift`); without one, all are."""
    assert attempt.waves is not None
    if ctx.inventory is not None:
        _correct_drift(ctx, record, attempt, now, result)
        return
    live = apply.survey(ctx.cluster, flatten(attempt.waves), ctx.listener_id)
    _apply_waves(ctx, attempt, (WAVE_SECRETS, WAVE_STORES, WAVE_SERVERS, WAVE_EXPOSURE), live)
    record.last_applied = now
    _prune_stale(ctx, record, attempt, result)


def _correct_drift(
    ctx: StepContext, record: DeploymentRecord, attempt: Attempt, now: datetime, result: StepResult
) -> None:
    assert attempt.waves is not None
    assert ctx.inventory is not None
    found = inventory.drift(ctx.inventory, flatten(attempt.waves), attempt.fields)
    if found.foreign:
        raise apply.Rejected(
            f"{', '.join(found.foreign)} is no longer managed by this listener; refusing to touch it"
        )
    if found.changed:
        # Survey (GET) only the drifted objects: a deleted one may have been re-created by someone else.
        live = apply.survey(ctx.cluster, found.changed, ctx.listener_id)
        # A generated credential that is there after all (the inventory's view lagged) needs nothing.
        keys = [
            apply.key_of(o)
            for o in found.changed
            if not (apply.is_create_only(o) and live.get(apply.key_of(o)) is not None)
        ]
        changed = set(keys)
        if keys:
            log.info(
                "deployment %s: drift, re-applying %s",
                record.deployment_id,
                "; ".join(f"{kind} {name} ({found.why[(kind, name)]})" for kind, name in keys),
            )
        for wave in attempt.waves:
            objects = [o for o in wave.objects if apply.key_of(o) in changed]
            if objects:
                _apply_some(ctx, attempt, objects, live)
        metrics.DRIFT_CORRECTIONS.inc(len(keys))
        result.drifted += [f"{kind} {record.placement.namespace}/{name}" for kind, name in keys]
    record.last_applied = now
    _prune_stale(ctx, record, attempt, result)


def _apply_some(
    ctx: StepContext, attempt: Attempt, objects: Iterable[Mapping[str, Any]], live: apply.Live | None
) -> None:
    def written(obj: Mapping[str, Any]) -> None:
        attempt.fields[apply.key_of(obj)] = inventory.fields_hash(obj)
        if ctx.inventory is not None:
            ctx.inventory.note(obj)

    apply.apply_objects(ctx.cluster, objects, live, written)


def wants_rollout(record: DeploymentRecord, placement: Placement) -> bool:
    """Does `placement` ask for a rollout the record has not started (a new deployment, revision,
    data or place)? The queue takes those first. Reads the record only (a step may be running)."""
    attempt, seen = record.attempt, record.seen
    if attempt is None:
        return True
    if seen is not None and seen[0] is placement.deployment and seen[1] == placement.namespace:
        current = seen[2]
    else:
        current = fingerprint(placement)
    return current != attempt.fingerprint and current not in record.failed


def has_work(config: ReconcilerConfig, record: DeploymentRecord, placement: Placement, now: datetime) -> bool:
    """Would `step` do anything for this record now? A deployed or failed revision that the control
    plane has not moved, with nothing to report and no resync due, is left alone: at N = 1,000 a poll
    queues only what changed, not a thousand no-op steps. Call only while no step of it runs."""
    attempt = record.attempt
    if attempt is None or record.unreported or attempt.busy:
        return True
    _fingerprint(record, placement)  # cache it on the record (no step is running) for `wants_rollout`
    if wants_rollout(record, placement):
        return True
    if attempt.phase == "failed":
        return False
    return record.last_applied is None or now - record.last_applied >= config.resync_interval


def _fingerprint(record: DeploymentRecord, placement: Placement) -> Fingerprint:
    seen = record.seen
    if seen is not None and seen[0] is placement.deployment and seen[1] == placement.namespace:
        return seen[2]
    current = fingerprint(placement)
    record.seen = (placement.deployment, placement.namespace, current)
    return current


STRAY_KINDS = frozenset(k for k in KINDS if k[1] != "PersistentVolumeClaim")
"""What `prune.prune_stale` may delete (a claim is data: never a stray)."""


def _prune_stale(ctx: StepContext, record: DeploymentRecord, attempt: Attempt, result: StepResult) -> None:
    assert attempt.waves is not None
    keep = {apply.key_of(o) for o in flatten(attempt.waves)}
    try:
        if ctx.inventory is not None and not ctx.inventory.strays(
            record.placement.namespace, record.deployment_id, keep, STRAY_KINDS & ctx.served
        ):
            return  # nothing of it left over: no list per kind to find that out
        removed = prune.prune_stale(
            ctx.cluster, ctx.listener_id, record.placement.namespace, record.deployment_id, keep, ctx.served
        )
        result.pruned_objects += removed
        if any(r.startswith(("HorizontalPodAutoscaler ", "ScaledObject ")) for r in removed):
            # The autoscaler kept writing `replicas` until it was gone: assert the fixed count now.
            _apply_waves(ctx, attempt, (WAVE_SERVERS,))
    except ClusterError as error:
        result.errors.append(f"{record.deployment_id}: pruning objects it no longer renders: {error}")


def _resync_due(ctx: StepContext, record: DeploymentRecord, now: datetime) -> bool:
    return record.last_applied is None or now - record.last_applied >= ctx.config.resync_interval


def _check_deadline(
    ctx: StepContext,
    record: DeploymentRecord,
    attempt: Attempt,
    now: datetime,
    reason: str,
    result: StepResult,
) -> None:
    attempt.reason = reason
    waited = now - attempt.started
    if attempt.busy and waited >= ctx.config.rollout_timeout:
        _fail(ctx, record, attempt, f"not ready after {int(waited.total_seconds())} s: {reason}", result)


# --- outcomes ------------------------------------------------------------------------------------


def _fail(
    ctx: StepContext, record: DeploymentRecord, attempt: Attempt, reason: str, result: StepResult
) -> None:
    attempt.phase = "failed"
    attempt.reason = reason
    attempt.retry_at = None
    record.failed.add(attempt.fingerprint)
    result.failed = reason
    _transition(ctx, record, attempt, "DEPLOY_FAILED", reason, result)


def _transition(
    ctx: StepContext, record: DeploymentRecord, attempt: Attempt, state: str, reason: str, result: StepResult
) -> None:
    log.info("deployment %s revision %s: %s (%s)", record.deployment_id, attempt.revision_id, state, reason)
    namespace = record.placement.namespace
    candidates: list[status.Target] = [("apps/v1", "Deployment", attempt.names.api)]
    if attempt.waves is not None:
        candidates += [
            ("v1", "Secret", o["metadata"]["name"])
            for o in attempt.waves[WAVE_SECRETS].objects
            if o["metadata"]["name"].startswith(attempt.names.env_secret)
        ]
    try:
        target = status.status_target(
            ctx.cluster, namespace, candidates, ctx.listener_id, None if ctx.tick else ctx.inventory
        )
        if target is not None:
            since = attempt.started if state == "DEPLOYING" else None
            rendered = render_hash(attempt.waves) if attempt.waves is not None else None
            status.annotate_status(
                ctx.cluster, namespace, target, attempt.revision_id, state, reason, since, rendered
            )
        status.event(
            ctx.cluster,
            namespace,
            target or candidates[0],
            name=status.transition_event_name(attempt.names.base, attempt.revision_id, state),
            reason=status.REASONS[state],
            message=f"revision {attempt.revision_id}: {reason}",
            warning=state == "DEPLOY_FAILED",
        )
    except ClusterError as error:
        result.errors.append(f"{record.deployment_id}: recording status: {error}")
    if (attempt.revision_id, state) not in record.reported:
        record.unreported.append((attempt.revision_id, state, reason))
        _flush_reports(ctx, record)


def _flush_reports(ctx: StepContext, record: DeploymentRecord) -> None:
    pending, record.unreported = record.unreported, []
    for revision_id, state, reason in pending:
        if (revision_id, state) in record.reported or not revision_id:
            continue
        if status.report_upstream(ctx.reporter, record.deployment_id, revision_id, state, reason):
            record.reported.add((revision_id, state))
        else:
            record.unreported.append((revision_id, state, reason))


def backoff(ctx: StepContext, failures: int, retry_after: float | None = None) -> timedelta:
    """Exponential from `retry_base`, capped at `retry_max`, jittered, at least the server's
    `Retry-After`: never a hot loop against the API server (`reconcile.queue.retry_delay`)."""
    return retry_delay(failures, ctx.config.retry_base, ctx.config.retry_max, retry_after=retry_after)
