"""Every Prometheus metric the listener exports, defined once; code anywhere increments these objects.

Served at `GET /metrics` on `LISTENER_HEALTH_PORT` (see `listener.health`). Names follow Prometheus
conventions (`_total` counters, `_seconds` units) under one `langsmith_listener_` prefix; label values
come from small fixed sets, never from ids, so cardinality stays bounded at any number of deployments.
The default registry also carries the client library's process and Python collectors (CPU, memory,
open file descriptors, GC).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# No `_created` sample beside every counter and histogram: twice the series for a timestamp
# that the process start time already gives.
disable_created_metrics()

PREFIX = "langsmith_listener"

RECONCILES = Counter(
    f"{PREFIX}_reconciles_total",
    "Reconcile cycles by result: ok, error (some deployment's work failed), "
    "control_plane_unavailable (nothing was changed), exception (the cycle crashed).",
    ["result"],
)
RECONCILE_DURATION = Histogram(
    f"{PREFIX}_reconcile_duration_seconds",
    "Wall time of one reconcile cycle.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
CONTROL_PLANE_REQUESTS = Counter(
    f"{PREFIX}_control_plane_requests_total",
    "HTTP requests to the LangSmith control plane (each retry counts) by method and status code; "
    "code is 'error' when no response arrived.",
    ["method", "code"],
)
KUBERNETES_REQUESTS = Counter(
    f"{PREFIX}_kubernetes_requests_total",
    "Kubernetes API calls by verb and status: '2xx' on success, the HTTP code of an error, "
    "'unreachable' when no response arrived, 'unreadable' when the answer was not what the API promises, "
    "'fenced' when a write was refused because this "
    "replica is not the leader.",
    ["verb", "code"],
)
LAST_SUCCESSFUL_POLL = Gauge(
    f"{PREFIX}_last_successful_poll_timestamp_seconds",
    "Unix time of the last cycle whose control-plane list succeeded.",
)
DEPLOYMENTS = Gauge(
    f"{PREFIX}_deployments",
    "Deployments this listener tracks, by state (pending, stores, rolling, deployed, failed).",
    ["state"],
)
ROLLOUT_DURATION = Histogram(
    f"{PREFIX}_rollout_duration_seconds",
    "From a revision's first apply to DEPLOYED or DEPLOY_FAILED, by outcome.",
    ["outcome"],
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800),
)
DRIFT_CORRECTIONS = Counter(
    f"{PREFIX}_drift_corrections_total",
    "Objects re-applied because their live state drifted from what the listener applied.",
)
REFUSED_PRUNES = Counter(
    f"{PREFIX}_refused_prunes_total",
    "Deletions the listener refused to make (the control plane could not confirm a deployment was "
    "deleted, a list was empty or partial, or the object was not the listener's).",
)
LEADER = Gauge(
    f"{PREFIX}_leader",
    "1 while this replica holds the leader Lease (always 1 when leader election is off).",
)
QUEUE_DEPTH = Gauge(
    f"{PREFIX}_queue_depth",
    "Deployment work items waiting to be processed.",
)
