"""Shadow scoring: the challenger answers a copy of the champion's traffic, off the request path.

Only the champion answers the client. Each mirrored request is queued (bounded: a full queue
drops the copy and counts it, the request never waits), and one thread scores what has
queued as one batch per version and hands each answer to the inference log with the role
`shadow` and the request's own id, so `relay monitor` can pair the two answers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from serving.inference_log import Answered

log = logging.getLogger("ray.serve")

BATCH_REQUESTS = 64  # scored together at most: one forward pass instead of many
QUEUE_REQUESTS = 1024  # mirrored requests waiting at most; beyond, copies are dropped


class Mirrored(NamedTuple):
    served: Any  # serving.app.Served: the challenger as it was when the request came
    request_id: str
    route: str
    time: float  # epoch seconds the request was answered
    inputs: list[dict[str, Any]]


class Shadow:
    """The challenger's scorer of one replica (see the module docstring)."""

    def __init__(
        self,
        on_answer: Callable[[Any, Answered], None],
        queue_requests: int,
        on_dropped: Callable[[int], None] = lambda records: None,
    ):
        self.on_answer, self.on_dropped = on_answer, on_dropped
        self.queue: queue.Queue[Mirrored | None] = queue.Queue(maxsize=queue_requests)
        self.thread = threading.Thread(target=self._run, name="relay-shadow", daemon=True)
        self.thread.start()

    def add(self, mirrored: Mirrored) -> None:
        try:
            self.queue.put_nowait(mirrored)
        except queue.Full:
            self.on_dropped(len(mirrored.inputs))

    def close(self, timeout: float = 20.0) -> None:
        """Score what is queued, then stop (before the inference log closes)."""
        try:
            self.queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self.thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            taken = [first]
            while first is not None and len(taken) < BATCH_REQUESTS:
                try:
                    taken.append(self.queue.get_nowait())
                except queue.Empty:
                    break
                if taken[-1] is None:
                    break
            requests = [m for m in taken if m is not None]
            try:
                self._score(requests)
            except Exception:  # a challenger that cannot score must not stop the champion
                log.exception("shadow scoring failed for %d request(s)", len(requests))
                self.on_dropped(sum(len(m.inputs) for m in requests))
            if taken[-1] is None:
                return

    def _score(self, requests: list[Mirrored]) -> None:
        versions: dict[int, list[Mirrored]] = {}
        for m in requests:  # grouped by identity: a swap mid-queue scores each with its own
            versions.setdefault(id(m.served), []).append(m)
        for group in versions.values():
            served = group[0].served
            began = time.perf_counter()
            results = served.predictor.predict_records([r for m in group for r in m.inputs])
            latency_ms = (time.perf_counter() - began) * 1000
            at = 0
            for m in group:
                answers, at = results[at : at + len(m.inputs)], at + len(m.inputs)
                self.on_answer(
                    served,
                    Answered(
                        m.request_id,
                        m.time,
                        served.ref.name,
                        served.ref.version,
                        "shadow",
                        m.route,
                        latency_ms,
                        m.inputs,
                        answers,
                    ),
                )
