"""Study files, validated on load: the shipped ones (`studies/<name>.toml` beside the package,
installed with it, so `--study cub_full` works from any install) or any `path.toml`.

A study names a dataset and split protocol, the search space (any of the hyperparameter table's
six: alpha, gamma, lam, latent_size, lr and the reparameterization `sampling`), settings held
fixed (`[training] beta`, `kl_weight`, `sampling`), the trial budget, ASHA's settings, how much
H counts (`[selection]`), the resources of one trial and a seed. Every error names the file and
the key.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from gzsl import hyperparams, registry
from gzsl.selection import AUDIT, H_FLOOR, H_NOISE, lowest_rung, recipe_epochs, rung_epochs
from gzsl.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (Ubuntu 22.04 cluster images): the same parser, from PyPI
    import tomli as tomllib

CLASSIFIERS = ("cada", "fast")  # gzsl.evaluation.CLASSIFIERS' names
FIXED = ("beta", "kl_weight", "sampling", "classifier")  # [training] keys passed to TrainConfig as they are


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: log-uniform on [low, high], or categorical over choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = True
    choices: tuple | None = None


@dataclass(frozen=True)
class StudySpec:
    name: str
    path: Path
    dataset: str
    data_root: str | None
    split: str  # protocol of the search; the final refit always scores "test"
    epochs: int  # per trial (ASHA's max_t)
    batch_size: int
    eval_every: int
    space: tuple[Param, ...]
    num_samples: int
    max_concurrent: int
    grace_period: int  # the lowest candidate rung (gzsl.selection.rung_epochs)
    reduction_factor: int
    resources: dict  # per trial: {"cpu": 1} or {"cpu": 1, "gpu": 0.25}
    max_failures: int
    final_seeds: int  # seeds of the final refit on trainval
    seed: int
    hidden: tuple[int, int, int, int] | None = None
    fixed: dict = field(default_factory=dict)  # TrainConfig fields held fixed: beta, kl_weight, sampling, classifier
    # Configurations (members) trained together as one model per executor ([resources] pack; 1:
    # each trial alone, without executors). With pack > 1, `resources` are an executor's.
    pack: int = 1
    # How often Ray starts a packed executor again after its process died or it went out of rotation.
    restarts: int = 3
    # The configurations evaluated before TPE proposes any, in order: (label, params). The first is
    # always method.md's defaults ("defaults", brought inside the space's bounds), then each entry of
    # [search] start ("start 1", ...).
    start: tuple[tuple[str, dict], ...] = ()
    # A rung stops nobody while its best H is below h_floor, and stops a trial only when its H is
    # below the rung's cutoff by more than h_noise (gzsl.selection).
    h_floor: float = H_FLOOR
    h_noise: float = H_NOISE
    # The fraction of stopped trials retrained to the end after the search (gzsl.study.audit).
    audit: float = AUDIT
    # After the search, the best `confirm_top` trials and the defaults are retrained on
    # `confirm_splits` fresh validation splits, and the choice is made there (gzsl.study.confirm).
    confirm_top: int = 3
    confirm_splits: int = 2
    # Validation H with the recipe also every `peak_every` epochs, for the refit epoch's peak; 0:
    # only where a decision needs it (the rungs and the last epoch: eval_at).
    peak_every: int = 0
    # Lines to print before the run: keys read from where they used to belong (MOVED).
    notes: tuple[str, ...] = ()

    @property
    def eval_at(self) -> tuple[int, ...]:
        """The epochs a trial scores validation H (gzsl.selection.recipe_epochs)."""
        rungs = rung_epochs(self.epochs, self.eval_every, self.reduction_factor, self.grace_period)
        return recipe_epochs(self.epochs, self.eval_every, rungs, self.peak_every)

    def largest(self, name: str):
        """The largest value a trial of this study can give a searched hyperparameter: the space's
        top choice or high, else the study's fixed value or method.md's default."""
        for p in self.space:
            if p.name == name:
                return max(p.choices) if p.choices is not None else p.high
        return self.fixed.get(name, hyperparams.get(name).default)


_SECTIONS = {
    "study": {"dataset": str, "data_root": str, "split": str, "seed": int},
    "training": {"epochs": int, "batch_size": int, "eval_every": int, "peak_every": int, "hidden": list, "beta": float,
                 "kl_weight": float, "sampling": str, "classifier": str},
    "search": {"num_samples": int, "max_concurrent": int, "final_seeds": int, "max_failures": int, "start": list},
    "asha": {"grace_period": int, "reduction_factor": int, "audit": float},
    "selection": {"h_floor": float, "h_noise": float},  # read by the stopping rules, the confirmation and the refit
    "confirm": {"top": int, "splits": int},
    "resources": {"cpu": float, "gpu": float, "pack": int, "restarts": int},
    "space": {},  # the searched hyperparameters (gzsl.hyperparams), each a table: _keys
}


# The largest (and smallest) value of every number a study file holds, beside the hyperparameter
# table's bounds (gzsl.hyperparams): far past any real study, close enough that a typo fails here,
# in one line, not as an allocator error or a list of a billion seeds after Ray started.
LIMITS = {
    "study.seed": (0, 2**32 - 1),  # numpy's and Optuna's seeds are 32-bit
    "training.epochs": (1, 100_000),
    "training.batch_size": (1, 65_536),
    "training.eval_every": (1, 100_000),
    "training.peak_every": (0, 100_000),
    "training.hidden": (1, 65_536),  # each width
    "search.num_samples": (1, 100_000),
    "search.max_concurrent": (0, 10_000),
    "search.final_seeds": (0, 100),
    "search.max_failures": (0, 100),
    "asha.grace_period": (1, 100_000),
    "asha.reduction_factor": (2, 100),
    "confirm.top": (0, 100),
    "confirm.splits": (0, 100),
    "resources.cpu": (0, 4096),
    "resources.gpu": (0, 64),
    "resources.pack": (1, 1024),
    "resources.restarts": (0, 100),
}


def limit_problem(key: str, value) -> str | None:
    """Why a number is out of LIMITS[key] (a clause naming the bounds), or None."""
    low, high = LIMITS[key]
    if not low <= value <= high:
        return f"must be in [{low}, {high}], got {value:g}" if isinstance(value, float) else \
            f"must be in [{low}, {high}], got {value}"
    return None


def _keys(section: str) -> dict:
    return {name: dict for name in hyperparams.names()} if section == "space" else _SECTIONS[section]


def shipped_folder():
    """Where the shipped study files are: `studies/` beside `gzsl/` in a source tree (a checkout on
    PYTHONPATH, an editable install), or `gzsl/studyfile/shipped/` in an installed wheel, which
    carries that folder as package data (pyproject.toml's package-dir)."""
    installed = resources.files(__name__) / "shipped"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / "studies"


def shipped_studies() -> dict[str, str]:
    """Name -> TOML text of the shipped studies."""
    folder = shipped_folder()
    if not folder.is_dir():
        return {}
    return {f.name.removesuffix(".toml"): f.read_text() for f in folder.iterdir() if f.name.endswith(".toml")}


def load_study(name_or_path: str) -> StudySpec:
    """A shipped study by name (demo, cub_full, ...), or a study file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        shipped = shipped_studies()
        if name_or_path not in shipped:
            raise ConfigError(f"{name_or_path}: no such study file or shipped study; shipped studies: "
                              f"{', '.join(sorted(shipped))}")
        return _parse_text(shipped[name_or_path], Path("studies") / f"{name_or_path}.toml")
    if not path.is_file():
        raise ConfigError(f"{path}: no such study file; shipped studies: {', '.join(sorted(shipped_studies()))}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the study file as UTF-8") from None
    return _parse_text(text, path)


def _parse_text(text: str, path: Path) -> StudySpec:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:  # the parser recurses per level of nesting: no study nests more than two
        raise ConfigError(f"{path}: nested too deeply for a study file (tables or arrays inside one another "
                          "hundreds of levels deep); a study file has sections of keys") from None
    return parse(raw, path)


# Keys that moved to another section: a file that still gives them in the old one loads, with a
# note saying where they belong now; giving them in both is refused.
MOVED = {("asha", "h_floor"): "selection", ("asha", "h_noise"): "selection"}


def parse(raw: dict, path: Path) -> StudySpec:
    def fail(key: str, msg: str):
        raise ConfigError(f"{path}: {key}: {msg}")

    raw, notes = _moved_keys(raw, path, fail)
    for section, value in raw.items():
        if section not in _SECTIONS:
            fail(section, f"unknown section; expected one of {', '.join(_SECTIONS)}")
        if not isinstance(value, dict):
            fail(section, "must be a table ([section])")
        for key, v in value.items():
            want = _keys(section).get(key)
            if want is None:
                fail(f"{section}.{key}", f"unknown key; expected one of {', '.join(_keys(section))}")
            ok = isinstance(v, want) or (want is float and isinstance(v, int) and not isinstance(v, bool))
            if not ok or (want is int and isinstance(v, bool)):
                fail(f"{section}.{key}", f"expected {want.__name__}, got {type(v).__name__} {v!r}")

    get = lambda s, k, d=None: raw.get(s, {}).get(k, d)  # noqa: E731
    if "dataset" not in raw.get("study", {}):
        fail("study.dataset", f"missing; name a dataset ({registry.described()})")
    if registry.get(raw["study"]["dataset"]) is None:
        fail("study.dataset", f"unknown dataset {raw['study']['dataset']!r}; choose one of {registry.described()} "
                              "(a synthetic preset's other draws: synth-small@1, ...)")
    split = get("study", "split", "val")
    if split == "test":
        fail("study.split", "a study tunes on validation H and scores test once, in its final refit; "
                            "tuning on test H would report a test score chosen on test: use split = \"val\"")
    if split != "val":
        fail("study.split", f"expected 'val', got {split!r}")

    def positive(section, key, default, allow_zero=False):
        v = get(section, key, default)
        if v < 0 or (v == 0 and not allow_zero):
            fail(f"{section}.{key}", f"must be {'>= 0' if allow_zero else '> 0'}, got {v}")
        if f"{section}.{key}" in LIMITS and limit_problem(f"{section}.{key}", v):
            fail(f"{section}.{key}", limit_problem(f"{section}.{key}", v))
        return v

    space = tuple(_param(h, raw["space"][h.name], fail) for h in hyperparams.SEARCHED if h.name in raw.get("space", {}))
    if not space:
        fail("space", "empty search space; give at least one of " + ", ".join(hyperparams.names()))
    pack = positive("resources", "pack", 1)
    restarts = positive("resources", "restarts", StudySpec.restarts, allow_zero=True)
    resources = {k: float(v) for k, v in raw.get("resources", {"cpu": 1}).items() if k not in ("pack", "restarts")}
    problem = resources_problem(resources)
    if problem:
        fail(f"resources{'.' + problem[0] if problem[0] else ''}", problem[1])
    hidden = get("training", "hidden")
    if hidden is not None and (len(hidden) != 4 or not all(type(h) is int and not limit_problem("training.hidden", h)
                                                           for h in hidden)):
        fail("training.hidden", f"expected 4 integers in {list(LIMITS['training.hidden'])} (ENC_V, DEC_V, ENC_S, DEC_S), "
                                f"got {hidden}")
    epochs = positive("training", "epochs", 100)
    eval_every = positive("training", "eval_every", 1)
    peak_every = positive("training", "peak_every", 0, allow_zero=True)
    if peak_every > epochs or peak_every % eval_every:
        fail("training.peak_every", f"{peak_every} must be a multiple of training.eval_every {eval_every} and at most "
             f"training.epochs {epochs} (0: H only at the rungs and the last epoch)")
    grace = positive("asha", "grace_period", lowest_rung(epochs, eval_every))
    if grace > epochs:
        fail("asha.grace_period", f"{grace} is more than training.epochs {epochs}")
    reduction = positive("asha", "reduction_factor", 3)
    if reduction < 2:
        fail("asha.reduction_factor", f"must be >= 2, got {reduction}")
    for key in ("h_floor", "h_noise"):
        v = get("selection", key)
        if v is not None and not (math.isfinite(v) and 0 <= v <= 100):
            fail(f"selection.{key}", f"must be an H in [0, 100], got {v}")
    audit = float(get("asha", "audit", StudySpec.audit))
    if not 0 <= audit <= 1:
        fail("asha.audit", f"must be a fraction of the stops in [0, 1] (0: no audit, 1: every stop), got {audit:g}")
    fixed = _fixed(raw.get("training", {}), {p.name for p in space}, fail)
    seed = get("study", "seed", 0)
    if limit_problem("study.seed", seed):
        fail("study.seed", f"{limit_problem('study.seed', seed)} (numpy's and Optuna's seeds are unsigned 32-bit)")
    return StudySpec(
        name=path.stem, path=path, dataset=raw["study"]["dataset"], data_root=get("study", "data_root"),
        split=split, epochs=epochs, batch_size=positive("training", "batch_size", 50),
        eval_every=positive("training", "eval_every", 1), space=space,
        num_samples=positive("search", "num_samples", 20), max_concurrent=positive("search", "max_concurrent", 0,
                                                                                  allow_zero=True),
        grace_period=grace, reduction_factor=reduction, resources=resources,
        max_failures=positive("search", "max_failures", 1, allow_zero=True),
        final_seeds=positive("search", "final_seeds", 3, allow_zero=True), seed=seed,
        hidden=tuple(hidden) if hidden else None, fixed=fixed, pack=pack, restarts=restarts,
        start=start_points(space, get("search", "start", []), fail),
        h_floor=float(get("selection", "h_floor", StudySpec.h_floor)),
        h_noise=float(get("selection", "h_noise", StudySpec.h_noise)), audit=audit, notes=notes,
        confirm_top=positive("confirm", "top", StudySpec.confirm_top, allow_zero=True),
        confirm_splits=positive("confirm", "splits", StudySpec.confirm_splits, allow_zero=True), peak_every=peak_every,
    )


def _moved_keys(raw: dict, path: Path, fail) -> tuple[dict, tuple[str, ...]]:
    """The file's tables with each MOVED key in its new section, and one note per key moved."""
    notes = []
    for (old, key), new in MOVED.items():
        table = raw.get(old)
        if not isinstance(table, dict) or key not in table:
            continue
        target = raw.get(new, {})
        if isinstance(target, dict) and key in target:
            fail(f"{old}.{key}", f"given in [{old}] and in [{new}]; keep the one in [{new}]")
        raw = {**raw, old: {k: v for k, v in table.items() if k != key},
               new: {**(target if isinstance(target, dict) else {}), key: table[key]}}
        notes.append(f"note: {path}: {old}.{key} now belongs in [{new}] (the stopping rules, the confirmation and "
                     f"the refit epoch all read it); loaded as {new}.{key}")
    return raw, tuple(notes)


def resources_problem(resources: dict) -> tuple[str, str] | None:
    """(key, what is wrong) of a trial's resources, or None: each a finite number >= 0, some cpu or
    gpu, and a GPU share above 1 only whole."""
    for k, v in resources.items():
        if not (math.isfinite(v) and v >= 0):
            return k, f"must be a finite number >= 0, got {v:g}"
        if f"resources.{k}" in LIMITS and limit_problem(f"resources.{k}", v):
            return k, limit_problem(f"resources.{k}", v)
    if resources.get("cpu", 1) <= 0 and resources.get("gpu", 0) <= 0:
        return "", "a trial needs some cpu or gpu"
    if resources.get("gpu", 0) > 1 and resources["gpu"] != int(resources["gpu"]):
        return "gpu", "a fraction above 1 GPU is not schedulable; use <= 1 or a whole number"
    return None


def with_gpu(spec: StudySpec, gpu: float) -> StudySpec:
    """The study with `gpu` GPUs per trial (per executor with [resources] pack > 1) instead of its
    file's resources.gpu: `gzsl.tune --gpu 0` runs a GPU study on a CPU-only machine unedited."""
    resources = {**spec.resources, "gpu": float(gpu)}
    problem = resources_problem(resources)
    if problem:
        raise ConfigError(f"--gpu {gpu:g}: {problem[1]}")
    return replace(spec, resources=resources)


def start_points(space: tuple[Param, ...], given: list, fail) -> tuple[tuple[str, dict], ...]:
    """The trials evaluated first: method.md's defaults inside the space's bounds, then each entry of
    [search] start (a table of searched parameters; those it leaves out take the defaults' values)."""
    defaults = {p.name: _inside(p, hyperparams.get(p.name).default) for p in space}
    points = [("defaults", defaults)]
    for i, entry in enumerate(given, 1):
        key = f"search.start[{i}]"
        if not isinstance(entry, dict):
            fail(key, f"expected a table of searched parameters such as {{ alpha = 0.5, lr = 3e-4 }}, got {entry!r}")
        point = dict(defaults)
        for name, value in entry.items():
            param = next((p for p in space if p.name == name), None)
            if param is None:
                fail(f"{key}.{name}", f"not searched by this study; [space] has {', '.join(p.name for p in space)}")
            point[name] = _start_value(param, value, f"{key}.{name}", fail)
        points.append((f"start {i}", point))
    return tuple(points)


def start_label(spec: StudySpec, params: dict) -> str:
    """The label of the starting point these searched values are ("defaults", "start 1", ...), or ""
    for a configuration TPE proposed (its floats never equal a starting point's exactly)."""
    for label, point in spec.start:
        if all(params.get(k) == v for k, v in point.items()):
            return label
    return ""


def _inside(p: Param, value):
    """A default brought into the space: clipped to [low, high], or the nearest of the choices."""
    if p.choices is None:
        return min(max(float(value), p.low), p.high)
    if value in p.choices:
        return value
    if isinstance(value, str):
        return p.choices[0]
    return min(p.choices, key=lambda c: abs(math.log(c) - math.log(value)))


def _start_value(p: Param, value, key: str, fail):
    if p.choices is not None:
        if value not in p.choices or isinstance(value, bool):
            fail(key, f"{value!r} is not one of space.{p.name}.choices {list(p.choices)}")
        return p.choices[list(p.choices).index(value)]
    if hyperparams.get(p.name).problem(value):
        fail(key, f"expected a number, got {value!r}")
    if not p.low <= value <= p.high:
        fail(key, f"{value} is outside space.{p.name} [{p.low:g}, {p.high:g}]; widen the space or move the point")
    return float(value)


def _fixed(training: dict, searched: set[str], fail) -> dict:
    """The [training] settings passed to TrainConfig as they are: beta, kl_weight (> 0), sampling,
    classifier (the final classifier of validation H)."""
    fixed = {k: training[k] for k in FIXED if k in training}
    for k in ("beta", "kl_weight"):
        if k not in fixed:
            continue
        if not (math.isfinite(fixed[k]) and fixed[k] > 0):
            fail(f"training.{k}", f"must be a finite number > 0, got {fixed[k]}")
        fixed[k] = float(fixed[k])
    if "classifier" in fixed and fixed["classifier"] not in CLASSIFIERS:
        fail("training.classifier", f"expected 'cada' (CADA-VAE's recipe) or 'fast', got {fixed['classifier']!r}")
    samplings = hyperparams.get("sampling").choices
    if "sampling" in fixed and fixed["sampling"] not in samplings:
        fail("training.sampling", f"expected {' or '.join(map(repr, samplings))}, got {fixed['sampling']!r}")
    for k in sorted(searched & set(fixed)):
        fail(f"space.{k}", f"searched, and also fixed by training.{k} = {fixed[k]!r}; remove one of them")
    return fixed


def _param(h: hyperparams.Hyperparameter, table: dict, fail) -> Param:
    """A [space] entry for hyperparameter h: a range (floats: low, high, log) or a list of choices."""
    key = f"space.{h.name}"
    if set(table) == {"choices"}:
        return Param(h.name, choices=_choices(h, table["choices"], key, fail))
    if h.categorical:
        fail(key, f"{h.name} is categorical; give choices = {json.dumps(list(h.example))}")
    unknown = set(table) - {"low", "high", "log"}
    if unknown:
        fail(f"{key}.{sorted(unknown)[0]}", "unknown key; expected low, high, log or choices")
    if "low" not in table or "high" not in table:
        fail(key, "expected low and high (or choices)")
    low, high, log = table["low"], table["high"], table.get("log", True)
    if not isinstance(log, bool):
        fail(f"{key}.log", f"expected true or false (no quotes), got {log!r}")
    for k, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            fail(f"{key}.{k}", f"expected a number, got {v!r}")
    if not low < high:
        fail(key, f"empty range, low {low} must be below high {high}")
    if log and low <= 0:
        fail(f"{key}.low", f"a log-uniform range needs low > 0, got {low}")
    if h.problem(low):  # alpha, gamma, lam or lr at 0 switches a part of the method off, or training
        fail(f"{key}.low", f"{h.problem(low)}, got {low}")
    if h.problem(high):
        fail(f"{key}.high", f"{h.problem(high)}, got {high}")
    return Param(h.name, float(low), float(high), bool(log))


def _choices(h: hyperparams.Hyperparameter, choices, key: str, fail) -> tuple:
    if h.kind is str:
        ok = isinstance(choices, list) and choices and not any(h.problem(c) for c in choices)
        if not ok or len(set(choices)) != len(choices):
            fail(f"{key}.choices", f"expected {' and/or '.join(map(repr, h.choices))}, each once, got {choices!r}")
        return tuple(choices)
    if not isinstance(choices, list) or not choices:
        fail(f"{key}.choices", f"expected a non-empty list, got {choices!r}")
    if any(h.problem(c) for c in choices) or (h.kind is int and not all(isinstance(c, int) for c in choices)):
        top = f" up to {h.high:g}" if h.high < math.inf else ""
        fail(f"{key}.choices", f"{h.name} takes positive {'integers' if h.kind is int else 'numbers'}{top}, got {choices}")
    cast = tuple(h.cast(c) for c in choices)
    if len(set(cast)) != len(cast):
        fail(f"{key}.choices", f"each value once, got {choices}")
    return cast
