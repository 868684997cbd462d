"""Executors: processes that each train several trials' configurations as one fused model
([resources] pack = K > 1). `members` is an executor's core, free of Ray (its members joining,
training and leaving between epochs, their faults); `actors` makes it a Ray actor, keeps the pool
of them, and is the Tune trial that joins one."""

from gzsl.study.executors.actors import ExecutorPool, executor_names, executors_that_fit, packed_objective, trial_resources
from gzsl.study.executors.members import Executor

__all__ = ["Executor", "ExecutorPool", "executor_names", "executors_that_fit", "packed_objective", "trial_resources"]
