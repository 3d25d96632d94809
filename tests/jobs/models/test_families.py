"""What a config may say about its model family, checked before any Ray work (no Ray here)."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from cluster.configfile import parse_config
from cluster.errors import ConfigError
from jobs.cli.app import app
from jobs.models import families
from tests.conftest import ci_raw, merge


def config(**override):
    return parse_config(merge(ci_raw(), override))


def failure(**override) -> str:
    with pytest.raises(ConfigError) as raised:
        families.check(config(**override))
    return str(raised.value)


def test_each_family_has_its_own_defaults_and_default_space():
    mlp = config(model={"name": "m", "family": "mlp"})
    assert set(families.space(mlp)) == {"lr", "weight_decay", "hidden_size", "depth"}
    linear = config(model={"name": "m", "family": "linear"}, tune={"search_space": None})
    assert set(families.space(linear)) == {"lr", "weight_decay"}
    assert families.defaults(linear) == {"lr": 3e-3, "weight_decay": 0.0, "batch_size": 256}
    fixed = config(
        model={"name": "m", "family": "linear", "hyperparameters": {"batch_size": "64"}},
        train={"lr": 0.01},
    )
    assert families.defaults(fixed) == {"lr": 0.01, "weight_decay": 0.0, "batch_size": 64}


def test_a_key_the_family_does_not_declare_names_the_field_with_a_did_you_mean():
    message = failure(tune={"search_space": {"hiden_size": {"type": "choice", "values": [8]}}})
    assert "tune.search_space.hiden_size is not a hyper-parameter of model.family mlp" in message
    assert "did you mean 'hidden_size'?" in message and "'weight_decay'" in message

    raw = merge(ci_raw(), {"model": {"family": "linear"}})
    raw["tune"]["search_space"] = {"depth": {"type": "choice", "values": [1, 2]}}
    with pytest.raises(ConfigError) as raised:
        families.check(parse_config(raw))
    message = str(raised.value)
    assert "tune.search_space.depth is not a hyper-parameter of model.family linear" in message
    assert "linear's are ['batch_size', 'lr', 'weight_decay']" in message

    message = failure(model={"name": "m", "hyperparameters": {"momentum": 0.9}})
    assert "model.hyperparameters.momentum is not a hyper-parameter" in message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"tune": {"search_space": {"depth": {"type": "choice", "values": [1, 2.5]}}}},
            "tune.search_space.depth: 2.5 is not valid; expected an integer >= 1 and <= 16",
        ),
        (
            {"tune": {"search_space": {"dropout": {"type": "uniform", "low": 0.1, "high": 1.5}}}},
            "tune.search_space.dropout: 1.5 is not valid; expected a number >= 0 and <= 0.99",
        ),
        (
            {"model": {"name": "m", "hyperparameters": {"lr": 0}}},
            "model.hyperparameters.lr: 0 is not valid; expected a number > 0",
        ),
        (
            {"model": {"name": "m", "hyperparameters": {"batch_size": "many"}}},
            "model.hyperparameters.batch_size: 'many' is not valid; expected an integer >= 1",
        ),
    ],
)
def test_a_value_out_of_the_declared_range_names_the_field_and_the_range(override, expected):
    assert expected in failure(**override)


def test_relay_validate_checks_the_family_before_anything_runs(tmp_path):
    raw = merge(ci_raw(), {"model": {"family": "linear"}})  # ci.yaml searches depth
    path = tmp_path / "relay.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["validate", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "tune.search_space.depth is not a hyper-parameter of model.family linear" in (
        result.stderr
    )


def test_a_family_that_does_not_exist_lists_those_that_do():
    with pytest.raises(
        ConfigError, match=r"model.family: Input should be 'mlp', 'linear' or 'gbdt'"
    ):
        config(model={"name": "m", "family": "forest"})


def test_gbdt_takes_xgboosts_own_names_and_refuses_the_networks():
    raw = merge(ci_raw(), {"model": {"family": "gbdt"}})
    raw["tune"]["search_space"] = {"max_depth": {"type": "choice", "values": [3, 5]}}
    gbdt = parse_config(raw)
    families.check(gbdt)
    values = families.defaults(gbdt)
    assert values["learning_rate"] == 0.1 and values["num_boost_round"] == 200
    assert families.family(gbdt).iterations(3, values, families.space(gbdt)) == 200

    raw["tune"]["search_space"] = {"hidden_size": {"type": "choice", "values": [32]}}
    with pytest.raises(ConfigError) as raised:
        families.check(parse_config(raw))
    assert "tune.search_space.hidden_size is not a hyper-parameter of model.family gbdt" in str(
        raised.value
    )
    raw["tune"]["search_space"] = {"eta": {"type": "uniform", "low": 0.1, "high": 0.3}}
    with pytest.raises(ConfigError, match=r"search_space\.eta is not a hyper-parameter"):
        families.check(parse_config(raw))
    message = failure(model={"name": "m", "hyperparameters": {"max_depth": 6}})
    assert "model.hyperparameters.max_depth is not a hyper-parameter of model.family mlp" in (
        message
    )
    raw["tune"]["search_space"] = {"subsample": {"type": "uniform", "low": 0.5, "high": 1.5}}
    with pytest.raises(ConfigError) as raised:
        families.check(parse_config(raw))
    assert "tune.search_space.subsample: 1.5 is not valid; expected a number > 0 and <= 1" in (
        str(raised.value)
    )
