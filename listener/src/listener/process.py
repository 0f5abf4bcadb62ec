"""The long-running listener process: health port, leader election, the loop, and a graceful stop.

On SIGTERM or SIGINT, within `LISTENER_SHUTDOWN_TIMEOUT_SECONDS` (keep it below the pod's
`terminationGracePeriodSeconds`, 30 s by default):

1. stop polling: the loop starts no new cycle;
2. the cycle in flight may finish within three quarters of the budget;
3. if it finished, the Lease is released so a standby takes over at its next attempt (about 2 s);
   if it did not, the cycle is abandoned: this replica resigns at once, so `listener.kube.Cluster`
   refuses its remaining writes, and the Lease is left to expire (one lease duration) rather than
   handed over while a request of ours may still be in flight;
4. the health server stops and the process exits 0. A restarted or new leader resumes from the
   status annotations in the cluster, so an abandoned rollout is picked up where it stood.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from listener.health import HealthServer
from listener.leader import LeaderElector
from listener.service import Service

log = logging.getLogger(__name__)

LOOP_SHARE = 0.75
"""Share of the shutdown budget the cycle in flight may use; the rest is for releasing the Lease."""


def serve(
    service: Service,
    *,
    shutdown_timeout: float,
    elector: LeaderElector | None = None,
    health_server: HealthServer | None = None,
    stop: threading.Event | None = None,
) -> bool:
    """Run until `stop` is set (by SIGTERM/SIGINT when called from the main thread).

    True when the loop ended within its share of the budget; False when it was abandoned (the
    caller should then exit without waiting for the worker thread)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, _frame: _stop(stop, signum))
    if health_server is not None:
        health_server.start()
    if elector is not None:
        elector.start()
    worker = threading.Thread(target=service.run, args=(stop,), name="loop", daemon=True)
    worker.start()
    while not stop.wait(1.0):
        if not worker.is_alive():  # Service.run survives every cycle; this is a bug, not a fault
            log.error("the loop ended unexpectedly; stopping")
            stop.set()

    started = time.monotonic()
    budget = shutdown_timeout * LOOP_SHARE
    log.info("shutting down: the current cycle may finish within %.0f s", budget)
    worker.join(budget)
    finished = not worker.is_alive()
    if not finished:
        log.warning("shutting down: the cycle did not finish within %.0f s; abandoning it", budget)
    if elector is not None:
        elector.stop(release=finished, timeout=max(shutdown_timeout - (time.monotonic() - started), 0.1))
    if health_server is not None:
        health_server.stop()
    log.info("stopped after %.1f s", time.monotonic() - started)
    return finished


def _stop(stop: threading.Event, signum: int) -> None:
    if not stop.is_set():
        log.info("received %s", signal.Signals(signum).name)
    stop.set()
