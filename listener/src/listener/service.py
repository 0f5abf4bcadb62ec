"""The listener process: wire settings to the control plane and the cluster, then loop until told to stop.

The loop polls every `poll_interval_seconds` ± jitter, and faster (every 2 s) while a rollout is in
progress so a failure or success is reported within seconds. SIGTERM finishes the current cycle
and exits.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from listener import __version__, validate
from listener.controlplane import (
    ControlPlaneClient,
    ControlPlaneConfig,
    ControlPlaneError,
    EmulatorStatusReporter,
    LoggingStatusReporter,
    StatusReporter,
)
from listener.desired import Platform, agent_server_spec, place
from listener.reconcile import CycleReport, PrunePolicy, Reconciler, ReconcilerConfig
from listener.regions import REGIONS, langsmith_api_url
from listener.render import RenderError, flatten, render, to_yaml
from listener.render.context import API_PORT
from listener.settings import ENV_PREFIX, Settings
from listener.spec import ExternalStores, SecretValue

log = logging.getLogger(__name__)

ROLLOUT_TICK_SECONDS = 2.0
HEARTBEAT_EVERY = timedelta(seconds=60)


def next_delay(settings: Settings, busy: bool, rng: random.Random) -> float:
    """Seconds until the next cycle: the poll interval with ±jitter, or a short tick during rollouts."""
    if busy:
        return min(ROLLOUT_TICK_SECONDS, settings.poll_interval_seconds)
    spread = settings.poll_interval_seconds * settings.poll_jitter
    return settings.poll_interval_seconds + rng.uniform(-spread, spread)


def control_plane_client(settings: Settings) -> ControlPlaneClient:
    return ControlPlaneClient(
        ControlPlaneConfig(
            base_url=settings.base_url, api_key=settings.api_key, tenant_id=settings.workspace_id
        )
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
    """The loop around one `Reconciler`; `stop` (a threading.Event) ends it between cycles."""

    def __init__(
        self,
        settings: Settings,
        reconciler: Reconciler,
        client: ControlPlaneClient,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        on_cycle: Callable[[CycleReport], None] | None = None,
    ):
        self.settings = settings
        self.reconciler = reconciler
        self._client = client
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._on_cycle = on_cycle
        self._last_heartbeat: datetime | None = None
        self._logged: set[str] = set()

    def cycle(self) -> CycleReport:
        now = self._clock()
        report = self.reconciler.run_once(now)
        self._heartbeat(now)
        for line in _summary(report):
            log.info(line)
        # Refused prunes and foreign objects repeat every cycle until something changes: say each once.
        notices = [f"cycle: not pruned {d}: {why}" for d, why in report.prune_refused.items()]
        notices += [f"cycle: warning: {w}" for w in report.warnings]
        for line in notices:
            if line not in self._logged:
                log.warning(line)
        self._logged = set(notices)
        if self._on_cycle:
            self._on_cycle(report)
        return report

    def run(self, stop: threading.Event) -> None:
        log.info(
            "listener %s watching %s, polling %s every %.0f s",
            self.settings.listener_id,
            ",".join(self.settings.namespaces),
            self.settings.base_url,
            self.settings.poll_interval_seconds,
        )
        while not stop.is_set():
            try:
                self.cycle()
            except Exception:  # one bad cycle must not end the process; the next one starts clean
                log.exception("reconcile cycle failed")
            stop.wait(next_delay(self.settings, self.reconciler.in_progress, self._rng))

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


def _summary(report: CycleReport) -> list[str]:
    lines = []
    if not report.control_plane_ok:
        lines.append("cycle: control plane unavailable; nothing changed")
    for deployment_id in report.applied:
        lines.append(f"cycle: applied {deployment_id}")
    for deployment_id in report.deployed:
        lines.append(f"cycle: {deployment_id} DEPLOYED")
    for deployment_id, reason in report.failed.items():
        lines.append(f"cycle: {deployment_id} DEPLOY_FAILED: {reason}")
    for deployment_id in report.pruned:
        lines.append(f"cycle: pruned {deployment_id}")
    for deployment_id, how in report.moved.items():
        lines.append(f"cycle: {deployment_id} {how}")
    lines.extend(f"cycle: removed {what} (no longer rendered)" for what in report.pruned_objects)
    lines.extend(f"cycle: error: {error}" for error in report.errors)
    return lines


def dry_run(settings: Settings, client: ControlPlaneClient) -> str:
    """What one cycle would apply, as YAML with Secret values redacted; reads the control plane only."""
    placed, refused = place(client.list_deployments(), settings.listener_id, settings.namespaces)
    documents: list[dict[str, Any]] = []
    # Passwords are generated at apply time; the value never shows here anyway (Secrets are redacted).
    placeholder = SecretValue("generated-on-first-apply")
    invalid: list[str] = []
    for placement in placed:
        spec = agent_server_spec(placement, platform(settings), placeholder, placeholder)
        try:
            validate.check(spec)
            documents.extend(flatten(render(spec, settings.render_options())))
        except (validate.InvalidDeployment, RenderError) as error:
            invalid.append(f"# invalid {placement.deployment_id}: {error}\n")
    header = "".join(f"# refused {r.deployment_id}: {r.reason}\n" for r in refused) + "".join(invalid)
    return header + (to_yaml(documents) if documents else "# nothing to apply\n")
