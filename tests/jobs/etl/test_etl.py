"""ETL on a real Ray: exact quarantine, a stable digest, no PII and no leakage in features."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cluster.errors import DataQualityError
from jobs.artifacts import PROFILE
from jobs.data.rowhash import unit_interval
from jobs.etl.file import REJECTS, SPLITS
from jobs.etl.stage import build
from tests.cli_output import json_output
from tests.conftest import write_csv


def test_quarantine_matches_planted_defects_and_digest_is_stable(ray_cluster, make_config):
    cfg = make_config(
        data={"source": {"rows": 3000, "files": 3, "bad_row_rate": 0.04}},
        etl={"max_reject_rate": 0.2},
    )
    first = build(cfg)
    second = build(cfg)
    assert first.digest == second.digest and first.path == second.path
    assert len(first.digest) == 64

    meta = first.meta
    counts = meta["counts"]
    assert counts["rows_in"] == 3000
    assert counts["rows_in"] == counts["rows_out"] + counts["rows_rejected"]
    assert counts["rows_out"] == sum(counts[f"rows_{s}"] for s in SPLITS)
    assert meta["reasons"] == meta["planted_defects"]  # every planted defect, nothing else
    assert sum(meta["planted_defects"].values()) == counts["rows_rejected"]
    assert len(meta["planted_defects"]) == 9  # every defect kind was planted at least once
    rejects = pq.read_table(first.path / REJECTS)
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
    ids = {s: set(first.split(s).column("customer_id").to_pylist()) for s in SPLITS}
    assert not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert 0.6 < counts["rows_train"] / counts["rows_out"] < 0.8


def test_split_depends_on_id_not_on_file_layout(ray_cluster, make_config, tmp_path):
    from jobs.etl.synthetic import make_rows

    rows = make_rows(0, 900, seed=3, bad_row_rate=0.03)[0].to_pylist()
    (tmp_path / "one").mkdir()
    (tmp_path / "three").mkdir()
    write_csv(tmp_path / "one" / "all.csv", rows)
    for i in range(3):
        write_csv(tmp_path / "three" / f"p{i}.csv", rows[i::3])
    one, three = (
        build(make_config(source={"kind": "files", "path": str(tmp_path / d)}))
        for d in ("one", "three")
    )
    assert one.meta["reasons"] == three.meta["reasons"]
    assert one.digest == three.digest  # layout-independent (the folders differ: manifests do)
    for split in (*SPLITS, REJECTS):
        assert sorted(one.split(split).column("customer_id").to_pylist(), key=str) == sorted(
            three.split(split).column("customer_id").to_pylist(), key=str
        )


def test_user_files_with_hashed_pii_and_reject_rate_gate(
    ray_cluster, make_config, tmp_path, monkeypatch
):
    from jobs.etl.synthetic import make_rows

    raw = tmp_path / "raw"
    raw.mkdir()
    good, _ = make_rows(0, 400, seed=1, bad_row_rate=0.0)
    write_csv(raw / "a.csv", good.slice(0, 200).to_pylist())
    good.slice(200, 100).to_pandas().to_json(raw / "b.jsonl", orient="records", lines=True)
    pq.write_table(good.slice(300, 100), raw / "c.parquet")
    (raw / "README.txt").write_text("not data")

    monkeypatch.setenv("RELAY_PII_KEY", "test-secret-key")
    cfg = make_config(source={"kind": "files", "path": str(raw)}, etl={"pii": "hash"})
    dataset = build(cfg)
    assert dataset.meta["counts"]["rows_in"] == 400
    assert dataset.meta["counts"]["rows_rejected"] == 0
    names = [Path(m["path"]).name for m in dataset.meta["manifest"]]
    assert names == ["a.csv", "b.jsonl", "c.parquet"]
    # each email is HMAC-SHA256 under the key: not any 64 hex digits, not a bare (reversible) sha
    raw_emails = dict(zip(good["customer_id"].to_pylist(), good["email"].to_pylist(), strict=True))
    train = dataset.split("train").select(["customer_id", "email"]).to_pylist()
    assert any(r["email"] for r in train)
    for row in train:
        plain = raw_emails[row["customer_id"]]
        expected = hmac.new(b"test-secret-key", str(plain).encode(), hashlib.sha256).hexdigest()
        assert row["email"] == (None if plain is None else expected)

    fresh, _ = make_rows(1000, 1050, seed=2, bad_row_rate=0.0)
    bad = [dict(r, age="old") for r in fresh.to_pylist()]
    write_csv(raw / "d.csv", bad)
    expected = r"(?s)50 of 450 rows rejected .* age:type \(50\).*d\.csv row 0: age:type"
    with pytest.raises(DataQualityError, match=expected):
        build(cfg)
    failed = next((Path(cfg.runtime.state_dir) / "datasets" / cfg.name).glob("failed-*"))
    assert pq.read_table(failed / REJECTS).num_rows == 50  # kept for inspection


def test_split_buckets_are_uniform_and_seeded():
    import pyarrow as pa

    ids = pa.chunked_array([[f"id{i}" for i in range(20000)]])
    a, b = unit_interval(ids, 1), unit_interval(ids, 2)
    assert np.all((a >= 0) & (a < 1))
    assert abs(float(np.mean(a < 0.7)) - 0.7) < 0.02
    assert not np.array_equal(a, b)


def test_duplicate_ids_across_files_and_regex_rule(ray_cluster, make_config, tmp_path):
    from jobs.etl.synthetic import make_rows

    rows = make_rows(0, 100, seed=5, bad_row_rate=0.0)[0].to_pylist()
    raw = tmp_path / "dups"
    raw.mkdir()
    write_csv(raw / "a.csv", rows)
    again = [dict(r, income="1.0") for r in rows[50:60]]  # same ids, other values
    odd = [
        dict(r, customer_id=f"X-{i}")
        for i, r in enumerate(make_rows(500, 505, 6, 0.0)[0].to_pylist())
    ]
    write_csv(raw / "b.csv", again + odd)
    dataset = build(
        make_config(source={"kind": "files", "path": str(raw)}, etl={"max_reject_rate": 0.5})
    )
    assert dataset.meta["reasons"] == {"customer_id:duplicate": 10, "customer_id:regex": 5}
    rejects = pq.read_table(dataset.path / REJECTS)
    duplicates = rejects.filter(pc.equal(rejects.column("_reasons"), "customer_id:duplicate"))
    assert set(duplicates.column("_source").to_pylist()) == {"b.csv"}  # first occurrence kept
    assert duplicates.column("_row").to_pylist() == list(range(10))
    kept = pa.concat_tables(dataset.split(s) for s in SPLITS)
    assert kept.num_rows == 100 and 1.0 not in kept.column("income").to_pylist()


def test_undeclared_pii_fails_or_warns(ray_cluster, make_config, tmp_path):
    from jobs.etl.synthetic import make_rows

    rows = make_rows(0, 60, seed=7, bad_row_rate=0.0)[0].to_pylist()
    for i, row in enumerate(rows):
        row["note"] = f"call me at jane{i}@mail.example.org" if i % 3 == 0 else "no comment"
    raw = tmp_path / "notes"
    raw.mkdir()
    write_csv(raw / "a.csv", rows)
    columns = [*ci_columns(), {"name": "note", "type": "string", "role": "ignore"}]
    source = {"kind": "files", "path": str(raw)}
    with pytest.raises(DataQualityError, match=r"undeclared personal data found: note:email \(20"):
        build(make_config(source=source, data={"columns": columns}))
    dataset = build(make_config(source=source, data={"columns": columns}, etl={"pii_scan": "warn"}))
    assert dataset.meta["pii_findings"] == {"note:email": 20}
    assert "note" not in dataset.split("train").column_names  # role ignore: dropped


def test_profile_is_written_and_consistent(ray_cluster, make_config):
    dataset = build(make_config())
    profile = json.loads((dataset.path / PROFILE).read_text())
    rows_out = dataset.meta["counts"]["rows_out"]
    assert "email" not in profile  # dropped PII is not profiled either
    for column in profile.values():
        assert column["count"] + column["nulls"] == rows_out
    assert sum(profile["region"]["top"].values()) == rows_out
    assert (
        18 <= profile["age"]["min"] <= profile["age"]["quantiles"]["0.5"] <= profile["age"]["max"]
    )
    assert profile["income"]["nulls"] > 0 and profile["income"]["mean"] > 0

    from typer.testing import CliRunner

    from jobs.cli.app import app

    shown = CliRunner().invoke(app, ["data", "profile", str(dataset.path), "--json"])
    assert shown.exit_code == 0 and json_output(shown) == profile
    table = CliRunner().invoke(app, ["data", "profile", str(dataset.path)])
    assert table.exit_code == 0 and "region" in table.stdout and "female" in table.stdout
    missing = CliRunner().invoke(app, ["data", "profile", str(dataset.path.parent)])
    assert missing.exit_code == 2 and "is not a dataset folder" in missing.stderr


def ci_columns() -> list[dict]:
    from tests.conftest import ci_raw

    return ci_raw()["data"]["columns"]


def test_worker_killed_mid_etl_gives_the_same_digest(ray_cluster, make_config):
    """SIGKILL the worker process running a file task; Ray retries it from scratch."""
    import shutil

    from tests.conftest import ProcessKiller

    cfg = make_config(data={"source": {"rows": 120_000, "files": 4}}, etl={"batch_rows": 4096})
    clean = build(cfg)
    shutil.rmtree(clean.path)
    with ProcessKiller(b"ray::process_file", timeout=60) as killer:
        again = build(cfg)
    assert killer.killed, "no file task was seen running"
    assert again.digest == clean.digest
    assert again.meta["counts"] == clean.meta["counts"]
    assert again.meta["reasons"] == clean.meta["reasons"]
