"""`make demo` cannot rot: its script runs to DEPLOYED non-interactively and leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_the_demo_rolls_out_its_sample_deployment_prints_where_to_look_and_cleans_up(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.demo",
            "--until-deployed",
            "--timeout",
            "90",
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "listener" / "src"), str(ROOT)])},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output
    assert ": DEPLOYED" in output
    for variable in (
        "LISTENER_CONTROL_PLANE_URL",
        "LISTENER_API_KEY",
        "LISTENER_WORKSPACE_ID",
        "LISTENER_LISTENER_ID",
    ):
        assert f"export {variable}=" in output
    assert "/_fake/requests" in output
    assert "/metrics" in output
    # Every child stopped: the script waited for each before exiting (no orphans re-parented to init).
    assert _children_of(proc.pid) == []
    logs = {p.name for p in tmp_path.iterdir()}
    assert {"emulator.log", "fakekube.log", "listener.log", "kubeconfig.yaml"} <= logs
    assert "DEPLOYED" in (tmp_path / "listener.log").read_text()
