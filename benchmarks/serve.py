"""relay's Serve endpoint against bare FastAPI + uvicorn serving the same model.

Usage: python benchmarks/serve.py [--seconds 10] [--ingress proxy|direct|haproxy]
           [--[no-]throughput-optimized] [--batch-wait S] [--log-rounds 3] [--log-only]
           [--replicas N]
           (needs wrk: apt-get install wrk)
Trains the CI pipeline's model into a temporary store, serves it with relay (Ray Serve,
batching, auth: exactly what `relay run` deploys) and with benchmarks/bare_serve.py (one
uvicorn worker), and loads each with the same wrk run: single-record requests at
concurrency 1, 8 and 32, then 256-record /predict/batch requests at concurrency 8.
The switches are the `serve` config's `ingress`, `throughput_optimized` and
`batch_wait_timeout_s`: relay starts its Ray with the matching RAY_SERVE_* flags.
Then the inference log's cost (`serve.log`, on by default): relay redeployed with the log off
and on again, `--log-rounds` times in turn, each time single-record requests at concurrency 1
and 32; `log.c32_loss` is 1 - (rps with the log / rps without), `log.added_p50_ms_c1` the p50
it adds (medians over the rounds; targets <= 0.05 and <= 0.2 ms), `log.c32_loss_paired` the
median of each round's own off/on ratio (a drift of the machine's speed cancels within a
round), `log.c32_replica_cpu_added` how much more CPU time the replica spends per request at
c=32 with the log (from /proc: the replica is what saturates, and its CPU time does not move
with the wall-clock speed), and the log's own cost per record measured in this process. In
these rounds the replica is pinned to CPU 0 and wrk to CPU 1.
`--log-only` skips the comparison with bare FastAPI.
`--replicas N` compares at equal CPU: N relay replicas against N uvicorn workers (then no
log rounds: they measure one replica).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CONCURRENCY = (1, 8, 32)
BATCH_RECORDS = 256
PER_RECORD_ROWS = 20_000


def wrk(
    url: str, token: str, body: Any, connections: int, seconds: int, cpu: int | None = None
) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) from one wrk run (1 thread; on `cpu` alone)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(json.dumps(body))}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        )
    pinned = ["taskset", "-c", str(cpu)] if cpu is not None else []
    out = subprocess.run(
        [
            *pinned,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers from {url}:\n{out}")

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"rps": rps, "p50_ms": ms("50%"), "p99_ms": ms("99%")}


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def log_cost(
    cfg: Any, summary: dict[str, Any], token: str, record: Any, seconds: int, turns: int
) -> dict[str, Any]:
    """The same endpoint with `serve.log.enabled` false, then true, `turns` times in turn; and
    the log's own cost per record in this process (queueing it, then writing it)."""
    from serving.launch import serve_app

    rounds: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for enabled in (False, True) * turns:
        variant = cfg.model_copy(
            update={
                "serve": cfg.serve.model_copy(
                    update={"log": cfg.serve.log.model_copy(update={"enabled": enabled})}
                )
            }
        )
        base, _ = serve_app(variant, summary["tracking_uri"])  # the route prefix's URL
        wait_ready(f"{base}/healthz")
        replica = the_replica()
        # the replica on CPU 0 and wrk on CPU 1, every round: left to the scheduler, unpinned
        # rounds came out bimodal (921-1,091 or 1,533-1,653 req/s, log on or off alike)
        pin(replica, 0)
        c1 = wrk(f"{base}/predict", token, record, 1, seconds, cpu=1)
        began = cpu_seconds(replica)
        c32 = wrk(f"{base}/predict", token, record, 32, seconds, cpu=1)
        cpu_us = (cpu_seconds(replica) - began) / (c32["rps"] * seconds) * 1e6
        rounds[enabled].append(
            {"c1_p50_ms": c1["p50_ms"], "c32_rps": c32["rps"], "c32_cpu_us": round(cpu_us, 1)}
        )

    def median(enabled: bool, key: str) -> float:
        return statistics.median(r[key] for r in rounds[enabled])

    loss = 1 - median(True, "c32_rps") / median(False, "c32_rps")
    paired = statistics.median(
        1 - on["c32_rps"] / off["c32_rps"]
        for off, on in zip(rounds[False], rounds[True], strict=True)
    )
    added = median(True, "c1_p50_ms") - median(False, "c1_p50_ms")
    cpu = median(True, "c32_cpu_us") / median(False, "c32_cpu_us") - 1
    queue_us, write_us = per_record_cost(summary, record)
    print(
        f"inference log: c=32 throughput loss {loss:+.3f} (paired rounds {paired:+.3f}; target "
        f"<= 0.05), the replica's CPU per request {cpu:+.3f}, added p50 at c=1 "
        f"{added:+.3f} ms (target <= 0.2); in-process {queue_us:.1f} us per record on the "
        f"request path + {write_us:.1f} us in the writer"
    )
    return {
        "rounds_on": rounds[True],
        "rounds_off": rounds[False],
        "c32_loss": round(loss, 4),
        "c32_loss_paired": round(paired, 4),
        "c32_replica_cpu_added": round(cpu, 4),
        "added_p50_ms_c1": round(added, 3),
        "queue_us_per_record": round(queue_us, 2),
        "write_us_per_record": round(write_us, 2),
    }


def the_replica(timeout: float = 60) -> int:
    """The PID of the one Serve replica, once a redeploy's old one has gone."""
    from tests.conftest import ours_titled

    deadline = time.monotonic() + timeout
    while len(found := ours_titled(b"ray::ServeReplica")) != 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"expected one Serve replica, found {sorted(found)}")
        time.sleep(0.2)
    return found.pop()


def pin(pid: int, cpu: int) -> None:
    """Every thread of the process on one CPU (a thread that ends meanwhile is skipped)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            os.sched_setaffinity(int(task.name), {cpu})


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time: what a request costs the replica, whatever the
    machine's speed does to wall-clock throughput meanwhile."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_record_cost(summary: dict[str, Any], record: dict[str, Any]) -> tuple[float, float]:
    """Microseconds per record: `InferenceLog.add` as a replica calls it, then the writer's
    flush (Arrow table, Parquet file), for the served version's schema."""
    from mlflow.tracking import MlflowClient

    from cluster.tracking.registry import load_verified, resolve
    from serving.inference_log import Answered, InferenceLog, log_schema

    client = MlflowClient(summary["tracking_uri"], registry_uri=summary["tracking_uri"])
    spec, _ = load_verified(client, resolve(client, summary["model_name"], "champion"))
    schema = log_schema(spec)
    answer = summary["prediction"]["response"]
    result = {k: answer[k] for k in ("prediction", "probabilities") if k in answer}
    with tempfile.TemporaryDirectory() as folder:
        log = InferenceLog(folder, "bench", flush_seconds=3600)
        began = time.perf_counter()
        for i in range(PER_RECORD_ROWS):
            answered = Answered(
                str(i), time.time(), "bench", 1, "champion", "predict", 1.0, [record], [result]
            )
            log.add(schema, answered)
        queued = time.perf_counter()
        log.close()
        done = time.perf_counter()
    return (queued - began) / PER_RECORD_ROWS * 1e6, (done - queued) / PER_RECORD_ROWS * 1e6


def against_bare(
    base: dict[str, str], token: str, record: Any, seconds: int, results: dict[str, Any]
) -> dict[str, Any]:
    """256-record batches against bare FastAPI, and the p50 relay adds at c=1."""
    batch = {"records": [record] * BATCH_RECORDS}
    relay = wrk(base["relay"] + "/batch", token, batch, 8, seconds)
    plain = wrk(base["bare"] + "/batch", token, batch, 8, seconds)
    return {
        "batch256_c8": {
            "relay_rows_per_s": round(relay["rps"] * BATCH_RECORDS),
            "bare_rows_per_s": round(plain["rps"] * BATCH_RECORDS),
            "batch_ratio": round(relay["rps"] / plain["rps"], 3),
        },
        "added_p50_ms_c1": round(results["c1"]["relay_p50_ms"] - results["c1"]["bare_p50_ms"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--ingress", choices=["proxy", "direct", "haproxy"], help="default: the config's"
    )
    parser.add_argument(
        "--throughput-optimized",
        action=argparse.BooleanOptionalAction,
        help="serve.throughput_optimized (default: the config's)",
    )
    parser.add_argument("--batch-wait", type=float, default=None, help="batch_wait_timeout_s")
    parser.add_argument("--log-rounds", type=int, default=3, help="log off/on pairs")
    parser.add_argument("--log-only", action="store_true", help="only the log's cost")
    parser.add_argument("--replicas", type=int, default=1, help="and as many bare workers")
    options = parser.parse_args()
    seconds = options.seconds
    from ray import serve

    from cluster.compute.runtime import ray_session
    from cluster.configfile import load_config
    from tests.conftest import free_port

    state = Path(tempfile.mkdtemp(prefix="relay-bench-serve-"))
    uri = f"sqlite:///{state}/mlflow.db"
    port, bare_port = free_port(), free_port()
    cfg = load_config(
        ROOT / "configs" / "ci.yaml",
        overrides={
            "runtime.state_dir": str(state),
            "tracking.uri": uri,
            "serve.port": port,
            "serve.num_replicas": options.replicas,
            **({} if options.ingress is None else {"serve.ingress": options.ingress}),
            **(
                {}
                if options.throughput_optimized is None
                else {"serve.throughput_optimized": options.throughput_optimized}
            ),
            **(
                {}
                if options.batch_wait is None
                else {"serve.batch_wait_timeout_s": options.batch_wait}
            ),
        },
    )
    bare = None
    try:
        with ray_session(cfg.runtime, serve=cfg.serve):
            from jobs.pipeline import runner

            summary = runner.run(cfg, keep_serving=True)
            token = Path(summary["token_file"]).read_text().strip()
            record = summary["prediction"]["request"]
            bare = subprocess.Popen(
                [sys.executable, str(ROOT / "benchmarks" / "bare_serve.py"), uri,
                 cfg.model.name, str(bare_port), summary["token_file"], str(options.replicas)],
            )  # fmt: skip
            base = {"relay": summary["endpoint"], "bare": f"http://127.0.0.1:{bare_port}/predict"}
            wait_ready(f"http://127.0.0.1:{bare_port}/docs")
            results: dict[str, Any] = {}
            for c in () if options.log_only else CONCURRENCY:
                relay = wrk(base["relay"], token, record, c, seconds)
                plain = wrk(base["bare"], token, record, c, seconds)
                results[f"c{c}"] = {
                    "relay_rps": relay["rps"],
                    "bare_rps": plain["rps"],
                    "ratio": round(relay["rps"] / plain["rps"], 3),
                    "relay_p50_ms": relay["p50_ms"],
                    "relay_p99_ms": relay["p99_ms"],
                    "bare_p50_ms": plain["p50_ms"],
                }
            if not options.log_only:
                results |= against_bare(base, token, record, seconds, results)
            if options.replicas == 1:
                results["log"] = log_cost(cfg, summary, token, record, seconds, options.log_rounds)
            results["serve"] = {
                "replicas": options.replicas,
                "ingress": cfg.serve.ingress,
                "throughput_optimized": cfg.serve.throughput_optimized,
                "batch_wait_timeout_s": cfg.serve.batch_wait_timeout_s,
                "endpoint": summary["endpoint"],
                "flags": {k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE")},
            }
            serve.shutdown()
    finally:
        if bare:
            bare.terminate()
            bare.wait(10)
        shutil.rmtree(state, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
