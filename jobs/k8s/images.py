"""kustomize's `images:` field: the base names its images (`relay`, `relay-gpu`) and the
kustomization sets each one's registry, tag or digest, in every container of every kind."""

from __future__ import annotations

from typing import Any

CONTAINER_LISTS = ("containers", "initContainers")


def entry(name: str, reference: str) -> dict[str, str]:
    """The `images:` entry that turns the base's `name` into `reference` (a digest pins it)."""
    repo, tag, digest = _parts(reference)
    out = {"name": name, "newName": repo}
    if digest:
        out["digest"] = digest
    elif tag:
        out["newTag"] = tag
    return out


def set_images(objects: list[dict[str, Any]], entries: list[dict[str, str]]) -> None:
    """Apply `images:` entries in place, as kustomize does: found by the image's name."""
    by_name = {e["name"]: e for e in entries}
    for obj in objects:
        for container in _containers(obj):
            found = by_name.get(_name(container.get("image", "")))
            if found:
                container["image"] = _retagged(container["image"], found)


def _containers(node: Any) -> list[dict[str, Any]]:
    """Every container anywhere in `node`: pod templates nest differently per kind."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in CONTAINER_LISTS and isinstance(value, list):
                found += [c for c in value if isinstance(c, dict)]
            else:
                found += _containers(value)
    elif isinstance(node, list):
        for item in node:
            found += _containers(item)
    return found


def _parts(image: str) -> tuple[str, str, str]:
    """An image reference's name, tag and digest ("" where absent)."""
    image, _, digest = image.partition("@")
    name, tag = image, ""
    if ":" in image.rsplit("/", 1)[-1]:  # a registry's port is before the last "/"
        name, tag = image.rsplit(":", 1)
    return name, tag, digest


def _name(image: str) -> str:
    return _parts(image)[0]


def _retagged(image: str, found: dict[str, str]) -> str:
    name = found.get("newName", _name(image))
    if "digest" in found:
        return f"{name}@{found['digest']}"
    if "newTag" in found:
        return f"{name}:{found['newTag']}"
    return name + image[len(_name(image)) :]  # the old tag or digest stays
