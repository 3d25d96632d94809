"""The endpoint's contract under the other Serve ingresses: `proxy` and `direct`.

Serve reads its ingress flags once, when its processes start, so each case is a `relay run
--serve` subprocess with its own embedded Ray (the session's Ray runs the default `haproxy`,
which tests/jobs/pipeline/test_pipeline.py covers). Same routes, same auth, same 4xx, same answers.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.processes import kill
from tests.conftest import ROOT, default_sigint, free_port, in_session
from tests.jobs.cli.test_cli import RELAY, ray_dirs_in_use, write_config


def summary_line(process: subprocess.Popen, timeout: float) -> dict[str, Any]:
    """The JSON summary `relay run --serve --json` prints before it blocks."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert process.poll() is None, f"relay run ended with {process.returncode}"
            continue
        if line.startswith("{") and '"endpoint"' in line:
            return json.loads(line)
    raise AssertionError(f"no summary within {timeout} s")


@pytest.mark.parametrize("ingress", ["proxy", "direct"])
def test_the_endpoint_contract_holds_under_each_ingress(tmp_path: Path, ingress: str) -> None:
    before = ray_dirs_in_use()
    config = write_config(
        tmp_path,
        serve={"port": free_port(), "ingress": ingress},
        tune={"num_samples": 1},
        train={"epochs": 2},
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = str(ROOT)
    log = (tmp_path / "relay.log").open("w")
    process = subprocess.Popen(
        [*RELAY, "run", str(config), "--serve", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,  # it is stopped with Ctrl-C below
    )
    try:
        summary = summary_line(process, timeout=400)
        endpoint = summary["endpoint"]
        token = Path(summary["token_file"]).read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        record = summary["prediction"]["request"]
        with httpx.Client(timeout=30) as http:
            answer = http.post(endpoint, json=record, headers=auth)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["prediction"] == summary["prediction"]["response"]["prediction"]
            assert body["model_version"] == summary["model_version"] == 1
            assert body["probabilities"] == summary["prediction"]["response"]["probabilities"]
            assert http.post(endpoint, json=record).status_code == 401
            wrong = {"Authorization": "Bearer not-the-token"}
            assert http.post(endpoint, json=record, headers=wrong).status_code == 403
            bad = http.post(endpoint, json={**record, "age": 5}, headers=auth)
            assert bad.status_code == 422 and "age" in bad.text
            malformed = http.post(
                endpoint, content=b'{"age": ', headers={**auth, "content-type": "application/json"}
            )
            assert malformed.status_code == 422
            batch = http.post(
                f"{endpoint}/batch", json={"records": [record, {**record, "age": 5}]}, headers=auth
            )
            assert batch.status_code == 422
            assert batch.json()["detail"][0]["loc"] == ["body", "records", 1, "age"]
            batch = http.post(f"{endpoint}/batch", json={"records": [record] * 3}, headers=auth)
            assert batch.status_code == 200, batch.text
            predictions = [p["prediction"] for p in batch.json()["predictions"]]
            assert predictions == [body["prediction"]] * 3
            schema = http.get(endpoint.removesuffix("/predict") + "/schema").json()
            assert schema["model"]["model_version"] == 1
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C: the endpoint goes down, then Ray
        try:
            code = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            kill(sorted(in_session(process.pid)))
            raise
    assert code == 0, (tmp_path / "relay.log").read_text()[-3000:]
    assert ray_dirs_in_use() <= before  # nothing of the run is left running
    assert not in_session(process.pid)  # nothing it started in a group of its own either
