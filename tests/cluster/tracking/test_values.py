"""Tags and params keep their types: written as JSON by the Tracker, read back by declared type."""

from __future__ import annotations

import pytest

from cluster.errors import RelayError
from cluster.tracking.tracker import Tracker
from cluster.tracking.values import decode


def test_tracker_writes_values_that_are_not_text_as_json_and_they_decode_by_declared_type(
    tmp_path,
):
    """Issue #16: `str(v)` stored a dict as its Python repr and True as 'True'."""
    tracker = Tracker.open(f"sqlite:///{tmp_path / 'mlflow.db'}", "typed")
    hp = {"lr": 0.003, "hidden_size": 64, "scheduler": "asha"}
    with tracker.run("tune") as run_id:
        tracker.log(
            run_id,
            params={"use_gpu": False, "epochs": 3, "scheduler": "fifo"},
            tags={"relay.best_hyperparameters": hp, "relay.trials": 4, "relay.gpu": True},
        )
    data = tracker.client.get_run(run_id).data
    assert (
        data.tags["relay.best_hyperparameters"]
        == '{"lr": 0.003, "hidden_size": 64, "scheduler": "asha"}'
    )
    assert (data.tags["relay.gpu"], data.params["use_gpu"]) == ("true", "false")
    assert data.params["scheduler"] == "fifo"  # text stays as it is, unquoted, in the UI
    assert decode(data.tags["relay.best_hyperparameters"], dict, "hp") == hp
    assert decode(data.tags["relay.trials"], int, "trials") == 4
    assert decode(data.tags["relay.gpu"], bool, "gpu") is True
    assert decode(data.params["epochs"], float, "epochs") == 3.0


@pytest.mark.parametrize(
    ("text", "kind"),
    [("{'lr': 0.003}", dict), ("True", bool), ("true", int), ("4.5", int), ("x", float)],
)
def test_a_value_that_is_not_its_declared_type_is_refused_naming_where_it_is(text, kind):
    with pytest.raises(RelayError, match=f"tag k of run r is {text!r}, not the {kind.__name__}"):
        decode(text, kind, "tag k of run r")


def test_absent_or_empty_values_are_none_and_text_is_never_parsed():
    assert decode(None, int, "k") is None and decode("", dict, "k") is None
    assert decode("12", str, "k") == "12"  # a text value that looks like a number stays text
