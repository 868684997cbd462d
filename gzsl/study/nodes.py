"""The cluster's nodes as the study sees them: a line when one joins or is lost."""

from __future__ import annotations

import logging
import time

import ray
from ray import tune

_log = logging.getLogger(__name__)  # progress lines: gzsl.tune prints the `gzsl` logger


LOOK_S = 2.0  # how often the driver asks Ray for its nodes (one call to the GCS)


class NodeWatch(tune.Callback):
    """Runs in the driver: says which node joined or was lost, and what happens to a lost node's
    work (Ray starts its executors again elsewhere; Tune retries its trials up to
    max_failures times). Locally there is one node, which lives as long as the driver."""

    def __init__(self, max_failures: int, packed: bool, log=_log.info):
        self.max_failures, self.packed, self.log = max_failures, packed, log
        self._alive: dict[str, str] | None = None  # node id -> what the line calls it
        self._looked = 0.0

    def __getstate__(self):  # a resumed study looks at its cluster afresh
        return {"max_failures": self.max_failures, "packed": self.packed}

    def __setstate__(self, state):
        self.__init__(**state)

    def on_step_begin(self, iteration, trials, **info):
        if time.monotonic() - self._looked < LOOK_S:
            return
        self._looked = time.monotonic()
        alive = {n["NodeID"]: _called(n) for n in ray.nodes() if n["Alive"]}
        if self._alive is not None:
            for node in alive.keys() - self._alive.keys():
                self.log(f"node {alive[node]} joined")
            for node in self._alive.keys() - alive.keys():
                retried = (f"Tune retries each of its trials up to {self.max_failures} time(s) (max_failures)"
                           if self.max_failures else "its trials fail (max_failures = 0: none is retried)")
                moved = "Ray starts its executors again elsewhere; " if self.packed else ""
                self.log(f"node {self._alive[node]} lost: {moved}{retried}")
        self._alive = alive


def _called(node: dict) -> str:
    res = node.get("Resources", {})
    held = ", ".join(f"{k} {res[k]:g}" for k in ("CPU", "GPU") if res.get(k))
    return f"{node['NodeID']} ({node.get('NodeManagerAddress', '?')}{', ' + held if held else ''})"
