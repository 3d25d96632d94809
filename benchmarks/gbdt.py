"""relay's gbdt trial against plain XGBoost on the same split, in the same run.

Usage: python benchmarks/gbdt.py [--rows 1430000] [--repeats 2]
configs/demo.yaml's synthetic data, sized so the training split has ~1M rows, built once by
relay's ETL. Then, with the same hyper-parameters, 2 threads each and early stopping on the
validation split, `--repeats` times in turn (this VM's speed drifts by 10-20% between runs):
- relay: `relay run --until evaluate` with model.family gbdt, one trial (FIFO), the dataset
  re-used after the first run; its wall time is the search's: the splits' read (a Ray task
  started beside the trial), Tune's fit (trial actor start, boosting, per-round reports and
  checkpoints), Ray's start reported apart;
- plain: in this process, the same encoded arrays (`jobs.train.arrays.load_arrays`), a DMatrix
  each and `xgboost.train` with the same parameters, scored on the test split at its best round.
train_ratio = relay's fastest wall / plain's fastest wall (target <= 1.3); auc_delta = relay's
test AUC - plain's (target within 0.002). A last run, plain XGBoost on the raw columns with its
native categorical support (pandas category dtype), measures what relay's one-hot encoding
costs or gains (native_auc_delta, native_wall_s). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HYPERPARAMETERS = {
    "learning_rate": 0.1,
    "max_depth": 6,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "num_boost_round": 300,
    "early_stopping_rounds": 20,
}


def boosted(hp: dict, ctx: object, train: object, val: object) -> object:
    """xgboost.train as a user would call it: the same parameters, early stopping on val."""
    import xgboost as xgb

    from jobs.train.boost import params

    return xgb.train(
        params(hp, ctx, "cpu", 2),
        train,
        num_boost_round=hp["num_boost_round"],
        evals=[(val, "val")],
        early_stopping_rounds=hp["early_stopping_rounds"],
        verbose_eval=False,
    )


def full_hyperparameters() -> dict:
    from jobs.models import gbdt

    return {k: h.default for k, h in gbdt.HYPERPARAMETERS.items()} | HYPERPARAMETERS


def plain(dataset: Path, meta: dict, seed: int) -> dict[str, float]:
    """The library alone on relay's encoded splits."""
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    from jobs.train.arrays import load_arrays
    from jobs.train.context import TrialContext

    ctx = TrialContext(
        dataset_path=str(dataset),
        id_column=meta["id_column"],
        features=meta["features"],
        task="classification",
        epochs=1,
        seed=seed,
        defaults={},
        threads=2,
    )
    hp = full_hyperparameters()
    began = time.perf_counter()
    (x, y), (xv, yv) = load_arrays(ctx, "train"), load_arrays(ctx, "val")
    train, val = xgb.DMatrix(x, label=y, nthread=2), xgb.DMatrix(xv, label=yv, nthread=2)
    booster = boosted(hp, ctx, train, val)
    wall = time.perf_counter() - began
    xt, yt = load_arrays(ctx, "test")
    scores = booster.inplace_predict(xt, iteration_range=(0, booster.best_iteration + 1))
    return {
        "wall_s": wall,
        "auc": float(roc_auc_score(yt, scores)),
        "rounds": booster.best_iteration + 1,
        "train_rows": len(y),
    }


def native(dataset: Path, meta: dict, seed: int, hp: dict) -> dict[str, float]:
    """Plain XGBoost on the raw columns, categories as pandas categories (no one-hot)."""
    import pandas as pd
    import pyarrow.parquet as pq
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    from jobs.train.context import TrialContext

    features = meta["features"]
    numeric = [f["name"] for f in features["numeric"] if "part" not in f]
    categorical = [f["name"] for f in features["categorical"]]
    label = features["label"]

    def frame(split: str) -> tuple[pd.DataFrame, list[float]]:
        table = pq.read_table(dataset / split, columns=[*numeric, *categorical, label["name"]])
        x = table.select(numeric + categorical).to_pandas()
        for name in categorical:
            x[name] = x[name].astype("category")
        y = [label["classes"].index(v) for v in table.column(label["name"]).to_pylist()]
        return x, y

    ctx = TrialContext(
        dataset_path=str(dataset),
        id_column=None,
        features=features,
        task="classification",
        epochs=1,
        seed=seed,
        defaults={},
        threads=2,
    )
    began = time.perf_counter()
    (x, y), (xv, yv) = frame("train"), frame("val")
    train = xgb.DMatrix(x, label=y, enable_categorical=True, nthread=2)
    val = xgb.DMatrix(xv, label=yv, enable_categorical=True, nthread=2)
    booster = boosted(hp, ctx, train, val)
    wall = time.perf_counter() - began
    xt, yt = frame("test")
    scores = booster.predict(
        xgb.DMatrix(xt, enable_categorical=True), iteration_range=(0, booster.best_iteration + 1)
    )
    return {"wall_s": wall, "auc": float(roc_auc_score(yt, scores))}


def tune_metrics(summary: dict) -> dict[str, float]:
    """The tune run's figures: `wall_seconds` (Tune's fit: trial actor start, the trial,
    result handling) and `trial_seconds_total` (the trial's own data load and boosting)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(summary["tracking_uri"])
    trial = client.get_run(summary["best_trial_run_id"])
    return client.get_run(trial.data.tags["mlflow.parentRunId"]).data.metrics


def main() -> None:
    from cluster.configfile import load_config
    from jobs.artifacts import Dataset
    from jobs.pipeline import runner

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_430_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="relay-bench-gbdt-"))
    overrides = {
        "runtime.state_dir": str(state),
        "tracking.uri": f"sqlite:///{state}/mlflow.db",
        "data.source.rows": args.rows,
        "data.source.files": 4,
        "model.family": "gbdt",
        "model.hyperparameters": HYPERPARAMETERS,
        "tune.search_space": {},
        "tune.num_samples": 1,
        "tune.scheduler": "fifo",
        "train.cpus_per_trial": 2,
    }
    relay_runs: list[tuple[dict, dict]] = []
    plain_runs: list[dict] = []
    try:
        cfg = load_config(ROOT / "configs" / "demo.yaml", overrides=overrides)
        for _ in range(args.repeats):
            summary = runner.run(cfg, until="evaluate")
            relay_runs.append((summary, tune_metrics(summary)))
            dataset = Dataset.open(Path(summary["dataset_path"]))
            plain_runs.append(plain(dataset.path, dataset.meta, cfg.seed))
        categories = native(dataset.path, dataset.meta, cfg.seed, full_hyperparameters())
    finally:
        shutil.rmtree(state, ignore_errors=True)
    summary, figures = min(relay_runs, key=lambda run: run[1]["wall_seconds"])
    baseline = min(plain_runs, key=lambda run: run["wall_s"])
    relay_wall, stage = figures["wall_seconds"], summary["stage_seconds"]["tune"]
    trial_s = figures["trial_seconds_total"]
    relay_auc = summary["test_metrics"]["test_roc_auc"]
    ratio = relay_wall / baseline["wall_s"]
    print(f"train rows        {baseline['train_rows']:,}")
    for number, ((_, run), base) in enumerate(zip(relay_runs, plain_runs, strict=True), 1):
        print(
            f"run {number}             relay {run['wall_seconds']:6.2f} s   plain "
            f"{base['wall_s']:6.2f} s   ratio {run['wall_seconds'] / base['wall_s']:.3f}"
        )
    print(f"relay search      {relay_wall:8.2f} s   (fastest; splits' read beside Tune's fit)")
    print(f"  in the trial    {trial_s:8.2f} s   (xgboost import, splits wait, boosting)")
    print(f"  tune stage      {stage:8.2f} s   (+ MLflow records, learning-curve plot)")
    print(f"  Ray start       {summary['stage_seconds']['ray']:8.2f} s   (apart)")
    print(f"plain xgb.train   {baseline['wall_s']:8.2f} s   ratio {ratio:.3f} (target <= 1.3)")
    print(f"relay test AUC    {relay_auc:.5f}")
    print(f"plain test AUC    {baseline['auc']:.5f}   delta {relay_auc - baseline['auc']:+.5f}")
    print(f"native categories {categories['wall_s']:8.2f} s   AUC {categories['auc']:.5f}")
    print(
        json.dumps(
            {
                "train_rows": baseline["train_rows"],
                "relay_wall_s": round(relay_wall, 3),
                "relay_walls_s": [round(run["wall_seconds"], 3) for _, run in relay_runs],
                "relay_tune_stage_s": stage,
                "plain_wall_s": round(baseline["wall_s"], 3),
                "plain_walls_s": [round(run["wall_s"], 3) for run in plain_runs],
                "train_ratio": round(ratio, 3),
                "ray_start_s": summary["stage_seconds"]["ray"],
                "relay_trial_s": round(trial_s, 3),
                "relay_auc": round(relay_auc, 5),
                "plain_auc": round(baseline["auc"], 5),
                "auc_delta": round(relay_auc - baseline["auc"], 5),
                "plain_rounds": baseline["rounds"],
                "native_wall_s": round(categories["wall_s"], 3),
                "native_auc": round(categories["auc"], 5),
                "native_auc_delta": round(relay_auc - categories["auc"], 5),
                "hyperparameters": HYPERPARAMETERS,
            }
        )
    )


if __name__ == "__main__":
    main()
