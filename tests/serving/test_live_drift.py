"""The live drift gauges, fed by a real inference log writer (a temp folder, no Ray): each
feature's score over the latest records, rolling, by the gates' own drift code."""

from __future__ import annotations

import math
import time

import numpy as np
import pyarrow as pa

from serving import drift
from serving.inference_log import Answered, InferenceLog, log_schema
from serving.live_drift import LiveDrift

FEATURES = {"numeric": [{"name": "x"}], "categorical": [{"name": "c"}]}


def spec() -> dict:
    rng = np.random.default_rng(0)
    train = pa.table({"x": rng.normal(0, 1, 5000), "c": rng.choice(["a", "b"], 5000)})
    return {
        "task": "regression",
        "input_schema": [{"name": "x", "type": "float"}, {"name": "c", "type": "category"}],
        "features": {**FEATURES, "label": {"name": "y"}},
        "reference": drift.reference(train, FEATURES, bins=10),
    }


def records(n: int, shift: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    xs, cs = rng.normal(shift, 1, n), rng.choice(["a", "b"], n)
    return [{"x": float(x), "c": str(c)} for x, c in zip(xs, cs, strict=True)]


def test_the_gauges_follow_the_latest_records_and_only_the_drifted_feature_moves(tmp_path):
    version_spec = spec()
    gauges: dict[tuple[str, str], float] = {}
    live = LiveDrift(
        "m", "psi", rows=400, min_rows=100,
        set_gauge=lambda value, tags: gauges.__setitem__((tags["version"], tags["feature"]), value),
    )  # fmt: skip
    live.serve(3, version_spec)
    log = InferenceLog(str(tmp_path), "m", flush_seconds=0.05, on_table=live.observe)
    schema = log_schema(version_spec)

    def answer(batch: list[dict]) -> None:
        results = [{"prediction": 0.0}] * len(batch)
        log.add(
            schema, Answered("r", time.time(), "m", 3, "champion", "batch", 1.0, batch, results)
        )
        time.sleep(0.3)  # the writer flushed it

    try:
        answer(records(50, 0.0, 1))
        assert gauges == {}  # too few records to score
        answer(records(400, 0.0, 2))
        assert gauges[("3", "x")] < 0.1 and gauges[("3", "c")] < 0.1
        answer(records(200, 2.0, 3))  # half the window drifted
        half = gauges[("3", "x")]
        answer(records(200, 2.0, 4))  # the whole window drifted
        assert gauges[("3", "x")] > half > 0.2 and gauges[("3", "c")] < 0.1
        answer(records(400, 0.0, 5))  # the drifted records rolled out
        assert gauges[("3", "x")] < 0.1
        live.only({4})  # version 3 swapped out: its gauges no longer stand as current
        assert math.isnan(gauges[("3", "x")]) and math.isnan(gauges[("3", "c")])
        answer(records(200, 2.0, 6))
        assert math.isnan(gauges[("3", "x")])  # nor are they scored again
    finally:
        log.close()
