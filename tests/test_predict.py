"""A trained model as a file: `gzsl.train --save` writes it, `gzsl.predict` scores it again or names
the classes of new images, and refuses what does not fit in one line (exit 2). The refit's models
are checked in test_study's end-to-end test."""

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from gzsl import predict, synthetic, train
from gzsl.datasets import load
from tests.conftest import real_att_splits, write_matching_res101

TRAIN = ["--split", "test", "--epochs", "3", "--eval-every", "0", "--classifier", "fast",
         "--hidden", "64", "64", "32", "32", "--threads", "1"]


def run(main, argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A synth-small model trained on trainval and saved; (path, the scores train printed)."""
    path = tmp_path_factory.mktemp("model") / "model.pt"
    code, out, err = run(train.main, ["--dataset", "synth-small", *TRAIN, "--save", str(path)])
    assert code == 0, err
    assert f"model saved to {path}" in err
    return path, json.loads(out.strip().splitlines()[-1])


def test_predict_reprints_the_scores_the_model_was_saved_with(saved):
    path, trained = saved
    code, out, err = run(predict.main, ["--model", str(path), "--split", "test"])
    assert code == 0, err
    again = json.loads(out)
    assert (again["U"], again["S"], again["H"], again["epoch"]) == (trained["U"], trained["S"], trained["H"], 3)
    assert 0 < again["U"] < 100  # a trained model, not a constant
    assert f"saved with U {trained['U']:.2f} S {trained['S']:.2f} H {trained['H']:.2f}" in err
    assert not list(path.parent.glob(".tmp-*"))  # written whole, then moved into place


@pytest.mark.parametrize("images", ["eval_unseen", "eval_seen"])
def test_features_name_the_classes_of_new_images(saved, tmp_path, images):
    """Raw features of the test's images (before the training images' scaling): the names predict
    prints give the same per-class accuracy as the U (unseen) or S (seen) it scores."""
    path, trained = saved
    data = load("synth-small", "test")
    chosen = getattr(data, images)
    raw = synthetic.generate("synth-small").features[chosen.index]
    np.save(tmp_path / "new.npy", raw)
    code, out, err = run(predict.main, ["--model", str(path), "--features", str(tmp_path / "new.npy")])
    assert code == 0, err
    rows = [line.split("\t") for line in out.strip().splitlines()]
    assert [int(i) for i, _ in rows] == list(range(len(raw)))
    truth = pd.Series([data.class_names[c] for c in chosen.y.tolist()])
    hits = pd.Series([name for _, name in rows]) == truth
    assert round(100 * hits.groupby(truth).mean().mean(), 2) == trained["U" if images == "eval_unseen" else "S"]


@pytest.mark.parametrize("case", ["width", "not npy", "not a model", "missing", "other dataset", "other split"])
def test_bad_input_is_one_line_exit_2(saved, tmp_path, case):
    path, _ = saved
    args = {
        "width": ["--features", str(tmp_path / "narrow.npy")],
        "not npy": ["--features", str(tmp_path / "notes.txt")],
        "not a model": [],
        "missing": [],
        "other dataset": ["--dataset", "synth-cub"],
        "other split": ["--split", "val"],
    }[case]
    np.save(tmp_path / "narrow.npy", np.ones((4, 7), np.float32))
    (tmp_path / "notes.txt").write_text("not an array")
    model = {"not a model": tmp_path / "notes.txt", "missing": tmp_path / "nowhere.pt"}.get(case, path)
    code, out, err = run(predict.main, ["--model", str(model), *args])
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    expected = {"width": "shape (4, 7)", "not npy": "notes.txt: not a readable .npy", "not a model": "not a gzsl model",
                "missing": "nowhere.pt: cannot read", "other dataset": "trained on synth-small, not synth-cub",
                "other split": "use --split test"}[case]
    assert expected in lines[0]


CRAFTED = {  # a saved model's payload changed by `craft`, and what the error line says is wrong
    "no weights": (lambda p: p.pop("state_dict"), "(state_dict: missing)"),
    "scores not a dict": (lambda p: p.update(scores=[1, 2]), "(scores: expected a dict, got list)"),
    "names not a list": (lambda p: p["data"].update(class_names="abc"), "(data.class_names: expected list, got str)"),
    "huge latent": (lambda p: p["model_config"].update(latent_size=10**9),
                    "(model_config.latent_size: expected an integer in [1, 100000], got 1000000000)"),
    "latent not the weights'": (lambda p: p["model_config"].update(latent_size=128),
                                "(state_dict.latent_mask: (1, 1, 64), but model_config makes (1, 1, 128))"),
    "weight shape": (lambda p: p["state_dict"].update({"encoder_v.hidden.weight": torch.zeros(1, 7, 64)}),
                     "(state_dict.encoder_v.hidden.weight: (1, 7, 64), but model_config makes (1, 512, 64))"),
    "unknown class id": (lambda p: p["classifier"].update(classes=p["classifier"]["classes"] + 1000),
                         "(classifier.classes: expected 1 or more ids of data.class_names (40 names))"),
    "classifier shape": (lambda p: p["classifier"].update(bias=torch.zeros(3)),
                         "(classifier.bias: a torch.float32 tensor of shape (3,), expected floats of shape (40,))"),
    "train_config key": (lambda p: p["train_config"].update(momentum=0.9),
                         "(TypeError: TrainConfig.__init__() got an unexpected keyword argument 'momentum')"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_crafted_model_file_is_one_line_exit_2(saved, tmp_path, case):
    """A model file of the right format and version whose payload is wrong: nothing in it is
    trusted (no size read before it is checked against the weights), and the line says what is wrong."""
    path, _ = saved
    craft, expected = CRAFTED[case]
    payload = torch.load(path, weights_only=True)
    craft(payload)
    torch.save(payload, tmp_path / "crafted.pt")
    np.save(tmp_path / "new.npy", np.zeros((2, 512), np.float32))
    code, out, err = run(predict.main, ["--model", str(tmp_path / "crafted.pt"),
                                        "--features", str(tmp_path / "new.npy")])
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: {tmp_path / 'crafted.pt'}: not a valid gzsl model file {expected}; "
                                        "use one written by a study's refit or gzsl.train --save"]


def test_a_cub_model_names_cub_classes_and_refuses_other_data(tmp_path):
    """With the real att_splits.mat (features made to match it): the names come from its
    allclasses_names, and a data root whose files differ from the model's is refused."""
    att = real_att_splits("CUB")
    root = write_matching_res101(att, tmp_path / "xlsa17", "CUB", dim=8, seed=0)
    model = tmp_path / "cub.pt"
    code, _, err = run(train.main, ["--dataset", "CUB", "--data-root", str(root), *TRAIN, "--epochs", "1",
                                    "--save", str(model)])
    assert code == 0, err
    features = np.random.default_rng(0).random((3, 8)).astype(np.float32)
    np.save(tmp_path / "three.npy", features)
    code, out, err = run(predict.main, ["--model", str(model), "--features", str(tmp_path / "three.npy")])
    names = load("CUB", "test", root).class_names
    assert code == 0, err
    assert len(out.splitlines()) == 3 and all(line.split("\t")[1] in names for line in out.splitlines())
    assert names[0].startswith("0") and "." in names[0]  # '002.Laysan_Albatross'-like, from the .mat file

    other = write_matching_res101(att, tmp_path / "other", "CUB", dim=8, seed=1)
    code, out, err = run(predict.main, ["--model", str(model), "--data-root", str(other)])
    assert code == 2 and "differ from those the model was trained on" in err and len(err.strip().splitlines()) == 1


def test_a_compressed_storage_is_refused_before_torch_unpacks_it(saved, tmp_path, monkeypatch):
    """A model file rewritten with one storage grown to 400 MB of zeros and deflated: a few hundred KB
    on disk. It is refused from the archive's directory, before torch.load runs."""
    import zipfile

    path, _ = saved
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bomb, "w") as dst:
        names = src.namelist()
        storage = next(n for n in names if "/data/" in n)
        for n in names:
            if n == storage:
                dst.writestr(n, bytes(400 * 2**20), compress_type=zipfile.ZIP_DEFLATED)
            else:
                dst.writestr(n, src.read(n))
    assert bomb.stat().st_size < 2 * 2**20
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load ran on a compressed archive"))
    np.save(tmp_path / "new.npy", np.zeros((2, 512), np.float32))
    code, out, err = run(predict.main, ["--model", str(bomb), "--features", str(tmp_path / "new.npy")])
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"error: {bomb}: not a gzsl model file (entry '{storage}' is compressed or "
                                        "larger than the file, which torch.save never writes); use one written by a "
                                        "study's refit or gzsl.train --save"]
