"""ETL throughput and memory: relay's stage on Ray vs the same transform in one plain process.

Usage: python benchmarks/etl.py --rows 5000000 [--files N]

The raw files are generated once (cached under .relay/bench). Then, on the same files:
- relay: `jobs.build` on an embedded Ray (2 CPUs): the id pass, then one streaming task
  per file, two at a time. Memory = peak PSS summed over this process and every Ray process.
- baseline: the same per-file pyarrow transform (`jobs.etl.file`, `jobs.etl.dedupe`) called
  sequentially in one fresh Python process without Ray. Memory = that process's peak RSS.
Ray start-up is timed apart (`cluster_start_s`). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_config(rows: int, files: int, state: Path):
    from cluster.configfile import load_config

    return load_config(
        ROOT / "configs" / "demo.yaml",
        overrides={
            "data.source.rows": rows,
            "data.source.files": files,
            "runtime.state_dir": str(state),
            "etl.max_reject_rate": 0.5,
        },
    )


def tree_pss_mb(root_pid: int) -> float:
    """Proportional set size of a process and all its descendants (shared pages split)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def run_relay(rows: int, files: int, raw_root: Path) -> dict:
    from cluster.compute.runtime import ray_session
    from jobs.etl import synthetic
    from jobs.etl.stage import build

    state = Path(tempfile.mkdtemp(prefix="relay-bench-etl-"))
    cfg = bench_config(rows, files, state)
    started = time.perf_counter()
    with ray_session(cfg.runtime):
        cluster_start = time.perf_counter() - started
        synthetic.generate(cfg.data.source, cfg.seed, raw_root)  # cached after the first run
        (state / "raw").symlink_to(raw_root)
        peak = [0.0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], tree_pss_mb(os.getpid()))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        dataset = build(cfg)
        seconds = time.perf_counter() - t0
        done.set()
        sampler.join()
    shutil.rmtree(state, ignore_errors=True)
    return {
        "seconds": seconds,
        "peak_mb": peak[0],
        "cluster_start_s": cluster_start,
        "digest": dataset.digest,
        "rows_out": dataset.meta["counts"]["rows_out"],
    }


def run_baseline(rows: int, files: int, raw_root: Path) -> dict:
    """In this (fresh) process: the same transform, file after file, no Ray."""

    from jobs.data.sources import RawFile
    from jobs.etl import dedupe, synthetic
    from jobs.etl import file as etl_file

    cfg = bench_config(rows, files, Path(tempfile.mkdtemp(prefix="relay-bench-base-")))
    paths = sorted(synthetic.generated_files(cfg.data.source, cfg.seed, raw_root))
    raw = [RawFile(uri=str(p), format="csv", size=p.stat().st_size) for p in paths]
    out = Path(cfg.runtime.state_dir) / "out"
    for sub in (*etl_file.SPLITS, etl_file.REJECTS):
        (out / sub).mkdir(parents=True)
    t0 = time.perf_counter()
    shards = dedupe.shard_count(raw)
    for i, f in enumerate(raw):
        dedupe._write_keys(f, i, cfg, shards, str(out / "_ids"))
    shard_dirs = [str(out / "_ids" / f"shard-{s:03d}") for s in range(shards)]
    duplicates = dedupe.per_file([dedupe._repeats(d) for d in shard_dirs], len(raw))
    rows_out = 0
    for i, f in enumerate(raw):
        part = etl_file.process_file(f, i, str(out), cfg, None, duplicates[i], [])
        rows_out += part.counts["rows_out"]
    seconds = time.perf_counter() - t0
    shutil.rmtree(cfg.runtime.state_dir, ignore_errors=True)
    return {"seconds": seconds, "rows_out": rows_out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=0, help="default: 1 per 1.25M rows, >= 4")
    parser.add_argument("--baseline-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    files = args.files or max(4, -(-args.rows // 1_250_000))
    raw_root = (ROOT / ".relay" / "bench" / "raw").resolve()
    if args.baseline_only:
        print(json.dumps(run_baseline(args.rows, files, raw_root)))
        return
    relay = run_relay(args.rows, files, raw_root)
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--rows",
            str(args.rows),
            "--files",
            str(files),
            "--baseline-only",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    baseline = json.loads(child.stdout.strip().splitlines()[-1])
    baseline_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert baseline["rows_out"] == relay["rows_out"], (baseline, relay)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "files": files,
                "relay_rows_per_s": round(args.rows / relay["seconds"]),
                "pyarrow_rows_per_s": round(args.rows / baseline["seconds"]),
                "ratio": round(baseline["seconds"] / relay["seconds"], 3),
                "relay_seconds": round(relay["seconds"], 2),
                "pyarrow_seconds": round(baseline["seconds"], 2),
                "relay_peak_rss_mb": round(relay["peak_mb"]),
                "pyarrow_peak_rss_mb": round(baseline_peak_mb),
                "cluster_start_s": round(relay["cluster_start_s"], 2),
                "digest": relay["digest"],
            }
        )
    )


if __name__ == "__main__":
    main()
