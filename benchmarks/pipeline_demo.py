"""Cold end-to-end run of a pipeline config: `relay run <config> --json` in an empty folder.

Usage: python benchmarks/pipeline_demo.py [configs/demo.yaml]
Prints one JSON line: the command's wall time beside the pipeline's own total and per-stage
seconds (the difference is interpreter start-up and imports), the machine's peak extra
memory while it ran, and the CPU seconds all cores spent busy meanwhile (that over the core
count is the least wall time the same work could take here). ETL throughput against its
baseline: benchmarks/etl.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def used_mib() -> int:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kib = lambda key: int(info[key].split()[0])  # noqa: E731
    return (kib("MemTotal") - kib("MemAvailable")) // 1024


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy so far (all cores): /proc/stat's first line."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cold_run(config: Path, workdir: Path) -> dict:
    """`relay run --json` in an empty folder: Ray start, data generation, everything."""
    before = used_mib()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], used_mib())
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started, cpu_before = time.perf_counter(), busy_cpu_seconds()
    result = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "run", str(config), "--json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wall = time.perf_counter() - started
    cpu = busy_cpu_seconds() - cpu_before
    done.set()
    sampler.join()
    if result.returncode:
        raise SystemExit(result.stderr[-4000:])
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "figure": "pipeline_cold",
        "config": config.name,
        "wall_s": round(wall, 1),
        "total_s": summary["total_seconds"],
        "stage_s": summary["stage_seconds"],
        "peak_extra_memory_mib": peak[0] - before,
        # all cores' busy seconds: on N cores the run cannot take less than cpu_s / N
        "cpu_s": round(cpu, 1),
        "cpu_bound_wall_s": round(cpu / (os.cpu_count() or 1), 1),
        "test_metrics": summary.get("test_metrics"),
        "rows": summary["rows"]["rows_in"],
    }


def main() -> None:
    config = (ROOT / (sys.argv[1] if len(sys.argv) > 1 else "configs/demo.yaml")).resolve()
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-run-"))
    try:
        print(json.dumps(cold_run(config, workdir)), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
