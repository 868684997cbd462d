"""`python -m gzsl.train` as a user runs it."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import real_att_splits


def gzsl_train(*args, env=None):
    return subprocess.run([sys.executable, "-m", "gzsl.train", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def refused(capsys, *args):
    """`python -m gzsl.train ARGS` run in this process (main, as `-m` calls it; argparse's exit is
    SystemExit): (exit code, stdout, stderr). The refusals below need no process of their own each:
    the subprocess tests above show the real one's exit code and stderr."""
    from gzsl import train

    try:
        code = train.main(list(args))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def test_trains_and_ends_with_one_json_line():
    p = gzsl_train("--dataset", "synth-small", "--split", "test", "--epochs", "3", "--eval-every", "2",
                   "--hidden", "64", "64", "32", "32", "--threads", "1")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(result) == {"U", "S", "H", "epochs", "seconds", "status"}
    assert result["epochs"] == 3 and result["status"] == "completed"
    assert 0 <= result["H"] <= 100
    epochs = [line for line in p.stderr.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 3
    assert "H " in epochs[1] and "H " in epochs[2] and " H " not in epochs[0]


def test_help_documents_every_flag():
    p = gzsl_train("--help")
    assert p.returncode == 0
    for flag in ("--dataset", "--data-root", "--split", "--epochs", "--batch-size", "--seed", "--eval-every",
                 "--no-disentangle", "--device", "--alpha", "--gamma", "--lam", "--latent-size", "--lr"):
        assert flag in p.stdout


def test_missing_data_file_is_one_line_naming_the_file(tmp_path):
    p = gzsl_train("--dataset", "CUB", "--data-root", str(tmp_path))
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0
    assert f"{tmp_path}/CUB/res101.mat: file not found" in p.stderr
    assert "Traceback" not in p.stderr


def test_malformed_data_file_is_one_line(tmp_path):
    att = real_att_splits("AWA1")
    (tmp_path / "AWA1").mkdir()
    (tmp_path / "AWA1" / "res101.mat").write_bytes(b"\x00garbage")
    (tmp_path / "AWA1" / "att_splits.mat").symlink_to(att)
    p = gzsl_train("--dataset", "AWA1", "--data-root", str(tmp_path))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "res101.mat: not a readable MATLAB .mat file" in p.stderr


@pytest.mark.parametrize("flag", [["--lr", "-1"], ["--split", "train"], ["--device", "nonsense"], ["--device", "meta"],
                                  ["--device", "mps"], ["--epochs", "10000000000"]])
def test_bad_flags_exit_2_without_traceback(flag, capsys):
    p = refused(capsys, "--epochs", "1", *flag)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert flag[0] in p.stderr


@pytest.mark.parametrize("flag, value, rule", [
    ("--seed", "-1", "must be an integer in [0, 4294967295] (numpy seeds are unsigned 32-bit)"),
    ("--seed", str(2**64), "must be an integer in [0, 4294967295] (numpy seeds are unsigned 32-bit)"),
    ("--gamma", "-5", "must be a finite number > 0 and <= 10000"), ("--lam", "nan", "must be a finite number > 0 and <= 10000"),
    ("--alpha", "inf", "must be a finite number > 0 and <= 10000"), ("--lr", "nan", "must be a finite number > 0 and <= 1000"),
    ("--latent-size", "100000000", "must be a positive integer and <= 4096"),
    ("--kl-weight", "inf", "must be a finite number > 0"),
])
def test_out_of_range_numbers_are_refused_before_training(flag, value, rule, capsys):
    p = refused(capsys, "--dataset", "synth-small", "--epochs", "1", flag, value)
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stdout == ""
    errors = [line for line in p.stderr.splitlines() if "error" in line]  # argparse's usage lines, then this one
    assert errors == [f"python -m gzsl.train: error: argument {flag}: {rule}, got {value}"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: the GPU branch is tested instead")
def test_device_cuda_without_a_gpu_is_one_line():
    p = gzsl_train("--epochs", "1", "--device", "cuda")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "--device cuda: no CUDA device is visible here" in p.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_device_cuda_trains_on_the_gpu():
    p = gzsl_train("--dataset", "synth-small", "--epochs", "2", "--device", "cuda")
    assert p.returncode == 0, p.stderr
    assert "device cuda" in p.stderr
    assert json.loads(p.stdout)["status"] == "completed"
