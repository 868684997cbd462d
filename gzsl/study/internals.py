"""What the study reads of Ray Tune and Optuna that their public APIs do not give, in one place.

- Tune has no public way to reach a restored Tuner's searcher, scheduler and callbacks (a resumed
  study re-arms them: the executor pool's searcher, the rung table rebuilt from epochs.parquet), nor to
  ask whether Ray's token authentication is on (the dashboard line says how to sign in).
- Tune's OptunaSearch keeps the Optuna trial of each Tune trial, and which it has told, without
  accessors; gzsl.study.search extends it (PRUNED for stopped trials, heartbeats, a resume's
  reruns) and reads them here. Optuna gives no public lookup of one trial's stored state (a
  trial that finished before a resume; the intermediate values a completed trial is told with).

These names are read here and nowhere else; pyproject.toml bounds Ray and Optuna to the versions
they were tested with, and tests/test_internals.py fails, naming the attribute, when an upgrade
removes one.
"""

from __future__ import annotations


def restored_parts(tuner):
    """(search_alg, scheduler, callbacks) of a Tuner, as built or as Tuner.restore rebuilt them."""
    local = tuner._local_tuner
    config = local._tune_config
    return config.search_alg, config.scheduler, local.get_run_config().callbacks


def token_auth_enabled() -> bool | None:
    """Whether this Ray asks for a token (RAY_AUTH_MODE=token); None where this Ray cannot say."""
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled

        return bool(is_token_auth_enabled())
    except Exception:  # an older or newer Ray without this module
        return None


def asked(searcher) -> dict:
    """OptunaSearch's Optuna trial of each Tune trial id it suggested for."""
    return searcher._ot_trials


def told(searcher) -> set:
    """The Tune trial ids whose Optuna trial OptunaSearch has told (or was told to skip)."""
    return searcher._completed_trials


def optuna_study(searcher):
    """The optuna.Study an OptunaSearch asks and tells."""
    return searcher._ot_study


def stored(study, ot_trial):
    """The FrozenTrial the storage holds now for `ot_trial` (an optuna.Trial): its state and
    intermediate values, one trial's read (study.get_trials would read them all)."""
    return study._storage.get_trial(ot_trial._trial_id)


# Each reader above and the attribute it needs (tests/test_internals.py checks them).
NAMES = {"Tuner": ["_local_tuner"], "TunerInternal": ["_tune_config", "get_run_config"],
         "OptunaSearch": ["_ot_trials", "_completed_trials", "_ot_study"],
         "Study": ["_storage"], "Trial": ["_trial_id"]}
