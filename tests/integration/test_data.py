"""Data layer on the shared corpora: corpus readers, manifest schema, sample cap, speaker-independent splits,
prepare pipeline. Name parsing, label normalisation and errors without the corpus: tests/unit/test_data.py."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr

from emotion_core.config import PROJECT_ROOT, DataConfig, ExperimentConfig, data_dir
from emotion_core.data import (
    EMOBOX_FOLDS,
    MANIFEST_COLUMNS,
    cap_samples,
    load_manifest,
    prepare,
    read_folds,
    read_hf_dataset,
    read_manifest_csv,
    read_ravdess,
    read_tess,
    split_actors,
)
from emotion_core.labels import EMOTION_TO_INDEX, EMOTIONS

RAVDESS_DIR = data_dir() / "ravdess"
TESS_DIR = data_dir() / "tess"
pytestmark = pytest.mark.skipif(
    not (RAVDESS_DIR / "manifest.csv").is_file(), reason=f"shared RAVDESS data not found at {RAVDESS_DIR}"
)


@pytest.fixture(scope="module")
def ravdess() -> pd.DataFrame:
    return read_ravdess(RAVDESS_DIR)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ----------------------------------------------------------------------------- shared RAVDESS


def test_shared_ravdess_manifest(ravdess):
    df = ravdess
    assert list(df.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert len(df) == 1440
    counts = df["emotion"].value_counts()
    assert counts.to_dict() == {e: (96 if e == "neutral" else 192) for e in EMOTIONS}
    assert (df["label"] == df["emotion"].map(EMOTION_TO_INDEX)).all()
    assert df["actor"].nunique() == 24 and set(df["actor"]) == set(range(1, 25))
    assert df["clip_id"].is_unique
    assert (df["speaker"] == [f"ravdess_{a:02d}" for a in df["actor"]]).all()
    assert (df["corpus"] == "ravdess").all()
    assert df["duration_s"].between(2.5, 6.0).all()
    per_fold = df.groupby("fold")["actor"].unique()
    assert sorted(per_fold.index) == [1, 2, 3, 4, 5, 6]
    for fold, actors in per_fold.items():
        assert sorted(actors) == sorted(EMOBOX_FOLDS[fold])
    first = df.iloc[0]
    assert first["path"].startswith("/") and sf.info(first["path"]).samplerate == 16000
    assert str(df["actor"].dtype) == "Int64" and str(df["fold"].dtype) == "Int64"


def test_folds_csv_matches_emobox_constant():
    assert read_folds(RAVDESS_DIR) == read_folds(None)
    assert sorted(a for actors in EMOBOX_FOLDS.values() for a in actors) == list(range(1, 25))


# ----------------------------------------------------------------------------- original layout


def test_original_layout_matches_shared_manifest(ravdess, tmp_path):
    picked = pd.concat(
        [ravdess[ravdess["actor"] == 1].iloc[[0, 50, 59]], ravdess[ravdess["actor"] == 2].iloc[[3, 40]]]
    )
    for row in picked.itertuples():
        audio, sr = sf.read(row.path)
        folder = tmp_path / f"Actor_{row.actor:02d}"
        folder.mkdir(exist_ok=True)
        sf.write(folder / f"{row.clip_id}.wav", audio, sr)
    song, sr = sf.read(picked.iloc[0]["path"])
    sf.write(tmp_path / "Actor_01" / "03-02-03-01-01-01-01.wav", song, sr)  # song: must be skipped
    (tmp_path / "Actor_01" / "01-01-03-01-01-01-01.mp4").write_bytes(b"")  # video: skipped
    (tmp_path / "notes.txt").write_text("not a clip")

    with pytest.warns(UserWarning, match="skipped 2 files"):
        scanned = read_ravdess(tmp_path)
    assert len(scanned) == len(picked)
    assert all(p.endswith(".wav") for p in scanned["path"])
    fields = ["clip_id", "speaker", "actor", "emotion", "label", "corpus", "fold", "sex", "intensity",
              "statement", "repetition"]  # fmt: skip
    expected = picked.set_index("clip_id").loc[scanned["clip_id"]].reset_index()
    pd.testing.assert_frame_equal(scanned[fields], expected[fields], check_dtype=False)
    np.testing.assert_allclose(scanned["duration_s"], expected["duration_s"], atol=1e-3)

    cfg = DataConfig(corpus="ravdess_original", path=str(tmp_path), actors=[2], extra_train=[])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        only_two = load_manifest(cfg)
    assert set(only_two["actor"]) == {2} and len(only_two) == 2


# ----------------------------------------------------------------------------- subsets & splits


def test_actor_filter_and_stratified_cap(ravdess):
    assert len(load_manifest(DataConfig(actors=[1, 2], extra_train=[]))) == 120
    with pytest.raises(ValueError, match="none of data.actors"):
        load_manifest(DataConfig(actors=[99], extra_train=[]))

    capped = load_manifest(DataConfig(max_samples=80, extra_train=[]))
    assert len(capped) == 80 and capped["clip_id"].is_unique
    counts = capped["emotion"].value_counts()
    for emotion in EMOTIONS:
        share = 80 * (ravdess["emotion"] == emotion).mean()
        assert np.floor(share) <= counts[emotion] <= np.ceil(share)
    assert capped["actor"].nunique() >= 20  # round-robin over actors within each emotion
    again = load_manifest(DataConfig(max_samples=80, extra_train=[]))
    pd.testing.assert_frame_equal(capped, again)
    assert list(capped["clip_id"]) == list(capped.sort_values(["corpus", "speaker", "clip_id"])["clip_id"])
    other_seed = cap_samples(ravdess, 80, seed=1)
    assert set(other_seed["clip_id"]) != set(capped["clip_id"])
    assert len(cap_samples(ravdess, 5)) == 5
    assert len(cap_samples(ravdess, 10_000)) == 1440


def test_split_actors(ravdess):
    train, val, test = split_actors(ravdess, [1], 0.8, seed=0)
    assert set(test["actor"]) == set(EMOBOX_FOLDS[1])
    assert train["actor"].nunique() == 16 and val["actor"].nunique() == 4
    assert not set(train["actor"]) & set(val["actor"])
    assert not (set(train["actor"]) | set(val["actor"])) & set(test["actor"])
    assert len(train) + len(val) + len(test) == len(ravdess)
    assert sorted(a % 2 for a in val["actor"].unique()) == [0, 0, 1, 1]  # 2 male, 2 female
    again = split_actors(ravdess, [1], 0.8, seed=0)
    assert set(again[1]["actor"]) == set(val["actor"])
    seeds = {frozenset(split_actors(ravdess, [1], 0.8, seed=s)[1]["actor"]) for s in range(5)}
    assert len(seeds) > 1

    train, val, test = split_actors(ravdess, [2, 3], 1.0, seed=0)
    assert val.empty and set(test["actor"]) == set(EMOBOX_FOLDS[2]) | set(EMOBOX_FOLDS[3])
    assert train["actor"].nunique() == 16

    small = ravdess[ravdess["actor"].isin([1, 2, 3])]
    train, val, test = split_actors(small, [1], 0.8)
    assert set(test["actor"]) == {1} and train["actor"].nunique() == 1 and val["actor"].nunique() == 1

    with pytest.raises(ValueError, match="folds present"):
        split_actors(ravdess, [7], 0.8)


@pytest.mark.skipif(not (TESS_DIR / "manifest.csv").is_file(), reason="TESS not available")
def test_tess_and_mixed_split(ravdess):
    tess = read_tess(TESS_DIR)
    assert len(tess) == 2800 and set(tess["speaker"]) == {"tess_OAF", "tess_YAF"}
    assert "calm" not in set(tess["emotion"]) and set(tess["emotion"]) < set(EMOTIONS)
    assert tess["actor"].isna().all() and tess["fold"].isna().all()
    mixed = pd.concat([ravdess, tess], ignore_index=True)
    train, val, test = split_actors(mixed, [1], 0.8)
    assert set(tess["clip_id"]) <= set(train["clip_id"])
    assert (test["corpus"] == "ravdess").all() and (val["corpus"] == "ravdess").all()


@pytest.mark.parametrize("name,clips,speakers", [("ravdess", 1440, 24), ("tess", 2800, 2), ("turev", 1735, 6)])
def test_every_corpus_reads_to_the_classes_it_declares(name, clips, speakers, tmp_path):
    """The corpora as data: each reader gives its clips with exactly the labels `CORPORA` declares; the
    TurEV-DB scan of the original names (SPEAKER/SPEAKER_code_word) agrees with its manifest."""
    from emotion_core.data.corpora import CORPORA
    from emotion_core.data.turev import read_turev

    corpus = CORPORA[name]
    df = corpus.read()
    assert len(df) == clips and df["speaker"].nunique() == speakers and df["clip_id"].is_unique
    assert tuple(e for e in EMOTIONS if e in set(df["emotion"])) == corpus.classes
    assert (df["corpus"] == name).all() and df["speaker"].str.startswith(f"{name}_").all()
    if name == "turev":  # the original layout, without the shared manifest
        for path in df["path"][:40]:
            target = tmp_path / Path(path).parent.name / Path(path).name
            target.parent.mkdir(exist_ok=True)
            os.symlink(path, target)
        scanned = read_turev(tmp_path)
        listed = df[df["clip_id"].isin(scanned["clip_id"])]
        assert len(scanned) == 40 and list(scanned["emotion"]) == list(listed["emotion"])


# ----------------------------------------------------------------------------- Hugging Face datasets


def _tiny_hf_dataset(ravdess, root):
    """A DatasetDict with an `Audio` column (FLAC bytes) and a plain {array, sampling_rate} variant."""
    import datasets

    rows = ravdess[ravdess["actor"].isin([1, 4])].groupby("emotion").head(1).head(6)
    flac = [open(p, "rb").read() for p in rows["path"]]
    names = {"fearful": "fear", "surprised": "ps"}
    labels = [names.get(e, e) for e in rows["emotion"]]
    with_audio = datasets.Dataset.from_dict(
        {"audio": [{"bytes": b, "path": f"{c}.flac"} for b, c in zip(flac, rows["clip_id"])],
         "emotion": labels, "actor": [int(a) for a in rows["actor"]]}  # fmt: skip
    ).cast_column("audio", datasets.Audio())
    arrays = []
    for p in rows["path"]:  # as 2-channel 48 kHz float arrays: exercises downmix + resampling
        audio, _ = sf.read(p, dtype="float32")
        up = soxr.resample(audio, 16000, 48000)
        arrays.append({"array": np.stack([up, up]).tolist(), "sampling_rate": 48000})
    features = datasets.Features(
        {
            "audio": {"array": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                      "sampling_rate": datasets.Value("int32")},  # fmt: skip
            "label": datasets.ClassLabel(names=[names.get(e, e) for e in EMOTIONS]),  # TESS-style names
        }
    )
    plain = datasets.Dataset.from_dict(
        {"audio": arrays, "label": [EMOTION_TO_INDEX[e] for e in rows["emotion"]]}, features=features
    )
    datasets.DatasetDict({"train": with_audio, "test": plain}).save_to_disk(str(root))
    return rows


def test_hf_dataset_round_trip(ravdess, tmp_path, cache):
    src = tmp_path / "tiny_hf"
    rows = _tiny_hf_dataset(ravdess, src)
    out = tmp_path / "hf_audio"

    df = read_hf_dataset(src, "train", out)
    assert list(df.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert len(df) == len(rows) and df["clip_id"].is_unique
    order = df.sort_values("clip_id").index
    assert list(df.loc[order, "emotion"]) == list(rows["emotion"])
    assert list(df.loc[order, "actor"]) == list(rows["actor"])
    assert list(df.loc[order, "fold"]) == [read_folds(None)[a] for a in rows["actor"]]
    assert (df["corpus"] == "hf").all()
    for written, original in zip(df.loc[order, "path"], rows["path"]):
        assert written.startswith(str(out))
        info = sf.info(written)
        assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
        np.testing.assert_allclose(sf.read(written)[0], sf.read(original)[0], atol=1 / 32768)

    mtimes = [os.stat(p).st_mtime_ns for p in df["path"]]
    again = read_hf_dataset(src, "train", out)  # cached: files reused, same ids
    pd.testing.assert_frame_equal(df, again)
    assert mtimes == [os.stat(p).st_mtime_ns for p in again["path"]]

    plain = read_hf_dataset(src, "test", out)  # ClassLabel ints + stereo 48 kHz arrays
    assert list(plain.sort_values("clip_id")["emotion"]) == list(rows["emotion"])
    assert plain["fold"].isna().all() and plain["actor"].isna().all()
    for written, original in zip(plain.sort_values("clip_id")["path"], rows["path"]):
        a, b = sf.read(written)[0], sf.read(original)[0]
        n = min(len(a), len(b))
        assert abs(len(a) - len(b)) <= 2 and np.corrcoef(a[:n], b[:n])[0, 1] > 0.99

    via_config = load_manifest(DataConfig(corpus="hf", path=str(src), hf_split="test", extra_train=[]))
    assert len(via_config) == len(rows) and all(p.startswith(str(cache)) for p in via_config["path"])
    with pytest.raises(KeyError, match="no split"):
        read_hf_dataset(src, "validation", out)


# ----------------------------------------------------------------------------- prepare


def test_prepare_writes_manifest(cache):
    cfg = ExperimentConfig(name="tiny", data=DataConfig(actors=[1, 2], max_samples=30, extra_train=[]))
    df, path = prepare(cfg)
    assert path == cache / "manifests" / "tiny.csv" and path.is_file()
    assert len(df) == 30
    pd.testing.assert_frame_equal(read_manifest_csv(path), df)


def test_prepare_pipeline_logs_to_mlflow(cache, tmp_path, monkeypatch, capsys):
    import mlflow

    monkeypatch.syspath_prepend(str(PROJECT_ROOT))  # `pipelines` is a top-level folder, not installed
    from pipelines.prepare import main

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["--set", "data.actors=[1,2,3]", "--set", "data.max_samples=40", "--set", "data.extra_train=[]",
                 "--set", "name=pipe"]) == 0
    printed = capsys.readouterr().out
    assert "per emotion" in printed and "per fold" in printed and "total duration" in printed

    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name("prepare")
    assert experiment.artifact_location.startswith((tmp_path / "mlruns" / "artifacts").as_uri())
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert len(runs) == 1
    assert runs[0].data.params["n_clips"] == "40" and runs[0].data.params["n_actors"] == "3"
    assert runs[0].data.params["corpus"] == "ravdess"
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id)]
    assert "pipe.csv" in artifacts
