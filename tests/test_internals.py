"""The names of Ray Tune and Optuna that gzsl.study.internals reads outside their public APIs:
each still there in the installed versions (an upgrade that removes one fails here, by name), and
read nowhere else in the study layer."""

import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from gzsl.study import internals

ROOT = Path(__file__).resolve().parents[1]


def instances() -> dict:
    searcher = OptunaSearch(space={"x": optuna.distributions.FloatDistribution(0, 1)}, metric="h", mode="max")
    tuner = tune.Tuner(lambda config: None, tune_config=tune.TuneConfig(search_alg=searcher,
                                                                        scheduler=FIFOScheduler()))
    return {"Tuner": tuner, "TunerInternal": tuner._local_tuner, "OptunaSearch": searcher}


def test_every_name_the_internals_read_is_still_there():
    objects = instances()
    missing = [f"{kind}.{name}" for kind, names in internals.NAMES.items() for name in names
               if not hasattr(objects[kind], name)]
    assert not missing, f"this Ray/Optuna no longer has {missing}: update gzsl/study/internals.py and pyproject's bounds"


def test_the_readers_return_what_they_say():
    objects = instances()
    tuner, searcher = objects["Tuner"], objects["OptunaSearch"]
    found, scheduler, callbacks = internals.restored_parts(tuner)
    assert found is searcher and isinstance(scheduler, FIFOScheduler) and isinstance(callbacks, (list, type(None)))


@pytest.mark.parametrize("mode, enabled", [("token", True), ("disabled", False)])
def test_token_auth_is_read_from_ray_as_set(mode, enabled):
    """Ray reads RAY_AUTH_MODE in a fresh process: each mode in one, the answer exact."""
    code = "from gzsl.study import internals; print(internals.token_auth_enabled())"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "RAY_AUTH_MODE": mode})
    assert p.stdout.strip() == str(enabled), p.stderr


def test_the_study_layer_reads_no_other_private_name():
    """`self._x` is the module's own state, os._exit a documented call; any other `._x` is a private
    name of another library, which belongs in gzsl/study/internals.py."""
    found = []
    for path in [*(ROOT / "gzsl" / "study").glob("*.py"), ROOT / "gzsl" / "tune.py"]:
        if path.name == "internals.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            found += [f"{path.name}:{n}: {m}" for m in re.findall(r"(?<!self)(?<!os)\._[a-z]\w*", code)]
    assert not found, found
