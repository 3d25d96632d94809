"""`relay init`: a commented first config from a data file, so a user sees relay work first.

The proposal is checked by the same schema `relay validate` uses before it is written: a file
this command writes always parses.
"""

from __future__ import annotations

import os
import re
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from cluster.errors import ConfigError, RelayError
from jobs.cli.options import JsonOption
from jobs.cli.output import emit
from jobs.console import err, fail, out


class Task(StrEnum):
    classification = "classification"
    regression = "regression"


def init(
    data: Annotated[
        str, typer.Argument(help="A data file, folder, glob or URI (CSV, Parquet, JSON)")
    ],
    label: Annotated[str, typer.Option("--label", help="The column the model predicts")],
    task: Annotated[
        Task | None, typer.Option("--task", help="Default: from the label's values")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Default: <name>.yaml here")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file")] = False,
    as_json: JsonOption = False,
) -> None:
    """Propose a config for your data: types, roles and a search space, each column explained.

    Example: relay init data/houses.csv --label price
    """
    from cluster.configfile import parse_config
    from jobs.etl import infer

    try:
        sample = infer.read_sample(data)
        proposals, chosen = infer.propose(sample, label, task.value if task else None)
        name = pipeline_name(Path(sample.files[0].uri).stem)
        target = output or Path(f"{name}.yaml")
        text = render(name, data, chosen, proposals, sample.table.num_rows, target)
        parse_config(yaml.safe_load(text), source="the proposed config")
        if target.exists() and not force:
            raise ConfigError(f"--output: {target} exists; pass --force or another --output")
    except RelayError as exc:
        fail(exc)
    target.write_text(text)

    def human() -> None:
        for proposal in proposals:
            spec = proposal.spec
            role = spec.get("role", "feature")
            out.print(
                f"  {spec['name']:<24} {spec['type']:<9} {role:<9} {proposal.reason}",
                highlight=False,
            )

    columns = [{**p.spec, "reason": p.reason} for p in proposals]
    emit({"output": str(target), "task": chosen, "columns": columns}, as_json, human)
    err.print(f"wrote {target} ({chosen}); check it with: relay validate {target}")
    err.print(f"then run it with: relay run {target}")


def pipeline_name(stem: str) -> str:
    """A valid pipeline (and model) name from a file name."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_")[:63]
    return cleaned or "dataset"


def render(name: str, data: str, task: str, proposals: list[Any], rows: int, target: Path) -> str:
    """The YAML, a reason beside each column (PyYAML cannot write comments, so lines are built)."""

    def flow(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()

    columns = []
    for p in proposals:
        columns.append(f"    - {flow(p.spec)}  # {p.reason}")
        if p.comment:
            columns.append(f"      # {p.comment}")
    return "\n".join(
        [
            f"# Proposed by `relay init` on {date.today()} from {rows} sampled rows of {data}.",
            "# Review each column (the comment says why it was classified so), then:",
            f"#   relay validate {target} && relay run {target}",
            f"name: {name}",
            "seed: 0",
            "",
            "data:",
            f"  source: {flow({'kind': 'files', 'path': data})}"
            "  # a relative path is read from the folder relay runs in",
            "  columns:",
            *columns,
            "",
            "etl:",
            "  split: {train: 0.7, val: 0.15, test: 0.15}",
            "",
            "model:",
            f"  name: {name}",
            f"  task: {task}",
            "  family: mlp  # or linear (the baseline), gbdt (XGBoost trees): see relay's README",
            "",
            "tune:  # a small search to start with; widen it once the pipeline runs",
            "  num_samples: 4",
            "  max_concurrent_trials: 2",
            "  metric: val_loss",
            "  mode: min",
            "  search_space:",
            "    lr: {type: loguniform, low: 0.0003, high: 0.03}",
            "    hidden_size: {type: choice, values: [32, 64, 128]}",
            "    depth: {type: choice, values: [1, 2]}",
            "",
            "train:",
            "  epochs: 10",
            "",
            "runtime:",
            f"  num_cpus: {os.cpu_count() or 2}  # this machine's CPUs for the embedded Ray",
            "",
        ]
    )
