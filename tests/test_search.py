"""The study's searcher (gzsl.study.search.StudySearcher): Tune's Searcher interface on Optuna's
ask-and-tell, driven here as Tune drives it, against a real SQLite Optuna storage."""

import pickle

import optuna
from optuna.trial import TrialState

from gzsl.study import StudySearcher, optuna_storage

SPACE = {"alpha": optuna.distributions.FloatDistribution(0.1, 10.0, log=True),
         "latent_size": optuna.distributions.CategoricalDistribution([16, 64])}


def epochs(searcher, trial_id, hs):
    for epoch, h in enumerate(hs, 1):
        searcher.on_trial_result(trial_id, {"val_H": h, "training_iteration": epoch, "epoch": epoch})
    return {"val_H": hs[-1], "training_iteration": len(hs), "epoch": len(hs)}


def test_each_ending_is_told_as_what_it_was_and_the_starting_point_comes_first(tmp_path):
    storage = optuna_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    s = StudySearcher(SPACE, sampler=optuna.samplers.TPESampler(seed=0), study_name="s", storage=storage,
                      max_epochs=3, owner="here", points_to_evaluate=[{"alpha": 1.0, "latent_size": 64}])
    assert s.suggest("start") == {"alpha": 1.0, "latent_size": 64}  # the enqueued defaults, first
    for tid in ("stopped", "failed", "diverged"):
        assert set(s.suggest(tid)) == {"alpha", "latent_size"}
    s.on_trial_complete("start", epochs(s, "start", [10.0, 30.0, 20.0]))  # reached the last epoch
    s.on_trial_complete("stopped", epochs(s, "stopped", [5.0]))  # the rule stopped it at epoch 1
    s.on_trial_complete("failed", None, error=True)
    s.on_trial_complete("diverged", {**epochs(s, "diverged", [1.0, 2.0]), "status": "diverged"})
    trials = {t.user_attrs["tune_trial_id"]: t for t in optuna.load_study(study_name="s", storage=storage).trials}
    assert (trials["start"].state, trials["start"].value) == (TrialState.COMPLETE, 30.0)  # H at its best epoch
    assert trials["start"].intermediate_values == {1: 10.0, 2: 30.0, 3: 20.0}
    assert (trials["stopped"].state, trials["stopped"].intermediate_values) == (TrialState.PRUNED, {1: 5.0})
    assert trials["failed"].state == TrialState.FAIL
    assert (trials["diverged"].state, trials["diverged"].value) == (TrialState.COMPLETE, 0.0)
    assert {t.user_attrs["gzsl_owner"] for t in trials.values()} == {"here"}
    assert s.on_trial_complete("start", {"val_H": 99.0, "training_iteration": 3, "epoch": 3}) is None  # told once
    assert optuna.load_study(study_name="s", storage=storage).trials[0].value == 30.0


def test_its_cap_holds_proposals_back_until_a_trial_ends(tmp_path):
    s = StudySearcher(SPACE, study_name="c", storage=optuna_storage(f"sqlite:///{tmp_path / 'o.db'}"), max_epochs=2)
    assert s.set_max_concurrency(2)
    assert s.suggest("a") and s.suggest("b") and s.suggest("c") is None
    s.on_trial_complete("a", epochs(s, "a", [1.0, 2.0]))
    assert s.suggest("c")


def test_saved_and_restored_it_holds_no_url_and_goes_on_with_the_same_study(tmp_path):
    """What Tune pickles (the searcher in the experiment state, its checkpoint) holds no storage, so
    no database password; a restored searcher, connected to the storage again, tells the trial it
    asked before the interruption, and Tune's checkpoint restores its bookkeeping, not a storage."""
    url = f"sqlite:///{tmp_path / 'secret-pw.db'}"
    storage = optuna_storage(url)
    s = StudySearcher(SPACE, study_name="r", storage=storage, max_epochs=2)
    s.suggest("before")
    s.on_trial_result("before", {"val_H": 7.0, "training_iteration": 1})
    saved = pickle.dumps(s)
    assert b"secret-pw" not in saved
    s.save(str(tmp_path / "ckpt.pkl"))
    assert b"secret-pw" not in (tmp_path / "ckpt.pkl").read_bytes()
    again = pickle.loads(saved)
    assert again.study is None
    again.connect(optuna_storage(url))
    again.restore(str(tmp_path / "ckpt.pkl"))
    assert again.study is not None and again.asked == s.asked
    again.on_trial_result("before", {"val_H": 7.5, "training_iteration": 1})  # a rerun's repeat: the first stays
    again.on_trial_complete("before", {"val_H": 9.0, "training_iteration": 2, "epoch": 2})
    (t,) = optuna.load_study(study_name="r", storage=storage).trials
    assert (t.state, t.value, t.intermediate_values) == (TrialState.COMPLETE, 9.0, {1: 7.0, 2: 9.0})
