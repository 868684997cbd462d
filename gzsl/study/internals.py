"""What the study reads of Ray Tune and Optuna that their public APIs do not give, in one place.

- Tune has no public way to reach a restored Tuner's searcher, scheduler and callbacks (a resumed
  study re-arms them: the executor pool's searcher, the rung table rebuilt from epochs.parquet), nor to
  ask whether Ray's token authentication is on (the dashboard line says how to sign in).
- Nothing of Optuna: gzsl.study.search's searcher is Tune's Searcher interface on Optuna's
  ask-and-tell and its storage API, all public.

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


# Each reader above and the attribute it needs (tests/test_internals.py checks them).
NAMES = {"Tuner": ["_local_tuner"], "TunerInternal": ["_tune_config", "get_run_config"]}
