"""`relay predict`: score files in batch on Ray, or send records to a running endpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from cluster.configfile import load_config
from cluster.errors import ConfigError, RelayError, ServingError
from jobs.cli.options import JsonOption
from jobs.cli.output import emit
from jobs.console import fail, out
from serving.client import Client, EndpointError


def predict(
    config: Annotated[
        Path | None, typer.Argument(help="Pipeline config (batch mode): its model and MLflow")
    ] = None,
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", help="Files, folders, globs or URIs to score (repeatable)"),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Empty folder for the predictions")] = None,
    model: Annotated[
        str | None, typer.Option(help="Alias or version to use; default the config's serve.alias")
    ] = None,
    address: Annotated[str | None, typer.Option(help="Ray address (batch mode)")] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Endpoint URL (online mode), e.g. http://host:8000/credit")
    ] = None,
    record: Annotated[
        str | None, typer.Option("--record", help="Online mode: one record, or a list, as JSON")
    ] = None,
    as_json: JsonOption = False,
    token_file: Annotated[
        Path | None, typer.Option(help="Online mode: bearer token file (else $RELAY_SERVE_TOKEN)")
    ] = None,
) -> None:
    """Score files in batch on Ray Data, or send records to a running endpoint.

    Examples: relay predict configs/demo.yaml --input new.csv --output scored/
              relay predict --endpoint http://127.0.0.1:8000/credit --record '{"age": 41, ...}'
    """
    try:
        if endpoint:
            result = _predict_online(endpoint, record, token_file)
        elif config and inputs and output:
            from jobs import bars
            from jobs.predict.batch import batch

            with bars.drawing(bars.live(as_json)):
                result = batch(load_config(config), inputs, output, model, address)
        else:
            raise ConfigError(
                "relay predict needs CONFIG --input ... --output DIR (batch), "
                "or --endpoint URL --record RECORD (online)"
            )
    except RelayError as exc:
        fail(exc)
    emit(result, as_json, lambda: _print_result(result, online=bool(endpoint), output=output))


def _print_result(result: dict[str, Any], online: bool, output: Path | None) -> None:
    if online:
        for answer in result.get("predictions", [result]):
            out.print(_answer_line(answer, result))
        return
    out.print(
        f"scored {result['rows_scored']} rows, rejected {result['rows_rejected']} "
        f"(kept with their reasons) -> {result['output']}"
    )
    out.print(f"MLflow run {result['predict_run_id']}; manifest in {output}")


def _answer_line(answer: dict[str, Any], reply: dict[str, Any]) -> str:
    """One prediction for a person: the answer, its probabilities, the version, the lineage id."""
    shares = answer.get("probabilities")
    chances = f"  ({', '.join(f'{c}: {p:.3f}' for c, p in shares.items())})" if shares else ""
    return (
        f"{answer['prediction']}{chances}  version {reply['model_version']}  "
        f"lineage {reply['lineage_id']}"
    )


def _predict_online(endpoint: str, record: str | None, token_file: Path | None) -> Any:
    if not record:
        raise ConfigError("--endpoint needs --record with a record (or a list of records)")
    try:
        body = json.loads(record)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--record is not valid JSON: {exc}") from None
    token = token_file.read_text() if token_file else os.environ.get("RELAY_SERVE_TOKEN")
    client = Client(endpoint, token)
    try:
        return client.predict_batch(body) if isinstance(body, list) else client.predict(body)
    except EndpointError as exc:
        raise ServingError(f"{endpoint} refused the request: {exc}") from None
    except OSError as exc:
        raise ServingError(f"cannot reach {endpoint}: {exc}") from None
