"""The model endpoint: a Ray Serve app that serves a registry version with batching.

Import path for `serve run`, `serve deploy` and KubeRay: ``serving.app:build``, with args
``tracking_uri``, ``model_name`` and optionally ``alias`` (or a version number) and the
batching and replica settings of `AppArgs`.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Literal

from fastapi import Body, FastAPI, HTTPException
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve

log = logging.getLogger("ray.serve")

api = FastAPI(
    title="relay model endpoint",
    description="Predictions from a model version in the MLflow registry.",
)


class AppArgs(BaseModel):
    """Arguments of `build`; the same keys go in a Serve config file's `args`."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = Field(description="MLflow tracking/registry URI to load the model from.")
    model_name: str = Field(description="Registered model name.")
    alias: str = Field("champion", description="Alias, or a version number, to serve.")
    num_replicas: int = Field(1, ge=1)
    max_ongoing_requests: int = Field(32, ge=1)
    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.005, ge=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Replica log level (INFO includes one access line per request)."
    )


@serve.deployment
@serve.ingress(api)
class ModelServer:
    def __init__(self, args: AppArgs):
        from mlflow.tracking import MlflowClient

        from cluster.registry import load_verified, resolve
        from serving.model import Predictor
        from serving.schema import request_model

        client = MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)
        self.ref = resolve(client, args.model_name, args.alias)
        spec, tensors = load_verified(client, self.ref)
        self.predictor = Predictor(spec, tensors)
        self.request_model = request_model(spec["input_schema"])
        self.spec = spec
        self._batched.set_max_batch_size(args.max_batch_size)
        self._batched.set_batch_wait_timeout_s(args.batch_wait_timeout_s)
        log.info(
            "serving %s version %s (sha256 %s)", self.ref.name, self.ref.version, self.ref.sha256
        )

    @api.get("/schema")
    def schema(self) -> dict[str, Any]:
        """The fields a prediction request takes, and the model behind the endpoint."""
        return {
            "model": self._model_info(),
            "input_schema": self.spec["input_schema"],
            "task": self.spec["task"],
        }

    @api.post("/predict")
    async def predict(self, record: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """One record in; its prediction, the model version and a request id out."""
        try:
            row = self.request_model.model_validate(record)
        except ValidationError as exc:
            detail = exc.errors(include_url=False, include_context=False)
            raise HTTPException(status_code=422, detail=jsonable_encoder(detail)) from None
        result = await self._batched(row.model_dump())
        return {**result, **self._model_info(), "request_id": uuid.uuid4().hex}

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _batched(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.predictor.predict_records(records)

    def _model_info(self) -> dict[str, Any]:
        return {
            "model_name": self.ref.name,
            "model_version": self.ref.version,
            "run_id": self.ref.run_id,
            "model_sha256": self.ref.sha256,
        }


def build(args: dict[str, Any]) -> serve.Application:
    """Application builder for `serve run serving.app:build key=value ...`."""
    parsed = AppArgs.model_validate(args)
    return ModelServer.options(
        num_replicas=parsed.num_replicas,
        max_ongoing_requests=parsed.max_ongoing_requests,
        logging_config={"log_level": parsed.log_level},
    ).bind(parsed)
