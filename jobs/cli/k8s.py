"""`relay k8s render|validate`: KubeRay manifests from a config, checked offline."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cluster.configfile import load_config
from cluster.errors import ConfigError, RelayError
from jobs.cli.options import ConfigArg, JsonOption
from jobs.cli.output import emit
from jobs.console import err, fail, out
from jobs.k8s.render import OVERLAYS

Overlay = StrEnum("Overlay", {name: name for name in OVERLAYS})  # choices in help, refused early
k8s_app = typer.Typer(
    help="KubeRay manifests from a pipeline config, validated offline.", no_args_is_help=True
)


@k8s_app.command("render")
def k8s_render(
    config: ConfigArg,
    overlay: Annotated[
        Overlay, typer.Option(help="gpu adds the GPU worker group", case_sensitive=False)
    ] = Overlay.cpu,
    output: Annotated[Path, typer.Option(help="Folder for the kustomization")] = Path("k8s-out"),
    as_json: JsonOption = False,
) -> None:
    """Write a kustomization (base + overlay + this config) for `kubectl apply -k`.

    Example: relay k8s render configs/demo.yaml --overlay gpu --output k8s-out
    """
    from jobs.k8s.render import render

    try:
        objects = render(load_config(config), config.read_text(), overlay.value, output)
    except RelayError as exc:
        fail(exc)
    kinds = sorted({o["kind"] for o in objects})
    built = f"{output}/manifests.yaml"

    def human() -> None:
        out.print(f"{output}: {len(objects)} objects ({', '.join(kinds)}); also built in {built}")
        out.print(f"next: relay k8s validate {output} && kubectl apply -k {output} -n <namespace>")

    rendered = {"output": str(output), "objects": len(objects), "kinds": kinds, "built": built}
    emit(rendered, as_json, human)


@k8s_app.command("validate")
def k8s_validate(
    path: Annotated[Path, typer.Argument(help="Kustomization folder, folder of YAML, or a file")],
    as_json: JsonOption = False,
) -> None:
    """Check manifests as an API server with the KubeRay v1.7.0 CRDs would, plus relay's policy.

    Example: RELAY_KUBERAY_CRDS=path/to/crds relay k8s validate k8s-out
    """
    from jobs.k8s.validate import K8S_VERSION, check_manifests, load_manifests

    try:
        objects = load_manifests(path)
        problems = check_manifests(objects)
    except RelayError as exc:
        fail(exc)
    for problem in problems:
        err.print(f"  - {problem}", highlight=False)
    if problems:
        fail(ConfigError(f"{path}: {len(problems)} problem(s) in {len(objects)} objects"))
    text = (
        f"{path}: {len(objects)} objects valid (Kubernetes {K8S_VERSION} strict, KubeRay "
        "v1.7.0 CRDs with CEL rules, KubeRay runtime rules, relay policy)"
    )
    checked = {"path": str(path), "objects": len(objects), "valid": True}
    emit(checked | {"kubernetes": K8S_VERSION}, as_json, lambda: out.print(text))


@k8s_app.command("build-args")
def k8s_build_args(
    project: Annotated[Path, typer.Option(help="The checkout the image is built from")] = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Print `docker build` flags that bake this checkout's git commit, dirty flag and diff hash
    into the image, which has no .git: runs in its pods record them.

    Example: docker build $(relay k8s build-args) -t ghcr.io/relay/relay:0.1.0 .
    """
    from cluster.tracking.tracker import code_env

    env = code_env(project.resolve())
    if not env:
        fail(ConfigError(f"{project} is not a git checkout with a commit: build from one"))
    flags = " ".join(f"--build-arg {name}={value}" for name, value in env.items())
    baked = {
        "git_commit": env["RELAY_GIT_COMMIT"],
        "git_dirty": env.get("RELAY_GIT_DIRTY") == "true",
        "git_diff_sha256": env.get("RELAY_GIT_DIFF_SHA256"),
        "build_args": flags,
    }
    emit(baked, as_json, lambda: print(flags))
