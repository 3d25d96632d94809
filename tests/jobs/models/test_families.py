"""What a config may say about its model family, checked before any Ray work (no Ray here)."""

from __future__ import annotations

from pathlib import Path

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
        ConfigError, match=r"model.family: Input should be 'mlp', 'linear', 'gbdt' or 'torch'"
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


USERMODELS = Path(__file__).resolve().parents[2] / "fixtures" / "usermodels"


def user_config(module: str, folder: Path = USERMODELS, **tune):
    """family torch with `module`, as read from a config file in `folder`."""
    raw = merge(ci_raw(), {"model": {"family": "torch", "module": module}})
    raw["tune"]["search_space"] = tune or None
    cfg = parse_config(raw)
    cfg._folder = folder
    return cfg


def test_a_user_module_is_found_beside_the_config_and_its_parameters_are_declared():
    cfg = user_config("widenet:build", width={"type": "choice", "values": [16, 32]})
    families.check(cfg)
    chosen = families.family(cfg)
    assert set(chosen.hyperparameters) == {"lr", "weight_decay", "batch_size", "width", "blocks"}
    assert families.defaults(cfg)["width"] == 32 and families.defaults(cfg)["blocks"] == 1
    context = chosen.context()
    assert context["network"] == "torch" and "class Residual" in context["module"]["source"]


@pytest.mark.parametrize(
    ("module", "tune", "expected"),
    [
        ("nowhere:build", {}, "model.module: no module 'nowhere' in "),
        (
            "broken:build",
            {},
            "model.module: broken (",
        ),
        ("widenet:make", {}, "has no function 'make'"),
        ("onearg:build", {}, "must take (n_inputs, n_outputs, **hyperparameters)"),
        (
            "widenet:build",
            {"widht": {"type": "choice", "values": [8]}},
            "tune.search_space.widht is not a hyper-parameter of model.family torch; "
            "did you mean 'width'?",
        ),
        (
            "widenet:build",
            {"blocks": {"type": "choice", "values": [1.5]}},
            "tune.search_space.blocks: 1.5 is not valid; expected an integer",
        ),
    ],
)
def test_a_user_module_that_cannot_be_used_is_a_config_error_on_the_field(module, tune, expected):
    with pytest.raises(ConfigError) as raised:
        families.check(user_config(module, **tune))
    assert expected in str(raised.value)
    if module.startswith("broken"):
        assert "does not import: ModuleNotFoundError" in str(raised.value)


def test_family_torch_without_a_module_and_a_module_without_torch_are_refused():
    with pytest.raises(ConfigError, match=r"family torch needs model\.module"):
        config(model={"name": "m", "family": "torch"})
    with pytest.raises(ConfigError, match=r"model\.module only applies to family torch"):
        config(model={"name": "m", "module": "widenet:build"})
