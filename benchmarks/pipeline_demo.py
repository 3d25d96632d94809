"""Cold end-to-end run of a pipeline config, plus ETL on Ray against a single-process baseline.

Usage: python benchmarks/pipeline_demo.py [configs/demo.yaml]
Prints one JSON line per figure, each with the baseline it is compared to in the same run.
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
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "run", str(config), "--json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wall = time.perf_counter() - started
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
        "test_metrics": summary.get("test_metrics"),
        "rows": summary["rows"]["rows_in"],
    }


def etl_vs_single_process(config: Path, workdir: Path) -> dict:
    """The ETL stage on Ray vs the same per-file work in one process, on the cached raw files."""
    from cluster.config import load_config
    from cluster.runtime import ray_session
    from jobs import etl, synthetic

    os.chdir(workdir)
    cfg = load_config(config)
    with ray_session(cfg.runtime):
        started = time.perf_counter()
        etl.build(cfg)
        ray_s = time.perf_counter() - started
    files, _ = synthetic.generate(cfg.data.source, cfg.seed, Path(".relay/raw").resolve())
    out = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    for split in (*etl.SPLITS, etl.REJECTS):
        (out / split).mkdir()
    started = time.perf_counter()
    for i, path in enumerate(files):
        etl._process_file(str(path), cfg.data.source.format, i, str(out), cfg, None)
    single_s = time.perf_counter() - started
    shutil.rmtree(out)
    return {
        "figure": "etl_seconds",
        "ray_tasks_s": round(ray_s, 2),
        "baseline_single_process_s": round(single_s, 2),
        "ratio_baseline_over_ray": round(single_s / ray_s, 2),
    }


def main() -> None:
    config = (ROOT / (sys.argv[1] if len(sys.argv) > 1 else "configs/demo.yaml")).resolve()
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-run-"))
    try:
        print(json.dumps(cold_run(config, workdir)), flush=True)
        print(json.dumps(etl_vs_single_process(config, workdir)), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
