"""Loading the xlsa17 layout and the synthetic presets, and the two split protocols."""

import numpy as np
import pytest
import scipy.io
import torch

from gzsl import data as gdata
from gzsl import synthetic
from gzsl.datasets import load
from gzsl.errors import DataError
from tests.conftest import real_att_splits, write_matching_res101


@pytest.mark.parametrize("name", ["CUB", "AWA1", "AWA2", "SUN"])
def test_val_split_never_holds_a_test_image_on_the_real_split_files(tmp_path, name):
    att_path = real_att_splits(name)
    root = write_matching_res101(att_path, tmp_path, name)
    att = scipy.io.loadmat(str(att_path))
    test_images = np.union1d(att["test_seen_loc"].ravel(), att["test_unseen_loc"].ravel()) - 1

    d = load(name, "val", root, seed=3)
    for part in (d.train, d.eval_seen, d.eval_unseen):
        assert len(part) > 0
        assert np.intersect1d(part.index, test_images).size == 0
        # The features really are those images' (row 0 of res101 holds the image number),
        # undone from the MinMax scaling fit on the training images.
        lo, hi = d.train.index.min() + 1, d.train.index.max() + 1
        np.testing.assert_allclose(part.x[:, 0].numpy() * (hi - lo) + lo, part.index + 1, rtol=1e-5)
    # Validation classes are unseen in training; val-seen images are held out of training.
    assert not set(d.unseen_classes.tolist()) & set(d.seen_classes.tolist())
    assert set(d.eval_seen.y.tolist()) <= set(d.seen_classes.tolist())
    assert np.intersect1d(d.train.index, d.eval_seen.index).size == 0
    held = len(d.eval_seen) / (len(d.eval_seen) + len(d.train))
    assert 0.17 < held < 0.23
    assert d.provenance["val_classes_derived"] == (name == "CUB")  # CUB's file has no train_loc/val_loc
    assert len(d.unseen_classes) == {"CUB": 50, "AWA1": 13, "AWA2": 13, "SUN": 65}[name]


def test_test_split_follows_the_proposed_split_and_scales_on_trainval(tmp_path):
    att_path = real_att_splits("AWA1")
    root = write_matching_res101(att_path, tmp_path, "AWA1")
    att = scipy.io.loadmat(str(att_path))
    d = load("AWA1", "test", root)
    np.testing.assert_array_equal(d.train.index, np.sort(att["trainval_loc"].ravel() - 1))
    np.testing.assert_array_equal(d.eval_unseen.index, np.sort(att["test_unseen_loc"].ravel() - 1))
    assert d.train.x.min().item() == 0.0 and d.train.x.max().item() == pytest.approx(1.0)
    assert len(d.seen_classes) == 40 and len(d.unseen_classes) == 10
    assert d.semantics.shape == (50, 85) and d.semantics.dtype == torch.float32


def test_derived_validation_classes_are_seeded(tmp_path):
    root = write_matching_res101(real_att_splits("CUB"), tmp_path, "CUB")
    a, b = load("CUB", "val", root, seed=1), load("CUB", "val", root, seed=1)
    c = load("CUB", "val", root, seed=2)
    assert a.unseen_classes.tolist() == b.unseen_classes.tolist()
    assert a.unseen_classes.tolist() != c.unseen_classes.tolist()
    assert a.provenance["val_classes"] == sorted(a.unseen_classes.tolist())


def test_second_load_reads_the_float32_cache(tmp_path, monkeypatch):
    root = write_matching_res101(real_att_splits("AWA2"), tmp_path, "AWA2")
    first = gdata.read_xlsa17(root, "AWA2")
    read = []
    original = gdata._loadmat
    monkeypatch.setattr(gdata, "_loadmat", lambda p: read.append(p.name) or original(p))
    second = gdata.read_xlsa17(root, "AWA2")
    assert read == ["att_splits.mat"]  # res101.mat came from the cache
    assert second.features.dtype == np.float32
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.labels, second.labels)


def _tiny_benchmark(tmp_path, features=None):
    """A 4-class benchmark in the xlsa17 layout, without train_loc/val_loc."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(1, 5), 10).astype(float)  # 1-based floats
    feats = rng.random((6, 40)) if features is None else features
    folder = tmp_path / "AWA1"
    folder.mkdir(parents=True)
    scipy.io.savemat(str(folder / "res101.mat"), {"features": feats, "labels": labels[:, None]})
    idx = np.arange(1, 41)
    seen = idx[labels <= 3]
    scipy.io.savemat(str(folder / "att_splits.mat"), {
        "att": rng.random((5, 4)), "trainval_loc": seen[seen % 5 != 0][:, None].astype(np.uint16),
        "test_seen_loc": seen[seen % 5 == 0][:, None].astype(np.uint16),
        "test_unseen_loc": idx[labels == 4][:, None].astype(np.uint16)})
    return tmp_path


def test_non_finite_features_are_an_error_only_where_the_run_reads_them(tmp_path):
    feats = np.random.default_rng(0).random((6, 40))
    feats[2, 4] = np.nan  # image 5: test_seen (5 % 5 == 0)
    feats[0, 1] = np.inf  # image 2: trainval
    root = _tiny_benchmark(tmp_path, feats)
    with pytest.raises(DataError, match=r"1 images of the val split have non-finite"):
        load("AWA1", "val", root)
    with pytest.raises(DataError, match=r"2 images of the test split have non-finite"):
        load("AWA1", "test", root)


def test_missing_and_malformed_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"AWA1/res101.mat: file not found"):
        load("AWA1", "val", tmp_path)
    root = _tiny_benchmark(tmp_path)
    (root / "AWA1" / "att_splits.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match=r"att_splits.mat: not a readable MATLAB"):
        load("AWA1", "val", root)
    scipy.io.savemat(str(root / "AWA1" / "att_splits.mat"), {"att": np.ones((5, 4))})
    with pytest.raises(DataError, match=r"att_splits.mat: missing variable 'trainval_loc'"):
        load("AWA1", "val", root)


def test_unknown_dataset_and_missing_root_are_clear():
    with pytest.raises(DataError, match="unknown dataset 'cub2'"):
        load("cub2")
    with pytest.raises(DataError, match="needs --data-root"):
        load("CUB")


def test_synthetic_presets_are_seeded_and_shaped_like_their_benchmark():
    a, b = synthetic.make(synthetic.PRESETS["synth-small"]), synthetic.make(synthetic.PRESETS["synth-small"])
    np.testing.assert_array_equal(a.features, b.features)
    cub = synthetic.generate("synth-cub")
    assert cub.features.shape[1] == 2048 and cub.semantics.shape == (200, 312)
    assert abs(len(cub.labels) - 11788) < 50
    assert abs(len(cub.trainval) - 7057) < 50 and abs(len(cub.test_unseen) - 2967) < 50
    assert (cub.features >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(cub.semantics, axis=1), 1.0, rtol=1e-5)
    d = load("synth-cub", "val")
    assert len(d.seen_classes) == 100 and len(d.unseen_classes) == 50


def test_classes_both_seen_and_unseen_are_an_error(tmp_path):
    root = _tiny_benchmark(tmp_path)
    att = scipy.io.loadmat(str(root / "AWA1" / "att_splits.mat"))
    att["test_unseen_loc"] = np.vstack([att["test_unseen_loc"], [[1]]]).astype(np.uint16)  # image 1 is class 1
    scipy.io.savemat(str(root / "AWA1" / "att_splits.mat"), {k: v for k, v in att.items() if not k.startswith("__")})
    with pytest.raises(DataError, match=r"AWA1: 1 classes \(e.g. class 1\) have images both in training"):
        load("AWA1", "test", root)


def test_the_data_layer_imports_no_generator_and_no_model():
    """One import direction: gzsl.synthetic makes RawBenchmarks for gzsl.data, never the reverse."""
    import ast
    from pathlib import Path

    import gzsl.data

    tree = ast.parse(Path(gzsl.data.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "gzsl.errors" in imported  # the walk sees gzsl's imports
    assert not imported & {"gzsl", "gzsl.synthetic", "gzsl.model", "gzsl.trainer", "gzsl.datasets"}


def test_fresh_validation_splits_partition_the_training_classes_before_repeating():
    """Splits 1..3 of synth-small (32 trainval classes, 8 in val_loc) take the other 24 classes in
    blocks of 8: with split 0 a partition of the trainval classes (class-wise cross-validation).
    Split 4 draws 8 of all 32. No split touches a test image, and split 0 is what it always was."""

    raw = synthetic.generate("synth-small")
    trainval_classes = set(np.unique(raw.labels[raw.trainval]).tolist())
    test = set(raw.test_seen.tolist()) | set(raw.test_unseen.tolist())
    seen = []
    for k in range(5):
        d = load("synth-small", "val", seed=0, val_split=k)
        classes = set(d.unseen_classes.tolist())
        assert len(classes) == 8 and classes <= trainval_classes
        assert not classes & set(d.seen_classes.tolist()) and len(d.seen_classes) == 24
        used = set(d.train.index.tolist()) | set(d.eval_seen.index.tolist()) | set(d.eval_unseen.index.tolist())
        assert not used & test and used == set(raw.trainval.tolist())
        seen.append(classes)
    assert set().union(*seen[:4]) == trainval_classes and sum(map(len, seen[:4])) == 32  # disjoint
    assert seen[0] == set(np.unique(raw.labels[raw.val]).tolist())
    assert gdata.build(raw, "val", seed=0).eval_seen.index.tolist() == load("synth-small", "val", seed=0).eval_seen.index.tolist()
    assert seen[4] not in seen[:4]


def test_another_draw_of_a_preset_has_its_shapes_and_other_classes():
    """synth-small@1: the generator seeded with 1; the same shapes and split sizes, other images."""
    first, other = synthetic.generate("synth-small"), synthetic.generate("synth-small@1")
    assert other.name == "synth-small@1" and other.features.shape == first.features.shape
    assert [len(getattr(other, k)) for k in ("trainval", "test_seen", "test_unseen")] == \
        [len(getattr(first, k)) for k in ("trainval", "test_seen", "test_unseen")]
    assert len(np.unique(other.labels[other.val])) == len(np.unique(first.labels[first.val])) == 8
    assert not np.allclose(other.features[:100], first.features[:100])
    assert synthetic.hidden("synth-small@1") == synthetic.hidden("synth-small")
    assert synthetic.fingerprint("synth-small@1") != synthetic.fingerprint("synth-small")
    for bad in ("synth-small@x", "synth-small@01", "synth-small@", "synth-cub@-1"):
        with pytest.raises(DataError, match="unknown dataset .*other draws: synth-small@1"):
            load(bad)
