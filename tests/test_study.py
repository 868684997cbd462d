"""Studies run for real: a local Ray of 2 CPUs, a SQLite Optuna storage, Parquet files.
Each study here is small (synth-small, tiny hidden layers, a few epochs)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import ray_sessions, stop_ray_session
from gzsl.results import SCHEMA_VERSION, ResultStore, schema

INJECT = str(Path(__file__).parent / "inject")  # tests/inject/sitecustomize.py: faults and holds in Ray's workers
STUDY = """
[study]
dataset = "synth-small"
seed = 0
[training]
epochs = {epochs}
eval_every = {eval_every}
classifier = "{classifier}"
{training_extra}
[search]
num_samples = {samples}
max_concurrent = 2
final_seeds = {final_seeds}
max_failures = {max_failures}
[asha]
grace_period = {grace}
reduction_factor = 3
[confirm]
top = {confirm_top}
splits = {confirm_splits}
[resources]
cpu = 1
[space]
alpha = {{ low = 0.1, high = 10.0 }}
gamma = {{ low = 0.1, high = 10.0 }}
latent_size = {{ choices = {latent} }}
lr = {{ low = {lr_low}, high = {lr_high} }}
{space_extra}
"""


# Tiny layers, 3 steps an epoch: the studies of these tests check the machinery, whose assertions do
# not depend on the model's width; each epoch then costs milliseconds, not a second.
TINY = "hidden = [32, 32, 16, 16]\nbatch_size = 512"


def write_study(tmp_path, name="mini", epochs=24, samples=6, final_seeds=1, max_failures=0, latent="[32, 64]",
                lr_low=1e-3, lr_high=3e-3, grace=3, training_extra="", space_extra="", eval_every=1,
                classifier="fast", confirm_top=0, confirm_splits=0, tiny=True):
    """A small study file. Tiny layers (TINY, which learn next to nothing in a few epochs) unless
    `tiny` is False or training_extra gives `hidden`; the fast final classifier: CADA-VAE's recipe
    (the shipped studies' choice) costs seconds per evaluation; no confirmation unless asked for."""
    if tiny and "hidden" not in training_extra:
        training_extra = TINY + "\n" + training_extra
    path = tmp_path / f"{name}.toml"
    path.write_text(STUDY.format(epochs=epochs, samples=samples, final_seeds=final_seeds, max_failures=max_failures,
                                 latent=latent, lr_low=lr_low, lr_high=lr_high, grace=grace,
                                 training_extra=training_extra, space_extra=space_extra, eval_every=eval_every,
                                 classifier=classifier, confirm_top=confirm_top, confirm_splits=confirm_splits))
    return path


def tune_cmd(study, results, *extra):
    return [sys.executable, "-m", "gzsl.tune", "--study", str(study), "--results", str(results), "--num-cpus", "2",
            "--no-report", "--no-dashboard", *extra]


def run_tune(study, results, *extra, timeout=800, env=None):
    return subprocess.run(tune_cmd(study, results, *extra), capture_output=True, text=True, timeout=timeout, env=env)


def optuna_states(results, name):
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{results}/optuna.db")
    return [t.state.name for t in study.trials], study


def test_a_raising_and_a_diverging_trial_are_recorded_and_the_study_goes_on(tmp_path):
    # latent_size 4096 cannot be allocated (tests/inject raises a CUDA out-of-memory for it; a size that
    # truly cannot be is out of the study file's bounds); an lr of 500 diverges. The first trial is
    # method.md's defaults moved inside the space (latent 16, lr 1e-3), which trains to the end
    # whatever else happens; the two start points that follow, whatever TPE would propose, diverge
    # and error, in any order.
    study = write_study(tmp_path, name="faulty", epochs=3, samples=3, final_seeds=0, max_failures=1, grace=1,
                        latent="[16, 4096]", lr_low=1e-3, lr_high=1e3)
    study.write_text(study.read_text().replace(
        "max_failures = 1\n", "max_failures = 1\nstart = [{ lr = 500.0 }, { latent_size = 4096, lr = 0.01 }]\n"))
    results = tmp_path / "results"
    p = run_tune(study, results, env={**os.environ, "PYTHONPATH": os.pathsep.join([INJECT, os.environ.get("PYTHONPATH", "")]),
                                      "GZSL_INJECT_FAULT": "latent-4096"})
    assert p.returncode == 0, p.stdout + p.stderr
    trials = pd.read_parquet(results / "trials.parquet").set_index("trial_id")
    assert len(trials) == 3
    defaults = trials[trials.start == "defaults"]
    assert len(defaults) == 1
    assert (defaults.latent_size.iloc[0], defaults.lr.iloc[0]) == (16, 1e-3)
    assert defaults.status.iloc[0] in ("completed", "pruned") and defaults.best_val_H.notna().all()
    errors, diverged = trials[trials.status == "error"], trials[trials.status == "diverged"]
    assert len(errors) == 1 and len(diverged) == 1, trials[["status", "latent_size", "lr"]]
    assert (errors.latent_size == 4096).all()
    assert errors.error.str.contains("alloc|memory|overflow", case=False).all()
    # One line per errored trial, naming the file that keeps its traceback (not Tune's traceback itself).
    shown = re.findall(r"\(traceback: (.+?error\.txt)\)", p.stdout)
    assert len(shown) == len(errors) and all("alloc" in Path(f).read_text() for f in shown)
    assert "Trial task failed" not in p.stdout + p.stderr
    assert (diverged.best_val_H == 0).all() and (diverged.lr == 500.0).all() and (diverged.latent_size == 16).all()
    states, ostudy = optuna_states(results, "faulty")
    assert "RUNNING" not in states
    by_tid = {t.user_attrs.get("tune_trial_id"): t for t in ostudy.trials}
    assert all(by_tid[tid].state.name == "FAIL" for tid in errors.index if tid in by_tid)
    assert all(by_tid[tid].value == 0.0 for tid in diverged.index)


def test_a_study_whose_results_are_a_uri_writes_and_reads_them_through_pyarrow(tmp_path):
    """--results as a pyarrow filesystem URI (file://, as s3:// is on a cluster): every table, the
    refit's model and Tune's state land in that folder; the model is scored again by its URI; a
    second run into it asks for --resume."""
    study, uri = write_study(tmp_path, name="uri", epochs=2, samples=2, final_seeds=1, grace=2), \
        f"file://{tmp_path}/results"
    p = run_tune(study, uri)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    results = tmp_path / "results"
    trials, final = pd.read_parquet(results / "trials.parquet"), pd.read_parquet(results / "final.parquet")
    assert len(trials) == 2 and len(pd.read_parquet(results / "epochs.parquet")) == trials.epochs_run.sum()
    assert list(final.model) == ["models/seed1000.pt"] and (results / "models" / "seed1000.pt").is_file()
    assert (results / "tune" / "uri").is_dir() and f"results in {uri}" in p.stdout
    scored = subprocess.run([sys.executable, "-m", "gzsl.predict", "--model", f"{uri}/models/seed1000.pt"],
                            capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads(scored.stdout.strip().splitlines()[-1])["U"] == pytest.approx(final.test_U[0], abs=0.006)
    again = run_tune(study, uri)
    assert again.returncode == 2 and "add --resume" in again.stderr and "Traceback" not in again.stderr


def test_a_study_in_which_no_trial_scores_says_so_and_exits_1(tmp_path):
    """Every configuration of this space cannot be allocated (tests/inject): both trials error, the
    run says there is nothing to choose or refit, exit 1, and the two errors stay recorded. The file
    is written for GPUs (resources.gpu = 1) and runs on this CPU-only machine unedited with `--gpu 0`:
    study.parquet records what the trials got."""
    study = write_study(tmp_path, name="none", epochs=2, samples=2, final_seeds=1, grace=2, latent="[4096]")
    study.write_text(study.read_text().replace("cpu = 1\n", "cpu = 1\ngpu = 1\n"))
    results = tmp_path / "results"
    p = run_tune(study, results, "--gpu", "0", env={
        **os.environ, "PYTHONPATH": os.pathsep.join([INJECT, os.environ.get("PYTHONPATH", "")]),
        "GZSL_INJECT_FAULT": "latent-4096"})
    assert p.returncode == 1, p.stdout + p.stderr
    assert json.loads(ResultStore(str(results)).read("study").resources.iloc[0]) == {"cpu": 1.0, "gpu": 0.0}
    assert p.stdout.strip().splitlines()[-1] == "no trial finished with a score: nothing to refit"
    assert "Traceback" not in p.stderr
    trials = pd.read_parquet(results / "trials.parquet")
    assert list(trials.status) == ["error", "error"]
    assert not (results / "final.parquet").exists()


def _parts(folder: Path) -> int:
    return len(list(folder.glob("part-*.parquet"))) if folder.is_dir() else 0


def test_a_killed_packed_study_resumes_without_lost_or_duplicated_rows(tmp_path):
    """A packed study ([resources] cpu = 2, pack = 4: one worker of the machine's two CPUs, training
    up to four configurations as one fused model, so that trials in flight at once share it),
    interrupted twice: Ctrl-C (Tune saves its state, the driver stops with exit 130 and says how
    to resume), then, during the resumed run, SIGKILL of the driver and the local
    Ray it started (nothing saved at that moment). The file's budget is 12; the run is started
    with --num-samples 10, which a resume need not repeat. Tune, Optuna, ASHA and the Parquet files
    still see one trial per configuration, and each resume starts new executors. (An unpacked
    study's resume: tests/test_postgres.py.)"""
    study, results = write_study(tmp_path, name="crash", epochs=3, samples=12, final_seeds=0, grace=1), \
        tmp_path / "results"
    study.write_text(study.read_text().replace("cpu = 1\n", "cpu = 2\npack = 4\n")
                     .replace("max_concurrent = 2", "max_concurrent = 4"))
    rows = []
    for run, (args, how) in enumerate(((["--num-samples", "10"], signal.SIGINT), (["--resume"], signal.SIGKILL))):
        parts = len(rows[-1]) + 1 if rows else 2  # members of a pack often end together
        # Once `parts` trials are recorded, the executor holds (tests/inject): the run cannot end
        # before it is stopped, however fast or slow this machine is.
        (tmp_path / "hold-after").write_text(str(parts))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([INJECT, os.environ.get("PYTHONPATH", "")]),
               "GZSL_INJECT_FAULT": "hold-after", "GZSL_INJECT_HOLD": str(results / "trials.parquet"),
               "GZSL_INJECT_HOLD_AFTER": str(tmp_path / "hold-after")}
        proc = subprocess.Popen(tune_cmd(study, results, *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
        deadline = time.time() + 900
        while _parts(results / "trials.parquet") < parts and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert proc.poll() is None, f"study ended before it could be stopped: {proc.communicate()[0].decode()}"
        if how == signal.SIGINT:  # Ctrl-C: Tune saves its state and the driver stops
            proc.send_signal(signal.SIGINT)
            out = proc.communicate(timeout=600)[0].decode()
            assert proc.returncode == 130 and "--resume" in out
            assert "packed trials: 1 executor(s) x 4 members" in out
        else:  # the driver and the local Ray it started die at once
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for session in ray_sessions():  # its own Ray only (named by the driver's pid), never another
                if session.endswith(f"_{proc.pid}"):
                    stop_ray_session(session)
        rows.append(pd.read_parquet(results / "trials.parquet"))
    assert 2 <= len(rows[0]) < len(rows[1]) < 10

    p = run_tune(study, results, "--resume")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ASHA: rungs rebuilt from the" in p.stdout
    trials = pd.read_parquet(results / "trials.parquet")
    epochs = pd.read_parquet(results / "epochs.parquet")
    # Tune's experiment state is saved every 2 s: a trial that finished after the last save is
    # unknown to the resumed run, which proposes a new one in its place (one more row, no duplicate).
    assert 10 <= len(trials) <= 12 and trials.trial_id.is_unique
    # Each resumed run kept the first run's budget, --num-samples 10, not the file's 12.
    runs = pd.read_parquet(results / "study.parquet").sort_values("started_at")
    assert list(runs.resumed.astype(bool)) == [False, True, True] and list(runs.num_samples) == [10, 10, 10]
    assert set(rows[0].trial_id) <= set(rows[1].trial_id) <= set(trials.trial_id)  # nothing lost
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert len(epochs) == trials.epochs_run.sum()
    states, _ = optuna_states(results, "crash")
    assert "RUNNING" not in states
    assert pq.read_schema(next((results / "trials.parquet").glob("part-*.parquet"))).names == schema("trials").names
    assert trials.executor_id.str.fullmatch(r"gzsl-crash-[0-9a-f]{8}-executor-\d+").all() and trials.executor_id.nunique() == 1
    side_by_side = [(g.started_at.shift(-1) < g.ended_at).any() for _, g in trials.sort_values("started_at")
                    .groupby("executor_id")]
    assert any(side_by_side), trials[["executor_id", "started_at", "ended_at"]]  # members trained together


def _killed_once(tmp_path, study, results, args, folder: str, parts: int) -> str:
    """Runs gzsl.tune and SIGKILLs the driver and the local Ray it started once `folder` (a table
    of the results) has `parts` parts: from then on every epoch waits (tests/inject "hold-after"),
    so the kill lands inside that step whatever this machine's speed. Returns what it printed."""
    (tmp_path / "hold-after").write_text(str(parts))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([INJECT, os.environ.get("PYTHONPATH", "")]),
           "GZSL_INJECT_FAULT": "hold-after", "GZSL_INJECT_HOLD": str(results / folder),
           "GZSL_INJECT_HOLD_AFTER": str(tmp_path / "hold-after")}
    out = tmp_path / f"out-{folder}.txt"
    with open(out, "w") as f:
        proc = subprocess.Popen(tune_cmd(study, results, *args), stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
        deadline = time.time() + 600
        while _parts(results / folder) < parts and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert proc.poll() is None, f"the run ended before {folder} had {parts} part(s): {out.read_text()}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for session in ray_sessions():  # its own Ray only (named by the driver's pid), never another
        if session.endswith(f"_{proc.pid}"):
            stop_ray_session(session)
    return out.read_text()


def test_an_unpacked_study_killed_in_its_search_confirmation_and_refit_resumes_each_where_it_stopped(tmp_path):
    """SQLite storage, one trial per worker, and SIGKILL (nothing saved at that moment) three times:
    during the search, during the confirmation, during the refit. Each resume goes on from what
    the Parquet files hold: no trial, split or seed is lost, none is recorded twice, and a
    confirmation or refit already written is not trained again."""
    study = write_study(tmp_path, name="steps", epochs=3, samples=4, final_seeds=2, grace=3, eval_every=3,
                        latent="[16]", confirm_top=1, confirm_splits=2)
    results = tmp_path / "results"
    one = ["--num-cpus", "1"]  # one task at a time: the one after the first part waits at its first epoch
    _killed_once(tmp_path, study, results, one, "trials.parquet", 1)
    searched = set(pd.read_parquet(results / "trials.parquet").trial_id)
    assert 1 <= len(searched) < 4
    _killed_once(tmp_path, study, results, ["--resume", *one], "confirm.parquet", 1)
    trials = pd.read_parquet(results / "trials.parquet")
    assert len(trials) == 4 and trials.trial_id.is_unique and searched <= set(trials.trial_id)
    # The finalists, from the rows: the best completed trial by its search H (ties, as tiny layers
    # after 3 epochs all score H 0: the earlier trial), and the defaults' trial.
    done = trials[trials.status == "completed"]
    top = max(done.itertuples(), key=lambda t: (t.best_val_H, -t.trial_number)).trial_id
    expected = {top, trials.loc[trials.start == "defaults", "trial_id"].iloc[0]}
    confirmed_first = {f.name: f.stat().st_mtime_ns for f in (results / "confirm.parquet").glob("part-*.parquet")}
    assert len(confirmed_first) == 1
    printed = _killed_once(tmp_path, study, results, ["--resume", *one], "final.parquet", 1)
    assert printed.count("confirm trial ") == 2 * len(expected) - len(confirmed_first)  # only the pairs not written
    refit_first = {f.name: f.stat().st_mtime_ns for f in (results / "final.parquet").glob("part-*.parquet")}
    assert len(refit_first) == 1

    p = run_tune(study, results, "--resume")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "confirm trial " not in p.stdout and p.stdout.count("final refit seed ") == 1
    after = pd.read_parquet(results / "trials.parquet")
    assert after.sort_values("trial_id").reset_index(drop=True).equals(trials.sort_values("trial_id").reset_index(drop=True))
    confirm = pd.read_parquet(results / "confirm.parquet")
    assert not confirm.duplicated(["trial_id", "val_split"]).any()
    assert set(confirm.trial_id) == expected and set(confirm.val_split) == {1, 2} and len(confirm) == 2 * len(expected)
    for tid, rows in confirm.groupby("trial_id"):  # each finalist's mean over its two fresh splits, as printed
        assert f"trial {tid}" in p.stdout and re.search(rf"trial {tid}.*fresh splits mean {rows.val_H.mean():.2f}", p.stdout)
    for name, mtime in confirmed_first.items():  # written before the kill: kept, not trained again
        assert (results / "confirm.parquet" / name).stat().st_mtime_ns == mtime
    final = pd.read_parquet(results / "final.parquet")
    assert sorted(final.seed) == sorted(set(final.seed)) and len(final) == 2
    for name, mtime in refit_first.items():
        assert (results / "final.parquet" / name).stat().st_mtime_ns == mtime
    assert len(list((results / "models").glob("*"))) == 2
    states, _ = optuna_states(results, "steps")
    assert "RUNNING" not in states


@pytest.mark.parametrize("args, message", [
    (["--study", "no_such_study"], "no such study file"),
    (["--study", "demo", "--num-samples", "0"], "--num-samples must be in [1, 100000], got 0"),
    (["--study", "demo", "--results", "s3://u:pw@bucket/r?x=1"], "--results s3://bucket/r: holds a password; give "
                                                                  "credentials through the environment"),
    (["--study", "demo", "--results", "s3://bucket/r?secret_key=pw"], "holds secret_key in its query"),
])
def test_bad_study_input_is_one_line_exit_2(args, message):
    p = subprocess.run([sys.executable, "-m", "gzsl.tune", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert message in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def _torch_sees_a_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_torch_sees_a_gpu(), reason="this machine has a GPU")
def test_a_local_packed_study_that_asks_for_a_gpu_here_without_one_is_one_line_exit_2(tmp_path):
    """Its executor could never be placed and the study would wait forever: refused before Ray starts."""
    study, results = write_study(tmp_path, name="nogpu"), tmp_path / "results"
    study.write_text(study.read_text().replace("cpu = 1\n", "cpu = 1\ngpu = 1\npack = 2\n"))
    p = run_tune(study, results, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "resources.gpu = 1" in p.stderr and "no GPU" in p.stderr and "gpu = 0" in p.stderr
    assert "results:" not in p.stdout and not (results / "tune").exists()  # Ray never started


def test_a_gpu_flag_that_cannot_be_used_here_is_one_line_naming_it(tmp_path):
    """A --gpu torch cannot use here, or no share at all, is one line naming the flag, before Ray
    starts. (`--gpu 0` running a GPU study file here: test_a_study_in_which_no_trial_scores_...)"""
    study = write_study(tmp_path, name="gpuflag", epochs=2, samples=1, grace=1)
    study.write_text(study.read_text().replace("cpu = 1\n", "cpu = 1\ngpu = 1\n"))
    if not _torch_sees_a_gpu():
        p = run_tune(study, tmp_path / "other", "--gpu", "0.5", timeout=120)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert p.stderr.startswith("error: --gpu 0.5, but torch sees no GPU") and "--gpu 0" in p.stderr
    for bad, why in (("-1", "must be a finite number >= 0"), ("1.5", "not schedulable")):
        p = run_tune(study, tmp_path / "bad", "--gpu", bad, timeout=120)
        assert p.returncode == 2 and f"--gpu {bad}: " in p.stderr and why in p.stderr, p.stderr


def _started_run(tmp_path, **study):
    """A study file and a results folder holding the start of its run (study.parquet's first row, and
    Tune's tuner.pkl, which is what --resume looks for); returns (study file, results)."""
    from gzsl.studyfile import load_study
    from gzsl.study import study_row, tune_storage

    path, results = write_study(tmp_path, name="changed", **{"tiny": False, **study}), tmp_path / "results"
    spec = load_study(str(path))
    ResultStore(str(results)).write_part("study", "run-1", [study_row(spec, resumed=False, early_stopping=True)])
    experiment = Path(tune_storage(str(results))) / spec.name
    experiment.mkdir(parents=True)
    (experiment / "tuner.pkl").write_bytes(b"")
    return path, results


@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace("epochs = 24", "epochs = 20"), "training.epochs = 20"),
    (lambda t: t.replace("high = 0.003", "high = 0.01"), "space.lr"),
    (lambda t: t.replace("cpu = 1\n", "cpu = 2\npack = 4\n"), "resources.pack = 4"),
    (lambda t: t.replace("grace_period = 3", "grace_period = 4"), "asha.grace_period = 4"),
    (lambda t: t.replace("seed = 0", "seed = 1"), "study.seed = 1"),
    (lambda t: t.replace('classifier = "fast"', 'classifier = "fast"\nkl_weight = 2'), "training.kl_weight = 2"),
    (lambda t: t.replace('classifier = "fast"', 'classifier = "fast"\nbatch_size = 64'), "training.batch_size = 64"),
    (lambda t: t.replace("eval_every = 1", "eval_every = 3"), "training.eval_every = 3"),
    (lambda t: t.replace('classifier = "fast"', 'classifier = "fast"\nhidden = [64, 64, 32, 32]'),
     "training.hidden = [64, 64, 32, 32]"),
], ids=["epochs", "space", "pack", "grace_period", "seed", "kl_weight", "batch_size", "eval_every", "hidden"])
def test_resume_refuses_a_study_file_changed_since_the_run_started(tmp_path, edit, key):
    from gzsl.errors import ConfigError
    from gzsl.studyfile import load_study
    from gzsl.study import check_start

    path, results = _started_run(tmp_path)
    check_start(load_study(str(path)), str(results), resume=True)  # unchanged: resumes
    path.write_text(edit(path.read_text()))
    with pytest.raises(ConfigError) as err:
        check_start(load_study(str(path)), str(results), resume=True)
    assert key in str(err.value) and "\n" not in str(err.value) and "--resume" in str(err.value)


def test_resume_without_the_gpu_flag_the_run_started_with_names_it(tmp_path):
    from gzsl.errors import ConfigError
    from gzsl.studyfile import load_study, with_gpu
    from gzsl.study import check_start, study_row, tune_storage

    path, results = write_study(tmp_path, name="gpu"), tmp_path / "results"
    path.write_text(path.read_text().replace("cpu = 1\n", "cpu = 1\ngpu = 0.5\n"))
    spec = load_study(str(path))  # started as `--gpu 0`
    ResultStore(str(results)).write_part("study", "run-1", [study_row(with_gpu(spec, 0), resumed=False,
                                                                      early_stopping=True)])
    experiment = Path(tune_storage(str(results))) / spec.name
    experiment.mkdir(parents=True)
    (experiment / "tuner.pkl").write_bytes(b"")
    check_start(with_gpu(spec, 0), str(results), resume=True)  # the same --gpu again: resumes
    with pytest.raises(ConfigError) as err:
        check_start(spec, str(results), resume=True)
    assert "resources.gpu = 0.5" in str(err.value) and "--gpu 0.0" in str(err.value)


def test_resume_after_a_pack_change_is_one_line_exit_2(tmp_path):
    path, results = _started_run(tmp_path)
    path.write_text(path.read_text().replace("cpu = 1\n", "cpu = 2\npack = 2\n"))
    p = run_tune(path, results, "--resume", timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "resources.pack = 2" in p.stderr and "started with 1" in p.stderr


def _asha(**kw):
    from gzsl.study import NoiseAwareASHA

    settings = dict(max_t=30, eval_every=1, grace_period=10, reduction_factor=3, h_floor=5.0, h_noise=2.0) | kw
    return NoiseAwareASHA(**settings)


def _report(s, trial_id, epoch, h):
    from types import SimpleNamespace

    return s.on_trial_result(None, SimpleNamespace(trial_id=trial_id), {"training_iteration": epoch, "val_H": h})


def test_the_tune_scheduler_stops_what_the_policy_stops_and_passes_epochs_without_h():
    """The rules themselves are held through the replayer (tests/test_selection.py); here, Tune's side:
    one rung (grace period 24, past the alignment rung, 23 of 30) judges once six trials reached it,
    then stops a trial far below its cutoff."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    s = _asha(grace_period=24)
    assert s.policy.rungs == [24]
    assert [_report(s, f"t{i}", 24, 40.0 + i) for i in range(6)] == [TrialScheduler.CONTINUE] * 6
    assert _report(s, "weak", 24, 12.0) == TrialScheduler.STOP  # cutoff of 40..45 and 12: 44.3, far above
    assert _report(s, "close", 24, 43.0) == TrialScheduler.CONTINUE  # within 2 H of the cutoff
    assert s.on_trial_result(None, SimpleNamespace(trial_id="x"), {"training_iteration": 24}) == TrialScheduler.CONTINUE
    assert "24: 8" in s.debug_string() and "stopped 1" in s.debug_string()


def test_a_stopping_rule_of_ones_own_plugs_into_the_scheduler():
    """The scheduler seam: Tune's adapter asks any gzsl.selection.StoppingRule. A rule written here
    (stop a trial below H 10 from epoch 5 on) is one class; NoStopping, the efficiency benchmark's
    FIFO baseline, stops nobody, however weak."""
    import math

    from ray.tune.schedulers import TrialScheduler

    from gzsl.selection import CONTINUE, STOP, NoStopping
    from gzsl.study import RuleScheduler

    class BelowTen:
        rungs, recorded, stopped, judging = [5], {5: {}}, {}, [5]

        def on_result(self, trial_id, epoch, h):
            if epoch >= 5 and h < 10:
                self.stopped[trial_id] = 5
                return STOP
            return CONTINUE

        def record(self, trial_id, curve, stopped=False):
            self.recorded[5][trial_id] = curve[-1][1]

        def agreement(self, rung):
            return math.nan

        def describe(self):
            return "5: below H 10"

    s = RuleScheduler(BelowTen())
    assert [_report(s, "weak", e, 3.0) for e in (4, 5)] == [TrialScheduler.CONTINUE, TrialScheduler.STOP]
    assert _report(s, "good", 5, 30.0) == TrialScheduler.CONTINUE
    assert s.debug_string() == "BelowTen: rungs (epoch: trials) 5: below H 10; stopped 1"
    epochs = pd.DataFrame({"trial_id": ["old", "old"], "epoch": [4, 5], "val_H": [1.0, 2.0]})
    assert s.restore_rungs(epochs, {"old"}) == 1 and s.policy.recorded[5] == {"old": 2.0}
    fifo = RuleScheduler(NoStopping())
    assert {_report(fifo, "weak", e, 0.5) for e in range(1, 31)} == {TrialScheduler.CONTINUE}
    assert fifo.policy.rungs == [] and fifo.debug_string().startswith("NoStopping: ")


def test_asha_rungs_rebuilt_after_a_resume_still_stop_a_weak_rerun_trial():
    """Tune restores the scheduler with empty rungs: a trial rerun after --resume would pass its rung
    unjudged, as the rung had not yet seen six trials. Rebuilt from epochs.parquet, the rung holds
    the trials that ended before the interruption and judges the rerun."""
    def rerun_decision(rebuild: bool):
        s = _asha(grace_period=24)
        ids = ["a", "b", "c", "d", "e", "f"]
        epochs = pd.DataFrame({"trial_id": [t for t in ids for _ in range(3)] + ["rerun"],
                               "epoch": [23, 24, 25] * 6 + [23],
                               "val_H": [h for k in range(6) for h in (1.0, 20.0 + k, 21.0 + k)] + [9.0]})
        epochs.loc[epochs.trial_id.eq("c") & epochs.epoch.eq(24), "val_H"] = None  # c: no H at 24, so 25 counts
        if rebuild:
            assert s.restore_rungs(epochs, ended=set(ids)) == 6
            assert s.policy.recorded[24] == {"a": 20.0, "b": 21.0, "c": 23.0, "d": 23.0, "e": 24.0, "f": 25.0}
        return _report(s, "rerun", 24, 10.0)

    assert rerun_decision(rebuild=False) == "CONTINUE"
    assert rerun_decision(rebuild=True) == "STOP"


def test_pending_trials_let_an_autoscaling_cluster_grow_by_several_nodes():
    from gzsl.study import pending_trials

    gpu_trial, cpu_trial = {"cpu": 1.0, "gpu": 0.25}, {"cpu": 1.0}
    # A CPU-only head of an autoscaling GPU cluster: no trial fits yet, 16 are requested.
    assert pending_trials(gpu_trial, {"CPU": 8.0}, num_samples=200, cluster=True) == 16
    assert pending_trials(gpu_trial, {"CPU": 64.0, "GPU": 8.0}, num_samples=200, cluster=True) == 64
    assert pending_trials(gpu_trial, {"CPU": 64.0, "GPU": 8.0}, num_samples=200, max_concurrent=10, cluster=True) == 10
    assert pending_trials(gpu_trial, {"CPU": 8.0}, num_samples=6, cluster=True) == 6
    # Locally: what the machine runs at once (each pending trial holds a TPE proposal).
    assert pending_trials(cpu_trial, {"CPU": 2.0}, num_samples=16) == 2
    assert pending_trials(cpu_trial, {"CPU": 0.5}, num_samples=16) == 1


def test_a_run_plan_spreads_trials_alone_or_in_executors():
    """plan_run: the one place a run's budget, executors, trials in flight and pending trials are
    worked out, alone ([resources] per trial) and packed (per executor, K members each)."""
    from dataclasses import replace

    from gzsl.study import RunPlan, plan_run
    from gzsl.studyfile import load_study

    demo = load_study("demo")  # cpu = 1 a trial, max_concurrent 2, 16 trials
    assert plan_run(demo, {"CPU": 2.0}) == RunPlan(num_samples=16, executors=0, concurrent=2, pending=2)
    assert plan_run(demo, {"CPU": 8.0}, num_samples=4, max_concurrent=0) == RunPlan(4, 0, 0, 4)
    packed = replace(demo, pack=4, resources={"cpu": 2.0}, max_concurrent=0)
    # Locally the executors that fit (one of two CPUs), each with 4 member slots.
    assert plan_run(packed, {"CPU": 2.0}) == RunPlan(16, 1, 4, 4)
    assert plan_run(packed, {"CPU": 8.0}, num_samples=6) == RunPlan(6, 4, 16, 6)
    # On a cluster that may grow: as many as the budget (or --max-concurrent) can use, fitting or not.
    assert plan_run(packed, {"CPU": 2.0}, cluster=True) == RunPlan(16, 4, 16, 16)
    assert plan_run(packed, {"CPU": 2.0}, max_concurrent=5, cluster=True) == RunPlan(16, 2, 8, 8)


# --------------------------------------------------------------------------- fixed and searched settings, no Ray run


def spec_of(tmp_path, training_extra="", space_extra=""):
    from gzsl.studyfile import load_study

    return load_study(str(write_study(tmp_path, training_extra=training_extra, space_extra=space_extra)))


def test_train_config_keeps_the_searched_sampling_a_string_and_passes_fixed_settings(tmp_path):
    from gzsl.study import train_config

    spec = spec_of(tmp_path, training_extra="beta = 2\nkl_weight = 0.5",
                   space_extra='sampling = { choices = ["textbook", "cada"] }')
    cfg = train_config(spec, {"alpha": "2.5", "latent_size": 32.0, "sampling": "cada", "trial_id": "x"}, seed=3)
    assert (cfg.alpha, cfg.latent_size, cfg.sampling, cfg.beta, cfg.kl_weight, cfg.seed) == (2.5, 32, "cada", 2.0,
                                                                                               0.5, 3)
    assert isinstance(cfg.latent_size, int)
    fixed = spec_of(tmp_path, training_extra='sampling = "textbook"')
    assert train_config(fixed, {"alpha": 1.0}, seed=0).sampling == "textbook"
    # A refit's params (read back from trials.parquet) repeat the fixed sampling: no clash.
    assert train_config(fixed, {"alpha": 1.0, "sampling": "textbook"}, seed=0).sampling == "textbook"
    assert train_config(spec_of(tmp_path), {"alpha": 1.0}, seed=0).sampling == "cada"  # method.md's default


def test_search_space_and_study_row_describe_sampling(tmp_path):
    import optuna

    from gzsl.study import search_space, study_row

    searched = spec_of(tmp_path, space_extra='sampling = { choices = ["textbook", "cada"] }')
    dist = search_space(searched)["sampling"]
    assert isinstance(dist, optuna.distributions.CategoricalDistribution) and dist.choices == ("textbook", "cada")
    row = study_row(searched, resumed=False, early_stopping=True)
    assert (row["beta"], row["kl_weight"], row["sampling"]) == (3.43, 0.25, "searched")
    fixed = spec_of(tmp_path, training_extra='sampling = "cada"\nkl_weight = 1\nbeta = 8.13')
    assert "sampling" not in search_space(fixed)
    row = study_row(fixed, resumed=True, early_stopping=True)
    assert (row["beta"], row["kl_weight"], row["sampling"]) == (8.13, 1.0, "cada")


def test_best_params_carry_sampling(tmp_path):
    from gzsl.study import best_params

    store = ResultStore(str(tmp_path / "new"))
    rows = [{"trial_id": f"t{i}", "trial_number": i, "status": "completed", "alpha": 1.0, "gamma": 1.0, "lam": 2.0,
             "latent_size": 32, "lr": 1e-3, "sampling": s, "last_val_H": h, "best_val_H": h, "best_epoch": 7}
            for i, (s, h) in enumerate((("textbook", 40.0), ("cada", 45.5)))]
    for row in rows:
        store.write_part("trials", row["trial_id"], [row])
    best = best_params(store)
    assert (best["trial_id"], best["sampling"], best["val_H"], best["epoch"]) == ("t1", "cada", 45.5, 7)


def test_results_of_another_schema_are_refused_in_one_line(tmp_path, capsys):
    """A folder whose study.parquet records no schema_version (written by an earlier gzsl) is not
    read half-filled with nulls: the report (and --resume, through the same check) says so in one
    line naming the folder and the way out, exit 2."""
    from gzsl.report.__main__ import main as report

    results = tmp_path / "old"
    store = ResultStore(str(results))
    store.write_part("trials", "t0", [{"trial_id": "t0", "trial_number": 0, "status": "completed", "alpha": 1.0,
                                       "gamma": 1.0, "lam": 2.0, "latent_size": 32, "lr": 1e-3, "sampling": "cada",
                                       "best_val_H": 40.0, "best_epoch": 2, "epochs_run": 2}])
    store.write_part("study", "run-1", [{"study": "old", "dataset": "synth-small", "resumed": False}])
    capsys.readouterr()
    assert report(["--results", str(results), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{results}: results written by another version of gzsl (schema 1, this one reads {SCHEMA_VERSION})" \
        in err[0] and "into a new --results folder" in err[0]
    assert not (tmp_path / "r.html").exists()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda(), reason="no CUDA device here: this runs where a GPU is")
@pytest.mark.parametrize("resources", ["gpu = 0.5", "gpu = 1\npack = 4"])
def test_trials_and_the_refit_train_on_the_gpus_tune_assigned(tmp_path, resources):
    """[resources] gpu = 0.5: two trials share the GPU, each trains on the device Ray gave it
    (ray.get_gpu_ids), and the refit scores on it too. gpu = 1 with pack = 4: one executor owns
    the GPU and trains up to four trials as one pack there."""
    study, results = write_study(tmp_path, epochs=4, samples=4, grace=2), tmp_path / "results"
    study.write_text(study.read_text().replace("cpu = 1\n", f"cpu = 1\n{resources}\n")
                     .replace("max_concurrent = 2", "max_concurrent = 4"))
    p = run_tune(study, results)  # the local Ray finds the GPU itself
    assert p.returncode == 0, p.stdout + p.stderr
    trials = pd.read_parquet(results / "trials.parquet")
    assert (trials.status == "completed").any()
    assert (trials.gpu_id != "").all() and (trials.gpu_mem_mb > 0).all(), trials[["gpu_id", "gpu_mem_mb"]]
    if "pack" in resources:
        assert trials.executor_id.nunique() == 1 and "packed trials: 1 executor(s) x 4 members" in p.stdout
    final = pd.read_parquet(results / "final.parquet")
    assert len(final) == 1 and final.test_H.iloc[0] > 0


AUDIT_SCRIPT = """
import sys, pandas as pd, ray
from gzsl import study
from gzsl.datasets import load
from gzsl.results import ResultStore
from gzsl.studyfile import load_study
spec = load_study(sys.argv[1])
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
t0 = pd.Timestamp("2026-12-06", tz="UTC")
trials = pd.DataFrame({"trial_id": ["kept", "cut"], "status": ["completed", "pruned"], "epochs_run": [4, 2],
                       "last_val_H": [30.0, 1.5], "ended_at": [t0, t0], "alpha": [1.0, 2.0], "gamma": [1.0, 0.5],
                       "latent_size": [32, 32], "lr": [1e-3, 2e-3]})
rows = study.audit(spec, trials, load(spec.dataset, spec.split, seed=spec.seed), ResultStore(sys.argv[2]))
print(rows.to_json(orient="records"))
"""


def test_the_audit_retrains_a_stopped_trial_to_the_end_as_its_trial_would_have_run(tmp_path):
    """gzsl.study.audit on a real local Ray, [asha] audit = 1: the trial stopped at epoch 2 of 4 is
    retrained from scratch to epoch 4 with the study's seed, and its H at each epoch is the H of
    the same configuration trained to the end by the trainer alone (the run the trial would have
    had); the completed trial is not audited; the row lands in audit.parquet."""
    import json

    import torch

    from gzsl.datasets import load
    from gzsl.trainer import TrainConfig, train

    path = write_study(tmp_path, epochs=4, samples=2, grace=4, eval_every=1,
                       training_extra="", space_extra="")
    path.write_text(path.read_text().replace("reduction_factor = 3", "reduction_factor = 3\naudit = 1"))
    results = tmp_path / "results"
    p = subprocess.run([sys.executable, "-c", AUDIT_SCRIPT, str(path), str(results)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = json.loads(p.stdout.strip().splitlines()[-1])
    assert [r["trial_id"] for r in rows] == ["cut"] and rows[0]["epochs_run"] == 4 and rows[0]["stopped_epoch"] == 2
    assert ResultStore(str(results)).part_ids("audit") == {"cut"}
    torch.set_num_threads(1)
    data = load("synth-small", "val", seed=0)
    from gzsl.studyfile import load_study

    cfg = TrainConfig(alpha=2.0, gamma=0.5, latent_size=32, lr=2e-3, epochs=4, eval_every=1, batch_size=50,
                      classifier="fast", seed=0, hidden=_hidden(), eval_at=load_study(str(path)).eval_at)
    hs = [(r.epoch, r.scores.H) for r in train(data, cfg) if r.scores is not None]  # at eval_at only
    best = max(hs, key=lambda eh: eh[1])
    assert rows[0]["best_val_H"] == pytest.approx(best[1], abs=1e-9) and rows[0]["best_epoch"] == best[0]
    assert rows[0]["last_val_H"] == pytest.approx(hs[-1][1], abs=1e-9)


def _hidden():
    from gzsl.datasets import default_hidden

    return default_hidden("synth-small")
