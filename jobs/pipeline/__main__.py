"""`python -m jobs.pipeline --config C [--until STAGE]`: the one entry point of submitted work.

`relay submit`, `ray job submit` and the RayJob manifest run this; `relay run` shares its
command (`jobs.pipeline.command`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.pipeline.command import run_command
from jobs.pipeline.runner import STAGES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.pipeline", description="Run the relay pipeline up to a stage."
    )
    parser.add_argument("--config", required=True, type=Path, help="pipeline YAML config")
    parser.add_argument(
        "--until", default="deploy", choices=STAGES, help="last stage to run (default: deploy)"
    )
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set runtime.state_dir=/shared/relay (repeatable)",
    )
    args = parser.parse_args(argv)
    return run_command(
        args.config,
        address=args.address,
        until=args.until,
        as_json=args.json,
        debug=args.debug,
        resume=args.resume,
        overrides=args.set,
    )


if __name__ == "__main__":
    raise SystemExit(main())
