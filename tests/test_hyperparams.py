"""The searched hyperparameters are described once (gzsl.hyperparams): a row added to a copy of the
table reaches a study's space and first trial, a trial's TrainConfig, the Parquet row and the
`python -m gzsl.train` flags, with no other edit."""

from types import SimpleNamespace

import optuna
import pytest

from gzsl import hyperparams
from gzsl.errors import ConfigError
from gzsl.hyperparams import Hyperparameter

STUDY = """
[study]
dataset = "synth-small"
[training]
epochs = 2
[space]
alpha = { low = 0.1, high = 10.0 }
beta = { low = 1.0, high = 10.0 }
"""

# beta (the distance weight inside L_MA) is a TrainConfig field that method.md fixes: here, searched.
BETA = Hyperparameter("beta", float, 3.43, "distance weight inside L_MA")


@pytest.fixture
def with_beta(monkeypatch):
    monkeypatch.setattr(hyperparams, "SEARCHED", hyperparams.SEARCHED + (BETA,))


def write(tmp_path, text=STUDY):
    path = tmp_path / "beta.toml"
    path.write_text(text)
    return str(path)


def test_a_new_row_reaches_the_space_and_a_trials_config(with_beta, tmp_path):
    from gzsl.study.search import search_space
    from gzsl.study.trial import train_config
    from gzsl.studyfile import load_study

    spec = load_study(write(tmp_path))
    assert search_space(spec)["beta"] == optuna.distributions.FloatDistribution(1.0, 10.0, log=True)
    assert spec.start[0] == ("defaults", {"alpha": 1.0, "beta": 3.43})
    assert train_config(spec, {"alpha": 0.5, "beta": "2.5"}, seed=0).beta == 2.5  # cast from what Tune passes


def test_a_new_row_is_checked_as_its_kind_says(with_beta, tmp_path):
    from gzsl.studyfile import load_study

    path = write(tmp_path, STUDY.replace("low = 1.0, high = 10.0", "low = 0, high = 10.0, log = false"))
    with pytest.raises(ConfigError, match=r"space\.beta\.low: beta must stay > 0, got 0$"):
        load_study(path)
    path = write(tmp_path, STUDY.replace("epochs = 2", "epochs = 2\nbeta = 2.0"))
    with pytest.raises(ConfigError, match=r"space\.beta: searched, and also fixed by training\.beta = 2\.0"):
        load_study(path)


def test_a_new_row_reaches_the_parquet_row(with_beta, tmp_path):
    from gzsl.results import ResultStore, schema
    from gzsl.study import ParquetCallback
    from gzsl.studyfile import load_study

    spec = load_study(write(tmp_path))
    store = ResultStore(str(tmp_path / "results"))
    callback = ParquetCallback(store, spec, log=lambda *_: None)
    trial = SimpleNamespace(trial_id="t1", config={"alpha": 0.5, "beta": 2.5}, experiment_tag="1_alpha=0.5",
                            path=None, error_file=None)
    callback.on_trial_start(0, [trial], trial)
    for epoch in (1, 2):
        callback.on_trial_result(0, [trial], trial, {"epoch": epoch, "status": "running", "evaluated": True,
                                                     "val_U": 10.0, "val_S": 20.0, "val_H": 13.3})
    callback.on_trial_complete(0, [trial], trial)
    assert schema("trials").field("beta").type == "double" and "beta" in schema("final").names
    row = store.read("trials").iloc[0]
    assert (row.alpha, row.beta, row.status) == (0.5, 2.5, "completed")


def test_a_new_row_reaches_the_cli(with_beta, capsys):
    from gzsl.train import config_from_args, parser

    assert config_from_args(parser().parse_args(["--beta", "2", "--alpha", "0.5"])).beta == 2.0
    assert config_from_args(parser().parse_args([])).beta == 3.43
    with pytest.raises(SystemExit):
        parser().parse_args(["--beta", "0"])
    assert "argument --beta: must be a finite number > 0, got 0" in capsys.readouterr().err


def test_the_table_is_the_models():
    """Each row sets a TrainConfig field whose default is the row's (method.md's) value."""
    from gzsl.trainer import TrainConfig

    for h in hyperparams.SEARCHED:
        assert isinstance(getattr(TrainConfig(), h.name), h.kind) and getattr(TrainConfig(), h.name) == h.default


@pytest.mark.parametrize("row", [("beta", float, 0.0, "at 0"), ("beta", list, [1], "a list"),
                                 ("mode", str, "a", "no choices")])
def test_a_row_that_cannot_describe_a_hyperparameter_is_refused(row):
    with pytest.raises(ValueError, match=f"hyperparameter {row[0]}: kind must be"):
        Hyperparameter(*row)


def test_each_rule_of_a_row_says_what_is_wrong():
    """The table's own checks, message by message (what mutation testing found unchecked)."""
    import argparse

    import optuna

    with pytest.raises(KeyError, match="bogus: not a searched hyperparameter; expected one of alpha, gamma"):
        hyperparams.get("bogus")
    for bad in (dict(kind=list, default=1), dict(kind=str, default="a"), dict(kind=float, default=0.0),
                dict(kind=int, default=2, choices=("a",))):
        with pytest.raises(ValueError, match="kind must be one of float, int, str"):
            hyperparams.Hyperparameter("x", help="", **bad)
    lr, latent = hyperparams.get("lr"), hyperparams.get("latent_size")
    assert latent.problem("16") == "expected a positive integer" and lr.problem("x") == "expected a number"
    assert lr.problem(True) == "expected a number" and latent.problem(16.5) == "expected a positive integer"
    assert lr.problem(float("inf")) == "expected a number" and lr.problem(0.0) == "lr must stay > 0"
    assert lr.problem(1e3) is None and lr.problem(1001.0) == "lr must stay <= 1000" and latent.problem(16.0) is None
    assert latent.distribution(choices=[16, 32.0]).choices == (16, 32)  # cast to the row's kind
    d = lr.distribution(1e-4, 1e-2, log=True)
    assert isinstance(d, optuna.distributions.FloatDistribution) and (d.low, d.high, d.log) == (1e-4, 1e-2, True)
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be a finite number > 0 and <= 1000, got abc$"):
        lr.parse("abc")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be a positive integer and <= 4096, got 1.5$"):
        latent.parse("1.5")
    assert latent.parse("64") == 64 and lr.parse("1e-3") == 1e-3
