"""relay's Serve endpoint against bare FastAPI + uvicorn serving the same model.

Usage: python benchmarks/serve.py [--seconds 10] [--ingress proxy|direct|haproxy]
           [--throughput-optimized] [--batch-wait S]       (needs wrk: apt-get install wrk)
Trains the CI pipeline's model into a temporary store, serves it with relay (Ray Serve,
batching, auth: exactly what `relay run` deploys) and with benchmarks/bare_serve.py (one
uvicorn worker), and loads each with the same wrk run: single-record requests at
concurrency 1, 8 and 32, then 256-record /predict/batch requests at concurrency 8.
The switches are the `serve` config's `ingress`, `throughput_optimized` and
`batch_wait_timeout_s`: relay starts its Ray with the matching RAY_SERVE_* flags.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
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


def wrk(url: str, token: str, body: Any, connections: int, seconds: int) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) from one wrk run (1 thread)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(json.dumps(body))}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url],
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--ingress", choices=["proxy", "direct", "haproxy"], default="proxy")
    parser.add_argument("--throughput-optimized", action="store_true")
    parser.add_argument("--batch-wait", type=float, default=None, help="batch_wait_timeout_s")
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
            "serve.ingress": options.ingress,
            "serve.throughput_optimized": options.throughput_optimized,
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
                 cfg.model.name, str(bare_port), summary["token_file"]],
            )  # fmt: skip
            base = {"relay": summary["endpoint"], "bare": f"http://127.0.0.1:{bare_port}/predict"}
            wait_ready(f"http://127.0.0.1:{bare_port}/docs")
            results: dict[str, Any] = {}
            for c in CONCURRENCY:
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
            batch = {"records": [record] * BATCH_RECORDS}
            relay = wrk(base["relay"] + "/batch", token, batch, 8, seconds)
            plain = wrk(base["bare"] + "/batch", token, batch, 8, seconds)
            results["batch256_c8"] = {
                "relay_rows_per_s": round(relay["rps"] * BATCH_RECORDS),
                "bare_rows_per_s": round(plain["rps"] * BATCH_RECORDS),
                "batch_ratio": round(relay["rps"] / plain["rps"], 3),
            }
            results["added_p50_ms_c1"] = round(
                results["c1"]["relay_p50_ms"] - results["c1"]["bare_p50_ms"], 3
            )
            results["serve"] = {
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
