"""Config errors: one message per problem, naming the dotted path and what would be valid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster.configfile import load_config, parse_config
from cluster.errors import ConfigError
from tests.conftest import ROOT, ci_raw, merge


@pytest.mark.parametrize("name", ["demo.yaml", "ci.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.data.label.name == "defaulted"
    assert cfg.serve.max_ongoing_requests >= cfg.serve.max_batch_size


def error_for(override: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(merge(ci_raw(), override), source="bad.yaml")
    return str(info.value)


def test_unknown_field_suggests_the_right_one() -> None:
    message = error_for({"train": {"epoch": 3}})
    assert "train.epoch: unknown field; did you mean 'epochs'?" in message
    assert "batch_size" in message  # lists the valid fields


def test_wrong_type_names_path_and_value() -> None:
    message = error_for({"tune": {"num_samples": "many"}})
    assert "tune.num_samples: Input should be a valid integer" in message
    assert "'many'" in message


def test_enum_lists_allowed_values() -> None:
    message = error_for({"tune": {"scheduler": "hyperband"}})
    assert "tune.scheduler: Input should be 'asha' or 'fifo'" in message


def test_cross_field_rules() -> None:
    assert "etl.split: train + val + test must be 1.0, got 1.1" in error_for(
        {"etl": {"split": {"train": 0.8, "val": 0.15, "test": 0.15}}}
    )
    assert "serve: max_ongoing_requests (4) must be >= max_batch_size (16)" in error_for(
        {"serve": {"max_ongoing_requests": 4}}
    )
    assert "tune.search_space.lr: loguniform needs low > 0" in error_for(
        {"tune": {"search_space": {"lr": {"type": "loguniform", "low": 0, "high": 1}}}}
    )
    assert "search optuna cannot expand grid parameter(s) ['depth']" in error_for(
        {"tune": {"search": "optuna", "search_space": {"depth": {"type": "grid", "values": [1]}}}}
    )
    assert "train.workers_per_trial: Input should be greater than or equal to 1" in error_for(
        {"train": {"workers_per_trial": 0}}
    )


def test_schema_rules_name_the_column_index() -> None:
    raw = ci_raw()
    raw["data"]["columns"][10] = {"name": "region", "type": "category"}
    with pytest.raises(ConfigError, match=r"data\.columns\.10: a category column needs"):
        parse_config(raw)
    raw = ci_raw()
    raw["data"]["columns"][-1] = {
        "name": "defaulted",
        "type": "float",
        "role": "label",
        "nullable": False,
    }
    with pytest.raises(ConfigError, match=r"model\.task classification needs the label"):
        parse_config(raw)


def test_source_union_errors_name_the_real_path() -> None:
    message = error_for({"data": {"source": {"kind": "files", "path": "x"}}})
    assert "data.source.rows: unknown field; valid fields: format, kind, path" in message
    assert "data.source.files: unknown field" in message


def test_several_errors_reported_together() -> None:
    message = error_for({"train": {"epochs": 0}, "serve": {"port": 70000}})
    assert "train.epochs: Input should be greater than or equal to 1 (got 0)" in message
    assert "serve.port: Input should be less than or equal to 65535 (got 70000)" in message


def test_missing_section_and_file_errors(tmp_path: Path) -> None:
    raw = ci_raw()
    del raw["model"]
    with pytest.raises(ConfigError, match="model: required field is missing"):
        parse_config(raw)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(broken)


def test_cli_reports_config_error_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(merge(ci_raw(), {"train": {"epoch": 3}})))
    for command in (["validate", str(bad)], ["run", str(bad)]):
        result = subprocess.run(
            [sys.executable, "-m", "jobs.cli", *command],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert result.returncode == 2, result.stderr
        assert "train.epoch: unknown field; did you mean 'epochs'?" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"gates": {"model": {"min": {"test_rmse": 1.0}}}},
            "  - gates.model.min.test_rmse: not a higher-is-better classification metric; "
            "use one of ['test_roc_auc', 'test_pr_auc', 'test_accuracy', 'test_f1']",
        ),
        (
            {"gates": {"model": {"max": {"test_roc_auc": 0.9}}}},
            "  - gates.model.max.test_roc_auc: not a lower-is-better classification metric",
        ),
        (
            {"gates": {"model": {"beat_champion": {"metric": "test_r2"}}}},
            "  - gates.model.beat_champion.metric: 'test_r2' is not a classification metric",
        ),
        (
            {"gates": {"data": {"max_null_rate_by_column": {"incme": 0.1}}}},
            "  - gates.data.max_null_rate_by_column: unknown column(s) ['incme']",
        ),
        (
            {"gates": {"fairness": {"metric": "mean_prediction"}}},
            "  - gates.fairness.metric: mean_prediction does not apply to classification",
        ),
        (
            {"gates": {"fairness": {"positive_class": "yes"}}},
            "  - gates.fairness.positive_class: 'yes' is not a class of the label",
        ),
        (
            {"gates": {"data": {"drift": {"mthod": "psi"}}}},
            "  - gates.data.drift.mthod: unknown field; did you mean 'method'? "
            "valid fields: bins, max, method",
        ),
    ],
)
def test_gate_keys_are_checked_against_the_task_and_columns(override, expected) -> None:
    assert expected in error_for(override)


def test_gates_default_on_and_can_be_switched_off() -> None:
    cfg = parse_config(merge(ci_raw(), {}))
    assert cfg.gates.pii.enabled and cfg.gates.data.drift and cfg.gates.fairness
    off = parse_config(
        merge(
            ci_raw(),
            {
                "gates": {
                    "fairness": None,
                    "data": {"drift": None},
                    "model": {"beat_champion": None},
                }
            },
        )
    )
    assert off.gates.fairness is None and off.gates.data.drift is None
    assert off.gates.model.beat_champion is None


def test_a_regression_config_takes_regression_gate_keys() -> None:
    raw = ci_raw()
    for column in raw["data"]["columns"]:
        if column["name"] == "defaulted":
            column["role"] = "ignore"
        if column["name"] == "loan_amount":
            column["role"] = "label"
    raw["model"]["task"] = "regression"
    raw["gates"]["model"]["min"] = {"test_r2": 0.1}
    cfg = parse_config(merge(raw, {"gates": {"model": {"max": {"test_rmse": 5000.0}}}}))
    assert cfg.gates.model.min == {"test_r2": 0.1}
    raw["gates"]["model"]["min"] = {"test_roc_auc": 0.6}  # ci.yaml's classifier floor
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert "gates.model.min.test_roc_auc: not a higher-is-better regression metric" in str(
        info.value
    )


def with_columns(**changes: dict) -> dict:
    """ci.yaml's raw config with some columns' keys changed (by column name)."""
    raw = ci_raw()
    raw["data"]["columns"] = [{**c, **changes.get(c["name"], {})} for c in raw["data"]["columns"]]
    return raw


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"region": {"parts": ["year"]}},
            "data.columns.10.parts: column 'region': parts only apply to type timestamp, not "
            "category; remove parts",
        ),
        (
            {"application_ts": {"parts": ["month"]}},  # role timestamp, not a feature
            "data.columns.1.parts: column 'application_ts': parts only apply to a feature",
        ),
        (
            {"application_ts": {"role": "feature", "parts": ["hour", "minute"]}},
            "data.columns.1.parts.1: Input should be 'year', 'month', 'day', 'day_of_week', "
            "'day_of_year' or 'hour'",
        ),
        (
            {"age": {"format": "%Y"}},
            "data.columns.4.format: column 'age': format only applies to type timestamp",
        ),
        (
            {"application_ts": {"format": "YYYY-MM-DD"}},
            "data.columns.1.format: column 'application_ts': format 'YYYY-MM-DD' has no "
            "strftime directive",
        ),
        (
            {"region": {"max_categories": 3}},
            "data.columns.10.max_categories: column 'region': max_categories only applies "
            "with categories: auto",
        ),
        (
            {"defaulted": {"categories": "auto", "max_categories": 3}},
            "data.columns.12.max_categories: column 'defaulted': a label with categories: auto "
            "keeps every class seen in training",
        ),
        (
            {"region": {"categories": "Auto"}},
            "data.columns.10.categories: categories is a list of the allowed values, or auto",
        ),
    ],
)
def test_timestamp_and_learned_category_keys_name_the_field(changes, expected) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_columns(**changes), source="bad.yaml")
    assert expected in str(info.value)


def test_timestamp_features_with_default_parts_and_learned_categories() -> None:
    cfg = parse_config(
        with_columns(
            application_ts={"role": "feature", "format": "%d.%m.%Y"},
            region={"categories": "auto", "max_categories": 2},
            defaulted={"categories": "auto"},
        )
    )
    stamp = next(c for c in cfg.data.columns if c.name == "application_ts")
    assert stamp.feature_parts == ["year", "month", "day_of_week"]  # a date-only format
    dated = stamp.model_copy(update={"format": None})
    assert dated.feature_parts == ["year", "month", "day_of_week", "hour"]
