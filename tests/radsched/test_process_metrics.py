"""process_* metrics under systemd's ProcSubset=pid, where /proc shows processes and nothing else.

The unit (systemd/radsched.service) sets ProcSubset=pid: /proc/stat is gone, only /proc/PID stays.
prometheus_client's collector then exported no process metrics at all, and the dashboard's memory
panel (contrib/grafana) went blank. Reproduced here with a /proc that has only ``self``.
"""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from radsched.metrics import Metrics, ProcessMetrics


def pid_only_proc(tmp_path: Path) -> Path:
    """A /proc as ProcSubset=pid leaves it, for this process: /proc/self, no /proc/stat."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "self").symlink_to("/proc/self")
    return proc


def series(registry: CollectorRegistry) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("process_"):
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


def test_process_metrics_survive_a_proc_without_stat(tmp_path: Path) -> None:
    proc = pid_only_proc(tmp_path)
    library = CollectorRegistry()
    ProcessCollector(proc=str(proc), registry=library)
    assert series(library) == {}  # what the dashboard got under the unit before

    ours = CollectorRegistry()
    ProcessMetrics(proc=str(proc), registry=ours)
    found = series(ours)
    assert found["process_resident_memory_bytes"] > 1024 * 1024
    assert found["process_open_fds"] > 0
    # The start time is the one the library reads with /proc/stat (its btime has whole seconds).
    full = CollectorRegistry()
    ProcessCollector(registry=full)
    expected = series(full)["process_start_time_seconds"]
    assert abs(found["process_start_time_seconds"] - expected) < 1.5
    assert found["process_start_time_seconds"] <= time.time()
    assert "process_resident_memory_bytes" in series(Metrics().registry)  # the daemon's registry
