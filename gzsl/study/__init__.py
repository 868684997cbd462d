"""The study layer, the only package that imports Ray. `run` (pipeline) is a study from start to
end. Ray Tune schedules trials of `gzsl.trainer.train` (trial), Optuna's TPE proposes them
(search), ASHA stops weak ones on validation H (scheduler), a driver-side callback writes every
finished trial to Parquet (callback), the driver runs the search (driver), a sample of the stops is
audited (audit), the finalists are confirmed on fresh validation splits (confirm), and the chosen
configuration is refit (refit).
"""

from gzsl.study.callback import ParquetCallback
from gzsl.study.confirm import confirm
from gzsl.study.driver import (RunPlan, check_local_gpu, check_start, pending_trials, plan_run, resumed_budget,
                               run_study, study_row, tune_storage)
from gzsl.study.executors.actors import executors_that_fit
from gzsl.study.pipeline import Steps, StudyResult, run
from gzsl.study.refit import best_params, final_refit
from gzsl.study.audit import audit
from gzsl.study.scheduler import NoiseAwareASHA, RuleScheduler
from gzsl.study.search import (HEARTBEAT_S, STALE_AFTER_S, StudySearcher, default_optuna_url,
                               fail_stale_running, optuna_storage, search_space, shown_url)
from gzsl.study.trial import METRIC, MODE, objective, train_config, trial_device, trial_status

__all__ = ["HEARTBEAT_S", "audit", "METRIC", "MODE", "STALE_AFTER_S", "NoiseAwareASHA", "ParquetCallback", "RuleScheduler",
           "StudySearcher", "RunPlan", "Steps", "StudyResult", "best_params", "check_local_gpu", "check_start", "confirm",
           "default_optuna_url", "executors_that_fit", "fail_stale_running", "final_refit", "objective",
           "optuna_storage", "pending_trials", "plan_run", "resumed_budget", "run", "run_study", "search_space", "shown_url",
           "study_row", "train_config", "trial_device", "trial_status", "tune_storage"]
