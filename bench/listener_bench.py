"""The listener at scale: cold start, steady cycles, a resync, reaction latency and memory (issue 13).

    python -m bench.listener_bench                      # N = 100 and N = 1,000 (about 3 + 8 minutes)
    python -m bench.listener_bench --n 100 --json out.json
    make bench                                          # the same as the first line

Three processes on 127.0.0.1, so the listener's CPU and memory are its own:

* the control-plane emulator (`listener.emulator`) and the Agent Servers' `GET /ok`, in one child;
* fakekube (`tools.fakekube`, the automatic controller on, RBAC from `listener.kube`), in another;
  it stamps every request with the time, so requests are counted on the API server's side;
* the listener, `python -m bench.listener_proc` = `python -m listener` plus one JSON line per cycle
  (see that module), with its defaults except where the table says otherwise.

N deployments are spread over 20 namespaces. The run: start the listener; cold start = until every
revision is DEPLOYED; steady cycles until the resync is due; then, from one poll interval before
the resync until one poll interval after it ended, a new revision (PATCH of the image) every quarter
poll interval on a different deployment: reaction = from the PATCH to the first write on fakekube to
one of that deployment's objects in a cycle that started after the PATCH (a resync that re-applies
the old revision does not count). Peak RSS is the listener's VmHWM. Everything is bounded by
timeouts; a missed deadline is reported, not waited out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "listener" / "src"))

NAMESPACES = tuple(f"bench-{i:02d}" for i in range(20))
IMAGE_1 = "registry.example.com/bench/agent@sha256:" + "1" * 64
IMAGE_2 = "registry.example.com/bench/agent@sha256:" + "2" * 64
API_KEY = "lsv2_sk_bench_key_0123456789abcdef0123456789"  # the emulator's key, not a secret
WRITE_VERBS = {"create", "update", "patch", "apply", "delete", "deletecollection"}

TARGETS = {
    "cold_start_s": 30.0,
    "k8s_requests_per_deployment": 15.0,
    "steady_k8s_writes": 0,
    "resync_cpu_s": 1.0,
    "steady_cpu_ms_median": 50.0,
    "reaction_p99_over_poll_s": 1.0,
    "peak_rss_mib": 100.0,
}


# --- the servers' processes ---------------------------------------------------------------------


def _emulator_child(conn: Any, n: int) -> None:
    import threading
    from http.server import ThreadingHTTPServer

    from listener.controlplane import ControlPlaneClient, ControlPlaneConfig
    from listener.controlplane.builders import external_docker_deployment, new_image_revision
    from listener.emulator import BackgroundServer, Emulator
    from tools.stage import _Ok

    emulator = Emulator(api_key=API_KEY)
    server = BackgroundServer(emulator).start()
    probe = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    probe.daemon_threads = True
    threading.Thread(target=probe.serve_forever, daemon=True).start()
    client = ControlPlaneClient(
        ControlPlaneConfig(base_url=server.url, api_key=API_KEY, tenant_id=emulator.tenant_id)
    )
    listener = client.create_listener("bench", list(NAMESPACES))
    deployments: dict[str, dict[str, str]] = {}
    for i in range(n):
        created = client.create_deployment(
            external_docker_deployment(
                name=f"agent-{i:04d}",
                image_uri=IMAGE_1,
                listener_id=listener.id,
                k8s_namespace=NAMESPACES[i % len(NAMESPACES)],
            )
        )
        deployments[str(created.id)] = {"name": created.name, "namespace": NAMESPACES[i % len(NAMESPACES)]}
    emulator.requests.clear()
    conn.send(
        {
            "url": server.url,
            "tenant": str(emulator.tenant_id),
            "listener_id": str(listener.id),
            "probe_port": probe.server_address[1],
            "deployments": deployments,
            "pid": os.getpid(),
        }
    )
    store = emulator.store
    while True:
        msg, arg = conn.recv()
        if msg == "stop":
            client.close()
            probe.shutdown()
            server.stop()
            conn.send("stopped")
            return
        if msg == "deployed":  # which of `arg` (ids; None = all) have their latest revision DEPLOYED
            done = []
            for dep in store.list_deployments({}):
                if (
                    (arg is None or dep["id"] in arg)
                    and dep.get("latest_revision_id")
                    and store.get_revision(dep["id"], dep["latest_revision_id"])["status"] == "DEPLOYED"
                ):
                    done.append(dep["id"])
            conn.send(done)
        elif msg == "patch":  # a new revision; answers the wall-clock time the PATCH was sent
            sent = time.time()
            client.patch_deployment(arg, new_image_revision(IMAGE_2))
            conn.send(sent)
        elif msg == "requests":
            conn.send(len(emulator.requests))


def _fakekube_child(conn: Any, kubeconfig: str, n: int) -> None:
    import yaml

    from tools.fakekube import FakeKube
    from tools.fakekube.kubelet import NodeSpec

    # Nodes for every pod (an Agent Server, its queue, Postgres and Redis, with room for a rollout's
    # surge): the benchmark measures the listener, not an unschedulable cluster.
    nodes = [
        NodeSpec(f"node-{i}", cpu="2000", memory="8000Gi", pods=250)
        for i in range(math.ceil(n * 6 / 250) + 1)
    ]
    kube = FakeKube(list(NAMESPACES), crds=("gateway-api", "keda"), nodes=nodes)
    for image in (IMAGE_1, IMAGE_2):
        kube.controller.set_image_user(image, 1000)
    kube.start()
    Path(kubeconfig).write_text(yaml.safe_dump(kube.kubeconfig_dict(NAMESPACES[0])))
    user = kube.listener.name
    conn.send({"url": kube.url, "pid": os.getpid()})
    while True:
        msg, _arg = conn.recv()
        if msg == "stop":
            kube.stop()
            conn.send("stopped")
            return
        if msg == "records":  # the listener's requests, compactly: (time, verb, namespace, name, kind)
            conn.send([(r.at, r.verb, r.namespace, r.name, r.kind) for r in kube.log.records(user=user)])


def _cpu_seconds(pid: int) -> float | None:
    """A process's CPU time so far (user + system, all threads), from /proc; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)


def _breakdown(records: list[tuple[Any, ...]], n: int) -> dict[str, float]:
    """Requests per deployment by "verb kind", most first: where the cold start's requests go."""
    counts: dict[str, int] = {}
    for r in records:
        key = f"{r[1]} {r[4] or '-'}"
        counts[key] = counts.get(key, 0) + 1
    return {k: round(v / n, 2) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


class Child:
    def __init__(self, target: Any, *args: Any, timeout: float):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        self.info = self._recv(timeout, "start")

    def _recv(self, timeout: float, what: str) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"{what}: no answer from {self.proc.name} within {timeout:.0f} s")
        return self.conn.recv()

    def ask(self, msg: str, arg: Any = None, timeout: float = 60.0) -> Any:
        self.conn.send((msg, arg))
        return self._recv(timeout, msg)

    def stop(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(TimeoutError, OSError, EOFError):
                self.ask("stop", timeout=15)
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()


# --- measurements -------------------------------------------------------------------------------


def _proc_status(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cycles(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [
        c for line in path.read_text().splitlines() if line.strip() for c in [json.loads(line)] if "end" in c
    ]


def _begins(path: Path) -> list[float]:
    if not path.exists():
        return []
    return [
        c["begin"]
        for line in path.read_text().splitlines()
        if line.strip()
        for c in [json.loads(line)]
        if "begin" in c
    ]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _summary(values: list[float], digits: int = 1) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), digits), "max": round(max(values), digits)}


@dataclass
class Run:
    n: int
    poll: float
    resync: float
    workdir: Path
    cold_timeout: float
    result: dict[str, Any] = field(default_factory=dict)

    def log(self, text: str) -> None:
        print(f"[N={self.n} {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _per_cycle(
    cycles: list[dict[str, Any]], records: list[tuple[Any, ...]], exclude: tuple[str, ...] = ()
) -> list[dict]:
    """Each cycle's figures; the Kubernetes counts are fakekube's, from this cycle's start to the next's,
    leaving out requests for objects whose names start with one of `exclude` (the new revisions')."""
    out = []
    for i, c in enumerate(cycles):
        until = cycles[i + 1]["start"] if i + 1 < len(cycles) else c["end"]
        window = [
            r
            for r in records
            if c["start"] <= r[0] < until and not (exclude and (r[3] or "").startswith(exclude))
        ]
        out.append(
            {
                "start": c["start"],
                "end": c["end"],
                "resync": c.get("resync"),
                "poll": c.get("poll", True),
                "wall_ms": (c["end"] - c["start"]) * 1000,
                "cpu_ms": (c["cpu_end"] - c["cpu_start"]) * 1000,
                "cp_requests": c["cp_end"] - c["cp_start"],
                "k8s_reads": sum(1 for r in window if r[1] not in WRITE_VERBS),
                "k8s_writes": sum(1 for r in window if r[1] in WRITE_VERBS),
            }
        )
    return out


def _cycle_row(cycles: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "cycles": len(cycles),
        "cp_requests": _summary([c["cp_requests"] for c in cycles], 0),
        "k8s_reads": _summary([c["k8s_reads"] for c in cycles], 0),
        "k8s_writes": _summary([c["k8s_writes"] for c in cycles], 0),
        "cpu_ms": _summary([c["cpu_ms"] for c in cycles]),
        "wall_ms": _summary([c["wall_ms"] for c in cycles]),
    }


def run(bench: Run) -> dict[str, Any]:
    n, poll = bench.n, bench.poll
    kubeconfig = bench.workdir / "kubeconfig.yaml"
    cycles_path = bench.workdir / "cycles.jsonl"
    log_path = bench.workdir / "listener.log"
    bench.log(f"creating {n} deployments in {len(NAMESPACES)} namespaces")
    emulator = Child(_emulator_child, n, timeout=120 + n * 0.2)
    kube = Child(_fakekube_child, str(kubeconfig), n, timeout=60)
    listener: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {
        "n": n,
        "namespaces": len(NAMESPACES),
        "poll_interval_s": poll,
        "resync_interval_s": bench.resync,
    }
    try:
        ids = list(emulator.info["deployments"])
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(bench.workdir),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "listener" / "src"), str(ROOT)]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LISTENER_API_KEY": API_KEY,
            "LISTENER_WORKSPACE_ID": emulator.info["tenant"],
            "LISTENER_LISTENER_ID": emulator.info["listener_id"],
            "LISTENER_CONTROL_PLANE_URL": emulator.info["url"],
            "LISTENER_NAMESPACES": ",".join(NAMESPACES),
            "LISTENER_KUBECONFIG": str(kubeconfig),
            "LISTENER_STATUS_REPORTING": "emulator",
            "LISTENER_PROBE_URL_TEMPLATE": f"http://127.0.0.1:{emulator.info['probe_port']}/ok?s={{service}}&ns={{namespace}}",
            "LISTENER_POLL_INTERVAL_SECONDS": str(poll),
            "LISTENER_RESYNC_INTERVAL_SECONDS": str(bench.resync),
        }
        started = time.time()
        with log_path.open("w") as out:
            listener = subprocess.Popen(  # noqa: S603 -- this interpreter, this repository's module
                [sys.executable, "-m", "bench.listener_proc", str(cycles_path)],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=out,
            )
        bench.log(
            f"listener pid {listener.pid}; waiting for {n} DEPLOYED (at most {bench.cold_timeout:.0f} s)"
        )

        # Cold start.
        deadline = started + bench.cold_timeout
        done: list[str] = []
        while time.time() < deadline and listener.poll() is None:
            done = emulator.ask("deployed")
            if len(done) == n:
                break
            time.sleep(0.5)  # a bounded poll of the emulator's state, not synchronisation
        cold = time.time() - started
        cpu_listener, cpu_kube = _cpu_seconds(listener.pid), _cpu_seconds(kube.info["pid"])
        cold_records = kube.ask("records", timeout=120)
        result["cold_start"] = {
            "converged": len(done) == n,
            "deployed": len(done),
            "seconds": round(cold, 1),
            "k8s_requests": len(cold_records),
            "k8s_writes": sum(1 for r in cold_records if r[1] in WRITE_VERBS),
            "k8s_requests_per_deployment": round(len(cold_records) / n, 1),
            "k8s_writes_per_deployment": round(sum(1 for r in cold_records if r[1] in WRITE_VERBS) / n, 1),
            "k8s_requests_per_deployment_by_verb_and_kind": _breakdown(cold_records, n),
            # Who was busy: the listener's own CPU, and fakekube's (its API, validation, server-side
            # apply and the simulated controllers and kubelet, on one asyncio thread).
            "listener_cpu_s": cpu_listener,
            "fakekube_cpu_s": cpu_kube,
        }
        bench.log(f"cold start: {result['cold_start']}")
        if listener.poll() is not None:
            raise RuntimeError(f"the listener exited with {listener.returncode}; see {log_path}")
        if len(done) != n:
            result["error"] = f"cold start did not converge within {bench.cold_timeout:.0f} s"
            return result
        cold_end = time.time()

        # Steady cycles until the resync is due; the first cycle to begin after that is the resync.
        first = _cycles(cycles_path)
        resync_due = (first[0]["start"] if first else started) + bench.resync
        bench.log(f"steady cycles for {resync_due - time.time():.0f} s, then new revisions during the resync")
        wait_until_time = time.time() + bench.resync + 4 * poll
        while time.time() < wait_until_time:
            if any(b > resync_due for b in _begins(cycles_path)):
                break
            time.sleep(0.2)  # a bounded poll of the probe's file
        resync_began = time.time()

        # New revisions while the resync runs and until one poll interval after it: one every poll/4,
        # each on a different deployment, so earlier ones are still rolling out when later ones come.
        patches: dict[str, float] = {}
        hard_stop = time.time() + max(6 * poll, bench.cold_timeout)
        order = iter(ids)
        resync_end: float | None = None
        while time.time() < hard_stop:
            cycles = _cycles(cycles_path)
            if resync_end is None:
                resync_end = next(
                    (c["end"] for c in cycles if c["start"] >= resync_began - 1 and c.get("resync")), None
                )
                if resync_end is None and (not cycles or cycles[-1].get("resync") is None):
                    # No probe or no resync flag in this loop: a fixed window from the due time.
                    resync_end = resync_began + poll
            if resync_end is not None and time.time() > resync_end + poll:
                break
            deployment_id = next(order, None)
            if deployment_id is None:
                break
            patches[deployment_id] = emulator.ask("patch", deployment_id)
            time.sleep(poll / 4)
        bench.log(f"{len(patches)} new revisions; waiting for them to be DEPLOYED")
        deadline = time.time() + max(6 * poll, bench.cold_timeout / 2)
        while time.time() < deadline:
            if len(emulator.ask("deployed", list(patches))) == len(patches):
                break
            time.sleep(0.5)
        # Quiet cycles after the rollouts (the only steady ones when the cold start outlasted the
        # resync interval), then stop: four that begin after this point, within a bounded wait; the
        # first of them may still finish the rollouts' work (superseded Secrets): not counted as steady.
        rolled_out = time.time()
        settle = rolled_out + 6 * poll + bench.cold_timeout / 4
        while time.time() < settle and sum(1 for c in _cycles(cycles_path) if c["start"] > rolled_out) < 4:
            time.sleep(0.5)
        records = kube.ask("records", timeout=120)
        cycles = _cycles(cycles_path)
        result["peak_rss_mib"] = round(_proc_status(listener.pid, "VmHWM"), 1)
        result["rss_end_mib"] = round(_proc_status(listener.pid, "VmRSS"), 1)
        result["cpu_total_s"] = round(_cpu_seconds(listener.pid), 1)

        # Reaction latencies.
        from listener.naming import ObjectNames

        info = emulator.info["deployments"]
        starts = [c["start"] for c in cycles]
        latencies = []
        missing = 0
        for deployment_id, sent in patches.items():
            base = ObjectNames.of(info[deployment_id]["name"], deployment_id).base
            after = next((s for s in starts if s >= sent), sent) if starts else sent
            first_write = min(
                (
                    r[0]
                    for r in records
                    if r[0] >= after
                    and r[1] in WRITE_VERBS
                    and r[2] == info[deployment_id]["namespace"]
                    and (r[3] or "").startswith(base)
                ),
                default=None,
            )
            if first_write is None:
                missing += 1
            else:
                latencies.append(first_write - sent)
        result["reaction"] = {
            "new_revisions": len(patches),
            "applied": len(latencies),
            "never_applied": missing,
            "p50_s": round(_percentile(latencies, 0.5), 1) if latencies else None,
            "p99_s": round(_percentile(latencies, 0.99), 1) if latencies else None,
            "max_s": round(max(latencies), 1) if latencies else None,
        }

        # Cycles.
        bases = tuple(ObjectNames.of(info[d]["name"], d).base for d in patches)
        per = _per_cycle(cycles, records, bases)
        result["cycles_recorded"] = len(per)
        after_rollouts = next((c["start"] for c in per if c["start"] > rolled_out), rolled_out)
        if not per:
            result["steady"] = result["resync"] = None
            result["note"] = "no per-cycle figures: bench/listener_proc.py found no Service.cycle to probe"
        else:
            if per[0]["resync"] is None:
                result["note"] = "the loop has no Reconciler._last_resync: resync cycles are not told apart"
            steady = [
                c
                for c in per
                if c["start"] >= cold_end
                and (c["end"] <= resync_began or c["start"] > after_rollouts)
                and not c["resync"]
                and c["poll"]  # a tick between polls (rollouts under way) is not a steady cycle
            ]
            resync = [c for c in per[1:] if c["resync"] and c["start"] >= cold_end - poll]
            result["steady"] = _cycle_row(steady)
            result["resync"] = _cycle_row(resync[:1])
            result["resync_cycle_cpu_s"] = round(resync[0]["cpu_ms"] / 1000, 2) if resync else None
        return result
    finally:
        if listener is not None and listener.poll() is None:
            listener.send_signal(signal.SIGTERM)
            try:
                listener.wait(30)
            except subprocess.TimeoutExpired:
                listener.kill()
                listener.wait(10)
        kube.stop()
        emulator.stop()


# --- the report ---------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    mem = _proc_meminfo_gib()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "python": sys.version.split()[0],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _proc_meminfo_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return float("nan")


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _mm(row: dict[str, Any] | None, key: str) -> str:
    if not row or not row.get("cycles"):
        return "—"
    s = row[key]
    return f"{_fmt(s['median'])} / {_fmt(s['max'])}"


def _per_deployment(r: dict[str, Any]) -> str:
    c = r.get("cold_start")
    return f"{c['k8s_requests_per_deployment']} / {c['k8s_writes_per_deployment']}" if c else "—"


def markdown(results: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    cols = [f"N = {r['n']:,}" for r in results]
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, Python "
        f"{machine['python']}; load average at the end {machine['load_average']}.",
        "",
        "| | " + " | ".join(cols) + " | target (N = 1,000) |",
        "|---|" + "---|" * len(cols) + "---|",
    ]

    def row(label: str, values: list[str], target: str) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + f" | {target} |")

    def cold(r: dict[str, Any]) -> str:
        c = r.get("cold_start")
        if not c:
            return "— (" + r.get("error", "not measured") + ")"
        return f"{c.get('seconds')} s" + (
            "" if c.get("converged") else f" (only {c.get('deployed')} DEPLOYED)"
        )

    row("cold start until all DEPLOYED", [cold(r) for r in results], "≤ 30 s")
    row(
        "cold start: CPU of the listener / of fakekube",
        [
            f"{r['cold_start'].get('listener_cpu_s')} s / {r['cold_start'].get('fakekube_cpu_s')} s"
            if r.get("cold_start")
            else "—"
            for r in results
        ],
        "—",
    )
    row(
        "Kubernetes requests / writes per deployment at cold start",
        [_per_deployment(r) for r in results],
        "≤ 15 requests",
    )
    for label, key, target in [
        ("steady cycle: control-plane requests (median / max)", "cp_requests", "⌈N/100⌉ = 10 lists"),
        ("steady cycle: Kubernetes reads (median / max)", "k8s_reads", "—"),
        ("steady cycle: Kubernetes writes (median / max)", "k8s_writes", "0"),
        ("steady cycle: CPU ms (median / max)", "cpu_ms", "≤ 50 ms median"),
        ("steady cycle: wall ms (median / max)", "wall_ms", "—"),
    ]:
        row(label, [_mm(r.get("steady"), key) for r in results], target)

    def resync(r: dict[str, Any]) -> str:
        s = r.get("resync")
        if not s or not s.get("cycles"):
            return "—"
        return (
            f"{_fmt(s['cp_requests']['max'])} / {_fmt(s['k8s_reads']['max'])} / {_fmt(s['k8s_writes']['max'])}"
            f" / {_fmt(s['cpu_ms']['max'])} ms / {_fmt(s['wall_ms']['max'])} ms"
        )

    row(
        "resync cycle: control-plane requests / Kubernetes reads / writes / CPU / wall",
        [resync(r) for r in results],
        "0 writes, ≤ 1 s CPU",
    )

    def reaction(r: dict[str, Any]) -> str:
        x = r.get("reaction") or {}
        if not x.get("applied"):
            return "—"
        extra = f", {x['never_applied']} never applied" if x.get("never_applied") else ""
        return f"{x['p50_s']} s / {x['p99_s']} s ({x['new_revisions']} revisions{extra})"

    row(
        f"reaction, new revision → first apply (p50 / p99), poll {_fmt(results[0]['poll_interval_s'])} s",
        [reaction(r) for r in results],
        f"p99 ≤ {_fmt(results[0]['poll_interval_s'] + 1)} s",
    )
    row("peak RSS", [f"{r.get('peak_rss_mib', '—')} MiB" for r in results], "≤ 100 MiB")
    row("benchmark wall time", [f"{r.get('bench_seconds', '—')} s" for r in results], "—")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.listener_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--n", type=int, action="append", help="deployments (repeatable; default 100 and 1000)"
    )
    parser.add_argument(
        "--poll", type=float, default=10.0, help="LISTENER_POLL_INTERVAL_SECONDS (default 10, the listener's)"
    )
    parser.add_argument(
        "--resync",
        type=float,
        help="LISTENER_RESYNC_INTERVAL_SECONDS (default: 90 s below N = 500, else 300 s, the listener's default)",
    )
    parser.add_argument(
        "--cold-timeout", type=float, help="give up on the cold start after this (default 120 s + 1 s * N)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep each run's directory (listener log, cycles.jsonl)"
    )
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--markdown", type=Path, help="write the Markdown table here")
    args = parser.parse_args(argv)
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: every `finally` stops what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []
    for n in args.n or [100, 1000]:
        resync = args.resync or (90.0 if n < 500 else 300.0)
        tmp = tempfile.mkdtemp(prefix=f"listener-bench-{n}-")
        try:
            bench = Run(n, args.poll, resync, Path(tmp), args.cold_timeout or 120 + n)
            began = time.time()
            try:
                result = run(bench)
            except (RuntimeError, TimeoutError) as error:
                result = {"n": n, "poll_interval_s": args.poll, "error": str(error)}
            log = Path(tmp) / "listener.log"
            if "error" in result and log.exists():  # the listener's own words on what went wrong
                print(log.read_text()[-4000:], file=sys.stderr)
            result["bench_seconds"] = round(time.time() - began)
            bench.log(json.dumps(result))
            results.append(result)
        finally:
            if args.keep:
                print(f"kept {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    machine = _machine()
    table = markdown(results, machine)
    print(table)
    document = {"machine": machine, "targets": TARGETS, "results": results}
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
