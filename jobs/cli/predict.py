"""`relay predict`: score files in batch on Ray, or send records to a running endpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from cluster.configfile import load_config
from cluster.errors import ConfigError, RelayError, ServingError
from jobs.console import fail
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
        str | None, typer.Option("--json", help="Online mode: one record, or a list, as JSON")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="Online mode: bearer token file (else $RELAY_SERVE_TOKEN)")
    ] = None,
) -> None:
    """Score files in batch on Ray Data, or send records to a running endpoint.

    Examples: relay predict configs/demo.yaml --input new.csv --output scored/
              relay predict --endpoint http://127.0.0.1:8000/credit --json '{"age": 41, ...}'
    """
    try:
        if endpoint:
            result = _predict_online(endpoint, record, token_file)
        elif config and inputs and output:
            from jobs.predict.batch import batch

            result = batch(load_config(config), inputs, output, model, address)
        else:
            raise ConfigError(
                "relay predict needs CONFIG --input ... --output DIR (batch), "
                "or --endpoint URL --json RECORD (online)"
            )
    except RelayError as exc:
        fail(exc)
    print(json.dumps(result))


def _predict_online(endpoint: str, record: str | None, token_file: Path | None) -> Any:
    if not record:
        raise ConfigError("--endpoint needs --json with a record (or a list of records)")
    try:
        body = json.loads(record)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--json is not valid JSON: {exc}") from None
    token = token_file.read_text() if token_file else os.environ.get("RELAY_SERVE_TOKEN")
    client = Client(endpoint, token)
    try:
        return client.predict_batch(body) if isinstance(body, list) else client.predict(body)
    except EndpointError as exc:
        raise ServingError(f"{endpoint} refused the request: {exc}") from None
    except OSError as exc:
        raise ServingError(f"cannot reach {endpoint}: {exc}") from None
