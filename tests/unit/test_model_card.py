"""The model card quotes only reports that measured the served recipe: a report whose fingerprint is another
config's describes another model, and the card says so instead of quoting it."""

from __future__ import annotations

import json

from emotion_core.config import fingerprint, load_config
from emotion_core.research.reporting import crosscorpus_card, served_report


def test_a_report_of_the_served_recipe_is_quoted(tmp_path) -> None:
    cfg = load_config("default")
    (tmp_path / "robustness.json").write_text(json.dumps({"fingerprint": fingerprint(cfg), "clips": 1440}))
    report, why = served_report(tmp_path / "robustness.json", cfg, "make robustness")
    assert report == {"fingerprint": fingerprint(cfg), "clips": 1440} and why == ""


def test_a_report_of_another_recipe_or_none_is_not(tmp_path) -> None:
    cfg = load_config("default")
    other = fingerprint(load_config("default", ["encoder.level_dbfs=null", "encoder.min_seconds=0"]))
    (tmp_path / "robustness.json").write_text(json.dumps({"fingerprint": other, "clips": 1440}))
    report, why = served_report(tmp_path / "robustness.json", cfg, "make robustness")
    assert report is None and other in why and fingerprint(cfg) in why and "make robustness" in why
    report, why = served_report(tmp_path / "cv.json", cfg, "make crossval")
    assert report is None and "run `make crossval`" in why


def test_the_cross_corpus_paragraph_needs_the_served_recipes_row() -> None:
    cfg = load_config("default", ["train.label_smoothing=0.2"])  # a recipe no stored row has
    report = {"recipes": [{"fingerprint": fingerprint(load_config("default")), "name": "baseline", "loco": {}}]}
    assert crosscorpus_card(report, cfg).startswith("`crosscorpus.json` has no row of this recipe")
