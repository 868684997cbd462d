"""A refit, confirmation or audit task that raises ends in one line and an error file; the other
tasks' rows are kept; --resume runs a failed task once more, then says which failed and why."""

from __future__ import annotations

import pytest

from gzsl.results import ResultStore
from gzsl.study import tasks

STUDY = """
[study]
dataset = "synth-small"
[training]
epochs = 1
hidden = [32, 32, 16, 16]
[search]
final_seeds = 2
[space]
alpha = { low = 0.1, high = 10.0 }
"""


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, log_to_driver=False, configure_logging=False, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_a_failing_refit_seed_is_one_line_an_error_file_and_one_retry(ray_local, tmp_path):
    from gzsl.datasets import load
    from gzsl.study import final_refit
    from gzsl.studyfile import load_study

    path = tmp_path / "fails.toml"
    path.write_text(STUDY)
    spec = load_study(str(path))
    store = ResultStore(str(tmp_path / "results"))
    data = load("synth-small", "test", seed=0)
    lines = []
    # No "epoch" in the chosen trial's parameters: each seed's task raises KeyError inside Ray.
    final = final_refit(spec, {"alpha": 1.0, "latent_size": 16}, data, store, log=lines.append)
    assert final.empty and len(lines) == 2
    for seed in (1000, 1001):
        line = next(x for x in lines if f"seed{seed} " in x)
        assert line == (f"final refit seed{seed} failed: KeyError: 'epoch' (error file {tmp_path}/results/errors/"
                        f"final-seed{seed}-1.txt; --resume runs it once more)")
        text = (tmp_path / "results" / "errors" / f"final-seed{seed}-1.txt").read_text()
        assert text.startswith("KeyError: 'epoch'\n") and 'score_epoch=params["epoch"]' in text  # where, in the file
        assert "\x1b[" not in text
    lines.clear()
    final_refit(spec, {"alpha": 1.0, "latent_size": 16}, data, store, log=lines.append)  # the resume's retry
    assert sorted(lines)[0].endswith("final-seed1000-2.txt; not retried)")
    lines.clear()
    final_refit(spec, {"alpha": 1.0, "latent_size": 16}, data, store, log=lines.append)  # given up: nothing runs
    assert sorted(lines) == [f"final refit seed{s}: failed 2 times, not retried: KeyError: 'epoch' (error file "
                             f"{tmp_path}/results/errors/final-seed{s}-2.txt)" for s in (1000, 1001)]


def test_one_line_is_the_error_raised_inside_the_task():
    class Wrapped(Exception):
        cause = ValueError("bad value\nmore lines")

    assert tasks.one_line(Wrapped("ray's long text")) == "ValueError: bad value"
    assert tasks.one_line(RuntimeError()) == "RuntimeError"
