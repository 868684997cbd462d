"""One write order leaves nothing half-recorded: a trial's row in trials.parquet commits its epochs."""

from __future__ import annotations

from types import SimpleNamespace

from gzsl.results import ResultStore
from gzsl.study import ParquetCallback
from gzsl.studyfile import load_study

STUDY = """
[study]
dataset = "synth-small"
[training]
epochs = 2
[space]
alpha = { low = 0.1, high = 10.0 }
"""


def finish(callback, tid: str, hs: list[float]) -> None:
    trial = SimpleNamespace(trial_id=tid, config={"alpha": 0.5}, experiment_tag=f"1_{tid}", path=None, error_file=None)
    callback.on_trial_start(0, [trial], trial)
    for epoch, h in enumerate(hs, 1):
        callback.on_trial_result(0, [trial], trial, {"epoch": epoch, "status": "running", "evaluated": True,
                                                     "val_U": h, "val_S": h, "val_H": h})
    callback.on_trial_complete(0, [trial], trial)


def test_a_kill_between_the_epochs_and_the_trial_row_is_replaced_by_the_rerun_and_unseen_before(tmp_path):
    from gzsl.report.records import read_results

    path = tmp_path / "order.toml"
    path.write_text(STUDY)
    spec = load_study(str(path))
    store = ResultStore(str(tmp_path / "results"))
    # The first attempts of t1 and t2 wrote their epochs, then the driver was killed before their rows.
    for tid in ("t1", "t2"):
        store.write_part("epochs", tid, [{"trial_id": tid, "epoch": e, "val_H": 99.0} for e in (1, 2)])
    finish(ParquetCallback(store, spec, log=lambda *_: None), "t1", [10.0, 20.0])  # t1's rerun
    epochs = store.read("epochs")
    assert sorted(epochs[epochs.trial_id == "t1"].val_H) == [10.0, 20.0]  # the rerun's, not the orphan's
    assert store.read("trials").best_val_H.tolist() == [20.0]
    r = read_results(str(tmp_path / "results"))
    assert set(r.epochs.trial_id) == {"t1"}  # t2's orphan epochs have no row: not shown
    # A trial already recorded is never rewritten (a duplicate completion after a resume).
    finish(ParquetCallback(store, spec, log=lambda *_: None), "t1", [30.0, 40.0])
    assert store.read("trials").best_val_H.tolist() == [20.0]
    assert sorted(store.read("epochs").query("trial_id == 't1'").val_H) == [10.0, 20.0]
