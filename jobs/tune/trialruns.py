"""One MLflow run per trial, logged by the Tune driver from the trials' results.

Trials do not import MLflow or write to the store (that cost seconds per trial and raced on
sqlite); the driver sees every result anyway. Runs are keyed by Tune's trial id, which
survives trial restarts and `Tuner.restore`, so a resumed search finds its runs instead of
duplicating them, and skips epochs it had already logged. The driver's own Tracker is used
while Tune runs in the driver, so a server that stays down is one journal, one retry window and
one message for the whole run; only a callback unpickled by `Tuner.restore` builds its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune import Callback

from cluster.tracking.tracker import NOTE_TAG, Tracker

TRIAL_ID_TAG = "relay.trial_id"
MAX_ERROR_TAG = 1000
METRIC_PREFIXES = ("train_", "val_", "epoch_seconds")


class TrialRuns(Callback):
    """Creates, fills and closes the trial runs under one tune run."""

    def __init__(
        self,
        tracker: Tracker,
        tune_run_id: str,
        epochs: int,
        defaults: dict[str, Any],
        family: str = "mlp",
    ):
        self.settings = tracker.settings  # to rebuild a tracker after unpickling
        self.experiment_id = tracker.experiment_id
        self.tune_run_id, self.epochs, self.defaults = tune_run_id, epochs, defaults
        self.family = family
        self._tracker: Tracker | None = tracker
        self._runs: dict[str, str] | None = None  # trial id -> run id, read on first use
        self._logged: dict[str, int] = {}  # run id -> last epoch in the store
        self._recovered: set[str] = set()  # runs whose trial Tune just restarted

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment; the client is rebuilt after."""
        state = {**self.__dict__, "_tracker": None, "_runs": None}
        return state | {"_logged": {}, "_recovered": set()}

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(**self.settings)
        return self._tracker

    def existing(self) -> dict[str, str]:
        """Trial id -> run id for the runs already under the tune run."""
        client = self.tracker.client
        found = self.tracker.online(
            lambda: client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`mlflow.parentRunId` = '{self.tune_run_id}'",
                max_results=10_000,
            )
        )
        return {
            r.data.tags[TRIAL_ID_TAG]: r.info.run_id for r in found if TRIAL_ID_TAG in r.data.tags
        }

    def run_for(self, trial: Any) -> str:
        tracker = self.tracker
        if self._runs is None:
            self._runs = self.existing()
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            run_id = tracker.start(
                str(trial),
                parent=self.tune_run_id,
                stage="trial",
                tags={
                    TRIAL_ID_TAG: trial.trial_id,
                    "relay.trial_name": str(trial),
                    "relay.family": self.family,
                    NOTE_TAG: f"A {self.family} trial of the search: its hyper-parameters are "
                    "this run's parameters, its epochs the metric steps.",
                },
            )
            tracker.log(run_id, params={**self.defaults, **trial.config})
            self._runs[trial.trial_id] = run_id
            self._logged[run_id] = 0
        elif run_id not in self._logged:  # a run from before a restart: find where it got to
            client = tracker.client
            tracker.online(lambda: client.update_run(run_id, status="RUNNING"))
            history = tracker.online(lambda: client.get_metric_history(run_id, "val_loss"))
            self._logged[run_id] = max((m.step for m in history), default=0)
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.run_for(trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        run_id = self.run_for(trial)
        epoch = int(result.get("epoch", 0))
        if epoch <= self._logged[run_id]:
            return  # replayed after a restore: already in the store
        metrics = {
            k: float(v)
            for k, v in result.items()
            if k.startswith(METRIC_PREFIXES) and isinstance(v, int | float)
        }
        tags = {}
        if self._logged[run_id] == 0 or run_id in self._recovered:
            tags = {
                "relay.device": result.get("device", ""),
                "relay.gpu_ids": result.get("gpu_ids", ""),
                "relay.node_id": result.get("node_id", ""),
            }
            if run_id in self._recovered:  # what the restarted trial loaded, not what we hoped
                tags["relay.resumed_from_epoch"] = int(result.get("restored_epoch", 0))
            self._recovered.discard(run_id)
        self.tracker.log(run_id, metrics=metrics, tags=tags, step=epoch)
        self._logged[run_id] = epoch

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        epochs, planned = int(last.get("epoch", 0)), int(last.get("epochs_total", self.epochs))
        self._close(trial, "completed" if epochs >= planned else "early_stopped", epochs)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Tune restarts a failed trial (a lost node, a crash) from its last checkpoint: the run
        records how often and where it failed; its next result, the node it moved to and the
        epoch its checkpoint restored."""
        last = trial.last_result or {}
        run_id = self.run_for(trial)
        self.tracker.log(
            run_id,
            tags={
                "relay.trial_failures": trial.num_failures,
                "relay.failed_on_node": last.get("node_id", ""),
            },
        )
        self._recovered.add(run_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial that failed for good: its traceback (the user's module's, say) goes on its run
        as `error.txt`, its last line as a tag."""
        run_id = self.run_for(trial)
        error = Path(trial.error_file).read_text() if trial.error_file else ""
        if error:
            self.tracker.log_text(run_id, error, "error.txt")
            lines = [line for line in error.strip().splitlines() if line.strip()]
            self.tracker.log(run_id, tags={"relay.trial_error": lines[-1][:MAX_ERROR_TAG]})
        self._close(trial, "failed", int((trial.last_result or {}).get("epoch", 0)))

    def _close(self, trial: Any, status: str, epochs: int) -> None:
        run_id = self.run_for(trial)
        self.tracker.log(run_id, tags={"relay.trial_status": status, "relay.epochs_run": epochs})
        self.tracker.set_terminated(run_id, "FAILED" if status == "failed" else "FINISHED")
