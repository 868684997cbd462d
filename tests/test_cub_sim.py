"""cub-sim: CUB's real attributes and class split (att_splits.mat alone), generated features."""

import contextlib
import io
import json
from dataclasses import replace

import numpy as np
import pytest

from gzsl import predict, synthetic, train
from gzsl.data import AttSplits, read_att_splits
from gzsl.datasets import load
from gzsl.errors import DataError
from gzsl.evaluation import cada_recipe
from gzsl.datasets import default_hidden
from tests.conftest import real_att_splits


@pytest.fixture(scope="module")
def root():
    return real_att_splits("CUB").parents[1]  # skips where ../shared/data/xlsa17/CUB/att_splits.mat is absent


def test_the_class_split_is_cubs_proposed_split_read_from_att_splits_alone(root):
    splits = read_att_splits(root, "CUB")
    role = synthetic.cub_class_split(splits)
    assert np.bincount(role).tolist() == [150, 0, 50]  # the file has no val_loc: validation classes are drawn
    unseen = {splits.class_names[c] for c in np.flatnonzero(role == synthetic.UNSEEN)}
    assert {"004.Groove_billed_Ani", "012.Yellow_headed_Blackbird", "200.Common_Yellowthroat"} <= unseen
    assert not {"001.Black_footed_Albatross", "002.Laysan_Albatross"} & unseen


def test_shapes_splits_and_class_counts(root):
    spec = synthetic.ATTRIBUTE_PRESETS["cub-sim"]
    test, val = load("cub-sim", "test", root), load("cub-sim", "val", root)
    n_unseen, n_val = spec.n_classes // 4, spec.n_classes // 4  # CUB's shares: 50 of 200, 50 of 150 seen
    assert test.semantics.shape == (spec.n_classes, 312) and test.feature_dim == 2048
    assert (len(test.seen_classes), len(test.unseen_classes)) == (spec.n_classes - n_unseen, n_unseen)
    assert (len(val.seen_classes), len(val.unseen_classes)) == (spec.n_classes - n_unseen - n_val, n_val)
    assert not set(val.unseen_classes.tolist()) & set(test.unseen_classes.tolist())  # val classes are seen ones
    np.testing.assert_allclose(np.linalg.norm(test.semantics.numpy(), axis=1), 1.0, rtol=1e-5)  # CUB's `att`
    names = read_att_splits(root, "CUB").class_names
    assert set(test.class_names) <= set(names) and len(set(test.class_names)) == spec.n_classes
    # Real unseen classes stay unseen: cub-sim's are among CUB's.
    role = dict(zip(names, synthetic.cub_class_split(read_att_splits(root, "CUB"))))
    assert {role[test.class_names[c]] for c in test.unseen_classes.tolist()} == {synthetic.UNSEEN}


def test_generation_is_deterministic_and_resnet_like(root):
    spec = synthetic.ATTRIBUTE_PRESETS["cub-sim"]
    a = synthetic.from_attributes(spec, read_att_splits(root, "CUB"))
    b = synthetic.generate_from_attributes("cub-sim", root)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.test_unseen, b.test_unseen)
    assert a.fingerprint() == b.fingerprint() == load("cub-sim", "test", root).fingerprint
    x = a.features
    assert x.shape == (spec.n_classes * spec.images_per_class, 2048) and x.dtype == np.float32
    assert (x >= 0).all() and (x == 0).mean() > 0.1  # non-negative, sparse
    assert x.max() > 10 * x.mean()  # a long right tail
    c = synthetic.from_attributes(replace(spec, seed=1), read_att_splits(root, "CUB"))
    assert not np.array_equal(a.features, c.features)


def test_it_takes_cubs_widths_and_classifier_epochs():
    assert default_hidden("cub-sim") == synthetic.ATTRIBUTE_PRESETS["cub-sim"].hidden
    assert cada_recipe("cub-sim").epochs == cada_recipe("CUB").epochs == 23


def test_without_the_file_the_error_is_one_line_naming_it_and_the_fix(tmp_path):
    with pytest.raises(DataError) as no_root:
        load("cub-sim", "val")
    with pytest.raises(DataError) as no_file:
        load("cub-sim", "val", tmp_path)
    for err, where in ((no_root, "CUB/att_splits.mat"), (no_file, str(tmp_path / "CUB" / "att_splits.mat"))):
        text = str(err.value)
        assert "\n" not in text and where in text and "--data-root" in text and "xlsa17" in text


def test_a_split_the_image_order_cannot_explain_is_refused(tmp_path):
    names = ("001.A", "002.B", "003.C")
    loc = lambda *i: np.array(i)  # noqa: E731
    ok = AttSplits(tmp_path / "att_splits.mat", np.ones((3, 2), np.float32), names,
                   trainval=loc(0, 1, 2, 3), test_seen=loc(4), test_unseen=loc(5, 6), train=None, val=None)
    assert synthetic.cub_class_split(ok, max_images_per_class=3).tolist() == [0, 0, 2]
    with pytest.raises(DataError, match="att_splits.mat: cannot tell the classes"):  # 2 classes of 3 images, not 3
        synthetic.cub_class_split(ok, max_images_per_class=5)
    with pytest.raises(DataError, match="allclasses_names"):
        synthetic.cub_class_split(replace(ok, class_names=("1", "2", "3")), max_images_per_class=3)


def run(main, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_train_saves_a_model_that_predict_scores_again_with_the_data_root(root, tmp_path):
    model = tmp_path / "cub-sim.pt"
    code, out, err = run(train.main, ["--dataset", "cub-sim", "--data-root", str(root), "--split", "test",
                                      "--epochs", "1", "--eval-every", "0", "--classifier", "fast",
                                      "--hidden", "32", "32", "32", "32", "--threads", "1", "--save", str(model)])
    assert code == 0, err
    trained = json.loads(out.strip().splitlines()[-1])
    code, out, err = run(predict.main, ["--model", str(model), "--data-root", str(root)])
    assert code == 0, err
    assert {k: json.loads(out)[k] for k in "USH"} == {k: trained[k] for k in "USH"}
    code, out, err = run(predict.main, ["--model", str(model)])  # no --data-root: one line, exit 2
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--data-root" in err
