"""The data contract on real Ray: timestamps in any declared format, and categories learned from
the training split."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cluster.errors import DataQualityError
from jobs.etl.file import REJECTS, SPLITS
from jobs.etl.stage import build
from tests.conftest import write_csv

BASE = datetime(2023, 12, 30, 22, 15, tzinfo=UTC)
OFFSETS = [timedelta(0), timedelta(hours=2), timedelta(hours=-5, minutes=-30), None]
PARTS = ["year", "month", "day", "day_of_week", "day_of_year", "hour"]


def offset_text(offset: timedelta) -> str:
    if not offset:
        return "Z"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{'-' if offset < timedelta(0) else '+'}{minutes // 60:02d}:{minutes % 60:02d}"


def stamp_rows(n: int) -> list[dict]:
    """The same instant per row in five formats; the offsets differ from row to row."""
    rows = []
    for i in range(n):
        when = BASE + timedelta(hours=37 * i, minutes=i % 60)
        offset = OFFSETS[i % len(OFFSETS)]
        local = when.astimezone(timezone(offset or timedelta(0)))
        iso = local.strftime("%Y-%m-%dT%H:%M:%S") + ("" if offset is None else offset_text(offset))
        swapped = when.astimezone(timezone(timedelta(hours=(i % 5) - 2)))
        rows.append(
            {
                "id": f"r{i}",
                "iso": iso,
                "slashed": when.strftime("%Y/%m/%d %H:%M"),
                "us": swapped.strftime("%m/%d/%Y %I:%M %p %z"),
                "epoch_s": str(int(when.timestamp())),
                "epoch_ms": str(int(when.timestamp()) * 1000),
                "amount": str(i % 17),
                "label": "yes" if i % 3 else "no",
            }
        )
    return rows


def columns(**changes: dict) -> list[dict]:
    declared = [
        {"name": "id", "type": "string", "role": "id", "nullable": False},
        {"name": "iso", "type": "timestamp", "parts": PARTS},
        {"name": "slashed", "type": "timestamp", "role": "timestamp", "format": "%Y/%m/%d %H:%M"},
        {"name": "us", "type": "timestamp", "role": "timestamp", "format": "%m/%d/%Y %I:%M %p %z"},
        {"name": "epoch_s", "type": "timestamp", "role": "timestamp", "format": "epoch_s"},
        {"name": "epoch_ms", "type": "timestamp", "role": "timestamp", "format": "epoch_ms"},
        {"name": "amount", "type": "float"},
        {"name": "label", "type": "category", "role": "label", "nullable": False},
    ]
    return [{**c, **changes.get(c["name"], {})} for c in declared]


def file_config(make_config, path: Path, cols: list[dict]):
    return make_config(
        source={"kind": "files", "path": str(path)},
        data={"columns": cols},
        etl={"pii_scan": "off", "max_reject_rate": 0.5},
        gates={"fairness": None},
    )


def test_timestamps_in_four_formats_and_epochs_are_the_same_utc_instants(
    ray_cluster, make_config, tmp_path
):
    rows = stamp_rows(300)
    rows[7]["slashed"] = "2024/02/30 10:00"  # no such day: quarantined, not rolled over
    rows[8]["us"] = "13/01/2024 10:00 AM +0000"
    write_csv(tmp_path / "stamps.csv", rows)
    cfg = file_config(make_config, tmp_path / "stamps.csv", columns(label={"categories": "auto"}))
    dataset = build(cfg)

    assert dataset.meta["reasons"] == {"slashed:type": 1, "us:type": 1}
    rejects = pq.read_table(dataset.path / REJECTS).to_pylist()
    assert {r["id"]: r["_reasons"] for r in rejects} == {"r7": "slashed:type", "r8": "us:type"}
    good = pa.concat_tables(dataset.split(s) for s in SPLITS)
    assert good.num_rows == 298
    expected = {
        f"r{i}": (BASE + timedelta(hours=37 * i, minutes=i % 60)).replace(tzinfo=None)
        for i in range(300)
    }
    for name in ("iso", "slashed", "us", "epoch_s", "epoch_ms"):
        assert good.schema.field(name).type == pa.timestamp("us")
        got = dict(zip(good["id"].to_pylist(), good[name].to_pylist(), strict=True))
        assert got == {k: v for k, v in expected.items() if k not in ("r7", "r8")}, name

    train = dataset.split("train")
    numeric = {f["name"]: f for f in dataset.meta["features"]["numeric"]}
    assert list(numeric) == [*(f"iso.{p}" for p in PARTS), "amount"]
    hours = pc.hour(train["iso"]).cast(pa.float64())
    assert numeric["iso.hour"]["mean"] == pytest.approx(pc.mean(hours).as_py())  # train only
    selector = {k: numeric["iso.day_of_week"][k] for k in ("name", "column", "part", "format")}
    assert selector == {
        "name": "iso.day_of_week",
        "column": "iso",
        "part": "day_of_week",
        "format": None,
    }
    classes = Counter(train["label"].to_pylist())
    assert dataset.meta["features"]["label"] == {"name": "label", "classes": ["yes", "no"]}
    assert classes["yes"] > classes["no"]  # most frequent first


def test_a_format_that_matches_nothing_stops_etl_naming_column_and_sample(
    ray_cluster, make_config, tmp_path
):
    write_csv(tmp_path / "stamps.csv", stamp_rows(50))
    cols = columns(slashed={"format": "%d.%m.%Y %H:%M"}, label={"categories": ["yes", "no"]})
    cfg = file_config(make_config, tmp_path / "stamps.csv", cols)
    with pytest.raises(DataQualityError) as info:
        build(cfg)
    message = str(info.value)
    assert str(tmp_path / "stamps.csv") in message
    assert "no value of timestamp column(s) ['slashed'] in the first 50 rows parses" in message
    assert "slashed: e.g. '2023/12/30 22:15' is not the strftime format '%d.%m.%Y %H:%M'" in (
        message
    )
    assert "Traceback" not in message and "ray" not in message.lower()
    root = Path(cfg.runtime.state_dir) / "datasets" / cfg.name
    assert not list(root.glob(".tmp-*"))  # nothing half-built left behind


def test_learned_categories_come_from_the_training_split(ray_cluster, make_config, tmp_path):
    rows = stamp_rows(400)
    shops = ["c", "a", "b", "c", "d", "c", "a", "b", "e", "c"]
    for i, row in enumerate(rows):
        row["shop"] = shops[i % len(shops)] if i % 23 else ""
    write_csv(tmp_path / "shops.csv", rows)
    shop = {"name": "shop", "type": "category", "categories": "auto", "max_categories": 2}
    cols = [*columns(label={"categories": "auto"}), shop]
    dataset = build(file_config(make_config, tmp_path / "shops.csv", cols))

    train = Counter(v for v in dataset.split("train")["shop"].to_pylist() if v is not None)
    ranked = sorted(train, key=lambda v: (-train[v], v))
    (learned,) = dataset.meta["features"]["categorical"]
    assert learned == {"name": "shop", "vocab": [*ranked[:2], "__other__"], "other": "__other__"}
    assert dataset.meta["reasons"] == {}  # auto: no value is outside the set
    schema = {c["name"]: c for c in dataset.meta["input_schema"]}
    assert schema["shop"]["categories"] == "auto" and schema["shop"]["max_categories"] == 2
    assert "format" not in schema["amount"] and "parts" not in schema["amount"]
