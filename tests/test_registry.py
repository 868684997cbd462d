"""The dataset registry (gzsl.registry): one row per dataset, from which the loader, the split
protocol, the classifier recipe, the study file check, the command lines and the report derive."""

import dataclasses

import pandas as pd
import pytest

from gzsl import registry, synthetic
from gzsl.errors import DataError

APY = registry.Dataset("APY", "xlsa17", True, val_classes=5, classifier_epochs=31,
                       references={"CADA-VAE": (31.2, 55.0, 39.8)})  # a made-up row: what a new benchmark adds


@pytest.fixture
def with_apy(monkeypatch):
    monkeypatch.setattr(registry, "DATASETS", {**registry.DATASETS, "APY": APY})


def test_every_generated_row_has_its_generator_and_every_generator_a_row():
    assert set(registry.names("synthetic")) == set(synthetic.PRESETS)
    assert set(registry.names("attributes")) == set(synthetic.ATTRIBUTE_PRESETS)
    for name, spec in synthetic.ATTRIBUTE_PRESETS.items():
        assert registry.get(name).imitates == spec.source and registry.get(spec.source).source == "xlsa17"


def test_names_are_found_as_a_user_writes_them():
    assert registry.get("cub").name == "CUB" and registry.get("AWA2").name == "AWA2"
    assert registry.get("synth-small@3").name == "synth-small"
    for name in ("SYNTH-SMALL", "CUB@1", "synth-small@x", "synth-small@01", "nope", ""):
        assert registry.get(name) is None, name
    assert registry.settings_of("cub-sim").name == "CUB" and registry.settings_of("synth-small").name == "synth-small"


def test_a_row_added_is_seen_by_the_study_file_the_loader_the_recipe_the_cli_and_the_report(with_apy, tmp_path, capsys):
    from gzsl import datasets, evaluation, train
    from gzsl.errors import ConfigError
    from gzsl.report import records
    from gzsl.studyfile import load_study

    study = tmp_path / "apy.toml"
    study.write_text('[study]\ndataset = "apy"\n[space]\nlr = { low = 1e-4, high = 1e-2 }\n')
    assert load_study(str(study)).dataset == "apy"
    study.write_text('[study]\ndataset = "apz"\n[space]\nlr = { low = 1e-4, high = 1e-2 }\n')
    with pytest.raises(ConfigError, match=r"study.dataset: unknown dataset 'apz'; choose one of .*SUN, APY with data_root"):
        load_study(str(study))
    with pytest.raises(DataError, match=r"dataset APY needs --data-root .*\(containing APY/res101.mat\)"):
        datasets.load("APY")
    assert evaluation.cada_recipe("APY").epochs == 31
    assert evaluation.cada_recipe("synth-small").epochs == evaluation.CADA_RECIPE.epochs
    with pytest.raises(SystemExit):
        train.main(["--help"])
    assert "CUB, AWA1, AWA2, SUN, APY" in " ".join(capsys.readouterr().out.split())
    final = pd.DataFrame({"seed": [1000, 1001], "status": "completed", "scored_epoch": 30, "epochs": 30,
                          "classifier_epochs": 31, "sampling": "cada", "kl_weight": 1.0, "model": None,
                          **{f"{p}{k}": [40.0, 42.0] for p in ("test_", "fast_test_") for k in "USH"}})
    r = records.StudyResults("apy", {"dataset": "APY"}, pd.DataFrame(), pd.DataFrame(), final)
    assert records.final_result(r).references == {"CADA-VAE": (31.2, 55.0, 39.8)}
    bare = dataclasses.replace(APY, references={})
    registry.DATASETS["APY"] = bare
    assert records.final_result(r).references == {}
