"""The model endpoint: a Ray Serve app that serves a registry version with batching.

Import path for `serve run`, `serve deploy` and KubeRay: ``serving.app:build``, with args
``tracking_uri``, ``model_name`` and optionally ``alias`` (or a version number) and the
settings of `AppArgs`. `build` resolves the alias to a version and hands it to the replicas
as `user_config`: deploying again after the alias moved swaps the model in place
(`reconfigure`), without restarting replicas or dropping requests. The routes are typed with
the request model generated from that version's input schema, so OpenAPI documents every
field; a version with another schema changes the class and Serve replaces the replicas.
"""

# No `from __future__ import annotations`: Serve ships the ingress class by value, and FastAPI
# must resolve route annotations (the request models) without this module's globals.
import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic_core import from_json, to_json
from ray import serve

from serving import protocols
from serving.auth import TokenCheck
from serving.protocols import ProtocolError
from serving.schema import validation_error

log = logging.getLogger("ray.serve")

DESCRIPTION = (
    "Predictions from a model version in the MLflow registry: relay's own routes, MLflow's "
    "scoring protocol (/invocations) and the Open Inference Protocol v2 (/v2). Prediction "
    "routes need 'Authorization: Bearer <token>' unless the deployment disabled auth."
)
PREDICTING = ("/predict", "/predict/batch", "/invocations", "/infer")  # refusals counted
bearer = HTTPBearer(auto_error=False)
RECORD_BYTES = 64 * 1024  # request body allowance per record: far above any real record
VERSION = metadata.version("relay")
PENDING_POLL_SECONDS = 5.0  # an app built before its champion existed looks this often


class ErrorBody(BaseModel):
    """The body of a 400, 401 or 403 (a 422's detail lists the fields at fault instead)."""

    detail: str = Field(description="What was wrong with the request.")


class MlflowErrorBody(BaseModel):
    """A 400 on /invocations, as MLflow's scoring server words it."""

    error_code: str = Field(description="BAD_REQUEST.")
    message: str = Field(description="What was wrong: the record and field at fault.")


class OipErrorBody(BaseModel):
    """A 4xx on an Open Inference Protocol route."""

    error: str = Field(description="What was wrong: the tensor, record or field at fault.")


def error_responses(
    auth: bool, max_bytes: int, bad: type[BaseModel] = ErrorBody
) -> dict[int | str, dict[str, Any]]:
    """The 4xx a prediction route answers besides 422, for OpenAPI (contract tests, clients);
    `bad`: the body of its 400 (a protocol route's own shape)."""
    errors: dict[int | str, dict[str, Any]] = {
        400: {
            "model": bad,
            "description": "The body cannot be parsed (e.g. JSON that is not UTF-8)"
            + ("." if bad is ErrorBody else ", or its records do not fit the schema."),
        }
    }
    if auth:
        errors[401] = {
            "model": ErrorBody,
            "description": "No bearer token: send 'Authorization: Bearer <token>'.",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        }
        errors[403] = {
            "model": ErrorBody,
            "description": "A bearer token, but not this endpoint's.",
        }
    errors[413] = {  # answered by Starlette's body limit, before any route code runs
        "description": f"The body is over {max_bytes} bytes.",
        "content": {"text/plain": {"schema": {"type": "string", "example": "Content Too Large"}}},
    }
    return errors


def no_credentials() -> None:
    """The credentials dependency of an endpoint without auth: no security scheme to document."""


class Autoscaling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, ge=1)
    target_ongoing_requests: float = Field(16, gt=0)


class AppArgs(BaseModel):
    """Arguments of `build`; the same keys go in a Serve config file's `args`."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = Field(description="MLflow tracking/registry URI to load the model from.")
    model_name: str = Field(description="Registered model name.")
    alias: str = Field("champion", description="Alias, or a version number, to serve.")
    challenger_alias: str | None = Field(
        "challenger", description="Alias of a version answering `challenger_share` of requests."
    )
    challenger_share: float = Field(0.1, ge=0, le=1)
    challenger_mode: Literal["split", "shadow"] = Field(
        "split", description="split: the challenger answers its share; shadow: it scores a copy."
    )
    num_replicas: int = Field(1, ge=1)
    replica_cpus: float = Field(1.0, gt=0)
    autoscaling: Autoscaling | None = None
    max_ongoing_requests: int = Field(32, ge=1)
    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.0, ge=0)
    max_request_records: int = Field(1024, ge=1)
    auth: Literal["token", "none"] = "token"
    token_env: str = Field("RELAY_SERVE_TOKEN", description="Env var with the bearer token.")
    token_file: str | None = Field(None, description="File with the token (if the env is unset).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Replica log level (INFO includes one access line per request)."
    )
    poll_alias_seconds: float | None = Field(
        None,
        gt=0,
        description="Every so many seconds each replica looks the aliases up and swaps in "
        "the versions they moved to (same input schema only); None: only a redeploy swaps.",
    )
    log_path: str | None = Field(
        None, description="Inference log folder or URI (files under <path>/<model>); None: off."
    )
    log_sample: float = Field(1.0, ge=0, le=1, description="Share of requests logged.")
    log_flush_seconds: float = Field(5.0, gt=0, description="Each replica writes this often.")
    log_queue_rows: int = Field(100_000, ge=1, description="Rows queued at most, then dropped.")
    drift_method: Literal["psi", "ks"] = Field("psi", description="Live drift gauges' score.")
    drift_rows: int = Field(
        1000, ge=0, description="Latest logged records per version the gauges score (0: off)."
    )
    drift_min_rows: int = Field(100, ge=1, description="Fewer records: no gauge yet.")

    @model_validator(mode="after")
    def _shadow_is_logged(self) -> "AppArgs":
        if self.challenger_mode == "shadow" and not self.log_path:
            raise ValueError(
                "challenger_mode shadow keeps the challenger's answers in the inference log "
                "only: set log_path"
            )
        return self


@dataclass(frozen=True)
class Served:
    """One loaded version; swapped as a whole so a request never mixes two versions."""

    ref: Any  # cluster.tracking.registry.ModelRef
    predictor: Any  # serving.model.Predictor
    spec: dict[str, Any]
    log_schema: Any  # pyarrow.Schema of this version's inference log rows
    records: TypeAdapter  # list[this version's request model]: what protocol routes check

    def info(self) -> dict[str, Any]:
        return {
            "model_name": self.ref.name,
            "model_version": self.ref.version,
            "run_id": self.ref.run_id,
            "model_sha256": self.ref.sha256,
        }


def model_server(request: type[BaseModel] | None, max_records: int, *, auth: bool) -> type:
    """The ingress class with routes typed by `request` (a model's generated input schema).

    `request` None (no champion yet when the app was built): the routes take any JSON
    object and check it against the version the replica loads, with the same 422s.
    Bodies are capped at RECORD_BYTES per record allowed (413): without a cap, a replica was
    still parsing a 36 MB body a minute later. `auth`: the prediction routes need the token.
    """
    typed = request is not None
    record_type: Any = request if typed else dict[str, Any]
    from fastapi.exception_handlers import http_exception_handler
    from starlette.exceptions import HTTPException as StarletteHTTPException

    api = FastAPI(title="relay model endpoint", description=DESCRIPTION)
    credentials_of = bearer if auth else no_credentials
    batch_bytes = RECORD_BYTES * max_records
    refusals: list[Callable[[int], None]] = []  # the replica's counter, once it is built

    def refused(request: Any, status: int) -> None:
        """A prediction request answered with an error: counted for `relay monitor`."""
        if refusals and request.url.path.endswith(PREDICTING):
            refusals[0](status)

    async def refused_input(request: Any, exc: Any) -> Any:
        refused(request, 422)
        return await validation_error(request, exc)

    async def refused_http(request: Any, exc: Any) -> Any:  # auth, 413, 503 before a model
        refused(request, exc.status_code)
        return await http_exception_handler(request, exc)

    async def refused_protocol(request: Any, exc: ProtocolError) -> Any:  # in its own shape
        refused(request, exc.status)
        return JSONResponse(exc.body, status_code=exc.status)

    api.add_exception_handler(RequestValidationError, refused_input)
    api.add_exception_handler(StarletteHTTPException, refused_http)
    api.add_exception_handler(ProtocolError, refused_protocol)
    oip_route: dict[str, Any] = {
        "response_model": dict[str, Any],
        "responses": error_responses(auth, batch_bytes, OipErrorBody)
        | {404: {"model": OipErrorBody, "description": "No such model or version served here."}},
        "max_body_size": batch_bytes,
    }

    class BatchRequest(BaseModel):
        records: list[record_type] = Field(  # type: ignore[valid-type]
            max_length=max_records, description="Records, each shaped like /predict's body."
        )

    class ModelServer:
        def __init__(self, args: AppArgs):
            from mlflow.tracking import MlflowClient
            from ray.serve import metrics

            from cluster.tracking.tracker import use_credentials_file

            use_credentials_file()  # a replica on a cluster node: the job passed a file path
            self.args = args
            self.client = MlflowClient(
                tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri
            )
            self.auth = TokenCheck.load(args.auth, args.token_env, args.token_file)
            if args.auth == "none":
                log.warning("auth is DISABLED for this endpoint (loopback-only development)")
            self.served: Served | None = None
            self.challenger: Served | None = None
            self.share = 0.0
            self.poller: asyncio.Task | None = None
            self.refused: set[int] = set()  # versions the poller may not swap in
            self.predicting = 0  # single-record requests at the model now (batched or not)
            self._batched.set_max_batch_size(args.max_batch_size)
            self._batched.set_batch_wait_timeout_s(args.batch_wait_timeout_s)
            self.predictions = metrics.Counter(
                "relay_predictions",
                description="Records predicted, per model version.",
                tag_keys=("model_version",),
            )
            self.latency = metrics.Histogram(
                "relay_predict_latency_ms",
                description="Prediction request latency in the replica, per model version.",
                boundaries=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
                tag_keys=("model_version",),
            )
            self.inference = None
            self.live_drift = None
            if args.log_path and args.drift_rows:
                from serving.live_drift import GAUGE, TAGS, LiveDrift

                gauge = metrics.Gauge(
                    GAUGE,
                    description="Each input's drift over this replica's latest logged records "
                    "against the version's training data (the promotion gate's score).",
                    tag_keys=TAGS,
                )
                self.live_drift = LiveDrift(
                    args.model_name,
                    args.drift_method,
                    args.drift_rows,
                    args.drift_min_rows,
                    lambda value, tags: gauge.set(value, tags=tags),
                )
            if args.log_path:
                from serving.inference_log import Answered, InferenceLog

                self.answered_type = Answered

                logged = metrics.Counter(
                    "relay_inference_logged", description="Records written to the inference log."
                )
                dropped = metrics.Counter(
                    "relay_inference_dropped",
                    description="Records the inference log dropped (queue full, write failed).",
                )
                self.inference = InferenceLog(
                    args.log_path,
                    args.model_name,
                    flush_seconds=args.log_flush_seconds,
                    queue_rows=args.log_queue_rows,
                    on_written=logged.inc,
                    on_dropped=dropped.inc,
                    on_table=self.live_drift.observe if self.live_drift else lambda table: None,
                )
            refusing = metrics.Counter(
                "relay_requests_refused",
                description="Prediction requests answered with an error, per status.",
                tag_keys=("status",),
            )

            def refuse(status: int) -> None:
                refusing.inc(tags={"status": str(status)})
                if self.inference is not None:
                    self.inference.refuse(status)

            refusals[:] = [refuse]
            self.shadow = None
            if args.challenger_mode == "shadow" and self.inference is not None:
                from serving.shadow import QUEUE_REQUESTS, Shadow

                unscored = metrics.Counter(
                    "relay_shadow_dropped",
                    description="Records the challenger did not score in shadow (queue full).",
                )
                self.shadow = Shadow(
                    lambda served, answered: self.inference.add(
                        served.log_schema, answered, request=False
                    ),
                    QUEUE_REQUESTS,
                    on_dropped=unscored.inc,
                )

        def __del__(self) -> None:
            """Serve's graceful shutdown (SIGTERM, redeploy, scale-down): write the log out."""
            if getattr(self, "shadow", None) is not None:
                self.shadow.close()
            if getattr(self, "inference", None) is not None:
                self.inference.close()

        async def reconfigure(self, user_config: dict[str, Any]) -> None:
            """Load the versions `build` resolved; requests keep flowing to the old ones.
            No version (no champion when the app was built): poll the alias until one is."""
            if user_config["version"] is None:
                if self.poller is None:
                    self.poller = asyncio.get_running_loop().create_task(self._poll())
                log.warning("no %s@%s yet: answering 503 until one is registered",
                            self.args.model_name, self.args.alias)  # fmt: skip
                return
            champion = await asyncio.to_thread(self._load, user_config["version"])
            challenger = None
            if user_config.get("challenger") is not None:
                challenger = await asyncio.to_thread(self._load, user_config["challenger"])
            self.served, self.challenger = champion, challenger
            self.share = float(user_config.get("share", 0.0)) if challenger else 0.0
            if self.live_drift is not None:
                self.live_drift.only({s.ref.version for s in (champion, challenger) if s})
            if self.args.poll_alias_seconds and self.poller is None:
                self.poller = asyncio.get_running_loop().create_task(self._poll())
            log.info(
                "serving %s version %s%s",
                champion.ref.name,
                champion.ref.version,
                f", challenger version {challenger.ref.version} for {self.share:.0%}"
                if challenger
                else "",
            )

        async def _poll(self) -> None:
            """Follow the aliases: a promotion reaches this replica without a redeploy."""
            while True:
                await asyncio.sleep(self.args.poll_alias_seconds or PENDING_POLL_SECONDS)
                try:
                    if self.served is None and not await asyncio.to_thread(
                        has_champion, self.client, self.args
                    ):
                        continue
                    champion, challenger = await asyncio.to_thread(
                        alias_versions, self.client, self.args
                    )
                    served = self.served.ref.version if self.served else None
                    other = self.challenger.ref.version if self.challenger else None
                    wanted = challenger.version if challenger else None
                    moved = (champion.version, wanted) != (served, other)
                    if not moved or {champion.version, wanted} & self.refused:
                        continue
                    loaded = [await asyncio.to_thread(self._load, champion.version)]
                    if challenger:
                        loaded.append(await asyncio.to_thread(self._load, challenger.version))
                    schema = self.served.spec["input_schema"] if self.served else None
                    other_inputs = {
                        v.ref.version for v in loaded if v.spec["input_schema"] != schema
                    }
                    if typed and schema is not None and other_inputs:  # routes typed by it
                        log.warning(
                            "aliases moved to version(s) %s with another input schema: "
                            "redeploy to serve them",
                            sorted(other_inputs),
                        )
                        self.refused |= other_inputs
                        continue
                    await self.reconfigure(
                        {"version": champion.version, "challenger": wanted,
                         "share": self.args.challenger_share}
                    )  # fmt: skip
                except Exception:  # the registry may be briefly away: keep serving, retry
                    log.exception("alias poll failed")

        def _load(self, version: int) -> Served:
            """The version, verified; re-used when already loaded as champion or challenger."""
            from cluster.tracking.registry import load_verified, resolve
            from serving.inference_log import log_schema
            from serving.model import Predictor
            from serving.schema import request_model

            for loaded in (self.served, self.challenger):
                if loaded and loaded.ref.version == version:
                    return loaded
            ref = resolve(self.client, self.args.model_name, str(version))
            spec, files = load_verified(self.client, ref)
            if self.live_drift is not None:
                self.live_drift.serve(ref.version, spec)
            request = request_model(spec["input_schema"], spec["features"], spec.get("id_column"))
            checks = TypeAdapter(list[request])
            return Served(ref, Predictor(spec, files), spec, log_schema(spec), checks)

        @api.get("/livez")
        def livez(self) -> dict[str, str]:
            """Liveness: the replica answers, model loaded or not (no auth: for probes)."""
            return {"status": "live"}

        @api.get("/healthz")
        @api.get("/readyz")
        @api.get("/ping")  # what `mlflow models serve` answers probes on
        def healthz(self) -> dict[str, Any]:
            """Readiness (503 until a model is loaded) and the versions served (no auth: for
            probes and load balancers)."""
            if self.served is None:
                raise HTTPException(status_code=503, detail="model not loaded yet")
            challenger = self.challenger.ref.version if self.challenger else None
            return {
                "status": "ready",
                **self.served.info(),
                "challenger_version": challenger,
                "challenger_share": self.share,
                "challenger_mode": self.args.challenger_mode,
            }

        @api.get("/schema")
        def schema(self) -> dict[str, Any]:
            """The fields a prediction request takes, and the model behind the endpoint."""
            served = self.served
            if served is None:
                raise HTTPException(status_code=503, detail="model not loaded yet")
            return {
                "model": served.info(),
                "input_schema": served.spec["input_schema"],
                "id_column": served.spec.get("id_column"),  # optional, not a model input
                "task": served.spec["task"],
                "max_request_records": self.args.max_request_records,
            }

        @api.post(
            "/predict",
            response_model=dict[str, Any],
            responses=error_responses(auth, RECORD_BYTES),
            max_body_size=RECORD_BYTES,
        )
        async def predict(
            self,
            record: record_type,  # type: ignore[valid-type]
            credentials: HTTPAuthorizationCredentials | None = Depends(credentials_of),
        ) -> Response:
            """One record in; its prediction, the model version and a request id out."""
            self.auth.check(credentials)
            began = time.perf_counter()
            served = self._current()
            inputs = record.model_dump() if typed else _checked(served, [record], ("body",))[0]
            result, served = await self._one(served, inputs)
            ids = _ids(served)
            self._count(served, 1, began)
            self._log(served, "predict", ids["request_id"], [inputs], [result], began)
            return answer({**result, **served.info(), **ids})

        @api.post(
            "/predict/batch",
            response_model=dict[str, Any],
            responses=error_responses(auth, batch_bytes),
            max_body_size=batch_bytes,
        )
        def predict_batch(
            self,
            body: BatchRequest,
            credentials: HTTPAuthorizationCredentials | None = Depends(credentials_of),
        ) -> Response:
            """Up to `max_request_records` records in one request, predicted as one batch."""
            self.auth.check(credentials)
            began = time.perf_counter()
            served = self._current()
            rows = body.model_dump()["records"]  # one call, not one per record
            if not typed:
                rows = _checked(served, rows, ("body", "records"))
            predictions = served.predictor.predict_records(rows) if rows else []
            ids = _ids(served)
            self._count(served, len(rows), began)
            self._log(served, "batch", ids["request_id"], rows, predictions, began)
            return answer({"predictions": predictions, **served.info(), **ids})

        @api.post(
            "/invocations",
            response_model=dict[str, Any],
            responses=error_responses(auth, batch_bytes, MlflowErrorBody),
            max_body_size=batch_bytes,
        )
        async def invocations(
            self,
            request: Request,
            credentials: HTTPAuthorizationCredentials | None = Depends(credentials_of),
        ) -> Response:
            """MLflow's scoring protocol, answered as `mlflow models serve` answers this
            version: `dataframe_split`, `dataframe_records` or `inputs` in, `{"predictions":
            [{"prediction": ..., "probability_<class>": ...}]}` out; the version and lineage
            ids in `X-Relay-*` headers. Bad input: 400 with MLflow's error body."""
            self.auth.check(credentials)
            began = time.perf_counter()
            body = await _json(request, protocols.mlflow_error)
            served = self._current()
            rows = protocols.checked(
                protocols.mlflow_records(body), served.records, self.args.max_request_records
            )
            served, answers = await self._many(served, rows)
            ids = _ids(served)
            self._count(served, len(rows), began)
            self._log(served, "invocations", ids["request_id"], rows, answers, began)
            predictions = [protocols.flat(a) for a in answers]
            return answer({"predictions": predictions}, _headers(served, ids))

        @api.get("/v2")
        def oip_server(self) -> dict[str, Any]:
            """Open Inference Protocol v2: server metadata."""
            return {"name": "relay", "version": VERSION, "extensions": []}

        @api.get("/v2/health/live")
        def oip_live(self) -> dict[str, bool]:
            return {"live": True}

        @api.get("/v2/health/ready")
        def oip_ready(self) -> Response:
            """200 once a model is loaded; before, 400 (OIP: a 4xx means false)."""
            return answer({"ready": self.served is not None}, status=_oip_status(self.served))

        @api.get("/v2/models/{name}")
        @api.get("/v2/models/{name}/versions/{version}")
        def oip_model(self, name: str, version: str | None = None) -> Response:
            """Model metadata from the declared input schema: one typed tensor per column."""
            served = self._oip(name, version)
            versions = [s.ref.version for s in (self.served, self.challenger) if s]
            return answer(protocols.oip_metadata(name, versions, served.spec))

        @api.get("/v2/models/{name}/ready")
        @api.get("/v2/models/{name}/versions/{version}/ready")
        def oip_model_ready(self, name: str, version: str | None = None) -> Response:
            self._oip(name, version)
            return answer({"name": name, "ready": True})

        @api.post("/v2/models/{name}/infer", **oip_route)
        @api.post("/v2/models/{name}/versions/{version}/infer", **oip_route)
        async def oip_infer(
            self,
            name: str,
            request: Request,
            version: str | None = None,
            credentials: HTTPAuthorizationCredentials | None = Depends(credentials_of),
        ) -> Response:
            """Open Inference Protocol v2 inference: one input tensor per column (datatype
            from `GET /v2/models/<name>`), shape [n]; typed output tensors by column
            (`prediction`, `probability_<class>`). Without a version the champion answers (or
            the challenger, for its share); with one, that version if it is served."""
            self.auth.check(credentials)
            began = time.perf_counter()
            served = self._oip(name, version)
            body = await _json(request, protocols.oip_error)
            spec = served.spec
            records = protocols.oip_records(body, spec, spec.get("id_column"))
            rows = protocols.checked(
                records, served.records, self.args.max_request_records, protocols.oip_error
            )
            served, answers = await self._many(served, rows)
            outputs = protocols.oip_outputs(answers, served.spec, body.get("outputs"))
            ids = _ids(served)
            self._count(served, len(rows), began)
            self._log(served, "v2", ids["request_id"], rows, answers, began)
            return answer(
                {
                    "model_name": served.ref.name,
                    "model_version": str(served.ref.version),
                    "id": str(body.get("id") or ids["request_id"]),
                    "parameters": {**ids, "run_id": served.ref.run_id},
                    "outputs": outputs,
                },
                _headers(served, ids),
            )

        def _oip(self, name: str, version: str | None) -> Served:
            """The served version an OIP path names: 404 in OIP's shape for another."""
            if name != self.args.model_name:
                raise protocols.oip_error(
                    f"model {name!r} is not served here; {self.args.model_name!r} is", 404
                )
            if version is None:
                return self._current()
            for served in (self.served, self.challenger):
                if served and str(served.ref.version) == version:
                    return served
            versions = [str(s.ref.version) for s in (self.served, self.challenger) if s]
            raise protocols.oip_error(
                f"version {version} of {name!r} is not served here (served: {versions})", 404
            )

        async def _one(self, served: Served, inputs: dict[str, Any]) -> tuple[dict, Served]:
            """One record's answer. Alone (after one turn of the loop, in which requests
            already here reach this point): answered at once. A batch, and its wait, only
            when others are here too."""
            self.predicting += 1
            try:
                if self.predicting == 1:
                    await asyncio.sleep(0)
                if self.predicting == 1:
                    (result,) = served.predictor.predict_records([inputs])
                    return result, served
                return await self._batched((served, inputs))
            finally:
                self.predicting -= 1

        async def _many(
            self, served: Served, rows: list[dict[str, Any]]
        ) -> tuple[Served, list[dict[str, Any]]]:
            """A protocol request's answers: one record batched with /predict's, more as
            one forward pass off the event loop (as /predict/batch runs)."""
            if len(rows) == 1:
                result, served = await self._one(served, rows[0])
                return served, [result]
            return served, await asyncio.to_thread(served.predictor.predict_records, rows)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
        async def _batched(self, items: list[tuple[Served, dict[str, Any]]]) -> list[tuple]:
            """One forward pass per version in the batch (champion and challenger)."""
            results: list[tuple] = [()] * len(items)
            for version in {served.ref.version for served, _ in items}:
                index = [i for i, (served, _) in enumerate(items) if served.ref.version == version]
                served = items[index[0]][0]
                predicted = served.predictor.predict_records([items[i][1] for i in index])
                for i, result in zip(index, predicted, strict=True):
                    results[i] = (result, served)
            return results

        def _current(self) -> Served:
            """The champion, or for `share` of the requests the challenger (split mode)."""
            if self.served is None:
                raise HTTPException(status_code=503, detail="model not loaded yet; retry shortly")
            if self.challenger and self.shadow is None and random.random() < self.share:
                return self.challenger
            return self.served

        def _log(
            self,
            served: Served,
            route: str,
            request_id: str,
            inputs: list[dict[str, Any]],
            results: list[dict[str, Any]],
            began: float,
        ) -> None:
            """Hand the answered records to the inference log (sampled per request); in shadow
            mode, `share` of the logged requests go to the challenger too."""
            if self.inference is None or not inputs:
                return
            if self.args.log_sample < 1 and random.random() >= self.args.log_sample:
                self.inference.answer()  # sampled out: counted all the same
                return
            answered = time.time()
            self.inference.add(
                served.log_schema,
                self.answered_type(  # serving.inference_log.Answered, imported once
                    request_id,
                    answered,
                    served.ref.name,
                    served.ref.version,
                    "challenger" if served is self.challenger else "champion",
                    route,
                    (time.perf_counter() - began) * 1000,
                    inputs,
                    results,
                ),
            )
            challenger = self.challenger
            if self.shadow is not None and challenger and random.random() < self.share:
                from serving.shadow import Mirrored

                self.shadow.add(Mirrored(challenger, request_id, route, answered, inputs))

        def _count(self, served: Served, records: int, began: float) -> None:
            tags = {"model_version": str(served.ref.version)}
            if records:  # Ray's counters refuse 0
                self.predictions.inc(records, tags=tags)
            self.latency.observe((time.perf_counter() - began) * 1000, tags=tags)

    return serve.ingress(api)(ModelServer)


def answer(
    payload: dict[str, Any], headers: dict[str, str] | None = None, status: int = 200
) -> Response:
    """The JSON answer, serialized once by pydantic-core: returned as is, FastAPI does not
    validate and serialize the dict again (its `response_model` only documents it)."""
    return Response(to_json(payload), status, headers, media_type="application/json")


async def _json(request: Request, error: Callable[[str], ProtocolError]) -> Any:
    """A protocol request's body as JSON: the protocol's 400 when it is not."""
    try:
        return from_json(await request.body())
    except ValueError as exc:
        raise error(f"the body is not JSON: {exc}") from None


def _checked(served: Served, rows: list[Any], loc: tuple[str, ...]) -> list[dict[str, Any]]:
    """Records checked against `served`'s request model (an app built before a champion
    existed): FastAPI's 422, each error at its path under `loc`, as typed routes answer."""
    skip = 1 if loc == ("body",) else 0  # /predict's one record: no index in the path

    def refuse(exc: Any) -> Exception:
        return RequestValidationError(
            [{**e, "loc": (*loc, *e["loc"][skip:])} for e in exc.errors()]
        )

    return protocols.validated(served.records, rows, refuse)


def _headers(served: Served, ids: dict[str, str]) -> dict[str, str]:
    """The version and lineage ids of a protocol answer whose body has no room for them."""
    return {
        "X-Relay-Model-Version": str(served.ref.version),
        "X-Relay-Request-Id": ids["request_id"],
        "X-Relay-Lineage-Id": ids["lineage_id"],
    }


def _oip_status(served: Served | None) -> int:
    return 200 if served is not None else 400


def _ids(served: Served) -> dict[str, str]:
    """A request id, and a lineage id that `relay lineage` resolves to the model version."""
    request = uuid.uuid4().hex
    return {
        "request_id": request,
        "lineage_id": f"{served.ref.name}/{served.ref.version}/{request}",
    }


def has_champion(client: Any, args: AppArgs) -> bool:
    """Whether the served alias (or version) exists yet; False before the model is registered
    at all (a RayService applied with the RayJob that trains its first version)."""
    from mlflow.exceptions import MlflowException

    from cluster.tracking.registry import aliased

    if args.alias.isdigit():
        return True  # a pinned version: resolving it says whether it exists
    try:
        return aliased(client, args.model_name, args.alias) is not None
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


def alias_versions(client: Any, args: AppArgs) -> tuple[Any, Any]:
    """The champion's and (when it gets a share) the challenger's ModelRef, from the registry."""
    from cluster.tracking.registry import aliased, resolve

    champion = resolve(client, args.model_name, args.alias)
    if not args.challenger_alias or args.challenger_share <= 0:
        return champion, None
    return champion, aliased(client, args.model_name, args.challenger_alias)


def build(args: dict[str, Any]) -> serve.Application:
    """Application builder for `serve run serving.app:build key=value ...`."""
    from mlflow.tracking import MlflowClient

    from cluster.errors import ServingError
    from cluster.tracking.registry import load_verified
    from serving.schema import request_model

    parsed = AppArgs.model_validate(args)
    client = MlflowClient(tracking_uri=parsed.tracking_uri, registry_uri=parsed.tracking_uri)
    if not has_champion(client, parsed):  # serve as soon as one is registered: 503 until then
        return _deployment(parsed, None, {"version": None, "challenger": None, "share": 0.0})
    ref, other = alias_versions(client, parsed)
    spec, _ = load_verified(client, ref)  # its input schema types the routes
    if other and load_verified(client, other)[0]["input_schema"] != spec["input_schema"]:
        raise ServingError(
            f"challenger version {other.version} takes other inputs than champion "
            f"version {ref.version}: a split needs the same input schema"
        )
    challenger = other.version if other else None
    request = request_model(spec["input_schema"], spec["features"], spec.get("id_column"))
    versions = {"version": ref.version, "challenger": challenger, "share": parsed.challenger_share}
    return _deployment(parsed, request, versions)


def _deployment(
    parsed: AppArgs, request: type[BaseModel] | None, versions: dict[str, Any]
) -> serve.Application:
    """The Serve application: the ingress for `request` (None: checked per loaded version),
    scaled and configured as `parsed` says, `versions` as its user_config."""
    server = serve.deployment(
        model_server(request, parsed.max_request_records, auth=parsed.auth == "token")
    )
    scaling: dict[str, Any] = {"num_replicas": parsed.num_replicas}
    if parsed.autoscaling:
        scaling = {"num_replicas": "auto", "autoscaling_config": parsed.autoscaling.model_dump()}
    return server.options(
        **scaling,
        max_ongoing_requests=parsed.max_ongoing_requests,
        ray_actor_options={"num_cpus": parsed.replica_cpus},
        user_config=versions,
        logging_config={"log_level": parsed.log_level},
    ).bind(parsed)
