"""The Optuna study in a shared PostgreSQL database, as every cluster command runs it: a real
server started for this module (trust auth, 127.0.0.1, a free port), real Ray and Optuna, tiny
studies run through `gzsl.tune`'s main in this process (one local Ray for the module, so each
study costs seconds, not a Ray start). Skipped where PostgreSQL's server binaries are absent or
the server does not start; the missing-driver and heartbeat tests need no server."""

import functools
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from tests.test_study import INJECT, write_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    # Debian's postgresql package keeps initdb off PATH, in /usr/lib/postgresql/<version>/bin.
    for d in ([str(Path(found).resolve().parent)] if found else []) + sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                                                            reverse=True):
        if Path(d, "initdb").is_file() and Path(d, "pg_ctl").is_file():
            return Path(d)
    return None


def _stop_orphans(pg: Path, as_user: list) -> None:
    """Servers a previous run left behind when its process died without teardown (a local Ray
    whose GCS is killed ends its driver's process at once): stop them and remove their folders."""
    for home in glob.glob(os.path.join(tempfile.gettempdir(), "gzsl-pg-*")):
        try:
            os.kill(int(Path(home, "owner.pid").read_text()), 0)
            continue  # its test run is alive
        except FileNotFoundError:
            if time.time() - os.path.getmtime(home) < 300:
                continue  # a run that is starting its server right now
        except (OSError, ValueError):
            pass
        if Path(home, "data", "postmaster.pid").is_file():
            subprocess.run([*as_user, str(pg / "pg_ctl"), "-D", f"{home}/data", "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server for this module; yields its base URL (no database), stops it after."""
    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    as_user, owner = [], None
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the postgres user
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        if not shutil.which("runuser"):
            pytest.skip("running as root and runuser is missing: cannot start postgres as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
    _stop_orphans(pg, as_user)
    home = tempfile.mkdtemp(prefix="gzsl-pg-")  # not under pytest's tmp (root-only): the server user owns it
    Path(home, "owner.pid").write_text(str(os.getpid()))
    if owner:
        os.chown(home, owner.pw_uid, owner.pw_gid)
    data, log, port = f"{home}/data", f"{home}/server.log", _free_port()

    def run(*cmd):
        return subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)

    try:
        p = run(str(pg / "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        if p.returncode:
            pytest.skip(f"initdb failed: {(p.stderr or p.stdout).strip()[-300:]}")
        opts = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        p = run(str(pg / "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "60", "-o", opts, "start")
        if p.returncode:
            tail = Path(log).read_text()[-300:] if Path(log).is_file() else p.stderr
            pytest.skip(f"the PostgreSQL server did not start: {tail.strip()}")
        yield f"postgresql://postgres:sekret@127.0.0.1:{port}"  # trust auth: the password is never checked
    finally:
        if Path(data, "postmaster.pid").is_file():
            run(str(pg / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


def new_database(postgres: str, name: str) -> str:
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"{postgres}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{postgres}/{name}"


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One local Ray for the module; `gzsl.tune`'s ray.init then joins it (see tune). Its workers hold
    a study whose results are `.results` once the file `.hold_after` exists (tests/inject)."""
    import ray

    folder = tmp_path_factory.mktemp("held")
    held = SimpleNamespace(results=folder / "results", hold_after=folder / "hold-after")
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "GZSL_INJECT_FAULT", "GZSL_INJECT_HOLD", "GZSL_INJECT_HOLD_AFTER")}
    os.environ.update(PYTHONPATH=os.pathsep.join([INJECT, saved["PYTHONPATH"] or ""]), GZSL_INJECT_FAULT="hold-after",
                      GZSL_INJECT_HOLD=str(held.results / "trials.parquet"), GZSL_INJECT_HOLD_AFTER=str(held.hold_after))
    ray.init(address="local", num_cpus=2, log_to_driver=False, configure_logging=False, include_dashboard=False)
    yield held
    ray.shutdown()
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def tune(monkeypatch, capsys, study, results, *extra):
    """`python -m gzsl.tune --study STUDY --results RESULTS --no-report EXTRA...`, in this process:
    returns (exit code, stdout, stderr)."""
    import ray

    from gzsl import tune as cli

    init = getattr(ray.init, "func", ray.init)  # the real one, also on a second call in one test
    monkeypatch.setattr(ray, "init", functools.partial(init, ignore_reinit_error=True))
    for k, v in (("TUNE_MAX_PENDING_TRIALS_PG", "2"), ("RAY_AIR_NEW_OUTPUT", "0"), ("TUNE_GLOBAL_CHECKPOINT_S", "2")):
        monkeypatch.setenv(k, v)  # what main sets, restored after the test
    capsys.readouterr()
    rc = cli.main(["--study", str(study), "--results", str(results), "--no-report", *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def trials_of(url: str, name: str):
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def snapshot(url: str) -> dict:
    """Every study in the database and everything about its trials."""
    return {name: [(t.number, t.state, t.value, t.params, t.user_attrs, t.intermediate_values)
                           for t in trials_of(url, name)] for name in optuna.get_all_study_names(url)}


def _interrupt_after_first_trial(results: Path, stop: threading.Event) -> threading.Thread:
    """Ctrl-C's twin for a study running in this process: SIGUSR1, which Tune's fit handles the same way."""
    def watch():
        while not stop.is_set():
            if list((results / "trials.parquet").glob("part-*.parquet")):
                os.kill(os.getpid(), signal.SIGUSR1)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def seed_neighbour(url: str) -> None:
    """Another run's study in the same database, as gzsl's searcher leaves it: a COMPLETE trial, a
    PRUNED one, one RUNNING under its live driver and one whose driver died long ago."""
    import gzsl.study.search
    from gzsl.study import STALE_AFTER_S, StudySearcher, optuna_storage

    storage = optuna_storage(url)

    def driver(owner):
        return StudySearcher({"alpha": optuna.distributions.FloatDistribution(0.1, 10.0)}, study_name="neighbour",
                             storage=storage, max_epochs=3, owner=owner)

    live, dead = driver("elsewhere/live"), driver("elsewhere/dead")
    for tid, result in (("done", {"val_H": 12.5, "epoch": 3, "training_iteration": 3}),
                        ("pruned", {"val_H": 2.0, "epoch": 1, "training_iteration": 1})):
        live.suggest(tid)
        live.on_trial_result(tid, result)
        live.on_trial_complete(tid, result)
    live.suggest("running")
    now = gzsl.study.search.time.time
    gzsl.study.search.time.time = lambda: now() - 2 * STALE_AFTER_S
    try:
        dead.suggest("orphan")
    finally:
        gzsl.study.search.time.time = now


def test_a_study_in_postgres_resumes_there_beside_another_study(postgres, local_ray, tmp_path, monkeypatch,
                                                                capsys):
    """(a) the trials are in PostgreSQL; (b) an interrupted run resumes against the same database;
    (c) another study in that database keeps its trials as they were, RUNNING ones included."""
    url = new_database(postgres, "resume")
    seed_neighbour(url)
    neighbour = snapshot(url)["neighbour"]
    assert [state for _, state, *_ in neighbour] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                                     TrialState.RUNNING]
    # Once a trial is recorded, training holds (tests/inject, in the module's Ray): the run cannot
    # end before the interrupt, on any machine.
    study, results = write_study(tmp_path, name="pg", epochs=6, samples=6, final_seeds=0, grace=1), local_ray.results
    local_ray.hold_after.write_text("1")
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)  # never the default (exit) if Tune's is not set
    stop = threading.Event()
    watcher = _interrupt_after_first_trial(results, stop)
    try:
        monkeypatch.setenv("GZSL_OPTUNA_STORAGE", url)  # a password travels in the environment, never on argv
        rc, out, err = tune(monkeypatch, capsys, study, results)
    finally:
        stop.set()
        watcher.join()
        signal.signal(signal.SIGUSR1, previous)
    assert rc == 130 and "--resume" in out, out + err
    before = pd.read_parquet(results / "trials.parquet")
    assert 1 <= len(before) < 6
    assert not (results / "optuna.db").exists()  # no SQLite file beside the results: Optuna is in PostgreSQL
    finished = {t.user_attrs["tune_trial_id"] for t in trials_of(url, "pg") if t.state.is_finished()}
    assert set(before.trial_id) <= finished

    local_ray.hold_after.unlink()  # the resume runs free
    # Neither run writes its password anywhere.
    rc, out2, err2 = tune(monkeypatch, capsys, study, results, "--resume")
    assert rc == 0, out2 + err2
    assert "sekret" in url and "sekret" not in out + err + out2 + err2
    leaked = [f for f in results.rglob("*") if f.is_file() and b"sekret" in f.read_bytes()]
    assert leaked == [], leaked  # Tune's pickled searcher (its Optuna storage) included
    # Nor Ray's session folder (its logs, the workers' and the GCS's) nor its job table (the entrypoints).
    import ray

    session = Path(ray._private.worker.global_worker.node.get_session_dir_path())
    in_ray = [f for f in session.rglob("*") if f.is_file() and not f.is_symlink() and b"sekret" in f.read_bytes()]
    assert in_ray == [], in_ray
    assert "sekret" not in json.dumps(ray._private.state.jobs(), default=str)
    trials, epochs = pd.read_parquet(results / "trials.parquet"), pd.read_parquet(results / "epochs.parquet")
    assert len(trials) >= 6 and trials.trial_id.is_unique and set(before.trial_id) <= set(trials.trial_id)
    ot = trials_of(url, "pg")
    assert all(t.state != TrialState.RUNNING for t in ot)
    by_tid = {t.user_attrs.get("tune_trial_id"): t for t in ot if t.state.is_finished()}
    expect = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED}
    for row in trials.itertuples():
        assert by_tid[row.trial_id].state == expect[row.status]
        # Each recorded epoch's H is in Optuna. A trial the interrupt caught mid-run is rerun from epoch 1
        # by the resume; Optuna keeps the steps its first attempt reported beyond where the rerun
        # stopped (it has no call to erase one), so there may be more.
        recorded = epochs[epochs.trial_id == row.trial_id].dropna(subset=["val_H"])
        values = by_tid[row.trial_id].intermediate_values
        assert all(values.get(int(e)) is not None for e in recorded.epoch) and len(values) >= len(recorded)
    # Every trial names the results folder whose run asked it (what fail_stale_running goes by).
    assert {t.user_attrs["gzsl_owner"] for t in ot} == {str((results / "tune" / "pg").resolve())}
    after = snapshot(url)
    assert set(after) == {"neighbour", "pg"} and after["neighbour"] == neighbour


def test_a_new_run_refuses_a_study_name_the_database_already_holds(postgres, local_ray, tmp_path, monkeypatch,
                                                                   capsys):
    url = new_database(postgres, "taken")
    old = optuna.create_study(study_name="taken", storage=url, direction="maximize")
    old.tell(old.ask(), 30.0)
    study, results = write_study(tmp_path, name="taken", epochs=2, samples=2, final_seeds=0, grace=1), tmp_path / "r"
    monkeypatch.setenv("GZSL_OPTUNA_STORAGE", url)
    rc, out, err = tune(monkeypatch, capsys, study, results)
    assert rc == 2, out + err
    line = error_line(err)
    assert "study taken already has 1 trial(s)" in line and "127.0.0.1" in line and "/taken" in line
    assert "--resume" in line and "--optuna-storage" in line
    assert "sekret" not in out + err  # the URL's password is not printed
    assert [(t.state, t.value) for t in trials_of(url, "taken")] == [(TrialState.COMPLETE, 30.0)]
    assert not (results / "trials.parquet").exists()


def test_a_postgresql_url_without_its_driver_is_one_line_naming_the_fix(local_ray, tmp_path, monkeypatch, capsys):
    for driver in ("psycopg", "psycopg2"):  # SQLAlchemy 2.1's default for postgresql://, and 2.0's
        monkeypatch.setitem(sys.modules, driver, None)  # importing it now fails, as where it is not installed
    study = write_study(tmp_path, name="nodriver", epochs=2, samples=2, final_seeds=0, grace=1)
    monkeypatch.setenv("GZSL_OPTUNA_STORAGE", "postgresql://gzsl:sekret@db.example:5432/optuna")
    rc, out, err = tune(monkeypatch, capsys, study, tmp_path / "r")
    assert rc == 2, out + err
    line = error_line(err)
    assert "postgresql://" in line and "db.example" in line and 'pip install "gzsl[cluster]"' in line
    assert "sekret" not in out + err


@pytest.mark.parametrize("url, says", [
    ("postgresql://gzsl:sekret@127.0.0.1:{port}/optuna", "Connection refused"),  # nothing listens there
    ("postgres://gzsl:sekret@127.0.0.1:{port}/optuna", "Can't load plugin"),  # SQLAlchemy wants postgresql://
])
def test_a_storage_url_that_cannot_be_opened_is_a_config_error(url, says):
    from gzsl.errors import ConfigError
    from gzsl.study import optuna_storage

    with pytest.raises(ConfigError) as info:
        optuna_storage(url.format(port=_free_port()))
    message = str(info.value)
    assert "\n" not in message and "cannot open it" in message and says in message and "sekret" not in message


def test_stale_running_trials_are_this_folders_or_silent_ones_never_a_live_runs(tmp_path, monkeypatch):
    """Two live drivers and a dead one share a study: the one that finishes fails its own leftovers
    and the dead driver's trial, never the other live driver's (pending ones included)."""
    import gzsl.study.search
    from gzsl.study import HEARTBEAT_S, STALE_AFTER_S, StudySearcher, fail_stale_running, optuna_storage

    storage = optuna_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    space = {"alpha": optuna.distributions.FloatDistribution(0.1, 10.0)}
    clock = SimpleNamespace(time=time.time)
    monkeypatch.setattr(gzsl.study.search, "time", clock)

    def driver(owner):
        return StudySearcher(space, study_name="shared", storage=storage, max_epochs=3, owner=owner)

    here, live, dead = driver("results/here"), driver("results/live"), driver("results/dead")
    here.suggest("h1")  # this folder's own leftover: its study has finished, nothing runs it
    clock.time = lambda: time.time() - STALE_AFTER_S - 600
    dead.suggest("d1")  # its driver died long ago
    live.suggest("l1")
    live.suggest("l2")  # pending: no result of its own yet
    clock.time = time.time
    live.on_trial_result("l1", {"val_H": 10.0, "training_iteration": 1})  # a sign of life for all its trials
    optuna.load_study(study_name="shared", storage=storage).ask()  # not asked by gzsl: no heartbeat

    assert fail_stale_running(storage, "shared", owner="results/here") == 2
    states = [(t.user_attrs.get("gzsl_owner"), t.state.name) for t in trials_of(storage, "shared")]
    assert states == [("results/here", "FAIL"), ("results/dead", "FAIL"), ("results/live", "RUNNING"),
                      ("results/live", "RUNNING"), (None, "RUNNING")]
    # The heartbeat is throttled: a result within HEARTBEAT_S writes nothing.
    seen = {t.number: t.user_attrs["gzsl_seen"] for t in trials_of(storage, "shared") if "gzsl_seen" in t.user_attrs}
    clock.time = lambda: time.time() + HEARTBEAT_S / 2
    live.on_trial_result("l1", {"val_H": 11.0, "training_iteration": 2})
    assert {t.number: t.user_attrs["gzsl_seen"] for t in trials_of(storage, "shared")
            if "gzsl_seen" in t.user_attrs} == seen


def test_the_cluster_extra_holds_the_driver_a_postgresql_url_loads_and_the_cluster_installs_it():
    """Every documented cluster command passes --optuna-storage postgresql://...: the driver SQLAlchemy
    picks for that URL is in the `cluster` extra, and every way of installing gzsl on a cluster asks
    for the extra."""
    import sqlalchemy.engine

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    root = Path(__file__).resolve().parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    driver = sqlalchemy.engine.make_url("postgresql://h/db").get_dialect().driver  # psycopg (2.1), psycopg2 (2.0)
    package = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary"}[driver]
    assert any(req.startswith(package) for req in extras["cluster"]), (driver, extras["cluster"])
    assert any(req.startswith(package) for req in extras["test"])
    assert 'pip install --no-cache-dir -e "/home/ray/gzsl[cluster]"' in (root / "cluster" / "Dockerfile").read_text()
    launcher = (root / "cluster" / "aws-gpu.yaml").read_text()
    assert 'pip install -q -e "$HOME/gzsl[cluster]"' in launcher and "pip install -q -e ~/gzsl\n" not in launcher
