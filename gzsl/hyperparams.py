"""The searched hyperparameters, described once.

Each row of `SEARCHED` says what a study, a trial, the Parquet files, the report and
`python -m gzsl.train` need to know about one hyperparameter: its name (a `TrainConfig` field,
a study's `[space]` key, a Parquet column, the CLI flag with dashes), its kind (a positive
float, a positive integer, or one of a few strings), method.md's default and a line of help.
Everything else derives from here: the study file's checks (gzsl.studyfile), the cast of a
trial's proposed values (gzsl.study.trial), the Optuna distributions (gzsl.study.search,
gzsl.report.records), the Arrow columns (gzsl.results) and the CLI flags (gzsl.train).
Adding a searched hyperparameter is one row here (and the `TrainConfig` field it sets).

The table is read when it is used, never copied at import, so a test may add a row to its
own copy (`monkeypatch.setattr(gzsl.hyperparams, "SEARCHED", ...)`). No torch here: loading a
study file stays light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = (float, int, str)


@dataclass(frozen=True)
class Hyperparameter:
    name: str
    kind: type  # float (> 0, finite), int (> 0) or str (one of `choices`)
    default: float | int | str  # method.md's value: a study's first trial, TrainConfig's and the CLI's default
    help: str
    choices: tuple[str, ...] = ()  # the values a str takes
    high: float = math.inf  # the largest value a number may take (a sanity bound, not a search range)
    example: tuple = ()  # a [space] example, for the error that asks for choices

    def __post_init__(self):
        if self.kind not in KINDS or (self.kind is str) != bool(self.choices) or self.problem(self.default):
            raise ValueError(f"hyperparameter {self.name}: kind must be one of float, int, str (str, and only "
                             f"str, with choices), and the default {self.default!r} one of its values")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def cast(self, value):
        """A value from Tune, Optuna or a Parquet row as the TrainConfig field takes it."""
        return self.kind(value)

    def problem(self, value) -> str | None:
        """Why `value` cannot be this hyperparameter (a clause for an error message), or None."""
        if self.kind is str:
            return None if value in self.choices else f"expected one of {', '.join(map(repr, self.choices))}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"expected a {'positive integer' if self.kind is int else 'number'}"
        if self.kind is int and value != int(value):
            return "expected a positive integer"
        if value <= 0:
            return f"{self.name} must stay > 0"
        return None if value <= self.high else f"{self.name} must stay <= {self.high:g}"

    @property
    def domain(self) -> str:
        top = f" and <= {self.high:g}" if self.high < math.inf else ""
        return {float: f"a finite number > 0{top}", int: f"a positive integer{top}",
                str: "one of " + ", ".join(self.choices)}[self.kind]

    def parse(self, text: str):
        """argparse's `type` for the CLI flag: the value, or ArgumentTypeError naming what it must be."""
        import argparse

        try:
            value = self.kind(text)
        except ValueError:
            value = None
        if value is None or self.problem(value):
            raise argparse.ArgumentTypeError(f"must be {self.domain}, got {text}")
        return value

    @property
    def arrow_type(self):
        import pyarrow as pa

        return {float: pa.float64(), int: pa.int64(), str: pa.string()}[self.kind]

    def distribution(self, low=None, high=None, log: bool = True, choices=None):
        """Optuna's distribution for a range (floats) or a list of choices."""
        import optuna

        if choices is not None:
            return optuna.distributions.CategoricalDistribution([self.cast(c) for c in choices])
        return optuna.distributions.FloatDistribution(low, high, log=log)

    @property
    def categorical(self) -> bool:
        """Searched over choices only (a latent size, a sampling), never over a range."""
        return self.kind is not float


SEARCHED: tuple[Hyperparameter, ...] = (
    Hyperparameter("alpha", float, 1.0, "weight of KL(z^p)", high=1e4),
    Hyperparameter("gamma", float, 1.0, "weight of the shuffling classification loss L_SC", high=1e4),
    Hyperparameter("lam", float, 2.37, "weight of modality alignment L_MA = L_CR + beta L_DD", high=1e4),
    Hyperparameter("latent_size", int, 64, "size of z^t and of z^p", example=(16, 32, 64, 128), high=4096),
    Hyperparameter("lr", float, 1.5e-4, "Adam (amsgrad) learning rate", high=1e3),
    Hyperparameter("sampling", str, "cada",
                   "reparameterization: cada (CADA-VAE's code: sigma = exp(logvar), one noise draw per row) "
                   "or textbook (sigma = exp(logvar/2), noise per dimension)",
                   choices=("cada", "textbook"), example=("cada", "textbook")),
)


def names() -> tuple[str, ...]:
    return tuple(h.name for h in SEARCHED)


def get(name: str) -> Hyperparameter:
    for h in SEARCHED:
        if h.name == name:
            return h
    raise KeyError(f"{name}: not a searched hyperparameter; expected one of {', '.join(names())}")


def defaults() -> dict:
    """method.md's values of the searched hyperparameters."""
    return {h.name: h.default for h in SEARCHED}


def of(config) -> dict:
    """The searched hyperparameters' values of a TrainConfig."""
    return {h.name: getattr(config, h.name) for h in SEARCHED}


def cast(values: dict) -> dict:
    """The searched hyperparameters among `values`, each cast to its kind; other keys left out."""
    return {h.name: h.cast(values[h.name]) for h in SEARCHED if h.name in values}
