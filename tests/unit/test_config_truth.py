"""Settings have one truth: the dataclass defaults are the README's run (experiments/default.yaml), and every
experiments/*.yaml file validates against a typed schema that refuses unknown keys."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from emotion_core.config import CROP_SECONDS, EXPERIMENTS_DIR, ExperimentConfig, TrainConfig, load_config
from emotion_core.research.ablation import AblationsSpec, load_ablations
from emotion_core.research.crosscorpus import CrossCorpusSpec
from emotion_core.research.crosscorpus import load_spec as load_crosscorpus_spec
from emotion_core.research.tuning.space import TuneSpec, load_tune_spec
from emotion_core.serving import windows


def test_code_defaults_are_the_default_yaml():
    assert load_config("default") == ExperimentConfig(name="default")


def test_every_experiment_config_loads():
    for path in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        if path.stem == "tune":
            load_tune_spec(path)
        elif path.stem == "ablations":
            spec = load_ablations(path)
            for row in spec.rows:  # every row's overrides make a valid config
                load_config(spec.base, row.set_)
        elif path.stem == "crosscorpus":
            cross = load_crosscorpus_spec(path)
            for candidate in cross.candidates:
                load_config(cross.base, candidate.set_)
        else:
            load_config(path)


@pytest.mark.parametrize("schema, path", [(TuneSpec, "tune.yaml"), (AblationsSpec, "ablations.yaml"),
                                          (CrossCorpusSpec, "crosscorpus.yaml")])
def test_search_and_ablation_files_refuse_unknown_keys(schema, path):
    raw = yaml.safe_load((EXPERIMENTS_DIR / path).read_text())
    schema.model_validate(raw)
    with pytest.raises(ValidationError):
        schema.model_validate({**raw, "n_trails": 5})


def test_a_typo_in_a_search_parameter_is_refused():
    raw = yaml.safe_load((EXPERIMENTS_DIR / "tune.yaml").read_text())
    raw["space"]["train.lr"] = {**raw["space"]["train.lr"], "hihg": 0.1}
    with pytest.raises(ValidationError):
        TuneSpec.model_validate(raw)


def test_serving_windows_are_the_training_crop():
    assert windows.WINDOW_SECONDS == TrainConfig().crop_seconds == CROP_SECONDS


@pytest.mark.parametrize("bad", [[0.5], [1.2, 0.5], [0.0, 1.0], [0.5, 1.0, 2.0]])
def test_word_length_copies_need_a_shortest_and_a_longest(bad):
    assert TrainConfig(excerpt_seconds=[0.5, 1.2]).excerpt_seconds == [0.5, 1.2]
    with pytest.raises(ValidationError, match="excerpt_seconds"):
        TrainConfig(excerpt_seconds=bad)
