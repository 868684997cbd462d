"""The gate (gzsl.gate): every input refused before Ray starts, in one line, with no password shown."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from gzsl import gate
from gzsl.errors import ConfigError, ResultsError
from gzsl.results import SCHEMA_VERSION, ResultStore

STUDY = """
[study]
dataset = "synth-small"
[training]
epochs = 4
[resources]
cpu = {cpu}
pack = {pack}
[space]
alpha = {{ low = 0.1, high = 10.0 }}
"""


def args(study, **kw) -> SimpleNamespace:
    base = dict(study=str(study), gpu=None, data_root=None, num_samples=None, max_concurrent=None, num_cpus=2,
                optuna_storage=None, address=None, results=None, resume=False)
    return SimpleNamespace(**{**base, **kw})


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "second.toml"
    path.write_text(STUDY.format(cpu=1, pack=1))
    return path


def started(results, name: str, fingerprint: str = "0123456789abcdef", num_samples: int = 12) -> None:
    ResultStore(str(results)).write_part("study", "run-1", [{
        "study": name, "schema_version": SCHEMA_VERSION, "fingerprint": fingerprint, "resumed": False,
        "started_at": datetime.now(timezone.utc), "num_samples": num_samples}])


def test_mask_hides_every_password_whatever_the_url_looks_like():
    assert gate.mask("postgresql://u:PASSWORD@host/db") == "postgresql://u:***@host/db"
    assert gate.mask("gzsl:PASSWORD@db.example/optuna") == "gzsl:***@db.example/optuna"
    assert gate.mask("a://x:p%40ss@h:5432/d and b://y:q@h") == "a://x:***@h:5432/d and b://y:***@h"
    assert gate.mask("sqlite:///results/optuna.db") == "sqlite:///results/optuna.db"  # nothing to hide


def test_a_folder_of_another_study_is_refused(tmp_path, study):
    results = tmp_path / "results"
    started(results, "first")
    with pytest.raises(ResultsError, match=r"that folder belongs to study first, not second; pass another --results"):
        gate.check(args(study, results=str(results)))


def test_a_folder_with_a_run_of_this_study_needs_resume(tmp_path, study):
    results = tmp_path / "results"
    spec = gate.check(args(study, results=str(results))).spec  # empty: fine
    started(results, "second", gate.fingerprint(spec))
    with pytest.raises(ResultsError, match="already holds a run of study second; add --resume"):
        gate.check(args(study, results=str(results)))
    assert gate.check(args(study, results=str(results), resume=True)).results == str(results)


def test_the_fingerprint_moves_with_any_kept_setting(study):
    spec = gate.check(args(study)).spec
    from dataclasses import replace

    assert gate.fingerprint(spec) == gate.fingerprint(replace(spec, num_samples=99))  # a budget is not a setting
    for change in (dict(epochs=5), dict(seed=1), dict(h_noise=3.0), dict(resources={"cpu": 2.0}), dict(space=())):
        assert gate.fingerprint(replace(spec, **change)) != gate.fingerprint(spec), change


def test_a_damaged_part_is_named_in_one_line(tmp_path, study):
    results = tmp_path / "results"
    started(results, "second")
    bad = results / "trials.parquet" / "part-x.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1 this is not parquet")
    whole = (rf"^{bad}: not a readable trials part \(.*\); it was damaged outside gzsl: restore it from a backup, "
             r"or move it out of the folder \(its rows are lost\)$")
    with pytest.raises(ResultsError, match=whole):
        gate.check(args(study, results=str(results), resume=True))
    with pytest.raises(ResultsError, match=whole):
        ResultStore(str(results)).read("trials")  # what gzsl.report reads


@pytest.mark.parametrize("cpu, pack", [(2, 1), (2, 2)])
def test_a_trial_that_asks_for_more_cpus_than_the_local_ray_has_is_refused(tmp_path, cpu, pack):
    path = tmp_path / "big.toml"
    path.write_text(STUDY.format(cpu=cpu, pack=pack))
    per = "executor" if pack > 1 else "trial"
    with pytest.raises(ConfigError, match=rf"resources.cpu = 2 per {per}, but the local Ray has --num-cpus 1"):
        gate.check(args(path, num_cpus=1))
    assert gate.check(args(path, num_cpus=1, address="auto")).address == "auto"  # a cluster may have them


def test_a_password_on_the_command_line_is_refused_and_one_in_the_environment_is_used(study, monkeypatch):
    monkeypatch.setattr(gate, "_connect", lambda *a: None)  # no database here: the URL's handling only
    url = "postgresql://u:PASSWORD@host/db"
    with pytest.raises(ConfigError) as err:
        gate.check(args(study, optuna_storage=url))
    assert "PASSWORD" not in str(err.value) and "export GZSL_OPTUNA_STORAGE=" in str(err.value)
    assert gate.check(args(study), environ={"GZSL_OPTUNA_STORAGE": url}).storage == url
    assert gate.check(args(study, optuna_storage="postgresql://u@host/db")).storage == "postgresql://u@host/db"


@pytest.mark.parametrize("url, message", [
    ("gzsl:PASSWORD@db.example/optuna", "gzsl:***@db.example/optuna: not a database URL"),
    ("postgresql://u:PASSWORD@host:port/db", "postgresql://u:***@host:port/db: not a valid database URL"),
])
def test_a_storage_url_that_is_not_one_is_refused_masked(study, url, message):
    with pytest.raises(ConfigError) as err:
        gate.check(args(study), environ={"GZSL_OPTUNA_STORAGE": url})
    assert str(err.value) == f"$GZSL_OPTUNA_STORAGE {message}" + str(err.value).split(message, 1)[1]
    assert "PASSWORD" not in str(err.value)


def test_ray_address_from_the_environment_is_said(study):
    checked = gate.check(args(study), environ={"RAY_ADDRESS": "ray://head:10001"})
    assert checked.address == "ray://head:10001"
    assert checked.notes == ["joining the Ray cluster at ray://head:10001 named by $RAY_ADDRESS (unset it for a "
                             "local Ray on this machine)"]
    assert gate.check(args(study, address="auto"), environ={"RAY_ADDRESS": "x"}).notes == []


def test_results_default_to_the_current_folder_locally_and_to_the_home_on_a_cluster(study, tmp_path, monkeypatch):
    """A `ray job submit` entrypoint runs in a temporary copy of the submitted folder: on a cluster,
    whichever way it is named, the results' default is under the home of the node the driver runs on."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    name = Path(study).stem
    assert gate.check(args(study), environ={}).results == str(tmp_path / "results" / name)
    on_cluster = str(tmp_path / "home" / "gzsl-results" / name)
    assert gate.check(args(study, address="auto"), environ={}).results == on_cluster
    assert gate.check(args(study), environ={"RAY_ADDRESS": "10.0.0.1:6379"}).results == on_cluster


@pytest.mark.parametrize("flags, message", [
    (dict(num_samples=0), "--num-samples must be in [1, 100000], got 0"),
    (dict(num_samples=10**9), "--num-samples must be in [1, 100000], got 1000000000"),
    (dict(max_concurrent=-1), "--max-concurrent must be in [0, 10000], got -1"),
    (dict(num_cpus=0), "--num-cpus must be in [1, 4096], got 0"),
])
def test_numbers_on_the_command_line_are_bounded(study, flags, message):
    with pytest.raises(ConfigError) as err:
        gate.check(args(study, **flags))
    assert str(err.value) == message


def test_tune_refuses_before_ray_starts(monkeypatch, tmp_path, study, capsys):
    """gzsl.tune's whole path to the gate, with ray.init made to fail: exit 2 and one masked line."""
    import ray

    from gzsl import tune

    def no_ray(*a, **k):
        raise AssertionError("ray.init called before the gate refused")

    monkeypatch.setattr(ray, "init", no_ray)
    results = tmp_path / "results"
    started(results, "first")
    assert tune.main(["--study", str(study), "--results", str(results)]) == 2
    assert capsys.readouterr().err == (f"error: {results}: that folder belongs to study first, not second; pass another "
                                       "--results folder (the default is results/second)\n")
    monkeypatch.setenv("GZSL_OPTUNA_STORAGE", "gzsl:PASSWORD@db/optuna")
    assert tune.main(["--study", str(study)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: $GZSL_OPTUNA_STORAGE gzsl:***@db/optuna") and "PASSWORD" not in err


def test_resume_keeps_the_budget_the_run_started_with(tmp_path, study):
    results = tmp_path / "results"
    spec = gate.check(args(study, results=str(results))).spec
    started(results, "second", gate.fingerprint(spec), num_samples=12)
    with pytest.raises(ConfigError) as err:
        gate.check(args(study, results=str(results), resume=True, num_samples=10))
    assert str(err.value) == (f"--num-samples 10: the run in {results} was started with a budget of 12 trials, which a "
                              "resumed run keeps; resume without --num-samples")
    assert gate.check(args(study, results=str(results), resume=True, num_samples=12)).results == str(results)


def test_resume_of_a_folder_with_no_run_says_so_before_ray_starts(monkeypatch, tmp_path, study, capsys):
    import ray

    from gzsl import tune

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("ray.init called"))
    results = tmp_path / "empty"
    assert tune.main(["--study", str(study), "--results", str(results), "--resume"]) == 2
    assert capsys.readouterr().err == (f"error: --resume: no interrupted study at {results}/tune/second; run without "
                                       "--resume to start one\n")


def test_a_file_uri_results_folder_is_read_and_owned_as_a_path_is(tmp_path, study):
    """--results as a pyarrow URI (file://, as s3:// would be): the same checks, through pyarrow's filesystem."""
    uri = f"file://{tmp_path}/results"
    started(uri, "first")
    assert ResultStore(uri).read("study").study.tolist() == ["first"]
    with pytest.raises(ResultsError, match="that folder belongs to study first, not second"):
        gate.check(args(study, results=uri))


def test_the_storage_is_opened_before_ray_starts(tmp_path, study):
    url = f"sqlite:///{tmp_path}/optuna.db"
    assert gate.check(args(study, optuna_storage=url)).storage == url
    with pytest.raises(ConfigError) as err:  # .invalid never resolves (RFC 2606)
        gate.check(args(study), environ={"GZSL_OPTUNA_STORAGE": "postgresql://u:PASSWORD@nohost.invalid/db"})
    assert str(err.value).startswith("$GZSL_OPTUNA_STORAGE postgresql://u:***@nohost.invalid/db: cannot open it (")
    assert "PASSWORD" not in str(err.value)
    with pytest.raises(ConfigError, match=r"port 99999999 is not a TCP port \(1-65535\)"):
        gate.check(args(study, optuna_storage="postgresql://u@db:99999999/x"))


def test_what_the_long_fuzz_run_found(tmp_path, study):
    """Two inputs a 20,000-example run of tests/test_fuzz.py found (docs/security.md): a storage URL
    holding a line break, and a part whose string bytes are not UTF-8 (it reads, then fails in use)."""
    with pytest.raises(ConfigError) as err:
        gate.check(args(study, optuna_storage="\n"))
    assert str(err.value).startswith("--optuna-storage '\\n': not a database URL")
    results = tmp_path / "results"
    started(results, "second")
    part = next((results / "study.parquet").glob("part-*.parquet"))
    raw = part.read_bytes()
    at = raw.index(b"second")
    part.write_bytes(raw[:at] + b"\x80" + raw[at + 1:])
    with pytest.raises(ResultsError, match=rf"^{part}: not a readable study part \("):
        ResultStore(str(results)).read("study")
