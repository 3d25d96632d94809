"""The baseline for benchmarks/serve.py: the same model and transform on bare FastAPI + uvicorn.

Same validation (the generated request model), same Predictor, same bearer-token check;
no Ray, no batching, WORKERS uvicorn worker processes (default 1).
Usage: python benchmarks/bare_serve.py TRACKING_URI MODEL_NAME PORT TOKEN_FILE [WORKERS]
"""

# No `from __future__ import annotations`: FastAPI resolves the route annotations, which
# are imported inside make_app.
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_app(tracking_uri: str, model_name: str, token_file: str) -> Any:
    from fastapi import Depends, FastAPI
    from fastapi.security import HTTPAuthorizationCredentials
    from mlflow.tracking import MlflowClient
    from pydantic import BaseModel

    from cluster.tracking.registry import load_verified, resolve
    from serving.app import bearer
    from serving.auth import TokenCheck
    from serving.model import Predictor
    from serving.schema import request_model

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    ref = resolve(client, model_name, "champion")
    spec, files = load_verified(client, ref)
    predictor, request = (
        Predictor(spec, files),
        request_model(spec["input_schema"], spec["features"]),
    )
    info = {"model_name": ref.name, "model_version": ref.version, "run_id": ref.run_id}
    auth = TokenCheck.load("token", "RELAY_SERVE_TOKEN", token_file)
    app = FastAPI()

    class BatchRequest(BaseModel):
        records: list[request]  # type: ignore[valid-type]

    @app.post("/predict")
    def predict(
        record: request,  # type: ignore[valid-type]
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> dict[str, Any]:
        auth.check(credentials)
        return {**predictor.predict_records([record.model_dump()])[0], **info}

    @app.post("/predict/batch")
    def predict_batch(
        body: BatchRequest, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> dict[str, Any]:
        auth.check(credentials)
        rows = [r.model_dump() for r in body.records]
        return {"predictions": predictor.predict_records(rows), **info}

    return app


def from_env() -> Any:
    """The app factory each of several uvicorn workers calls (they import it by name)."""
    import torch

    torch.set_num_threads(1)  # as in a Ray replica (OMP_NUM_THREADS=1)
    return make_app(*json.loads(os.environ["RELAY_BARE_ARGS"]))


if __name__ == "__main__":
    import uvicorn

    uri, name, port, token_file = sys.argv[1:5]
    workers = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    os.environ["RELAY_BARE_ARGS"] = json.dumps([uri, name, token_file])
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))
    )
    uvicorn.run(
        "benchmarks.bare_serve:from_env",
        factory=True,
        workers=workers,
        host="127.0.0.1",
        port=int(port),
        log_level="warning",
    )
