"""The two patch forms relay's kustomize builder applies, as `kubectl kustomize` does.

RFC 6902 JSON patches reach into lists by index (a container's env, a worker group's
replicas). Strategic merge patches are the readable form, but kustomize has no schema for
KubeRay's CRDs, so it replaces their lists wholesale (a patched container loses its image,
ports and mounts, measured with kustomize v5.5): relay merges maps with them and refuses
lists, which need a JSON patch.
"""

from __future__ import annotations

from typing import Any

from cluster.errors import ConfigError


def apply_op(doc: Any, op: dict[str, Any]) -> None:
    """One RFC 6902 operation (add, replace, remove), in place."""
    *parents, leaf = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
    node = doc
    for token in parents:
        node = node[int(token)] if isinstance(node, list) else node[token]
    kind = op["op"]
    if isinstance(node, list):
        index = len(node) if leaf == "-" else int(leaf)
        if kind == "add":
            node.insert(index, op["value"])
        elif kind == "replace":
            node[index] = op["value"]
        elif kind == "remove":
            del node[index]
        else:
            raise ConfigError(f"unsupported JSON patch op {kind!r} at {op['path']}")
        return
    if kind in ("replace", "remove") and leaf not in node:
        raise ConfigError(f"JSON patch {kind} of a missing path {op['path']}")
    if kind in ("add", "replace"):
        node[leaf] = op["value"]
    elif kind == "remove":
        del node[leaf]
    else:
        raise ConfigError(f"unsupported JSON patch op {kind!r} at {op['path']}")


def merge_maps(doc: dict[str, Any], patch: dict[str, Any], at: str = "") -> None:
    """A strategic merge patch of maps and scalars, in place: null deletes a key."""
    for key, value in patch.items():
        where = f"{at}/{key}"
        if value is None:
            doc.pop(key, None)
        elif isinstance(value, list):
            raise ConfigError(
                f"strategic merge patch sets the list {where}: kustomize would replace it "
                "wholesale on a CRD; use a JSON patch (op/path/value) for lists"
            )
        elif isinstance(value, dict) and isinstance(doc.get(key), dict):
            merge_maps(doc[key], value, where)
        else:
            doc[key] = value
