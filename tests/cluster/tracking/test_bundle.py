"""The model bundle: verified before anything in it is read, whatever family wrote it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cluster.digests import folder_sha256
from cluster.errors import ServingError
from cluster.tracking.bundle import SPEC, read_bundle, write_bundle
from serving.families.torchnet import MLP, weights_bytes
from serving.model import Predictor

FEATURES = {
    "numeric": [{"name": "x", "mean": 0.0, "std": 1.0}],
    "categorical": [],
    "label": {"name": "y", "classes": ["no", "yes"]},
}
ARCHITECTURE = {"type": "mlp", "n_inputs": 1, "n_outputs": 2, "hidden_size": 4, "depth": 1}


def spec() -> dict:
    return {"task": "classification", "architecture": ARCHITECTURE, "features": FEATURES}


def test_the_spec_names_its_files_and_a_changed_byte_in_any_is_refused(tmp_path):
    torch.manual_seed(0)
    files = weights_bytes(MLP(1, 2, 4, 1).state_dict())
    sha = write_bundle(tmp_path, files, {**spec(), "family": "mlp"})
    loaded, read = read_bundle(tmp_path, sha)
    assert loaded["files"] == ["model.safetensors"] and read == files
    assert Predictor(loaded, read).predict_records([{"x": 0.5}])[0]["prediction"] in ("no", "yes")

    (tmp_path / SPEC).write_text((tmp_path / SPEC).read_text().replace('"no"', '"No"'))
    with pytest.raises(ServingError, match="fails its integrity check"):
        read_bundle(tmp_path, sha)


def test_a_bundle_from_before_families_still_verifies_and_serves_as_an_mlp(tmp_path):
    """Written as relay wrote MLP bundles before: spec.json without family or files."""
    torch.manual_seed(1)
    model = MLP(1, 2, 4, 1)
    (tmp_path / "model.safetensors").write_bytes(*weights_bytes(model.state_dict()).values())
    (tmp_path / SPEC).write_text(json.dumps(spec(), indent=2, sort_keys=True))
    sha = folder_sha256(tmp_path, ["model.safetensors", SPEC])  # the old digest: both files
    loaded, files = read_bundle(tmp_path, sha)
    with torch.no_grad():
        expected = torch.softmax(model(torch.tensor([[0.5]])), dim=1).numpy()[0]
    answer = Predictor(loaded, files).predict_records([{"x": 0.5}])[0]["probabilities"]
    assert np.allclose([answer["no"], answer["yes"]], expected, atol=1e-6)


def test_a_family_this_relay_does_not_know_is_refused_by_name(tmp_path):
    sha = write_bundle(tmp_path, {"model.bin": b"\x00"}, {**spec(), "family": "forest"})
    loaded, files = read_bundle(tmp_path, sha)
    with pytest.raises(ServingError, match="family 'forest' is not one this relay serves"):
        Predictor(loaded, files)
