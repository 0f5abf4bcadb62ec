"""The listener process: wire settings to the control plane and the cluster, then loop until told to stop.

The loop polls every `poll_interval_seconds` ± jitter; while a rollout is in progress it also ticks
every 2 s in between, stepping only the rollouts under way (no control-plane list), so a failure
or success is reported within seconds whatever the number of deployments. With leader election only the leader
runs cycles; a standby ticks until it leads. `listener.process` runs it and handles SIGTERM.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from listener import __version__, metrics, naming, validate
from listener.controlplane import (
    ControlPlaneClient,
    ControlPlaneConfig,
    ControlPlaneError,
    EmulatorStatusReporter,
    LoggingStatusReporter,
    StatusReporter,
)
from listener.desired import Platform, agent_server_spec, place, refuse_unreadable
from listener.health import Health
from listener.leader import LeaderElector
from listener.logs import ids
from listener.reconcile import CycleReport, PrunePolicy, Reconciler, ReconcilerConfig
from listener.regions import REGIONS, langsmith_api_url
from listener.render import RenderError, flatten, render, to_yaml
from listener.render.context import API_PORT
from listener.render.secrets import MANAGED_STORE_VARS
from listener.settings import ENV_PREFIX, Settings
from listener.spec import ExternalStores, ManagedStoresSecret, SecretValue

log = logging.getLogger(__name__)

ROLLOUT_TICK_SECONDS = 2.0
STANDBY_TICK_SECONDS = 1.0
"""How often a standby checks whether it leads now (the elector's own retry period is 2 s)."""
HEARTBEAT_EVERY = timedelta(seconds=60)
CYCLE_WAIT_SECONDS = 1.0
"""How long a looping cycle waits for the steps it queued: the ones still running report in a later
cycle, so a slow deployment never pushes the next poll back by more than this."""


def next_delay(settings: Settings, busy: bool, rng: random.Random) -> float:
    """Seconds until the next cycle: the poll interval with ±jitter, or a short tick during rollouts."""
    if busy:
        return min(ROLLOUT_TICK_SECONDS, settings.poll_interval_seconds)
    spread = settings.poll_interval_seconds * settings.poll_jitter
    return settings.poll_interval_seconds + rng.uniform(-spread, spread)


def control_plane_client(
    settings: Settings, *, observe: Callable[[str, str], None] | None = None
) -> ControlPlaneClient:
    """The client, counting every request in `listener.metrics` (and telling `observe`)."""

    def counted(method: str, code: str) -> None:
        metrics.CONTROL_PLANE_REQUESTS.labels(method=method, code=code).inc()
        if observe is not None:
            observe(method, code)

    return ControlPlaneClient(
        ControlPlaneConfig(
            base_url=settings.base_url, api_key=settings.api_key, tenant_id=settings.workspace_id
        ),
        observe=counted,
    )


def langsmith_endpoint(settings: Settings) -> str | None:
    """Where Agent Servers send traces: set explicitly, else the control plane's own LangSmith API."""
    if settings.langsmith_endpoint:
        return settings.langsmith_endpoint
    if settings.region:
        return f"https://{REGIONS[settings.region].smith_api_host}"
    return langsmith_api_url(settings.base_url)


def platform(settings: Settings) -> Platform:
    endpoint = langsmith_endpoint(settings)
    if endpoint is None:
        log.warning(
            "no LangSmith API is known for %s: Agent Servers get tracing off and no API key "
            "(set %sLANGSMITH_ENDPOINT to trace to your LangSmith)",
            settings.base_url,
            ENV_PREFIX,
        )
    return Platform(
        listener_id=str(settings.listener_id),
        langsmith_endpoint=endpoint,
        api_key=SecretValue(settings.api_key.get_secret_value()) if endpoint else None,
        # Settings guarantee the Secret's name in external mode; without it every render fails.
        external_stores=ExternalStores(secret_name=settings.external_stores_secret)
        if settings.store_mode == "external" and settings.external_stores_secret
        else None,
    )


def reconciler_config(settings: Settings) -> ReconcilerConfig:
    return ReconcilerConfig(
        listener_id=settings.listener_id,
        namespaces=tuple(settings.namespaces),
        options=settings.render_options(),
        platform=platform(settings),
        rollout_timeout=timedelta(seconds=settings.rollout_timeout_seconds),
        unschedulable_grace=timedelta(seconds=settings.unschedulable_grace_seconds),
        resync_interval=timedelta(seconds=settings.resync_interval_seconds),
        data_retention=settings.data_retention,
        workers=settings.workers,
        prune=PrunePolicy(
            window=timedelta(seconds=settings.prune_window_seconds),
            max_fraction=settings.prune_max_fraction,
            allow_empty=settings.prune_allow_empty,
        ),
    )


def reporter(settings: Settings, client: ControlPlaneClient) -> StatusReporter:
    # Real LangSmith has no endpoint for revision status: only the emulator gets transitions upstream.
    return (
        EmulatorStatusReporter(client) if settings.status_reporting == "emulator" else LoggingStatusReporter()
    )


class HttpProber:
    """`GET` the Agent Server's health endpoint; `url_for(namespace, service)` says where it is."""

    def __init__(self, url_for: Callable[[str, str], str], *, timeout: float = 5.0):
        self._url_for = url_for
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)

    def __call__(self, namespace: str, service: str) -> bool:
        try:
            return self._http.get(self._url_for(namespace, service)).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._http.close()


def prober(settings: Settings) -> HttpProber:
    """The health check at `LISTENER_PROBE_URL_TEMPLATE` (by default the Service's cluster DNS name)."""
    return HttpProber(lambda ns, svc: settings.probe_url(ns, svc, API_PORT))


class Service:
    """The loop around one `Reconciler`; `stop` (a threading.Event) ends it between cycles.

    With a `leader` elector, cycles run only while it leads; when it starts a new term after having
    led, `new_reconciler()` replaces the reconciler, because what it remembers may have been changed
    by another leader meanwhile (a fresh one resumes from the cluster's status annotations)."""

    def __init__(
        self,
        settings: Settings,
        reconciler: Reconciler,
        client: ControlPlaneClient,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        on_cycle: Callable[[CycleReport], None] | None = None,
        leader: LeaderElector | None = None,
        new_reconciler: Callable[[], Reconciler] | None = None,
        health: Health | None = None,
    ):
        self.settings = settings
        self.reconciler = reconciler
        self._client = client
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._on_cycle = on_cycle
        self._last_heartbeat: datetime | None = None
        self._leader = leader
        self._new_reconciler = new_reconciler
        self._health = health
        self._term: int | None = None
        self._standing_by = False
        self._logged: set[str] = set()
        self._next_poll = 0.0
        """When (time.monotonic) the next poll is due; cycles before it are ticks."""

    def cycle(self, *, wait: float | None = None, poll: bool = True) -> CycleReport:
        """One cycle; `wait` bounds how long it waits for the steps it queued (None: all of them).
        `poll=False` is a tick between polls (`Reconciler.run_once`)."""
        now = self._clock()
        started = time.perf_counter()
        try:
            report = self.reconciler.run_once(now, wait=wait, poll=poll)
        except Exception:
            metrics.RECONCILES.labels(result="exception").inc()
            raise
        finally:
            metrics.RECONCILE_DURATION.observe(time.perf_counter() - started)
        self._heartbeat(now)
        _observe(report, self.reconciler, now, self._clock(), polled=poll)
        for line, extra in _summary(report, self.reconciler):
            log.info(line, extra=extra)
        # Refused prunes and foreign objects repeat every cycle until something changes: say each once.
        notices = [(f"cycle: not pruned {d}: {why}", ids(d)) for d, why in report.prune_refused.items()]
        notices += [(f"cycle: warning: {w}", {}) for w in report.warnings]
        for line, extra in notices:
            if line not in self._logged:
                log.warning(line, extra=extra)
        # A poll says what holds now; a tick (no list, no prune) only adds what its steps said.
        lines = {line for line, _ in notices}
        self._logged = lines if poll else self._logged | lines
        if self._health is not None and poll:
            self._health.polled(report.control_plane_ok)
        if self._on_cycle:
            self._on_cycle(report)
        return report

    def leading(self) -> bool:
        """May this replica run a cycle now? Always, without leader election."""
        if self._leader is None:
            return True
        if not self._leader.is_leader():
            if not self._standing_by:
                holder = self._leader.holder()
                log.info(
                    f"standing by: the lease is held by {holder}" if holder else "standing by for the lease"
                )
                self._standing_by = True
            return False
        self._standing_by = False
        term = self._leader.term
        if term != self._term:
            self._logged = set()  # a new term says again what still holds
            if self._term is not None and self._new_reconciler is not None:
                self.reconciler.close()  # its last steps finish before the new term's first
                self.reconciler = self._new_reconciler()
            self._term = term
            if self._health is not None:
                self._health.new_term()
            self._next_poll = 0.0  # a new term starts with a poll
        return True

    def run(self, stop: threading.Event) -> None:
        log.info(
            "listener %s watching %s, polling %s every %.0f s",
            self.settings.listener_id,
            ",".join(self.settings.namespaces),
            self.settings.base_url,
            self.settings.poll_interval_seconds,
        )
        while not stop.is_set():
            if not self.leading():
                if self._health is not None:
                    self._health.progressed()
                stop.wait(STANDBY_TICK_SECONDS)
                continue
            started = time.monotonic()
            poll = started >= self._next_poll
            try:
                self.cycle(wait=min(CYCLE_WAIT_SECONDS, self.settings.poll_interval_seconds), poll=poll)
            except Exception:  # one bad cycle must not end the process; the next one starts clean
                log.exception("reconcile cycle failed")
            # The period counts from the start of the poll, so the poll keeps its rhythm; rollouts
            # under way tick in between (`Reconciler.run_once(poll=False)`).
            if poll:
                self._next_poll = started + next_delay(self.settings, False, self._rng)
            wake = self._next_poll
            if self.reconciler.in_progress:
                wake = min(wake, started + next_delay(self.settings, True, self._rng))
            stop.wait(max(wake - time.monotonic(), 0.0))
        # Start nothing new; the steps running finish here (process.serve bounds how long it waits).
        self.reconciler.close()

    def _heartbeat(self, now: datetime) -> None:
        if self.settings.status_reporting == "off":
            return
        if self._last_heartbeat is not None and now - self._last_heartbeat < HEARTBEAT_EVERY:
            return
        try:
            self._client.patch_listener(self.settings.listener_id, version=__version__)
            self._last_heartbeat = now
        except ControlPlaneError as error:
            log.warning("heartbeat failed: %s", error)


def _summary(report: CycleReport, reconciler: Reconciler) -> list[tuple[str, dict[str, str]]]:
    """The cycle's log lines, each with the deployment and revision ids as fields (see listener.logs)."""

    def about(deployment_id: str) -> dict[str, str]:
        record = reconciler.records.get(deployment_id)
        attempt = record.attempt if record else None
        return ids(deployment_id, attempt.revision_id if attempt else None)

    lines: list[tuple[str, dict[str, str]]] = []
    if not report.control_plane_ok:
        lines.append(("cycle: control plane unavailable; nothing changed", {}))
    for deployment_id in report.applied:
        lines.append((f"cycle: applied {deployment_id}", about(deployment_id)))
    for deployment_id in report.deployed:
        lines.append((f"cycle: {deployment_id} DEPLOYED", about(deployment_id)))
    for deployment_id, reason in report.failed.items():
        lines.append((f"cycle: {deployment_id} DEPLOY_FAILED: {reason}", about(deployment_id)))
    for deployment_id in report.pruned:
        lines.append((f"cycle: pruned {deployment_id}", ids(deployment_id)))
    for deployment_id, how in report.moved.items():
        lines.append((f"cycle: {deployment_id} {how}", ids(deployment_id)))
    lines.extend((f"cycle: removed {what} (no longer rendered)", {}) for what in report.pruned_objects)
    lines.extend((f"cycle: error: {error}", {}) for error in report.errors)
    return lines


PHASES = ("pending", "stores", "rolling", "deployed", "failed")


def _observe(
    report: CycleReport, reconciler: Reconciler, now: datetime, ended: datetime, *, polled: bool = True
) -> None:
    """The cycle's metrics: its result, the last good poll (`now`, when the cycle listed; a tick
    lists nothing, so it is never a good poll), deployments by state, and rollouts that finished in
    it (timed until `ended`, the end of the cycle)."""
    if not report.control_plane_ok:
        result = "control_plane_unavailable"
    else:
        result = "error" if report.errors or report.failed else "ok"
        if polled:
            metrics.LAST_SUCCESSFUL_POLL.set(now.timestamp())
    metrics.RECONCILES.labels(result=result).inc()
    counts = dict.fromkeys(PHASES, 0)
    for record in reconciler.records.values():
        if record.attempt is not None:
            counts[record.attempt.phase] = counts.get(record.attempt.phase, 0) + 1
    for phase, count in counts.items():
        metrics.DEPLOYMENTS.labels(state=phase).set(count)
    for outcome, finished in (("deployed", report.deployed), ("failed", list(report.failed))):
        for deployment_id in finished:
            record = reconciler.records.get(deployment_id)
            if record is not None and record.attempt is not None:
                seconds = (ended - record.attempt.started).total_seconds()
                metrics.ROLLOUT_DURATION.labels(outcome=outcome).observe(max(seconds, 0.0))


def dry_run(settings: Settings, client: ControlPlaneClient) -> str:
    """What one cycle would apply, as YAML with Secret values redacted; reads the control plane only."""
    listing = client.read_deployments()
    placed, refused = place(listing.deployments, settings.listener_id, settings.namespaces)
    refused += refuse_unreadable(listing.unreadable, settings.listener_id)[0]
    documents: list[dict[str, Any]] = []
    # Passwords are generated at apply time; the value never shows here anyway (Secrets are redacted).
    placeholder = SecretValue("generated-on-first-apply")
    invalid: list[str] = []
    for placement in placed:
        spec = agent_server_spec(placement, platform(settings), placeholder, placeholder)
        if settings.store_mode == "managed":
            # Provisioned at apply time, not here: the dry run contacts no store.
            names = naming.ObjectNames.of(placement.deployment.name, placement.deployment_id)
            spec = replace(
                spec,
                managed_stores=ManagedStoresSecret(
                    names.store_secret, tuple((k, placeholder) for k in MANAGED_STORE_VARS)
                ),
            )
        try:
            validate.check(spec)
            documents.extend(flatten(render(spec, settings.render_options())))
        except (validate.InvalidDeployment, RenderError) as error:
            invalid.append(f"# invalid {placement.deployment_id}: {error}\n")
    header = "".join(f"# refused {r.deployment_id}: {r.reason}\n" for r in refused) + "".join(invalid)
    return header + (to_yaml(documents) if documents else "# nothing to apply\n")
