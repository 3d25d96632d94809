"""Running the pipeline from a command line: the exit code, the summary, the resume hint.

Shared by `relay run` and `python -m jobs.pipeline` (the entry point of submitted jobs).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from cluster.configfile import load_config, parse_overrides
from cluster.errors import ConfigError, GateFailedError, RelayError, TrackingSpooledError
from cluster.tracking.links import ui_links
from jobs import bars
from jobs.console import err, labelled, out
from jobs.gates import report
from jobs.pipeline import runner
from jobs.tune import progress


def run_command(
    config: Path,
    *,
    address: str | None = None,
    until: str = "deploy",
    as_json: bool = False,
    debug: bool = False,
    keep_serving: bool = False,
    resume: bool = False,
    overrides: list[str] | None = None,
    ci: bool = False,
) -> int:
    """The exit code of one pipeline run, with its summary printed as asked."""

    def show(summary: dict[str, Any]) -> None:
        if ci and "gates" in summary:
            print(report.markdown(summary["gates"]), flush=True)
        if as_json:
            print(json.dumps(summary, default=str), flush=True)
        elif not ci:
            print_summary(summary, keep_serving, config)

    try:
        if until not in runner.STAGES:
            raise ConfigError(f"--until: expected one of {', '.join(runner.STAGES)}, got {until!r}")
        cfg = load_config(config, parse_overrides(overrides or []))
        # Printed after teardown (Ray's forwarded logs must not follow the JSON line),
        # or before blocking when the endpoint stays up.
        live = bars.live(as_json) and not (ci or keep_serving)
        with stage_lines(live) as on_stage:
            summary = runner.run(
                cfg,
                address=address,
                until=until,
                keep_serving=keep_serving,
                on_stage=on_stage,
                on_summary=show if keep_serving else None,
                resume=resume,
            )
        if not keep_serving:
            show(summary)
    except GateFailedError as exc:  # recorded and finished: the report says which and by how much
        if not keep_serving:
            show(exc.summary)
        err.print(labelled("not promoted:", "red", exc), highlight=False)
        return exc.exit_code
    except RelayError as exc:
        if debug:
            traceback.print_exc()
        err.print(labelled("error:", "red", exc), highlight=False)
        if isinstance(exc, TrackingSpooledError):
            err.print(f"then continue the run with: relay run {config} --resume", highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print(f"interrupted: continue with  relay run {config} --resume")
        return 130
    except Exception as exc:
        if debug:
            raise
        err.print(
            labelled("unexpected error:", "red", f"{type(exc).__name__}: {exc}"), highlight=False
        )
        err.print("Rerun with --debug for the traceback.")
        return 1
    return 0


@contextmanager
def stage_lines(live: bool) -> Iterator[Callable[[str], None]]:
    """Each stage as it starts, on stderr; at a terminal (and without --json) also a live line
    under them: the stage, during the search its trials, best metric and time left, and the
    bars the stages count their work on (ETL's files) beneath it."""

    def printed(stage: str) -> None:
        err.print(Text(f"relay ▸ {stage}", style="dim"))

    with bars.drawing(live) as board:
        if board is None:
            yield printed
            return
        line = bars.status(board, "relay ▸ starting")

        def shown(text: str) -> None:
            line(f"relay ▸ {text}")

        def both(stage: str) -> None:
            printed(stage)
            shown(stage)

        with progress.showing(shown):
            yield both


def print_summary(s: dict[str, Any], keep_serving: bool, config: Path) -> None:
    rows = s.get("rows", {})
    out.print()
    out.print(
        Text.assemble(
            (f"relay pipeline '{s['pipeline']}'", "bold"),
            f" finished in {s['total_seconds']:.1f} s",
        )
    )
    out.print(
        f"  dataset    {s['dataset_digest'][:16]}…  {rows.get('rows_out', 0):,} rows, "
        f"{rows.get('rows_rejected', 0):,} quarantined  ({s['dataset_path']})"
    )
    if s.get("dataset_reused"):
        out.print("             ETL skipped: raw files, declared schema and ETL settings unchanged")
    if "best_hyperparameters" in s:
        hp = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in s["best_hyperparameters"].items()
        )
        out.print(f"  best trial {s.get('model_family', 'mlp')}: {hp}  ({s['trials']} trials)")
    if "test_metrics" in s:
        metrics = "  ".join(
            f"{k.removeprefix('test_')} {v:.4f}"
            for k, v in s["test_metrics"].items()
            if k != "test_rows"
        )
        out.print(f"  test       {metrics}")
    if "model_version" in s:
        out.print(
            f"  model      {s['model_name']} version {s['model_version']} "
            f"(@{s['model_alias']}, sha256 {s['model_sha256'][:16]}…)"
        )
    if "gates" in s:
        out.print(report.text(s["gates"]), highlight=False)
    if "endpoint" in s:
        p = s["prediction"]
        out.print(f"  endpoint   POST {s['endpoint']}")
        if s.get("token_file"):
            out.print(f'  auth       -H "Authorization: Bearer $(cat {s["token_file"]})"')
        out.print(f"  prediction {json.dumps(p['response'])}")
        out.print(f"             for {json.dumps(p['request'])}")
        out.print(f"             matches the offline model: {p['matches_offline']}")
    table = Table(title="stage timings (s)", show_header=True)
    for name in s["stage_seconds"]:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    table.add_row(*(f"{v:.2f}" for v in s["stage_seconds"].values()), f"{s['total_seconds']:.2f}")
    out.print(table)
    uri = s["tracking_uri"]
    if uri.startswith(("http://", "https://")):  # a server: its UI is there now
        links = ui_links(uri, s["experiment_id"], s["pipeline_run_id"], s.get("model_name"),
                         s.get("model_version"))  # fmt: skip
        for name, link in links.items():
            out.print(f"  MLflow     {name.replace('_', ' ')}: {link}")
    else:
        out.print(
            f"  MLflow     relay ui {config}  → experiment {s['experiment_id']}, "
            f"run {s['pipeline_run_id']}"
        )
    if "endpoint" in s:
        out.print(
            "  serving until Ctrl-C"
            if keep_serving
            else "  endpoint shut down (pass --serve to keep it running)"
        )
