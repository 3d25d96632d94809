"""Hostile input, generated: configs and raw files never crash relay; every row is accounted for.

Property-based (hypothesis), bounded so the module runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cluster.configfile import load_config, parse_config
from cluster.errors import ConfigError, DataQualityError
from jobs.data.sources import RawFile, check_columns
from jobs.etl.file import REJECTS, SPLITS, process_file
from tests.conftest import CI_CONFIG, ci_raw, merge

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# ---------------------------------------------------------------- the config loader

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
garbage = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every dotted path (as a tuple of keys and list indexes) in a parsed YAML document."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def dict_get(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


CI_PATHS = paths(ci_raw())


@st.composite
def mutated_ci(draw: st.DrawFn) -> tuple[dict[str, Any], tuple]:
    """configs/ci.yaml with one path replaced by garbage, deleted, or given an unknown key."""
    raw = copy.deepcopy(ci_raw())
    path = draw(st.sampled_from(CI_PATHS))
    *parents, leaf = path
    node = dict_get(raw, tuple(parents))
    action = draw(st.sampled_from(["replace", "delete", "unknown"]))
    if action == "replace":
        node[leaf] = draw(garbage)
    elif action == "delete":
        del node[leaf]
    elif isinstance(node[leaf], dict):
        node[leaf][draw(st.text(min_size=1, max_size=8))] = draw(garbage)
    return raw, path


def assert_precise(message: str) -> None:
    """Validation messages list one `  - <dotted path>: <what is wrong>` line per problem."""
    lines = message.splitlines()
    assert lines[0].endswith("is invalid:"), message
    assert lines[1:] and all(line.startswith("  - ") and ": " in line for line in lines[1:])


@FUZZ
@given(mutated_ci())
def test_mutated_ci_config_is_loaded_or_refused_naming_the_path(case):
    raw, path = case
    try:
        cfg = parse_config(raw, source="fuzz.yaml")
    except ConfigError as exc:
        assert_precise(str(exc))
        assert str(path[0]) in str(exc)  # the section that was broken is named
        return
    # a config that loads is a usable one: no NaN or infinite number in it (a text field may
    # well read "Infinity": a pattern of that word was once taken for one)
    json.dumps(cfg.model_dump(mode="json"), allow_nan=False)
    cfg.digest()


NUMERIC_PATHS = [p for p in CI_PATHS if type(dict_get(ci_raw(), p)) in (int, float)]


@FUZZ
@given(st.sampled_from(NUMERIC_PATHS), st.sampled_from([math.nan, math.inf, -math.inf, 10.0**308]))
def test_non_finite_numbers_are_refused_at_their_path(path, value):
    raw = ci_raw()
    *parents, leaf = path
    dict_get(raw, tuple(parents))[leaf] = value
    if value == 10.0**308 and path[-1] in ("max", "high"):
        return  # a huge upper bound is a legal (if odd) choice
    try:
        parse_config(raw, source="fuzz.yaml")
    except ConfigError as exc:
        assert_precise(str(exc))
        dotted = ".".join(str(p) for p in path)
        assert dotted in str(exc) or str(path[0]) in str(exc)
        return
    assert value == 10.0**308  # only the finite one may load


@FUZZ
@given(st.one_of(st.binary(max_size=300), garbage.map(lambda g: yaml.safe_dump(g).encode())))
def test_any_bytes_as_a_config_file_give_a_config_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_bytes(data)
        try:
            load_config(path)
        except ConfigError as exc:
            assert str(path) in str(exc) or "is invalid" in str(exc)


@FUZZ
@given(
    st.sampled_from(CI_PATHS),
    st.text(alphabet="abc.", min_size=1, max_size=6),
    garbage,
)
def test_set_overrides_on_any_path_give_a_config_or_a_config_error(path, suffix, value):
    dotted = ".".join(str(p) for p in path) + ("." + suffix if suffix.strip(".") else "")
    try:
        load_config(CI_CONFIG, {dotted: value})
    except ConfigError as exc:
        assert dotted.split(".")[0] in str(exc)


# ---------------------------------------------------------------- raw CSV / JSON files

COLUMNS = [
    {"name": "id", "type": "string", "role": "id", "nullable": False},
    {"name": "amount", "type": "float", "min": 0, "max": 1000},
    {"name": "count", "type": "int"},
    {"name": "when", "type": "timestamp", "role": "timestamp"},
    {"name": "kind", "type": "category", "categories": ["a", "b"]},
    {"name": "note", "type": "string", "role": "ignore"},
    {
        "name": "label",
        "type": "category",
        "role": "label",
        "nullable": False,
        "categories": ["0", "1"],
    },
]
NAMES = [c["name"] for c in COLUMNS]


def file_config() -> Any:
    raw = merge(ci_raw(), {"data": {"columns": COLUMNS}, "etl": {"pii_scan": "off"}})
    raw["data"]["source"] = {"kind": "files", "path": "unused"}
    return parse_config(raw)


FILE_CFG = file_config()
HUGE = "x" * 300_000  # beyond Python csv's default field limit (131,072) and Arrow's block

tame = st.sampled_from([None, "a", "b", "0", "1", "12", "-3", "2.5", "2024-01-31", "x y"])
wild = st.one_of(
    st.text(max_size=12),  # any unicode: quotes, commas, newlines, NULs
    st.sampled_from(["1e309", "NaN", "-0", " 7 ", "2024-13-45", "\x00", HUGE]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
cells = st.one_of(tame, tame, tame, wild)  # mostly plausible, so the fast reader is fuzzed too


@st.composite
def hostile_file(draw: st.DrawFn) -> tuple[str, bytes, int]:
    """(format, bytes, rows written): ragged or mixed rows, odd encodings, cut anywhere."""
    fmt = draw(st.sampled_from(["csv", "json"]))
    row = st.lists(cells, min_size=len(NAMES), max_size=len(NAMES))
    ragged = st.lists(cells, min_size=1, max_size=len(NAMES) + 2)
    rows = draw(st.lists(row | row | ragged, min_size=1, max_size=12))
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(NAMES)
        writer.writerows(
            [
                ["" if v is None else json.dumps(v) if isinstance(v, list) else v for v in r]
                for r in rows
            ]
        )
        text = out.getvalue()
    else:
        lines = [json.dumps(dict(zip(NAMES, r, strict=False))) for r in rows]
        lines += draw(
            st.lists(st.sampled_from(["[1, 2]", "{broken", '"text"', "null"]), max_size=2)
        )
        text = "\n".join(lines) + "\n"
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16", "cp1252"]))
    data = text.encode(encoding, errors="replace")
    clean = encoding == "utf-8"
    if draw(st.booleans()):  # truncated, or with invalid bytes spliced in
        cut = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:cut] + draw(st.sampled_from([b"", b"\xff\xfe\x00", b"\xc3", b"\x00\x00"]))
        clean = False
    return fmt, data, len(rows) if clean and fmt == "csv" else -1


@settings(FUZZ, max_examples=100)
@given(hostile_file())
def test_hostile_files_are_quarantined_never_crash_never_lose_rows(case):
    fmt, data, written = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"raw.{fmt}"
        path.write_bytes(data)
        raw = RawFile(uri=str(path), format=fmt, size=len(data))
        try:
            check_columns(raw, NAMES, "ignore")
        except DataQualityError as exc:
            assert str(path) in str(exc) and ("missing" in str(exc) or "header" in str(exc))
            event("refused: header unreadable")
            return
        out = Path(tmp) / "out"
        for sub in (*SPLITS, REJECTS):
            (out / sub).mkdir(parents=True)
        try:
            part = process_file(raw, 0, str(out), FILE_CFG, None, np.array([], np.int64), [])
        except DataQualityError as exc:  # a clear refusal of the whole file is allowed
            assert str(path) in str(exc)
            event("refused: rows unreadable")
            return
        counts = part.counts
        event(f"read, {'slow' if part.slow_path else 'fast'} path")
        assert counts["rows_in"] == counts["rows_out"] + counts["rows_rejected"]
        if written >= 0:
            assert counts["rows_in"] == written  # every row read, none dropped or invented
        stored = {s: pq.read_table(out / s / "part-00000.parquet").num_rows for s in SPLITS}
        assert sum(stored.values()) == counts["rows_out"]
        rejects = pq.read_table(out / REJECTS / "part-00000.parquet")
        assert rejects.num_rows == counts["rows_rejected"]
        assert all(r for r in rejects.column("_reasons").to_pylist())  # each with its reasons
        good = pq.read_table(out / "train" / "part-00000.parquet").column("amount").to_pylist()
        assert all(v is None or (math.isfinite(v) and 0 <= v <= 1000) for v in good)
