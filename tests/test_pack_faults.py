"""Faults a pack of trials must survive (gzsl.study.pack): a member's error fails its trial only,
an executor that cannot go on is taken out of rotation and replaced, a dead executor is skipped,
a retried trial starts clean. Faults are injected in Ray's worker processes by
tests/inject/sitecustomize.py (PackTrainer.run_epoch raises a CUDA out-of-memory for the members
GZSL_INJECT_FAULT names); every wait is bounded and no assertion depends on which member ends first."""

from types import SimpleNamespace

from tests.test_study import write_study

PARAMS = {"alpha": 1.0, "gamma": 1.0, "latent_size": 16, "lr": 2e-3}


# --------------------------------------------------------------------------- the Parquet callback


def test_a_recovered_trial_is_recorded_from_its_new_attempt_numbered_by_first_start(tmp_path):
    """Tune retries a trial (max_failures): it calls on_trial_recover, moves the trial to the end of
    its list and starts it again. Its row and epochs come from the new attempt only, and its
    trial_number stays the order in which it was proposed."""
    from gzsl.results import ResultStore
    from gzsl.study import ParquetCallback
    from gzsl.studies import load_study

    spec = load_study(str(write_study(tmp_path, epochs=5)))
    store = ResultStore(str(tmp_path / "results"))
    callback = ParquetCallback(store, spec, log=lambda *_: None)
    a, b = (SimpleNamespace(trial_id=t, config=dict(PARAMS), experiment_tag=f"{i + 1}_alpha=1.0", path=None,
                            error_file=None) for i, t in enumerate(("a", "b")))

    def epoch(trial, e, loss):
        callback.on_trial_result(0, trials, trial, {"epoch": e, "status": "running", "loss_total": loss,
                                                    "evaluated": True, "val_U": 1.0, "val_S": 1.0, "val_H": 1.0})

    trials = [a, b]
    callback.on_trial_start(0, trials, a)
    callback.on_trial_start(0, trials, b)
    for e in (1, 2, 3):
        epoch(a, e, 100.0)  # the first attempt, then it fails
    callback.on_trial_recover(0, trials, a)
    trials = [b, a]  # Tune requeues a recovered trial at the end of its list
    callback.on_trial_start(0, trials, a)
    for e in (1, 2):
        epoch(a, e, 1.0)
    callback.on_trial_complete(0, trials, a)
    row = store.read("trials").iloc[0]
    epochs = store.read("epochs")
    assert (row.trial_id, row.trial_number, row.epochs_run) == ("a", 0, 2)
    assert list(epochs.epoch) == [1, 2] and (epochs.loss_total == 1.0).all()
