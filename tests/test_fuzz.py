"""A fuzzer of everything a user hands gzsl (Hypothesis, in-process, with ray.init made to fail so
nothing can start): study files (any TOML), argument lists of gzsl.tune, gzsl.train and
gzsl.predict, damaged results folders and model files. The invariant: a clean result or one
GzslError (argparse's exit 2 for a flag it cannot parse), never another exception.

About 2,000 examples in CI, derandomized (the same examples every run). GZSL_FUZZ_SCALE=N runs N
times as many, randomly (docs/benchmarks.md, "Hostile inputs", records a longer run). Then a few
whole paths as subprocesses under an address-space limit: one line, exit 2, no hang.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import resource
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gzsl import gate, hyperparams
from gzsl.errors import GzslError
from gzsl.results import SCHEMA_VERSION, ResultStore
from gzsl.studyfile import LIMITS, _SECTIONS, load_study

SCALE = int(os.environ.get("GZSL_FUZZ_SCALE", "1"))
ROOT = Path(__file__).resolve().parents[1]


def fuzz(examples: int):
    return settings(max_examples=examples * SCALE, deadline=None, derandomize=SCALE == 1, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(autouse=True, scope="module")
def no_ray():
    """Nothing can start: ray.init fails; no database is opened (its parsing is fuzzed, not the network)."""
    import ray

    real, connect = ray.init, gate._connect

    def refuse(*a, **k):
        raise AssertionError("ray.init called by a fuzzed input")

    ray.init, gate._connect = refuse, lambda *a: None
    yield
    ray.init, gate._connect = real, connect


# ---------------------------------------------------------------- TOML, written by hand (tomllib only reads)

def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml(doc: dict) -> str:
    lines = []
    for section, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{json.dumps(section)}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
        else:
            lines.insert(0, f"{json.dumps(section)} = {toml_value(table)}")
    return "\n".join(lines) + "\n"


def near_bounds():
    """Integers where checks live: 0, 1, the LIMITS' ends and one past them, huge ones."""
    edges = {0, 1, -1, 2**31, 2**32, 2**63 - 1, -(2**63)} | {b + d for lo, hi in LIMITS.values() for b in (lo, hi)
                                                            for d in (-1, 0, 1)}
    return st.sampled_from(sorted(edges)) | st.integers(-(2**63), 2**63 - 1)


scalars = (near_bounds() | st.floats() | st.booleans() | st.text(max_size=12)
           | st.sampled_from(["synth-small", "cub-sim", "val", "test", "cada", "textbook", "fast", "CUB"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(["low", "high", "log", "choices", "x"]), inner, max_size=4),
                      max_leaves=8)
space_entry = st.fixed_dictionaries({}, optional={"low": scalars, "high": scalars, "log": scalars,
                                                  "choices": st.lists(scalars, max_size=5)})


@st.composite
def study_docs(draw) -> dict:
    doc = {}
    for section, keys in _SECTIONS.items():
        if section == "space":
            names = draw(st.lists(st.sampled_from(list(hyperparams.names()) + ["beta", "bogus"]), max_size=5, unique=True))
            doc["space"] = {n: draw(space_entry | values) for n in names}
        elif draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from(list(keys) + ["unknown"]), max_size=len(keys) + 1, unique=True))
            doc[section] = {k: draw(values) for k in chosen}
    if draw(st.integers(0, 9)):  # mostly a dataset, so that validation goes deep
        doc.setdefault("study", {})["dataset"] = "synth-small"
    if not draw(st.integers(0, 19)):
        doc[draw(st.text(min_size=1, max_size=6))] = draw(values)  # an unknown section, or a top-level key
    return doc


BASE = {"study": {"dataset": "synth-small", "seed": 0}, "training": {"epochs": 4, "eval_every": 1, "batch_size": 50},
        "search": {"num_samples": 4, "final_seeds": 1, "max_concurrent": 1}, "asha": {"h_noise": 2.0, "grace_period": 1},
        "confirm": {"top": 1, "splits": 1}, "resources": {"cpu": 1},
        "space": {"alpha": {"low": 0.1, "high": 10.0}, "latent_size": {"choices": [16, 32]}}}


@st.composite
def mutated_docs(draw) -> dict:
    """A valid study with one to three of its keys set to anything, removed or added: the checks
    past the first key."""
    doc = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(list(_SECTIONS)))
        if section == "space":
            name = draw(st.sampled_from(list(hyperparams.names())))
            key = draw(st.sampled_from(["low", "high", "log", "choices"]))
            entry = doc["space"].setdefault(name, {})
            entry[key] = draw(st.lists(scalars, max_size=5) if key == "choices" else scalars)
            continue
        key = draw(st.sampled_from(list(_SECTIONS[section]) + ["unknown"]))
        if draw(st.integers(0, 5)):
            doc.setdefault(section, {})[key] = draw(near_bounds() | values)
        else:
            doc.get(section, {}).pop(key, None)
    return doc


def loaded_or_refused(path: Path):
    try:
        spec = load_study(str(path))
    except GzslError as exc:
        assert "\n" not in str(exc), str(exc)
        event(f"refused at {str(exc).split(': ')[1] if ': ' in str(exc) else str(exc)[:20]}")
        return None
    event("loaded")
    spec.eval_at  # noqa: B018 - derived settings compute without error
    return spec


class Args:
    def __init__(self, study, **kw):
        self.__dict__.update(dict(study=str(study), gpu=None, data_root=None, num_samples=None, max_concurrent=None,
                                  num_cpus=2, optuna_storage=None, address=None, results=None, resume=False) | kw)


@fuzz(800)
@given(doc=study_docs() | mutated_docs() | mutated_docs() | mutated_docs())
def test_a_study_file_loads_or_is_one_line(tmp_path_factory, doc):
    folder = tmp_path_factory.mktemp("study")
    path = folder / "fuzz.toml"
    path.write_text(toml(doc), encoding="utf-8", errors="surrogatepass")
    spec = loaded_or_refused(path)
    if spec is not None:
        with contextlib.suppress(GzslError):
            gate.check(Args(path, results=str(folder / "results")), environ={})


@fuzz(150)
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_as_a_study_file_loads_or_is_one_line(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("study") / "raw.toml"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    loaded_or_refused(path)


# ---------------------------------------------------------------- argument lists

def flag_values():
    return (st.sampled_from(["0", "-1", "1", "2", "1e308", "nan", "inf", str(2**64), "", "auto", "cpu", "meta",
                             "cuda:99", "x" * 300, "postgresql://u:p@h:abc/db", "gzsl:p@h/db", "sqlite:///x.db",
                             "postgresql://u@h/db", "s3://b/r?secret=1"])
            | st.text(max_size=10) | st.integers(-10, 10**6).map(str))


def argv(flags: list[str]):
    return st.lists(st.tuples(st.sampled_from(flags), flag_values()), max_size=5).map(
        lambda pairs: [x for f, v in pairs for x in ((f,) if f.startswith("--no-") or f == "--resume" else (f, v))])


TUNE_FLAGS = ["--data-root", "--results", "--address", "--num-cpus", "--gpu", "--num-samples", "--max-concurrent",
              "--optuna-storage", "--resume", "--no-confirm", "--no-refit", "--no-report", "--no-dashboard"]


@fuzz(400)
@given(extra=argv(TUNE_FLAGS), study=st.sampled_from(["demo", "cub_full", "nope", "demo.toml"]),
       env=st.sampled_from([{}, {"GZSL_OPTUNA_STORAGE": "gzsl:PASSWORD@db/optuna"}, {"RAY_ADDRESS": "auto"},
                            {"GZSL_OPTUNA_STORAGE": "postgresql://u:PASSWORD@h/db"}]))
def test_tune_arguments_pass_the_gate_or_are_one_line(tmp_path_factory, extra, study, env):
    from gzsl import tune

    folder = tmp_path_factory.mktemp("tune")
    with contextlib.chdir(folder):
        try:
            args = tune.parser().parse_args(["--study", study, *extra])
        except SystemExit as exit_:
            assert exit_.code == 2
            return
        try:
            gate.check(args, environ=env)
        except GzslError as exc:
            text = gate.mask(str(exc))
            assert "\n" not in text and "PASSWORD" not in text


TRAIN_FLAGS = ["--dataset", "--split", "--epochs", "--batch-size", "--seed", "--device", "--eval-every", "--alpha",
               "--gamma", "--lam", "--lr", "--latent-size", "--sampling", "--kl-weight", "--classifier", "--threads"]


@fuzz(400)
@given(args=argv(TRAIN_FLAGS))
def test_train_arguments_make_a_config_or_are_one_line(args):
    from gzsl import train

    with contextlib.redirect_stderr(io.StringIO()):
        try:
            parsed = train.parser().parse_args(args)
        except SystemExit as exit_:
            assert exit_.code == 2
            return
    with contextlib.suppress(GzslError):
        train.config_from_args(parsed)


# ---------------------------------------------------------------- damaged files

@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory) -> bytes:
    from gzsl import train

    path = tmp_path_factory.mktemp("model") / "model.pt"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert train.main(["--dataset", "synth-small", "--split", "test", "--epochs", "1", "--eval-every", "0",
                           "--classifier", "fast", "--hidden", "32", "32", "16", "16", "--threads", "1",
                           "--save", str(path)]) == 0
    return path.read_bytes()


def damaged(data: bytes):
    """Bytes with a few flipped, a cut, or a stretch overwritten."""
    return st.one_of(
        st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), min_size=1, max_size=8).map(
            lambda flips: bytes(_flip(bytearray(data), flips))),
        st.integers(0, len(data)).map(lambda n: data[:n]),
        st.tuples(st.integers(0, len(data)), st.binary(min_size=1, max_size=64)).map(
            lambda t: data[:t[0]] + t[1] + data[t[0] + len(t[1]):]))


def _flip(buf: bytearray, flips) -> bytearray:
    for at, value in flips:
        buf[at] = value
    return buf


@fuzz(150)
@given(data=st.data())
def test_a_damaged_model_file_loads_or_is_one_line(model_bytes, tmp_path_factory, data):
    from gzsl import modelfile

    path = tmp_path_factory.mktemp("pt") / "m.pt"
    path.write_bytes(data.draw(damaged(model_bytes)))
    try:
        modelfile.load(str(path))
    except GzslError as exc:
        assert "\n" not in str(exc)


@pytest.fixture(scope="module")
def results_parts(tmp_path_factory) -> dict[str, bytes]:
    """A results folder's parts: one study row and one trial row, as bytes."""
    folder = tmp_path_factory.mktemp("results")
    store = ResultStore(str(folder))
    store.write_part("study", "run", [{"study": "demo", "schema_version": SCHEMA_VERSION, "resumed": False,
                                       "started_at": datetime.now(timezone.utc), "fingerprint": "x"}])
    store.write_part("trials", "t1", [{"trial_id": "t1", "status": "completed", "best_val_H": 40.0}])
    return {t: (folder / f"{t}.parquet" / f"part-{p}.parquet").read_bytes() for t, p in (("study", "run"), ("trials", "t1"))}


@fuzz(100)
@given(data=st.data())
def test_a_damaged_results_folder_reads_or_is_one_line(results_parts, tmp_path_factory, data):
    from gzsl.report.records import read_results

    folder = tmp_path_factory.mktemp("damaged")
    which = data.draw(st.sampled_from(sorted(results_parts)))
    for table, raw in results_parts.items():
        (folder / f"{table}.parquet").mkdir()
        (folder / f"{table}.parquet" / "part-x.parquet").write_bytes(data.draw(damaged(raw)) if table == which else raw)
    for read in (lambda: read_results(str(folder)), lambda: gate.check_results_folder(
            load_study("demo"), str(folder), resume=True)):
        try:
            read()
        except GzslError as exc:
            assert "\n" not in str(exc)


# ---------------------------------------------------------------- whole paths, under an address-space limit

LIMIT_AS = 4 * 2**30


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))


def whole(tmp_path, module: str, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, preexec_fn=_limited, env={**os.environ, **(env or {})})


def other_studys_folder(tmp_path) -> Path:
    store = ResultStore(str(tmp_path / "shared"))
    store.write_part("study", "run", [{"study": "first", "schema_version": SCHEMA_VERSION, "resumed": False,
                                       "started_at": datetime.now(timezone.utc), "fingerprint": "x"}])
    return tmp_path / "shared"


def damaged_folder(tmp_path) -> Path:
    folder = other_studys_folder(tmp_path)
    (folder / "trials.parquet").mkdir()
    (folder / "trials.parquet" / "part-t1.parquet").write_bytes(b"PAR1garbage")
    return folder


def study_file(tmp_path, extra: str) -> str:
    path = tmp_path / "s.toml"
    path.write_text('[study]\ndataset = "synth-small"\n[space]\nalpha = { low = 0.1, high = 10.0 }\n' + extra)
    return str(path)


WHOLE = {
    "storage without a scheme": (lambda t: ("gzsl.tune", ["--study", "demo"], {"GZSL_OPTUNA_STORAGE": "gzsl:PASSWORD@db/optuna"}),
                                 "error: $GZSL_OPTUNA_STORAGE gzsl:***@db/optuna: not a database URL"),
    "password on argv": (lambda t: ("gzsl.tune", ["--study", "demo", "--optuna-storage", "postgresql://u:PASSWORD@h/db"], {}),
                         "error: --optuna-storage postgresql://u:***@h/db: a password on the command line"),
    "bad port": (lambda t: ("gzsl.tune", ["--study", "demo", "--optuna-storage", "postgresql://u@h:port/db"], {}),
                 "error: --optuna-storage postgresql://u@h:port/db: not a valid database URL"),
    "another study's folder": (lambda t: ("gzsl.tune", ["--study", "demo", "--results", str(other_studys_folder(t))], {}),
                               "that folder belongs to study first, not demo"),
    "cpu beyond the machine": (lambda t: ("gzsl.tune", ["--study", study_file(t, "[resources]\ncpu = 2\n"),
                                                        "--num-cpus", "1"], {}),
                               "resources.cpu = 2 per trial, but the local Ray has --num-cpus 1"),
    "a billion seeds": (lambda t: ("gzsl.tune", ["--study", study_file(t, "[search]\nfinal_seeds = 1000000000\n")], {}),
                        "search.final_seeds: must be in [0, 100], got 1000000000"),
    "deep nesting": (lambda t: ("gzsl.tune", ["--study", study_file(t, "[search]\nstart = " + "[" * 3000 + "]" * 3000 + "\n")], {}),
                     "nested too deeply for a study file"),
    "damaged part, report": (lambda t: ("gzsl.report", ["--results", str(damaged_folder(t))], {}),
                             "part-t1.parquet: not a readable trials part"),
    "train on meta": (lambda t: ("gzsl.train", ["--device", "meta"], {}),
                      "error: --device meta: gzsl trains on cpu or cuda (cuda:N) only"),
    "train seed 2^64": (lambda t: ("gzsl.train", ["--seed", str(2**64)], {}),
                        "argument --seed: must be an integer in [0, 4294967295]"),
}


@pytest.mark.parametrize("case", list(WHOLE))
def test_a_whole_path_refuses_in_one_line_and_exit_2(tmp_path, case):
    make, says = WHOLE[case]
    module, args, env = make(tmp_path)
    p = whole(tmp_path, module, *args, env=env)
    errors = [x for x in p.stderr.splitlines() if x.startswith("error: ") or ": error: " in x]
    assert p.returncode == 2, p.stdout + p.stderr
    assert errors == [p.stderr.rstrip().splitlines()[-1]] and says in errors[0], p.stderr  # argparse's usage may precede
    assert "Traceback" not in p.stderr
    assert "PASSWORD" not in p.stdout + p.stderr and "Started a local Ray" not in p.stdout + p.stderr
