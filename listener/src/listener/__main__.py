"""`python -m listener`: run the listener.

    python -m listener                  # the service loop (until SIGTERM/SIGINT)
    python -m listener --once           # one reconcile cycle, then exit (0 if nothing failed)
    python -m listener --once --dry-run # print what one cycle would apply, as YAML; write nothing
    python -m listener rotate-credentials DEPLOYMENT_ID  # managed stores: new database password, rolling restart

Settings come from LISTENER_* environment variables (see listener/README.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from collections.abc import Sequence

from listener.settings import ENV_PREFIX, Settings, SettingsError, load_settings, unknown_variables

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def kubernetes_client(
    settings: Settings, *, timeout: float | None = None, asynchronous: bool = False
):  # -> lightkube.Client (or AsyncClient)
    import httpx2
    from lightkube import AsyncClient, Client, KubeConfig

    from listener.kube import FIELD_MANAGER

    variable = (
        f"{ENV_PREFIX}KUBECONFIG={settings.kubeconfig!r}"
        if settings.kubeconfig
        else f"{ENV_PREFIX}KUBECONFIG (unset, and not running in a cluster)"
    )
    try:
        config = KubeConfig.from_file(settings.kubeconfig) if settings.kubeconfig else KubeConfig.from_env()
        return (AsyncClient if asynchronous else Client)(
            config=config,
            namespace=settings.namespaces[0],
            field_manager=FIELD_MANAGER,
            timeout=httpx2.Timeout(timeout) if timeout else None,
        )
    except Exception as error:
        # A missing, malformed or unusable kubeconfig is a settings problem: name the variable, no
        # traceback. (lightkube raises ConfigError, YAML errors, KeyError, TypeError, OSError, ...)
        what = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise SettingsError(f"the listener's settings are invalid:\n  {variable}: {what}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m listener", description=__doc__.split("\n\n")[0])
    parser.add_argument("--once", action="store_true", help="run one reconcile cycle and exit")
    parser.add_argument("--dry-run", action="store_true", help="with --once: print the YAML, write nothing")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    rotate = commands.add_parser(
        "rotate-credentials",
        help="managed stores: give a deployment a new database password, restart its pods, revoke the old one",
    )
    rotate.add_argument("deployment_id", metavar="DEPLOYMENT_ID")
    args = parser.parse_args(argv)
    if args.dry_run and not args.once:
        parser.error("--dry-run goes with --once")
    try:
        settings = load_settings()
    except SettingsError as error:
        print(error, file=sys.stderr)
        # A misspelt variable is often why a required one is missing: say so here too, not only
        # once the settings are valid.
        for warning in unknown_variables(os.environ):
            print(f"  ({warning})", file=sys.stderr)
        return EXIT_CONFIG
    from listener import logs

    logs.configure(format=settings.log_format, level=settings.log_level, secrets=_secrets(settings))
    for warning in unknown_variables(os.environ):
        logging.getLogger("listener").warning(warning)
    if args.command == "rotate-credentials":
        return _rotate(settings, args.deployment_id)

    from listener.controlplane import ControlPlaneError
    from listener.health import Health
    from listener.service import control_plane_client, dry_run

    health = Health(stall_after=settings.health_stall_seconds)
    client = control_plane_client(settings, observe=health.progressed)
    try:
        if args.dry_run:
            try:
                sys.stdout.write(dry_run(settings, client))
            except ControlPlaneError as error:
                print(f"control plane: {error}", file=sys.stderr)
                return EXIT_FAILED
            return EXIT_OK
        try:
            service, elector = _service(
                settings, client, health, watch=settings.inventory_watch and not args.once
            )
        except SettingsError as error:
            print(error, file=sys.stderr)
            return EXIT_CONFIG
        if args.once:
            return _once(service, elector)
        from listener import process
        from listener.health import HealthServer

        try:
            health_server = HealthServer(health, settings.health_port)
        except OSError as error:
            print(f"{ENV_PREFIX}HEALTH_PORT={settings.health_port}: cannot listen: {error}", file=sys.stderr)
            return EXIT_CONFIG
        finished = process.serve(
            service,
            shutdown_timeout=settings.shutdown_timeout_seconds,
            elector=elector,
            health_server=health_server,
        )
        if not finished:
            # The abandoned cycle's thread may be mid-request; do not let interpreter teardown wait on
            # it or race it for stderr. Everything that matters was flushed or released above.
            logging.shutdown()
            os._exit(EXIT_OK)
        return EXIT_OK
    finally:
        client.close()


def _secrets(settings: Settings) -> list[str]:
    """Every secret value the logs must never show: the API key, the admin URIs and their passwords."""
    from urllib.parse import unquote, urlsplit

    values = [settings.api_key.get_secret_value()]
    for uri in (settings.postgres_admin_uri, settings.redis_admin_uri):
        if uri is not None:
            values.append(uri.get_secret_value())
            try:
                password = urlsplit(uri.get_secret_value()).password
            except ValueError:
                password = None
            if password:
                values += [password, unquote(password)]
    return values


def _once(service, elector) -> int:  # (Service, LeaderElector | None) -> exit code
    """One cycle; with leader election, only after acquiring the Lease (waiting at most one lease)."""
    import threading

    if elector is not None and not elector.acquire(threading.Event(), elector.config.lease_duration * 2):
        print(
            f"not the leader: lease held by {elector.holder() or 'an unreachable API server'}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    try:
        report = service.cycle()
    except Exception as error:  # `--once` ends with an exit code, never a traceback
        logging.getLogger("listener").debug("the cycle failed", exc_info=True)
        print(f"the cycle failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if elector is not None:
            elector.release()
    return EXIT_OK if report.ok else EXIT_FAILED


def _rotate(settings: Settings, deployment_id: str) -> int:
    from datetime import UTC, datetime, timedelta

    from listener.kube import Cluster, ClusterError
    from listener.managed import CredentialsSecretError, ManagedStores, StoreError
    from listener.managed.rotation import RotationError, rotate_credentials

    if settings.store_mode != "managed" or not settings.postgres_admin_uri or not settings.redis_admin_uri:
        print(
            "rotate-credentials needs LISTENER_STORE_MODE=managed with LISTENER_POSTGRES_ADMIN_URI and "
            "LISTENER_REDIS_ADMIN_URI",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        cluster = Cluster(kubernetes_client(settings))
        stores = ManagedStores.connect(
            postgres_admin_uri=settings.postgres_admin_uri.get_secret_value(),
            redis_admin_uri=settings.redis_admin_uri.get_secret_value(),
            listener_id=str(settings.listener_id),
            redis_isolation=settings.redis_isolation,
            pool_size=1,
            postgres_admin_password_secret_arn=settings.postgres_admin_password_secret_arn,
        )
    except (SettingsError, StoreError) as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    try:
        result = rotate_credentials(
            cluster,
            stores,
            listener_id=str(settings.listener_id),
            namespaces=settings.namespaces,
            deployment_id=deployment_id,
            clock=lambda: datetime.now(UTC),
            sleep=time.sleep,
            timeout=timedelta(seconds=settings.rollout_timeout_seconds),
        )
    except (RotationError, StoreError, ClusterError, CredentialsSecretError, ValueError) as error:
        print(f"rotate-credentials {deployment_id!r}: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        stores.close()
    verb = "finished the interrupted rotation" if result.resumed else "rotated"
    print(
        f"{verb} {deployment_id}: pods of {', '.join(result.restarted) or 'no Deployment'} in {result.namespace} "
        f"now use role {result.new_role} (Secret {result.secret}); role {result.old_role} can no longer log in"
    )
    return EXIT_OK


def _service(
    settings: Settings, client, health, *, watch: bool = False
):  # -> (Service, LeaderElector | None)
    from listener import metrics
    from listener.kube import OWN_NAMESPACE_RULES, Cluster
    from listener.leader import FencedReporter, LeaderElector, LeaseConfig
    from listener.reconcile import Reconciler
    from listener.service import Service, prober, reconciler_config, reporter

    elector = None
    timeout = None
    if settings.leader_election:
        # controller-runtime's identity: the pod name plus a random suffix, so two processes can never
        # both believe they hold the Lease (a misconfigured fixed POD_NAME, or an overlapping restart).
        lease = LeaseConfig(
            namespace=settings.pod_namespace or "",
            name=settings.lease,
            identity=f"{settings.pod_name}_{uuid.uuid4()}",
        )
        # A write sent just before the renew deadline must land before a standby may take over.
        timeout = lease.lease_duration - lease.renew_deadline
        elector = LeaderElector(
            Cluster(kubernetes_client(settings, timeout=timeout), rules=OWN_NAMESPACE_RULES), lease
        )
        leader = elector
        metrics.LEADER.set_function(lambda: 1.0 if leader.is_leader() else 0.0)  # exact at scrape time
    else:
        metrics.LEADER.set(1)
    cluster = Cluster(
        kubernetes_client(settings, timeout=timeout),
        fence=elector.may_write if elector else None,
        observe=health.progressed,
    )
    status = reporter(settings, client)
    if elector is not None:
        status = FencedReporter(status, elector.may_write)
    probe = prober(settings)
    stores = _managed_stores(settings)

    def new_reconciler() -> Reconciler:
        return Reconciler(
            reconciler_config(settings),
            client,
            cluster,
            status,
            probe,
            stores=stores,
            # Watches never time out client-side: the API server ends them, and they resume. One
            # cycle (`--once`) gains nothing from them: its inventory lists each table once.
            watch=(lambda: kubernetes_client(settings, asynchronous=True)) if watch else None,
        )

    health.leadership = elector
    service = Service(
        settings, new_reconciler(), client, leader=elector, new_reconciler=new_reconciler, health=health
    )
    return service, elector


def _managed_stores(settings: Settings):  # -> ManagedStores | None
    """Managed mode: one bounded admin pool per store for every deployment (no connection is opened
    until a deployment needs one, so an unreachable store fails revisions, not the listener's start)."""
    if settings.store_mode != "managed":
        return None
    from listener.managed import ManagedStores, StoreError

    assert settings.postgres_admin_uri is not None
    assert settings.redis_admin_uri is not None
    try:
        return ManagedStores.connect(
            postgres_admin_uri=settings.postgres_admin_uri.get_secret_value(),
            redis_admin_uri=settings.redis_admin_uri.get_secret_value(),
            listener_id=str(settings.listener_id),
            redis_isolation=settings.redis_isolation,
            pool_size=settings.managed_admin_connections,
            postgres_admin_password_secret_arn=settings.postgres_admin_password_secret_arn,
        )
    except StoreError as error:
        raise SettingsError(f"the listener's settings are invalid:\n  {error}") from None


if __name__ == "__main__":
    sys.exit(main())
