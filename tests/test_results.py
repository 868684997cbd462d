"""The choice and the refit epoch (gzsl.selection), on hand-made rows whose right answers are worked
out in each test: the search's best, the refit's epoch, the finalists and the confirmation's pick."""

from pathlib import Path

import pandas as pd

from gzsl.selection import best_trial, confirmed, finalists, refit_epoch


def test_the_study_chooses_the_completed_trial_with_the_best_validation_peak():
    trials = pd.DataFrame({"trial_id": ["a", "b", "c", "d"], "trial_number": [0, 1, 2, 3],
                           "status": ["completed", "completed", "pruned", "completed"],
                           "best_val_H": [50.0, 48.0, 60.0, 50.0], "best_epoch": [10, 30, 8, 12],
                           "last_val_H": [40.0, 48.0, 60.0, 45.0]})
    assert best_trial(trials)["trial_id"] == "a"  # its peak, not its last epoch; ties: the earlier; never pruned
    assert best_trial(trials[trials.status == "pruned"])["trial_id"] == "c"  # pruned only when none completed


def test_a_refit_stops_at_the_peak_only_when_the_peak_is_clear_of_the_seed_noise():
    """A refit (and a confirmation) scores the trial's best epoch when its H there leads its last
    epoch's by more than h_noise; a peak within the noise of the end is trained through to the end."""
    row = {"trial_id": "t", "status": "completed", "best_epoch": 60, "epochs_run": 100}
    assert refit_epoch({**row, "best_val_H": 50.0, "last_val_H": 41.0}, 2.0) == 60  # fell 9 H after its peak
    assert refit_epoch({**row, "best_val_H": 50.0, "last_val_H": 48.5}, 2.0) == 100  # 1.5 H: noise
    assert refit_epoch({**row, "best_val_H": 50.0, "last_val_H": 48.0}, 2.0) == 100  # 2.0 H: not more than it
    assert refit_epoch({**row, "best_val_H": 50.0, "last_val_H": 48.5}, 0.0) == 60  # no noise allowed: the peak
    assert refit_epoch({**row, "best_epoch": 100, "best_val_H": 50.0, "last_val_H": 50.0}, 2.0) == 100
    stopped = {**row, "status": "pruned", "best_epoch": 70, "epochs_run": 75, "best_val_H": 30.0, "last_val_H": 29.0}
    assert refit_epoch(stopped, 2.0) == 75  # a stopped trial: the last epoch it trained
    assert refit_epoch({**row, "best_val_H": 50.0, "last_val_H": float("nan")}, 2.0) == 60  # no last H: the peak
    assert refit_epoch({"trial_id": "t", "best_epoch": None}, 2.0) == 0  # nothing recorded: the schedule's end


def _confirm_rows(hs: dict, status: dict | None = None) -> pd.DataFrame:
    rows = [{"trial_id": t, "val_split": k, "val_H": h, "status": (status or {}).get((t, k), "completed")}
            for t, per_split in hs.items() for k, h in enumerate(per_split, 1)]
    return pd.DataFrame(rows)


def test_a_finalist_replaces_the_defaults_only_when_ahead_by_more_than_the_seed_noise():
    """The search's best (b: 61.8 on validation) is the maximum of many noisy numbers; on fresh
    splits it is compared with the defaults (d) and replaces them only when ahead by more than
    h_noise (2 H here), on the mean over the splits, never on the search's own value."""
    trials = pd.DataFrame({"trial_id": ["d", "a", "b", "c"], "trial_number": [0, 1, 2, 3],
                           "status": ["completed", "completed", "completed", "pruned"],
                           "start": ["defaults", "", "", ""], "best_val_H": [50.5, 55.0, 61.8, 40.0],
                           "best_epoch": [85, 100, 100, 10]})
    assert [f["trial_id"] for f in finalists(trials, 2)] == ["b", "a", "d"]  # the defaults wherever they rank
    assert [f["trial_id"] for f in finalists(trials, 3)] == ["b", "a", "d"]  # completed only, as the search chooses
    assert [f["trial_id"] for f in finalists(trials, 1)] == ["b", "d"]
    # b leads by 1.5 on the fresh splits: within the noise, the defaults stay.
    pick, means = confirmed(trials, _confirm_rows({"d": [48.0, 50.0], "a": [45.0, 47.0], "b": [50.0, 51.0]}), 2.0)
    assert pick["trial_id"] == "d" and means == {"d": 49.0, "a": 46.0, "b": 50.5}
    # a leads by 3: it is chosen, though b was the search's best.
    pick, _ = confirmed(trials, _confirm_rows({"d": [48.0, 50.0], "a": [52.0, 52.0], "b": [50.0, 51.0]}), 2.0)
    assert pick["trial_id"] == "a"
    # A finalist that diverged on a split is out, however high its other split.
    rows = _confirm_rows({"d": [48.0, 50.0], "a": [90.0, 0.0]}, status={("a", 2): "diverged"})
    assert confirmed(trials, rows, 2.0)[0]["trial_id"] == "d"
    # Without confirmation rows the search's best is chosen; without the defaults, the best mean.
    assert confirmed(trials, pd.DataFrame(), 2.0)[0]["trial_id"] == "b"
    assert confirmed(trials, _confirm_rows({"a": [40.0, 41.0], "b": [30.0, 35.0]}), 2.0)[0]["trial_id"] == "a"


def test_the_edges_of_the_choice():
    """What mutation testing found unchecked (docs/benchmarks.md, "Tests that can fail")."""
    trials = pd.DataFrame({"trial_id": ["d", "a", "b"], "trial_number": [0, 1, 2],
                           "status": ["completed", "completed", "completed"], "start": ["defaults", "", ""],
                           "best_val_H": [50.0, 55.0, 61.8], "best_epoch": [85, 100, 100],
                           "error": [None, None, None]})  # an empty column beside the scores
    assert best_trial(trials)["trial_id"] == "b"  # a NaN elsewhere in the row does not drop it
    assert best_trial(trials.assign(best_val_H=float("nan"))) is None  # nothing scored: nothing to choose
    no_defaults = trials.assign(start="")
    assert [f["trial_id"] for f in finalists(no_defaults, 1)] == ["b"]  # no defaults' row: the best alone
    # Ahead by exactly h_noise is not ahead by more: the defaults stay.
    pick, _ = confirmed(trials, _confirm_rows({"d": [50.0, 50.0], "b": [52.0, 52.0]}), 2.0)
    assert pick["trial_id"] == "d"
    # A finalist that completed only some of the splits is out; with no finalist complete, the search's best.
    rows = _confirm_rows({"d": [50.0, 50.0], "b": [60.0]})
    assert confirmed(trials, rows, 2.0) == (trials.iloc[0].to_dict(), {"d": 50.0})
    only_failed = _confirm_rows({"d": [50.0]}, status={("d", 1): "diverged"})
    assert confirmed(trials, only_failed, 2.0) == (best_trial(trials), {})


def test_the_store_writes_a_part_once_or_replaces_it_whole(tmp_path):
    from gzsl.results import ResultStore, schema

    store = ResultStore(str(tmp_path / "r"))
    assert store.write_part("trials", "t1", [{"trial_id": "t1", "best_val_H": 40.0}]) is True
    assert store.write_part("trials", "t1", [{"trial_id": "t1", "best_val_H": 99.0}]) is False  # there: untouched
    assert store.write_part("trials", "t2", []) is False and not store.has_part("trials", "t2")  # no rows, no part
    assert store.write_part("trials", "t1", [{"trial_id": "t1", "best_val_H": 41.0}], replace=True) is True
    trials = store.read("trials")
    assert trials.best_val_H.tolist() == [41.0] and list(trials.columns) == schema("trials").names
    assert store.part_ids("trials") == {"t1"} and store.part_ids("final") == set()
    assert list(store.read("final").columns) == schema("final").names and store.read("final").empty


def test_a_folder_of_another_schema_is_refused_naming_both(tmp_path):
    from datetime import datetime, timezone

    import pytest

    from gzsl.errors import ResultsError
    from gzsl.results import SCHEMA_VERSION, ResultStore

    store = ResultStore(str(tmp_path / "old"))
    store.check_version()  # nothing there: nothing to refuse
    store.write_part("study", "run", [{"study": "s", "schema_version": SCHEMA_VERSION - 1, "resumed": False,
                                       "started_at": datetime.now(timezone.utc)}])
    with pytest.raises(ResultsError) as err:
        store.check_version()
    assert str(err.value) == (f"{tmp_path / 'old'}: results written by another version of gzsl (schema "
                              f"{SCHEMA_VERSION - 1}, this one reads {SCHEMA_VERSION}); run the study again into a new "
                              "--results folder, or read these with the gzsl that wrote them")
    unversioned = ResultStore(str(tmp_path / "older"))  # written before the column existed: schema 1
    unversioned.write_part("study", "run", [{"study": "s", "resumed": False, "started_at": datetime.now(timezone.utc)}])
    with pytest.raises(ResultsError, match=r"\(schema 1, this one reads"):
        unversioned.check_version()


def test_the_choice_on_a_committed_demo_folder_worked_out_by_hand():
    """tests/golden/demo-choice: trials.parquet and confirm.parquet of a demo run (python -m gzsl.tune
    --study demo --max-concurrent 1, 2026-12-06; benchmarks/measured/demo-max-concurrent-1-before-after-
    pipeline.txt), the columns the choice reads. Worked out by hand from the rows:
    - completed by best val H: 1c4a443f 55.56, 149a0bb0 55.43, 807b395d 54.51; the pruned bacc89dc never counts;
    - finalists (top 2): 1c4a443f, 149a0bb0, and the defaults' 68f4da7c (39.49, ranked 12th);
    - refit epochs (h_noise 2): 1c4a443f peaks at 24 with 55.56 but ends at 53.65, 1.91 below: within
      the noise, its last epoch 30; 149a0bb0 peaks at 24 with 55.43 and ends at 50.81, 4.62 below: 24;
    - fresh-split means: 149a0bb0 (49.17 + 57.43) / 2 = 53.30, 1c4a443f (46.47 + 57.84) / 2 = 52.15,
      defaults (39.41 + 41.77) / 2 = 40.59; the best challenger leads the defaults by 12.71 > 2: 149a0bb0,
      though the search ranked it second."""
    from gzsl.selection import ranked_trials

    folder = Path(__file__).parent / "golden" / "demo-choice"
    trials, confirm = pd.read_parquet(folder / "trials.parquet"), pd.read_parquet(folder / "confirm.parquet")
    assert list(ranked_trials(trials).trial_id[:3]) == ["1c4a443f", "149a0bb0", "807b395d"]
    assert [f["trial_id"] for f in finalists(trials, 2)] == ["1c4a443f", "149a0bb0", "68f4da7c"]
    by_id = trials.set_index("trial_id")
    assert refit_epoch(by_id.loc["1c4a443f"].to_dict(), 2.0) == 30 and refit_epoch(by_id.loc["149a0bb0"].to_dict(), 2.0) == 24
    assert set(confirm.trial_id) == {"1c4a443f", "149a0bb0", "68f4da7c"}
    assert confirm.set_index("trial_id").scored_epoch.to_dict() == {"149a0bb0": 24, "1c4a443f": 30, "68f4da7c": 30}
    pick, means = confirmed(trials, confirm, 2.0)
    assert pick["trial_id"] == "149a0bb0"
    assert {k: round(v, 2) for k, v in means.items()} == {"149a0bb0": 53.30, "1c4a443f": 52.15, "68f4da7c": 40.59}
    assert best_trial(trials)["trial_id"] == "1c4a443f"  # without the confirmation, the search's best
    # With a margin above the challenger's lead (12.71), the defaults would stay.
    assert confirmed(trials, confirm, 12.8)[0]["trial_id"] == "68f4da7c"
