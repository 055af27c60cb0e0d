"""The constants are the one source: schemas, README and model output all derive from them."""

import re

import pytest
from pydantic import ValidationError

from emotion_core.config import PROJECT_ROOT
from emotion_core.labels import (
    CONFIDENCE_THRESHOLD,
    EMOTIONS,
    MUSIC_MOODS,
    RAVDESS_EMOTION_CODES,
    low_confidence_warning,
    music_mood,
)
from emotion_core.serving.schemas import EmotionPrediction, MusicMoodMap


def test_seed_order_and_moods():
    assert EMOTIONS == ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    assert (MUSIC_MOODS["neutral"], MUSIC_MOODS["calm"], MUSIC_MOODS["happy"]) == ("chill", "relaxing", "upbeat")
    assert list(MUSIC_MOODS) == list(EMOTIONS)
    assert RAVDESS_EMOTION_CODES["05"] == "angry"
    assert CONFIDENCE_THRESHOLD == 0.70


def test_warning_threshold():
    assert low_confidence_warning(0.69) and "0.70" in low_confidence_warning(0.69)
    assert low_confidence_warning(0.70) is None
    with pytest.raises(KeyError, match="expected one of"):
        music_mood("bored")


def test_schema_enumerates_exactly_the_constants():
    schema = EmotionPrediction.model_json_schema()
    assert schema["properties"]["emotion"]["enum"] == list(EMOTIONS)
    assert list(schema["$defs"]["EmotionProbabilities"]["properties"]) == list(EMOTIONS)
    assert MusicMoodMap().model_dump() == dict(MUSIC_MOODS)


def test_prediction_rejects_bad_probabilities():
    probs = {e: 0.125 for e in EMOTIONS}
    EmotionPrediction(emotion="calm", confidence=0.5, music_mood="relaxing", all_probabilities=probs)
    with pytest.raises(ValidationError):
        EmotionPrediction(emotion="calm", confidence=0.5, music_mood="relaxing", all_probabilities={**probs, "calm": 0.9})
    with pytest.raises(ValidationError):
        EmotionPrediction(emotion="bored", confidence=0.5, music_mood="relaxing", all_probabilities=probs)


def test_readme_mood_table_matches_labels():
    readme = (PROJECT_ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| (\w+) \| (\w+) \|", readme, re.M))
    assert {e: rows.get(e) for e in EMOTIONS} == dict(MUSIC_MOODS)
