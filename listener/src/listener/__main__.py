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
import signal
import sys
import threading
import time
from collections.abc import Sequence

from listener.settings import Settings, SettingsError, load_settings

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def kubernetes_client(settings: Settings):  # -> lightkube.Client
    from lightkube import Client, KubeConfig
    from lightkube.core.exceptions import ConfigError

    from listener.kube import FIELD_MANAGER
    from listener.settings import ENV_PREFIX

    try:
        config = KubeConfig.from_file(settings.kubeconfig) if settings.kubeconfig else KubeConfig.from_env()
    except ConfigError as error:
        # A missing or unusable kubeconfig is a settings problem: name the variable, no traceback.
        variable = (
            f"{ENV_PREFIX}KUBECONFIG={settings.kubeconfig!r}"
            if settings.kubeconfig
            else f"{ENV_PREFIX}KUBECONFIG (unset, and not running in a cluster)"
        )
        raise SettingsError(f"the listener's settings are invalid:\n  {variable}: {error}") from None
    return Client(config=config, namespace=settings.namespaces[0], field_manager=FIELD_MANAGER)


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpx2"):  # one line per request drowns what the listener decided
        logging.getLogger(chatty).setLevel(logging.WARNING)

    try:
        settings = load_settings()
    except SettingsError as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "rotate-credentials":
        return _rotate(settings, args.deployment_id)
    if settings.store_mode == "managed":
        # The provisioning library exists (listener.managed); the reconcile loop does not call it yet.
        print(
            "the listener's settings are invalid:\n  LISTENER_STORE_MODE=managed: the reconcile loop does not "
            "provision managed stores yet; only `rotate-credentials` uses them",
            file=sys.stderr,
        )
        return EXIT_CONFIG

    from listener.controlplane import ControlPlaneError
    from listener.service import control_plane_client, dry_run

    client = control_plane_client(settings)
    try:
        if args.dry_run:
            try:
                sys.stdout.write(dry_run(settings, client))
            except ControlPlaneError as error:
                print(f"control plane: {error}", file=sys.stderr)
                return EXIT_FAILED
            return EXIT_OK
        try:
            service = _service(settings, client)
        except SettingsError as error:
            print(error, file=sys.stderr)
            return EXIT_CONFIG
        if args.once:
            report = service.cycle()
            return (
                EXIT_OK
                if report.control_plane_ok and not report.failed and not report.errors
                else EXIT_FAILED
            )
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        service.run(stop)
        return EXIT_OK
    finally:
        client.close()


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


def _service(settings: Settings, client):  # -> Service
    from listener.kube import Cluster
    from listener.reconcile import Reconciler
    from listener.service import Service, prober, reconciler_config, reporter

    cluster = Cluster(kubernetes_client(settings))
    reconciler = Reconciler(
        reconciler_config(settings), client, cluster, reporter(settings, client), prober(settings)
    )
    return Service(settings, reconciler, client)


if __name__ == "__main__":
    sys.exit(main())
