"""Data layer without the corpus: RAVDESS file names, label normalisation, the EmoBox folds, clear errors for
bad corpus folders, unknown labels in a Hugging Face dataset. On the shared corpora: tests/integration/test_data.py."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from emotion_core.config import DataConfig
from emotion_core.data import (
    EMOBOX_FOLDS,
    load_manifest,
    normalize_emotion,
    parse_ravdess_name,
    read_folds,
    read_hf_dataset,
    read_ravdess,
    read_tess,
)


def test_emobox_folds_cover_every_actor_once():
    """The bundled folds (tests/integration/test_data.py checks them against the corpus's folds.csv)."""
    assert sorted(a for actors in EMOBOX_FOLDS.values() for a in actors) == list(range(1, 25))
    assert read_folds(None) == {a: fold for fold, actors in EMOBOX_FOLDS.items() for a in actors}


def test_parse_ravdess_name():
    fields = parse_ravdess_name("03-01-06-02-01-02-12.wav")
    assert fields == {
        "modality": "03",
        "vocal_channel": "01",
        "emotion": "fearful",
        "intensity": "strong",
        "statement": "Kids are talking by the door",
        "repetition": 2,
        "actor": 12,
    }
    assert parse_ravdess_name("README.md") is None
    with pytest.raises(ValueError, match="invalid code"):
        parse_ravdess_name("03-01-09-01-01-01-01.wav")


def test_bad_dirs_give_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="Actor_XX") as err:
        read_ravdess(empty)
    assert str(empty) in str(err.value) and "manifest.csv" in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_ravdess(tmp_path / "missing")
    with pytest.raises(ValueError, match="data.path"):
        load_manifest(DataConfig(corpus="ravdess_original"))
    with pytest.raises(FileNotFoundError, match="TESS"):
        read_tess(empty)


def test_normalize_emotion():
    assert normalize_emotion("fear") == "fearful"
    assert normalize_emotion("ps") == "surprised"
    assert normalize_emotion("Pleasant_Surprise") == "surprised"
    assert normalize_emotion(" Angry ") == "angry"
    assert normalize_emotion("frustrated") is None


def test_hf_unknown_labels(tmp_path):
    import datasets

    buf = io.BytesIO()
    sf.write(buf, np.zeros(1600, dtype="float32"), 16000, format="WAV")
    ds = datasets.Dataset.from_dict(  # raw WAV bytes in a plain struct column (no Audio feature)
        {"audio": [{"bytes": buf.getvalue(), "path": None}] * 3, "label": ["frustrated", "happy", "sad"]}
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(ValueError, match="frustrated"):
        read_hf_dataset(tmp_path / "ds", out_dir=tmp_path / "out")
    with pytest.warns(UserWarning, match="dropping"):
        df = read_hf_dataset(tmp_path / "ds", out_dir=tmp_path / "out", unknown_labels="drop")
    assert sorted(df["emotion"]) == ["happy", "sad"] and (df["duration_s"] == 0.1).all()


def test_embedding_shards_split_a_manifest_the_same_way_on_every_host():
    import pandas as pd

    from emotion_core.research.cache import manifest_shard

    manifest = pd.DataFrame({"clip_id": [f"c{i:02d}" for i in range(10)], "path": "x"}).sample(frac=1, random_state=0)
    shards = [manifest_shard(manifest, f"{i}/3") for i in (1, 2, 3)]
    ids = [set(s["clip_id"]) for s in shards]
    assert set.union(*ids) == set(manifest["clip_id"]) and sum(map(len, ids)) == 10  # disjoint, whole
    assert [len(s) for s in shards] == [4, 3, 3]
    reordered = manifest.sample(frac=1, random_state=1)
    assert set(manifest_shard(reordered, "2/3")["clip_id"]) == ids[1]  # the manifest's order does not matter
    assert manifest_shard(manifest, None) is manifest
    for bad in ("0/3", "4/3", "2", "a/b"):
        with pytest.raises(ValueError):
            manifest_shard(manifest, bad)
