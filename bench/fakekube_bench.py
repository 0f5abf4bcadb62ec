"""Speed and memory of tools/fakekube: N server-side applies then N GETs over one keep-alive connection.

The server runs in its own process pinned to one core (``os.sched_setaffinity``) with the automatic
controller on, authorization on (the listener ServiceAccount, RBAC from ``listener.kube``) and
schema validation, defaulting and admission as for any request; the client runs in this process on
another core when there is one. Target (issue 9): 12,000 SSA + 12,000 GETs at >= 1,000 req/s, and
< 300 MiB resident for 12,000 objects.

    python bench/fakekube_bench.py                 # 12,000 Secrets in 4 namespaces
    python bench/fakekube_bench.py --objects 2000 --kind configmap --identity admin
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_RATE = 1000.0
TARGET_MIB = 300.0


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _serve(conn: Any, namespaces: list[str], core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})
    from tools.fakekube import FakeKube

    kube = FakeKube(namespaces).start()
    conn.send(
        {"url": kube.url, "listener": kube.listener.token, "admin": kube.admin.token, "pid": os.getpid()}
    )
    while True:
        msg = conn.recv()
        if msg == "stop":
            kube.stop()
            conn.send("stopped")
            return
        if msg == "count":
            with kube.store.lock:
                conn.send(len(kube.store._objects))


def _serve_noop(conn: Any, core: int | None) -> None:
    """The calibration server: the same uvicorn setup answering every request with a fixed 1 KiB body."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    import importlib.util
    import socket
    import threading

    import uvicorn

    body = b'{"kind":"Secret","data":"' + b"x" * 1000 + b'"}'

    async def app(scope: Any, _receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    conn.send({"url": f"http://127.0.0.1:{sock.getsockname()[1]}", "pid": os.getpid()})
    conn.recv()
    server.should_exit = True
    conn.send("stopped")


def _baseline(server_core: int | None, requests: int) -> dict[str, Any]:
    """What this machine does right now with a server that does no work: the floor under the numbers."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve_noop, args=(child, server_core), daemon=True)
    proc.start()
    info = parent.recv()
    url = urlsplit(info["url"])
    conn = http.client.HTTPConnection(url.hostname, url.port)
    user0, sys0 = _cpu_times(info["pid"])
    start = time.perf_counter()
    for _ in range(requests):
        conn.request("GET", "/api/v1/namespaces/x/secrets/y", headers={"Authorization": "Bearer x"})
        conn.getresponse().read()
    elapsed = time.perf_counter() - start
    user1, sys1 = _cpu_times(info["pid"])
    conn.close()
    parent.send("stop")
    parent.recv()
    proc.join(10)
    cpu = (user1 - user0) + (sys1 - sys0)
    return {
        "requests": requests,
        "rate": round(requests / elapsed, 1),
        "server_cpu_seconds": round(cpu, 2),
        "cpu_rate": round(requests / cpu, 1) if cpu else None,
    }


def _body(kind: str, name: str, i: int) -> dict[str, Any]:
    meta = {
        "name": name,
        "labels": {
            "app.kubernetes.io/managed-by": "bench",
            "langsmith-dataplane/deployment-id": f"d-{i % 97}",
        },
        "annotations": {"langsmith-dataplane/spec-hash": f"{i:064x}"},
    }
    data = {f"KEY_{k}": f"value-{i}-{k}" * 4 for k in range(6)}
    if kind == "secret":
        return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "stringData": data}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def _run(args: argparse.Namespace) -> dict[str, Any]:
    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[0] if args.pin else None
    if args.pin and len(cores) > 1:
        os.sched_setaffinity(0, set(cores[1:]))
    namespaces = [f"bench-{i}" for i in range(args.namespaces)]
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child, namespaces, server_core), daemon=True)
    proc.start()
    info = parent.recv()
    pid = info["pid"]
    rss_start = _rss_mib(pid)
    url = urlsplit(info["url"])
    token = info["admin" if args.identity == "admin" else "listener"]
    conn = http.client.HTTPConnection(url.hostname, url.port)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    plural = "secrets" if args.kind == "secret" else "configmaps"
    paths = []
    for i in range(args.objects):
        ns = namespaces[i % len(namespaces)]
        paths.append((f"/api/v1/namespaces/{ns}/{plural}/bench-{i:05d}", f"bench-{i:05d}"))

    def request(method: str, path: str, body: bytes | None, extra: dict[str, str]) -> float:
        t0 = time.perf_counter()
        conn.request(method, path, body=body, headers={**headers, **extra})
        resp = conn.getresponse()
        payload = resp.read()
        if resp.status >= 300:
            raise SystemExit(f"{method} {path}: {resp.status} {payload[:300]!r}")
        return time.perf_counter() - t0

    results: dict[str, Any] = {"objects": args.objects, "kind": args.kind, "identity": args.identity}
    results["baseline"] = _baseline(server_core, min(args.objects, 5000))
    apply_headers = {"Content-Type": "application/apply-patch+yaml"}
    for phase in ("apply", "get"):
        latencies = []
        user_start, sys_start = _cpu_times(pid)
        start = time.perf_counter()
        for i, (path, name) in enumerate(paths):
            if phase == "apply":
                body = json.dumps(_body(args.kind, name, i)).encode()
                latencies.append(
                    request("PATCH", path + "?fieldManager=bench&force=true", body, apply_headers)
                )
            else:
                latencies.append(request("GET", path, None, {}))
        elapsed = time.perf_counter() - start
        user_end, sys_end = _cpu_times(pid)
        cpu = (user_end - user_start) + (sys_end - sys_start)
        latencies.sort()
        results[phase] = {
            "requests": len(latencies),
            "seconds": round(elapsed, 2),
            "rate": round(len(latencies) / elapsed, 1),
            "server_cpu_seconds": round(cpu, 2),
            "server_sys_seconds": round(sys_end - sys_start, 2),
            # What one core sustains when the server is not competing for it: requests per CPU second.
            "cpu_rate": round(len(latencies) / cpu, 1) if cpu else None,
            "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        }
    total = results["apply"]["requests"] + results["get"]["requests"]
    results["overall_rate"] = round(total / (results["apply"]["seconds"] + results["get"]["seconds"]), 1)
    parent.send("count")
    results["objects_in_store"] = parent.recv()
    results["rss_mib_empty"] = round(rss_start, 1)
    results["rss_mib_loaded"] = round(_rss_mib(pid), 1)
    results["server_core"] = server_core
    conn.close()
    parent.send("stop")
    parent.recv()
    proc.join(10)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=12000)
    parser.add_argument("--namespaces", type=int, default=4)
    parser.add_argument("--kind", choices=("secret", "configmap"), default="secret")
    parser.add_argument("--identity", choices=("listener", "admin"), default="listener")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin the server to one core"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON only")
    args = parser.parse_args()
    if args.kind == "configmap" and args.identity == "listener":
        parser.error("the listener's Role has no ConfigMap access; use --identity admin")
    results = _run(args)
    ok = (
        results["apply"]["rate"] >= TARGET_RATE
        and results["get"]["rate"] >= TARGET_RATE
        and results["rss_mib_loaded"] < TARGET_MIB
    )
    results["meets_target"] = ok
    if args.json:
        print(json.dumps(results))
    else:
        b = results["baseline"]
        print(
            f"no-op server on the same core (the machine's floor): {b['rate']:.1f} req/s, "
            f"{b['cpu_rate']} req/CPU-s; load average {os.getloadavg()[0]:.2f}"
        )
        for phase in ("apply", "get"):
            r = results[phase]
            print(
                f"{phase:5}  {r['requests']:6d} req  {r['seconds']:7.2f} s  {r['rate']:8.1f} req/s  "
                f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                f"server CPU {r['server_cpu_seconds']:.2f} s ({r['server_sys_seconds']:.2f} sys) = {r['cpu_rate']} req/CPU-s"
            )
        print(f"overall {results['overall_rate']} req/s; {results['objects_in_store']} objects in the store")
        print(f"server RSS: {results['rss_mib_empty']} MiB empty, {results['rss_mib_loaded']} MiB loaded")
        print(
            f"target (>= {TARGET_RATE:.0f} req/s each phase, < {TARGET_MIB:.0f} MiB): {'met' if ok else 'NOT met'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
