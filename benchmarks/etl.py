"""ETL throughput and memory: relay's stage on Ray vs the same transform in plain Python.

Usage: python benchmarks/etl.py --rows 5000000 [--files N] [--timestamps]

The raw files are generated once (cached under .relay/bench/raw). Then each side runs on the same
files in a fresh child process of this one, one side after the other:
- relay: `jobs.etl.stage.build` on an embedded Ray with `runtime.num_cpus` (2) CPUs: the raw
  files' sha256, the id pass, the shard pass, then one streaming task per file.
- pool: the same functions in the same order (`buildkey.with_sha256`, `dedupe`, `file`,
  `stage.summarise`), mapped over a multiprocessing pool of as many processes as Ray has CPUs:
  what Ray adds, or costs, over plain parallel Python.
- serial: the same, file after file in the one process: what the parallelism buys.
Seconds cover the build only; starting Ray or the pool is timed apart. Every side must publish
the same digest and row count, or the benchmark fails.

Timestamp parsing (`--timestamps` runs only this pair): relay's stage on two copies of the same
files, written by the same CSV writer, read as `kind: files`: **iso** keeps `application_ts` as
ISO text (no `format`), **format** writes it as `%m/%d/%Y %H:%M:%S` and declares that format.
Both must publish the same train/val/test rows (the rejects keep their raw text, so the digests
differ there); `format_vs_iso` is the ratio of their rows/s.

Memory is measured the same way for every side: the peak, sampled by this parent every 0.2 s,
of the PSS summed over the child and all its descendants (for relay: GCS, raylet, agents and
workers, all descendants of the driver). PSS and not RSS because Ray's object store and a forked
pool's copy-on-write pages are shared between processes: summed RSS counts a shared page once
per process that maps it, summed PSS once in all. One process's own peak RSS would miss its
workers, and RUSAGE_CHILDREN is the largest RSS of any child this process ever waited for.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Imported before a pool forks, as plain parallel Python would (Ray's workers import on first use).
from jobs.data.sources import RawFile, check_columns  # noqa: E402
from jobs.etl import buildkey, dedupe, stage, synthetic  # noqa: E402
from jobs.etl import file as etl_file  # noqa: E402

SIDES = ("relay", "pool", "serial")
STAMP_SIDES = ("iso", "format")
STAMP_FORMAT = "%m/%d/%Y %H:%M:%S"
SAMPLE_S = 0.2
Starmap = Callable[[Callable[..., Any], Iterable[tuple[Any, ...]]], list[Any]]


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


def stamp_config(rows: int, files: int, state: Path, folder: Path, side: str):
    """The demo config reading `folder` as files; `format` declares the timestamps' format."""
    import yaml

    from cluster.configfile import parse_config

    raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    raw["data"]["source"] = {"kind": "files", "path": str(folder / side)}
    for column in raw["data"]["columns"]:
        if column["name"] == "application_ts" and side == "format":
            column["format"] = STAMP_FORMAT
    raw["runtime"]["state_dir"] = str(state)
    raw["etl"]["max_reject_rate"] = 0.5
    return parse_config(raw)


def ensure_stamp_copies(cfg: Any, raw_root: Path) -> Path:
    """Both copies of the generated files (cached): ISO timestamps, and STAMP_FORMAT ones."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pacsv

    source = synthetic.folder(cfg.data.source, cfg.seed, raw_root)
    out = raw_root.parent / "stamps" / source.name
    if (out / "_done").exists():
        return out
    for side in STAMP_SIDES:
        (out / side).mkdir(parents=True, exist_ok=True)
    for path in synthetic.generated_files(cfg.data.source, cfg.seed, raw_root):
        with pacsv.open_csv(path) as reader:
            text = {n: pa.string() for n in reader.schema.names}
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=text))
        stamps = table.column("application_ts").cast(pa.timestamp("s"))
        formatted = pc.strftime(stamps, format=STAMP_FORMAT)
        position = table.column_names.index("application_ts")
        for side, column in (("iso", table.column(position)), ("format", formatted)):
            copy = table.set_column(position, "application_ts", column)
            pacsv.write_csv(copy, out / side / path.name)
    (out / "_done").touch()
    return out


def run_stamps(cfg: Any) -> dict[str, Any]:
    from cluster.compute.runtime import ray_session

    with ray_session(cfg.runtime):
        t0 = time.perf_counter()
        dataset = stage.build(cfg)
        seconds = time.perf_counter() - t0
    kept = {s: dataset.meta["digest_input"]["splits"][s] for s in etl_file.SPLITS}
    return {
        "seconds": seconds,
        "start_s": 0.0,
        "digest": json.dumps(kept),
        "rows_out": dataset.meta["counts"]["rows_out"],
    }


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


def ensure_raw(cfg: Any, raw_root: Path) -> None:
    """Generate the raw files (with Ray, in this process) unless they are cached."""
    from cluster.compute.runtime import ray_session

    if not (synthetic.folder(cfg.data.source, cfg.seed, raw_root) / "_planted.json").exists():
        with ray_session(cfg.runtime):
            synthetic.generate(cfg.data.source, cfg.seed, raw_root)


def run_relay(cfg: Any, raw_root: Path) -> dict[str, Any]:
    from cluster.compute.runtime import ray_session

    state = Path(cfg.runtime.state_dir)
    (state / "raw").symlink_to(raw_root)  # build() finds the cached files there
    started = time.perf_counter()
    with ray_session(cfg.runtime):
        start_s = time.perf_counter() - started
        t0 = time.perf_counter()
        dataset = stage.build(cfg)
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "start_s": start_s,
        "digest": dataset.digest,
        "rows_out": dataset.meta["counts"]["rows_out"],
    }


def run_plain(cfg: Any, raw_root: Path, processes: int) -> dict[str, Any]:
    """`build`'s steps without Ray: over a pool of `processes`, or in this process (0)."""
    started = time.perf_counter()
    if processes:
        pool = multiprocessing.get_context("fork").Pool(processes)
        starmap: Starmap = pool.starmap
    else:
        pool, starmap = None, _serial
    start_s = time.perf_counter() - started
    try:
        t0 = time.perf_counter()
        meta = plain_build(cfg, raw_root, starmap)
        seconds = time.perf_counter() - t0
    finally:
        if pool:
            pool.close()
            pool.join()
    return {
        "seconds": seconds,
        "start_s": start_s,
        "digest": meta["digest"],
        "rows_out": meta["counts"]["rows_out"],
    }


def plain_build(cfg: Any, raw_root: Path, starmap: Starmap) -> dict[str, Any]:
    source = cfg.data.source
    paths = synthetic.generated_files(source, cfg.seed, raw_root)
    files = [RawFile(uri=str(p), format=source.format, size=p.stat().st_size) for p in paths]
    pii_key = stage._pii_key(cfg)
    files = buildkey.with_sha256(files)
    names = [c.name for c in cfg.data.columns]
    undeclared = [check_columns(f, names, cfg.etl.unknown_columns) for f in files]
    out = Path(cfg.runtime.state_dir) / "out"
    for sub in (*etl_file.SPLITS, etl_file.REJECTS):
        (out / sub).mkdir(parents=True)
    ids, shards = out / "_ids", dedupe.shard_count(files)
    starmap(dedupe.write_keys, [(f, i, cfg, shards, str(ids)) for i, f in enumerate(files)])
    found = starmap(dedupe.repeats, [(str(ids / f"shard-{s:03d}"),) for s in range(shards)])
    shutil.rmtree(ids)
    duplicates = dedupe.per_file(found, len(files))
    parts = starmap(
        etl_file.process_file,
        [(f, i, str(out), cfg, pii_key, duplicates[i], undeclared[i]) for i, f in enumerate(files)],
    )
    return stage.summarise(cfg, parts, None)


def _serial(function: Callable[..., Any], arguments: Iterable[tuple[Any, ...]]) -> list[Any]:
    return [function(*args) for args in arguments]


def measure(side: str, rows: int, files: int) -> dict[str, Any]:
    """Run one side in a fresh child; sample its process tree's PSS until it exits."""
    with tempfile.TemporaryFile("w+") as stdout:
        command = [sys.executable, __file__, "--rows", str(rows), "--files", str(files)]
        child = subprocess.Popen([*command, "--side", side], stdout=stdout)
        peak = 0.0
        while child.poll() is None:
            peak = max(peak, tree_pss_mb(child.pid))
            time.sleep(SAMPLE_S)
        if child.returncode:
            raise SystemExit(f"the {side} side exited {child.returncode}")
        stdout.seek(0)
        result = json.loads(stdout.read().strip().splitlines()[-1])
    return {**result, "peak_pss_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=0, help="default: 1 per 1.25M rows, >= 4")
    parser.add_argument("--timestamps", action="store_true", help="only the iso/format pair")
    parser.add_argument("--side", choices=SIDES + STAMP_SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    files = args.files or max(4, -(-args.rows // 1_250_000))
    raw_root = (ROOT / ".relay" / "bench" / "raw").resolve()
    if args.side:  # a child: one side
        state = Path(tempfile.mkdtemp(prefix=f"relay-bench-{args.side}-"))
        cfg = bench_config(args.rows, files, state)
        try:
            if args.side in STAMP_SIDES:
                copies = raw_root.parent / "stamps"
                folder = copies / synthetic.folder(cfg.data.source, cfg.seed, raw_root).name
                result = run_stamps(stamp_config(args.rows, files, state, folder, args.side))
            elif args.side == "relay":
                result = run_relay(cfg, raw_root)
            else:
                processes = cfg.runtime.num_cpus if args.side == "pool" else 0
                result = run_plain(cfg, raw_root, processes)
        finally:
            shutil.rmtree(state, ignore_errors=True)
        print(json.dumps(result))
        return
    cfg = bench_config(args.rows, files, raw_root.parent / "state")
    ensure_raw(cfg, raw_root)
    ensure_stamp_copies(cfg, raw_root)
    figures: dict[str, Any] = {"rows": args.rows, "files": files, "processes": cfg.runtime.num_cpus}
    stamps = {side: measure(side, args.rows, files) for side in STAMP_SIDES}
    if len({(result["digest"], result["rows_out"]) for result in stamps.values()}) > 1:
        raise SystemExit(f"iso and format published different rows: {stamps}")
    iso, formatted = stamps["iso"], stamps["format"]
    figures |= {
        "iso_rows_per_s": round(args.rows / iso["seconds"]),
        "format_rows_per_s": round(args.rows / formatted["seconds"]),
        "format_vs_iso": round(iso["seconds"] / formatted["seconds"], 3),
    }
    if args.timestamps:
        print(json.dumps(figures))
        return
    sides = {side: measure(side, args.rows, files) for side in SIDES}
    relay, pool, serial = sides["relay"], sides["pool"], sides["serial"]
    if len({(result["digest"], result["rows_out"]) for result in sides.values()}) > 1:
        raise SystemExit(f"the sides built different datasets: {sides}")
    for side, result in sides.items():
        figures[f"{side}_rows_per_s"] = round(args.rows / result["seconds"])
    figures |= {
        "speed_vs_pool": round(pool["seconds"] / relay["seconds"], 3),
        "speed_vs_serial": round(serial["seconds"] / relay["seconds"], 3),
        **{f"{side}_seconds": round(result["seconds"], 2) for side, result in sides.items()},
        **{f"{side}_peak_pss_mb": round(result["peak_pss_mb"]) for side, result in sides.items()},
        "memory_vs_pool": round(relay["peak_pss_mb"] / pool["peak_pss_mb"], 2),
        "memory_vs_serial": round(relay["peak_pss_mb"] / serial["peak_pss_mb"], 2),
        "ray_start_s": round(relay["start_s"], 2),
        "pool_start_s": round(pool["start_s"], 3),
        "digest": relay["digest"],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
