"""Links into the MLflow UI that open the views a model-training user wants.

MLflow 3 opens an experiment in its GenAI view, whose side bar has no model registry; the UI
reads the view from the `workflowType` query of its hash route, so each link names the
machine-learning one. An experiment tagged with `EXPERIMENT_KIND` opens as a model-training
experiment too (relay tags the ones it creates).
"""

from __future__ import annotations

EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
VIEW = "workflowType=machine_learning"


def ui_links(
    base: str,
    experiment_id: str,
    run_id: str | None = None,
    model: str | None = None,
    version: int | str | None = None,
) -> dict[str, str]:
    """The experiment, a run of it and a model version, as UI links under `base`."""
    root = base.rstrip("/") + "/"
    links = {"experiment": f"{root}#/experiments/{experiment_id}?{VIEW}"}
    if run_id:
        links["run"] = root + run_fragment(experiment_id, run_id)
    if model and version is not None:
        links["model_version"] = f"{root}#/models/{model}/versions/{version}?{VIEW}"
    return links


def run_fragment(experiment_id: str, run_id: str) -> str:
    """A run's page as a link relative to the UI (markdown in the UI: a model card)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?{VIEW}"
