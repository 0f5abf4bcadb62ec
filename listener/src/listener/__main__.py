"""`python -m listener`: run the listener.

    python -m listener                  # the service loop (until SIGTERM/SIGINT)
    python -m listener --once           # one reconcile cycle, then exit (0 if nothing failed)
    python -m listener --once --dry-run # print what one cycle would apply, as YAML; write nothing

Settings come from LISTENER_* environment variables (see listener/README.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from listener.settings import Settings, SettingsError, load_settings, unknown_variables

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def kubernetes_client(settings: Settings):  # -> lightkube.Client
    from lightkube import Client, KubeConfig

    from listener.kube import FIELD_MANAGER
    from listener.settings import ENV_PREFIX

    variable = (
        f"{ENV_PREFIX}KUBECONFIG={settings.kubeconfig!r}"
        if settings.kubeconfig
        else f"{ENV_PREFIX}KUBECONFIG (unset, and not running in a cluster)"
    )
    try:
        config = KubeConfig.from_file(settings.kubeconfig) if settings.kubeconfig else KubeConfig.from_env()
        return Client(config=config, namespace=settings.namespaces[0], field_manager=FIELD_MANAGER)
    except Exception as error:
        # A missing, malformed or unusable kubeconfig is a settings problem: name the variable, no
        # traceback. (lightkube raises ConfigError, YAML errors, KeyError, TypeError, OSError, ...)
        what = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise SettingsError(f"the listener's settings are invalid:\n  {variable}: {what}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m listener", description=__doc__.split("\n\n")[0])
    parser.add_argument("--once", action="store_true", help="run one reconcile cycle and exit")
    parser.add_argument("--dry-run", action="store_true", help="with --once: print the YAML, write nothing")
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
    for warning in unknown_variables(os.environ):
        logging.getLogger("listener").warning(warning)

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
            try:
                report = service.cycle()
            except Exception as error:  # `--once` ends with an exit code, never a traceback
                logging.getLogger("listener").debug("the cycle failed", exc_info=True)
                print(f"the cycle failed: {type(error).__name__}: {error}", file=sys.stderr)
                return EXIT_FAILED
            return EXIT_OK if report.ok else EXIT_FAILED
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        service.run(stop)
        return EXIT_OK
    finally:
        client.close()


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
