"""Study files: every shipped study loads; bad ones fail with the file and key named."""

import subprocess
import sys

import pytest

from gzsl.errors import ConfigError
from gzsl import hyperparams
from gzsl.studyfile import CLASSIFIERS, Param, load_study

GOOD = """
[study]
dataset = "synth-small"
[space]
alpha = { low = 0.1, high = 10.0 }
latent_size = { choices = [16, 32] }
"""


@pytest.mark.parametrize("name", ["demo", "synth_cub", "cub_full", "awa1_full", "awa2_full", "sun_full"])
def test_shipped_studies_load(name):
    spec = load_study(name)
    assert spec.name == name and spec.split == "val"
    assert {p.name for p in spec.space} == {"alpha", "gamma", "lam", "latent_size", "lr"}
    assert spec.fixed["sampling"] == "cada"  # fixed, not searched: a choice that always wins wastes trials
    if name.endswith("_full"):
        assert spec.resources == {"cpu": 1.0, "gpu": 0.25}


def test_defaults_fill_what_a_study_leaves_out(tmp_path):
    path = tmp_path / "mini.toml"
    path.write_text(GOOD)
    spec = load_study(str(path))
    # The first rung after the alignment warm-ups (75% of the run), its noise guards at their defaults.
    assert (spec.epochs, spec.num_samples, spec.grace_period, spec.reduction_factor) == (100, 20, 10, 3)
    assert (spec.h_floor, spec.h_noise) == (5.0, 2.0)
    assert spec.resources == {"cpu": 1.0}
    alpha = spec.space[0]
    assert (alpha.low, alpha.high, alpha.log) == (0.1, 10.0, True)
    # H with the recipe only where a decision reads it: the rungs 25 and 75 (25 / 3 is below the grace
    # period 10) and the last epoch.
    assert spec.peak_every == 0 and spec.eval_at == (25, 75, 100)


def test_a_peak_grid_adds_the_recipe_between_the_decisions(tmp_path):
    path = tmp_path / "peaks.toml"
    path.write_text(GOOD + "[training]\neval_every = 5\npeak_every = 20\n")
    assert load_study(str(path)).eval_at == (20, 25, 40, 60, 75, 80, 100)  # rungs 25, 75 (grace 10 -> 8.3 < 10)


@pytest.mark.parametrize("extra, message", [
    ("[search]\nnum_sample = 3", r"search.num_sample: unknown key"),
    ("[searching]\nx = 1", r"searching: unknown section"),
    ("[training]\nepochs = \"ten\"", r"training.epochs: expected int, got str 'ten'"),
    ("[training]\nepochs = 0", r"training.epochs: must be > 0"),
    ("[space.lr]\nlow = 1e-3\nhigh = 1e-4", r"space.lr: empty range, low 0.001 must be below high 0.0001"),
    ("[space.gamma]\nlow = 0\nhigh = 1", r"space.gamma.low: a log-uniform range needs low > 0"),
    ("[space.lam]\nlow = 1", r"space.lam: expected low and high"),
    ("[asha]\ngrace_period = 500", r"asha.grace_period: 500 is more than training.epochs 100"),
    ("[training]\nhidden = [1, 2]", r"training.hidden: expected 4 integers in \[1, 65536\]"),
    ("[training]\nhidden = [512, 512, 100000000, 64]", r"training.hidden: expected 4 integers in \[1, 65536\]"),
    ("[search]\nfinal_seeds = 1000000000", r"search.final_seeds: must be in \[0, 100\], got 1000000000"),
    ("[resources]\ncpu = 1\npack = 100000", r"resources.pack: must be in \[1, 1024\], got 100000"),
    ("[training]\nbatch_size = 10000000", r"training.batch_size: must be in \[1, 65536\], got 10000000"),
    ("[resources]\ncpu = 1e308", r"resources.cpu: must be in \[0, 4096\], got 1e\+308"),
    ("[space.lam]\nchoices = [1.0, 1000000.0]", r"space.lam.choices: lam takes positive numbers up to 10000, "
                                                r"got \[1.0, 1000000.0\]"),
    ("[space.gamma]\nchoices = [0.5, 0.5]", r"space.gamma.choices: each value once, got \[0.5, 0.5\]"),
    ("[space.lr]\nlow = 1e-4\nhigh = 1e6", r"space.lr.high: lr must stay <= 1000, got 1000000.0"),
    ("[resources]\ncpu = 1\npack = 0", r"resources.pack: must be > 0, got 0"),
    ("[resources]\ncpu = 1\npack = 2\nrestarts = -1", r"resources.restarts: must be >= 0, got -1"),
    ("[resources]\ncpu = 1\npack = 2\nrestarts = 101", r"resources.restarts: must be in \[0, 100\], got 101"),
    ("[resources]\ncpu = 1\npack = 2.5", r"resources.pack: expected int, got float 2.5"),
    ("[selection]\nh_noise = -1.0", r"selection.h_noise: must be an H in \[0, 100\], got -1.0"),
    ("[asha]\nh_floor = nan", r"selection.h_floor: must be an H in \[0, 100\], got nan"),  # the old place, read as the new
    ("[asha]\nh_noise = 1.0\n[selection]\nh_noise = 2.0", r"asha.h_noise: given in \[asha\] and in \[selection\]; keep the one in \[selection\]"),
    ("[search]\nstart = [{ alpha = 20.0 }]", r"search.start\[1\].alpha: 20.0 is outside space.alpha \[0.1, 10\]"),
    ("[search]\nstart = [{ lr = 1e-3 }]", r"search.start\[1\].lr: not searched by this study; \[space\] has alpha, "
                                         "latent_size"),
    ("[search]\nstart = [{ latent_size = 64 }]", r"search.start\[1\].latent_size: 64 is not one of "
                                                r"space.latent_size.choices \[16, 32\]"),
    ("[search]\nstart = [1.0]", r"search.start\[1\]: expected a table of searched parameters"),
    ("[training]\neval_every = 5\npeak_every = 12", r"training.peak_every: 12 must be a multiple of training.eval_every 5"),
    ("[training]\npeak_every = 200", r"training.peak_every: 200 must be a multiple of training.eval_every 1 and at most "
                                     r"training.epochs 100"),
    ("[training]\npeak_every = -5", r"training.peak_every: must be >= 0, got -5"),
])
def test_bad_study_names_file_and_key(tmp_path, extra, message):
    path = tmp_path / "bad.toml"
    path.write_text(GOOD + "\n" + extra + "\n")
    with pytest.raises(ConfigError, match=f"{path}: {message}"):
        load_study(str(path))


def test_pack_is_a_workers_setting_not_a_trial_resource(tmp_path):
    path = tmp_path / "packed.toml"
    path.write_text(GOOD + "\n[resources]\ncpu = 2\ngpu = 1\npack = 32\nrestarts = 0\n")
    spec = load_study(str(path))
    assert spec.pack == 32 and spec.restarts == 0 and spec.resources == {"cpu": 2.0, "gpu": 1.0}
    assert (load_study("demo").pack, load_study("demo").restarts) == (1, 3)


def test_unknown_study_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"^nope: no such study file or shipped study; shipped studies: .*demo"):
        load_study("nope")
    with pytest.raises(ConfigError, match=r"missing.toml: no such study file; shipped studies: .*cub_full"):
        load_study("missing.toml")


def test_a_seed_past_32_bits_is_refused_at_load(tmp_path):
    path = tmp_path / "seed.toml"
    path.write_text(GOOD.replace('dataset = "synth-small"', 'dataset = "synth-small"\nseed = 4294967296'))
    with pytest.raises(ConfigError, match=rf"^{path}: study.seed: must be in \[0, 4294967295\], got 4294967296"):
        load_study(str(path))


def test_a_study_nested_past_the_parsers_recursion_is_one_line(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text(GOOD + "[search]\nstart = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=f"^{path}: nested too deeply for a study file"):
        load_study(str(path))


def test_invalid_toml_is_one_clear_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[study\ndataset = 1")
    with pytest.raises(ConfigError, match=f"{path}: not valid TOML"):
        load_study(str(path))


def load_text(tmp_path, text: str, name: str = "s"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return load_study(str(path))


def test_fixed_training_settings_reach_the_spec(tmp_path):
    spec = load_text(tmp_path, GOOD + '[training]\nbeta = 2\nkl_weight = 0.5\nsampling = "cada"\nclassifier = "fast"\n')
    assert spec.fixed == {"beta": 2.0, "kl_weight": 0.5, "sampling": "cada", "classifier": "fast"}
    assert isinstance(spec.fixed["beta"], float)
    assert load_text(tmp_path, GOOD, "none").fixed == {}


def test_sampling_is_searchable_as_a_categorical(tmp_path):
    spec = load_text(tmp_path, GOOD + '[space.sampling]\nchoices = ["textbook", "cada"]\n')
    assert [p.name for p in spec.space] == ["alpha", "latent_size", "sampling"]
    assert spec.space[-1] == Param("sampling", choices=("textbook", "cada"))
    only = load_text(tmp_path, '[study]\ndataset = "synth-small"\n[space.sampling]\nchoices = ["cada"]\n', "only")
    assert only.space == (Param("sampling", choices=("cada",)),) and only.fixed == {}


def test_the_study_file_knows_the_models_samplings_and_classifiers():
    from gzsl.evaluation import CLASSIFIERS as EVAL_CLASSIFIERS
    from gzsl.model import SAMPLING

    assert hyperparams.get("sampling").choices == SAMPLING and CLASSIFIERS == tuple(EVAL_CLASSIFIERS)


@pytest.mark.parametrize("extra, message", [
    ('[space.sampling]\nchoices = ["textbook", "gaussian"]',
     "space.sampling.choices: expected 'cada' and/or 'textbook', each once, got ['textbook', 'gaussian']"),
    ('[space.sampling]\nchoices = ["cada", "cada"]',
     "space.sampling.choices: expected 'cada' and/or 'textbook', each once, got ['cada', 'cada']"),
    ("[space.sampling]\nchoices = []", "space.sampling.choices: expected 'cada' and/or 'textbook', each once, got []"),
    ("[space.sampling]\nlow = 0\nhigh = 1",
     'space.sampling: sampling is categorical; give choices = ["cada", "textbook"]'),
    ('[training]\nclassifier = "svm"', "training.classifier: expected 'cada' (CADA-VAE's recipe) or 'fast', got 'svm'"),
    ('[training]\nsampling = "gaussian"', "training.sampling: expected 'cada' or 'textbook', got 'gaussian'"),
    ("[training]\nsampling = 1", "training.sampling: expected str, got int 1"),
    ('[training]\nsampling = "cada"\n[space.sampling]\nchoices = ["textbook", "cada"]',
     "space.sampling: searched, and also fixed by training.sampling = 'cada'; remove one of them"),
    ("[training]\nbeta = 0", "training.beta: must be a finite number > 0, got 0"),
    ("[training]\nbeta = -1.5", "training.beta: must be a finite number > 0, got -1.5"),
    ("[training]\nkl_weight = 0.0", "training.kl_weight: must be a finite number > 0, got 0.0"),
    ("[training]\nkl_weight = nan", "training.kl_weight: must be a finite number > 0, got nan"),
    ("[training]\nkl_weight = inf", "training.kl_weight: must be a finite number > 0, got inf"),
    ('[space.lr]\nlow = 1e-4\nhigh = 1e-3\nlog = "false"', "space.lr.log: expected true or false (no quotes), got 'false'"),
    ('[space.gamma]\nchoices = ["high", "low"]', "space.gamma.choices: gamma takes positive numbers up to 10000, got ['high', 'low']"),
    ("[space.gamma]\nchoices = [1, 0]", "space.gamma.choices: gamma takes positive numbers up to 10000, got [1, 0]"),
    ("[space.lam]\nlow = 0\nhigh = 4\nlog = false", "space.lam.low: lam must stay > 0, got 0"),
    ("[space.lr]\nlow = -1e-3\nhigh = 1e-3\nlog = false", "space.lr.low: lr must stay > 0, got -0.001"),
])
def test_bad_values_are_one_line_naming_file_and_key(tmp_path, extra, message):
    path = tmp_path / "bad.toml"
    path.write_text(GOOD + "\n" + extra + "\n")
    with pytest.raises(ConfigError) as err:
        load_study(str(path))
    assert str(err.value) == f"{path}: {message}"


@pytest.mark.parametrize("extra, message", [
    ("[resources]\ngpu = inf", "resources.gpu: must be a finite number >= 0, got inf"),
    ("[resources]\ngpu = nan", "resources.gpu: must be a finite number >= 0, got nan"),
    ("[resources]\ncpu = inf", "resources.cpu: must be a finite number >= 0, got inf"),
    ("[resources]\ncpu = nan", "resources.cpu: must be a finite number >= 0, got nan"),
    ("[training]\nhidden = [true, 1, 1, 1]",
     "training.hidden: expected 4 integers in [1, 65536] (ENC_V, DEC_V, ENC_S, DEC_S), got [True, 1, 1, 1]"),
    ("# caf\xe9", f"not UTF-8 text (byte {len(GOOD) + 6}); save the study file as UTF-8"),
])
def test_tune_refuses_a_bad_study_in_one_line(tmp_path, extra, message):
    """Through `python -m gzsl.tune`: exit 2 and one line, before any data or Ray (the last case is
    Latin-1 bytes)."""
    path = tmp_path / "bad.toml"
    path.write_bytes((GOOD + "\n" + extra + "\n").encode("latin-1"))
    p = subprocess.run([sys.executable, "-m", "gzsl.tune", "--study", str(path), "--results", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.splitlines() == [f"error: {path}: {message}"]


@pytest.mark.parametrize("line, message", [
    ("seed = -1", "study.seed: must be in [0, 4294967295], got -1 (numpy's and Optuna's seeds are unsigned 32-bit)"),
    ('split = "test"', "study.split: a study tunes on validation H and scores test once, in its final refit; "
                       'tuning on test H would report a test score chosen on test: use split = "val"'),
])
def test_bad_study_table_values_are_one_line(tmp_path, line, message):
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace('[study]\n', f"[study]\n{line}\n"))
    with pytest.raises(ConfigError) as err:
        load_study(str(path))
    assert str(err.value) == f"{path}: {message}"


def test_every_study_starts_from_the_defaults_then_its_own_points(tmp_path):
    """The first trial is method.md's defaults, brought inside the space (latent 64 is not among
    [16, 32]: the nearest choice); [search] start adds points, each filled in from the defaults."""
    from gzsl.studyfile import start_label
    from gzsl.trainer import TrainConfig

    spec = load_text(tmp_path, GOOD + '[search]\nstart = [{ alpha = 0.5 }, { alpha = 2.0, latent_size = 16 }]\n')
    assert spec.start == (("defaults", {"alpha": 1.0, "latent_size": 32}),
                          ("start 1", {"alpha": 0.5, "latent_size": 32}),
                          ("start 2", {"alpha": 2.0, "latent_size": 16}))
    assert start_label(spec, {"alpha": 0.5, "latent_size": 32, "lr": 1.5e-4}) == "start 1"
    assert start_label(spec, {"alpha": 0.51, "latent_size": 32}) == ""  # what TPE proposed
    # The defaults are TrainConfig's, and a shipped study's lie inside its space unchanged.
    defaults = hyperparams.defaults()
    assert {k: getattr(TrainConfig(), k) for k in defaults} == defaults
    cub = load_study("cub_full")
    assert cub.start[0] == ("defaults", {k: defaults[k] for k in ("alpha", "gamma", "lam", "latent_size", "lr")})


def test_h_noise_and_h_floor_belong_in_selection_and_still_load_from_asha_with_a_note(tmp_path):
    """[selection] holds the two Hs every rule reads (the rungs, the confirmation, the refit epoch);
    a file written before gives them under [asha]: it loads the same values, and says where they go."""
    new = load_text(tmp_path, '[study]\ndataset = "synth-small"\n[selection]\nh_noise = 3.5\nh_floor = 7.0\n'
                              '[space]\nlr = { low = 1e-4, high = 1e-2 }', name="new")
    old = load_text(tmp_path, '[study]\ndataset = "synth-small"\n[asha]\nh_noise = 3.5\nh_floor = 7.0\n'
                              '[space]\nlr = { low = 1e-4, high = 1e-2 }', name="old")
    assert (new.h_noise, new.h_floor, new.notes) == (3.5, 7.0, ())
    assert (old.h_noise, old.h_floor) == (3.5, 7.0)
    assert [n.split(": ", 2)[2] for n in old.notes] == [
        f"asha.{k} now belongs in [selection] (the stopping rules, the confirmation and the refit epoch all read it); "
        f"loaded as selection.{k}" for k in ("h_floor", "h_noise")]
