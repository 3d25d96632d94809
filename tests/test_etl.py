"""ETL on a real Ray: exact quarantine, a stable digest, no PII and no leakage in features."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cluster.errors import DataQualityError
from jobs import etl


def test_quarantine_matches_planted_defects_and_digest_is_stable(ray_cluster, make_config):
    cfg = make_config(
        data={"source": {"rows": 3000, "files": 3, "bad_row_rate": 0.04}},
        etl={"max_reject_rate": 0.2},
    )
    first = etl.build(cfg)
    second = etl.build(cfg)
    assert first.digest == second.digest and first.path == second.path
    assert len(first.digest) == 64

    meta = first.meta
    counts = meta["counts"]
    assert counts["rows_in"] == 3000
    assert counts["rows_in"] == counts["rows_out"] + counts["rows_rejected"]
    assert counts["rows_out"] == sum(counts[f"rows_{s}"] for s in etl.SPLITS)
    assert meta["reasons"] == meta["planted_defects"]  # every planted defect, nothing else
    assert sum(meta["planted_defects"].values()) == counts["rows_rejected"]
    assert len(meta["planted_defects"]) == 7  # every defect kind was planted at least once
    rejects = pq.read_table(first.path / etl.REJECTS)
    assert rejects.num_rows == counts["rows_rejected"]
    assert set(rejects.column("_reasons").to_pylist()) == set(meta["reasons"])
    assert [m["sha256"] for m in meta["manifest"]] and all(
        len(m["sha256"]) == 64 for m in meta["manifest"]
    )

    train = first.split("train")
    assert "email" not in train.column_names  # pii: drop
    assert "email" not in json.dumps(meta["features"])
    assert "gender" not in json.dumps(meta["features"])  # sensitive: kept, never a feature
    assert "gender" in train.column_names
    age = next(f for f in meta["features"]["numeric"] if f["name"] == "age")
    assert age["mean"] == pytest.approx(pc.mean(train.column("age")).as_py())  # train only
    ids = {s: set(first.split(s).column("customer_id").to_pylist()) for s in etl.SPLITS}
    assert not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert 0.6 < counts["rows_train"] / counts["rows_out"] < 0.8


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_split_depends_on_id_not_on_file_layout(ray_cluster, make_config, tmp_path):
    from jobs.synthetic import make_rows

    rows = make_rows(0, 900, seed=3, bad_row_rate=0.03)[0].to_pylist()
    (tmp_path / "one").mkdir()
    (tmp_path / "three").mkdir()
    write_csv(tmp_path / "one" / "all.csv", rows)
    for i in range(3):
        write_csv(tmp_path / "three" / f"p{i}.csv", rows[i::3])
    one, three = (
        etl.build(make_config(source={"kind": "files", "path": str(tmp_path / d)}))
        for d in ("one", "three")
    )
    assert one.meta["reasons"] == three.meta["reasons"]
    for split in (*etl.SPLITS, etl.REJECTS):
        assert sorted(one.split(split).column("customer_id").to_pylist(), key=str) == sorted(
            three.split(split).column("customer_id").to_pylist(), key=str
        )


def test_user_files_with_hashed_pii_and_reject_rate_gate(
    ray_cluster, make_config, tmp_path, monkeypatch
):
    from jobs.synthetic import make_rows

    raw = tmp_path / "raw"
    raw.mkdir()
    good, _ = make_rows(0, 400, seed=1, bad_row_rate=0.0)
    write_csv(raw / "a.csv", good.slice(0, 200).to_pylist())
    good.slice(200, 100).to_pandas().to_json(raw / "b.jsonl", orient="records", lines=True)
    pq.write_table(good.slice(300, 100), raw / "c.parquet")
    (raw / "README.txt").write_text("not data")

    monkeypatch.setenv("RELAY_PII_KEY", "test-secret-key")
    cfg = make_config(source={"kind": "files", "path": str(raw)}, etl={"pii": "hash"})
    dataset = etl.build(cfg)
    assert dataset.meta["counts"]["rows_in"] == 400
    assert dataset.meta["counts"]["rows_rejected"] == 0
    names = [Path(m["path"]).name for m in dataset.meta["manifest"]]
    assert names == ["a.csv", "b.jsonl", "c.parquet"]
    emails = dataset.split("train").column("email").to_pylist()
    assert all(e is None or (len(e) == 64 and "@" not in e) for e in emails)

    bad = [dict(r, age="old") for r in good.slice(0, 50).to_pylist()]
    write_csv(raw / "d.csv", bad)
    with pytest.raises(DataQualityError, match=r"50 of 450 rows rejected .* age:type \(50\)"):
        etl.build(cfg)
    failed = next((Path(cfg.runtime.state_dir) / "datasets" / cfg.name).glob("failed-*"))
    assert pq.read_table(failed / etl.REJECTS).num_rows == 50  # kept for inspection


def test_split_buckets_are_uniform_and_seeded():
    import pyarrow as pa

    ids = pa.chunked_array([[f"id{i}" for i in range(20000)]])
    a, b = etl.split_buckets(ids, 1), etl.split_buckets(ids, 2)
    assert np.all((a >= 0) & (a < 1))
    assert abs(float(np.mean(a < 0.7)) - 0.7) < 0.02
    assert not np.array_equal(a, b)
