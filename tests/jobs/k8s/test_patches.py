"""The strategic merge patches relay's offline builder applies: maps merge, lists refuse."""

from __future__ import annotations

import pytest

from cluster.errors import ConfigError
from jobs.k8s.patches import merge_maps


def test_a_merge_patch_merges_maps_deletes_nulls_and_keeps_the_rest() -> None:
    doc = {"spec": {"a": 1, "b": {"c": 2, "d": 3}, "keep": [1, 2]}}
    merge_maps(doc, {"spec": {"a": 5, "b": {"d": None, "e": 4}}})
    assert doc == {"spec": {"a": 5, "b": {"c": 2, "e": 4}, "keep": [1, 2]}}


def test_a_merge_patch_of_a_list_is_refused_with_the_path_and_the_fix() -> None:
    """kustomize replaces a CRD's list wholesale (no schema): a patched container would lose
    its image, ports and mounts, so relay's builder refuses and names the JSON patch."""
    doc = {"spec": {"headGroupSpec": {"containers": [{"name": "ray-head", "image": "relay"}]}}}
    with pytest.raises(ConfigError, match=r"/spec/headGroupSpec/containers.*JSON patch"):
        merge_maps(doc, {"spec": {"headGroupSpec": {"containers": [{"name": "ray-head"}]}}})
    assert doc["spec"]["headGroupSpec"]["containers"][0]["image"] == "relay"
