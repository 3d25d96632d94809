"""Domain errors the CLI turns into one clear message and a documented exit code."""

from __future__ import annotations


class RelayError(Exception):
    """Base class: the message is meant for the user, the traceback is not."""

    exit_code = 1


class ConfigError(RelayError):
    """The config (or a CLI argument) is invalid; the message names the field and the fix."""

    exit_code = 2


class DataQualityError(RelayError):
    """The data broke a declared rule badly enough that continuing would hide it."""

    exit_code = 3


class GateFailedError(RelayError):
    """A promotion gate failed; the model was registered but not promoted.

    Raised after everything was recorded: `summary` is the finished run's summary.
    """

    exit_code = 4

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary or {}


class ClusterUnreachableError(RelayError):
    """Ray or the tracking server could not be reached."""

    exit_code = 5


class TrackingSpooledError(ClusterUnreachableError):
    """The tracking server stayed down: the run's records wait in a local spool for
    `relay tracking sync`, after which the run can be resumed."""


class ServingError(RelayError):
    """The model could not be served (bad artifact, hash mismatch, endpoint not healthy)."""

    exit_code = 6


class JobFailedError(RelayError):
    """A job submitted to a Ray cluster ended FAILED or STOPPED."""

    exit_code = 8


class MonitorAlertError(RelayError):
    """`relay monitor`: a served version broke a `monitor:` threshold (cron, CI and a
    Kubernetes CronJob act on the exit code). `summary` is the recorded report."""

    exit_code = 9

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary or {}


class TrainingFailedError(RelayError):
    """Every trial of a search failed: nothing to evaluate (each trial run has its traceback)."""

    exit_code = 10
