"""ResourceSpec → Kubernetes resources and replica counts, with the control plane's documented defaults.

Documented rules (control-plane-api.md §6.5): CPU and memory limits default to 2x the request; the
Redis memory limit defaults to the request; queue values default to the API server's; queue scale
defaults to min/max_scale. The control plane documents no default *requests*, so ours are:
API server and queue 1 CPU / 1024 MiB (the platform docs' smallest production size), Redis 1 CPU /
2048 MiB (the operator's redis template, hybrid-data-plane.md §7.6), Postgres 1 CPU / 2048 MiB with
the CRD's 10 GiB volume and 100 max_connections (§7.8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from listener.spec import ResourceSpec

DEFAULT_CPU: Final = 1.0
DEFAULT_MEMORY_MB: Final = 1024
DEFAULT_REDIS_CPU: Final = 1.0
DEFAULT_REDIS_MEMORY_MB: Final = 2048
DEFAULT_DB_CPU: Final = 1.0
DEFAULT_DB_MEMORY_MB: Final = 2048
DEFAULT_DB_STORAGE_GI: Final = 10
DEFAULT_DB_MAX_CONNECTIONS: Final = 100


@dataclass(frozen=True)
class Compute:
    cpu: float
    cpu_limit: float
    memory_mb: int
    memory_limit_mb: int

    def to_k8s(self) -> dict[str, Any]:
        return {
            "limits": {"cpu": cpu_quantity(self.cpu_limit), "memory": f"{self.memory_limit_mb}Mi"},
            "requests": {"cpu": cpu_quantity(self.cpu), "memory": f"{self.memory_mb}Mi"},
        }


@dataclass(frozen=True)
class Scale:
    min: int
    max: int

    @property
    def autoscaled(self) -> bool:
        return self.max > self.min


def cpu_quantity(cpu: float) -> str:
    """Whole cores as `2`, fractions as millicores (`500m`): the forms the apiserver echoes back,
    so server-side apply sees no diff."""
    milli = round(cpu * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _compute(
    cpu: float | None,
    cpu_limit: float | None,
    memory_mb: int | None,
    memory_limit_mb: int | None,
    *,
    default_cpu: float,
    default_memory_mb: int,
    memory_limit_factor: int = 2,
) -> Compute:
    req_cpu = cpu if cpu is not None else default_cpu
    req_mem = memory_mb if memory_mb is not None else default_memory_mb
    return Compute(
        cpu=req_cpu,
        cpu_limit=cpu_limit if cpu_limit is not None else 2 * req_cpu,
        memory_mb=req_mem,
        memory_limit_mb=memory_limit_mb if memory_limit_mb is not None else memory_limit_factor * req_mem,
    )


def api_compute(rs: ResourceSpec) -> Compute:
    return _compute(
        rs.cpu,
        rs.cpu_limit,
        rs.memory_mb,
        rs.memory_limit_mb,
        default_cpu=DEFAULT_CPU,
        default_memory_mb=DEFAULT_MEMORY_MB,
    )


def queue_compute(rs: ResourceSpec) -> Compute:
    """Each unset queue value inherits the API server's resolved value; a queue request that *is* set
    gets the usual 2x limit rather than the API server's limit."""
    api = api_compute(rs)
    cpu = rs.queue_cpu if rs.queue_cpu is not None else api.cpu
    cpu_limit = rs.queue_cpu_limit
    if cpu_limit is None:
        cpu_limit = api.cpu_limit if rs.queue_cpu is None else 2 * cpu
    mem = rs.queue_memory_mb if rs.queue_memory_mb is not None else api.memory_mb
    mem_limit = rs.queue_memory_limit_mb
    if mem_limit is None:
        mem_limit = api.memory_limit_mb if rs.queue_memory_mb is None else 2 * mem
    return Compute(cpu=cpu, cpu_limit=cpu_limit, memory_mb=mem, memory_limit_mb=mem_limit)


def redis_compute(rs: ResourceSpec) -> Compute:
    return _compute(
        rs.redis_cpu,
        rs.redis_cpu_limit,
        rs.redis_memory_mb,
        rs.redis_memory_limit_mb,
        default_cpu=DEFAULT_REDIS_CPU,
        default_memory_mb=DEFAULT_REDIS_MEMORY_MB,
        memory_limit_factor=1,
    )


def db_compute(rs: ResourceSpec) -> Compute:
    return _compute(
        rs.db_cpu,
        rs.db_cpu_limit,
        rs.db_memory_mb,
        rs.db_memory_limit_mb,
        default_cpu=DEFAULT_DB_CPU,
        default_memory_mb=DEFAULT_DB_MEMORY_MB,
    )


def api_scale(rs: ResourceSpec) -> Scale:
    lo = max(rs.min_scale if rs.min_scale is not None else 1, 0)
    hi = rs.max_scale if rs.max_scale is not None else lo
    return Scale(min=lo, max=max(hi, lo))


def queue_scale(rs: ResourceSpec) -> Scale:
    api = api_scale(rs)
    lo = max(rs.queue_min_scale if rs.queue_min_scale is not None else api.min, 0)
    hi = rs.queue_max_scale if rs.queue_max_scale is not None else api.max
    return Scale(min=lo, max=max(hi, lo))
